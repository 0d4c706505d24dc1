"""InfluxDB line protocol (precision ms): what a point is and how it is encoded.

``encode_line`` turns a ``Point`` into one line; ``encode_series_line`` writes a line for a series key encoded
once (``series_key``), which is how the per-frame points stay cheap. A point that cannot be encoded (NaN,
infinity, an out-of-range integer or timestamp, an impossible name) raises ValueError/TypeError: the writer
counts it as rejected and it never reaches InfluxDB.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

Retention = Literal["frames", "default"]
FieldValue = float | int | bool | str
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
