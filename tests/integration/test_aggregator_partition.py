"""Partitioned aggregators give the same stored reps and sets as one aggregator handling every station.

Real Mosquitto and InfluxDB. The same synthetic streams of six stations are
published once and consumed at the same time by:

- ``solo``: one aggregator, partition ``all``, database ``one``;
- ``hash-0`` / ``hash-1``: ``partition.mode=hash, count=2``, database ``two``;
- ``list-a`` / ``list-b``: ``partition.mode=list`` with the stations split by hand, database ``three``.

Identical points overwrite in InfluxDB, so a station handled by both members of
a pair would not show in the stored rows: ownership is checked on each
aggregator itself (its stations, its ``aggregator_stats``) and on the ``reps``
topic, where every rep must arrive exactly once per scenario.
"""

from __future__ import annotations

import contextlib
import zlib
from collections import Counter
from collections.abc import Iterator

import pytest

from formcheck.local_services import Influxd, Mosquitto
from formcheck_aggregator.core import STATION_SECTION
from formcheck_aggregator.service import Aggregator
from tests.integration.frame_factory import (
    TOPICS,
    Publisher,
    RunningAggregator,
    Stream,
    aggregator_config,
    influx_rows,
    now_ms,
    squat_stream,
    status_payload,
)
from tests.integration.mqtt_helpers import Recorder
from tests.waiting import wait_until

# crc32(node) % 2: rack-1..3 -> 1, rack-4..6 -> 0 (asserted below, so a changed hash shows up here first).
REPS = {"rack-1": 2, "rack-2": 3, "rack-3": 2, "rack-4": 3, "rack-5": 2, "rack-6": 2}
LIST_A = ["rack-1", "rack-4", "rack-5"]
LIST_B = ["rack-2", "rack-3", "rack-6"]


@pytest.fixture
def streams() -> dict[str, Stream]:
    t0 = now_ms() - 60_000
    # Stations start a little apart, as in a real gym; every stream has its own boot id.
    return {node: squat_stream(node, reps, ts0=t0 + 517 * i) for i, (node, reps) in enumerate(REPS.items())}


@contextlib.contextmanager
def running(aggs: list[Aggregator]) -> Iterator[list[RunningAggregator]]:
    started = [RunningAggregator(agg).start() for agg in aggs]
    try:
        yield started
    finally:
        for r in started:
            r.stop_event.set()
        for r in started:
            with contextlib.suppress(TimeoutError):
                r.stop()


def interleaved(streams: dict[str, Stream]) -> list[tuple[str, bytes]]:
    """Frames of all stations in capture-time order (each station's own order is kept)."""
    frames = sorted((f for s in streams.values() for f in s.frames), key=lambda f: (f.ts, f.node))
    return [(TOPICS.node(f.node, "frames"), f.to_json()) for f in frames]


def rep_rows(influxd: Influxd, db: str) -> set[tuple[str, int, int, float]]:
    rows = influxd.query("SELECT node, rep_index, score FROM rep", db=db)
    return {(r["node"], r["rep_index"], r["time"], r["score"]) for r in rows}


def set_rows(influxd: Influxd, db: str) -> set[tuple[str, str, int, int, float, bool]]:
    rows = influxd.query("SELECT node, set_id, reps, score_mean, complete FROM \"set\"", db=db)
    return {(r["node"], r["set_id"], r["time"], r["reps"], r["score_mean"], r["complete"]) for r in rows}


def last_stats(influxd: Influxd, db: str, agg_id: str) -> dict[str, int]:
    rows = influx_rows(
        influxd,
        "SELECT last(messages) AS messages, last(frames) AS frames, last(reps) AS reps, last(sets) AS sets, "
        f"last(invalid) AS invalid, last(duplicates) AS duplicates FROM aggregator_stats WHERE aggregator = '{agg_id}'",
        db,
    )
    return {k: v for k, v in rows[0].items() if k != "time"} if rows else {}


