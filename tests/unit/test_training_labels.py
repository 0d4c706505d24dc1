"""Per-frame label derivation on synthetic depth trajectories (pure logic: no video, no model)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from formcheck_aggregator.reps import DEPTH_SIGNAL
from formcheck_models.training.labels import (
    ASCENDING,
    BAD,
    BOTTOM,
    DESCENDING,
    GOOD,
    IGNORE,
    STANDING,
    FrameLabels,
    depth_signal,
    label_clip,
    smooth,
)
from formcheck_protocol.messages import FrameMessage
from tests.unit.synthetic_frames import BOOT, TS0

TOP, DEPTH = -1.0, 0.1


def stand(n: int) -> list[float]:
    return [TOP] * n


def rep(descent: int = 20, hold: int = 6, ascent: int = 20, depth: float = DEPTH) -> list[float]:
    """Eased descent from standing to ``depth``, a hold, and the ascent back."""
    down = TOP + (depth - TOP) * (1 - np.cos(np.linspace(0, np.pi, descent))) / 2
    up = down[::-1]
    return [*down.tolist(), *([depth] * hold), *up.tolist()]


def signal(*parts: list[float]) -> np.ndarray:
    return np.array(list(itertools.chain(*parts)), dtype=np.float32)


def runs(values: np.ndarray) -> list[int]:
    """Run-length-compressed sequence of labels."""
    return [int(k) for k, _ in itertools.groupby(values.tolist())]


def one_rep(descent: int = 20, hold: int = 6) -> tuple[np.ndarray, int]:
    """Signal with one rep after 30 standing frames, and the frame in the middle of its hold."""
    return signal(stand(30), rep(descent=descent, hold=hold), stand(30)), 30 + descent + hold // 2


def test_single_rep_runs_standing_descending_bottom_ascending_standing() -> None:
    depth, bottom = one_rep()
    labels = label_clip(depth, [bottom], ["good"], partial_reps=0)
    assert runs(labels.phase) == [STANDING, DESCENDING, BOTTOM, ASCENDING, STANDING]
    assert labels.phase[bottom] == BOTTOM
    assert (labels.phase[30 + 20:30 + 20 + 6] == BOTTOM).all()  # the whole hold
    assert len(labels.reps) == 1 and labels.reps[0].form == "good"
    assert (labels.bad == GOOD).all()


def test_descent_starts_when_the_signal_leaves_the_standing_band() -> None:
    depth, bottom = one_rep()
    labels = label_clip(depth, [bottom], ["good"], partial_reps=0)
    first = int(np.flatnonzero(labels.phase == DESCENDING)[0])
    # The eased ramp needs a few frames to rise 12% of its amplitude; standing frames are never descending.
    assert 30 <= first <= 30 + 6


@pytest.mark.parametrize("offset", [-5, -2, 3, 5])
def test_labels_do_not_depend_on_where_within_tolerance_the_human_put_the_bottom(offset: int) -> None:
    depth, bottom = one_rep()
    exact = label_clip(depth, [bottom], ["good"], partial_reps=0)
    shifted = label_clip(depth, [bottom + offset], ["good"], partial_reps=0)
    np.testing.assert_array_equal(exact.phase, shifted.phase)


def test_noisy_signal_still_gives_one_contiguous_rep() -> None:
    depth, bottom = one_rep()
    noisy = depth + np.random.default_rng(7).normal(0, 0.01, depth.shape).astype(np.float32)
    labels = label_clip(noisy, [bottom], ["good"], partial_reps=0)
    assert runs(labels.phase) == [STANDING, DESCENDING, BOTTOM, ASCENDING, STANDING]


def test_paused_rep_bottom_covers_the_pause() -> None:
    depth, bottom = one_rep(hold=30)
    labels = label_clip(depth, [bottom], ["good"], partial_reps=0)
    assert (labels.phase[50:80] == BOTTOM).all()


def test_touch_and_go_reps_are_split_at_the_top_between_them() -> None:
    depth = signal(stand(20), rep(), rep(), stand(20))
    labels = label_clip(depth, [20 + 23, 20 + 46 + 23], ["good", "good"], partial_reps=0)
    assert runs(labels.phase) == [STANDING, DESCENDING, BOTTOM, ASCENDING, STANDING, DESCENDING, BOTTOM, ASCENDING,
                                  STANDING]
    first, second = labels.reps
    assert first.end < second.start


def test_fault_rep_frames_are_bad_and_the_rest_good() -> None:
    depth = signal(stand(20), rep(), stand(20), rep(), stand(20))
    labels = label_clip(depth, [20 + 23, 86 + 23], ["good", "knees_in"], partial_reps=0)
    bad_rep = labels.reps[1]
    assert bad_rep.form == "knees_in"
    assert (labels.bad[bad_rep.start:bad_rep.end + 1] == BAD).all()
    outside = np.ones(len(depth), dtype=bool)
    outside[bad_rep.start:bad_rep.end + 1] = False
    assert (labels.bad[outside] == GOOD).all()


def test_unclear_rep_keeps_its_phases_but_is_excluded_from_form() -> None:
    depth, bottom = one_rep()
    labels = label_clip(depth, [bottom], ["unclear"], partial_reps=0)
    r = labels.reps[0]
    assert (labels.bad[r.start:r.end + 1] == IGNORE).all()
    assert labels.phase[bottom] == BOTTOM
    assert labels.bad[0] == GOOD


def test_frames_without_a_person_are_excluded_from_both_losses() -> None:
    depth, bottom = one_rep()
    depth[5:10] = np.nan
    depth[bottom + 12] = np.nan  # mid-ascent
    labels = label_clip(depth, [bottom], ["good"], partial_reps=0)
    for frame in (*range(5, 10), bottom + 12):
        assert labels.phase[frame] == IGNORE and labels.bad[frame] == IGNORE
    assert labels.phase[bottom] == BOTTOM


def test_rep_with_no_person_near_its_bottom_is_excluded() -> None:
    depth, bottom = one_rep()
    depth[bottom - 10:bottom + 11] = np.nan
    labels = label_clip(depth, [bottom], ["good"], partial_reps=0)
    assert labels.reps == ()
    assert (labels.phase[bottom - 8:bottom + 9] == IGNORE).all()


def _starts_at_bottom() -> np.ndarray:
    """A clip opening just before the end of a held bottom (tracking settles over 3 frames), then the ascent."""
    settle = [DEPTH - 0.03, DEPTH - 0.02, DEPTH - 0.01]
    return signal(settle, [DEPTH] * 6, rep()[26:], stand(20))


def test_partial_rep_at_clip_start_is_labelled_when_ground_truth_lists_it() -> None:
    labels = label_clip(_starts_at_bottom(), [], [], partial_reps=1)
    assert runs(labels.phase) == [BOTTOM, ASCENDING, STANDING]
    assert labels.reps[0].form is None
    rep_frames = slice(labels.reps[0].start, labels.reps[0].end + 1)
    assert (labels.bad[rep_frames] == IGNORE).all()
    assert labels.bad[-1] == GOOD


def test_edge_motion_is_excluded_when_ground_truth_lists_no_partial_rep() -> None:
    labels = label_clip(_starts_at_bottom(), [], [], partial_reps=0)
    assert labels.reps == ()
    assert labels.phase[0] == IGNORE and labels.phase[-1] == STANDING


def test_partial_rep_whose_deepest_frame_is_the_first_frame_is_excluded() -> None:
    # The clip may start mid-ascent: whether its first frames are bottom cannot be told.
    depth = signal(rep()[26:], stand(20))
    labels = label_clip(depth, [], [], partial_reps=1)
    assert labels.reps == ()
    assert labels.phase[0] == IGNORE
    assert labels.phase[-1] == STANDING


def test_partial_rep_at_clip_end() -> None:
    depth = signal(stand(20), rep()[:36])  # ends ten frames into the ascent
    labels = label_clip(depth, [], [], partial_reps=1)
    assert runs(labels.phase) == [STANDING, DESCENDING, BOTTOM, ASCENDING]


def test_clip_without_any_person() -> None:
    labels = label_clip(np.full(10, np.nan, dtype=np.float32), [], [], partial_reps=0)
    assert isinstance(labels, FrameLabels)
    assert (labels.phase == IGNORE).all() and (labels.bad == IGNORE).all()


def test_inconsistent_ground_truth_is_rejected() -> None:
    depth, bottom = one_rep()
    with pytest.raises(ValueError, match="form labels"):
        label_clip(depth, [bottom], [], partial_reps=0)
    with pytest.raises(ValueError, match="unknown form labels"):
        label_clip(depth, [bottom], ["sloppy"], partial_reps=0)


def test_depth_signal_per_exercise() -> None:
    measures = {"hip_depth": np.array([-1.0, 0.2], dtype=np.float32), "elbow": np.array([180.0, 90.0], np.float32),
                "shoulder_height": np.array([0.6, 0.1], dtype=np.float32)}
    np.testing.assert_allclose(depth_signal("squat", measures), [-1.0, 0.2])
    # Push-up: the shoulders' height (lowest at the bottom); curl: elbow flexion (peak flexion is the "bottom").
    np.testing.assert_allclose(depth_signal("pushup", measures), [-0.6, -0.1])
    np.testing.assert_allclose(depth_signal("curl", measures), [0.0, 0.5])
    with pytest.raises(ValueError, match="plank"):
        depth_signal("plank", measures)


def test_smooth_keeps_gaps_and_constant_signals() -> None:
    values = np.array([1.0, 1.0, np.nan, 1.0, 1.0, 1.0], dtype=np.float32)
    out = smooth(values, 5)
    assert np.isnan(out[2])
    np.testing.assert_allclose(out[[0, 1, 3, 4, 5]], 1.0)


def test_lunge_labels_read_the_rep_counters_depth_signal() -> None:
    """A lunge's bottom is where the hips are lowest (the data README): the labels and the counter both read it
    from ``hip_depth``, whatever the per-leg knee and hip angles do."""
    hip_depth = np.array([-1.0, -0.8, -0.5, -0.9], dtype=np.float32)
    measures = {"hip_depth": hip_depth, "knee_l": np.array([175.0, 90.0, 95.0, 170.0], np.float32),
                "knee_r": np.array([175.0, 120.0, 100.0, 170.0], np.float32)}
    frames = [FrameMessage(node="n", boot=BOOT, seq=i, ts=TS0 + 33 * i, exercise="lunge", phase="standing",
                           form="good", bad_p=0.0, vis=1.0,
                           angles={name: float(values[i]) for name, values in measures.items()})
              for i in range(len(hip_depth))]
    counter = [DEPTH_SIGNAL["lunge"].of(frame) for frame in frames]
    np.testing.assert_allclose(depth_signal("lunge", measures), np.array(counter, dtype=np.float32))
    np.testing.assert_allclose(depth_signal("lunge", measures), depth_signal("squat", measures))


def test_walking_lunges_cut_at_both_ends_alternating_legs() -> None:
    """Walking lunges as in the data set: the clip opens at the bottom of one lunge and ends going down into
    another (two partial reps); the legs alternate, so the hips sink less on one leg (-0.5 vs -0.6 thigh
    lengths below the knees) and the person never quite stands between lunges (-0.9, not -1.0)."""
    def lunge(depth: float) -> list[float]:
        return [max(v, -0.9) if i < 10 or i > 35 else v for i, v in enumerate(rep(depth=depth))]

    opening = signal([-0.62, -0.61] + [-0.6] * 5, rep(depth=-0.6)[26:])  # already at the bottom, then up
    depth = signal(opening, lunge(-0.5), lunge(-0.6), lunge(-0.5), stand(10), rep(depth=-0.6)[:24])
    starts = [len(opening) + 46 * k for k in range(3)]
    bottoms = [s + 23 for s in starts]
    labels = label_clip(depth, bottoms, ["good", "good", "good"], partial_reps=2)
    complete = [r for r in labels.reps if r.form is not None]
    assert len(complete) == 3
    for r, b in zip(complete, bottoms, strict=True):
        assert r.bottom_start <= b <= r.bottom_end
        assert (labels.phase[r.start:r.bottom_start] == DESCENDING).all()
        assert (labels.phase[r.bottom_end + 1:r.end + 1] == ASCENDING).all()
    assert runs(labels.phase) == [BOTTOM, ASCENDING, STANDING, *([DESCENDING, BOTTOM, ASCENDING, STANDING] * 3),
                                  DESCENDING, BOTTOM]
    # Partial reps are never judged for form; the complete ones are good.
    first, last = labels.reps[0], labels.reps[-1]
    assert first.form is None and last.form is None
    assert (labels.bad[first.start:first.end + 1] == IGNORE).all() and (labels.bad[last.start:] == IGNORE).all()
    assert (labels.bad[complete[0].start:complete[-1].end + 1] == GOOD).all()
