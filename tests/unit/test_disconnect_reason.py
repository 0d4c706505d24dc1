"""The one log line a service writes when the broker disconnects it."""

from __future__ import annotations

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from formcheck_runtime.broker import SESSION_TAKEN_OVER, disconnect_reason


def test_a_taken_over_session_says_what_to_do() -> None:
    line = disconnect_reason(ReasonCode(PacketTypes.DISCONNECT, identifier=SESSION_TAKEN_OVER))
    assert line.startswith("Session taken over")
    assert "same account" in line and "account of its own" in line


def test_other_reasons_are_the_brokers_words() -> None:
    assert disconnect_reason(ReasonCode(PacketTypes.DISCONNECT, identifier=0x8B)) == "Server shutting down"
