"""Edge benchmark: MediaPipe pose alone vs the full edge pipeline, side by side in one process.

Both runs use the same clip, read as fast as possible. "Pose alone" is
decode + colour conversion + PoseLandmarker on one thread, the least any
edge node must do. "Pipeline" is ``formcheck edge`` itself (capture thread,
pose, features, classifier, fault rules, JSON, QoS 1 publish to a real local
Mosquitto), and every published frame is counted by a real subscriber
(``mosquitto_sub``, its own process).
Runs alternate (pose, pipeline, pose, pipeline, ...). The ratio is the median over rounds of each round's
pipeline / pose alone: the two runs of a round are seconds apart and share the machine's background load, which
on the 2-core development machine moves a single run's rate by ±10 %; the median keeps one disturbed round from
deciding. The best of each side over all rounds (the ratio before, a ratio of two maxima taken minutes apart) is
printed beside it.

Each side's frame rate is its steady rate, from its first frame out to its last: for pose alone the first and
last ``detect`` returning, for the pipeline the subscriber receiving the first and the last frame message. Start-up
(loading the models, connecting to the broker) and shut-down (waiting for the last acknowledgements) happen once
per boot, not while someone trains; timing the pipeline's but not pose alone's model loading cost the pipeline
~1.5 % of a 10 s run. The whole run's rate (start-up and shut-down included) is printed beside it.

Targets: pipeline fps / pose-alone fps >= 0.9; peak RSS of the edge process < 400 MB, measured on a real
``formcheck edge`` process over the same clip (the benchmark process itself holds two pipelines over its life).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import psutil

from formcheck.local_services import running_mosquitto
from formcheck_edge.capture import open_video_file
from formcheck_edge.config import load_config
from formcheck_edge.pose import PoseEstimator
from formcheck_edge.runner import run_edge
from formcheck_edge.stats import peak_rss_mb
from formcheck_runtime.paths import POSE_MODEL, require_data_dir

DEFAULT_CLIP = "videos/squat/squat_side_barbell_a.mp4"
RATIO_TARGET = 0.9
RSS_TARGET_MB = 400.0


@dataclass(frozen=True)
class Run:
    """One side's pass over the clip."""

    frames: int
    steady_s: float
    """From the first frame out to the last."""
    whole_s: float
    """Start-up (models, broker connection) and shut-down included."""

    @property
    def fps(self) -> float:
        """Steady frame rate: the frames after the first over the time they took."""
        return (self.frames - 1) / self.steady_s if self.frames > 1 and self.steady_s > 0 else 0.0

    @property
    def whole_fps(self) -> float:
        return self.frames / self.whole_s if self.whole_s > 0 else 0.0


def pose_alone(clip: Path) -> Run:
    """Decode + RGB + pose over the whole clip on one thread."""
    begin = time.perf_counter()
    cap = open_video_file(clip)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames = 0
    first = last = 0.0
    with PoseEstimator(POSE_MODEL) as pose:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            pose.detect(np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), dtype=np.uint8), int(frames * 1000 / fps))
            last = time.perf_counter()
            first = first or last
            frames += 1
    cap.release()
    return Run(frames, last - first, time.perf_counter() - begin)


