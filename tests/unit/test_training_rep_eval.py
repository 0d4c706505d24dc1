"""Held-out rep counting (formcheck_models.training.rep_eval) on synthetic poses and model outputs; no TensorFlow.

The central check: for the same pose track and model outputs, ``frame_messages`` builds exactly the
messages the edge node's ``FrameProcessor`` publishes (run here with a stand-in pose estimator and a real
``PhaseFormClassifier`` over a stand-in interpreter).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from formcheck_edge import classifier as classifier_module
from formcheck_edge import features as F
from formcheck_edge.capture import CapturedFrame, file_frame_ts
from formcheck_edge.classifier import MODEL_PHASES, PhaseFormClassifier
from formcheck_edge.config import FaultSection, load_config
from formcheck_edge.faults import frame_faults
from formcheck_edge.processor import PUBLISHED_ANGLES, FrameProcessor
from formcheck_models.training.dataset import DEFAULT_MIN_VISIBILITY, ClipPoses, ClipTruth, clip_features
from formcheck_models.training.metrics import Scores
from formcheck_models.training.rep_eval import (
    BOOT,
    NODE,
    T0_MS,
    ClipRepCount,
    RepCountTotals,
    evaluate_clip,
    frame_messages,
    match_bottoms,
    run_station,
)
from formcheck_models.training.report import RunSummary, render_report
from formcheck_protocol.messages import FrameMessage, RepMessage
from tests.unit.synthetic_frames import rep_segments, squat_clip
from tests.unit.test_features import skeleton

FPS = 30.0
NO_POSE = 3        # frame without a detected pose
LOW_VIS = 5        # frame whose lower body is barely visible: no_person, but with a visibility
ROUNDS_BAD = 20    # bad_p 0.49996 rounds to 0.5: bad, as on the edge
ROUNDS_GOOD = 21   # bad_p 0.49994 rounds to 0.4999: good


def squat_poses(n: int = 40) -> ClipPoses:
    """One squat: knee 175° → 60° → 175°, trunk leaning up to 60° at the bottom, two frames without a person.

    Seen obliquely (turned 60° about the vertical): head-on, the trunk's lean would not be judged.
    """
    t = np.sin(np.linspace(0.0, np.pi, n)) ** 2
    poses = [skeleton(175.0 - 115.0 * k, trunk_deg=60.0 * k) for k in t]
    turn = np.radians(60.0)
    about_vertical = np.array([[np.cos(turn), 0.0, -np.sin(turn)], [0.0, 1.0, 0.0], [np.sin(turn), 0.0, np.cos(turn)]])
    world = (np.stack([p.world for p in poses]) @ about_vertical).astype(np.float32)
    visibility = np.stack([p.visibility for p in poses]).astype(np.float32)
    present = np.ones(n, dtype=bool)
    present[NO_POSE] = False
    world[NO_POSE] = 0.0
    visibility[NO_POSE] = 0.0
    visibility[LOW_VIS, list(F.LOWER_BODY)] = 0.1
    return ClipPoses(fps=FPS, world=world, visibility=visibility, present=present)


def model_outputs(poses: ClipPoses) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Random phase probabilities and bad_p per frame; NaN where the edge node would not run the model."""
    rng = np.random.default_rng(7)
    phase_p = rng.dirichlet(np.ones(len(MODEL_PHASES)) * 0.5, size=poses.frames).astype(np.float32)
    bad_p = rng.uniform(0.0, 1.0, size=poses.frames).astype(np.float32)
    bad_p[ROUNDS_BAD], bad_p[ROUNDS_GOOD] = 0.49996, 0.49994
    runs = clip_features(poses).present
    phase_p[~runs] = np.nan
    bad_p[~runs] = np.nan
    return phase_p, bad_p


