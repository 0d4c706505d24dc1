"""The aggregator's lean PUBLISH parser agrees with paho's own decoder, packet by packet."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion

from aggregator.lean_client import LeanReceiveClient, check_paho_internals, parse_publish


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
