"""Messages → InfluxDB points. A point's identity (measurement, tags, time) comes from message data only, except
for a session or node status message without a usable time of its own, which is stamped when it was received.

Frames, reps, sets and node stats carry a capture time the decoder has already checked against the clock
policy. Session and node status messages may carry a time (``ts``) or not; :func:`event_ts` picks theirs when
the clock policy accepts it and the aggregator's receive time otherwise, so a retained message redelivered on
every (re)connect overwrites its own point, and only a message without a usable time is written again.
"""

from __future__ import annotations

from formcheck_aggregator.decoder import ClockPolicy
from formcheck_aggregator.influx import Line, Point, encode_series_line, series_key
from formcheck_aggregator.station import Checkpoint
from formcheck_protocol.messages import FrameMessage, NodeStats, NodeStatus, RepMessage, SessionMessage, SetMessage

# Frame telemetry is best effort (short retention, droppable under overload); the rest is durable.


class FrameSampler:
    """Which frames of one station are stored as ``frame`` points: the first, every phase change, and then
    ``per_s`` a second (the first frame at least ``1 / per_s`` after the last one stored).

    The wall display reads the live phase (always right: every change is stored) and counts frames; the rep
    counter reads the full-rate MQTT stream, never these points. :meth:`take` returns how many frames a stored
    point stands for (itself and those skipped since the previous one), written as its ``frames`` field, so
    ``sum("frames")`` counts the frames received whatever the rate; 0 means "do not store". When the stream
    pauses (the node's stats, status: idle, stopped, offline), :meth:`flush` gives the last skipped frame, to be
    stored with the count of the frames skipped since the last point, so the count is exact again.
    """

    def __init__(self, per_s: float) -> None:
        self.interval_ms = 1000.0 / per_s if per_s > 0 else 0.0
        self._phase: str | None = None
        self._exercise: str | None = None
        self._stored_ts: int | None = None
        self._skipped = 0
        self._last_skipped: FrameMessage | None = None

    def take(self, frame: FrameMessage) -> int:
        changed = frame.phase != self._phase or frame.exercise != self._exercise
        self._phase, self._exercise = frame.phase, frame.exercise
        due = (self._stored_ts is None or frame.ts - self._stored_ts >= self.interval_ms
               or frame.ts < self._stored_ts)  # a new boot or time segment starts over
        if not (changed or due):
            self._skipped += 1
            self._last_skipped = frame
            return 0
        count, self._skipped, self._stored_ts, self._last_skipped = self._skipped + 1, 0, frame.ts, None
        return count

    def flush(self) -> tuple[FrameMessage, int] | None:
        """The last frame skipped since the last point and how many were skipped, or None; then starts over."""
        last, count = self._last_skipped, self._skipped
        if last is None:
            return None
        self._stored_ts, self._skipped, self._last_skipped = last.ts, 0, None
        return last, count


def frame_point(site: str, frame: FrameMessage, frames: int = 1) -> Point:
    return Point("frame", _frame_tags(site, frame), _frame_fields(frame, frames), frame.ts, durable=False,
                 retention="frames")


def frame_line(site: str, frame: FrameMessage, frames: int = 1) -> Line:
    """``frame_point`` already encoded, the same bytes as ``encode_line(frame_point(...))``.

    Every message is a frame: skipping the ``Point`` and building each station's series key once saves a
    fifth of a frame's processing. Raises ValueError/TypeError where ``encode_line`` does.
    """
    series = series_key("frame", tuple(sorted(_frame_tags(site, frame).items())))
    return Line(encode_series_line(series, _frame_fields(frame, frames), frame.ts), durable=False,
                retention="frames")


def _frame_tags(site: str, frame: FrameMessage) -> dict[str, str]:
    return {"site": site, "node": frame.node, "exercise": frame.exercise}


def _frame_fields(frame: FrameMessage, frames: int) -> dict[str, float | int | bool | str]:
    fields: dict[str, float | int | bool | str] = {
        "phase": frame.phase, "form": frame.form, "bad_p": frame.bad_p, "vis": frame.vis, "seq": frame.seq,
        "frames": frames,
    }
    fields.update(frame.angles)  # already floats: the schema's Finite type converts JSON integers
    if frame.faults:
        fields["faults"] = ",".join(frame.faults)
    return fields


def rep_point(site: str, rep: RepMessage) -> Point:
    fields: dict[str, float | int | bool | str] = {
        "score": rep.score, "depth": rep.depth, "duration": round((rep.end_ts - rep.start_ts) / 1000, 3),
        "descent_s": rep.descent_s, "ascent_s": rep.ascent_s, "bad_ratio": rep.bad_ratio,
        "faults": ",".join(rep.faults), "set_id": rep.set_id, "rep_index": rep.rep_index,
        "checks_passed": sum(rep.checks.values()), "checks": len(rep.checks),
    }
    if rep.min_knee is not None:
        fields["min_knee"] = rep.min_knee
    if rep.min_elbow is not None:
        fields["min_elbow"] = rep.min_elbow
    if rep.hip_below_knee is not None:
        fields["hip_below_knee"] = rep.hip_below_knee
    tags = {"site": site, "node": rep.node, "member": rep.member, "exercise": rep.exercise,
            "grade": rep.grade, "verdict": rep.verdict}
    return Point("rep", tags, fields, rep.start_ts)


