"""Self check-in: a member's own start / stop from the member page becomes the station's session.

The member page publishes a :class:`CheckinRequest` on ``{prefix}/{site}/members/{member}/checkin``; the broker's
ACL lets only that member write there, so the member is taken from the topic, never from the payload, and nobody
can check in as someone else. This service (``formcheck checkin-service``, a broker account of role ``checkin``)
decides:

* **start** at a station that is free, or already the member's: the station's retained session names the member
  (a check-in at another station of the member's is checked out first); a station in use by someone else is
  refused with a reason the member reads.
* **stop**: only the member checked in at that station may check it out.
* **idle**: a self check-in (the station's session says ``checked_in_by: member``) is checked out after
  ``idle_checkout_s`` without a rep. The retained session is the record, so a restarted service still knows which
  check-ins were the members' own; it does not know when their last rep before the restart was, so its idle clock
  for them starts when it (re)reads the session: at worst a member is checked out one idle time after the restart.

It mirrors every session it sees (staff check-ins from the CLI too) to the member's retained
``members/{member}/session``, which is how the member page knows where its member is checked in.
The decisions are :meth:`SelfCheckin.on_message` and :meth:`SelfCheckin.tick` (no network); :func:`run` wires
them to a paho client.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from formcheck_protocol.messages import CheckinRequest, MemberSession, SessionMessage
from formcheck_protocol.topics import TopicError, Topics, level
from formcheck_runtime.broker import BrokerSection, connect_properties, make_client

log = logging.getLogger("formcheck.checkin")

IDLE_CHECKOUT_S = 600.0  # a self check-in with no rep for this long is checked out


@dataclass(frozen=True)
class Publication:
    topic: str
    payload: bytes
    retain: bool = True


@dataclass
class SelfCheckin:
    """The check-in decisions, fed with the messages the service receives."""

    topics: Topics
    idle_checkout_s: float = IDLE_CHECKOUT_S
    sessions: dict[str, SessionMessage] = field(default_factory=dict)  # station -> who is checked in
    activity: dict[str, float] = field(default_factory=dict)  # station -> last check-in, rep or restart (monotonic)

    def on_message(self, topic: str, payload: bytes, now: float) -> list[Publication]:
        parts = topic.split("/")
        root = self.topics.root.split("/")
        if parts[: len(root)] != root or len(parts) != len(root) + 3:
            return []
        scope, key, kind = parts[len(root):]
        try:
            level(key)
        except TopicError:
            return []
        if scope == "nodes" and kind == "session":
            return self._session(key, payload, now)
        if scope == "nodes" and kind == "reps":
            self.activity[key] = now
            return []
        if scope == "members" and kind == "checkin":
            try:
                request = CheckinRequest.model_validate_json(payload)
            except ValidationError:
                return [self._answer(key, "That request was not understood: reload the page.")]
            return self._request(key, request, now)
        return []

    def tick(self, now: float) -> list[Publication]:
        """Check out the members' own check-ins that saw no rep for ``idle_checkout_s``."""
        out: list[Publication] = []
        for node, session in sorted(self.sessions.items()):
            if session.checked_in_by == "member" and now - self.activity.get(node, now) >= self.idle_checkout_s:
                member = session.member
                log.info("station %s: %s checked out after %.0f s without a rep", node, member, self.idle_checkout_s)
                out += self._set_session(node, None, now)
        return out

    def refused(self, topic: str, payload: bytes) -> list[Publication]:
        """The broker refused a session this service published (the ACL: not a registered station): undo it."""
        try:
            node = self.topics.parse_node_topic(topic)[0]
            session = SessionMessage.model_validate_json(payload) if payload else None
        except (TopicError, ValidationError):
            return []
        if session is None or self.sessions.get(node) != session:
            return []
        del self.sessions[node]
        return [self._answer(session.member, f"{node} is not a registered station here. Ask a trainer.")]

    # -- decisions -------------------------------------------------------------------------------------------

    def _request(self, member: str, request: CheckinRequest, now: float) -> list[Publication]:
        node = request.node
        current = self.sessions.get(node)
        if request.action == "stop":
            if current is None or current.member != member:
                return [self._answer(member, f"You are not checked in at {node}.")]
            return self._set_session(node, None, now)
        if current is not None and current.member != member:
            return [self._answer(member, f"{node} is in use by another member. Ask a trainer if it looks free.")]
        out: list[Publication] = []
        for other, session in sorted(self.sessions.items()):
            if other != node and session.member == member:
                out += self._set_session(other, None, now)  # one station at a time
        session = SessionMessage(member=member, exercise=request.exercise, ts=int(time.time() * 1000),
                                 checked_in_by="member")
        return out + self._set_session(node, session, now)

    def _set_session(self, node: str, session: SessionMessage | None, now: float) -> list[Publication]:
        """Publish the station's session and mirror it at once (the broker's echo is then a no-op)."""
        topic = self.topics.node(node, "session")
        return [Publication(topic, b"" if session is None else session.to_json()),
                *self._session(node, b"" if session is None else session.to_json(), now)]

    def _session(self, node: str, payload: bytes, now: float) -> list[Publication]:
        """A station's session changed (or was seen again): keep it and tell the members concerned."""
        try:
            session = SessionMessage.model_validate_json(payload) if payload else None
        except ValidationError:
            return []
        before = self.sessions.get(node)
        if session == before:
            return []
        out: list[Publication] = []
        if before is not None and (session is None or session.member != before.member):
            out.append(self._member_state(before.member, None))
        if session is None:
            self.sessions.pop(node, None)
        else:
            self.sessions[node] = session
            self.activity[node] = now
            out.append(self._member_state(session.member, node, session))
        return [p for p in out if p.topic]

    def _member_state(self, member: str, node: str | None, session: SessionMessage | None = None) -> Publication:
        if member == "guest":
            return Publication("", b"")
        state = MemberSession(node=node, exercise=session.exercise if session else None,
                              ts=session.ts if session else None)
        return Publication(self.topics.member(member, "session"), state.to_json())

    def _answer(self, member: str, error: str) -> Publication:
        """The member's current state with the reason their request was refused."""
        node = next((n for n, s in sorted(self.sessions.items()) if s.member == member), None)
        session = self.sessions.get(node) if node else None
        state = MemberSession(node=node, exercise=session.exercise if session else None,
                              ts=session.ts if session else None, error=error)
        return Publication(self.topics.member(member, "session"), state.to_json())


