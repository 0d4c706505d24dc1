"""MQTT side of an edge node: frames out (QoS 1), availability, stats, session in.

paho-mqtt 2.x over MQTT 5. The Last Will publishes a retained ``offline``;
``online`` is published and the session topic subscribed inside
``on_connect``, so a broker restart or network loss is survived without
special cases. Frames pass through a bounded queue with an explicit drop
policy, so a broker outage costs memory only up to ``mqtt.out_queue``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from formcheck_edge.config import MqttSection
from formcheck_protocol.messages import FrameMessage, NodeState, NodeStats, NodeStatus, SessionMessage
from formcheck_protocol.topics import REGISTRY, Topics
from formcheck_runtime.broker import connect_properties, disconnect_reason, make_client, unreachable_reason
from formcheck_runtime.queues import DropQueue, QueueClosed
from formcheck_runtime.ratelog import growing_interval

log = logging.getLogger(__name__)

SessionCallback = Callable[[SessionMessage | None], None]


def now_ms() -> int:
    return int(time.time() * 1000)


class EdgePublisher:
    """Owns the MQTT client of one edge node."""

    def __init__(
        self,
        cfg: MqttSection,
        topics: Topics,
        node_id: str,
        boot: str,
        status_fields: dict[str, Any],
        on_session: SessionCallback | None = None,
    ) -> None:
        self._cfg = cfg
        self._node = node_id
        self._boot = boot
        self._status_fields = dict(status_fields)
        self._status_lock = threading.Lock()  # changed by the inference loop and the classify stage
        self._on_session = on_session
        self._frames_topic = topics.node(node_id, "frames")
        self._status_topic = topics.node(node_id, "status")
        self._stats_topic = topics.node(node_id, "stats")
        self._session_topic = topics.node(node_id, "session")
        self.queue: DropQueue[FrameMessage] = DropQueue(cfg.out_queue, cfg.drop_policy)
        self.connected = threading.Event()
        self.published = 0  # frames handed to the broker
        # Frames handed to paho whose PUBACK has not come yet (oldest first; acknowledged ones are pruned).
        self._unacknowledged: deque[mqtt.MQTTMessageInfo] = deque()
        self._abandoned = 0
        self.rejected = 0
        # One counter per writing thread: frames the broker could never accept (bigger than its announced Maximum
        # Packet Size, sender thread) and frames it refused in the PUBACK (paho's network thread).
        self.too_large = 0
        self.refused_by_puback = 0
        self._max_packet_size: int | None = None  # from CONNACK (MQTT 5), when the broker announces one
        self._last_refusal: str | None = None
        self._stopping = False
        self._client = self._make_client()
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)
        self._unreachable = threading.Timer(cfg.connect_timeout_s, self._warn_unreachable)
        self._unreachable.daemon = True

    def _make_client(self) -> mqtt.Client:
        client = make_client(self._cfg, f"formcheck-edge-{self._node}")
        offline = NodeStatus(state="offline", node=self._node, boot=self._boot)
        client.will_set(self._status_topic, offline.to_json(), qos=REGISTRY["status"].qos, retain=True)
        client.max_inflight_messages_set(self._cfg.max_inflight)
        # paho's own queue stays small; the bounded DropQueue in front of it holds the backlog.
        client.max_queued_messages_set(self._cfg.max_inflight * 2)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        """Connect in the background and return at once.

        An unreachable broker is not fatal: the node classifies from its first frame, frames wait in the bounded
        queue, and paho keeps retrying with backoff. Not connected after ``connect_timeout_s``: it says so, once.
        """
        self._client.connect_async(
            self._cfg.host, self._cfg.port, keepalive=self._cfg.keepalive_s, clean_start=True,
            properties=connect_properties(),
        )
        self._client.loop_start()
        self._sender.start()
        self._unreachable.start()

    def wait_connected(self) -> bool:
        """Wait up to ``connect_timeout_s`` for the first connection; True if connected."""
        return self.connected.wait(self._cfg.connect_timeout_s)

    def _warn_unreachable(self) -> None:
        if self.connected.is_set():
            return
        log.warning(
            "broker %s:%d not reachable yet (%s); classifying and queueing up to %d frames meanwhile",
            self._cfg.host, self._cfg.port,
            self._last_refusal or unreachable_reason(self._cfg.host, self._cfg.port), self._cfg.out_queue,
        )

    def stop(self, state: NodeState = "stopped", drain_timeout_s: float = 5.0) -> None:
        """Flush queued frames (bounded wait), publish the final status, disconnect."""
        if self._unreachable.is_alive():
            self._unreachable.cancel()
            self._warn_unreachable()  # a run shorter than connect_timeout_s still says why nothing arrived
        self.queue.close()
        self._sender.join(timeout=drain_timeout_s if self.connected.is_set() else 0.5)
        self._stopping = True
        self._sender.join(timeout=1.0)  # it notices within 0.5 s; its frame in hand is then counted
        if self.connected.is_set():
            info = self._client.publish(self._status_topic, self._status(state), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):
                log.warning("could not confirm the %s status before disconnecting", state)
            self._client.disconnect()
        self._client.loop_stop()

    # -- outgoing --------------------------------------------------------

    def enqueue(self, frame: FrameMessage) -> None:
        """Queue a frame for publishing; never blocks (drops per ``drop_policy`` when full)."""
        if self.queue.put(frame):
            return
        # Logged at growing intervals: a long outage must not flood the log.
        if growing_interval(self.queue.dropped):
            log.warning("outgoing queue full (%d): %d frame messages dropped so far (%s)",
                        self.queue.maxsize, self.queue.dropped, self._cfg.drop_policy)

    def update_status(self, **fields: Any) -> None:
        """Change fields of the retained ``online`` status (e.g. after an exercise switch) and republish it."""
        with self._status_lock:
            self._status_fields.update(fields)
        if self.connected.is_set():
            self._client.publish(self._status_topic, self._status("online"), qos=1, retain=True)

    def publish_stats(self, stats: NodeStats) -> None:
        if self.connected.is_set():
            self._client.publish(self._stats_topic, stats.to_json(), qos=REGISTRY["stats"].qos)

    def _send_loop(self) -> None:
        qos = REGISTRY["frames"].qos
        while True:
            try:
                frame = self.queue.get(timeout=0.5)
            except QueueClosed:
                return
            if frame is None:
                continue
            payload = frame.to_json()
            if self._too_large(payload):
                continue
            while True:
                if not self.connected.wait(0.5):
                    if self._stopping:
                        self._abandoned += 1  # the frame in hand: never sent
                        return
                    continue
                info = self._client.publish(self._frames_topic, payload, qos=qos)
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    self.published += 1
                    pending = self._unacknowledged
                    pending.append(info)
                    while pending and pending[0].is_published():
                        pending.popleft()
                    break
                if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                    # Broker is slower than us: let paho's in-flight window drain.
                    time.sleep(0.01)
                    continue
                if info.rc == mqtt.MQTT_ERR_NO_CONN:
                    time.sleep(0.05)
                    continue
                self.rejected += 1
                log.warning("frame seq=%d not published: %s", frame.seq, mqtt.error_string(info.rc))
                break

    @property
    def never_published(self) -> int:
        """Frames the broker never acknowledged (after :meth:`stop`: lost when the process ends): those still in
        the outgoing queue and those handed over without a PUBACK. Dropped-when-full frames are counted apart."""
        return len(self.queue) + self._abandoned + self.unacknowledged

    @property
    def unacknowledged(self) -> int:
        """Frames handed to the broker connection whose PUBACK has not (yet) come."""
        return sum(not info.is_published() for info in self._unacknowledged)

    @property
    def refused(self) -> int:
        """Frames the broker refused or could never accept."""
        return self.too_large + self.refused_by_puback

    @property
    def accepted(self) -> int:
        """Frames the broker took (handed over and not refused in the PUBACK)."""
        return self.published - self.refused_by_puback

    def _too_large(self, payload: bytes) -> bool:
        """True (counted, logged at growing intervals) when the broker's Maximum Packet Size cannot take it.

        A broker disconnects a client that sends an oversized packet, and paho re-sends unacknowledged
        messages after reconnecting: one such frame would make the node reconnect forever.
        """
        limit = self._max_packet_size
        # PUBLISH: fixed header (<= 5), topic length (2) + topic, packet id (2), properties length (1).
        if limit is None or len(payload) + len(self._frames_topic) + 10 <= limit:
            return False
        self.too_large += 1
        if growing_interval(self.too_large):
            log.warning("%d frame(s) larger than the broker's maximum packet size (%d bytes) dropped so far",
                        self.too_large, limit)
        return True

    def _status(self, state: NodeState) -> bytes:
        with self._status_lock:
            fields = dict(self._status_fields)
        return NodeStatus(state=state, node=self._node, boot=self._boot, ts=now_ms(), **fields).to_json()

    # -- paho callbacks (network thread) ---------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            text = str(reason)
            if text != self._last_refusal:
                log.error("broker %s:%d refused the connection: %s", self._cfg.host, self._cfg.port, text)
            self._last_refusal = text
            return
        self._last_refusal = None
        self._max_packet_size = getattr(properties, "MaximumPacketSize", None) if properties is not None else None
        log.info("connected to broker %s:%d", self._cfg.host, self._cfg.port)
        client.publish(self._status_topic, self._status("online"), qos=1, retain=True)
        client.subscribe(self._session_topic, qos=REGISTRY["session"].qos)
        self.connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags, reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if was_connected and not self._stopping:
            log.warning("disconnected from broker (%s); reconnecting with backoff", disconnect_reason(reason))

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Properties | None
    ) -> None:
        if not reason.is_failure:
            return
        # MQTT 5 brokers refuse single messages in the PUBACK (too large, not authorised): count them and log at
        # growing intervals, never one line per frame.
        self.refused_by_puback += 1
        if growing_interval(self.refused_by_puback):
            unlisted = getattr(client, "last_unlisted_reason", None)
            detail = f"reason code 0x{unlisted:02X}" if unlisted is not None else str(reason)
            log.warning("broker refused %d message(s) so far, latest: %s", self.refused_by_puback, detail)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._on_session is None or message.topic != self._session_topic:
            return
        if not message.payload:
            self._on_session(None)
            return
        try:
            session = SessionMessage.model_validate(json.loads(message.payload))
        except (ValueError, ValidationError, UnicodeDecodeError) as exc:
            log.warning("ignoring invalid session message on %s: %s", message.topic, str(exc).splitlines()[0])
            return
        self._on_session(session)
