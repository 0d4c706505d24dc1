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

import base64
import functools
import gzip
import http.client
import json
import logging
import math
import numbers
import re
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from aggregator.influx_config import InfluxSection, duration_seconds
from formcheck.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

Retention = Literal["frames", "default"]
FieldValue = float | int | bool | str
ErrorClass = Literal["timeout", "connection", "5xx", "4xx", "auth"]
ERROR_CLASSES: tuple[ErrorClass, ...] = ("timeout", "connection", "5xx", "4xx", "auth")
RETENTION_POLICIES: tuple[Retention, ...] = ("frames", "default")

# InfluxDB stores nanoseconds in an int64 and refuses the two extreme values.
_MAX_TS_MS = 9_223_372_036_854_775_806 // 1_000_000
_MIN_TS_MS = -_MAX_TS_MS
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# Field keys (not tags) are unescaped for \" as well, hence the extra entry.
_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})
_TAG_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_FIELD_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", '"': '\\"'})


def _string_field(value: str) -> str:
    # Two str.replace calls: several times faster than str.translate on long strings (open set checkpoints).
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Point:
    """One InfluxDB point. Its identity is measurement + tags + ``ts_ms``: writing it again overwrites it."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    ts_ms: int
    durable: bool = True
    retention: Retention = "default"


def _name(value: str, what: str) -> str:
    """Checks shared by measurements, tag keys/values and field keys."""
    if not value:
        raise ValueError(f"empty {what}")
    if "\n" in value or "\r" in value:
        raise ValueError(f"{what} {value!r} contains a line break, which line protocol cannot carry")
    # InfluxDB 1.x's line splitter takes any backslash as escaping the next byte, its key parser only one
    # before , = space (and " in field keys). For a backslash followed by an escaped comma they disagree,
    # and a later string field holding a newline then splits the line in two (seen on 1.6.7). Names
    # here are ids and enum values, so refusing backslashes costs nothing.
    if "\\" in value:
        raise ValueError(f"{what} {value!r} contains a backslash, which line protocol cannot carry reliably")
    return value


def _key(value: str, what: str, escapes: dict[int, str]) -> str:
    _name(value, what)
    if value == "time":
        raise ValueError(f"{what} 'time' is reserved by InfluxDB")
    return value.translate(escapes)


@functools.lru_cache(maxsize=8192)
def _escaped_tag(key: str, value: str) -> str:
    """``,key=value`` ready for a line; names repeat on every point, so the checks run once per name."""
    return f",{_key(key, 'tag key', _TAG_ESCAPES)}={_name(value, 'tag value').translate(_TAG_ESCAPES)}"


@functools.lru_cache(maxsize=4096)
def _escaped_field_key(key: str) -> str:
    return _key(key, "field key", _FIELD_KEY_ESCAPES)


def _field_value(key: str, value: object) -> str:
    # Exact types first: by far the most common values, and no isinstance walk over numbers ABCs.
    if type(value) is float:
        if not math.isfinite(value):
            raise ValueError(f"field {key!r}: {value} cannot be stored (NaN and infinity are not valid)")
        return repr(value)
    if type(value) is str:
        return _string_field(value)
    if type(value) is int and _INT64_MIN <= value <= _INT64_MAX:
        return f"{value}i"
    # bool before int: bool is an int subclass, and 'true' must not become '1i'. numpy's bool is no
    # numbers.Integral but comes out of any comparison on arrays.
    if isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool_", "bool")):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        number = int(value)
        if not _INT64_MIN <= number <= _INT64_MAX:
            raise ValueError(f"field {key!r}: integer {number} does not fit in int64")
        return f"{number}i"
    if isinstance(value, numbers.Real):
        real = float(value)
        if not math.isfinite(real):
            raise ValueError(f"field {key!r}: {real} cannot be stored (NaN and infinity are not valid)")
        return repr(real)
    if isinstance(value, str):
        return _string_field(value)
    raise TypeError(f"field {key!r}: unsupported type {type(value).__name__}")


def _encode_fields(fields: Mapping[str, object]) -> str:
    # The hot loop of every frame (~16 fields): finite floats inline, keys from a plain dict (cheaper than
    # lru_cache's wrapper); everything else goes through the full checks of _field_value.
    parts = []
    keys = _FIELD_KEYS
    for key in sorted(fields):
        escaped = keys.get(key)
        if escaped is None:
            escaped = _escaped_field_key(key)
            if len(keys) < _FIELD_KEYS_MAX:
                keys[key] = escaped
        value = fields[key]
        if type(value) is float and _isfinite(value):
            parts.append(f"{escaped}={value!r}")
        else:
            parts.append(f"{escaped}={_field_value(key, value)}")
    return ",".join(parts)


_FIELD_KEYS: dict[str, str] = {}
_FIELD_KEYS_MAX = 4096
_isfinite = math.isfinite


def encode_line(point: Point) -> str:
    """One line of line protocol (no newline), precision ms; raises ValueError/TypeError for unencodable points.

    Tags and fields are sorted by key (InfluxDB's canonical tag order), so equal points encode to equal bytes.
    Tags with an empty value are left out: InfluxDB treats a missing tag and an empty one alike.
    """
    return encode_series_line(series_key(point.measurement, tuple(sorted(point.tags.items()))), point.fields,
                              point.ts_ms)


@functools.lru_cache(maxsize=4096)
def series_key(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """Measurement and tags (``tags`` sorted by key) as they start a line; a station's series repeat on every
    point, so this is built and checked once per series."""
    _name(measurement, "measurement")
    if measurement.startswith("#"):
        raise ValueError(f"measurement {measurement!r} starts with '#', which makes the line a comment")
    return measurement.translate(_MEASUREMENT_ESCAPES) + "".join(
        _escaped_tag(key, value) for key, value in tags if value != "")


def encode_series_line(series: str, fields: Mapping[str, object], ts_ms: int) -> str:
    """A line from a ``series_key`` and the point's fields and time (the hot path of frames: no ``Point``)."""
    if not fields:
        raise ValueError(f"point {series!r} has no fields")
    encoded = _encode_fields(fields)
    if type(ts_ms) is not int:
        raise TypeError(f"ts_ms must be an int, not {type(ts_ms).__name__}")
    if not _MIN_TS_MS <= ts_ms <= _MAX_TS_MS:
        raise ValueError(f"timestamp {ts_ms} ms is outside InfluxDB's range")
    return f"{series} {encoded} {ts_ms}"


class Line(NamedTuple):
    """A point already encoded by ``encode_series_line``: the writer sends it as it is."""

    text: str
    durable: bool = True
    retention: Retention = "default"


# --- responses -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteOutcome:
    """What to do with a batch after InfluxDB answered ``status``."""

    action: Literal["done", "retry", "ensure"]
    rejected: int = 0
    error_class: ErrorClass | None = None
    message: str = ""
    # InfluxDB stored none of the request (a 4xx that is not a partial write).
    whole: bool = False


_DROPPED = re.compile(r"dropped=(\d+)")


def error_message(body: bytes) -> str:
    """InfluxDB's error text: ``{"error": ...}`` on 1.x, ``{"message": ...}`` on 2.x/3.x, else the raw body."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500]
    if isinstance(data, dict):
        for key in ("error", "message"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return text[:500]


def classify_write_response(status: int, body: bytes, points: int) -> WriteOutcome:
    """Map a ``/write`` answer to an action; pure, so every observed InfluxDB answer can be unit-tested."""
    if 200 <= status < 300:
        return WriteOutcome("done")
    message = error_message(body)
    if status in (401, 403):
        return WriteOutcome("retry", error_class="auth", message=message)
    if status == 404:
        return WriteOutcome("ensure", error_class="4xx", message=message)
    if status >= 500:
        if "retention policy not found" in message:
            return WriteOutcome("ensure", error_class="5xx", message=message)
        return WriteOutcome("retry", error_class="5xx", message=message)
    if status in (408, 429):
        # Too busy / too slow is transient: InfluxDB 2.x rate-limits with 429.
        return WriteOutcome("retry", error_class="4xx", message=message)
    if "partial write" in message:
        found = _DROPPED.search(message)
        reported = int(found.group(1)) if found else 0
        unparsable = message.count("unable to parse '")
        rejected = min(points, max(1, reported + unparsable))
        return WriteOutcome("done", rejected=rejected, error_class="4xx", message=message)
    return WriteOutcome("done", rejected=points, error_class="4xx", message=message, whole=True)


# --- HTTP --------------------------------------------------------------------------------------------------------


class InfluxError(Exception):
    """A request to InfluxDB failed; ``error_class`` is one of ``ERROR_CLASSES``."""

    def __init__(self, error_class: ErrorClass, message: str) -> None:
        super().__init__(f"{error_class}: {message}")
        self.error_class: ErrorClass = error_class
        self.message = message


class WriterClosedError(RuntimeError):
    """``submit`` on a writer that is closing: the points were not queued and ``on_done`` will not fire."""


class _Http:
    """One keep-alive HTTP(S) connection to InfluxDB; reopened after any error."""

    def __init__(self, config: InfluxSection) -> None:
        parsed = urllib.parse.urlsplit(config.url)
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port
        self._prefix = parsed.path.rstrip("/")
        self._timeout = config.timeout_s
        self._headers: dict[str, str] = {}
        if config.username is not None:
            password = config.resolved_password()
            token = base64.b64encode(f"{config.username.get_secret_value()}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def post(self, path: str, params: Mapping[str, str], body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """POST and read the whole answer; network failures raise ``InfluxError`` (timeout / connection)."""
        url = f"{self._prefix}{path}?{urllib.parse.urlencode(params)}"
        conn = self._connection()
        try:
            conn.request("POST", url, body=body, headers={**self._headers, **headers})
            response = conn.getresponse()
            data = response.read()
        except TimeoutError as exc:
            self.close()
            raise InfluxError("timeout", f"no answer within {self._timeout:g} s") from exc
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise InfluxError("connection", f"{type(exc).__name__}: {exc}") from exc
        if response.will_close:
            self.close()
        return response.status, data


def _quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _go_duration_s(text: str) -> int | None:
    """Seconds in a Go duration as SHOW RETENTION POLICIES prints it ('168h0m0s'); '0s' means infinite."""
    total = 0.0
    for amount, unit in re.findall(r"([0-9.]+)(h|ms|m|s|us|µs|ns)", text):
        total += float(amount) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}[unit]
    return None if total == 0 else round(total)


def _retention_policies(cfg: InfluxSection) -> list[tuple[str, str, bool, str]]:
    """(name, duration, is default, the policy as CREATE/ALTER RETENTION POLICY take it) of both policies."""
    db = _quote_ident(cfg.database)
    policies = []
    wanted = (("frames", cfg.frame_retention, False), ("default", cfg.default_retention, True))
    for name, duration, is_default in wanted:
        spec = (f"{_quote_ident(name)} ON {db} DURATION {duration} REPLICATION 1 "
                f"SHARD DURATION {_shard_duration(duration_seconds(duration))}{' DEFAULT' if is_default else ''}")
        policies.append((name, duration, is_default, spec))
    return policies


def schema_statements(cfg: InfluxSection) -> list[str]:
    """The InfluxQL that creates the database and both retention policies: what an administrator runs once when
    the aggregator writes with an account that may not (``create_database`` off; the compose stack's init script
    is this, ``formcheck aggregator --print-schema``)."""
    return [f"CREATE DATABASE {_quote_ident(cfg.database)}",
            *(f"CREATE RETENTION POLICY {spec}" for _, _, _, spec in _retention_policies(cfg))]


def _shard_duration(seconds: int | None) -> str:
    """InfluxDB's own default shard group duration for a retention period, stated explicitly so that
    ALTERing a policy to a shorter duration is never refused for a too-long shard duration."""
    if seconds is None or seconds >= 180 * 86_400:
        return "7d"
    if seconds >= 2 * 86_400:
        return "1d"
    return "1h"


def influxql_string(value: str) -> str:
    """``value`` as an InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _query(http_: _Http, q: str, db: str | None = None) -> list[dict[str, object]]:
    """One InfluxQL statement over POST /query; the first series' rows as dicts; errors raise InfluxError."""
    series = _query_series(http_, q, db)
    return series[0][1] if series else []


def _query_series(http_: _Http, q: str, db: str | None = None) -> list[tuple[dict[str, str], list[dict[str, object]]]]:
    """One InfluxQL statement over POST /query; every series as (its GROUP BY tags, its rows as dicts)."""
    params = {"q": q, **({"db": db} if db else {})}
    status, body = http_.post("/query", params, b"", {"Content-Length": "0"})
    if status in (401, 403):
        raise InfluxError("auth", f"{q}: {error_message(body)}")
    if status >= 500:
        raise InfluxError("5xx", f"{q}: {error_message(body)}")
    if status >= 300:
        raise InfluxError("4xx", f"{q}: HTTP {status} {error_message(body)}")
    data = json.loads(body or b"{}")
    result = (data.get("results") or [{}])[0]
    if "error" in result or "error" in data:
        raise InfluxError("4xx", f"{q}: {result.get('error') or data.get('error')}")
    return [(dict(one.get("tags") or {}),
             [dict(zip(one["columns"], row, strict=True)) for row in one.get("values") or []])
            for one in result.get("series") or []]


# --- writer ------------------------------------------------------------------------------------------------------


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
        self._http = _Http(config)
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
        conn = _Http(config)
        try:
            return _query_series(conn, q, db=self.config.database)
        finally:
            conn.close()

    def ensure_database(self) -> None:
        """Create the database and the 'frames'/'default' retention policies, or align their durations.

        Idempotent. Uses its own connection, so it is safe to call from any thread. Raises ``InfluxError``.
        """
        conn = _Http(self.config)
        try:
            self._ensure(conn)
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
                    self._ensure(self._http)
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

    def _ensure(self, conn: _Http) -> None:
        cfg = self.config
        db = _quote_ident(cfg.database)
        _query(conn, f"CREATE DATABASE {db}")
        existing = {str(row["name"]): row for row in _query(conn, f"SHOW RETENTION POLICIES ON {db}")}
        for name, duration, is_default, spec in _retention_policies(cfg):
            row = existing.get(name)
            if row is None:
                _query(conn, f"CREATE RETENTION POLICY {spec}")
            elif (_go_duration_s(str(row["duration"])) != duration_seconds(duration)
                  or (is_default and not row["default"])):
                _query(conn, f"ALTER RETENTION POLICY {spec}")
        log.info("InfluxDB database %s ready (frames %s, default %s)", cfg.database, cfg.frame_retention,
                 cfg.default_retention)
