"""RepDetector on synthetic squat streams: reps from the depth signal, hysteresis, gaps, the range rules."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Sequence

import pytest

from formcheck_aggregator.reps import DEPTH_SIGNAL, RepConfig, RepDetector, RepEvent, locate_bottom
from formcheck_protocol.messages import FrameMessage
from tests.unit.synthetic_frames import BOOT, NODE, TS0, Clip, flip, make_frame, rep_segments, squat_clip


def run(frames: Sequence[FrameMessage], config: RepConfig | None = None, *, flush: bool = True) -> list[RepEvent]:
    detector = RepDetector("squat", config)
    events = [e for f in frames for e in detector.push(f)]
    if flush:
        events += detector.finish()
    return events


def kinds(events: Sequence[RepEvent]) -> list[str]:
    return [e.kind for e in events]


def complete(events: Sequence[RepEvent]) -> list[RepEvent]:
    return [e for e in events if e.kind == "complete"]


def partial(events: Sequence[RepEvent]) -> list[RepEvent]:
    return [e for e in events if e.kind == "partial"]


def one_rep_clip() -> Clip:
    return squat_clip(rep_segments(1))


# -- counting ------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3, 5])
def test_clean_reps_are_all_complete(n: int) -> None:
    events = run(squat_clip(rep_segments(n)).frames)
    assert kinds(events) == ["complete"] * n
    assert all(e.rep.reached_bottom for e in events)


def test_standing_only_and_empty_stream_give_nothing() -> None:
    assert run(squat_clip([("standing", 3.0)]).frames) == []
    assert run([]) == []


def test_complete_rep_boundaries_and_bottom() -> None:
    clip = squat_clip(rep_segments(2))
    events = run(clip.frames)
    assert kinds(events) == ["complete", "complete"]
    for k, event in enumerate(events):
        frames = event.rep.frames
        first, last = clip.index_of_seq(frames[0].seq), clip.index_of_seq(frames[-1].seq)
        assert abs(first - clip.span("descending", k).start) <= 2
        assert abs(last - clip.span("ascending", k).last) <= 2
        # contiguous: every frame between first and last, once, in order
        assert [f.seq for f in frames] == [clip.frames[i].seq for i in range(first, last + 1)]
        bottom = max(frames, key=lambda f: f.angles["hip_depth"])
        assert abs(clip.index_of_seq(bottom.seq) - clip.span("bottom", k).start) <= 2


@pytest.mark.parametrize("hold_s", [0.0, 0.3, 1.5])
def test_the_bottom_is_the_middle_of_a_pause(hold_s: float) -> None:
    """The data set's convention: for a paused rep, the middle of the pause; arriving and leaving bound it."""
    clip = squat_clip(rep_segments(1, hold=hold_s) if hold_s else rep_segments(1, hold=0.04))
    [event] = run(clip.frames)
    rep = event.rep
    assert rep.bottom is not None
    arrived, left = (clip.index_of_seq(rep.frames[i].seq) for i in rep.bottom)
    middle = clip.index_of_seq(rep.bottom_frame.seq)
    hold = clip.span("bottom")
    assert abs(middle - (hold.start + hold.last) / 2) <= 2
    assert arrived <= hold.start + 1 and left >= hold.last - 1
    assert arrived < middle < left or hold_s == 0.0


def test_a_plateau_of_zero_is_the_deepest_frame() -> None:
    clip = squat_clip(rep_segments(1, hold=0.5))
    frames = clip.frames
    first, last = locate_bottom(frames, DEPTH_SIGNAL["squat"], 0.0)
    deepest = max(DEPTH_SIGNAL["squat"].of(f) or -1e9 for f in frames)
    assert all(DEPTH_SIGNAL["squat"].of(frames[i]) == deepest for i in (first, last))
    with pytest.raises(ValueError, match="no frame"):
        locate_bottom([], DEPTH_SIGNAL["squat"], 0.1)


# -- smoothing and hysteresis ------------------------------------------------------


