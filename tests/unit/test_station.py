"""Station: stream hygiene (duplicates, gaps, late frames, clock), sessions, and when sets end."""

from __future__ import annotations

from collections.abc import Iterable
from statistics import mean

import pytest

from formcheck_aggregator.grading import GradingConfig, main_fault, set_grade
from formcheck_aggregator.points import checkpoint_points
from formcheck_aggregator.station import GUEST, OpenSetCheckpoint, SetConfig, Station, StationOutput
from formcheck_protocol.messages import FrameMessage, RepMessage, SessionMessage
from tests.unit.synthetic_frames import (
    BOOT,
    NODE,
    TS0,
    Clip,
    mark,
    rep_segments,
    restamp,
    shift_ts,
    squat_clip,
)

BOOT2 = "fedcba9876543210"


def feed(station: Station, frames: Iterable[FrameMessage]) -> StationOutput:
    out = StationOutput()
    for f in frames:
        out.extend(station.on_frame(f))
    return out


def run_all(frames: Iterable[FrameMessage], **kwargs: object) -> StationOutput:
    station = Station(NODE, **kwargs)  # type: ignore[arg-type]
    out = feed(station, frames)
    out.extend(station.finish())
    return out


def dump(out: StationOutput) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    return [r.model_dump() for r in out.reps], [s.model_dump() for s in out.sets]


def seq_of_ts(clip: Clip, ts: int) -> int:
    return clip.frames[clip.index_of_ts(ts)].seq


def session(member: str, exercise: str = "squat") -> SessionMessage:
    return SessionMessage(member=member, exercise=exercise)  # type: ignore[arg-type]


# -- stream hygiene ---------------------------------------------------------------------


def test_duplicates_are_dropped_and_counted() -> None:
    clip = squat_clip(rep_segments(2))
    clean = run_all(clip.frames)
    station = Station(NODE)
    out = StationOutput()
    for f in clip.frames:
        out.extend(station.on_frame(f))
        again = station.on_frame(f)
        assert again.reps == [] and again.sets == []
    out.extend(station.finish())
    assert station.counters.duplicates == len(clip.frames)
    assert station.counters.frames == len(clip.frames)
    assert station.counters.gaps == 0 and station.counters.late == 0
    assert dump(out) == dump(clean)
    assert len(out.reps) == 2


def test_seq_gaps_are_counted() -> None:
    clip = squat_clip(rep_segments(1))
    missing = {10, 11, 12, 13, 14, 40}
    station = Station(NODE)
    out = feed(station, [f for i, f in enumerate(clip.frames) if i not in missing])
    assert station.counters.gaps == len(missing)
    assert station.counters.frames == len(clip.frames) - len(missing)
    assert station.counters.duplicates == 0
    assert len(out.reps) == 1


def test_late_and_out_of_order_frames_are_dropped_and_counted() -> None:
    clip = squat_clip(rep_segments(1))
    frames = list(clip.frames)
    order = list(range(len(frames)))
    order[20], order[21] = order[21], order[20]       # 21 overtakes 20: 20 arrives late
    order.remove(50)
    order.insert(order.index(60) + 1, 50)             # 50 arrives after 60
    station = Station(NODE)
    out = feed(station, [frames[i] for i in order])
    out.extend(station.finish())
    assert station.counters.late == 2
    assert station.counters.duplicates == 0
    assert station.counters.frames == len(frames) - 2
    # seen as gaps when they were skipped, not fixed up afterwards
    assert station.counters.gaps == 2
    assert len(out.reps) == 1


def test_duplicate_of_an_old_frame_is_a_duplicate_not_late() -> None:
    clip = squat_clip(rep_segments(1))
    station = Station(NODE)
    feed(station, clip.frames)
    station.on_frame(clip.frames[5])
    assert station.counters.duplicates == 1
    assert station.counters.late == 0


