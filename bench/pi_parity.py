"""Does a Raspberry Pi reach the same decisions as the x86-64 machine the classifiers are trained on?

Each clip goes through the edge's offline path (``formcheck_edge.offline.classify_video``: decode, pose,
features, classifier, fault rules) twice with the same locked dependencies: here, and on an emulated Pi
(``bench.emulated_pi``, Cortex-A72 by default), and the frame messages are compared frame by frame, then
counted into reps by the same ``formcheck_aggregator.station.Station``. The two differ only where float arithmetic
does: the video decoder's colour conversion and the pose model's SIMD kernels round differently on ARM.

Emulation runs about 3 s per frame, so the default clips are short ones of each kind (side, front,
oblique; squat and push-up; in and out of the classifiers' training set): about 30 minutes per board.

    make bench-pi            (= python -m bench.pi_parity [--board pi4|pi5] [--clips CLIP ...])
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from formcheck_runtime.paths import require_data_dir

DEFAULT_CLIPS = (
    "videos/squat/squat_side_bodyweight_b.mp4",
    "videos/squat/squat_front_bodyweight_d.mp4",
    "videos/squat/squat_oblique_barbell_e.mp4",
    "videos/pushup/pushup_side_01.mp4",
    "videos/pushup/pushup_oblique_17.mp4",
)
ANGLES = ("knee", "hip", "trunk_lean", "knee_valgus", "elbow", "view_yaw")
CLEAR_MARGIN = 0.2
"""Frames whose top two x86-64 phase probabilities differ by at least this are 'clearly decided'."""


def dump(video: Path, exercise: str, out: Path) -> None:
    """Write every frame message of ``video`` as JSON lines (run on each platform)."""
    from formcheck_edge.offline import classify_video, offline_config

    with out.open("w") as fh:
        for frame in classify_video(offline_config(video, node="parity", exercise=exercise)):  # type: ignore[arg-type]
            fh.write(frame.model_dump_json() + "\n")


def count_reps(frames: list[dict[str, object]], exercise: str) -> int:
    from formcheck_aggregator.station import Station
    from formcheck_protocol.messages import FrameMessage

    station = Station("parity", exercise)  # type: ignore[arg-type]
    reps = 0
    for raw in frames:
        reps += len(station.on_frame(FrameMessage.model_validate(raw)).reps)
    return reps + len(station.finish().reps)


@dataclass
class ClipParity:
    clip: str
    expected: int
    frames: int
    person_mismatch: int
    phase_agree: float
    clear_phase_agree: float
    form_agree: float
    angle_diffs: dict[str, list[float]]
    reps_x86: int
    reps_pi: int
    pi_seconds: float


def compare(clip: str, expected: int, exercise: str, x86: list[dict[str, object]], pi: list[dict[str, object]],
            pi_seconds: float) -> ClipParity:
    if len(x86) != len(pi):
        raise SystemExit(f"{clip}: {len(x86)} frames here, {len(pi)} on the Pi")
    both = mismatch = same_phase = clear = same_clear = same_form = 0
    diffs: dict[str, list[float]] = {name: [] for name in ANGLES}
    for a, b in zip(x86, pi, strict=True):
        if (a["phase"] == "no_person") != (b["phase"] == "no_person"):
            mismatch += 1
            continue
        if a["phase"] == "no_person":
            continue
        both += 1
        same_phase += a["phase"] == b["phase"]
        same_form += a["form"] == b["form"]
        probs = sorted(a["phase_p"].values(), reverse=True)  # type: ignore[attr-defined]
        if probs[0] - probs[1] >= CLEAR_MARGIN:
            clear += 1
            same_clear += a["phase"] == b["phase"]
        for name in ANGLES:
            angles_a, angles_b = a["angles"], b["angles"]
            if name in angles_a and name in angles_b:  # type: ignore[operator]
                diffs[name].append(abs(angles_a[name] - angles_b[name]))  # type: ignore[index]
    return ClipParity(
        clip=clip, expected=expected, frames=len(x86), person_mismatch=mismatch,
        phase_agree=same_phase / max(both, 1), clear_phase_agree=same_clear / max(clear, 1),
        form_agree=same_form / max(both, 1), angle_diffs=diffs,
        reps_x86=count_reps(x86, exercise), reps_pi=count_reps(pi, exercise), pi_seconds=pi_seconds,
    )


def read(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def main() -> int:
    from bench.emulated_pi import PI_CPUS, EmulationError, prepare

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--board", choices=sorted(PI_CPUS), default="pi4")
    parser.add_argument("--clips", nargs="+", default=list(DEFAULT_CLIPS), help="data-set-relative clip paths")
    parser.add_argument("--out", type=Path, default=Path("pi-parity"), help="folder for the frame dumps")
    args = parser.parse_args()
    data = require_data_dir()
    with (data / "ground_truth.csv").open() as fh:
        truth = {row["path"]: row for row in csv.DictReader(fh)}
    try:
        pi = prepare(args.board)
    except EmulationError as exc:
        print(f"emulated {args.board}: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    results: list[ClipParity] = []
    for clip in args.clips:
        row = truth[clip]
        name = Path(clip).stem
        here, there = args.out / f"{name}.x86_64.jsonl", args.out / f"{name}.{args.board}.jsonl"
        dump(data / clip, row["exercise"], here)
        started = time.monotonic()
        result = subprocess.run(
            pi.command("-m", "bench.pi_parity", "dump", str(data / clip), row["exercise"], str(there.resolve())),
            capture_output=True, text=True, check=False, env=pi.environment())
        if result.returncode != 0:
            print(f"{name}: emulated run failed: {result.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return 1
        results.append(compare(name, int(row["complete_reps"]), row["exercise"], read(here), read(there),
                               time.monotonic() - started))
        report(results[-1:], args.board, header=len(results) == 1)
    print("\nall clips:")
    report(results, args.board, header=True, total=True)
    return 0


def report(results: list[ClipParity], board: str, *, header: bool, total: bool = False) -> None:
    if header:
        print(f"{'clip':36} {'frames':>6} {'person':>6} {'phase':>6} {'clear':>6} {'form':>6}  "
              f"{'knee |d| p50/p95/max':>21} {'hip |d| p95':>11}  reps x86/{board}/truth  s/frame")
    rows = results if not total else [_pooled(results)]
    for r in rows:
        knee = np.array(r.angle_diffs["knee"] or [0.0])
        hip = np.array(r.angle_diffs["hip"] or [0.0])
        print(f"{r.clip:36} {r.frames:>6} {r.person_mismatch:>6} {r.phase_agree:>6.3f} {r.clear_phase_agree:>6.3f} "
              f"{r.form_agree:>6.3f}  {np.percentile(knee, 50):>6.2f}/{np.percentile(knee, 95):>5.2f}/"
              f"{knee.max():>6.2f}° {np.percentile(hip, 95):>10.2f}°  {r.reps_x86:>3}/{r.reps_pi}/{r.expected:<6}"
              f"  {r.pi_seconds / max(r.frames, 1):>6.2f}")


def _pooled(results: list[ClipParity]) -> ClipParity:
    frames = sum(r.frames for r in results)

    def mean(attr: str) -> float:
        return float(sum(getattr(r, attr) * r.frames for r in results)) / max(frames, 1)

    return ClipParity(
        clip=f"{len(results)} clips (frame-weighted)", expected=sum(r.expected for r in results), frames=frames,
        person_mismatch=sum(r.person_mismatch for r in results), phase_agree=mean("phase_agree"),
        clear_phase_agree=mean("clear_phase_agree"), form_agree=mean("form_agree"),
        angle_diffs={name: [d for r in results for d in r.angle_diffs[name]] for name in ANGLES},
        reps_x86=sum(r.reps_x86 for r in results), reps_pi=sum(r.reps_pi for r in results),
        pi_seconds=sum(r.pi_seconds for r in results),
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["dump"]:  # the emulated side: python -m bench.pi_parity dump VIDEO EXERCISE OUT
        dump(Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]))
        sys.exit(0)
    sys.exit(main())