@pytest.mark.parametrize(
    ("segment", "offset", "wrong"),
    [
        ("standing", 10, "descending"),
        ("standing", 10, "bottom"),
        ("standing", 10, "ascending"),
        ("descending", 10, "standing"),
        ("descending", 10, "ascending"),
        ("bottom", 4, "standing"),
        ("bottom", 4, "descending"),
        ("ascending", 10, "descending"),
        ("ascending", 10, "standing"),
        ("ascending", 10, "bottom"),
    ],
)
@pytest.mark.parametrize("count", [1, 2])
def test_misclassified_frames_do_not_split_or_create_reps(segment: str, offset: int, wrong: str, count: int) -> None:
    clip = squat_clip(rep_segments(2))
    # in the first rep (or the standing before it) and in the standing between the reps
    for occurrence in (0, 1):
        start = clip.span(segment, occurrence).start + offset  # type: ignore[arg-type]
        for i in range(start, start + count):
            flip(clip.frames, i, wrong)  # type: ignore[arg-type]
    assert kinds(run(clip.frames)) == ["complete", "complete"]


def test_misclassified_no_person_frame_inside_a_rep_is_bridged() -> None:
    clip = one_rep_clip()
    flip(clip.frames, clip.span("bottom").start + 3, "no_person")
    flip(clip.frames, clip.span("ascending").start + 5, "no_person")
    assert kinds(run(clip.frames)) == ["complete"]


def test_the_classifier_alone_makes_no_rep() -> None:
    """The control for the test above: the classifier's phases are evidence, the body's movement decides."""
    clip = squat_clip([("standing", 1.0), ("bottom", 0.5), ("standing", 1.0)], top=-1.0)
    # body never moves (hip_depth flat at the top) but the classifier says 'bottom' for 0.5 s
    assert run(clip.frames) == []


def test_reps_are_counted_whatever_the_classifier_says() -> None:
    # a new person the classifier never saw: every frame 'standing', the hips go down and up twice
    clip = squat_clip(rep_segments(2))
    for i in range(len(clip.frames)):
        flip(clip.frames, i, "standing")
    assert kinds(run(clip.frames)) == ["complete", "complete"]


# -- gaps ------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["descending", "bottom", "ascending"])
def test_short_no_person_gap_inside_a_rep_is_bridged(where: str) -> None:
    config = RepConfig()
    segments = [("standing", 1.0), ("descending", 0.8), ("bottom", 0.3), ("ascending", 0.8), ("standing", 1.0)]
    i = next(k for k, s in enumerate(segments) if s[0] == where)
    gap = config.max_gap_s * 0.5
    segments.insert(i + 1, ("no_person", gap))
    segments.insert(i + 2, (where, 0.2))
    events = run(squat_clip(segments).frames, config)  # type: ignore[arg-type]
    assert kinds(events) == ["complete"]


def test_long_no_person_gap_ends_the_rep_as_partial() -> None:
    config = RepConfig()
    clip = squat_clip([("standing", 1.0), ("descending", 0.8), ("bottom", 0.3),
                       ("no_person", config.max_gap_s + 0.5), ("bottom", 0.2), ("ascending", 0.8),
                       ("standing", 1.0)])
    events = run(clip.frames, config)
    assert complete(events) == []
    assert events[0].kind == "partial"
    assert events[0].reason == "person left the frame"
    # the movement closed at the gap: none of its frames are after the gap
    gap = clip.span("no_person")
    assert all(clip.index_of_seq(f.seq) < gap.start for f in events[0].rep.frames)


def test_long_no_person_gap_in_standing_does_not_lose_the_next_rep() -> None:
    clip = squat_clip([("standing", 1.0), ("no_person", 3.0), *rep_segments(1)])
    assert kinds(run(clip.frames)) == ["complete"]


# -- partial movements -------------------------------------------------------------


def test_clip_starting_at_the_bottom_is_one_partial() -> None:
    clip = squat_clip([("bottom", 0.3), ("ascending", 0.8), ("standing", 1.0)])
    events = run(clip.frames)
    assert len(complete(events)) == 0
    assert len(partial(events)) == 1
    assert partial(events)[0].reason == "started below the top of its range"


def test_clip_starting_mid_ascent_is_one_partial() -> None:
    clip = squat_clip([("ascending", 0.5, {"start": -0.2}), ("standing", 1.0), *rep_segments(1)[1:]])
    assert kinds(run(clip.frames)) == ["partial", "complete"]


