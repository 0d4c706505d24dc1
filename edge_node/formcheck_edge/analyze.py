"""``formcheck analyze``: a video through the edge pipeline and the station logic, no broker, no database.

It is how a gym checks a camera placement before going live, and it runs the
same code as the live system: :func:`formcheck_edge.offline.classify_video` then
:class:`formcheck_aggregator.station.Station`. It lives with the edge because it needs the
edge's install (MediaPipe, OpenCV, LiteRT) and runs where that is: on a station's
Raspberry Pi or a laptop, never in the aggregator's image; the aggregator's
station logic it borrows is pure Python (docs/architecture.md).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from formcheck_aggregator.recognition import Recognition, RecognitionConfig
from formcheck_aggregator.reps import RepConfig
from formcheck_aggregator.station import Station, StationOutput
from formcheck_edge.exercise_gate import ExerciseGate
from formcheck_edge.offline import classify_video, offline_config
from formcheck_edge.processor import FrameProcessor
from formcheck_protocol.messages import Exercise, FrameMessage, RepMessage, SetMessage


@dataclass
class Analysis:
    video: str
    exercise: Exercise
    frames: int = 0
    no_person: int = 0
    sets: list[SetMessage] = field(default_factory=list)
    reps: list[RepMessage] = field(default_factory=list)
    partials_outside_sets: int = 0
    view_yaw: list[float] = field(default_factory=list)
    feet_unseen: int = 0
    """Frames with a person whose better-seen ankle is below recognition's ``feet_seen_visibility``."""
    recognition: Recognition | None = None
    """How the exercise was recognised, when it was not given."""

    @property
    def complete_reps(self) -> int:
        return len(self.reps)

    @property
    def partial_reps(self) -> int:
        return sum(s.partial_reps for s in self.sets) + self.partials_outside_sets

    @property
    def flagged_bad(self) -> bool:
        return any(r.verdict == "bad" for r in self.reps)

    def to_json(self) -> list[dict[str, object]]:
        """A list of sets, each with its reps."""
        return [
            {**s.model_dump(mode="json"), "rep_list": [r.model_dump(mode="json") for r in self.reps
                                                       if r.set_id == s.set_id]}
            for s in self.sets
        ]

    def placement_advice(self) -> list[str]:
        """Camera placement hints a gym can act on."""
        advice: list[str] = []
        if self.frames and self.no_person / self.frames > 0.3:
            advice.append(f"no person found in {self.no_person / self.frames:.0%} of frames: check that the whole "
                          "body, feet to head, is in the picture")
        seen = self.frames - self.no_person
        # A push-up filmed head-on hides the feet behind the body, and the side view it needs shows them.
        if self.exercise in ("squat", "lunge") and seen and self.feet_unseen / seen > 0.3:
            advice.append(f"the feet are not seen in {self.feet_unseen / seen:.0%} of frames with a person: the "
                          "pose model guesses the legs there, so depth and knees are guesses; move the camera back "
                          "or clear what hides them until it shows feet to head")
        if self.view_yaw:
            yaw = statistics.median(self.view_yaw)
            view = "side" if yaw > 55 else "front/rear" if yaw < 35 else "oblique"
            if self.exercise == "squat":
                hint = {"side": "good for depth and forward lean; knees caving in is judged from the front only",
                        "front/rear": "good for knees caving in; depth and lean are less precise than from the side",
                        "oblique": "between side and front: depth works, knees caving in is not judged"}[view]
                advice.append(f"camera sees the lifter from the {view} (median yaw {yaw:.0f}°): {hint}")
        return advice


def analyze_video(video: Path, exercise: Exercise | None = None, node: str = "analyze",
                  progress: TextIO | None = None) -> Analysis:
    """Classify every frame of ``video`` and run the station logic over it.

    Without ``exercise`` the exercise is recognised from the pose within the first rep, exactly as an edge node
    checked in without one does (:class:`formcheck_edge.exercise_gate.ExerciseGate`).
    """
    if exercise is not None:
        frames = list(classify_video(offline_config(video, node=node, exercise=exercise)))
        return analyze_frames(frames, str(video), exercise, node, progress)
    gates: list[ExerciseGate] = []

    def recognising(processor: FrameProcessor) -> ExerciseGate:
        gates.append(ExerciseGate(processor, processor.config.recognition))
        gates[0].recognise()
        return gates[0]

    frames = list(classify_video(offline_config(video, node=node), recognising))
    recognition = gates[0].recognition if gates else None
    if progress is not None and recognition is not None:
        print(f"recognised: {recognition.exercise} (confidence {recognition.confidence:.2f}: {recognition.reason})",
              file=progress)
    recognised = frames[-1].exercise if frames else "squat"
    result = analyze_frames(frames, str(video), recognised, node, progress)
    result.recognition = recognition
    return result


def analyze_frames(frames: Iterable[FrameMessage], video: str, exercise: Exercise = "squat", node: str = "analyze",
                   progress: TextIO | None = None, rep_config: RepConfig | None = None) -> Analysis:
    """Run the station logic over a video's frame messages (as the edge published them), in order."""
    result = Analysis(video=video, exercise=exercise)
    station = Station(node, exercise, rep_config)

    def take(out: StationOutput) -> None:
        for rep in out.reps:
            result.reps.append(rep)
            if progress is not None:
                faults = ", ".join(rep.faults) or "-"
                print(f"  rep {rep.rep_index:2d}  score {rep.score:5.1f}  grade {rep.grade}  {rep.verdict:<7}  "
                      f"depth {rep.depth:+.2f}  down {rep.descent_s:.1f}s up {rep.ascent_s:.1f}s  "
                      f"bad frames {rep.bad_ratio:.0%}  faults: {faults}", file=progress)
        for s in out.sets:
            result.sets.append(s)
            if progress is not None:
                print(f"set: {s.reps} reps ({s.partial_reps} partial), mean {s.score_mean:.1f}, worst "
                      f"{s.score_min:.1f}, grade {s.grade}{', ' + s.main_fault if s.main_fault else ''}"
                      f"{'' if s.complete else ' (aborted)'}", file=progress)

    feet_seen = RecognitionConfig().feet_seen_visibility
    for frame in frames:
        result.frames += 1
        if frame.phase == "no_person":
            result.no_person += 1
        else:
            if "view_yaw" in frame.angles:
                result.view_yaw.append(frame.angles["view_yaw"])
            result.feet_unseen += frame.angles.get("ankle_vis", 1.0) < feet_seen
        take(station.on_frame(frame))
    take(station.finish())
    result.partials_outside_sets = station.partials_outside_sets
    return result


def run_analyze(video: Path, exercise: Exercise | None, as_json: bool) -> int:
    if video.is_dir():
        raise FileNotFoundError(f"{video} is a directory, not a video file")
    if not video.is_file():
        raise FileNotFoundError(f"video not found: {video}")
    progress = None if as_json else sys.stdout
    if progress is not None:
        print(f"{video.name}: analysing as {exercise or 'the exercise recognised from the pose'}", file=progress)
    result = analyze_video(video, exercise, progress=progress)
    if as_json:
        json.dump(result.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"{result.frames} frames, {result.complete_reps} complete reps, {result.partial_reps} partial, "
          f"{len(result.sets)} set(s)")
    for line in result.placement_advice():
        print(f"camera: {line}")
    return 0
