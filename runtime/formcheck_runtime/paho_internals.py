"""Every use of paho-mqtt's private API in formcheck, in this one module, against one exact paho release.

paho's public API cannot do two things formcheck needs, so the two client classes here subclass paho's
``Client`` and override or read its internals. Nothing else in formcheck touches a paho attribute that starts
with an underscore (a unit test scans the code for it), paho is pinned exactly (``PAHO_VERSION``, pyproject),
and :func:`check_paho_internals` — called when either class is built, and by a unit test — fails with one
line naming every attribute the installed paho lacks.

Which parts of formcheck depend on it:

* **Every client, edge nodes included** (:class:`TolerantPubackClient`, the default of
  ``formcheck_runtime.broker.make_client``): the PUBACK 0x95 workaround below. An edge node needs it: without it a
  broker configured with ``message_size_limit`` puts a live camera into an endless reconnect loop. It is the
  edge's only private-API use.
* **The aggregator** (:class:`LeanReceiveClient`, :func:`note_bytes_received`, :func:`wake_socket`): its
  receive path, for speed.

PUBACK 0x95
-----------
Mosquitto 2.0.11 with ``message_size_limit`` answers an oversized QoS 1
PUBLISH with a PUBACK carrying reason 0x95 (Packet too large). MQTT 5 does
not list 0x95 for PUBACK, and paho 2.2.0 refuses the whole packet as
malformed ("Expected exactly one name, found []"), closes the connection,
reconnects and re-sends the same in-flight message: a loop that never ends
on a live camera, with nothing counted. (With ``max_packet_size`` the broker
announces its limit in CONNACK and the edge drops oversized frames before
sending; this is the other way to configure a limit.)

:class:`TolerantPubackClient` keeps paho's handling for every valid PUBACK.
For one whose reason code is a failure paho cannot name, it reports the
refusal through ``on_publish`` as "Unspecified error" (the failure code every
PUBACK may carry) and remembers the broker's own code in
:attr:`last_unlisted_reason`, so the message is settled and counted as
refused and the connection stays up.

The aggregator's receive path
-----------------------------
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

Tests compare the lean parser with paho's own ``decode_publish`` packet by
packet, and the delivered messages of a byte stream cut at arbitrary points
with what was sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.client import time_func
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from formcheck_runtime.mqtt_wire import PUBACK, PUBACK_HEADER, parse_publish, read_varint

PAHO_VERSION: Final = "2.2.0"
"""The paho-mqtt release these overrides were written and tested against (pinned in pyproject.toml)."""

PAHO_INTERNAL_METHODS: Final[tuple[str, ...]] = (
    "_handle_pubackcomp", "_do_on_publish",                                 # TolerantPubackClient
    "_handle_publish", "_packet_read", "_sock_recv", "_packet_queue", "_send_puback",  # LeanReceiveClient
)
"""paho ``Client`` methods overridden or called here."""

PAHO_INTERNAL_STATE: Final[tuple[str, ...]] = (
    "_protocol", "_in_packet", "_out_message_mutex", "_out_messages",      # TolerantPubackClient
    "_sock", "_msgtime_mutex", "_last_bytes_received", "_in_callback_mutex", "_manual_ack",  # LeanReceiveClient
    "_sockpairR",                                                          # wake_socket
)
"""paho ``Client`` instance attributes read or written here (they exist only once a client is built)."""

RawMessage = tuple[str, bytes, int, int, bool]  # topic, payload, mid, qos, dup
RawMessagesCallback = Callable[[list[RawMessage]], None]
MAX_BATCH = 256  # PUBLISH packets handed over per call (a 64 KiB read holds ~130 frames)

_RECV_CHUNK = 65536
_UNSPECIFIED_ERROR = 0x80


def check_paho_internals(client: mqtt.Client | None = None) -> None:
    """Raise RuntimeError naming every internal this module uses that the installed paho (or ``client``) lacks."""
    missing = [name for name in PAHO_INTERNAL_METHODS if not hasattr(mqtt.Client, name)]
    if client is not None:
        missing += [name for name in PAHO_INTERNAL_STATE if not hasattr(client, name)]
    if missing:
        raise RuntimeError(f"installed paho-mqtt {getattr(mqtt, '__version__', '?')} lacks {', '.join(missing)}: "
                           f"formcheck's client overrides are written for paho-mqtt {PAHO_VERSION}")


def note_bytes_received(client: mqtt.Client) -> None:
    """Tell paho's keep-alive that the broker was heard from (bytes are waiting that we are not reading yet)."""
    internal: Any = client
    with internal._msgtime_mutex:
        internal._last_bytes_received = time.monotonic()  # paho's clock (time_func) is time.monotonic


def wake_socket(client: mqtt.Client) -> Any:
    """paho's self-pipe, readable when another thread queued a packet for the network loop; None if absent."""
    return getattr(client, "_sockpairR", None)


def unlisted_puback_failure(packet: bytes | bytearray) -> tuple[int, int] | None:
    """``(mid, reason)`` of an MQTT 5 PUBACK body whose failure reason PUBACK does not list; else None."""
    if len(packet) < 3:
        return None
    reason = packet[2]
    if reason < 0x80 or _listed_for_puback(reason):
        return None
    return (packet[0] << 8) | packet[1], reason


def _listed_for_puback(reason: int) -> bool:
    names: dict[str, list[int]] = ReasonCode(PacketTypes.PUBACK).names.get(reason, {})
    return any(PacketTypes.PUBACK in packet_types for packet_types in names.values())


class TolerantPubackClient(mqtt.Client):
    """paho ``Client``; a PUBACK failure code paho cannot name counts as a refusal, not a protocol error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_paho_internals(self)
        self.last_unlisted_reason: int | None = None

    def _handle_pubackcomp(self, cmd: Any) -> MQTTErrorCode:
        if cmd == "PUBACK" and self._protocol == mqtt.MQTTv5:
            unlisted = unlisted_puback_failure(self._in_packet["packet"])
            if unlisted is not None:
                mid, reason = unlisted
                self.last_unlisted_reason = reason
                with self._out_message_mutex:
                    if mid in self._out_messages:
                        refused = ReasonCode(PacketTypes.PUBACK, identifier=_UNSPECIFIED_ERROR)
                        return self._do_on_publish(mid, refused, Properties(PacketTypes.PUBACK))  # type: ignore[no-untyped-call]
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        result: MQTTErrorCode = super()._handle_pubackcomp(cmd)
        return result


class LeanReceiveClient(TolerantPubackClient):
    """paho ``Client`` with buffered reads, a lean QoS 0/1 receive path and batched acks (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
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
        blob = b"".join(PUBACK_HEADER.pack(PUBACK, 2, mid) for mid in mids)
        if blob:
            self._packet_queue(PUBACK, blob, 0, 1)

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
