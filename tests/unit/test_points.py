"""Session and node status points: fields, tags and, above all, which time each one is stored at.

A point's identity is measurement + tags + time, so the time decides whether a retained message redelivered
on every aggregator (re)connect overwrites its point (its own ``ts``) or adds another one (receive time).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formcheck_aggregator.config import load_config
from formcheck_aggregator.core import ProcessingCore
from formcheck_aggregator.decoder import ClockPolicy, Decoded
from formcheck_aggregator.influx import Line, Point, encode_line
from formcheck_aggregator.points import event_ts, frame_line, frame_point, node_status_point, session_point
from formcheck_protocol.messages import FAULTS, Fault, FrameMessage, NodeStatus, SessionMessage
from tests.unit.synthetic_frames import BOOT, NODE, TS0, rep_segments, restamp, squat_clip

SITE = "main"
CLOCK = ClockPolicy(max_future_ms=300_000, max_age_ms=7 * 86_400_000)
RECEIVED = TS0 + 3_600_000          # the aggregator's clock when the message arrives
CHECKIN_TS = RECEIVED - 600_000     # a check-in ten minutes earlier, e.g. redelivered after a restart


def assert_durable(point: Point) -> None:
    assert point.durable and point.retention == "default"
    encode_line(point)  # storable as it is (empty strings included)


# -- the time rule -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ts", "expected"), [
    (CHECKIN_TS, CHECKIN_TS),
    (RECEIVED, RECEIVED),
    (RECEIVED + CLOCK.max_future_ms, RECEIVED + CLOCK.max_future_ms),      # the policy's edges are accepted
    (RECEIVED - CLOCK.max_age_ms, RECEIVED - CLOCK.max_age_ms),
    (None, RECEIVED),                                                     # no time of its own
    (RECEIVED + CLOCK.max_future_ms + 1, RECEIVED),                       # implausible: ahead of our clock
    (RECEIVED - CLOCK.max_age_ms - 1, RECEIVED),                          # implausible: too old
    (0, RECEIVED),
    (-5, RECEIVED),
    (2**63, RECEIVED),                                                    # would not even fit in InfluxDB
])
def test_event_ts_takes_the_message_time_only_within_the_clock_policy(ts: int | None, expected: int) -> None:
    assert event_ts(ts, RECEIVED, CLOCK) == expected


# -- sessions --------------------------------------------------------------------------------------------------


def test_check_in_with_its_own_time() -> None:
    point = session_point(SITE, "rack-1", SessionMessage(member="m-1042", exercise="pushup", ts=CHECKIN_TS),
                          RECEIVED, CLOCK)
    assert point.measurement == "session"
    # The member is a tag, never a field: InfluxDB 1.x erases by tag only (issue 13 item 8).
    assert point.tags == {"site": SITE, "node": "rack-1", "member": "m-1042"}
    assert point.fields == {"exercise": "pushup", "checked_in": True}
    assert point.ts_ms == CHECKIN_TS
    assert_durable(point)


def test_check_in_without_a_time_is_stored_when_received() -> None:
    point = session_point(SITE, "rack-1", SessionMessage(member="m-1042"), RECEIVED, CLOCK)
    assert point.fields == {"exercise": "", "checked_in": True}
    assert point.ts_ms == RECEIVED


def test_check_in_with_an_implausible_time_is_stored_when_received() -> None:
    future = SessionMessage(member="m-1042", ts=RECEIVED + 3_600_000)
    ancient = SessionMessage(member="m-1042", ts=RECEIVED - 30 * 86_400_000)
    assert session_point(SITE, "rack-1", future, RECEIVED, CLOCK).ts_ms == RECEIVED
    assert session_point(SITE, "rack-1", ancient, RECEIVED, CLOCK).ts_ms == RECEIVED


def test_check_out_names_no_member_at_receive_time() -> None:
    point = session_point(SITE, "rack-2", None, RECEIVED, CLOCK)
    assert point.measurement == "session"
    # No member tag (line protocol has no empty tag): the station's last point reads member null once checked out.
    assert point.tags == {"site": SITE, "node": "rack-2"}
    # Same field types as a check-in: one measurement, no type conflict.
    assert point.fields == {"exercise": "", "checked_in": False}
    assert point.ts_ms == RECEIVED
    assert_durable(point)
    assert "member" not in encode_line(point)


def test_redelivered_check_in_overwrites_its_point_only_when_it_has_a_time() -> None:
    with_ts = SessionMessage(member="m-1042", ts=CHECKIN_TS)
    first = session_point(SITE, "rack-1", with_ts, RECEIVED, CLOCK)
    again = session_point(SITE, "rack-1", with_ts, RECEIVED + 86_400_000, CLOCK)   # the next day's reconnect
    assert again == first and encode_line(again) == encode_line(first)
    without = SessionMessage(member="m-1042")
    restated = session_point(SITE, "rack-1", without, RECEIVED + 86_400_000, CLOCK)
    assert restated.ts_ms != session_point(SITE, "rack-1", without, RECEIVED, CLOCK).ts_ms
    assert restated.fields == first.fields    # a second point, but the same state: no false transition


# -- node status -----------------------------------------------------------------------------------------------


def test_online_status_with_its_own_time() -> None:
    status = NodeStatus(state="online", node="rack-1", boot=BOOT, ts=CHECKIN_TS, exercise="squat",
                        model="squat-form@3", source="camera")
    point = node_status_point(SITE, status, RECEIVED, CLOCK)
    assert point.measurement == "node_status"
    assert point.tags == {"site": SITE, "node": "rack-1"}
    assert point.fields == {"state": "online", "boot": BOOT, "activity": "active"}
    assert point.ts_ms == CHECKIN_TS
    assert_durable(point)
    # Redelivered (retained) after any number of reconnects: the same point.
    assert node_status_point(SITE, status, RECEIVED + 5_000, CLOCK) == point


def test_idle_status_stores_its_activity_and_a_stopped_one_none() -> None:
    idle = NodeStatus(state="online", node="rack-1", boot=BOOT, ts=CHECKIN_TS, activity="idle")
    assert node_status_point(SITE, idle, RECEIVED, CLOCK).fields == {"state": "online", "boot": BOOT,
                                                                      "activity": "idle"}
    awake = idle.model_copy(update={"activity": "active", "ts": CHECKIN_TS + 1})
    assert node_status_point(SITE, awake, RECEIVED, CLOCK).fields["activity"] == "active"
    # The edge keeps its status fields when it stops: an idle node's stopped status still says idle.
    stopped = idle.model_copy(update={"state": "stopped", "ts": CHECKIN_TS + 2})
    assert "activity" not in node_status_point(SITE, stopped, RECEIVED, CLOCK).fields


def test_last_will_has_no_time_and_is_stored_when_received() -> None:
    # What edge_node/formcheck_edge/publisher.py sets as its Last Will: no ts.
    will = NodeStatus(state="offline", node="rack-3", boot=BOOT)
    point = node_status_point(SITE, will, RECEIVED, CLOCK)
    assert point.fields == {"state": "offline", "boot": BOOT}
    assert point.ts_ms == RECEIVED
    assert_durable(point)


def test_status_without_boot_and_with_an_implausible_time() -> None:
    stopped = NodeStatus(state="stopped", node="rack-4", ts=RECEIVED + CLOCK.max_future_ms + 1)
    point = node_status_point(SITE, stopped, RECEIVED, CLOCK)
    assert point.fields == {"state": "stopped", "boot": ""}
    assert point.ts_ms == RECEIVED
    assert_durable(point)


# -- ProcessingCore.apply: the points next to what the station produces -----------------------------------------


class _NoMqtt:
    """``apply`` neither publishes nor acknowledges (``handle_batch`` does, once the points are stored)."""

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        raise AssertionError("apply must not publish")

    def ack(self, mids: list[int]) -> None:
        raise AssertionError("apply must not acknowledge")


@pytest.fixture
def aggregator() -> ProcessingCore:
    # No InfluxDB here: no open set checkpoints (tests/reliability/test_set_resume.py has those).
    return ProcessingCore(load_config(None, {"id": "unit", "site": SITE, "sets": {"resume_open_sets": False}},
                                      environ={}), _NoMqtt())


def open_set(core: ProcessingCore, boot: str = BOOT) -> None:
    """Two reps (of a node process ``boot``) and no rest after them: the set is still open."""
    frames = restamp(squat_clip(rep_segments(2)).frames, boot=boot)
    before = core.station(NODE).counters.frames
    for frame in frames:
        core.apply(Decoded(NODE, "frames", frame), frame.ts)
    assert core.station(NODE).counters.frames == before + len(frames)


def measurements(points: list[Point | Line]) -> list[str]:
    return [p.measurement if isinstance(p, Point) else p.text.split(",", 1)[0] for p in points]


def test_apply_check_in_and_check_out(aggregator: ProcessingCore) -> None:
    checkin = SessionMessage(member="m-1042", ts=TS0 - 60_000)
    points, out = aggregator.apply(Decoded(NODE, "session", checkin), TS0)
    assert measurements(points) == ["session"] and not out.sets
    assert points[0].ts_ms == TS0 - 60_000 and points[0].tags["member"] == "m-1042"
    open_set(aggregator)
    received = TS0 + 60_000
    points, out = aggregator.apply(Decoded(NODE, "session", None), received)
    assert [(s.member, s.ended_by, s.complete) for s in out.sets] == [("m-1042", "checkout", True)]
    assert measurements(points) == ["session", "set"]
    assert ("member" in points[0].tags, points[0].fields["checked_in"], points[0].ts_ms) == (False, False, received)


def test_apply_statuses(aggregator: ProcessingCore) -> None:
    online = NodeStatus(state="online", node=NODE, boot=BOOT, ts=TS0 - 5_000)
    points, out = aggregator.apply(Decoded(NODE, "status", online), TS0)
    assert measurements(points) == ["node_status"] and not out.sets and not out.reps
    assert (points[0].fields["state"], points[0].ts_ms) == ("online", TS0 - 5_000)

    open_set(aggregator)
    received = TS0 + 90_000
    will = NodeStatus(state="offline", node=NODE, boot=BOOT)
    points, out = aggregator.apply(Decoded(NODE, "status", will), received)
    assert [(s.ended_by, s.complete) for s in out.sets] == [("offline", False)]
    # The frames after the last frame point are stored when the stream pauses (points.FrameSampler.flush).
    assert measurements(points) == ["node_status", "frame", "set"]
    assert (points[0].fields["state"], points[0].ts_ms) == ("offline", received)

    open_set(aggregator, boot="fedcba9876543210")      # the node restarted
    stopped = NodeStatus(state="stopped", node=NODE, boot="fedcba9876543210", ts=received + 1_000)
    points, out = aggregator.apply(Decoded(NODE, "status", stopped), received + 1_500)
    assert [(s.ended_by, s.complete) for s in out.sets] == [("node_stopped", True)]
    assert measurements(points)[0] == "node_status" and points[0].ts_ms == received + 1_000


def test_apply_cleared_status_topic_stores_nothing(aggregator: ProcessingCore) -> None:
    points, out = aggregator.apply(Decoded(NODE, "status", None), TS0)
    assert points == [] and not out.sets and not out.reps


# -- frames: the encoded fast path is the generic one --------------------------------------------------------


angle_names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=32)
finite = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**6), 10**6)


@settings(max_examples=300)
@given(angles=st.dictionaries(angle_names, finite, max_size=12), faults=st.lists(st.sampled_from(FAULTS), unique=True),
       node=st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,15}\Z"), site=st.sampled_from(["main", "gym b", "a,b=c"]),
       form=st.sampled_from(["good", "bad"]), seq=st.integers(0, 2**40))
def test_frame_line_is_encode_line_of_frame_point(angles: dict[str, float], faults: list[Fault], node: str,
                                                  site: str, form: str, seq: int) -> None:
    frame = FrameMessage.model_validate({
        "node": node, "boot": BOOT, "seq": seq, "ts": TS0, "exercise": "squat", "phase": "bottom",
        "phase_p": {"bottom": 1.0}, "form": form, "bad_p": 0.25, "faults": faults, "angles": angles, "vis": 0.5,
    })
    point = frame_point(site, frame)
    try:
        expected = encode_line(point)
    except (ValueError, TypeError) as exc:  # e.g. an angle named "time" or holding a line break
        with pytest.raises(type(exc)):
            frame_line(site, frame)
        return
    line = frame_line(site, frame)
    assert line == Line(expected, durable=False, retention="frames")
    assert (line.durable, line.retention) == (point.durable, point.retention)
