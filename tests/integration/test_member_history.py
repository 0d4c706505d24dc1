"""The member's retained history (members/{member}/history): read from the stored sets at every set, so it is whole
after a restart and whichever worker process handled the member's other stations; newest first, at most 20."""

from __future__ import annotations

import secrets

from formcheck.local_services import Influxd, free_port
from formcheck_aggregator.config import load_config
from formcheck_aggregator.core import HISTORY_SETS, ProcessingCore
from formcheck_aggregator.influx import InfluxWriter
from formcheck_aggregator.points import set_point
from formcheck_protocol.messages import SetMessage

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


def test_history_is_read_from_the_stored_sets_newest_first_twenty_at_most(influxd: Influxd) -> None:
    config = load_config(None, {"influx": {"url": influxd.url, "database": f"history_{secrets.token_hex(4)}",
                                           "flush_interval_s": 0.05, "timeout_s": 5}}, environ={})
    writer = InfluxWriter(config.influx).start()
    writer.ensure_database()

    def store(*sets: SetMessage) -> None:  # what the aggregator does before it publishes the history
        writer.submit([set_point(config.site, s) for s in sets])
        assert writer.flush(10)

    try:
        store(*(a_set("alice", i, FAULT if i == 10 else "") for i in range(25)), a_set("bob", 100))
        # A new run (nothing in memory): the next set's history holds it and the 19 stored before it.
        core = ProcessingCore(config, NoOutbox())
        store(a_set("alice", 25))
        history = core.member_history(a_set("alice", 25))
        assert [e.set_id for e in history.sets] == [f"rack-1-b-{i}" for i in range(25, 25 - HISTORY_SETS, -1)]
        assert history.member == "alice" and all(e.node == "rack-1" and e.reps == 5 for e in history.sets)
        assert history.sets[1].end_ts == a_set("alice", 24).end_ts
        assert next(e for e in history.sets if e.set_id == "rack-1-b-10").main_fault == FAULT
        # Another worker process (or aggregator) stores a set of alice's at its station: this core's next history
        # has it, read from InfluxDB, not from what this core remembers.
        store(a_set("alice", 30), a_set("alice", 31))
        again = core.member_history(a_set("alice", 31))
        assert [e.set_id for e in again.sets][:3] == ["rack-1-b-31", "rack-1-b-30", "rack-1-b-25"]
        assert len(again.sets) == HISTORY_SETS and [e.set_id for e in again.sets].count("rack-1-b-31") == 1
        # Bob's sets are never in alice's history.
        store(a_set("bob", 101))
        assert [e.set_id for e in core.member_history(a_set("bob", 101)).sets] == ["rack-1-b-101", "rack-1-b-100"]
    finally:
        writer.close(5)


def test_without_influxdb_the_history_this_core_knew_is_used() -> None:
    config = load_config(None, {"influx": {"url": f"http://127.0.0.1:{free_port()}", "timeout_s": 0.5}},
                         environ={})
    core = ProcessingCore(config, NoOutbox())
    assert [e.set_id for e in core.member_history(a_set("alice", 1)).sets] == ["rack-1-b-1"]
    assert [e.set_id for e in core.member_history(a_set("alice", 2)).sets] == ["rack-1-b-2", "rack-1-b-1"]