def set_point(site: str, s: SetMessage) -> Point:
    fields: dict[str, float | int | bool | str] = {
        "reps": s.reps, "partial_reps": s.partial_reps, "score_mean": s.score_mean, "score_min": s.score_min,
        "duration": round((s.end_ts - s.start_ts) / 1000, 3), "main_fault": s.main_fault, "set_id": s.set_id,
        "complete": s.complete, "bad_ratio": s.bad_ratio, "ended_by": s.ended_by,
    }
    tags = {"site": site, "node": s.node, "member": s.member, "exercise": s.exercise, "grade": s.grade}
    return Point("set", tags, fields, s.start_ts)


def node_stats_point(site: str, stats: NodeStats) -> Point:
    fields: dict[str, float | int | bool | str] = {
        "fps": stats.fps, "infer_ms": stats.infer_ms, "pose_ms": stats.pose_ms, "dropped": stats.dropped,
        "unpublished": stats.unpublished, "refused": stats.refused, "queue": stats.queue, "out_queue": stats.out_queue,
        "frames": stats.frames, "no_person": stats.no_person, "exercise_mismatches": stats.exercise_mismatches,
    }
    if stats.cpu_temp is not None:
        fields["cpu_temp"] = stats.cpu_temp
    if stats.rss_mb is not None:
        fields["rss_mb"] = stats.rss_mb
    if stats.activity is not None:
        fields["idle"] = stats.activity == "idle"
    return Point("node_stats", {"site": site, "node": stats.node}, fields, stats.ts)


def event_ts(ts: int | None, received_ms: int, clock: ClockPolicy) -> int:
    """The message's own time when it has one within the clock policy, else the aggregator's receive time.

    A message's own time makes its point's identity deterministic: a retained message redelivered on each
    (re)connect overwrites the point it wrote the first time. Without one (the edge's Last Will, a check-out,
    a kiosk that sends no time), the receive time is the only honest time there is; such a message writes a
    new point each time it is delivered, repeating the same state.
    """
    if ts is not None and received_ms - clock.max_age_ms <= ts <= received_ms + clock.max_future_ms:
        return ts
    return received_ms


def session_point(site: str, node: str, session: SessionMessage | None, received_ms: int,
                  clock: ClockPolicy) -> Point:
    """A check-in (``session``) or, for ``None`` (the empty payload), a check-out at ``node``.

    The member is a tag, as on every point that names one, so ``formcheck member erase`` removes it with
    ``DROP SERIES`` (InfluxDB 1.x deletes by tag only). A check-out names nobody: it has no ``member`` tag (a
    tag cannot be empty in line protocol), so the station's last point reads ``member`` null once the member
    has left. It has no payload and so no time of its own: it is stored at its receive time. Its fields keep
    the types of a check-in's (``exercise`` ""), so the measurement has no type conflict.
    """
    fields: dict[str, float | int | bool | str]
    tags = {"site": site, "node": node}
    if session is None:
        fields = {"exercise": "", "checked_in": False}
        ts = received_ms
    else:
        # "" when the check-in names no exercise (the node recognises it; the frames and reps carry it).
        fields = {"exercise": session.exercise or "", "checked_in": True}
        tags["member"] = session.member
        ts = event_ts(session.ts, received_ms, clock)
    return Point("session", tags, fields, ts)


def node_status_point(site: str, status: NodeStatus, received_ms: int, clock: ClockPolicy) -> Point:
    """The node's availability: ``online``/``stopped`` carry the edge's publish time, the Last Will (``offline``)
    carries none and is stored at its receive time.

    An online status also stores its ``activity`` (``idle`` or ``active``; a node that never goes idle sends none:
    active), so the station's last point says whether anyone is there; offline and stopped have none (a stopped
    node's status may still carry the idle it had), so the last point's activity is null when the node is not up.
    """
    fields: dict[str, float | int | bool | str] = {"state": status.state, "boot": status.boot or ""}
    if status.state == "online":
        fields["activity"] = status.activity or "active"
    return Point("node_status", {"site": site, "node": status.node}, fields,
                 event_ts(status.ts, received_ms, clock))


def checkpoint_points(site: str, node: str, ended: list[SetMessage], open_set: Checkpoint | None,
                      changed: bool) -> list[Point]:
    """``open_set`` points: where a restarted aggregator picks up the station's open set (``Station.resume``).

    One point per set, at the set's start, so each checkpoint overwrites the last: ``closed`` once the set
    ended, else the set's state (``Station.checkpoint``) when ``changed`` (a rep was added). Written with the
    rep that changed the set, so a checkpoint is never older than the reps stored. The set's member is a tag
    (the state names them too): the ``closed`` point overwrites the member's open checkpoint, and erasing the
    member drops both.
    """
    points = [Point("open_set", {"site": site, "node": node, "member": s.member},
                    {"set_id": s.set_id, "closed": True, "state": ""}, s.start_ts) for s in ended]
    if open_set is not None and changed:
        # Past one string field (hundreds of reps) the set cannot be resumed: say so rather than leave an older,
        # shorter state behind, which would resume the set without its latest reps.
        resumable = len(open_set.state) <= CHECKPOINT_MAX_BYTES
        points.append(Point("open_set", {"site": site, "node": node, "member": open_set.member},
                            {"set_id": open_set.set_id, "closed": not resumable,
                             "state": open_set.state if resumable else ""}, open_set.start_ts))
    return points


CHECKPOINT_MAX_BYTES = 60_000  # InfluxDB 1.x: a string field holds at most 64 KB