def test_a_shallow_rep_is_a_rep() -> None:
    # half way down (to -0.5 from -1.0, well above parallel) and back up: counted; grading calls it shallow
    clip = squat_clip([("standing", 1.0), ("descending", 0.5, {"to": -0.5}), ("ascending", 0.5),
                       ("standing", 1.0), *rep_segments(1)[1:]])
    events = run(clip.frames)
    assert kinds(events) == ["complete", "complete"]
    assert max(events[0].rep.depth_series()) == pytest.approx(-0.5, abs=0.05)


def test_a_descent_cut_by_the_end_of_the_stream_is_partial() -> None:
    clip = squat_clip([("standing", 1.0), ("descending", 0.8)])
    events = run(clip.frames)
    assert kinds(events) == ["partial"]
    assert events[0].reason == "never came back up"
    assert events[0].rep.reached_bottom is False


def test_bounce_squat_with_a_brief_bottom_is_complete() -> None:
    """A bottom held for fewer frames than the hysteresis needs still counts (the turn is the bottom)."""
    clip = squat_clip([("standing", 1.0), ("descending", 0.8), ("bottom", 0.1), ("ascending", 0.8),
                       ("standing", 1.0)])
    assert kinds(run(clip.frames)) == ["complete"]


def test_rep_shorter_than_min_rep_s_is_partial() -> None:
    config = RepConfig(min_rep_s=1.2)
    quick = [("standing", 1.0), ("descending", 0.4), ("bottom", 0.2), ("ascending", 0.4), ("standing", 1.0)]
    events = run(squat_clip(quick).frames, config)
    assert kinds(events) == ["partial"]
    assert events[0].reason == "too short to be a rep"
    duration_s = (events[0].rep.frames[-1].ts - events[0].rep.frames[0].ts) / 1000
    assert duration_s < config.min_rep_s
    # the same movement with a slower descent is long enough
    slower = [("standing", 1.0), ("descending", 0.8), ("bottom", 0.2), ("ascending", 0.4), ("standing", 1.0)]
    assert kinds(run(squat_clip(slower).frames, config)) == ["complete"]


def test_a_move_smaller_than_the_hysteresis_is_no_rep() -> None:
    config = RepConfig()
    floor = config.hysteresis["squat"]
    # a knee dip or a shuffle: the hips move less than the floor
    clip = squat_clip(rep_segments(1), bottom=-1.0 + floor * 0.7)
    assert run(clip.frames, config) == []
    # a little more than the floor is a (very shallow) rep
    clip = squat_clip(rep_segments(1), bottom=-1.0 + floor * 2.5)
    assert kinds(run(clip.frames, config)) == ["complete"]


def test_the_hysteresis_adapts_to_the_persons_own_range() -> None:
    detector = RepDetector("squat")
    assert detector.hysteresis() == RepConfig().hysteresis["squat"]
    for f in squat_clip(rep_segments(3)).frames:
        detector.push(f)
    # three full reps of 1.1 thigh lengths: a dip of a third of that no longer counts as a movement
    assert detector.typical_range() == pytest.approx(1.1, abs=0.05)
    assert detector.hysteresis() == pytest.approx(RepConfig().relative_hysteresis * detector.typical_range())


def test_front_view_squats_with_little_hip_travel_are_counted() -> None:
    # seen from the front the 3D hip travel reads ~0.27 thigh lengths (measured on the data set's front clips)
    clip = squat_clip(rep_segments(4), top=-0.6, bottom=-0.33)
    assert kinds(run(clip.frames)) == ["complete"] * 4


def test_rep_ending_below_the_top_third_is_partial() -> None:
    clip = squat_clip([("standing", 1.0), ("descending", 0.8), ("bottom", 0.3), ("ascending", 0.5, {"to": -0.4}),
                       ("standing", 1.0)])
    events = run(clip.frames)
    assert kinds(events) == ["partial"]
    assert events[0].reason == "ended below the top of its range"


