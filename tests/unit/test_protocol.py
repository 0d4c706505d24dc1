from __future__ import annotations

import json
import math

import pytest
from pydantic import ValidationError

from formcheck_protocol.messages import MAX_TS_MS, FrameMessage, NodeStatus, SessionMessage
from formcheck_protocol.topics import REGISTRY, TopicError, Topics, registry_markdown

GOOD = {
    "v": 1, "node": "pi-1", "boot": "0123456789abcdef", "seq": 5, "ts": 1_763_700_000_000,
    "exercise": "squat", "phase": "descending", "phase_p": {"descending": 0.9, "standing": 0.1},
    "form": "good", "bad_p": 0.1, "faults": [], "angles": {"knee": 120.5}, "vis": 0.8,
}


def test_frame_roundtrip() -> None:
    msg = FrameMessage.model_validate(GOOD)
    again = FrameMessage.model_validate(json.loads(msg.to_json()))
    assert again == msg


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("v", 2), ("seq", -1), ("seq", 2**60), ("ts", MAX_TS_MS + 1), ("ts", 0), ("phase", "jumping"),
        ("form", "meh"), ("bad_p", 1.5), ("bad_p", math.nan), ("node", "a/b"), ("node", "+"), ("boot", "XYZ"),
        ("faults", ["unknown_fault"]), ("angles", {"knee": math.inf}), ("extra_key", 1),
    ],
)
def test_frame_rejects_invalid(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        FrameMessage.model_validate({**GOOD, field: value})


def test_nan_in_json_is_rejected() -> None:
    payload = json.dumps({**GOOD, "bad_p": "NaN"}).replace('"NaN"', "NaN")
    with pytest.raises(ValidationError):
        FrameMessage.model_validate_json(payload)


def test_status_and_session_forbid_unknown_keys() -> None:
    NodeStatus(state="online", node="pi-1")
    with pytest.raises(ValidationError):
        NodeStatus.model_validate({"state": "online", "node": "pi-1", "colour": "red"})
    with pytest.raises(ValidationError):
        SessionMessage.model_validate({"member": "m 1"})


def test_topics_build_and_parse() -> None:
    topics = Topics(site="main")
    topic = topics.node("pi-1", "frames")
    assert topic == "gym/main/nodes/pi-1/frames"
    assert topics.parse_node_topic(topic) == ("pi-1", "frames")
    assert topics.all_nodes("status") == "gym/main/nodes/+/status"
    assert topics.member_notifications("m42") == "gym/main/members/m42/notifications"
    assert topics.aggregator_status() == "gym/main/aggregator/status"


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "", "x" * 65, "é"])
def test_topic_levels_reject_injection(bad: str) -> None:
    with pytest.raises(TopicError):
        Topics(site="main").node(bad, "frames")


@pytest.mark.parametrize(
    "topic",
    ["gym/other/nodes/pi-1/frames", "gym/main/nodes/pi-1/unknown", "gym/main/nodes/pi-1", "gym/main/members/m/frames"],
)
def test_parse_rejects_foreign_topics(topic: str) -> None:
    with pytest.raises(TopicError):
        Topics(site="main").parse_node_topic(topic)


def test_registry_matches_design_qos_and_retain() -> None:
    assert (REGISTRY["frames"].qos, REGISTRY["frames"].retain) == (1, False)
    assert (REGISTRY["status"].qos, REGISTRY["status"].retain) == (1, True)
    assert (REGISTRY["stats"].qos, REGISTRY["stats"].retain) == (0, False)
    assert (REGISTRY["session"].qos, REGISTRY["session"].retain) == (1, True)
    table = registry_markdown()
    assert "`gym/{site}/nodes/{node}/frames`" in table
    assert "`gym/{site}/members/{member}/notifications`" in table
