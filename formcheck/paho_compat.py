"""paho ``Client`` that survives a broker refusing a message with a reason code PUBACK does not list.

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
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

_UNSPECIFIED_ERROR = 0x80


def require_paho_internals(*names: str) -> None:
    """Raise RuntimeError when this paho release lacks internals a subclass here overrides or calls."""
    missing = [name for name in names if not hasattr(mqtt.Client, name)]
    if missing:
        raise RuntimeError(f"installed paho-mqtt lacks {', '.join(missing)}: formcheck needs paho-mqtt 2.x")


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
        require_paho_internals("_handle_pubackcomp", "_do_on_publish")  # methods: instance state cannot be checked here
        super().__init__(*args, **kwargs)
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