def test_clock_going_backwards_is_counted_and_harmless() -> None:
    clip = squat_clip(rep_segments(2))
    # the edge clock steps back 300 ms at the start of the standing between the reps (NTP)
    shift_ts(clip.frames, clip.span("standing", 1).start, -300)
    station = Station(NODE)
    out = feed(station, clip.frames)
    out.extend(station.finish())
    assert station.counters.clock_backwards >= 1
    assert len(out.reps) == 2
    assert out.reps[0].end_ts <= out.reps[1].start_ts


def test_clock_going_backwards_inside_a_rep_does_not_crash() -> None:
    clip = squat_clip(rep_segments(2))
    shift_ts(clip.frames, clip.span("bottom", 0).start + 3, -2000)
    station = Station(NODE)
    out = feed(station, clip.frames)
    out.extend(station.finish())
    assert station.counters.clock_backwards == 1
    # A 2 s step is not jitter: it starts a new time segment, so the rep it cut is dropped (motion across the
    # step is not motion) and only the second rep counts; the set stays open across the step.
    (rep,) = out.reps
    step_ts = clip.frames[clip.span("bottom", 0).start + 3].ts
    assert rep.start_ts > step_ts
    assert rep.start_ts <= rep.bottom_ts <= rep.end_ts
    assert rep.descent_s > 0 and rep.ascent_s > 0
    (one_set,) = out.sets
    assert one_set.reps == 1


# -- set endings ----------------------------------------------------------------------


def test_new_boot_aborts_the_open_set() -> None:
    first = squat_clip([*rep_segments(1), ("descending", 0.5)])  # a rep, then the next one under way
    second = squat_clip(rep_segments(1), boot=BOOT2, seq0=0, ts0=first.next_ts + 5000)
    station = Station(NODE)
    out = feed(station, first.frames)
    assert len(out.reps) == 1 and out.sets == []
    restart = station.on_frame(second.frames[0])
    assert len(restart.sets) == 1
    aborted = restart.sets[0]
    assert aborted.complete is False
    assert aborted.ended_by == "restart"
    assert aborted.reps == 1
    assert aborted.set_id.startswith(f"{NODE}-{BOOT}-")
    rest = feed(station, second.frames[1:])
    rest.extend(station.finish())
    assert len(rest.reps) == 1
    assert rest.sets[0].set_id.startswith(f"{NODE}-{BOOT2}-")
    assert rest.sets[0].complete is True
    assert station.counters.gaps == 0 and station.counters.duplicates == 0


def test_stale_frame_of_the_previous_boot_does_not_abort_the_new_boot() -> None:
    """(node, boot, seq) identifies a frame: a redelivered frame of the old boot is a duplicate, not a restart."""
    first = squat_clip(rep_segments(1))
    second = squat_clip([*rep_segments(1), ("descending", 0.5)], boot=BOOT2, seq0=0, ts0=first.next_ts + 5000)
    station = Station(NODE)
    feed(station, first.frames)
    out = feed(station, second.frames)
    assert len(out.reps) == 1
    # QoS 1 redelivery (e.g. after the aggregator reconnects) of frames it has already processed
    redelivered = feed(station, [first.frames[-1], second.frames[-3]])
    assert redelivered.sets == [], [s.ended_by for s in redelivered.sets]
    assert station.counters.duplicates + station.counters.late == 2
    tail = feed(station, squat_clip([("bottom", 0.3), ("ascending", 0.8), ("standing", 1.0)], boot=BOOT2,
                                    seq0=second.next_seq, ts0=second.next_ts).frames)
    tail.extend(station.finish())
    assert [s.complete for s in tail.sets] == [True]
    assert tail.sets[0].reps == 2


