"""The aggregator's lean PUBLISH parser agrees with paho's own decoder, packet by packet."""

from __future__ import annotations

import itertools
import select
import socket
import struct

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from formcheck_runtime.mqtt_wire import parse_publish
from formcheck_runtime.paho_internals import MAX_BATCH, LeanReceiveClient, check_paho_internals


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _property_block(props: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(bytes([ident]) + value for ident, value in props)
    return _varint(len(body)) + body


# MQTT strings hold no NUL (paho refuses them).
_STRINGS = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=20)

# Properties a broker may forward on PUBLISH (identifier, encoded value).
_PROPS = st.one_of(
    st.binary(max_size=1).map(lambda b: (0x01, bytes([len(b) and b[0] & 1]))),  # payload format indicator
    st.integers(0, 2**32 - 1).map(lambda n: (0x02, struct.pack("!I", n))),  # message expiry
    _STRINGS.map(lambda s: (0x03, struct.pack("!H", len(s.encode())) + s.encode())),  # content type
    st.integers(1, 2**28 - 1).map(lambda n: (0x0B, _varint(n))),  # subscription identifier
    st.tuples(_STRINGS, _STRINGS).map(  # user property
        lambda kv: (0x26, b"".join(struct.pack("!H", len(x.encode())) + x.encode() for x in kv))),
)


@settings(max_examples=400, deadline=None)
@given(
    topic=st.text(min_size=1, max_size=80).filter(lambda t: "\x00" not in t),
    payload=st.binary(max_size=600),
    qos=st.sampled_from([0, 1]),
    dup=st.booleans(),
    retain=st.booleans(),
    mid=st.integers(1, 65535),
    props=st.lists(_PROPS, max_size=4, unique_by=lambda p: p[0]),  # paho refuses repeats of most
)
def test_matches_paho_decode_publish(topic: str, payload: bytes, qos: int, dup: bool, retain: bool, mid: int,
                                     props: list[tuple[int, bytes]]) -> None:
    encoded = topic.encode()
    body = struct.pack("!H", len(encoded)) + encoded + (struct.pack("!H", mid) if qos else b"")
    body += _property_block(props) + payload
    command = 0x30 | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    ours = parse_publish(command, body, mqtt5=True)
    paho = _packet.decode_publish(command, body, MQTTProtocolVersion.MQTTv5)
    assert (ours.topic, ours.payload, ours.mid, ours.qos, ours.dup) == (
        paho.topic, paho.payload, paho.mid, paho.qos, paho.dup)


def test_mqtt311_packets_have_no_property_block() -> None:
    body = struct.pack("!H", 3) + b"a/b" + struct.pack("!H", 7) + b"\x05payload"
    packet = parse_publish(0x32, body, mqtt5=False)
    assert (packet.topic, packet.mid, packet.payload) == (b"a/b", 7, b"\x05payload")


@pytest.mark.parametrize("body", [
    b"",                                   # no topic length
    b"\x00\x05ab",                         # topic longer than the packet
    b"\x00\x01a\x00",                      # QoS 1 without a whole packet identifier
    b"\x00\x01a\x00\x01\x80",              # property length never ends
    b"\x00\x01a\x00\x01\x05\x01",          # properties run past the packet
])
def test_malformed_packets_raise_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_publish(0x32, body, mqtt5=True)


def test_this_paho_has_the_overridden_internals() -> None:
    check_paho_internals()  # raises on a paho release the lean path was not written for
    assert LeanReceiveClient._handle_publish is not LeanReceiveClient.__mro__[1]._handle_publish  # type: ignore[attr-defined]


def _publish_packet(topic: str, payload: bytes, qos: int, mid: int, props: list[tuple[int, bytes]]) -> bytes:
    encoded = topic.encode()
    body = struct.pack("!H", len(encoded)) + encoded + (struct.pack("!H", mid) if qos else b"")
    body += _property_block(props) + payload
    return bytes([0x30 | (qos << 1)]) + _varint(len(body)) + body


_PINGRESP = b"\xd0\x00"


