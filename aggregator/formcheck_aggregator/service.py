"""``formcheck aggregator``: station streams from MQTT → graded reps and sets → InfluxDB and members.

Delivery guarantees (Telegraf's consumer model):

* The MQTT session is persistent (``clean_start`` off, session expiry set), and
  every QoS 1 message is acknowledged only once the points it produced are
  durably written to InfluxDB (or definitively rejected and counted). A crash
  or an InfluxDB outage therefore loses nothing the broker still holds.
* At most Receive Maximum messages are unacknowledged: the network loop stops
  reading the socket at that point (``mqtt_loop.py``), so every buffer between
  the socket and InfluxDB is bounded and an InfluxDB outage becomes
  back-pressure on the broker, not memory growth here.
* Reps and sets are published (``reps``/``sets`` topics, member notification)
  after their points are stored, so a member is never told about a set that
  is not in the database. Identical points overwrite, so redelivery after a
  crash does not double anything in storage.
* Bad input is acknowledged, dropped, counted by reason, and logged at most
  once a minute per reason.

This process runs paho and the network loop; the processing
(``processing.Processing``) runs in worker processes by default (``workers:
process``, ``workers.py``: batches over pipes, messages one way, publishes
and acks in arrival order the other) or in this process (``workers:
thread``, ``processing.InProcess``; slower on more than one core).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections import Counter
from types import FrameType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from formcheck_aggregator.config import AggregatorConfig
from formcheck_aggregator.core import Inbound, Snapshot
from formcheck_aggregator.influx import InfluxWriter
from formcheck_aggregator.mqtt_loop import FlowControlledLoop
from formcheck_aggregator.processing import InProcess, Processing
from formcheck_aggregator.workers import WorkerPool
from formcheck_protocol.messages import NodeState, NodeStatus
from formcheck_protocol.topics import REGISTRY, Topics
from formcheck_runtime.broker import connect_properties, disconnect_reason, make_client, unreachable_reason
from formcheck_runtime.paho_internals import LeanReceiveClient, RawMessage
from formcheck_runtime.queues import DropQueue
from formcheck_runtime.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

_CONSUMED = ("frames", "status", "session", "stats")


class Aggregator:
    """One aggregator: the network side (MQTT client, inbox, acknowledgements) and its :class:`Processing`.

    It is the processing's way back to MQTT (``core.Outbox``: ``publish`` and ``ack``), whether the processing
    runs in this process or in worker processes.
    """

    def __init__(self, config: AggregatorConfig, writer: InfluxWriter | None = None) -> None:
        self.config = config
        self.topics = Topics(site=config.site, prefix=config.mqtt.prefix)
        self.connected = threading.Event()
        self.network_counters: Counter[str] = Counter()
        # Reads stop at receive_maximum unacknowledged QoS 1 messages (mqtt_loop.py), so they always fit;
        # QoS 0 stats are dropped first when the inbox is busy.
        self._inbox: DropQueue[Inbound] = DropQueue(config.mqtt.receive_maximum * 2 + 64)
        self._pending: dict[int, Inbound] = {}  # mid → unacknowledged QoS 1 message
        self._pending_lock = threading.Lock()
        self._ratelog = RateLimitedLog(log)
        self._client = self._make_client()
        self._loop = FlowControlledLoop(
            self._client, self._has_room, config.mqtt.reconnect_min_s, config.mqtt.reconnect_max_s
        )
        self.fatal: str | None = None
        self.processing: Processing = (
            InProcess(config, self, writer) if config.workers == "thread"
            else WorkerPool(config, self, self._processing_failed, config.worker_process_count())
        )

    def snapshot(self) -> Snapshot:
        """The processing's counters (``ProcessingCore.snapshot``), with the network side's under ``network``."""
        return {**self.processing.snapshot(), "network": dict(self.network_counters)}

    @property
    def counters(self) -> Counter[str]:
        """The processing's core counters and the network side's, summed."""
        return Counter(self.processing.snapshot().get("counters", {})) + self.network_counters

    @property
    def worker_pids(self) -> list[int | None]:
        """PIDs of the worker processes (``workers: process``, once started)."""
        return self.processing.pids

    def _has_room(self) -> bool:
        with self._pending_lock:
            return len(self._pending) < self.config.mqtt.receive_maximum

    def _make_client(self) -> LeanReceiveClient:
        client = make_client(self.config.mqtt, f"formcheck-aggregator-{self.config.site}-{self.config.id}",
                             manual_ack=True, client_class=LeanReceiveClient)
        will = NodeStatus(state="offline", node=self.config.id).to_json()
        client.will_set(self.topics.aggregator_status(), will, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_raw_messages = self._on_raw_messages
        return client

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self.processing.start()
        cfg = self.config.mqtt
        self._client.connect_async(
            cfg.host, cfg.port, keepalive=cfg.keepalive_s, clean_start=False,
            properties=connect_properties(cfg.session_expiry_s, cfg.receive_maximum),
        )
        self._loop.start()
        if not self.connected.wait(cfg.connect_timeout_s):
            log.warning("broker %s:%d not reachable yet (%s); retrying with backoff", cfg.host, cfg.port,
                        unreachable_reason(cfg.host, cfg.port))

    def run(self, stop: threading.Event) -> int:
        """Process messages until ``stop`` is set (or the worker fails); returns the exit status."""
        self.start()
        next_stats = time.monotonic() + self.config.stats_interval_s
        try:
            while not stop.is_set() and self.fatal is None:
                if not self.processing.pump(self._inbox):
                    break
                if time.monotonic() >= next_stats:
                    next_stats += self.config.stats_interval_s
                    self._stats()
                    self._heartbeat()
        finally:
            self.stop()
        if self.fatal is not None:
            log.error("%s", self.fatal)
            return 1
        return 0

    def _stats(self) -> None:
        self.processing.request_stats(len(self._inbox), self._inbox.dropped)

    def _heartbeat(self) -> None:
        path = self.config.heartbeat_file
        if path is not None:
            try:
                path.touch()
            except OSError as exc:
                self._ratelog("heartbeat", f"cannot touch heartbeat file {path}: {exc.strerror}")

    def stop(self) -> None:
        """Store what can be stored within ``stop_timeout_s``, say ``stopped``, disconnect.

        Unwritten points stay unacknowledged: the broker redelivers them to our next run. A write stuck on an
        unreachable InfluxDB is abandoned at the deadline (its thread ends with the process).
        """
        deadline = time.monotonic() + self.config.stop_timeout_s

        def left(most: float) -> float:
            return max(0.0, min(most, deadline - time.monotonic()))

        self.processing.close(left(self.config.stop_timeout_s - 0.5))
        if self.connected.is_set():
            info = self._client.publish(self.topics.aggregator_status(), self._status("stopped"), qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=left(2.0))
            self.connected.clear()  # a disconnect we asked for is not worth a warning
            self._loop.disconnect()
            self._loop.wait_disconnected(timeout=left(2.0))
        self._loop.stop()

    # -- the processing's way back to MQTT (core.Outbox; any thread) -----------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self._client.publish(topic, payload, qos=qos, retain=retain)

    def ack(self, mids: list[int]) -> None:
        """Acknowledge pending QoS 1 messages by id (ids no longer pending, e.g. redelivered twice, are skipped)."""
        with self._pending_lock:
            pending = self._pending
            items = [item for mid in mids if (item := pending.pop(mid, None)) is not None]
        self._send_acks(items)

    def _send_acks(self, items: list[Inbound]) -> None:
        self._client.ack_many([item.mid for item in items])  # one write for the lot

    def _processing_failed(self, reason: str) -> None:
        self.fatal = self.fatal or reason

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
            log.warning("disconnected from broker (%s); reconnecting", disconnect_reason(reason))
        self.connected.clear()

    def _on_raw_messages(self, messages: list[RawMessage]) -> None:
        items: list[Inbound] = []
        # QoS 0 (node stats) is dropped first when the inbox is busy; QoS 1 always fits (reads are gated).
        room = self.config.mqtt.receive_maximum - len(self._inbox)
        with self._pending_lock:
            pending = self._pending
            for topic, payload, mid, qos, _dup in messages:
                item = Inbound(topic, payload, mid, qos)
                if qos == 0:
                    if room <= 0:
                        self.network_counters["qos0_dropped"] += 1
                        continue
                else:
                    pending[mid] = item
                room -= 1
                items.append(item)
        if self._inbox.put_many(items):
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
    status = Aggregator(config).run(stop)
    log.info("stopped (exit status %d)", status)
    return status
