"""The aggregator's processing, with no network: messages in, points stored, reps/sets and acks out.

It runs in a worker thread of the network process, or (``workers: process``)
in a process of its own, so that decoding, rep detection, grading and line
encoding do not compete for the GIL with paho's packet handling. Either way
it reaches MQTT only through an :class:`Outbox`, and acknowledges a message
only after everything it produced is stored.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple, Protocol

from pydantic import ValidationError

from formcheck_aggregator.config import AggregatorConfig
from formcheck_aggregator.decoder import DROP_REASONS, ClockPolicy, Decoded, Dropped, NotOwned, decode
from formcheck_aggregator.influx import InfluxError, InfluxWriter, Line, Point, influxql_string
from formcheck_aggregator.notifier import Notifier
from formcheck_aggregator.points import (
    FrameSampler,
    checkpoint_points,
    frame_line,
    frame_point,
    node_stats_point,
    node_status_point,
    rep_point,
    session_point,
    set_point,
)
from formcheck_aggregator.station import GUEST, OpenSetCheckpoint, Station, StationOutput
from formcheck_protocol.messages import (
    FrameMessage,
    HistoryEntry,
    MemberHistory,
    NodeStats,
    NodeStatus,
    SessionMessage,
    SetMessage,
)
from formcheck_protocol.topics import REGISTRY, Topics
from formcheck_runtime.ratelog import RateLimitedLog

log = logging.getLogger("formcheck_aggregator.service")

RESUME_TIMEOUT_S = 2.0  # longest the processing waits for the open set checkpoints
RESUME_RETRY_S = 30.0  # after a failed read, the earliest next attempt
HISTORY_SETS = 20  # sets in a member's retained history message
HISTORY_TIMEOUT_S = 2.0  # longest a member's history is read from InfluxDB (once per set)


Snapshot = dict[str, dict[str, int]]
"""Sections of additive counters (see ``ProcessingCore.snapshot``)."""

STATION_SECTION = "station/"
"""Prefix of a station's section in a snapshot."""


class Inbound(NamedTuple):
    """One MQTT message as received: what the core needs, and what identifies its acknowledgement.

    A named tuple: one is built per message on the network thread, several times cheaper than a frozen dataclass.
    """

    topic: str
    payload: bytes
    mid: int
    qos: int


class Outbox(Protocol):
    """The way back to MQTT: the network side itself in one process, a pipe to it from a worker process."""

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None: ...
    def ack(self, mids: list[int]) -> None:
        """Acknowledge QoS 1 messages by id, in this order."""


