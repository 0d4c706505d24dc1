"""A real MQTT subscriber that records what arrives, for assertions."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Recorder:
    """Subscribes to ``topic_filter`` and keeps every message with its arrival time."""

    host: str
    port: int
    topic_filter: str
    session_expiry_s: int = 0  # > 0: a persistent session the broker keeps (and queues for) across restarts
    messages: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _client: mqtt.Client | None = None

    def start(self) -> Recorder:
        client_id = f"recorder-{id(self):x}"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        client.on_message = self._on_message
        client.on_subscribe = lambda *a: subscribed.set()
        # Subscribe on every (re)connect, as a real consumer must.
        client.on_connect = lambda c, *a: c.subscribe(self.topic_filter, qos=1)
        client.reconnect_delay_set(1, 2)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        # Without Receive Maximum a paho MQTT 5 subscriber at QoS 1 is throttled (see DESIGN.md).
        props.ReceiveMaximum = 1000
        if self.session_expiry_s:
            props.SessionExpiryInterval = self.session_expiry_s
        client.connect(self.host, self.port, keepalive=10, clean_start=not self.session_expiry_s, properties=props)
        client.loop_start()
        if not subscribed.wait(5):
            raise TimeoutError("subscription not acknowledged")
        self._client = client
        return self

    def stop(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic()))

    def of_kind(self, kind: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic.rsplit("/", 1)[-1] == kind]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(list(self.messages)):
                    return True
            time.sleep(0.01)
        return False


def states(recorder: Recorder) -> list[str]:
    """The availability states in order; a repeated state (an ``online`` republished with new fields, e.g.
    the source lost and back) counts once."""
    result: list[str] = []
    for m in recorder.of_kind("status"):
        state = m.json()["state"]
        if not result or result[-1] != state:
            result.append(state)
    return result
