"""Topic registry: every MQTT topic formcheck uses, its payload type, QoS and retain flag.

Topics are built and parsed only here. Levels are validated value objects so
a node id can never inject ``+``, ``#`` or ``/`` into a topic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Final

from pydantic import BaseModel

from formcheck_protocol.messages import (
    CheckinRequest,
    FrameMessage,
    MemberHistory,
    MemberProfile,
    MemberSession,
    NodeStats,
    NodeStatus,
    RepMessage,
    SessionMessage,
    SetMessage,
)

DEFAULT_PREFIX: Final = "gym"
_LEVEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class TopicError(ValueError):
    """A topic level or topic string is not valid for formcheck."""


def level(value: str, what: str = "topic level") -> str:
    """Validate one topic level (ids: letters, digits, ``_ . -``; no MQTT wildcards or separators)."""
    if not _LEVEL.match(value):
        raise TopicError(f"invalid {what} {value!r}: use 1-64 letters, digits, '_', '.', '-'")
    return value


class Scope(Enum):
    """Which id a topic is keyed by."""

    NODE = "nodes"
    MEMBER = "members"
    SITE = "site"


@dataclass(frozen=True)
class TopicSpec:
    """One row of the registry."""

    kind: str
    scope: Scope
    qos: int
    retain: bool
    publisher: str
    payload: type[BaseModel] | None
    description: str

    @property
    def pattern(self) -> str:
        """Topic below ``{prefix}/{site}/``, with the key as a placeholder."""
        if self.scope is Scope.NODE:
            return f"nodes/{{node}}/{self.kind}"
        if self.scope is Scope.MEMBER:
            return f"members/{{member}}/{self.kind}"
        return f"aggregator/{self.kind}"


REGISTRY: Final[dict[str, TopicSpec]] = {
    spec.kind if spec.scope is Scope.NODE else f"{spec.scope.name.lower()}:{spec.kind}": spec
    for spec in (
        TopicSpec("frames", Scope.NODE, 1, False, "edge", FrameMessage,
                  "One classified frame (none while the node is idle)."),
        TopicSpec("status", Scope.NODE, 1, True, "edge (+ Last Will)", NodeStatus,
                  "Availability: online / offline (Last Will) / stopped."),
        TopicSpec("stats", Scope.NODE, 0, False, "edge, every stats interval", NodeStats,
                  "fps, inference time, dropped frames, queue depths, CPU temperature."),
        TopicSpec("session", Scope.NODE, 1, True, "kiosk / staff / CLI", SessionMessage,
                  "Member checked in at the station; empty payload = checked out."),
        TopicSpec("reps", Scope.NODE, 1, False, "aggregator", RepMessage, "One graded repetition."),
        TopicSpec("sets", Scope.NODE, 1, False, "aggregator", SetMessage, "One graded set."),
        TopicSpec("notifications", Scope.MEMBER, 1, True, "aggregator", SetMessage,
                  "Set summary for the member's phone (last one retained)."),
        TopicSpec("reps", Scope.MEMBER, 1, False, "aggregator", RepMessage,
                  "Each rep of the member's current set, live, for the member page."),
        TopicSpec("history", Scope.MEMBER, 1, True, "aggregator", MemberHistory,
                  "The member's last 20 sets, newest first (retained; the member page's history)."),
        TopicSpec("checkin", Scope.MEMBER, 1, False, "member page", CheckinRequest,
                  "The member's own start / stop at a station (only that member may write it)."),
        TopicSpec("session", Scope.MEMBER, 1, True, "check-in service", MemberSession,
                  "Where the member is checked in, and why their last request was refused (retained)."),
        TopicSpec("profile", Scope.MEMBER, 1, True, "member page / staff (formcheck member name)", MemberProfile,
                  "The member's display name for station screens and the wall (retained)."),
        TopicSpec("status", Scope.SITE, 1, True, "aggregator (+ Last Will)", NodeStatus,
                  "Aggregator availability (node = the aggregator's id)."),
    )
}


@dataclass(frozen=True)
class Topics:
    """Topic builder for one site under one prefix."""

    site: str
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        for part in self.prefix.split("/"):
            level(part, "topic prefix level")
        level(self.site, "site id")

    @property
    def root(self) -> str:
        return f"{self.prefix}/{self.site}"

    def node(self, node: str, kind: str) -> str:
        spec = REGISTRY.get(kind)
        if spec is None or spec.scope is not Scope.NODE:
            raise TopicError(f"unknown node topic kind {kind!r}")
        return f"{self.root}/nodes/{level(node, 'node id')}/{kind}"

    def member_notifications(self, member: str) -> str:
        return f"{self.root}/members/{level(member, 'member id')}/notifications"

    def member(self, member: str, kind: str) -> str:
        """A member topic: ``notifications``, ``reps`` or ``history``."""
        spec = REGISTRY.get(f"member:{kind}")
        if spec is None:
            raise TopicError(f"unknown member topic kind {kind!r}")
        return f"{self.root}/members/{level(member, 'member id')}/{kind}"

    def aggregator_status(self) -> str:
        return f"{self.root}/aggregator/status"

    def all_nodes(self, kind: str) -> str:
        """Subscription filter for ``kind`` on every node of the site."""
        if kind not in REGISTRY:
            raise TopicError(f"unknown node topic kind {kind!r}")
        return f"{self.root}/nodes/+/{kind}"

    def parse_node_topic(self, topic: str) -> tuple[str, str]:
        """``(node, kind)`` of a node topic of this site; :class:`TopicError` otherwise."""
        parts = topic.split("/")
        root = self.root.split("/")
        if len(parts) != len(root) + 3 or parts[: len(root)] != root or parts[len(root)] != "nodes":
            raise TopicError(f"not a node topic of site {self.site!r}: {topic!r}")
        node, kind = parts[-2], parts[-1]
        spec = REGISTRY.get(kind)
        if spec is None or spec.scope is not Scope.NODE:
            raise TopicError(f"unknown node topic kind in {topic!r}")
        return level(node, "node id"), kind


def registry_markdown(prefix: str = DEFAULT_PREFIX) -> str:
    """The registry as a markdown table (docs/topics.md is generated from this)."""
    rows = ["| topic | publisher | QoS | retained | payload | what |", "|---|---|---|---|---|---|"]
    for spec in REGISTRY.values():
        topic = f"{prefix}/{{site}}/{spec.pattern}"
        payload = f"`{spec.payload.__name__}`" if spec.payload else "empty"
        rows.append(
            f"| `{topic}` | {spec.publisher} | {spec.qos} | {'yes' if spec.retain else 'no'} | {payload} "
            f"| {spec.description} |"
        )
    return "\n".join(rows) + "\n"
