"""Rep counting at the frame rate a Raspberry Pi reaches: every clip with pose on every k-th frame only.

A live edge node never waits for pose: a Pi that runs pose at 6 fps on a 30 fps camera classifies every
fifth frame and drops the rest (counted in ``stats.dropped``); ``seq`` counts classified frames and ``ts``
keeps the capture time. This replays that on this machine: each clip of ground_truth.csv with a trained
exercise, decoded in full, with only every k-th frame going through the edge's ``FrameProcessor`` (at its
capture time) and the resulting frames through ``formcheck_aggregator.station.Station``, exactly as live. Nothing is
tuned here; it measures what the shipped code does at each rate.

    python -m bench.pi_frame_rate [--steps 1 5 10]
"""

from __future__ import annotations

import argparse
import csv
import secrets
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from formcheck_aggregator.station import Station
from formcheck_edge.capture import CapturedFrame, file_frame_ts, open_video_file
from formcheck_edge.offline import offline_config
from formcheck_edge.processor import FrameProcessor
from formcheck_models.training.dataset import TRAINING_CLIPS
from formcheck_protocol.messages import RepMessage
from formcheck_runtime.paths import require_data_dir


def count_reps(video: Path, exercise: str, step: int) -> list[RepMessage]:
    """Complete reps counted (and graded) in ``video`` when pose runs on every ``step``-th frame only."""
    config = offline_config(video, node="rate", exercise=exercise)  # type: ignore[arg-type]
    processor = FrameProcessor.create(config, secrets.token_hex(8))
    station = Station("rate", exercise)  # type: ignore[arg-type]
    capture = open_video_file(video)
    fps = float(capture.get(cv2.CAP_PROP_FPS)) or 30.0
    reps: list[RepMessage] = []
    index = 0
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if index % step == 0:
                frame = CapturedFrame(index=index, ts_ms=file_frame_ts(1_700_000_000_000, index, fps),
                                      rgb=np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8))
                reps += station.on_frame(processor.process(frame)).reps
            index += 1
    finally:
        capture.release()
        processor.close()
    return reps + station.finish().reps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 5, 10],
                        help="classify every k-th frame (1 = every frame; 5 = 6 fps from a 30 fps clip)")
    args = parser.parse_args()
    data = require_data_dir()
    with (data / "ground_truth.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["exercise"] in TRAINING_CLIPS]
    exact: dict[tuple[str, bool, int], int] = defaultdict(int)
    clips: dict[tuple[str, bool], int] = defaultdict(int)
    # Grading at each rate: reps judged bad on clips whose every labelled rep is good (false alarms a member sees).
    good_reps: dict[tuple[str, int], int] = defaultdict(int)
    judged_bad: dict[tuple[str, int], int] = defaultdict(int)
    started = time.monotonic()
    for row in rows:
        name, exercise = Path(row["path"]).stem, row["exercise"]
        held_out = name not in TRAINING_CLIPS[exercise]
        clips[exercise, held_out] += 1
        graded = {step: count_reps(data / row["path"], exercise, step) for step in args.steps}
        counts = {step: len(reps) for step, reps in graded.items()}
        all_good = set(row["form"].split()) == {"good"}
        for step, counted in counts.items():
            exact[exercise, held_out, step] += counted == int(row["complete_reps"])
            if all_good:
                good_reps[exercise, step] += counted
                judged_bad[exercise, step] += sum(r.verdict == "bad" for r in graded[step])
        print(f"{time.monotonic() - started:6.0f}s {name:40} expected {row['complete_reps']:>2}  counted "
              + "  ".join(f"1/{step}: {counted:>2}" for step, counted in counts.items()), flush=True)
    print("\nclips counted exactly, by share of frames classified (30 fps clip: 1/5 = 6 fps, 1/10 = 3 fps)")
    print(f"{'exercise':10} {'clips':>16} " + " ".join(f"{'1/' + str(step):>8}" for step in args.steps))
    for (exercise, held_out), total in sorted(clips.items()):
        kind = "held-out" if held_out else "in training"
        print(f"{exercise:10} {f'{total} {kind}':>16} "
              + " ".join(f"{exact[exercise, held_out, step]:>8}" for step in args.steps))
    print("\nreps judged bad on clips whose labelled reps are all good (bad / counted)")
    print(f"{'exercise':10} " + " ".join(f"{'1/' + str(step):>10}" for step in args.steps))
    for exercise in sorted({e for e, _ in good_reps}):
        print(f"{exercise:10} " + " ".join(f"{f'{judged_bad[exercise, step]}/{good_reps[exercise, step]}':>10}"
                                           for step in args.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