def test_rest_timeout_ends_the_set() -> None:
    config = SetConfig(rest_timeout_s=5.0)
    clip = squat_clip([*rep_segments(2), ("standing", 6.0), *rep_segments(1)[1:]])
    station = Station(NODE, set_config=config)
    ended_at: int | None = None
    out = StationOutput()
    for i, f in enumerate(clip.frames):
        step = station.on_frame(f)
        if step.sets and ended_at is None:
            ended_at = i
        out.extend(step)
    out.extend(station.finish())
    assert [s.ended_by for s in out.sets] == ["rest", "end_of_stream"]
    first = out.sets[0]
    assert first.reps == 2 and first.complete is True
    assert ended_at is not None
    # ended by the first frame more than rest_timeout_s after the last rep's end
    assert clip.frames[ended_at].ts - first.end_ts > config.rest_timeout_s * 1000
    assert clip.frames[ended_at - 1].ts - first.end_ts <= config.rest_timeout_s * 1000
    assert out.sets[1].reps == 1
    assert out.sets[1].set_id != first.set_id
    assert [r.rep_index for r in out.reps] == [1, 2, 1]


def test_rest_shorter_than_the_timeout_keeps_the_set() -> None:
    clip = squat_clip([*rep_segments(1), ("standing", 3.0), *rep_segments(1)[1:]])  # 4 s standing in all
    out = run_all(clip.frames, set_config=SetConfig(rest_timeout_s=5.0))
    assert [(s.ended_by, s.reps) for s in out.sets] == [("end_of_stream", 2)]


def test_no_person_counts_as_rest() -> None:
    clip = squat_clip([*rep_segments(1), ("no_person", 6.0), *rep_segments(1)])
    out = run_all(clip.frames, set_config=SetConfig(rest_timeout_s=5.0))
    assert [(s.ended_by, s.reps) for s in out.sets] == [("rest", 1), ("end_of_stream", 1)]


def test_check_in_checkout_and_guest() -> None:
    station = Station(NODE)
    assert station.on_session(session("m42")).sets == []
    clip = squat_clip([*rep_segments(2), *rep_segments(1)[1:]])
    split = clip.span("standing", 2).start + 20  # the second rep has ended (back at the top, held there)
    out = feed(station, clip.frames[:split])
    assert [r.member for r in out.reps] == ["m42", "m42"]
    checkout = station.on_session(None)
    assert len(checkout.sets) == 1
    done = checkout.sets[0]
    assert (done.member, done.ended_by, done.complete, done.reps) == ("m42", "checkout", True, 2)
    later = feed(station, clip.frames[split:])
    later.extend(station.finish())
    assert [r.member for r in later.reps] == [GUEST]
    assert [(s.member, s.ended_by) for s in later.sets] == [(GUEST, "end_of_stream")]


def test_member_change_ends_the_set() -> None:
    station = Station(NODE)
    station.on_session(session("alice"))
    clip = squat_clip([*rep_segments(1), *rep_segments(1)[1:]])
    split = clip.span("standing", 1).start + 20
    out = feed(station, clip.frames[:split])
    assert station.on_session(session("alice")).sets == []  # retained check-in seen again: same set
    change = station.on_session(session("bob"))
    assert [(s.member, s.ended_by, s.complete, s.reps) for s in change.sets] == [("alice", "member_change", True, 1)]
    out = feed(station, clip.frames[split:])
    out.extend(station.finish())
    assert [r.member for r in out.reps] == ["bob"]
    assert [(s.member, s.ended_by) for s in out.sets] == [("bob", "end_of_stream")]


def test_session_exercise_change_ends_the_set() -> None:
    station = Station(NODE)
    station.on_session(session("alice"))
    feed(station, squat_clip(rep_segments(1)).frames)
    change = station.on_session(session("alice", "pushup"))
    assert [(s.ended_by, s.reps) for s in change.sets] == [("exercise_change", 1)]


def test_offline_aborts_the_set_and_drops_the_open_rep() -> None:
    clip = squat_clip([*rep_segments(1), ("descending", 0.8), ("bottom", 0.3), ("ascending", 0.8),
                       ("standing", 1.0)])
    split = clip.span("bottom", 1).last
    station = Station(NODE)
    out = feed(station, clip.frames[:split])
    assert len(out.reps) == 1
    offline = station.on_offline()
    assert [(s.complete, s.ended_by, s.reps) for s in offline.sets] == [(False, "offline", 1)]
    after = feed(station, clip.frames[split:])
    after.extend(station.finish())
    assert after.reps == []
    assert after.sets == []