class ProcessingCore:
    """Decoder, stations, grading, InfluxDB writer and notifier of one aggregator."""

    def __init__(self, config: AggregatorConfig, outbox: Outbox, writer: InfluxWriter | None = None) -> None:
        self.config = config
        self.outbox = outbox
        self.topics = Topics(site=config.site, prefix=config.mqtt.prefix)
        self.writer = writer or InfluxWriter(config.influx)
        self.notifier = Notifier(config.notifications)
        self.stations: dict[str, Station] = {}
        self.counters: Counter[str] = Counter()
        self.invalid: Counter[str] = Counter()
        self._checkpoints: dict[str, OpenSetCheckpoint] | None = None  # node → open set left by a predecessor
        self._checkpoints_retry_at = 0.0
        self._clock = ClockPolicy(int(config.clock.max_future_s * 1000), int(config.clock.max_age_s * 1000))
        self._ratelog = RateLimitedLog(log)
        self._history: dict[str, list[HistoryEntry]] = {}  # member -> last sets, newest first
        self._frame_samplers: dict[str, FrameSampler] = {}  # node -> which frames become points

    def start(self) -> None:
        self.writer.start()
        self.notifier.start()

    def close(self, timeout: float | None = None) -> None:
        """Flush what can be stored within ``timeout`` (default ``stop_timeout_s``); unwritten points stay
        unacknowledged and are redelivered next run."""
        budget = self.config.stop_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + budget
        self.writer.close(timeout=budget)
        self.notifier.close(timeout=max(0.0, deadline - time.monotonic()))

    def station(self, node: str) -> Station:
        station = self.stations.get(node)
        if station is None:
            station = Station(node, rep_config=self.config.reps, set_config=self.config.sets,
                              grading=self.config.grading)
            self.stations[node] = station
            if self.config.sets.resume_open_sets:
                self._resume(station)
        return station

    def _resume(self, station: Station) -> None:
        """Reopen the set a previous aggregator left open at this station (see ``points.checkpoint_points``).

        Runs once per station, before its first message. Without it, an aggregator restarted in the middle of a
        set (a crash, an upgrade) would split the set: the reps stored before would never get a ``set`` row and
        the rest would start a new set at rep 1.
        """
        checkpoints = self._open_sets()
        checkpoint = checkpoints.pop(station.node, None) if checkpoints is not None else None
        if checkpoint is None:
            return
        station.resume(checkpoint)
        self.counters["sets_resumed"] += 1
        log.info("station %s: resumed open set %s at rep %d (member %s)", station.node, checkpoint.set_id,
                 len(checkpoint.reps), checkpoint.member)

    def _open_sets(self) -> dict[str, OpenSetCheckpoint] | None:
        """The site's open set checkpoints, read once (one query for all stations); None while unreadable.

        If InfluxDB cannot answer within ``RESUME_TIMEOUT_S``, the stations created meanwhile start afresh and
        the query is tried again at the next new station ``RESUME_RETRY_S`` later at the earliest, so that a hung
        InfluxDB costs the processing thread one timeout, not one per station.
        """
        if self._checkpoints is not None or time.monotonic() < self._checkpoints_retry_at:
            return self._checkpoints
        q = (f'SELECT "closed", "state" FROM "open_set" WHERE "site" = {influxql_string(self.config.site)} '
             'GROUP BY "node" ORDER BY time DESC LIMIT 1')
        try:
            series = self.writer.query(q, timeout_s=min(self.config.influx.timeout_s, RESUME_TIMEOUT_S))
        except InfluxError as exc:
            if "database not found" in exc.message:  # a first start: nothing to resume
                self._checkpoints = {}
                return self._checkpoints
            self.counters["resume_failed"] += 1
            self._checkpoints_retry_at = time.monotonic() + RESUME_RETRY_S
            log.warning("open sets not read from InfluxDB (%s): sets in progress at new stations start afresh", exc)
            return None
        checkpoints: dict[str, OpenSetCheckpoint] = {}
        for tags, rows in series:
            if not rows or rows[0].get("closed") is not False:
                continue
            try:
                checkpoints[tags.get("node", "")] = OpenSetCheckpoint.model_validate_json(str(rows[0].get("state")))
            except ValidationError as exc:
                self.counters["resume_failed"] += 1
                log.warning("station %s: unreadable open set checkpoint, not resumed: %s", tags.get("node"),
                            str(exc).splitlines()[0])
        self._checkpoints = checkpoints
        return checkpoints

    def handle_batch(self, items: Sequence[Inbound]) -> None:
        """Process messages in arrival order; they are acknowledged together once all their points are stored.

        One writer submission per batch instead of one per message: the submission, its callback and the acks
        cost as much as the processing of a frame itself. Order is kept: reps and sets are published in the
        order they completed, all before the acks of the batch, so an ack never overtakes the publish of the rep
        its frame completed. Dropped messages are acknowledged with the batch (still in arrival order), and
        nothing of theirs is stored.
        """
        counters = self.counters
        counters["messages"] += len(items)
        received_ms = int(time.time() * 1000)
        topics, clock, max_bytes = self.topics, self._clock, self.config.mqtt.max_payload_bytes
        partition = self.config.partition
        owns = partition.owns if partition.mode != "all" else None
        points: list[Point | Line] = []
        outs: list[StationOutput] = []
        acks: list[Inbound] = []
        for item in items:
            if item.qos > 0:
                acks.append(item)
            decoded = decode(topics, item.topic, item.payload, received_ms, clock, max_bytes, owns)
            if isinstance(decoded, NotOwned):
                counters["not_owned"] += 1
                continue
            if isinstance(decoded, Dropped):
                self.invalid[decoded.reason] += 1
                self._ratelog(decoded.reason,
                              f"dropped message on {item.topic[:120]}: {decoded.reason}: {decoded.detail}")
                continue
            produced, out = self.apply(decoded, received_ms)
            points += produced
            if out.reps or out.sets:
                outs.append(out)
        # Through the writer even with nothing to store: acks must go out in arrival order.
        self.writer.submit(points, on_done=functools.partial(self._stored, outs, acks))

    def apply(self, decoded: Decoded, received_ms: int) -> tuple[list[Point | Line], StationOutput]:
        """One valid message → the points to store and what the station produced (reps, sets).

        Sessions and node statuses are stored as ``session`` and ``node_status`` points, at the message's own
        time when the clock policy accepts it, else at ``received_ms`` (see ``formcheck_aggregator.points.event_ts``).
        An empty status payload (a cleared retained topic, not something the edge sends) stores nothing.
        """
        site = self.config.site
        payload = decoded.payload
        station = self.station(decoded.node)
        points: list[Point | Line]
        if isinstance(payload, FrameMessage):
            out = station.on_frame(payload)
            # Stored at a lower rate (points.FrameSampler); duplicates and late frames are not stored again.
            sampler = self._frame_samplers.get(decoded.node)
            if sampler is None:
                sampler = self._frame_samplers[decoded.node] = FrameSampler(self.config.influx.frame_points_per_s)
            stands_for = sampler.take(payload) if station.accepted else 0
            if not stands_for:
                points = []
            else:
                try:
                    points = [frame_line(site, payload, stands_for)]
                except (ValueError, TypeError):
                    points = [frame_point(site, payload, stands_for)]  # the writer refuses it, counts it, logs why
        elif isinstance(payload, NodeStats):
            # Idle stats carry the node's time on while it publishes no frames (a set's rest timeout).
            out = station.on_idle(payload.ts) if payload.activity == "idle" else StationOutput()
            points = [node_stats_point(site, payload), *self._frame_tail(decoded.node)]
            if not (out.reps or out.sets):
                return points, out
        elif isinstance(payload, SessionMessage) or (payload is None and decoded.kind == "session"):
            session = payload if isinstance(payload, SessionMessage) else None
            out = station.on_session(session)
            points = [session_point(site, decoded.node, session, received_ms, self._clock)]
        elif isinstance(payload, NodeStatus):
            if payload.state == "offline":
                out = station.on_offline()
            elif payload.state == "stopped":
                out = station.finish("node_stopped")
            elif payload.activity == "idle" and payload.ts is not None:
                out = station.on_idle(payload.ts)
            else:
                out = StationOutput()
            points = [node_status_point(site, payload, received_ms, self._clock), *self._frame_tail(decoded.node)]
        else:
            return [], StationOutput()
        points += [rep_point(site, r) for r in out.reps] + [set_point(site, s) for s in out.sets]
        if (out.reps or out.sets) and self.config.sets.resume_open_sets:
            points += checkpoint_points(site, station.node, out.sets, station.checkpoint(), changed=bool(out.reps))
        self.counters["reps"] += len(out.reps)
        self.counters["sets"] += len(out.sets)
        return points, out

    def _frame_tail(self, node: str) -> list[Point | Line]:
        """The frame point of the station's last frames not stored yet (``points.FrameSampler.flush``): a node's
        stats and status come between bursts of frames, so the stored counts are exact within a stats interval."""
        sampler = self._frame_samplers.get(node)
        tail = sampler.flush() if sampler is not None else None
        if tail is None:
            return []
        try:
            return [frame_line(self.config.site, *tail)]
        except (ValueError, TypeError):
            return [frame_point(self.config.site, *tail)]

    def _stored(self, outs: list[StationOutput], acks: list[Inbound]) -> None:
        """Runs on the writer thread once the points are stored: tell people, then acknowledge."""
        topics = self.topics
        for out in outs:
            for rep in out.reps:
                payload = rep.to_json()
                self.outbox.publish(topics.node(rep.node, "reps"), payload, REGISTRY["reps"].qos, False)
                self.outbox.publish(topics.member(rep.member, "reps"), payload, REGISTRY["member:reps"].qos, False)
            for s in out.sets:
                self.outbox.publish(topics.node(s.node, "sets"), s.to_json(), REGISTRY["sets"].qos, False)
                self.outbox.publish(topics.member_notifications(s.member), s.to_json(), 1, True)
                self.outbox.publish(topics.member(s.member, "history"), self.member_history(s).to_json(),
                                    REGISTRY["member:history"].qos, True)
                self.notifier.notify(s)
        if acks:
            self.outbox.ack([item.mid for item in acks])

    def member_history(self, s: SetMessage) -> MemberHistory:
        """The member's last sets with ``s`` first, read from the stored ``set`` rows (``s`` is stored already).

        Read at every set (one query; sets are rare), so the history is whole whichever worker process or
        aggregator handled the member's other stations, and after a restart. While InfluxDB cannot answer, the
        last history this core knew is used.
        """
        entries = self._stored_history(s.member)
        if entries is None:
            entries = self._history.get(s.member, [])
        entry = HistoryEntry(set_id=s.set_id, node=s.node, exercise=s.exercise, end_ts=s.end_ts, reps=s.reps,
                             grade=s.grade, score_mean=round(s.score_mean, 1), main_fault=s.main_fault,
                             complete=s.complete)
        entries = [entry, *(e for e in entries if e.set_id != s.set_id)][:HISTORY_SETS]
        self._history[s.member] = entries
        return MemberHistory(member=s.member, sets=entries)

    def _stored_history(self, member: str) -> list[HistoryEntry] | None:
        q = (f'SELECT * FROM "set" WHERE "site" = {influxql_string(self.config.site)} AND "member" = '
             f'{influxql_string(member)} ORDER BY time DESC LIMIT {HISTORY_SETS}')
        try:
            series = self.writer.query(q, timeout_s=min(self.config.influx.timeout_s, HISTORY_TIMEOUT_S))
        except InfluxError as exc:
            self._ratelog("history", f"history of member {member} not read from InfluxDB ({exc}): the last one "
                          "known here is used")
            return None
        entries: list[HistoryEntry] = []
        for _, rows in series:
            for row in rows:
                try:
                    start = datetime.fromisoformat(str(row["time"])).timestamp()
                    entries.append(HistoryEntry.model_validate({
                        "set_id": row["set_id"], "node": row["node"], "exercise": row["exercise"],
                        "end_ts": round((start + float(str(row.get("duration") or 0))) * 1000),
                        "reps": row["reps"], "grade": row["grade"],
                        "score_mean": round(float(str(row["score_mean"])), 1),
                        "main_fault": row.get("main_fault") or "", "complete": row.get("complete") is not False}))
                except (KeyError, ValueError, ValidationError):
                    continue
        return entries

    def stats_point(self, inbox: int = 0, inbox_dropped: int = 0) -> Point:
        fields: dict[str, float | int | bool | str] = {**self.stats_fields(), "inbox": inbox,
                                                       "inbox_dropped": inbox_dropped}
        return Point("aggregator_stats", self.stats_tags(), fields, int(time.time() * 1000))

    def stats_tags(self) -> dict[str, str]:
        return {"site": self.config.site, "aggregator": self.config.id}

    def stats_fields(self) -> dict[str, int]:
        """This core's counters for ``aggregator_stats`` (all additive: worker processes' figures are summed)."""
        writer = self.writer.stats()
        totals = {k: 0 for k in ("frames", "duplicates", "gaps", "late", "seq_outliers", "resyncs", "clock_backwards",
                                 "replayed_reps")}
        for station in self.stations.values():
            for key in totals:
                totals[key] += getattr(station.counters, key)
        fields: dict[str, int] = {
            "messages": self.counters["messages"], "invalid": sum(self.invalid.values()),
            "reps": self.counters["reps"], "sets": self.counters["sets"], **totals,
            "write_errors": writer.write_errors_total, "points_written": writer.points_written,
            "points_rejected": writer.points_dropped_rejected, "points_overflow": writer.points_dropped_overflow,
            "buffer": writer.buffer,
            "notifications_sent": self.notifier.stats.sent, "notifications_failed": self.notifier.stats.failed,
            "sets_resumed": self.counters["sets_resumed"], "resume_failed": self.counters["resume_failed"],
        }
        fields.update({f"invalid_{reason}": self.invalid[reason] for reason in DROP_REASONS})
        return fields

    def snapshot(self) -> Snapshot:
        """Counters for tools, tests and benchmarks: core counters, invalid by reason, stream totals, writer figures,
        and one section per station (``station/NODE``: its stream counters and ``checked_in``).

        Every value is additive and stations live in one core each, so the snapshots of worker processes sum
        (``formcheck_aggregator.processing.merge_snapshots``).
        """
        totals: Counter[str] = Counter()
        per_station: Snapshot = {}
        for node, station in list(self.stations.items()):
            counters = dataclasses.asdict(station.counters)
            totals.update(counters)
            per_station[f"{STATION_SECTION}{node}"] = {**counters, "checked_in": int(station.member != GUEST)}
        writer = self.writer.stats()
        return {
            "counters": dict(self.counters), "invalid": dict(self.invalid), "stations": dict(totals),
            "writer": {"points_written": writer.points_written, "buffer": writer.buffer,
                       "rejected": writer.points_dropped_rejected, "overflow": writer.points_dropped_overflow,
                       "write_errors": writer.write_errors_total},
            **per_station,
        }

