"""Stations are spread over worker processes by node id, and the workers' counters add up."""

from __future__ import annotations

import pytest

from formcheck_aggregator.config import PartitionSection
from formcheck_aggregator.decoder import ClockPolicy, Dropped, NotOwned, decode
from formcheck_aggregator.processing import merge_snapshots
from formcheck_aggregator.workers import worker_index, worker_of
from formcheck_protocol.topics import Topics


def test_every_topic_of_a_station_goes_to_the_same_worker() -> None:
    cache: dict[str, int] = {}
    for node in ("rack-1", "rack-4", "squat-rack-12", "bench.3"):
        kinds = {worker_index(f"gym/main/nodes/{node}/{kind}", 3, cache)
                 for kind in ("frames", "status", "session", "stats")}
        assert kinds == {worker_of(node, 3)}


def test_stations_spread_over_all_workers() -> None:
    cache: dict[str, int] = {}
    used = {worker_index(f"gym/main/nodes/rack-{i}/frames", 4, cache) for i in range(40)}
    assert used == {0, 1, 2, 3}


@pytest.mark.parametrize(("aggregators", "workers"), [(2, 2), (2, 4), (3, 3), (4, 2)])
def test_every_worker_of_every_partition_gets_stations(aggregators: int, workers: int) -> None:
    """Issue 14: with crc32 for both choices, 2 aggregators x 2 workers put all of an aggregator's stations
    (18 of 18) on one worker and left the other idle."""
    stations = [f"rack-{i}" for i in range(1, 37)]
    for index in range(aggregators):
        partition = PartitionSection(mode="hash", index=index, count=aggregators)
        owned = [node for node in stations if partition.owns(node)]
        assert owned, index
        assert {worker_of(node, workers) for node in owned} == set(range(workers)), (index, owned)
    every = [PartitionSection(mode="hash", index=i, count=aggregators) for i in range(aggregators)]
    assert all(sum(p.owns(node) for p in every) == 1 for node in stations), "each station has one owner"


def test_ownership_is_decided_from_the_topic_before_the_payload_is_read() -> None:
    topics = Topics(site="main", prefix="gym")
    clock = ClockPolicy(max_future_ms=300_000, max_age_ms=86_400_000)
    mine = PartitionSection(mode="list", stations=["rack-1"])
    garbage = b"{not json"
    other = decode(topics, "gym/main/nodes/rack-2/frames", garbage, 0, clock, 65536, mine.owns)
    assert other == NotOwned("rack-2"), "another aggregator's station: not an invalid message of ours"
    own = decode(topics, "gym/main/nodes/rack-1/frames", garbage, 0, clock, 65536, mine.owns)
    assert isinstance(own, Dropped) and own.reason == "invalid_json"


def test_unparseable_topics_still_get_a_worker_and_the_cache_stays_bounded() -> None:
    cache: dict[str, int] = {}
    assert 0 <= worker_index("nonsense", 2, cache) < 2
    assert 0 <= worker_index("a/\udcff/b", 2, cache) < 2  # not UTF-8 encodable: still routed
    for i in range(20_000):
        worker_index(f"gym/main/nodes/n{i}/frames", 2, cache)
    assert len(cache) <= 8192


def test_snapshots_are_summed_per_section() -> None:
    merged = merge_snapshots([
        {"counters": {"messages": 5, "reps": 1}, "invalid": {"schema": 2}},
        {"counters": {"messages": 7}, "writer": {"buffer": 3}},
        {},
    ])
    assert merged == {"counters": {"messages": 12, "reps": 1}, "invalid": {"schema": 2}, "writer": {"buffer": 3}}


def test_inbox_batches_keep_order_and_respect_the_limit() -> None:
    from formcheck_runtime.queues import DropQueue, QueueClosed

    queue: DropQueue[int] = DropQueue(100)
    for i in range(10):
        queue.put(i)
    assert queue.get_batch(4, timeout=0) == [0, 1, 2, 3]
    assert queue.get_batch(100, timeout=0) == [4, 5, 6, 7, 8, 9]
    assert queue.get_batch(5, timeout=0.01) == []
    queue.put(10)
    queue.close()
    assert queue.get_batch(5, timeout=0) == [10]  # drained first, then closed
    try:
        queue.get_batch(5, timeout=0)
    except QueueClosed:
        pass
    else:
        raise AssertionError("a closed, drained queue must raise QueueClosed")
