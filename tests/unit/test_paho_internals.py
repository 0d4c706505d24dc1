"""PUBACK failure codes paho 2.2.0 cannot name (Mosquitto's 0x95 Packet too large) count as refusals."""

from __future__ import annotations

import pytest

from formcheck_runtime.paho_internals import unlisted_puback_failure


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


def test_paho_is_the_release_the_overrides_were_written_for() -> None:
    from importlib.metadata import version

    import paho.mqtt.client as mqtt

    from formcheck_runtime.paho_internals import PAHO_VERSION, check_paho_internals

    assert version("paho-mqtt") == PAHO_VERSION, "formcheck_runtime.paho_internals: re-check every override first"
    check_paho_internals(mqtt.Client(mqtt.CallbackAPIVersion.VERSION2))


def test_a_missing_internal_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import paho.mqtt.client as mqtt

    from formcheck_runtime.paho_internals import TolerantPubackClient, check_paho_internals

    monkeypatch.delattr(mqtt.Client, "_packet_read")
    with pytest.raises(RuntimeError, match=r"lacks _packet_read: formcheck's client overrides are written for"):
        check_paho_internals()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    del client._msgtime_mutex  # what a paho release without that lock would look like
    with pytest.raises(RuntimeError, match=r"lacks _packet_read, _msgtime_mutex"):
        check_paho_internals(client)
    with pytest.raises(RuntimeError, match="_packet_read"):
        TolerantPubackClient(mqtt.CallbackAPIVersion.VERSION2)


def test_no_other_module_touches_paho_internals() -> None:
    """Issue 14: paho's private API is used in runtime/formcheck_runtime/paho_internals.py only."""
    import re

    from formcheck_runtime.paho_internals import PAHO_INTERNAL_METHODS, PAHO_INTERNAL_STATE
    from formcheck_runtime.paths import REPO_ROOT

    names = "|".join(re.escape(name) for name in PAHO_INTERNAL_METHODS + PAHO_INTERNAL_STATE)
    use = re.compile(rf"\.({names})\b|[\"']({names})[\"']")
    offenders = []
    for folder in ("formcheck", "aggregator", "edge_node", "protocol", "dashboards", "models", "bench"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            if path.name == "paho_internals.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if use.search(line) and not line.lstrip().startswith("#"):
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