def test_exercise_change_in_frames_ends_the_set() -> None:
    squats = squat_clip(rep_segments(1))
    pushups = restamp(squat_clip([("standing", 1.0)], seq0=squats.next_seq, ts0=squats.next_ts).frames,
                      exercise="pushup")
    station = Station(NODE)
    out = feed(station, squats.frames)
    assert len(out.reps) == 1 and out.sets == []
    change = station.on_frame(pushups[0])
    assert [(s.ended_by, s.complete, s.reps, s.exercise) for s in change.sets] == [
        ("exercise_change", True, 1, "squat")]
    assert station.exercise == "pushup"
    rest = feed(station, pushups[1:])
    rest.extend(station.finish())
    assert rest.sets == []


def test_end_of_stream_finishes_the_open_rep_and_set() -> None:
    clip = squat_clip([*rep_segments(1), ("descending", 0.8), ("bottom", 0.3), ("ascending", 0.8)])
    station = Station(NODE)
    out = feed(station, clip.frames)
    assert len(out.reps) == 1
    end = station.finish()
    assert len(end.reps) == 1
    assert [(s.ended_by, s.complete, s.reps) for s in end.sets] == [("end_of_stream", True, 2)]


def test_node_stopping_cleanly_completes_the_set() -> None:
    clip = squat_clip([*rep_segments(1), ("descending", 0.8), ("bottom", 0.3), ("ascending", 0.8)])
    station = Station(NODE)
    feed(station, clip.frames)
    end = station.finish("node_stopped")
    assert [(s.ended_by, s.complete, s.reps) for s in end.sets] == [("node_stopped", True, 2)]
    # the node starts again with the same boot: nothing of the old movement is left over
    again = feed(station, squat_clip([("ascending", 0.5), ("standing", 1.0)], seq0=clip.next_seq,
                                     ts0=clip.next_ts + 3000).frames)
    again.extend(station.finish())
    assert again.reps == [] and again.sets == []


# -- set ids and fields ------------------------------------------------------------------


@pytest.mark.parametrize("seq0", [0, 1234])
def test_set_id_is_node_boot_and_first_frame_seq_and_deterministic(seq0: int) -> None:
    clip = squat_clip(rep_segments(3), seq0=seq0, ts0=TS0 + 17)
    out = run_all(clip.frames)
    assert len(out.sets) == 1 and len(out.reps) == 3
    first_seq = seq_of_ts(clip, out.reps[0].start_ts)
    assert abs(first_seq - (seq0 + clip.span("descending").start)) <= 2
    assert out.reps[0].start_seq == first_seq
    expected = f"{NODE}-{BOOT}-{first_seq}"
    assert out.sets[0].set_id == expected
    assert {r.set_id for r in out.reps} == {expected}
    # the same frames into a fresh station: the very same reps and sets
    assert dump(run_all(clip.frames)) == dump(out)
    # ... also when the stream arrives with duplicates
    doubled = [f for f in clip.frames for _ in (0, 1)]
    assert dump(run_all(doubled)) == dump(out)


