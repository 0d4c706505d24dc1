"""Edge benchmark: MediaPipe pose alone vs the full edge pipeline, side by side in one process.

Both runs use the same clip, read as fast as possible. "Pose alone" is
decode + colour conversion + PoseLandmarker on one thread, the least any
edge node must do. "Pipeline" is ``formcheck edge`` itself (capture thread,
pose, features, classifier, fault rules, JSON, QoS 1 publish to a real local
Mosquitto), and every published frame is counted by a real subscriber.
Runs alternate (pose, pipeline, pose, pipeline, ...) and the best of each is
kept, so a burst of background load does not decide the ratio.

Targets: pipeline fps / pose-alone fps >= 0.9; peak RSS of the edge process < 400 MB, measured on a real
``formcheck edge`` process over the same clip (the benchmark process itself holds two pipelines over its life).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import threading
import time
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


def pose_alone(clip: Path) -> tuple[int, float]:
    """Frames and seconds for decode + RGB + pose over the whole clip."""
    cap = open_video_file(clip)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames = 0
    with PoseEstimator(POSE_MODEL) as pose:
        start = time.perf_counter()
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            pose.detect(np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), dtype=np.uint8), int(frames * 1000 / fps))
            frames += 1
        elapsed = time.perf_counter() - start
    cap.release()
    return frames, elapsed


def pipeline(clip: Path, host: str, port: int, node: str) -> tuple[int, float]:
    """Frames received by a subscriber and seconds for the full edge node to process the clip."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    received = 0
    lock = threading.Lock()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal received
        with lock:
            received += 1

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.ReceiveMaximum = 1000
    sub.connect(host, port, keepalive=10, properties=props)
    sub.subscribe(f"gym/main/nodes/{node}/frames", qos=1)
    sub.loop_start()
    time.sleep(0.2)
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
    sub.loop_stop()
    sub.disconnect()
    with lock:
        return received, elapsed


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
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each side is kept")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    clip = args.clip or require_data_dir() / DEFAULT_CLIP

    best_pose = best_pipe = 0.0
    frames_pose = frames_pipe = 0
    with running_mosquitto() as broker:
        for r in range(args.rounds):
            n, pose_secs = pose_alone(clip)
            frames_pose, best_pose = n, max(best_pose, n / pose_secs)
            m, pipe_secs = pipeline(clip, broker.host, broker.port, f"bench-{r}")
            frames_pipe, best_pipe = m, max(best_pipe, m / pipe_secs)
            print(f"round {r + 1}: pose alone {n / pose_secs:.1f} fps, pipeline {m / pipe_secs:.1f} fps "
                  f"({m} frames received)", file=sys.stderr)
        rss = edge_process_peak_rss_mb(clip, broker.host, broker.port)
    ratio = best_pipe / best_pose
    bench_rss = peak_rss_mb()
    result = {
        "clip": clip.name, "frames": frames_pose, "frames_published": frames_pipe,
        "pose_alone_fps": round(best_pose, 1), "pipeline_fps": round(best_pipe, 1),
        "ratio": round(ratio, 3), "ratio_target": RATIO_TARGET,
        "peak_rss_mb": rss, "rss_target_mb": RSS_TARGET_MB, "bench_process_peak_rss_mb": bench_rss,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"clip                 {clip.name} ({frames_pose} frames)")
        print(f"pose alone           {best_pose:7.1f} fps")
        print(f"full edge pipeline   {best_pipe:7.1f} fps  ({frames_pipe} frames published and received)")
        verdict = "OK" if ratio >= RATIO_TARGET else "MISSED"
        print(f"ratio                {ratio:7.3f}      target >= {RATIO_TARGET}  {verdict}")
        print(f"edge peak RSS        {rss:7.1f} MB   target < {RSS_TARGET_MB:.0f}  "
              f"{'OK' if rss < RSS_TARGET_MB else 'MISSED'}  (a `formcheck edge` process on the same clip)")
        print(f"bench process peak   {bench_rss:7.1f} MB   (both pipelines, {args.rounds} rounds, and a subscriber)")
    missed = ratio < RATIO_TARGET or rss >= RSS_TARGET_MB or frames_pipe != frames_pose
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
