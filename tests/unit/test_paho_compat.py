"""PUBACK failure codes paho 2.2.0 cannot name (Mosquitto's 0x95 Packet too large) count as refusals."""

from __future__ import annotations

import pytest

from formcheck.paho_compat import unlisted_puback_failure


@pytest.mark.parametrize(("body", "expected"), [
    (b"\x00\x05\x95", (5, 0x95)),          # Packet too large: not a PUBACK reason in MQTT 5, sent by Mosquitto 2.0.11
    (b"\x01\x00\x95\x00", (256, 0x95)),    # with an empty property block
    (b"\x00\x05", None),                   # success, reason omitted
    (b"\x00\x05\x00", None),               # success
    (b"\x00\x05\x10", None),               # no matching subscribers: not a failure
    (b"\x00\x05\x87", None),               # not authorized: a PUBACK reason paho handles itself
    (b"\x00\x05\x97", None),               # quota exceeded: listed for PUBACK
    (b"\x00", None),                       # too short: paho's own error handling applies
])
def test_only_unlisted_failures_are_taken_over(body: bytes, expected: tuple[int, int] | None) -> None:
    assert unlisted_puback_failure(body) == expected