def test_two_reps_without_standing_but_back_in_the_top_third_are_both_complete() -> None:
    # up to -0.8 (top third of a -1.0..0.1 range starts at about -0.63), then straight down again
    clip = squat_clip([("standing", 1.0), ("descending", 0.8), ("bottom", 0.3), ("ascending", 0.7, {"to": -0.8}),
                       ("descending", 0.7), ("bottom", 0.3), ("ascending", 0.8), ("standing", 1.0)])
    events = run(clip.frames)
    assert kinds(events) == ["complete", "complete"]
    # the second rep begins where the first one ended: no frame in both
    end_first = clip.index_of_seq(events[0].rep.frames[-1].seq)
    start_second = clip.index_of_seq(events[1].rep.frames[0].seq)
    assert start_second >= end_first
    assert abs(end_first - clip.span("ascending", 0).last) <= 2
    assert abs(start_second - clip.span("descending", 1).start) <= 2


def test_turning_down_again_from_the_middle_is_a_bounce_in_the_same_rep() -> None:
    # up to -0.3 of a -1.0..0.1 range (not back in its top part), down again, then all the way up: one rep
    # with a bounce in the bottom, as occlusion jolting the track also looks; not two partials
    clip = squat_clip([("standing", 1.0), ("descending", 0.8), ("bottom", 0.3), ("ascending", 0.5, {"to": -0.3}),
                       ("descending", 0.5), ("bottom", 0.3), ("ascending", 0.8), ("standing", 1.0)])
    events = run(clip.frames)
    assert kinds(events) == ["complete"]
    frames = events[0].rep.frames
    assert abs(clip.index_of_seq(frames[0].seq) - clip.span("descending", 0).start) <= 2
    assert abs(clip.index_of_seq(frames[-1].seq) - clip.span("ascending", 1).last) <= 2


def test_a_bounce_that_never_comes_back_up_is_partial() -> None:
    clip = squat_clip([("standing", 1.0), ("descending", 0.8), ("bottom", 0.3), ("ascending", 0.5, {"to": -0.3}),
                       ("descending", 0.5), ("bottom", 0.3), ("ascending", 0.5, {"to": -0.3})])
    assert kinds(run(clip.frames)) == ["partial"]


def test_rep_taking_longer_than_max_rep_s_is_partial() -> None:
    config = RepConfig(max_rep_s=3.0)
    clip = squat_clip([("standing", 1.0), ("descending", 0.8), ("bottom", 3.0), ("ascending", 0.8),
                       ("standing", 1.0)])
    events = run(clip.frames, config)
    assert complete(events) == []
    assert events[0].reason == "rep took too long"


# -- end of stream -------------------------------------------------------------------


def test_flush_near_the_top_completes_the_rep() -> None:
    clip = squat_clip([("standing", 1.0), ("descending", 0.8), ("bottom", 0.3), ("ascending", 0.8)])
    detector = RepDetector("squat")
    assert [e for f in clip.frames for e in detector.push(f)] == []
    assert detector.in_rep
    events = detector.finish()
    assert kinds(events) == ["complete"]
    assert events[0].reason == "end of stream"
    assert not detector.in_rep
    assert detector.finish() == []


def test_flush_in_the_middle_gives_a_partial() -> None:
    clip = squat_clip([("standing", 1.0), ("descending", 0.8), ("bottom", 0.3), ("ascending", 0.4, {"to": -0.4})])
    events = run(clip.frames)
    assert kinds(events) == ["partial"]


def test_flush_with_no_open_rep_is_empty() -> None:
    detector = RepDetector("squat")
    for f in one_rep_clip().frames:
        detector.push(f)
    assert detector.finish() == []


def test_detection_uses_capture_time_not_frame_count() -> None:
    """The same movement at 15 fps gives the same verdicts as at 30 fps."""
    segments = rep_segments(2)
    assert kinds(run(squat_clip(segments, fps=15).frames)) == ["complete", "complete"]


def test_memory_stays_bounded_while_a_phase_holds() -> None:
    """A live station can see someone stand (or sit on the bench in view) for hours: no per-frame growth."""
    detector = RepDetector("squat")

    def push_standing(start: int, count: int) -> None:
        for i in range(start, start + count):
            detector.push(make_frame(node=NODE, boot=BOOT, seq=i, ts=TS0 + round(i * 1000 / 30), exercise="squat",
                                     phase="standing", depth=-1.0))

    push_standing(0, 300)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        push_standing(300, 3000)  # 100 s more of standing
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 200_000, f"detector kept {grown} bytes over 3000 standing frames"


