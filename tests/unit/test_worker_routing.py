"""Stations are spread over worker processes by node id, and the workers' counters add up."""

from __future__ import annotations

import zlib

from aggregator.workers import merge_snapshots, worker_index


def test_every_topic_of_a_station_goes_to_the_same_worker() -> None:
    cache: dict[str, int] = {}
    for node in ("rack-1", "rack-4", "squat-rack-12", "bench.3"):
        kinds = {worker_index(f"gym/main/nodes/{node}/{kind}", 3, cache)
                 for kind in ("frames", "status", "session", "stats")}
        assert kinds == {zlib.crc32(node.encode()) % 3}


def test_stations_spread_over_all_workers() -> None:
    cache: dict[str, int] = {}
    used = {worker_index(f"gym/main/nodes/rack-{i}/frames", 4, cache) for i in range(40)}
    assert used == {0, 1, 2, 3}


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
    from formcheck.queues import DropQueue, QueueClosed

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
