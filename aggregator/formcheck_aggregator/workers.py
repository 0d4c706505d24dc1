"""Worker processes (``workers: process``): the processing core runs beside the network process, not in it.

The network process (``service.py``) receives MQTT messages; each worker
process runs one :class:`formcheck_aggregator.core.ProcessingCore` with its own
InfluxDB writer. A station's messages always go to the same worker
(:func:`worker_of`), so per-station order, rep state and sessions live in
exactly one place, and workers share nothing.

Each worker has one duplex pipe. Messages go out in batches; publishes and
acks (in the worker's order: an ack never overtakes the publish of the rep
its frame completed) come back in batches. The network side acks by message
id, so it does not matter which worker a message went to.

``influx.buffer_max_points`` is the aggregator's total: each worker's writer
gets an even share, so memory stays bounded whatever the number of workers.

``aggregator_stats`` stays one point per aggregator: every stats interval
each worker reports its counters, the pool sums them, and worker 0 writes the
sum (with the network side's inbox figures).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import multiprocessing
import queue
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import NamedTuple

from formcheck_aggregator.config import AggregatorConfig
from formcheck_aggregator.core import Inbound, Outbox, ProcessingCore, Snapshot
from formcheck_aggregator.influx import Point
from formcheck_aggregator.processing import merge_snapshots
from formcheck_runtime.queues import DropQueue, QueueClosed

log = logging.getLogger(__name__)

BATCH = 512             # messages per pipe send
SWITCH_INTERVAL_S = 0.0005  # see worker_main
SEND_EVERY_S = 0.005    # longest wait before a partial batch of acks/publishes goes back
INBOX_WAIT_S = 0.2      # longest wait for the first message of a batch


# --- the pipe's messages: network process -> worker ------------------------------------------------------------

class Items(NamedTuple):
    """Messages for the worker's stations: (topic, payload, mid, qos) each."""

    items: list[tuple[str, bytes, int, int]]


class StatsRequest(NamedTuple):
    """Report your counters (``StatsReply``) for stats round ``round``."""

    round: int


class WriteStats(NamedTuple):
    """Store the pool's summed ``aggregator_stats`` point (worker 0 only)."""

    fields: dict[str, int]
    ts_ms: int


class Stop(NamedTuple):
    """Store what you can, send ``Closed`` and exit."""


# --- worker -> network process ------------------------------------------------------------------------------------

class Publish(NamedTuple):
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Acks(NamedTuple):
    mids: list[int]


class Replies(NamedTuple):
    """Publishes and acks in the order the core made them (an ack never overtakes the publish before it)."""

    ops: list[Publish | Acks]


class StatsReply(NamedTuple):
    round: int
    fields: dict[str, int]
    snapshot: Snapshot


class SnapshotReply(NamedTuple):
    snapshot: Snapshot


class Closed(NamedTuple):
    """The worker stored what it could and exits."""


ToWorker = Items | StatsRequest | WriteStats | Stop
FromWorker = Replies | StatsReply | SnapshotReply | Closed


def worker_of(node: str, workers: int) -> int:
    """The worker a station's messages go to: a hash of its id independent of the partition's.

    Partitions choose stations by ``crc32(node) % count``; choosing workers by ``crc32(node) % workers`` too
    would send every station an aggregator owns to the same worker whenever the two numbers share a factor
    (2 aggregators x 2 workers: all on one). A keyed BLAKE2 hash is independent of crc32 and, like it, the
    same in every process and Python version.
    """
    digest = hashlib.blake2b(node.encode("utf-8", "surrogatepass"), digest_size=8, person=b"fc-worker").digest()
    return int.from_bytes(digest, "big") % workers


def worker_index(topic: str, workers: int, cache: dict[str, int]) -> int:
    """The worker of the station a node topic belongs to (``{prefix}/{site}/nodes/{node}/{kind}``)."""
    index = cache.get(topic)
    if index is None:
        parts = topic.rsplit("/", 2)
        index = worker_of(parts[-2] if len(parts) == 3 else "", workers)
        if len(cache) >= 8192:  # topics come from outside: keep the cache bounded
            cache.clear()
        cache[topic] = index
    return index


