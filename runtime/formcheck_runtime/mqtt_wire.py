"""MQTT wire format the lean receive path parses itself: PUBLISH packet bodies and Variable Byte Integers.

Pure functions of bytes (no paho, no sockets); tests compare them with paho's own decoder packet by packet.
"""

from __future__ import annotations

import struct
from typing import Final

PUBACK: Final = 0x40
PUBACK_HEADER: Final = struct.Struct("!BBH")


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