class _FakeInterpreter:
    """Plays back given model outputs, one frame per ``invoke``; records the inputs it was fed."""

    def __init__(self, outputs: Iterator[tuple[npt.NDArray[np.float32], float]]) -> None:
        self._outputs = outputs
        self.inputs: list[npt.NDArray[np.float32]] = []
        self._phase = np.zeros((1, len(MODEL_PHASES)), np.float32)
        self._bad = np.zeros((1, 1), np.float32)

    def allocate_tensors(self) -> None:
        pass

    def get_input_details(self) -> list[dict[str, Any]]:
        return [{"index": 0, "shape": np.array([1, len(F.feature_names())])}]

    def get_output_details(self) -> list[dict[str, Any]]:
        return [{"index": 1, "shape": np.array([1, 1])}, {"index": 2, "shape": np.array([1, len(MODEL_PHASES)])}]

    def set_tensor(self, index: int, value: npt.NDArray[np.float32]) -> None:
        self.inputs.append(value.reshape(-1).copy())

    def invoke(self) -> None:
        phase, bad = next(self._outputs)
        self._phase, self._bad = phase.reshape(1, -1), np.array([[bad]], np.float32)

    def get_tensor(self, index: int) -> npt.NDArray[np.float32]:
        return self._bad if index == 1 else self._phase


class _FakePose:
    def __init__(self, poses: ClipPoses) -> None:
        self._poses = poses
        self._next = 0

    def detect(self, rgb: object, ts_ms: int) -> F.PoseLandmarks | None:
        i, self._next = self._next, self._next + 1
        if not self._poses.present[i]:
            return None
        return F.PoseLandmarks(world=self._poses.world[i], visibility=self._poses.visibility[i])

    def close(self) -> None:
        pass


