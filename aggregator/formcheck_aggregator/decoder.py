"""MQTT message → validated payload, or the reason it was dropped. Never raises on bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import ValidationError

from formcheck_protocol.messages import FrameMessage, NodeStats, NodeStatus, SessionMessage
from formcheck_protocol.topics import TopicError, Topics

DropReason = Literal[
    "topic", "too_large", "not_utf8", "invalid_json", "schema_version", "schema", "node_mismatch",
    "ts_future", "ts_past",
]
DROP_REASONS: tuple[DropReason, ...] = get_args(DropReason)
Payload = FrameMessage | NodeStatus | NodeStats | SessionMessage | None
_TYPES: dict[str, type[FrameMessage | NodeStatus | NodeStats | SessionMessage]] = {
    "frames": FrameMessage, "status": NodeStatus, "stats": NodeStats, "session": SessionMessage}


@dataclass(frozen=True)
class Decoded:
    """A valid message: ``payload`` is ``None`` only for an empty session (check-out) or cleared retained topic."""

    node: str
    kind: str
    payload: Payload


@dataclass(frozen=True)
class Dropped:
    reason: DropReason
    detail: str


@dataclass(frozen=True)
class NotOwned:
    """A message of a station another aggregator owns (``partition``): skipped before its payload is read."""

    node: str


@dataclass(frozen=True)
class ClockPolicy:
    """Capture times accepted relative to the aggregator's clock (milliseconds)."""

    max_future_ms: int
    max_age_ms: int


# (topics, topic) -> (node, kind): stations publish on a handful of topics each, parsed once.
_TOPIC_CACHE: dict[tuple[Topics, str], tuple[str, str]] = {}
_TOPIC_CACHE_MAX = 8192


def _reject_constant(value: str) -> float:
    # json.loads accepts NaN/Infinity by default; they are not JSON and not data.
    raise ValueError(f"non-finite number {value}")


def decode(topics: Topics, topic: str, payload: bytes, now_ms: int, clock: ClockPolicy,
           max_bytes: int, owns: Callable[[str], bool] | None = None) -> Decoded | Dropped | NotOwned:
    """Validate one message from a node topic; with ``owns``, other aggregators' stations are only counted.

    Ownership is decided from the topic alone, so a station this aggregator does not own cannot make it count
    (or log) invalid payloads that are another aggregator's business.
    """
    parsed = _TOPIC_CACHE.get((topics, topic))
    if parsed is None:
        try:
            parsed = topics.parse_node_topic(topic)
        except TopicError as exc:
            return Dropped("topic", str(exc))
        if len(_TOPIC_CACHE) >= _TOPIC_CACHE_MAX:  # bounded: topics come from outside
            _TOPIC_CACHE.clear()
        _TOPIC_CACHE[(topics, topic)] = parsed
    node, kind = parsed
    if owns is not None and not owns(node):
        return NotOwned(node)
    if kind not in _TYPES:
        return Dropped("topic", f"not consumed: {kind}")
    if len(payload) > max_bytes:
        return Dropped("too_large", f"{len(payload)} bytes")
    if not payload:
        if kind in ("session", "status"):
            return Decoded(node, kind, None)
        return Dropped("invalid_json", "empty payload")
    try:
        # Fast path: pydantic parses and validates in one pass (~2.5x faster than json + validate); it refuses
        # invalid UTF-8 too, so the slow path names that reason.
        message = _TYPES[kind].model_validate_json(payload)
    except ValidationError:
        return _classify(kind, payload)
    return _checked(node, kind, message, now_ms, clock)


def _classify(kind: str, payload: bytes) -> Dropped:
    """Slow path for payloads the fast path refused: name the reason precisely."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return Dropped("not_utf8", "payload is not UTF-8")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        return Dropped("invalid_json", str(exc).splitlines()[0][:120])
    if not isinstance(data, dict):
        return Dropped("schema", "payload is not a JSON object")
    if data.get("v", 1) != 1:
        return Dropped("schema_version", f"v={str(data.get('v'))[:20]}")
    try:
        message = _TYPES[kind].model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return Dropped("schema", f"{where}: {first['msg']}"[:160])
    # json.loads and pydantic disagree on some inputs (e.g. NaN literals); refuse what either refuses.
    return Dropped("schema", f"refused by the {kind} schema: {type(message).__name__}")


def _checked(node: str, kind: str, message: FrameMessage | NodeStatus | NodeStats | SessionMessage,
             now_ms: int, clock: ClockPolicy) -> Decoded | Dropped:
    if isinstance(message, FrameMessage | NodeStatus | NodeStats) and message.node != node:
        return Dropped("node_mismatch", f"payload node {message.node!r} on topic of {node!r}")
    if isinstance(message, FrameMessage | NodeStats):
        if message.ts > now_ms + clock.max_future_ms:
            return Dropped("ts_future", f"capture time {message.ts} is ahead of the aggregator clock")
        if message.ts < now_ms - clock.max_age_ms:
            return Dropped("ts_past", f"capture time {message.ts} is older than the accepted age")
    return Decoded(node, kind, message)
