"""The member's retained history (members/{member}/history): seeded from the stored sets the first time a member is
seen in a run, so an aggregator restart does not shorten it, then kept in memory; newest first, at most 20."""

from __future__ import annotations

import secrets

from aggregator.config import load_config
from aggregator.core import HISTORY_SETS, ProcessingCore
from aggregator.influx import InfluxWriter
from aggregator.points import set_point
from formcheck.local_services import Influxd
from protocol.messages import SetMessage

FAULT = "knees caved in on reps 1–2: push them out over your toes"


class NoOutbox:
    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        pass

    def ack_many(self, items: object) -> None:
        pass


def a_set(member: str, index: int, fault: str = "") -> SetMessage:
    start = 1_760_000_000_000 + index * 60_000
    return SetMessage(node="rack-1", member=member, exercise="squat", set_id=f"rack-1-b-{index}", start_ts=start,
                      end_ts=start + 20_000, reps=5, partial_reps=0, score_mean=80.0 + index % 10, score_min=70.0,
                      grade="B", bad_ratio=0.1, main_fault=fault, complete=True, ended_by="rest")


def test_history_survives_a_restart_and_keeps_the_last_twenty(influxd: Influxd) -> None:
    config = load_config(None, {"influx": {"url": influxd.url, "database": f"history_{secrets.token_hex(4)}",
                                           "flush_interval_s": 0.05, "timeout_s": 5}}, environ={})
    stored = [a_set("alice", i, FAULT if i == 10 else "")
              for i in range(25)] + [a_set("bob", 100)]
    with InfluxWriter(config.influx) as writer:
        writer.ensure_database()
        writer.submit([set_point(config.site, s) for s in stored])
        assert writer.flush(10)
    # A new run (the previous one's memory is gone): the next set's history holds it and the 19 stored before.
    core = ProcessingCore(config, NoOutbox())
    history = core.member_history(a_set("alice", 25))
    assert [e.set_id for e in history.sets] == [f"rack-1-b-{i}" for i in range(25, 25 - HISTORY_SETS, -1)]
    assert history.member == "alice" and all(e.node == "rack-1" and e.reps == 5 for e in history.sets)
    assert history.sets[1].end_ts == stored[24].end_ts
    # Then from memory: the same set again is not listed twice, bob's sets are never in alice's history.
    again = core.member_history(a_set("alice", 25))
    assert [e.set_id for e in again.sets] == [e.set_id for e in history.sets]
    assert [e.set_id for e in core.member_history(a_set("bob", 101)).sets] == ["rack-1-b-101", "rack-1-b-100"]
    assert next(e for e in history.sets if e.set_id == "rack-1-b-10").main_fault == FAULT
