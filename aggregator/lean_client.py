"""The aggregator's paho client: the same protocol engine with a lean receive path and batched acks.

paho handles an incoming MQTT 5 PUBLISH in ~47 µs on the development
machine, and the aggregator's bench showed where: a ``Properties`` object is
built and cleared for every message, an ``MQTTMessage`` is assembled, topic
filters are matched, and each packet costs three ``recv`` system calls
(command byte, remaining length, body). For a consumer that takes tens of
thousands of frames a second that is most of its CPU, and twice what the
rest of the aggregator needs per frame.

:class:`LeanReceiveClient` keeps paho for everything else (connect,
keep-alive, session, subscriptions, publishing, TLS, websockets) and changes
three things for the aggregator:

* **Buffered reads.** ``_sock_recv`` serves paho's small reads from one
  64 KiB ``recv``. The caller must treat :meth:`buffered` bytes as readable
  data (``mqtt_loop.py`` does), since ``select`` cannot see them.
* **Lean PUBLISH handling.** QoS 0/1 PUBLISH packets with a topic name go
  straight to :attr:`on_raw_messages` as ``(topic, payload, mid, qos, dup)``
  without building paho objects; those already whole in the read buffer are
  framed and parsed in place (``_packet_read``), without paho's byte-by-byte
  reads, and handed over as one batch. Anything else (QoS 2, a topic alias with an empty topic, a topic
  that is not UTF-8, a packet split across reads, no raw callback set) takes
  paho's own path, so behaviour there is unchanged.
* **Batched acks, written by the network thread only.** :meth:`ack_many`
  queues one write for many PUBACKs. With no ``loop_start`` thread paho would
  otherwise send from whichever thread calls ``ack``/``publish``, concurrently
  with the network loop's own writes on the same socket; registering a
  write callback makes paho leave all writes to the loop (woken through its
  socket pair).

It relies on paho internals (``_packet_read``, ``_handle_publish``,
``_in_packet``, ``_sock_recv``, ``_packet_queue``) of the 2.x series; the
client fails loudly at start if they are missing, and tests compare the lean
parser with paho's own ``decode_publish`` packet by packet, and the delivered
messages of a byte stream cut at arbitrary points with what was sent.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import time_func
from paho.mqtt.enums import MQTTErrorCode

from formcheck.paho_compat import TolerantPubackClient, require_paho_internals

RawMessage = tuple[str, bytes, int, int, bool]  # topic, payload, mid, qos, dup
RawMessagesCallback = Callable[[list[RawMessage]], None]
MAX_BATCH = 256  # PUBLISH packets handed over per call (a 64 KiB read holds ~130 frames)

_RECV_CHUNK = 65536
_PUBACK = 0x40
_PUBACK_HEADER = struct.Struct("!BBH")
_REQUIRED_INTERNALS = ("_handle_publish", "_packet_read", "_sock_recv", "_packet_queue", "_send_puback")
_REQUIRED_STATE = ("_in_packet", "_msgtime_mutex", "_last_bytes_received", "_in_callback_mutex", "_manual_ack")


def check_paho_internals() -> None:
    """Raise RuntimeError if this paho release lacks what the lean path overrides."""
    require_paho_internals(*_REQUIRED_INTERNALS)


class PublishPacket:
    """The fields of a PUBLISH packet the aggregator uses."""

    __slots__ = ("dup", "mid", "payload", "qos", "topic")

    def __init__(self, topic: bytes, payload: bytes, mid: int, qos: int, dup: bool) -> None:
        self.topic = topic
        self.payload = payload
        self.mid = mid
        self.qos = qos
        self.dup = dup


def read_varint(data: bytes | bytearray, pos: int, end: int) -> tuple[int, int]:
    """The MQTT Variable Byte Integer at ``pos`` and the position after it; ``(-1, pos)`` when it runs past ``end``
    or is longer than the 4 bytes MQTT allows."""
    value = shift = 0
    start = pos
    while pos < end and shift <= 21:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    return -1, start


def parse_publish(command: int, packet: bytes | bytearray, mqtt5: bool) -> PublishPacket:
    """Split a PUBLISH packet body (everything after the fixed header). Raises ValueError if malformed."""
    qos = (command & 0x06) >> 1
    end = len(packet)
    if end < 2:
        raise ValueError("PUBLISH shorter than its topic length")
    topic_end = 2 + ((packet[0] << 8) | packet[1])
    if topic_end > end:
        raise ValueError("PUBLISH topic runs past the packet")
    topic = bytes(packet[2:topic_end])
    pos = topic_end
    mid = 0
    if qos > 0:
        if pos + 2 > end:
            raise ValueError("PUBLISH without its packet identifier")
        mid = (packet[pos] << 8) | packet[pos + 1]
        pos += 2
    if mqtt5:
        length, pos = read_varint(packet, pos, end)  # the property length
        if length < 0:
            raise ValueError("PUBLISH property length is malformed")
        pos += length
        if pos > end:
            raise ValueError("PUBLISH properties run past the packet")
    return PublishPacket(topic, bytes(packet[pos:]), mid, qos, bool(command & 0x08))


class LeanReceiveClient(TolerantPubackClient):
    """paho ``Client`` with buffered reads, a lean QoS 0/1 receive path and batched acks (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_paho_internals()
        super().__init__(*args, **kwargs)
        missing = [name for name in _REQUIRED_STATE if not hasattr(self, name)]
        if missing:
            raise RuntimeError(f"installed paho-mqtt lacks {', '.join(missing)}: formcheck needs paho-mqtt 2.x")
        self.on_raw_messages: RawMessagesCallback | None = None
        self._rx = b""
        self._rx_pos = 0
        self._rx_sock: Any = None
        # Any callback here stops paho from writing on the caller's thread (see module docstring).
        self.on_socket_register_write = _leave_writes_to_the_loop

    def buffered(self) -> int:
        """Bytes already read from the socket and not yet parsed (``select`` cannot see them)."""
        if self._rx_sock is not self._sock:
            return 0
        return len(self._rx) - self._rx_pos

    def ack_many(self, mids: Iterable[int]) -> None:
        """Acknowledge QoS 1 messages with one queued write (they leave in the given order)."""
        blob = b"".join(_PUBACK_HEADER.pack(_PUBACK, 2, mid) for mid in mids)
        if blob:
            self._packet_queue(_PUBACK, blob, 0, 1)

    # -- paho overrides ---------------------------------------------------------------------------------------

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rx_sock is not self._sock:  # a new connection: nothing buffered belongs to it
            self._rx_sock = self._sock
            self._rx, self._rx_pos = b"", 0
        available = len(self._rx) - self._rx_pos
        if available == 0:
            data: bytes = super()._sock_recv(max(bufsize, _RECV_CHUNK))
            if len(data) <= bufsize:
                return data
            self._rx, self._rx_pos, available = data, 0, len(data)
        take = min(bufsize, available)
        chunk = self._rx[self._rx_pos:self._rx_pos + take]
        self._rx_pos += take
        if self._rx_pos == len(self._rx):
            self._rx, self._rx_pos = b"", 0
        return chunk

    def _packet_read(self) -> MQTTErrorCode:
        """QoS 0/1 PUBLISH packets already whole in the read buffer are handled in place, as one batch; anything
        else goes to paho.

        paho reads a packet in three or more calls (command byte, each length byte, body), appends the body to a
        bytearray, builds a fresh state dict per packet and takes two locks per message: at tens of thousands of
        frames a second that was most of the network thread. Nothing is consumed before a packet is known to be
        complete and parsable, so every other case (a packet split across reads, QoS 2, a malformed packet) is
        paho's, in order: the batch stops before it.
        """
        callback = self.on_raw_messages
        rx, pos = self._rx, self._rx_pos
        end = len(rx)
        if callback is None or self._in_packet["command"] != 0 or self._rx_sock is not self._sock:
            return super()._packet_read()
        mqtt5 = self._protocol == mqtt.MQTTv5
        batch: list[RawMessage] = []
        while pos < end and len(batch) < MAX_BATCH:
            command = rx[pos]
            if command & 0xF0 != 0x30 or command & 0x06 >= 0x04:
                break
            length, body = read_varint(rx, pos + 1, end)  # the Remaining Length
            if length < 0 or body + length > end:
                break
            try:
                packet = parse_publish(command, rx[body:body + length], mqtt5)
                topic = packet.topic.decode("utf-8") if packet.topic else None
            except (ValueError, UnicodeDecodeError):
                topic = None
            if topic is None:  # topic alias, bad UTF-8 or malformed: paho's own handling and errors
                break
            batch.append((topic, packet.payload, packet.mid, packet.qos, packet.dup))
            pos = body + length
        if not batch:
            return super()._packet_read()
        if pos == end:
            self._rx, self._rx_pos = b"", 0
        else:
            self._rx_pos = pos
        with self._msgtime_mutex:
            self._last_bytes_received = time_func()
        with self._in_callback_mutex:
            callback(batch)
        if not self._manual_ack:
            for _, _, mid, qos, _ in batch:
                if qos == 1:
                    rc = self._send_puback(mid)
                    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        return rc
        # "Again" ends this loop_read() call: paho's loop_read() calls _packet_read() once per message it has in
        # flight, which with batches would read far past the caller's flow control (mqtt_loop.py checks between
        # calls; this let ~10,000 unacknowledged messages in at Receive Maximum 4000).
        return MQTTErrorCode.MQTT_ERR_AGAIN

    def _handle_publish(self) -> MQTTErrorCode:
        callback = self.on_raw_messages
        command: int = self._in_packet["command"]
        qos = (command & 0x06) >> 1
        if callback is None or qos == 2:
            return super()._handle_publish()
        try:
            packet = parse_publish(command, self._in_packet["packet"], self._protocol == mqtt.MQTTv5)
            topic = packet.topic.decode("utf-8") if packet.topic else None
        except (ValueError, UnicodeDecodeError):
            topic = None
        if topic is None:  # topic alias, bad UTF-8 or a malformed packet: paho's own handling and errors
            return super()._handle_publish()
        with self._in_callback_mutex:
            callback([(topic, packet.payload, packet.mid, qos, packet.dup)])
        if qos == 1 and not self._manual_ack:
            return self._send_puback(packet.mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS


def _leave_writes_to_the_loop(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """paho's write-registration hook; the network loop already selects for writing when ``want_write()``."""