def pipeline(clip: Path, host: str, port: int, node: str) -> Run:
    """The full edge node over the clip; its frames as a subscriber in another process received them.

    The subscriber is ``mosquitto_sub`` (C, its own process), as the aggregator is its own process on another
    machine: a Python subscriber inside the bench process would compete with the edge for its GIL.
    """
    frames_topic, probe_topic = f"gym/main/nodes/{node}/frames", f"bench/{node}/subscribed"
    # A retained probe tells when the subscriber's subscriptions are in place: it is delivered right after them.
    probe = ["mosquitto_pub", "-h", host, "-p", str(port), "-q", "1", "-r", "-t", probe_topic]
    subprocess.run([*probe, "-m", "1"], check=True, timeout=10)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "received"
        with out.open("wb") as sink:
            sub = subprocess.Popen(["mosquitto_sub", "-h", host, "-p", str(port), "-V", "mqttv5", "-q", "1",
                                    "-t", probe_topic, "-t", frames_topic, "-F", "%t %U"],
                                   stdout=sink, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while probe_topic not in out.read_text():
                if time.monotonic() > deadline or sub.poll() is not None:
                    raise RuntimeError(f"mosquitto_sub did not subscribe on {host}:{port}")
                time.sleep(0.02)
            config = load_config(None, {
                "node": {"id": node, "follow_session": False},
                "source": {"uri": str(clip), "realtime": False},
                "mqtt": {"host": host, "port": port},
                "stats": {"interval_s": 1.0},
            })
            start = time.perf_counter()
            run_edge(config)
            elapsed = time.perf_counter() - start
            time.sleep(0.5)
        finally:
            sub.terminate()
            sub.wait(timeout=5)
        received = [float(line.split()[1]) for line in out.read_text().splitlines()
                    if line.startswith(frames_topic + " ")]
    subprocess.run([*probe, "-n"], check=True, timeout=10)  # the retained probe removed
    steady = received[-1] - received[0] if received else 0.0
    return Run(len(received), steady, elapsed)


@dataclass(frozen=True)
class Comparison:
    """Alternating rounds of pose alone and the pipeline over one clip."""

    poses: list[Run]
    pipes: list[Run]

    @property
    def round_ratios(self) -> list[float]:
        return [pipe.fps / pose.fps for pose, pipe in zip(self.poses, self.pipes, strict=True)]

    @property
    def ratio(self) -> float:
        """Pipeline / pose alone: the median of the rounds' own ratios."""
        return statistics.median(self.round_ratios)

    @property
    def best_pose(self) -> float:
        return max(r.fps for r in self.poses)

    @property
    def best_pipe(self) -> float:
        return max(r.fps for r in self.pipes)


def compare(clip: Path, host: str, port: int, rounds: int, *, report: bool = False) -> Comparison:
    """``rounds`` rounds of pose alone then the pipeline (``report``: one line per round on stderr)."""
    result = Comparison([], [])
    for r in range(rounds):
        result.poses.append(pose_alone(clip))
        result.pipes.append(pipeline(clip, host, port, f"bench-{r}"))
        if report:
            pose, pipe = result.poses[-1], result.pipes[-1]
            print(f"round {r + 1}: pose alone {pose.fps:.1f} fps, pipeline {pipe.fps:.1f} fps ({pipe.frames} frames "
                  f"received); whole runs {pose.whole_fps:.1f} and {pipe.whole_fps:.1f} fps", file=sys.stderr)
    return result


def edge_process_peak_rss_mb(clip: Path, host: str, port: int) -> float:
    """Peak RSS of a real ``formcheck edge`` process over the clip (what a Raspberry Pi must hold)."""
    cmd = [sys.executable, "-m", "formcheck.cli", "edge", "--source", str(clip), "--node", "bench-rss",
           "--broker", f"{host}:{port}", "--realtime", "off", "--log-level", "WARNING"]
    # Sampled, not ru_maxrss: a child's ru_maxrss starts from the parent's RSS at fork on Linux.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watched = psutil.Process(proc.pid)
    peak = 0
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, watched.memory_info().rss)
        time.sleep(0.02)
    if proc.poll() is None:
        proc.kill()
    if proc.wait() != 0:
        raise RuntimeError(f"formcheck edge exited with status {proc.returncode}")
    return round(peak / 2**20, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, help=f"video (default: {DEFAULT_CLIP} in the data set)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating rounds (pose alone, then the pipeline); the ratio is their median")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    clip = args.clip or require_data_dir() / DEFAULT_CLIP

    with running_mosquitto() as broker:
        runs = compare(clip, broker.host, broker.port, args.rounds, report=True)
        rss = edge_process_peak_rss_mb(clip, broker.host, broker.port)
    best_pose, best_pipe, ratio, per_round = runs.best_pose, runs.best_pipe, runs.ratio, runs.round_ratios
    frames_pose, frames_pipe = runs.poses[-1].frames, runs.pipes[-1].frames
    bench_rss = peak_rss_mb()
    result = {
        "clip": clip.name, "frames": frames_pose, "frames_published": frames_pipe,
        "pose_alone_fps": round(best_pose, 1), "pipeline_fps": round(best_pipe, 1),
        "ratio": round(ratio, 3), "ratio_target": RATIO_TARGET,
        "round_ratios": [round(x, 3) for x in per_round], "best_over_best": round(best_pipe / best_pose, 3),
        "whole_run_ratio": round(max(r.whole_fps for r in runs.pipes) / max(r.whole_fps for r in runs.poses), 3),
        "peak_rss_mb": rss, "rss_target_mb": RSS_TARGET_MB, "bench_process_peak_rss_mb": bench_rss,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"clip                 {clip.name} ({frames_pose} frames)")
        print(f"pose alone           {best_pose:7.1f} fps")
        print(f"full edge pipeline   {best_pipe:7.1f} fps  ({frames_pipe} frames published and received)")
        verdict = "OK" if ratio >= RATIO_TARGET else "MISSED"
        above = sum(r >= 1.0 for r in per_round)
        print(f"ratio                {ratio:7.3f}      target >= {RATIO_TARGET}  {verdict}  (median of {args.rounds} "
              f"rounds, {above} at >= 1.0; best over best {result['best_over_best']:.3f}, whole runs "
              f"{result['whole_run_ratio']:.3f})")
        print(f"edge peak RSS        {rss:7.1f} MB   target < {RSS_TARGET_MB:.0f}  "
              f"{'OK' if rss < RSS_TARGET_MB else 'MISSED'}  (a `formcheck edge` process on the same clip)")
        print(f"bench process peak   {bench_rss:7.1f} MB   (both pipelines, {args.rounds} rounds, and a subscriber)")
    missed = ratio < RATIO_TARGET or rss >= RSS_TARGET_MB or frames_pipe != frames_pose
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