def run(cfg: BrokerSection, topics: Topics, stop: threading.Event, idle_checkout_s: float = IDLE_CHECKOUT_S,
        heartbeat: Path | None = None) -> int:
    """Serve check-in requests until ``stop`` is set; 0 on a clean stop, 1 when the broker refuses the login.

    ``heartbeat`` is touched every second while connected (a container's health check reads its age)."""
    logic = SelfCheckin(topics, idle_checkout_s)
    lock = threading.Lock()
    refused: list[str] = []
    client = make_client(cfg, f"formcheck-checkin-{topics.site}")

    sent: dict[int, Publication] = {}  # station sessions awaiting their PUBACK

    def publish(items: list[Publication]) -> None:
        for item in items:
            info = client.publish(item.topic, item.payload, qos=1, retain=item.retain)
            if "/nodes/" in item.topic:
                sent[info.mid] = item

    def on_publish(c: mqtt.Client, u: Any, mid: int, reason: ReasonCode, props: Any) -> None:
        with lock:
            item = sent.pop(mid, None)
            if item is not None and reason.is_failure:
                log.warning("broker refused the session on %s: %s", item.topic, reason)
                publish(logic.refused(item.topic, item.payload))

    def on_connect(c: mqtt.Client, u: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
            stop.set()
            return
        c.subscribe([(topics.all_nodes("session"), 1), (topics.all_nodes("reps"), 1),
                     (f"{topics.root}/members/+/checkin", 1)])
        log.info("check-in service connected to %s:%d", cfg.host, cfg.port)

    def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        with lock:
            publish(logic.on_message(msg.topic, bytes(msg.payload), time.monotonic()))

    client.on_connect = on_connect
    client.on_message = on_message
    client.on_publish = on_publish
    client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s, properties=connect_properties())
    client.loop_start()
    try:
        while not stop.wait(1.0):
            with lock:
                publish(logic.tick(time.monotonic()))
            if heartbeat is not None and client.is_connected():
                try:
                    heartbeat.touch()
                except OSError as exc:
                    log.warning("cannot touch heartbeat file %s: %s", heartbeat, exc.strerror)
    finally:
        client.disconnect()
        client.loop_stop()
    if refused:
        log.error("broker refused the check-in service's login: %s", refused[0])
        return 1
    return 0