def test_hash_and_list_partitions_store_what_one_aggregator_stores(
    mosquitto: Mosquitto, influxd: Influxd, streams: dict[str, Stream]
) -> None:
    hash_owner = {node: zlib.crc32(node.encode()) % 2 for node in REPS}
    assert set(hash_owner.values()) == {0, 1}, f"station names must split across both aggregators: {hash_owner}"

    def config(agg_id: str, db: str, **partition: object) -> Aggregator:
        # Every frame a point: the partitions' stored frames are compared point by point.
        return Aggregator(aggregator_config(mosquitto, influxd, agg_id, db, partition=partition,
                                            influx={"frame_points_per_s": 0}))

    aggs = [
        config("solo", "one", mode="all"),
        config("hash-0", "two", mode="hash", count=2, index=0),
        config("hash-1", "two", mode="hash", count=2, index=1),
        config("list-a", "three", mode="list", stations=LIST_A),
        config("list-b", "three", mode="list", stations=LIST_B),
    ]
    # Every aggregator has its own persistent session (client id from its id).
    assert len({a._client._client_id for a in aggs}) == len(aggs)
    owned_by = {
        "solo": set(REPS),
        "hash-0": {n for n, i in hash_owner.items() if i == 0},
        "hash-1": {n for n, i in hash_owner.items() if i == 1},
        "list-a": set(LIST_A),
        "list-b": set(LIST_B),
    }
    subscribed_to = {"solo": set(REPS), "hash-0": set(REPS), "hash-1": set(REPS),
                     "list-a": set(LIST_A), "list-b": set(LIST_B)}
    frames_of = {node: len(s.frames) for node, s in streams.items()}
    total_reps = sum(REPS.values())

    reps_topic = Recorder(mosquitto.host, mosquitto.port, "gym/main/nodes/+/reps").start()
    publisher = Publisher(mosquitto.host, mosquitto.port)
    try:
        with running(aggs) as runs:
            assert wait_until(lambda: all(r.agg.connected.is_set() for r in runs), 10), "not all connected"
            # Each edge node announces itself (retained, as the edge does); an aggregator that has processed the
            # status of every station it subscribes to has its subscription in place before any frame is sent.
            publisher.publish_all(((TOPICS.node(n, "status"), status_payload(n)) for n in REPS), retain=True)
            assert wait_until(lambda: all(r.messages() >= len(subscribed_to[r.id]) for r in runs), 10), \
                {r.id: r.messages() for r in runs}

            publisher.publish_all(interleaved(streams))
            # The edge nodes stop cleanly: each open set ends (complete) and is stored.
            publisher.publish_all(((TOPICS.node(n, "status"), status_payload(n, "stopped")) for n in REPS),
                                  retain=True)

            expected_messages = {
                r.id: sum(frames_of[n] + 2 for n in subscribed_to[r.id]) for r in runs
            }

            def set_counts() -> dict[str, int]:
                return {db: sum(r["count"] for r in influx_rows(influxd, 'SELECT count(reps) FROM "set"', db))
                        for db in ("one", "two", "three")}

            def settled() -> bool:
                return all(r.messages() >= expected_messages[r.id] for r in runs) and set(
                    set_counts().values()) == {len(REPS)}

            assert wait_until(settled, 25, interval=0.25), (
                {r.id: (r.messages(), expected_messages[r.id]) for r in runs}, set_counts())
            assert wait_until(lambda: len(reps_topic.of_kind("reps")) >= 3 * total_reps, 5)
            # aggregator_stats (every 0.5 s) has caught up with every message.
            assert wait_until(
                lambda: all(last_stats(influxd, db, r.id).get("messages") == expected_messages[r.id]
                            for r, db in zip(runs, ("one", "two", "two", "three", "three"), strict=True)),
                5,
            )
            assert all(r.alive() for r in runs), {r.id: r.outcome for r in runs}
            by_id = {r.id: r.agg for r in runs}
        outcomes = {r.id: r.outcome for r in runs}
    finally:
        publisher.close()
        reps_topic.stop()

    assert outcomes == {a: [0] for a in owned_by}, outcomes

    # -- the single aggregator found every rep ------------------------------------------------------------------
    one = rep_rows(influxd, "one")
    assert Counter(node for node, *_ in one) == Counter(REPS), sorted(one)
    assert {(node, idx) for node, idx, *_ in one} == {(n, i) for n, k in REPS.items() for i in range(1, k + 1)}
    sets_one = set_rows(influxd, "one")
    assert {(row[0], row[3], row[5]) for row in sets_one} == {(n, k, True) for n, k in REPS.items()}

    # -- partitions store exactly the same rows -----------------------------------------------------------------
    assert rep_rows(influxd, "two") == one
    assert rep_rows(influxd, "three") == one
    assert set_rows(influxd, "two") == sets_one
    assert set_rows(influxd, "three") == sets_one

    # -- each station was handled by exactly one member of each pair --------------------------------------------
    for agg_id, agg in by_id.items():
        handled = {section.removeprefix(STATION_SECTION) for section in agg.snapshot()
                   if section.startswith(STATION_SECTION)}
        assert handled == owned_by[agg_id], (agg_id, sorted(handled))
        assert agg.counters["reps"] == sum(REPS[n] for n in owned_by[agg_id]), agg_id
        assert agg.counters["sets"] == len(owned_by[agg_id]), agg_id
        not_owned = subscribed_to[agg_id] - owned_by[agg_id]
        assert agg.counters["not_owned"] == sum(frames_of[n] + 2 for n in not_owned), agg_id
    for pair in (("hash-0", "hash-1"), ("list-a", "list-b")):
        first, second = (owned_by[a] for a in pair)
        assert first and second, f"{pair}: one aggregator got no station"
        assert not first & second and first | second == set(REPS), pair
    assert owned_by["hash-1"] == {"rack-1", "rack-2", "rack-3"}

    # aggregator_stats, per aggregator: frames and reps of its own stations only.
    for agg_id, db in (("solo", "one"), ("hash-0", "two"), ("hash-1", "two"), ("list-a", "three"),
                       ("list-b", "three")):
        stats = last_stats(influxd, db, agg_id)
        assert stats["frames"] == sum(frames_of[n] for n in owned_by[agg_id]), (agg_id, stats)
        assert stats["reps"] == sum(REPS[n] for n in owned_by[agg_id]), (agg_id, stats)
        assert stats["sets"] == len(owned_by[agg_id]), (agg_id, stats)
        assert stats["invalid"] == 0 and stats["duplicates"] == 0, (agg_id, stats)

    # Per stored frame: every frame of every station, once, in each database.
    for db in ("one", "two", "three"):
        for node, count in frames_of.items():
            rows = influxd.query(f"SELECT count(seq) FROM \"frames\".\"frame\" WHERE node = '{node}'", db=db)
            assert rows and rows[0]["count"] == count, (db, node, rows)

    # The reps topic: each rep published once by each scenario (three times in all), never twice by a pair.
    published = Counter((m.json()["node"], m.json()["set_id"], m.json()["rep_index"])
                        for m in reps_topic.of_kind("reps"))
    assert len(published) == total_reps
    assert set(published.values()) == {3}, published