def test_set_fields_are_consistent_with_its_reps() -> None:
    segments = [
        ("bottom", 0.3), ("ascending", 0.8),                                       # partial: joined low
        *rep_segments(2),
        ("descending", 0.4, {"to": -0.85}), ("bottom", 0.3), ("ascending", 0.4),    # a dip: no movement at all
        ("standing", 1.0), *rep_segments(1)[1:],
    ]
    clip = squat_clip(segments)  # type: ignore[arg-type]
    # rep 2: knees in at the bottom and bad form for a while
    bottom = clip.span("bottom", 2).start
    mark(clip.frames, range(bottom, bottom + 6), faults=["knees_in"])
    mark(clip.frames, range(bottom - 10, bottom + 6), form="bad")
    grading = GradingConfig()
    station = Station(NODE, grading=grading)
    out = feed(station, clip.frames)
    out.extend(station.finish())
    assert len(out.sets) == 1
    s = out.sets[0]
    reps = out.reps
    scores = [r.score for r in reps]
    assert s.reps == len(reps) == 3
    assert s.partial_reps == 1
    assert [r.rep_index for r in reps] == [1, 2, 3]
    assert s.rep_scores == scores
    assert s.score_mean == pytest.approx(round(mean(scores), 1))
    assert s.score_min == pytest.approx(min(scores))
    assert s.score_min == reps[1].score < reps[0].score
    assert "knees_in" in reps[1].faults
    assert s.start_ts == reps[0].start_ts and s.end_ts == reps[-1].end_ts
    assert all(r.set_id == s.set_id and r.member == s.member for r in reps)
    rep_frames = sum(1 for f in clip.frames for r in reps if r.start_ts <= f.ts <= r.end_ts)
    bad_frames = sum(1 for f in clip.frames for r in reps if r.start_ts <= f.ts <= r.end_ts and f.form == "bad")
    assert s.bad_ratio == pytest.approx(bad_frames / rep_frames, abs=1e-4)
    assert s.grade == set_grade(mean(scores), bad_frames / rep_frames, grading)
    assert s.main_fault == main_fault(reps) != ""
    assert "on rep 2: " in s.main_fault
    assert (s.complete, s.ended_by, s.node, s.exercise) == (True, "end_of_stream", NODE, "squat")


def test_partials_without_any_rep_make_no_set() -> None:
    clip = squat_clip([("bottom", 0.3), ("ascending", 0.8), ("standing", 1.0)])
    station = Station(NODE)
    out = feed(station, clip.frames)
    out.extend(station.finish())
    assert out.reps == [] and out.sets == []
    assert station.partials_outside_sets == 1


def test_one_frame_with_an_absurd_seq_jump_is_an_outlier() -> None:
    clip = squat_clip(rep_segments(3))
    frames = list(clip.frames)
    frames.insert(20, restamp([frames[20]], seq=2**53 - 1)[0])
    station = Station(NODE)
    out = feed(station, frames)
    out.extend(station.finish())
    assert len(out.reps) == 3
    assert station.counters.seq_outliers == 1
    assert station.counters.gaps == 0 and station.counters.late == 0


def test_a_real_gap_with_matching_time_is_a_gap_not_an_outlier() -> None:
    clip = squat_clip(rep_segments(2))
    frames = clip.frames[:40] + clip.frames[140:]  # 100 frames lost in transit, time moved on with them
    station = Station(NODE)
    feed(station, frames)
    assert station.counters.gaps == 100
    assert station.counters.seq_outliers == 0


def test_stream_that_only_looks_late_is_resynchronised() -> None:
    # The first frame seen carries a corrupt, huge seq: without a resync every later frame would be "late".
    clip = squat_clip(rep_segments(3))
    frames = [restamp([clip.frames[0]], seq=10**12)[0], *clip.frames[1:]]
    station = Station(NODE)
    out = feed(station, frames)
    out.extend(station.finish())
    assert station.counters.resyncs == 1
    assert len(out.reps) >= 2, "at most the rep around the resync may be lost"


def test_one_frame_stamped_far_ahead_does_not_freeze_the_stream() -> None:
    clip = squat_clip(rep_segments(3))
    frames = list(clip.frames)
    shift_ts(frames, 20, 200_000)
    shift_ts(frames, 21, -200_000)  # only frame 20 is 200 s ahead
    station = Station(NODE)
    out = feed(station, frames)
    out.extend(station.finish())
    assert len(out.reps) == 3
    assert station.counters.clock_backwards == 1


# -- an aggregator restarted in the middle of a set -------------------------------------------------------------


def _checkpoint_after_restart(station: Station) -> OpenSetCheckpoint:
    """What the next aggregator reads back: the open set's checkpoint as stored (JSON, fault frames left out)."""
    checkpoint = station.checkpoint()
    assert checkpoint is not None
    points = checkpoint_points("main", NODE, [], checkpoint, changed=True)
    assert [(p.measurement, p.fields["closed"]) for p in points] == [("open_set", False)]
    # The member is a tag as well as in the state: erasing the member drops the checkpoint (issue 13 item 8).
    assert points[0].tags == {"site": "main", "node": NODE, "member": checkpoint.member}
    return OpenSetCheckpoint.model_validate_json(str(points[0].fields["state"]))