class WorkerPool:
    """Cores in N worker processes (``workers: process``): an implementation of ``processing.Processing``."""

    def __init__(self, config: AggregatorConfig, outbox: Outbox, on_failure: Callable[[str], None],
                 processes: int) -> None:
        self._config = config
        # The InfluxDB buffer limit bounds the aggregator's memory: each worker's writer gets an even share.
        share = config.influx.model_copy(update={"buffer_max_points": max(1, config.influx.buffer_max_points
                                                                              // processes)})
        worker_config = config.model_copy(update={"influx": share})
        self._workers = [_Worker(worker_config, outbox, on_failure, i, self._on_stats) for i in range(processes)]
        self._topic_index: dict[str, int] = {}
        self._stats_lock = threading.Lock()
        self._stats_round = 0
        self._stats_replies: dict[int, dict[str, int]] = {}
        self._stats_inbox = (0, 0)

    @property
    def pids(self) -> list[int | None]:
        return [w.pid for w in self._workers]

    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    def snapshot(self) -> Snapshot:
        """Counters summed over the workers, as of their last stats report."""
        return merge_snapshots([w.snapshot for w in self._workers])

    def pump(self, inbox: DropQueue[Inbound]) -> bool:
        """Send what the inbox holds (waiting briefly for the first message), one batch per worker."""
        count = len(self._workers)
        try:
            items = inbox.get_batch(BATCH * count, timeout=INBOX_WAIT_S)
        except QueueClosed:
            return False
        if not items:
            return True
        batches: list[list[tuple[str, bytes, int, int]]] = [[] for _ in range(count)]
        cache = self._topic_index
        for item in items:
            index = worker_index(item.topic, count, cache) if count > 1 else 0
            batches[index].append((item.topic, item.payload, item.mid, item.qos))
        for worker, batch in zip(self._workers, batches, strict=True):
            if batch:
                worker.send(Items(batch))
        return True

    def request_stats(self, inbox: int, inbox_dropped: int) -> None:
        with self._stats_lock:
            self._stats_round += 1
            self._stats_replies = {}
            self._stats_inbox = (inbox, inbox_dropped)
            round_ = self._stats_round
        for worker in self._workers:
            worker.send(StatsRequest(round_))

    def _on_stats(self, index: int, round_: int, fields: dict[str, int]) -> None:
        with self._stats_lock:
            if round_ != self._stats_round:
                return  # a late reply to an earlier round: the next round carries its counters anyway
            self._stats_replies[index] = fields
            if len(self._stats_replies) < len(self._workers):
                return
            total: Counter[str] = Counter()
            for reply in self._stats_replies.values():
                total.update(reply)
            inbox, dropped = self._stats_inbox
        summed = dict(total)
        summed["inbox"], summed["inbox_dropped"] = inbox, dropped
        self._workers[0].send(WriteStats(summed, int(time.time() * 1000)))

    def close(self, timeout: float) -> None:
        for worker in self._workers:
            worker.send(Stop())
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.finish(max(0.0, deadline - time.monotonic()))


class _Worker:
    """One worker process, its pipe and the thread that applies its replies."""

    def __init__(self, config: AggregatorConfig, outbox: Outbox, on_failure: Callable[[str], None], index: int,
                 on_stats: Callable[[int, int, dict[str, int]], None]) -> None:
        self._outbox = outbox
        self._on_failure = on_failure
        self._index = index
        self._on_stats = on_stats
        self.snapshot: Snapshot = {}
        context = multiprocessing.get_context("spawn")  # no fork after threads exist
        self._conn, child = context.Pipe(duplex=True)
        self._process = context.Process(
            target=worker_main, args=(config, child, logging.getLogger().level, index),
            name=f"aggregator-worker-{index}", daemon=True,
        )
        self._child = child
        self._closed = threading.Event()
        self._send_lock = threading.Lock()
        self._receiver = threading.Thread(target=self._receive, name=f"worker-{index}-replies", daemon=True)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self) -> None:
        self._process.start()
        self._child.close()
        self._receiver.start()

    def send(self, message: ToWorker) -> None:
        with self._send_lock:
            try:
                self._conn.send(message)
            except (OSError, EOFError, ValueError):
                self._on_failure(f"aggregator worker process {self._index} is gone")

    def finish(self, timeout: float) -> None:
        if not self._closed.wait(timeout):
            log.warning("worker %d did not finish in %.0f s; unwritten messages will be redelivered",
                        self._index, timeout)
        self._process.join(timeout=2.0)
        if self._process.is_alive():
            self._process.kill()
        self._conn.close()

    def _receive(self) -> None:
        outbox = self._outbox
        while True:
            try:
                message: FromWorker = self._conn.recv()
            except (EOFError, OSError):
                if not self._closed.is_set():
                    self._on_failure(f"aggregator worker process {self._index} exited unexpectedly")
                self._closed.set()  # nothing more will come: do not wait for a goodbye at shutdown
                return
            if isinstance(message, Replies):
                acks: list[int] = []  # consecutive acks leave as one write, still in order with publishes
                for op in message.ops:
                    if isinstance(op, Acks):
                        acks += op.mids
                    else:
                        if acks:
                            outbox.ack(acks)
                            acks = []
                        outbox.publish(op.topic, op.payload, op.qos, op.retain)
                if acks:
                    outbox.ack(acks)
            elif isinstance(message, StatsReply):
                self.snapshot = message.snapshot
                self._on_stats(self._index, message.round, message.fields)
            elif isinstance(message, SnapshotReply):
                self.snapshot = message.snapshot
            elif isinstance(message, Closed):
                self._closed.set()
                return


class PipeOutbox:
    """A worker's way back to MQTT: collects publishes and acks (in order), sends them in small batches."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._ops: list[Publish | Acks] = []
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()  # one writer on the pipe at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        with self._lock:
            self._ops.append(Publish(topic, payload, qos, retain))
        self._wake.set()

    def ack(self, mids: list[int]) -> None:
        with self._lock:
            self._ops.append(Acks(mids))
        self._wake.set()

    def send(self, message: FromWorker) -> None:
        """Send a message after the replies queued so far (keeps acks ahead of ``Closed``)."""
        with self._send_lock:
            self._send_replies_locked()
            self._conn.send(message)

    def send_replies(self) -> None:
        with self._send_lock:
            self._send_replies_locked()

    def _send_replies_locked(self) -> None:
        with self._lock:
            ops, self._ops = self._ops, []
        if ops:
            self._conn.send(Replies(ops))

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=2.0)
        self.send_replies()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(SEND_EVERY_S)
            self._wake.clear()
            try:
                self.send_replies()
            except (OSError, EOFError, ValueError):
                return


def _read_pipe(conn: Connection, into: queue.SimpleQueue[ToWorker | None]) -> None:
    """Reader thread: receives the next batch while the main thread processes the current one.

    Receiving a batch takes several reads, and after each one the reader must win the GIL back; done by the
    processing thread itself, that was a fifth of its time. Unbounded but bounded in practice: everything in
    ``into`` is unacknowledged, so the broker's Receive Maximum caps it. ``None`` means the network process is
    gone.
    """
    while True:
        try:
            message: ToWorker = conn.recv()
        except (EOFError, OSError):
            into.put(None)  # the network process is gone: store what we have, the rest is redelivered
            return
        into.put(message)
        if isinstance(message, Stop):
            return


def worker_main(config: AggregatorConfig, conn: Connection, log_level: int, index: int = 0) -> None:
    """Entry point of a worker process."""
    # The parent decides when to stop; a Ctrl-C to the process group must not kill us mid-write.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=log_level or logging.INFO,
                        format=f"%(asctime)s %(levelname)s %(name)s[worker {index}]: %(message)s")
    # One thread computes, the others (pipe reader, InfluxDB writer, outbox) mostly wait for I/O: hand the GIL
    # over sooner than the default 5 ms so that they are not kept waiting behind the computing thread.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    outbox = PipeOutbox(conn)
    core = ProcessingCore(config, outbox)
    core.start()
    outbox.start()
    inbox: queue.SimpleQueue[ToWorker | None] = queue.SimpleQueue()
    threading.Thread(target=_read_pipe, args=(conn, inbox), name="pipe-reader", daemon=True).start()
    handled = 0
    try:
        while True:
            message = inbox.get()
            if isinstance(message, Items):
                core.handle_batch([Inbound(topic, payload, mid, qos) for topic, payload, mid, qos in message.items])
                handled += len(message.items)
            elif isinstance(message, StatsRequest):
                outbox.send(StatsReply(message.round, core.stats_fields(), core.snapshot()))
            elif isinstance(message, WriteStats):
                core.writer.submit([Point("aggregator_stats", core.stats_tags(), dict(message.fields),
                                          message.ts_ms)])
            else:  # Stop, or the network process is gone
                break
    finally:
        # Inside the parent's stop budget: what it stores after the parent stopped waiting would go unacknowledged.
        core.close(max(0.5, config.stop_timeout_s - 1.5))
        outbox.close()
        with contextlib.suppress(OSError, EOFError, ValueError):
            outbox.send(SnapshotReply(core.snapshot()))
            outbox.send(Closed())
        log.debug("worker %d handled %d messages", index, handled)