# -- hinges ----------------------------------------------------------------------------


def hinge(frames: Sequence[FrameMessage]) -> list[FrameMessage]:
    """The same hip travel with the knees almost straight: bending over to pick something up."""
    return [f.model_copy(update={"angles": {**f.angles, "knee": 170.0 - 0.15 * (170.0 - f.angles["knee"])}})
            for f in frames]


def test_a_hinge_is_not_a_rep_when_the_knees_barely_bend() -> None:
    frames = hinge(squat_clip(rep_segments(1)).frames)
    events = run(frames, RepConfig(hinge_knee_share=1 / 3))
    assert kinds(events) == ["partial"]
    assert events[0].reason.startswith("a hip hinge, not a rep")
    # without the check (0) the hips' travel alone makes it a rep
    assert kinds(run(frames, RepConfig(hinge_knee_share=0.0))) == ["complete"]


def test_a_hinge_does_not_teach_the_persons_range() -> None:
    config = RepConfig(hinge_knee_share=1 / 3)
    detector = RepDetector("squat", config)
    for f in hinge(squat_clip(rep_segments(1)).frames):
        detector.push(f)
    detector.finish()
    assert detector.hysteresis() == config.hysteresis["squat"], "a hinge set the person's typical range"


def test_squats_are_counted_with_the_hinge_check_on() -> None:
    events = run(squat_clip(rep_segments(3)).frames, RepConfig(hinge_knee_share=1 / 3))
    assert kinds(events) == ["complete"] * 3


def test_hips_rising_while_bent_over_do_not_finish_a_squat() -> None:
    """Down into a squat, then the hands to the floor: the hips go back up, the hip angle stays closed."""
    clip = squat_clip(rep_segments(1))
    up = clip.span("ascending").start
    bent_over = [f if i < up else f.model_copy(update={"angles": {**f.angles, "hip": 70.0}})
                 for i, f in enumerate(clip.frames)]
    events = run(bent_over)
    assert kinds(events) == ["partial"]
    assert events[0].reason == "ended below the top of its range"
    assert kinds(run(clip.frames)) == ["complete"], "the same squat standing up with the hips open"


def test_a_stream_opening_in_a_half_squat_starts_with_a_partial() -> None:
    """Hip height barely moves early in a descent: from the hips' height alone the first frames are near the top."""
    clip = squat_clip([("descending", 0.8, {"start": -0.85}), ("bottom", 0.3), ("ascending", 0.8),
                       ("standing", 1.0), *rep_segments(1)])
    half_squat = [f.model_copy(update={"angles": {**f.angles, "hip": 120.0}}) if i < 5 else f
                  for i, f in enumerate(clip.frames)]
    events = run(half_squat)
    assert kinds(events) == ["partial", "complete"]
    assert events[0].reason == "started below the top of its range"
    assert kinds(run(clip.frames)) == ["complete", "complete"], "the same start with the hips open"


# -- an end the stream cut ---------------------------------------------------------------


def deeper_start_cut_on_the_way_up(reps: int) -> list[FrameMessage]:
    """``reps`` clean reps, then one that starts from higher than usual and is cut on its way back up.

    The last rep's range is 1.5 (from -1.4 to 0.1); the stream ends at -0.8: 0.6 of its own range up, 0.82
    of a usual 1.1.
    """
    before = rep_segments(reps) if reps else [("standing", 1.0)]
    return squat_clip([*before, ("ascending", 0.4, {"to": -1.4}), ("standing", 1.0), ("descending", 0.8),
                       ("bottom", 0.3), ("ascending", 0.6, {"to": -0.8})]).frames


def test_an_end_cut_by_the_stream_is_judged_against_the_persons_usual_range() -> None:
    assert kinds(run(deeper_start_cut_on_the_way_up(2))) == ["complete"] * 3


def test_without_reps_of_their_own_the_cut_end_is_judged_against_the_rep_alone() -> None:
    events = run(deeper_start_cut_on_the_way_up(0))
    assert complete(events) == []
    assert events[-1].reason == "ended below the top of its range"
