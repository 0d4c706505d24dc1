"""Where the aggregator's processing runs: one interface, two implementations.

The network side (``service.py``) owns the MQTT client and the inbox; the :class:`Processing` it was given takes
messages from the inbox, and reaches MQTT back only through the network side's
:class:`~formcheck_aggregator.core.Outbox`.

* :class:`InProcess` (``workers: thread``): one :class:`~formcheck_aggregator.core.ProcessingCore` in the network
  process, fed by its main loop. Simplest; on more than one core it leaves the others idle.
* :class:`formcheck_aggregator.workers.WorkerPool` (``workers: process``, the default): cores in worker processes,
  stations spread over them, batches over pipes.

Both expose the same :meth:`Processing.snapshot`, so tools and tests read the same figures whichever runs.
"""

from __future__ import annotations

from collections import Counter
from typing import Final, Protocol

from formcheck_aggregator.config import AggregatorConfig
from formcheck_aggregator.core import Inbound, Outbox, ProcessingCore, Snapshot
from formcheck_aggregator.influx import InfluxWriter
from formcheck_runtime.queues import DropQueue, QueueClosed

IN_PROCESS_BATCH: Final = 512  # messages handed to the core at once (one InfluxDB submission)
INBOX_WAIT_S: Final = 0.2  # longest wait for the first message of a batch (the main loop's tick)


class Processing(Protocol):
    """The processing side of one aggregator, as its network side drives it."""

    def start(self) -> None: ...

    def pump(self, inbox: DropQueue[Inbound]) -> bool:
        """Take what ``inbox`` holds (waiting up to ``INBOX_WAIT_S`` for the first message) and process it or
        hand it on; False once the inbox is closed."""

    def request_stats(self, inbox: int, inbox_dropped: int) -> None:
        """Store one ``aggregator_stats`` point (with the network side's inbox figures)."""

    def snapshot(self) -> Snapshot:
        """The cores' counters summed (``ProcessingCore.snapshot``): live in process, as of the last report from
        worker processes."""

    def close(self, timeout: float) -> None:
        """Store what can be stored within ``timeout``; unwritten messages stay unacknowledged."""

    @property
    def pids(self) -> list[int | None]:
        """Worker process ids (none in process)."""


class InProcess:
    """One core in the network process (``workers: thread``)."""

    def __init__(self, config: AggregatorConfig, outbox: Outbox, writer: InfluxWriter | None = None) -> None:
        self._core = ProcessingCore(config, outbox, writer)

    def start(self) -> None:
        self._core.start()

    def pump(self, inbox: DropQueue[Inbound]) -> bool:
        try:
            items = inbox.get_batch(IN_PROCESS_BATCH, timeout=INBOX_WAIT_S)
        except QueueClosed:
            return False
        if items:
            self._core.handle_batch(items)
        return True

    def request_stats(self, inbox: int, inbox_dropped: int) -> None:
        self._core.writer.submit([self._core.stats_point(inbox, inbox_dropped)])

    def snapshot(self) -> Snapshot:
        return self._core.snapshot()

    def close(self, timeout: float) -> None:
        self._core.close(timeout)

    @property
    def pids(self) -> list[int | None]:
        return []


def merge_snapshots(snapshots: list[Snapshot]) -> Snapshot:
    """Sum snapshots section by section (every figure is additive; a station lives in one core)."""
    merged: dict[str, Counter[str]] = {}
    for snapshot in snapshots:
        for section, values in snapshot.items():
            merged.setdefault(section, Counter()).update(values)
    return {section: dict(values) for section, values in merged.items()}