def edge_messages(
    poses: ClipPoses, phase_p: npt.NDArray[np.float32], bad_p: npt.NDArray[np.float32], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[list[FrameMessage], list[npt.NDArray[np.float32]]]:
    """What the edge node's processor publishes for this pose track when its model outputs ``phase_p``/``bad_p``."""
    runs = np.isfinite(bad_p)
    interpreter = _FakeInterpreter(iter(zip(phase_p[runs], bad_p[runs].tolist(), strict=True)))
    monkeypatch.setattr(classifier_module, "_make_interpreter", lambda path, threads: interpreter)
    model = tmp_path / "squat_phase_form.tflite"
    model.write_bytes(b"stand-in")
    model.with_suffix(".json").write_text(json.dumps({
        "name": model.stem, "version": "0", "exercise": "squat", "feature_spec_version": F.FEATURE_SPEC_VERSION,
        "feature_spec_hash": F.feature_spec_hash(), "input_size": len(F.feature_names()),
        "phases": list(MODEL_PHASES), "bad_threshold": 0.5,
    }))
    config = load_config(None, {"node": {"id": NODE, "exercise": "squat"}}, environ={})
    processor = FrameProcessor(config=config, boot=BOOT, exercise="squat", pose=_FakePose(poses),  # type: ignore[arg-type]
                               classifiers={"squat": PhaseFormClassifier(model)})
    rgb = np.zeros((2, 2, 3), np.uint8)
    out = [processor.process(CapturedFrame(index=i, ts_ms=file_frame_ts(T0_MS, i, poses.fps), rgb=rgb))
           for i in range(poses.frames)]
    return out, interpreter.inputs


def test_messages_are_exactly_what_the_edge_processor_publishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    poses = squat_poses()
    phase_p, bad_p = model_outputs(poses)
    expected, fed = edge_messages(poses, phase_p, bad_p, tmp_path, monkeypatch)
    assert frame_messages(poses, phase_p, bad_p) == expected
    # The training features are the vectors the edge node feeds its model, frame for frame.
    features = clip_features(poses)
    np.testing.assert_array_equal(np.stack(fed), features.vectors[features.present])
    # The comparison covered the cases that matter.
    phases = {m.phase for m in expected}
    assert {"no_person", *MODEL_PHASES} <= phases
    assert any(m.faults for m in expected) and any(m.form == "bad" for m in expected)


def test_no_person_frames_rounding_and_timing() -> None:
    poses = squat_poses()
    phase_p, bad_p = model_outputs(poses)
    messages = frame_messages(poses, phase_p, bad_p)
    assert [m.seq for m in messages] == list(range(poses.frames))
    assert [m.ts for m in messages] == [T0_MS + round(i * 1000.0 / FPS) for i in range(poses.frames)]
    assert {m.boot for m in messages} == {BOOT} and {m.node for m in messages} == {NODE}

    no_pose, low_vis = messages[NO_POSE], messages[LOW_VIS]
    assert (no_pose.phase, no_pose.phase_p, no_pose.angles) == ("no_person", {}, {})
    assert (no_pose.vis, no_pose.bad_p, no_pose.form) == (0.0, 0.0, "good")
    lower = F.frame_features(F.PoseLandmarks(world=poses.world[LOW_VIS], visibility=poses.visibility[LOW_VIS]))
    assert lower.lower_body_visibility < DEFAULT_MIN_VISIBILITY
    assert low_vis.phase == "no_person" and low_vis.form == "good" and low_vis.phase_p == {}
    assert low_vis.vis == round(lower.visibility, 3) > 0

    assert (messages[ROUNDS_BAD].bad_p, messages[ROUNDS_BAD].form) == (0.5, "bad")
    assert (messages[ROUNDS_GOOD].bad_p, messages[ROUNDS_GOOD].form) == (0.4999, "good")
    i = 10
    assert messages[i].phase == MODEL_PHASES[int(np.argmax(phase_p[i]))]
    assert messages[i].phase_p == {ph: round(float(p), 4) for ph, p in zip(MODEL_PHASES, phase_p[i], strict=True)}
    angles = F.frame_features(F.PoseLandmarks(world=poses.world[i], visibility=poses.visibility[i])).angles
    assert messages[i].angles == {name: round(angles[name], 3) for name in PUBLISHED_ANGLES}


def test_faults_follow_the_predicted_phase() -> None:
    poses = squat_poses()
    deepest = poses.frames // 2
    angles = F.frame_features(F.PoseLandmarks(world=poses.world[deepest], visibility=poses.visibility[deepest])).angles
    assert frame_faults("squat", "bottom", angles, FaultSection()) == ["forward_lean"]
    phase_p = np.zeros((poses.frames, len(MODEL_PHASES)), np.float32)
    bad_p = np.zeros(poses.frames, np.float32)
    for phase, faults in (("standing", []), ("bottom", ["forward_lean"])):
        phase_p[:] = 0.0
        phase_p[:, MODEL_PHASES.index(phase)] = 1.0
        assert frame_messages(poses, phase_p, bad_p)[deepest].faults == faults
    # Stricter rules are honoured.
    lenient = FaultSection(forward_lean_deg=89.0)
    assert frame_messages(poses, phase_p, bad_p, faults=lenient)[deepest].faults == []


def test_a_person_frame_without_model_output_or_wrong_shapes_are_errors() -> None:
    poses = squat_poses()
    phase_p, bad_p = model_outputs(poses)
    missing = phase_p.copy()
    missing[10] = np.nan
    with pytest.raises(ValueError, match="frame 10"):
        frame_messages(poses, missing, bad_p)
    with pytest.raises(ValueError, match="shape"):
        frame_messages(poses, phase_p[:-1], bad_p[:-1])


def truth(bottoms: tuple[int, ...], forms: tuple[str, ...], partial: int = 0) -> ClipTruth:
    return ClipTruth(path="videos/squat/clip_a.mp4", exercise="squat", view="side", complete_reps=len(bottoms),
                     partial_reps=partial, bottom_frames=bottoms, form=forms, confidence="high")


def test_station_reps_are_compared_with_the_ground_truth() -> None:
    clip = squat_clip(rep_segments(2))
    result = run_station(clip.frames)
    assert len(result.reps) == 2 and result.partial_reps == 0
    bottoms = tuple((clip.span("bottom", k).start + clip.span("bottom", k).last) // 2 for k in range(2))
    count = evaluate_clip(truth(bottoms, ("knees_in", "good")), "person_a", result)
    assert (count.clip, count.group, count.expected, count.counted) == ("clip_a", "person_a", 2, 2)
    assert count.count_error == 0
    assert count.matched == (0, 1)
    assert all(abs(e) <= 5 for e in count.bottom_errors)
    assert count.labelled_fault and not count.flagged_bad
    assert count.rep_form(True) == (1, 0) and count.rep_form(False) == (1, 0)

    # A third labelled rep in the trailing standing frames is missed; the count is one short.
    missed = evaluate_clip(truth((*bottoms, clip.frames[-1].seq - 2), ("good",) * 3), "person_a", result)
    assert (missed.count_error, missed.matched, len(missed.bottom_errors)) == (-1, (0, 1, None), 2)


def rep(start: int, bottom: int, end: int, verdict: str = "good") -> RepMessage:
    return RepMessage.model_construct(start_seq=start, bottom_seq=bottom, end_seq=end, verdict=verdict)


def test_a_labelled_bottom_belongs_to_the_counted_rep_that_contains_it() -> None:
    reps = [rep(10, 30, 50), rep(60, 75, 90)]
    assert match_bottoms([32, 70], reps) == (0, 1)
    assert match_bottoms([5, 70, 95], reps) == (None, 1, None)
    # Two labelled reps inside one counted rep (merged): only the nearer one is matched.
    assert match_bottoms([20, 33], reps[:1]) == (None, 0)
    assert match_bottoms([], reps) == ()


def counted(name: str, expected: tuple[int, ...], reps: tuple[int, ...], forms: tuple[str, ...],
            verdicts: tuple[str, ...], matched: tuple[int | None, ...]) -> ClipRepCount:
    return ClipRepCount(clip=name, group=name, view="side", expected=len(expected), counted=len(reps),
                        partial_expected=0, partial_counted=1 if len(reps) < len(expected) else 0,
                        labelled_bottoms=expected, counted_bottoms=reps, matched=matched, forms=forms,
                        verdicts=verdicts)


def test_totals_over_clips() -> None:
    results = [
        counted("a", (10, 50), (12, 47), ("knees_in", "good"), ("bad", "good"), (0, 1)),
        counted("b", (30,), (), ("knee_over_toes",), (), (None,)),
        counted("c", (20,), (20, 80), ("good",), ("perfect", "bad"), (0,)),
    ]
    t = RepCountTotals.of(results)
    assert (t.clips, t.exact, t.expected, t.counted, t.matched) == (3, 1, 4, 4, 3)
    assert t.mean_abs_count_error == pytest.approx(2 / 3)
    assert (t.bottom_mean_abs, t.bottom_median_abs, t.bottom_max_abs) == (pytest.approx(5 / 3), 2, 3)
    assert (t.fault_clips, t.fault_clips_flagged, t.other_clips, t.other_clips_flagged) == (2, 1, 1, 1)
    assert (t.fault_reps, t.fault_reps_bad, t.good_reps, t.good_reps_bad) == (1, 1, 2, 0)
    assert "1/3 clips exact" in t.one_line()


def test_report_has_the_rep_counting_section() -> None:
    scores = Scores(labels=("good", "bad"), confusion=np.array([[3, 0], [1, 1]], dtype=np.int64))
    run = RunSummary(
        exercise="squat", data_fingerprint="ground_truth.csv sha256 0", data_files=(), pose_model="pose",
        feature_spec="v1",
        label_rules="rules", evaluation_method="method", train_config="config", bad_threshold=0.5, clips=(),
        phase_labels=("good", "bad"), pooled_phase=scores, pooled_form=scores, baseline_phase=scores,
        baseline_form=scores, groups=(), fault_groups=(), model_path="m.tflite", model_sha256="0" * 64,
        rep_counts=(counted("clip_b", (30, 90), (31,), ("too_deep", "good"), ("bad",), (0, None)),),
    )
    text = render_report(run)
    assert "## Rep counting on held-out predictions" in text
    assert "| clips counted exactly | 0 / 1 |" in text
    row = "| clip_b | clip_b | side | 2 | **1** | 0 | 1 | 30→31, 90→missed | +1 | too_deep good | bad | yes / yes |"
    assert row in text
