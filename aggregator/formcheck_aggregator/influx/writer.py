"""InfluxDB line protocol and a durable, ordered, bounded writer (v1 HTTP API only).

``encode_line`` turns a ``Point`` into one line of line protocol (precision ms). ``InfluxWriter`` sends
points from its own thread in batches, one ``POST /write`` per retention policy, and calls each
submission's ``on_done`` exactly once, in submission order, when all its points are stored (2xx) or
definitively rejected. The aggregator acknowledges an MQTT message in ``on_done``, so a message is
acknowledged only after its points are durable.

Errors, after Telegraf's policy:

- connection errors, timeouts and 5xx: the same batch is retried with exponential backoff
  (``retry_min_s`` .. ``retry_max_s``); later batches wait behind it, so order is kept. A write that timed out
  may have been stored; retrying it is harmless because a point's identity (measurement + tags + time) is
  deterministic and InfluxDB overwrites an identical point.
- 401/403: retried with backoff and logged loudly: credentials are an operator fix, dropping would lose data.
- 404 (database not found) and 1.x's 500 "retention policy not found": the database and retention policies
  are (re)created, then the batch is retried.
- any other 4xx: never retried as such. 1.x answers a batch with some bad lines with 400 ``partial write:
  ... dropped=N`` and stores the good lines, so N points are counted as rejected. 1.x reports only one
  failure kind per request (a type conflict hides points beyond the retention policy in the same request)
  and counts unparsable lines as ``dropped=0``; the count adds one per "unable to parse" and is at least 1,
  so it is exact for one kind of failure and a lower bound for mixed ones. A 4xx that is not a partial
  write stored nothing: the batch is split in halves and each half sent once (recursively, stopping as soon
  as both halves of a split are refused whole), so one bad point cannot take a batch of good ones with it;
  what is still refused is counted as rejected. See ``InfluxWriter._settle_or_split`` for the 1.6.7 case.

Bounded buffer: at most ``buffer_max_points`` points wait in memory. Beyond that, frame points
(``durable=False``) are dropped oldest-first and counted as ``points_dropped_overflow`` — frame telemetry
is best effort, so their ``on_done`` still fires (in order) and their messages are acknowledged. Durable
points (reps, sets, stats) are never dropped: ``submit`` blocks until there is room (backpressure reaches
the MQTT client, which stops reading), and raises ``WriterClosedError`` instead when the writer is closing.
A point that cannot be encoded (NaN, infinity, an out-of-range integer or timestamp, an impossible name) is
counted as rejected at ``submit`` and logged; it never reaches InfluxDB.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from formcheck_aggregator.influx.http import (
    ERROR_CLASSES,
    ErrorClass,
    InfluxError,
    InfluxHttp,
    WriteOutcome,
    classify_write_response,
    query_series,
)
from formcheck_aggregator.influx.line import RETENTION_POLICIES, Line, Point, Retention, encode_line
from formcheck_aggregator.influx.schema import ensure_schema
from formcheck_aggregator.influx_config import InfluxSection
from formcheck_runtime.ratelog import RateLimitedLog

log = logging.getLogger("formcheck_aggregator.influx")


class WriterClosedError(RuntimeError):
    """``submit`` on a writer that is closing: the points were not queued and ``on_done`` will not fire."""


@dataclass(frozen=True)
class WriterStats:
    """A snapshot of the writer's counters (cumulative since start, except ``buffer``)."""

    points_written: int
    points_dropped_rejected: int
    points_dropped_overflow: int
    write_errors: Mapping[str, int]
    batches: int
    buffer: int
    last_error: str | None

    @property
    def write_errors_total(self) -> int:
        return sum(self.write_errors.values())


_QUEUED, _IN_FLIGHT, _DONE, _DROPPED_STATE = 0, 1, 2, 3


class _Submission:
    __slots__ = ("on_done", "remaining", "seq")

    def __init__(self, seq: int, remaining: int, on_done: Callable[[], None] | None) -> None:
        self.seq = seq
        self.remaining = remaining
        self.on_done = on_done


class _Entry:
    __slots__ = ("durable", "line", "queued_at", "rp", "state", "sub")

    def __init__(self, line: str, rp: Retention, durable: bool, sub: _Submission, queued_at: float) -> None:
        self.line = line
        self.rp = rp
        self.durable = durable
        self.sub = sub
        self.queued_at = queued_at
        self.state = _QUEUED