@pytest.mark.parametrize("redelivered_from", ["next_frame", "start_of_last_rep", "start_of_set"])
def test_resumed_set_equals_the_undisturbed_set(redelivered_from: str) -> None:
    """The first aggregator dies after rep 3 of 5; the broker redelivers what it had not acknowledged yet (from
    just after rep 3, from the start of rep 3, or everything), the next one resumes from the checkpoint."""
    frames = squat_clip(rep_segments(5, options={"faults": ["knees_in"], "form": "bad"})).frames
    undisturbed = run_all(frames)
    first = Station(NODE)
    first.on_session(SessionMessage(member="m-7", exercise="squat"))
    reps: list[RepMessage] = []
    cut = 0
    for i, f in enumerate(frames):
        reps += first.on_frame(f).reps
        if len(reps) == 3:
            cut = i + 1
            break
    checkpoint = _checkpoint_after_restart(first)
    start = {"next_frame": cut, "start_of_last_rep": frames.index(next(f for f in frames if f.seq ==
                                                                         reps[-1].start_seq)),
             "start_of_set": 0}[redelivered_from]

    second = Station(NODE)
    second.resume(checkpoint)
    out = second.on_session(SessionMessage(member="m-7", exercise="squat"))  # the retained session, redelivered
    assert not out.sets
    out.extend(feed(second, frames[start:]))
    out.extend(second.finish())
    reps += out.reps

    assert [r.rep_index for r in reps] == [1, 2, 3, 4, 5]
    assert len({r.start_ts for r in reps}) == 5
    assert [r.score for r in reps] == [r.score for r in undisturbed.reps]
    # A fresh detector has no smoothing history: a rep may be seen to start a frame later, never more.
    assert all(abs(a.start_ts - b.start_ts) <= 34 for a, b in zip(reps, undisturbed.reps, strict=True))
    [resumed] = out.sets
    [expected] = undisturbed.sets
    assert resumed.model_dump(exclude={"member"}) == expected.model_dump(exclude={"member"})
    assert resumed.member == "m-7" and resumed.main_fault == expected.main_fault != ""
    assert second.counters.replayed_reps == {"next_frame": 0, "start_of_last_rep": 1, "start_of_set": 3}[
        redelivered_from]


def test_a_closed_set_leaves_nothing_to_resume() -> None:
    frames = squat_clip(rep_segments(2)).frames
    station = Station(NODE)
    out = feed(station, frames)
    out.extend(station.finish())
    [ended] = out.sets
    points = checkpoint_points("main", NODE, out.sets, station.checkpoint(), changed=bool(out.reps))
    assert [(p.measurement, p.fields["closed"], p.ts_ms) for p in points] == [("open_set", True, ended.start_ts)]
    # Same series as the set's open checkpoint (member tag included), so the closed point overwrites it.
    assert points[0].tags == {"site": "main", "node": NODE, "member": ended.member}


def test_a_resumed_set_of_an_edge_process_that_restarted_meanwhile_is_aborted() -> None:
    """The edge node restarted while no aggregator ran: its new frames (new boot) cannot continue the old set."""
    first = Station(NODE)
    done = feed(first, squat_clip(rep_segments(2)).frames)
    assert len(done.reps) == 2 and not done.sets
    second = Station(NODE)
    second.resume(_checkpoint_after_restart(first))
    later = restamp(squat_clip(rep_segments(1), ts0=TS0 + 60_000).frames, boot=BOOT2)
    out = feed(second, later)
    out.extend(second.finish())
    aborted, fresh = out.sets
    assert (aborted.reps, aborted.complete, aborted.ended_by) == (2, False, "restart")
    assert (fresh.reps, fresh.complete) == (1, True) and fresh.set_id.startswith(f"{NODE}-{BOOT2}-")
