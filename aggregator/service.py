"""``formcheck aggregator``: station streams from MQTT → graded reps and sets → InfluxDB and members.

Delivery guarantees (Telegraf's consumer model):

* The MQTT session is persistent (``clean_start`` off, session expiry set), and
  every QoS 1 message is acknowledged only once the points it produced are
  durably written to InfluxDB (or definitively rejected and counted). A crash
  or an InfluxDB outage therefore loses nothing the broker still holds.
* Receive Maximum bounds the unacknowledged messages in flight, so the inbox
  between paho's thread and ours is bounded too, and an InfluxDB outage turns
  into back-pressure on the broker instead of memory growth here.
* Reps and sets are published (``reps``/``sets`` topics, member notification)
  after their points are stored, so a member is never told about a set that
  is not in the database. Identical points overwrite, so redelivery after a
  crash does not double anything in storage.
* Bad input is acknowledged, dropped, counted by reason, and logged at most
  once a minute per reason.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from types import FrameType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from aggregator.config import AggregatorConfig
from aggregator.decoder import DROP_REASONS, ClockPolicy, Decoded, Dropped, decode
from aggregator.influx import InfluxWriter, Point
from aggregator.mqtt_loop import FlowControlledLoop
from aggregator.notifier import Notifier
from aggregator.points import (
    frame_point,
    node_stats_point,
    node_status_point,
    rep_point,
    session_point,
    set_point,
)
from aggregator.station import Station, StationOutput
from edge_node.queues import DropQueue
from formcheck.broker import connect_properties, make_client
from protocol.messages import FrameMessage, NodeState, NodeStats, NodeStatus, SessionMessage
from protocol.topics import REGISTRY, Topics

log = logging.getLogger(__name__)

_CONSUMED = ("frames", "status", "session", "stats")


@dataclass
class _Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int


class _RateLimitedLog:
    """At most one line per key per interval, with the count of what was suppressed."""

    def __init__(self, interval_s: float = 60.0) -> None:
        self._interval = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def __call__(self, key: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self._interval) >= self._interval:
            extra = f" ({self._suppressed[key]} more since the last report)" if self._suppressed[key] else ""
            log.warning("%s%s", message, extra)
            self._last[key] = now
            self._suppressed[key] = 0
        else:
            self._suppressed[key] += 1


class Aggregator:
    """One aggregator process. Thread model: paho's network thread → inbox → one worker → writer thread."""

    def __init__(self, config: AggregatorConfig, writer: InfluxWriter | None = None) -> None:
        self.config = config
        self.topics = Topics(site=config.site, prefix=config.mqtt.prefix)
        self.writer = writer or InfluxWriter(config.influx)
        self.notifier = Notifier(config.notifications)
        self.stations: dict[str, Station] = {}
        self.counters: Counter[str] = Counter()
        self.invalid: Counter[str] = Counter()
        self.connected = threading.Event()
        # We stop reading at receive_maximum unacknowledged QoS 1 messages (see mqtt_loop.py), so QoS 1
        # messages always fit; QoS 0 stats are dropped first when the inbox is busy.
        self._inbox: DropQueue[_Inbound] = DropQueue(config.mqtt.receive_maximum * 2 + 64)
        self._unacked = 0
        self._unacked_lock = threading.Lock()
        self._clock = ClockPolicy(int(config.clock.max_future_s * 1000), int(config.clock.max_age_s * 1000))
        self._ratelog = _RateLimitedLog()
        self._client = self._make_client()
        self._loop = FlowControlledLoop(
            self._client, self._has_room, config.mqtt.reconnect_min_s, config.mqtt.reconnect_max_s
        )

    def _has_room(self) -> bool:
        with self._unacked_lock:
            return self._unacked < self.config.mqtt.receive_maximum

    def _make_client(self) -> mqtt.Client:
        client = make_client(self.config.mqtt, f"formcheck-aggregator-{self.config.site}-{self.config.id}",
                             manual_ack=True)
        will = NodeStatus(state="offline", node=self.config.id).to_json()
        client.will_set(self.topics.aggregator_status(), will, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self.writer.start()
        self.notifier.start()
        cfg = self.config.mqtt
        self._client.connect_async(
            cfg.host, cfg.port, keepalive=cfg.keepalive_s, clean_start=False,
            properties=connect_properties(cfg.session_expiry_s, cfg.receive_maximum),
        )
        self._loop.start()
        if not self.connected.wait(cfg.connect_timeout_s):
            log.warning("broker %s:%d not reachable yet; retrying with backoff", cfg.host, cfg.port)

    def run(self, stop: threading.Event) -> int:
        """Process messages until ``stop`` is set; returns the exit status."""
        self.start()
        next_stats = time.monotonic() + self.config.stats_interval_s
        try:
            while not stop.is_set():
                self.step(timeout=0.2)
                if time.monotonic() >= next_stats:
                    next_stats += self.config.stats_interval_s
                    self.writer.submit([self.stats_point()])
                    self._heartbeat()
        finally:
            self.stop()
        return 0

    def _heartbeat(self) -> None:
        path = self.config.heartbeat_file
        if path is not None:
            try:
                path.touch()
            except OSError as exc:
                self._ratelog("heartbeat", f"cannot touch heartbeat file {path}: {exc.strerror}")

    def step(self, timeout: float) -> bool:
        """Handle one inbound message if one arrives within ``timeout``."""
        item = self._inbox.get(timeout=timeout)
        if item is None:
            return False
        self.handle(item)
        return True

    def stop(self) -> None:
        # Unwritten points stay unacknowledged: the broker redelivers them to our next run.
        self.writer.close(timeout=self.config.influx.timeout_s * 2)
        self.notifier.close()
        if self.connected.is_set():
            info = self._client.publish(self.topics.aggregator_status(), self._status("stopped"), qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2.0)
            self.connected.clear()  # a disconnect we asked for is not worth a warning
            self._client.disconnect()
            self._loop.wait_disconnected(timeout=2.0)
        self._loop.stop()

    # -- processing ----------------------------------------------------------

    def station(self, node: str) -> Station:
        station = self.stations.get(node)
        if station is None:
            station = Station(node, rep_config=self.config.reps, set_config=self.config.sets,
                              grading=self.config.grading)
            self.stations[node] = station
        return station

    def handle(self, item: _Inbound) -> None:
        self.counters["messages"] += 1
        ack = functools.partial(self._ack, item)
        received_ms = int(time.time() * 1000)
        decoded = decode(self.topics, item.topic, item.payload, received_ms, self._clock,
                         self.config.mqtt.max_payload_bytes)
        if isinstance(decoded, Dropped):
            self.invalid[decoded.reason] += 1
            self._ratelog(decoded.reason, f"dropped message on {item.topic[:120]}: {decoded.reason}: {decoded.detail}")
            # Through the writer even with nothing to write: QoS 1 acks must go out in arrival order.
            self.writer.submit([], on_done=ack)
            return
        if not self.config.partition.owns(decoded.node):
            self.counters["not_owned"] += 1
            self.writer.submit([], on_done=ack)
            return
        points, out = self._apply(decoded, received_ms)
        self.writer.submit(points, on_done=functools.partial(self._stored, out, ack))

    def _apply(self, decoded: Decoded, received_ms: int) -> tuple[list[Point], StationOutput]:
        """One valid message → the points to store and what the station produced (reps, sets).

        Sessions and node statuses are stored as ``session`` and ``node_status`` points, at the message's own
        time when the clock policy accepts it, else at ``received_ms`` (see ``aggregator.points.event_ts``).
        An empty status payload (a cleared retained topic, not something the edge sends) stores nothing.
        """
        site = self.config.site
        payload = decoded.payload
        station = self.station(decoded.node)
        if isinstance(payload, FrameMessage):
            out = station.on_frame(payload)
            points = [frame_point(site, payload)]
        elif isinstance(payload, NodeStats):
            return [node_stats_point(site, payload)], StationOutput()
        elif isinstance(payload, SessionMessage) or (payload is None and decoded.kind == "session"):
            session = payload if isinstance(payload, SessionMessage) else None
            out = station.on_session(session)
            points = [session_point(site, decoded.node, session, received_ms, self._clock)]
        elif isinstance(payload, NodeStatus):
            if payload.state == "offline":
                out = station.on_offline()
            elif payload.state == "stopped":
                out = station.flush("node_stopped")
            else:
                out = StationOutput()
            points = [node_status_point(site, payload, received_ms, self._clock)]
        else:
            return [], StationOutput()
        points += [rep_point(site, r) for r in out.reps] + [set_point(site, s) for s in out.sets]
        self.counters["reps"] += len(out.reps)
        self.counters["sets"] += len(out.sets)
        return points, out

    def _stored(self, out: StationOutput, ack: functools.partial[None]) -> None:
        """Runs on the writer thread once the points are stored: tell people, then acknowledge."""
        for rep in out.reps:
            self._client.publish(self.topics.node(rep.node, "reps"), rep.to_json(), qos=REGISTRY["reps"].qos)
        for s in out.sets:
            self._client.publish(self.topics.node(s.node, "sets"), s.to_json(), qos=REGISTRY["sets"].qos)
            self._client.publish(self.topics.member_notifications(s.member), s.to_json(), qos=1, retain=True)
            self.notifier.notify(s)
        ack()

    def _ack(self, item: _Inbound) -> None:
        if item.qos > 0:
            self._client.ack(item.mid, item.qos)
            with self._unacked_lock:
                self._unacked -= 1

    def stats_point(self) -> Point:
        writer = self.writer.stats()
        totals = {k: 0 for k in ("frames", "duplicates", "gaps", "late", "seq_outliers", "resyncs", "clock_backwards")}
        for station in self.stations.values():
            for key in totals:
                totals[key] += getattr(station.counters, key)
        fields: dict[str, float | int | bool | str] = {
            "messages": self.counters["messages"], "invalid": sum(self.invalid.values()),
            "reps": self.counters["reps"], "sets": self.counters["sets"], **totals,
            "write_errors": writer.write_errors_total, "points_written": writer.points_written,
            "points_rejected": writer.points_dropped_rejected, "points_overflow": writer.points_dropped_overflow,
            "buffer": writer.buffer, "inbox": len(self._inbox), "inbox_dropped": self._inbox.dropped,
            "notifications_sent": self.notifier.stats.sent, "notifications_failed": self.notifier.stats.failed,
        }
        fields.update({f"invalid_{reason}": self.invalid[reason] for reason in DROP_REASONS})
        return Point("aggregator_stats", {"site": self.config.site, "aggregator": self.config.id}, fields,
                     int(time.time() * 1000))

    # -- paho callbacks (network thread) -------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason: ReasonCode,
                    properties: Properties | None) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        log.info("connected to broker (session %s)", "resumed" if flags.session_present else "new")
        client.publish(self.topics.aggregator_status(), self._status("online"), qos=1, retain=True)
        partition = self.config.partition
        if partition.mode == "list":
            filters = [self.topics.node(n, k) for n in partition.stations for k in _CONSUMED]
        else:
            filters = [self.topics.all_nodes(k) for k in _CONSUMED]
        client.subscribe([(f, REGISTRY[f.rsplit("/", 1)[-1]].qos or 0) for f in filters])
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags, reason: ReasonCode,
                       properties: Properties | None) -> None:
        if self.connected.is_set():
            log.warning("disconnected from broker (%s); reconnecting", reason)
        self.connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        item = _Inbound(message.topic, bytes(message.payload), message.mid, message.qos)
        if item.qos == 0:
            if len(self._inbox) >= self.config.mqtt.receive_maximum:
                self.counters["qos0_dropped"] += 1
                return
        else:
            with self._unacked_lock:
                self._unacked += 1
        if not self._inbox.put(item):
            self._ratelog("inbox", "inbox full: a message was dropped before processing (a bug: reads are gated)")

    def _status(self, state: NodeState) -> bytes:
        return NodeStatus(state=state, node=self.config.id, ts=int(time.time() * 1000)).to_json()


def run_aggregator(config: AggregatorConfig) -> int:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return Aggregator(config).run(stop)