@dataclass
class _Counters:
    written: int = 0
    rejected: int = 0
    overflow: int = 0
    batches: int = 0
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_CLASSES, 0))
    last_error: str | None = None


class InfluxWriter:
    """Batches points to InfluxDB from its own thread; see the module docstring for the guarantees.

    ``on_done`` callbacks run on the writer thread: keep them short (an MQTT ack).
    """

    def __init__(self, config: InfluxSection, name: str = "influx-writer") -> None:
        self.config = config
        self._http = InfluxHttp(config)
        self._cond = threading.Condition()
        self._queue: deque[_Entry] = deque()
        self._frames: deque[_Entry] = deque()
        self._subs: deque[_Submission] = deque()
        self._queued = 0
        self._buffered = 0
        self._stale = 0
        self._seq_submitted = 0
        self._seq_completed = 0
        self._flush_target = 0
        self._closing = False
        self._abort = False
        self._needs_ensure = config.create_database
        self._counters = _Counters()
        self._ratelog = RateLimitedLog(log)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # -- public API ---------------------------------------------------------------------------------------------

    def start(self) -> InfluxWriter:
        self._thread.start()
        return self

    def __enter__(self) -> InfluxWriter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close(timeout=self.config.timeout_s)

    def submit(self, points: Sequence[Point | Line], on_done: Callable[[], None] | None = None) -> None:
        """Queue ``points``; ``on_done`` fires once, in submission order, when all are stored or rejected.

        Blocks while durable points do not fit in the buffer; raises ``WriterClosedError`` when closing.
        """
        encoded: list[Line] = []
        invalid = 0
        for point in points:
            if type(point) is Line:
                encoded.append(point)
                continue
            assert isinstance(point, Point)
            try:
                encoded.append(Line(encode_line(point), point.durable, point.retention))
            except (ValueError, TypeError) as exc:
                invalid += 1
                self._ratelog("invalid", f"InfluxDB point not written (a bug upstream): {exc}", logging.ERROR)
        durable = sum(1 for line in encoded if line.durable)
        with self._cond:
            self._counters.rejected += invalid
            self._wait_for_room(durable)
            self._seq_submitted += 1
            sub = _Submission(self._seq_submitted, len(encoded), on_done)
            self._subs.append(sub)
            now = time.monotonic()
            for text, durable_point, retention in encoded:
                entry = _Entry(text, retention, durable_point, sub, now)
                self._queue.append(entry)
                if not durable_point:
                    self._frames.append(entry)
            was_empty = self._queued == 0
            self._queued += len(encoded)
            self._buffered += len(encoded)
            overflow = self._counters.overflow
            self._drop_frames(self._buffered - self.config.buffer_max_points)
            # Wake the writer only when that changes what it waits for (a first point starts the flush timer,
            # a full batch is due, an empty submission or dropped frames may complete callbacks): not once
            # per frame, which cost a thread switch per message.
            if (was_empty or not encoded or self._queued >= self.config.batch_size
                    or self._counters.overflow != overflow):
                self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Send everything submitted so far now; True when all of it was stored/rejected and acked in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._seq_submitted
            self._flush_target = max(self._flush_target, target)
            self._cond.notify_all()
            while self._seq_completed < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float) -> bool:
        """Flush what can be flushed within ``timeout``, then stop the thread. True when nothing was left.

        Points still unwritten are abandoned without calling their ``on_done`` (their messages stay unacked,
        so the broker redelivers them to the next aggregator).
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        flushed = (self.flush(max(0.0, timeout - 0.5)) if self._thread.is_alive()
                   else self._seq_completed == self._seq_submitted)
        with self._cond:
            self._abort = True
            self._cond.notify_all()
        if self._thread.is_alive():
            # An attempt in progress ends within one request timeout, or is abandoned at the deadline: its points
            # were never acknowledged, so nothing is lost (the thread is a daemon and ends with the process).
            self._thread.join(max(0.0, deadline - time.monotonic()))
        return flushed

    def stats(self) -> WriterStats:
        with self._cond:
            c = self._counters
            return WriterStats(
                points_written=c.written,
                points_dropped_rejected=c.rejected,
                points_dropped_overflow=c.overflow,
                write_errors=dict(c.errors),
                batches=c.batches,
                buffer=self._buffered,
                last_error=c.last_error,
            )

    def query(self, q: str, timeout_s: float | None = None) -> list[tuple[dict[str, str], list[dict[str, object]]]]:
        """One InfluxQL statement on the writer's database, over a connection of its own (safe from any thread).

        Every series as (its GROUP BY tags, its rows as dicts); raises ``InfluxError``.
        """
        config = self.config if timeout_s is None else self.config.model_copy(update={"timeout_s": timeout_s})
        conn = InfluxHttp(config)
        try:
            return query_series(conn, q, db=self.config.database)
        finally:
            conn.close()

    def ensure_database(self) -> None:
        """Create the database and the 'frames'/'default' retention policies, or align their durations.

        Idempotent. Uses its own connection, so it is safe to call from any thread. Raises ``InfluxError``.
        """
        conn = InfluxHttp(self.config)
        try:
            ensure_schema(conn, self.config)
        finally:
            conn.close()

    # -- buffer (call with the lock held) ---------------------------------------------------------------------

    def _wait_for_room(self, durable: int) -> None:
        limit = self.config.buffer_max_points
        while True:
            if self._closing:
                raise WriterClosedError("InfluxDB writer is closing")
            excess = self._buffered + durable - limit
            if excess > 0 and durable:
                self._drop_frames(excess)
                self._cond.notify_all()
            # An oversized submission is let in alone rather than waiting forever.
            if durable == 0 or self._buffered + durable <= limit or self._buffered == 0:
                return
            self._cond.wait(0.5)

    def _drop_frames(self, count: int) -> None:
        """Drop up to ``count`` queued (not in-flight) frame points, oldest first."""
        while count > 0 and self._frames:
            entry = self._frames.popleft()
            if entry.state != _QUEUED:
                continue
            entry.state = _DROPPED_STATE
            entry.sub.remaining -= 1
            self._queued -= 1
            self._buffered -= 1
            self._stale += 1
            self._counters.overflow += 1
            count -= 1
        # Dropped entries sit behind a stuck head for the whole outage; without compaction the bounded
        # buffer would still grow by one object per dropped point.
        if self._stale > max(1024, self._queued):
            self._queue = deque(e for e in self._queue if e.state == _QUEUED)
            self._stale = 0

    def _head(self) -> _Entry | None:
        while self._queue and self._queue[0].state != _QUEUED:
            self._queue.popleft()
            self._stale -= 1
        return self._queue[0] if self._queue else None

    def _next_batch(self) -> list[_Entry] | None:
        """Wait until a batch is due; [] when only callbacks are due; None when the thread should stop."""
        while True:
            if self._abort:
                return None
            if self._subs and self._subs[0].remaining == 0:
                return []
            head = self._head()
            if head is None:
                if self._closing:
                    return None
                self._cond.wait()
                continue
            due_at = head.queued_at + self.config.flush_interval_s
            if (
                self._queued >= self.config.batch_size
                or self._closing
                or self._flush_target >= head.sub.seq
                or time.monotonic() >= due_at
            ):
                return self._take(self.config.batch_size)
            self._cond.wait(max(0.0, due_at - time.monotonic()))

    def _take(self, size: int) -> list[_Entry]:
        batch: list[_Entry] = []
        while self._queue and len(batch) < size:
            entry = self._queue.popleft()
            if entry.state == _QUEUED:
                entry.state = _IN_FLIGHT
                batch.append(entry)
            else:
                self._stale -= 1
        self._queued -= len(batch)
        # Both queues are in submission order, so the frames just taken are at the front of _frames.
        while self._frames and self._frames[0].state != _QUEUED:
            self._frames.popleft()
        return batch

    def _settle(self, entries: Iterable[_Entry], rejected: int) -> None:
        count = 0
        for entry in entries:
            entry.state = _DONE
            entry.sub.remaining -= 1
            count += 1
        self._buffered -= count
        self._counters.written += count - rejected
        self._counters.rejected += rejected
        self._counters.batches += 1
        self._cond.notify_all()

    # -- writer thread ------------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                self._fire_callbacks()
                with self._cond:
                    batch = self._next_batch()
                if batch is None:
                    break
                if batch:
                    self._deliver(batch)
            self._fire_callbacks()
        except Exception:
            log.exception("InfluxDB writer thread failed; no more points will be written")
            with self._cond:
                self._counters.last_error = "writer thread failed (see log)"
        finally:
            self._http.close()
            with self._cond:
                # A blocked or later submit must not wait for a thread that is gone.
                self._closing = True
                self._cond.notify_all()

    def _fire_callbacks(self) -> None:
        with self._cond:
            ready: list[_Submission] = []
            while self._subs and self._subs[0].remaining == 0:
                ready.append(self._subs.popleft())
        for sub in ready:
            if sub.on_done is not None:
                try:
                    sub.on_done()
                except Exception:
                    log.exception("on_done callback failed")
        if ready:
            with self._cond:
                self._seq_completed = ready[-1].seq
                self._cond.notify_all()

    def _deliver(self, batch: list[_Entry]) -> None:
        for rp in RETENTION_POLICIES:
            group = [e for e in batch if e.rp == rp]
            if not group:
                continue
            outcome = self._attempt(rp, group)
            if outcome is None or not self._settle_or_split(rp, group, outcome):
                return

    def _settle_or_split(self, rp: Retention, part: list[_Entry], outcome: WriteOutcome) -> bool:
        """Settle ``part``; when InfluxDB refused all of it, send each half again. False when aborted.

        1.6.7 refuses a whole request (400 "field type conflict", nothing stored) when two of its points
        disagree about a field's type and the request creates the shard; the halves are then answered with
        a partial write that keeps the good points. When both halves are refused entirely, the request
        itself is unacceptable rather than one point, so splitting stops: at most two requests per level,
        and no retry loop.
        """
        if not outcome.whole or len(part) < 2:
            self._done(rp, part, outcome)
            return True
        self._count_error(outcome)
        halves = (part[: len(part) // 2], part[len(part) // 2 :])
        outcomes: list[WriteOutcome] = []
        for half in halves:
            answer = self._attempt(rp, half)
            if answer is None:
                return False
            outcomes.append(answer)
        if all(o.whole for o in outcomes):
            for half, answer in zip(halves, outcomes, strict=True):
                self._done(rp, half, answer)
            return True
        return all(self._settle_or_split(rp, half, answer) for half, answer in zip(halves, outcomes, strict=True))

    def _attempt(self, rp: Retention, part: list[_Entry]) -> WriteOutcome | None:
        """Write ``part`` until InfluxDB gives a definitive answer; None when the writer is aborted meanwhile."""
        body = ("\n".join(e.line for e in part) + "\n").encode()
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.config.gzip:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        params = {"db": self.config.database, "rp": rp, "precision": "ms"}
        failures = 0
        while True:
            try:
                if self._needs_ensure:
                    ensure_schema(self._http, self.config)
                    self._needs_ensure = False
                status, answer = self._http.post("/write", params, body, headers)
                outcome = classify_write_response(status, answer, len(part))
            except InfluxError as exc:
                outcome = WriteOutcome("retry", error_class=exc.error_class, message=exc.message)
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                # /query answered something that is not InfluxDB's JSON (a proxy page, another server)
                outcome = WriteOutcome("retry", error_class="5xx", message=f"unexpected answer: {exc!r}")
            if outcome.action == "done":
                return outcome
            if outcome.action == "ensure" and self.config.create_database:
                self._needs_ensure = True
            failures += 1
            delay = min(self.config.retry_max_s, self.config.retry_min_s * 2 ** min(failures - 1, 30))
            self._record_retry(outcome, rp, len(part), delay)
            with self._cond:
                if self._cond.wait_for(lambda: self._abort, timeout=delay):
                    return None

    def _done(self, rp: Retention, part: list[_Entry], outcome: WriteOutcome) -> None:
        if outcome.error_class is not None:
            self._ratelog(
                f"rejected-{rp}",
                f"InfluxDB rejected {outcome.rejected} of {len(part)} points (rp {rp}), not retried: "
                f"{outcome.message[:300]}",
            )
            self._count_error(outcome)
        with self._cond:
            self._settle(part, outcome.rejected)

    def _count_error(self, outcome: WriteOutcome) -> None:
        error_class: ErrorClass = outcome.error_class or "connection"
        with self._cond:
            self._counters.errors[error_class] += 1
            self._counters.last_error = f"{error_class}: {outcome.message[:300]}"

    def _record_retry(self, outcome: WriteOutcome, rp: Retention, points: int, delay: float) -> None:
        self._count_error(outcome)
        if outcome.error_class == "auth":
            text = (f"InfluxDB refused our credentials ({outcome.message[:200]}); fix influx.username/password. "
                    f"Holding {points} points (rp {rp}), retrying in {delay:.1f} s")
            self._ratelog("auth", text, logging.ERROR)
        else:
            self._ratelog(f"retry-{outcome.error_class}",
                          f"InfluxDB write failed ({outcome.error_class}: {outcome.message[:300]}); "
                          f"retrying {points} points (rp {rp}) in {delay:.1f} s")
