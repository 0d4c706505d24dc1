"""Idle station benchmark: what an empty station costs against one where someone trains, side by side in one run.

One real ``formcheck edge`` node (``run_edge`` in this process, real local Mosquitto) is fed at 30 frames/s
by a camera-like source at the clip's resolution: frames handed over raw from memory, as V4L2 or Picamera2
hand them over, so the figure is the edge's own work (a file or RTSP source also decodes every frame, which
an idle node cannot skip for inter-coded video: measured separately below). Phases, one after the other:

1. training: a window of the clip played forwards and backwards (a person moving all the time);
2. empty scene (the clip's mean colour with sensor noise) with the default motion gate, every frame looked at;
3. the same empty scene with ``idle.gate: detector`` (the pose model on every looked-at frame): the same
   wake-up frame;
4. and 5. both again looking at one frame in 3 (``idle.check_every: 3``).

For each: process CPU seconds per minute (every thread of the process: capture, pose, classifier, MQTT),
and MQTT messages per minute on the node's topics, counted by ``mosquitto_sub`` (another process). Then the
edge pipeline against pose alone (``bench.edge_bench``, same clip), and frame points per active minute:
``formcheck_aggregator.points.FrameSampler`` (the aggregator's own code) over the edge frames of every cached clip.

``--wake-all`` instead plays every clip of the data set after 10 s of an empty scene through the real pose
model and the idle watch (``formcheck_edge.offline.wake_run``) and compares the reps counted with the clip alone,
and every frame message of the clip (phase, form, angles, faults: all but seq and time) with the clip alone's.

Targets: idle CPU <= 0.2 x training; MQTT messages per idle minute <= 1 % of an always-on node's (1,800
frames + 12 stats); stored frame points per active minute <= 20 % of one per frame; pipeline / pose alone
>= 1.0; nothing lost on waking (first frame message <= 0.5 s after the person, same rep counts).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench import edge_bench
from formcheck.local_services import running_mosquitto
from formcheck_aggregator.points import FrameSampler
from formcheck_edge.analyze import analyze_frames
from formcheck_edge.capture import OpenCvSource
from formcheck_edge.config import SourceSection, load_config
from formcheck_edge.offline import empty_scene, rgb_frames, wake_run
from formcheck_edge.runner import run_edge
from formcheck_models.training.frame_cache import edge_frames, frames_cache_path
from formcheck_protocol.messages import Exercise, FrameMessage
from formcheck_runtime.paths import require_data_dir

FPS = 30.0
WINDOW_FRAMES = 90  # frames of the clip held in memory (played forwards and backwards)
CPU_TARGET = 0.2
MQTT_TARGET = 0.01
POINTS_TARGET = 0.2
RATIO_TARGET = 1.0
TODAY_PER_MIN = 60 * FPS + 60 / 5.0  # an always-on node: every frame plus stats every 5 s


class MemoryCamera:
    """A camera that hands over raw frames at ``fps``: ``read`` waits for the next frame time, like V4L2."""

    kind = "camera"
    live = True

    def __init__(self, fps: float = FPS) -> None:
        self.fps = fps
        self.frames: list[npt.NDArray[np.uint8]] = []
        self.switched = threading.Event()
        self._lock = threading.Lock()
        self._i = 0
        self._next = time.monotonic()
        self.closed = False

    def play(self, frames: list[npt.NDArray[np.uint8]]) -> None:
        with self._lock:
            self.frames, self._i = frames, 0

    def _wait(self) -> None:
        self._next += 1.0 / self.fps
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            self._next = time.monotonic()

    def read(self) -> npt.NDArray[np.uint8] | None:
        self._wait()
        with self._lock:
            if self.closed or not self.frames:
                return None
            frame = self.frames[self._i % len(self.frames)]
            self._i += 1
        return frame

    def skip(self) -> bool:
        self._wait()
        with self._lock:
            self._i += 1
            return not self.closed

    def close(self) -> None:
        self.closed = True


@dataclass
class Phase:
    name: str
    cpu_s: float
    wall_s: float
    messages: int

    @property
    def cpu_per_min(self) -> float:
        return 60.0 * self.cpu_s / self.wall_s

    @property
    def messages_per_min(self) -> float:
        return 60.0 * self.messages / self.wall_s


def ping_pong(clip: Path, frames: int) -> tuple[list[npt.NDArray[np.uint8]], list[npt.NDArray[np.uint8]]]:
    """A window of the clip forwards then backwards (continuous movement), and an empty scene the same size."""
    it, _ = rgb_frames(clip)
    window: list[npt.NDArray[np.uint8]] = []
    for rgb in it:
        window.append(rgb)
        if len(window) >= frames:
            break
    return window + window[-2:0:-1], empty_scene(window[0], variants=8)


def _count_lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def measure_phases(clip: Path, seconds: float, settle_s: float) -> list[Phase]:
    """Training, idle (motion gate) and idle (detector) on one node each, CPU and MQTT messages per phase."""
    moving, empty = ping_pong(clip, WINDOW_FRAMES)
    phases: list[Phase] = []
    with running_mosquitto() as broker:
        for gate, every in (("motion", 1), ("detector", 1), ("motion", 3), ("detector", 3)):
            node = f"idle-{gate}-{every}"
            out = Path(f"/tmp/idle_bench_{node}.log")
            out.unlink(missing_ok=True)
            sub = subprocess.Popen(["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-q", "1",
                                    "-t", f"gym/main/nodes/{node}/+", "-F", "%t"],
                                   stdout=out.open("wb"), stderr=subprocess.DEVNULL)
            camera = MemoryCamera()
            camera.play(moving)
            config = load_config(None, {
                "node": {"id": node, "follow_session": False},
                "mqtt": {"host": broker.host, "port": broker.port},
                "idle": {"gate": gate, "check_every": every},
            }, environ={})
            stop = threading.Event()
            runner = threading.Thread(target=run_edge, args=(config, stop, camera), daemon=True)
            runner.start()
            try:
                if not phases:
                    time.sleep(settle_s)  # models loaded, first frames through
                    phases.append(_window("training", seconds, out))
                camera.play(empty)
                time.sleep(config.idle.after_s + settle_s)  # idle by now
                phases.append(_window(f"idle, {gate}, 1 in {every}", seconds, out))
            finally:
                stop.set()
                runner.join(timeout=30)
                sub.terminate()
                sub.wait(timeout=10)
    return phases


def decode_ms_per_frame(clip: Path) -> float:
    """CPU milliseconds a file or RTSP node spends per frame before any idle decision: the edge's own source
    (``OpenCvSource.read``: decode, colour conversion, BGR to RGB) over the whole clip, every decoder thread
    counted."""
    source = OpenCvSource(SourceSection(uri=str(clip)))
    frames, before = 0, time.process_time()
    try:
        while source.read() is not None:
            frames += 1
    finally:
        source.close()
    return 1000.0 * (time.process_time() - before) / max(frames, 1)


def _window(name: str, seconds: float, out: Path) -> Phase:
    before_msgs, before_cpu, t0 = _count_lines(out), time.process_time(), time.monotonic()
    time.sleep(seconds)
    return Phase(name, time.process_time() - before_cpu, time.monotonic() - t0, _count_lines(out) - before_msgs)


def clips(data: Path) -> list[tuple[str, Exercise]]:
    with (data / "ground_truth.csv").open() as f:
        return [(row["path"], row["exercise"]) for row in csv.DictReader(f)]  # type: ignore[misc]


def frame_points(data: Path, compute: bool) -> tuple[int, float, int]:
    """(clips, active minutes, points) of FrameSampler over every clip's edge frames (cached ones only unless
    compute). Clips have their own frame rates (10 to 60 frames/s): the figure is points per minute of video,
    against the 1,800 a 30 frames/s node stores today."""
    n = points = 0
    minutes = 0.0
    for path, exercise in clips(data):
        if not compute and not frames_cache_path(data / path, exercise).is_file():
            continue
        frames = edge_frames(data / path, exercise)
        p, m = sampled_points(frames)
        points, minutes, n = points + p, minutes + m, n + 1
    return n, minutes, points


def sampled_points(frames: list[FrameMessage]) -> tuple[int, float]:
    """Frame points the aggregator stores for one clip's frames (a flush at the end), and the clip's minutes."""
    sampler = FrameSampler(load_agg_rate())
    points = sum(1 for f in frames if sampler.take(f)) + (1 if sampler.flush() else 0)
    step = (frames[-1].ts - frames[0].ts) / max(1, len(frames) - 1) if frames else 0
    return points, (frames[-1].ts - frames[0].ts + step) / 60_000 if frames else 0.0


def load_agg_rate() -> float:
    from formcheck_aggregator.config import AggregatorConfig

    return AggregatorConfig().influx.frame_points_per_s


def wake_all(data: Path, limit: int | None, part: str = "1/1") -> int:
    k_of, n_parts = (int(x) for x in part.split("/"))
    rows = clips(data)[:limit][k_of - 1::n_parts]
    worst_wake = 0.0
    changed: list[str] = []
    frames_differ: list[str] = []
    never: list[str] = []
    points = 0
    minutes = 0.0
    for k, (path, exercise) in enumerate(rows, 1):
        alone = edge_frames(data / path, exercise)
        run = wake_run(data / path, exercise, prefix_s=10.0)
        before = analyze_frames(alone, path, exercise).complete_reps
        after = analyze_frames(run.messages, path, exercise).complete_reps
        visible = next((i for i, f in enumerate(alone) if f.phase != "no_person"), None)
        wake_s = None
        if run.woke_at is None or visible is None:
            never.append(path)
        else:
            wake_s = (run.woke_at - run.prefix_frames - visible) / run.fps
            worst_wake = max(worst_wake, wake_s)
        if before != after:
            changed.append(f"{path}: {before} -> {after}")
        differ = run.differing_frames(alone)
        if differ:
            frames_differ.append(f"{path}: {differ}")
        p, m = sampled_points(alone)
        points, minutes = points + p, minutes + m
        print(f"{k:2d}/{len(rows)} {Path(path).stem:<36} reps {before} -> {after}  wake "
              f"{'-' if wake_s is None else f'{wake_s:+.2f} s'}  pose on {run.pose_runs_idle} of "
              f"{run.looked_idle} looked-at idle frames", file=sys.stderr, flush=True)
    print(f"clips                          {len(rows)}")
    print(f"rep count changed              {len(changed)}  {'OK' if not changed else 'MISSED: ' + '; '.join(changed)}")
    print(f"clip frames not identical      {len(frames_differ)}  {'; '.join(frames_differ)}")
    print(f"never woke (or nobody seen)    {len(never)}  {'; '.join(never)}")
    print(f"latest first frame after the person appeared  {worst_wake:.2f} s  target <= 0.5 s  "
          f"{'OK' if worst_wake <= 0.5 else 'MISSED'}")
    per_min = points / max(minutes, 1e-9)
    print(f"frame points per active minute {per_min:.0f} of {60 * FPS:.0f} = {per_min / (60 * FPS):.3f}  "
          f"target <= {POINTS_TARGET}")
    return 1 if changed or frames_differ or worst_wake > 0.5 else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, help=f"video (default: {edge_bench.DEFAULT_CLIP} in the data set)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each measured phase")
    parser.add_argument("--rounds", type=int, default=2, help="edge_bench rounds (pipeline vs pose alone)")
    parser.add_argument("--wake-all", action="store_true", help="every clip after 10 s of empty scene instead")
    parser.add_argument("--limit", type=int, help="--wake-all: the first N clips only")
    parser.add_argument("--part", default="1/1", help="--wake-all: K/N, every Nth clip from the Kth (processes)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    data = require_data_dir()
    if args.wake_all:
        return wake_all(data, args.limit, args.part)
    clip = args.clip or data / edge_bench.DEFAULT_CLIP

    phases = measure_phases(clip, args.seconds, settle_s=5.0)
    training = phases[0]
    decode_ms = decode_ms_per_frame(clip)
    decode_per_min = decode_ms * 60 * FPS / 1000
    with running_mosquitto() as broker:
        runs = edge_bench.compare(clip, broker.host, broker.port, args.rounds)
    best_pose, best_pipe, ratio = runs.best_pose, runs.best_pipe, runs.ratio
    n_clips, minutes, points = frame_points(data, compute=False)
    result = {
        "clip": clip.name, "phases": [{"name": p.name, "cpu_s_per_min": round(p.cpu_per_min, 2),
                                       "mqtt_per_min": round(p.messages_per_min, 1)} for p in phases],
        "pose_alone_fps": round(best_pose, 1), "pipeline_fps": round(best_pipe, 1),
        "ratio": round(ratio, 3), "decode_ms_per_frame": round(decode_ms, 2),
        "frame_points": {"clips": n_clips, "minutes": round(minutes, 2), "points": points},
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"clip {clip.name}, {args.seconds:.0f} s per phase, 30 frames/s camera-like source")
    print(f"{'phase':<24} {'CPU s/min':>10} {'x training':>11} {'MQTT msgs/min':>14} {'x always-on':>12}")
    for p in phases:
        print(f"{p.name:<24} {p.cpu_per_min:10.2f} {p.cpu_per_min / training.cpu_per_min:11.3f} "
              f"{p.messages_per_min:14.1f} {p.messages_per_min / TODAY_PER_MIN:12.4f}")
    print(f"targets: idle CPU <= {CPU_TARGET} x training, idle MQTT <= {MQTT_TARGET:.0%} of {TODAY_PER_MIN:.0f}/min")
    idle = phases[1]
    print(f"a file/RTSP source decodes every frame: {decode_ms:.2f} CPU ms a frame = {decode_per_min:.2f} CPU s/min, "
          f"added to both sides: idle (motion, every frame) {(idle.cpu_per_min + decode_per_min):.2f} / training "
          f"{(training.cpu_per_min + decode_per_min):.2f} = "
          f"{(idle.cpu_per_min + decode_per_min) / (training.cpu_per_min + decode_per_min):.3f} x")
    print(f"pipeline / pose alone          {ratio:.3f} (median of {args.rounds} rounds; best {best_pipe:.1f} / "
          f"{best_pose:.1f} fps)  target >= {RATIO_TARGET}")
    if minutes:
        print(f"frame points per active minute {points / minutes:.0f} of {60 * FPS:.0f} = "
              f"{points / minutes / (60 * FPS):.3f}  ({n_clips} cached clips, {minutes:.1f} min)  "
              f"target <= {POINTS_TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