@settings(max_examples=150, deadline=None)
@given(
    messages=st.lists(st.tuples(st.text(min_size=1, max_size=30).filter(lambda t: "\x00" not in t),
                                st.binary(max_size=300), st.sampled_from([0, 1]), st.integers(1, 65535),
                                st.lists(_PROPS, max_size=2, unique_by=lambda p: p[0]), st.booleans()),
                      min_size=1, max_size=40),
    cuts=st.lists(st.integers(1, 70_000), max_size=6),
)
def test_a_byte_stream_cut_anywhere_delivers_every_publish_once_in_order(
    messages: list[tuple[str, bytes, int, int, list[tuple[int, bytes]], bool]], cuts: list[int],
) -> None:
    """Whole packets in the read buffer take the in-place path, the rest paho's; the result must not differ."""
    stream = b"".join(_publish_packet(t, p, q, m, props) + (_PINGRESP if ping else b"")
                      for t, p, q, m, props, ping in messages)
    expected = [(t, p, m if q else 0, q) for t, p, q, m, _, _ in messages]
    received, _ = _deliver(stream, cuts, len(messages))
    assert received == expected


def test_publishes_already_buffered_arrive_as_one_batch() -> None:
    stream = b"".join(_publish_packet("gym/main/nodes/n1/frames", b"x" * 400, 1, mid, []) for mid in range(1, 41))
    received, batches = _deliver(stream, [], 40)
    assert [mid for _, _, mid, _ in received] == list(range(1, 41))
    # The first packet goes through paho (it fills the buffer); the rest leave together.
    assert batches == [1, 39]


def _deliver(stream: bytes, cuts: list[int], count: int) -> tuple[list[tuple[str, bytes, int, int]], list[int]]:
    """Feed ``stream`` to a lean client through a socket, cut at ``cuts``; what it delivered, and in which batches."""
    client = LeanReceiveClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    received: list[tuple[str, bytes, int, int]] = []
    batches: list[int] = []

    def on_raw_messages(messages: list[tuple[str, bytes, int, int, bool]]) -> None:
        batches.append(len(messages))
        received.extend((topic, payload, mid, qos) for topic, payload, mid, qos, _ in messages)

    client.on_raw_messages = on_raw_messages
    ours, broker = socket.socketpair()
    try:
        ours.setblocking(False)
        client._sock = ours  # type: ignore[assignment]
        # The broker's writes arrive in pieces cut at arbitrary offsets, as TCP may deliver them.
        offsets = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
        for start, stop in itertools.pairwise(offsets):
            broker.sendall(stream[start:stop])
            for _ in range(10 * count + 10):
                if client.loop_read() != mqtt.MQTT_ERR_SUCCESS:
                    break
                if client.buffered() == 0 and not _readable(ours):
                    break
        assert client.buffered() == 0
        assert sum(batches) == len(received)
        return received, batches
    finally:
        client._sock = None
        ours.close()
        broker.close()


def _readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def test_one_loop_read_hands_over_at_most_one_batch() -> None:
    """The caller's flow control (mqtt_loop.py) checks Receive Maximum between loop_read() calls: one call must
    not read on. paho's loop_read() calls _packet_read() once per message the client has in flight itself."""
    client = LeanReceiveClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    delivered: list[int] = []
    client.on_raw_messages = lambda messages: delivered.append(len(messages))
    for mid in range(1, 51):  # 50 QoS 1 publishes of ours awaiting PUBACK (reps, sets)
        client._out_messages[mid] = mqtt.MQTTMessage(mid)  # type: ignore[attr-defined]
    stream = b"".join(_publish_packet("gym/main/nodes/n1/frames", b"x" * 100, 1, mid, []) for mid in range(1, 601))
    ours, broker = socket.socketpair()
    try:
        ours.setblocking(False)
        client._sock = ours  # type: ignore[assignment]
        broker.sendall(stream)
        per_call: list[list[int]] = []
        while sum(map(sum, per_call)) < 600 and len(per_call) < 20:
            client.loop_read()
            per_call.append(delivered[:])
            delivered.clear()
        # Packets paho reads itself come one by one (the first fills the read buffer, one completes a packet
        # split across reads); batches from the buffer end the call. Without that stop, the first call read on
        # for up to 50 batches.
        assert sum(map(sum, per_call)) == 600
        assert all(sum(1 for n in call if n > 1) <= 1 and sum(call) <= MAX_BATCH + 1 for call in per_call), per_call
    finally:
        client._sock = None
        ours.close()
        broker.close()
