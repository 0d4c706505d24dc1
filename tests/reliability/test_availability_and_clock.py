"""Availability (a frozen edge node, a node that goes offline mid-set) and wrong edge clocks.

* A SIGSTOPped edge process stops answering keep-alives: the broker must publish its retained Last Will
  (``offline``) within 1.5 × keep-alive plus the broker's keep-alive scan period (see the test); after SIGCONT
  it comes back ``online``.
* An open set on a station ends ``aborted`` (``complete=false``) when the node's ``offline`` status arrives.
* Frames stamped hours ahead of the aggregator clock are dropped and counted, never stored; a backwards
  clock step mid-stream is counted and does not cost the reps.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from formcheck.local_services import Influxd, Mosquitto
from formcheck_aggregator.influx import RETENTION_POLICIES
from formcheck_aggregator.service import Aggregator
from formcheck_protocol.messages import NodeStatus, SessionMessage
from tests.integration.frame_factory import (
    TOPICS,
    Publisher,
    RunningAggregator,
    aggregator_config,
    influx_rows,
    now_ms,
    squat_stream,
)
from tests.integration.mqtt_helpers import Recorder, states
from tests.integration.test_edge_mqtt import LONG_CLIP, edge_cmd, run_env
from tests.waiting import wait_until

KEEPALIVE_S = 2
HOUR_MS = 3_600_000
# Mosquitto 2.0.11 (src/keepalive.c) stamps a client's last packet in whole seconds and scans for expired
# keep-alives only when `last_keepalive_check + 5 < now_s`, i.e. once every 6 s: a client that has gone quiet is
# disconnected at the first scan after 1.5 x keep-alive (+ up to 1 s of whole-second stamping) has passed.
BROKER_KEEPALIVE_SCAN_S = 6.0


# -- a. frozen edge process ------------------------------------------------------------------------------------------


def test_sigstopped_edge_goes_offline_within_keepalive_and_recovers(
    mosquitto: Mosquitto, data_dir: Path, pose_model: Path
) -> None:
    node = "edge-stop"
    rec = Recorder(mosquitto.host, mosquitto.port, f"gym/main/nodes/{node}/status").start()
    env = {**run_env(), "FORMCHECK_EDGE__MQTT__KEEPALIVE_S": str(KEEPALIVE_S)}
    proc = subprocess.Popen(edge_cmd(data_dir / LONG_CLIP, mosquitto.port, node),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    stderr = ""
    try:
        assert rec.wait_for(lambda m: any(x.json()["state"] == "online" for x in m), 60), "node never came online"
        before = len(rec.of_kind("status"))
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGSTOP)
        # The brief asked for 1.5 x keep-alive + 1 s; Debian's broker adds its 6 s keep-alive scan (above), so
        # the Will comes 3.1-8.8 s after SIGSTOP here with keep-alive 2 s, depending on where the scan falls.
        # At least 1.5 x keep-alive - 1 s (the whole-second stamp): an earlier Will was not the keep-alive's.
        limit = 1.5 * KEEPALIVE_S + 1 + BROKER_KEEPALIVE_SCAN_S
        assert rec.wait_for(lambda m: len(m) > before and m[-1].json()["state"] == "offline", limit + 5), \
            f"no Last Will within {limit + 5} s of SIGSTOP: {states(rec)}"
        offline = rec.of_kind("status")[-1]
        print(f"SIGSTOP -> offline: {offline.at - stopped_at:.2f} s")
        assert 1.5 * KEEPALIVE_S - 1 <= offline.at - stopped_at <= limit, \
            f"offline after {offline.at - stopped_at:.2f} s (expected {1.5 * KEEPALIVE_S - 1}-{limit} s)"
        assert offline.json()["node"] == node

        # A late subscriber sees the retained offline state while the process is still frozen.
        late = Recorder(mosquitto.host, mosquitto.port, f"gym/main/nodes/{node}/status").start()
        try:
            assert late.wait_for(lambda m: bool(m), 5)
            assert late.messages[-1].retain and late.messages[-1].json()["state"] == "offline"
        finally:
            late.stop()

        proc.send_signal(signal.SIGCONT)
        assert rec.wait_for(lambda m: m[-1].json()["state"] == "online", 20), \
            f"paho did not reconnect after SIGCONT: {states(rec)}"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
        assert proc.returncode == 0, stderr[-2000:]
        assert rec.wait_for(lambda m: m[-1].json()["state"] == "stopped", 5), states(rec)
    finally:
        rec.stop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait(timeout=10)
    assert states(rec) == ["online", "offline", "online", "stopped"]
    assert "Traceback" not in stderr


# -- aggregator fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture
def running(request: pytest.FixtureRequest, mosquitto: Mosquitto, influxd: Influxd) -> Iterator[RunningAggregator]:
    db = request.node.name.replace("test_", "")[:40]
    # Every frame a point: the tests count the stored frames.
    agg = RunningAggregator(Aggregator(aggregator_config(mosquitto, influxd, "agg-rel", db,
                                                         influx={"frame_points_per_s": 0}))).start()
    try:
        assert wait_until(agg.agg.connected.is_set, 10), "aggregator did not connect"
        yield agg
    finally:
        assert agg.stop() == 0


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Iterator[Publisher]:
    pub = Publisher(mosquitto.host, mosquitto.port)
    try:
        yield pub
    finally:
        pub.close()


def db_of(agg: RunningAggregator) -> str:
    return agg.agg.config.influx.database


def query_all_series(influxd: Influxd, q: str, db: str) -> list[dict[str, Any]]:
    """Every series of an InfluxQL result (``Influxd.query`` returns only the first one)."""
    params = urllib.parse.urlencode({"q": q, "db": db, "epoch": "ms"})
    with urllib.request.urlopen(f"{influxd.url}/query?{params}", timeout=10) as response:
        body = json.loads(response.read())
    result = body["results"][0]
    assert "error" not in result, result
    return list(result.get("series") or [])


# -- b. offline mid-set ----------------------------------------------------------------------------------------------


def test_open_set_is_aborted_when_the_node_goes_offline(
    running: RunningAggregator, publisher: Publisher, mosquitto: Mosquitto, influxd: Influxd
) -> None:
    node, member = "rack-off", "m-off"
    rec = Recorder(mosquitto.host, mosquitto.port, f"gym/main/members/{member}/notifications").start()
    try:
        publisher.publish_all([(TOPICS.node(node, "session"), SessionMessage(member=member).to_json())], retain=True)
        assert wait_until(lambda: running.station(node).get("checked_in") == 1, 10)

        # 3 reps planned; the stream stops after 2 reps, mid-descent of the 3rd (stand 30, rep 24+9+24, stand 30).
        stream = squat_stream(node, 3, ts0=now_ms() - 120_000)
        cut = 30 + 2 * (24 + 9 + 24 + 30) + 12
        assert stream.frames[cut - 1].phase == "descending"
        publisher.publish_frames(stream.frames[:cut])
        assert wait_until(lambda: running.station(node)["frames"] == cut, 15), running.station(node)
        assert running.agg.counters["reps"] == 2
        assert running.agg.counters["sets"] == 0

        will = NodeStatus(state="offline", node=node, boot=stream.boot).to_json()  # the edge's Last Will
        publisher.publish_all([(TOPICS.node(node, "status"), will)], retain=True)
        assert rec.wait_for(lambda m: len(m) >= 1, 15), "no notification for the aborted set"
        note = rec.messages[-1].json()
        assert (note["complete"], note["reps"], note["ended_by"]) == (False, 2, "offline"), note
        first_set = note["set_id"]
        rows = influx_rows(influxd, f"SELECT * FROM \"set\" WHERE node = '{node}'", db_of(running))
        assert len(rows) == 1, rows
        assert (rows[0]["complete"], rows[0]["reps"], rows[0]["set_id"]) == (False, 2, first_set), rows

        # Back online with a new process: a new stream is a new set (ended cleanly by 'stopped').
        publisher.publish_all([(TOPICS.node(node, "status"), NodeStatus(state="online", node=node).to_json())],
                              retain=True)
        again = squat_stream(node, 2, ts0=now_ms() - 60_000)
        publisher.publish_frames(again.frames)
        assert wait_until(lambda: running.station(node)["frames"] == cut + len(again.frames), 15), \
            running.station(node)
        publisher.publish_all([(TOPICS.node(node, "status"), NodeStatus(state="stopped", node=node).to_json())],
                              retain=True)
        assert rec.wait_for(lambda m: len(m) >= 2, 15), "no notification for the second set"
        second = rec.messages[-1].json()
        assert (second["complete"], second["reps"], second["ended_by"]) == (True, 2, "node_stopped"), second
        assert second["set_id"] != first_set and again.boot in second["set_id"]
        assert wait_until(lambda: len(influx_rows(influxd, f"SELECT * FROM \"set\" WHERE node = '{node}'",
                                                  db_of(running))) == 2, 10)
    finally:
        rec.stop()


# -- c. wrong edge clocks --------------------------------------------------------------------------------------------


def stats_rows(influxd: Influxd, db: str) -> list[dict[str, Any]]:
    return influx_rows(influxd, "SELECT * FROM aggregator_stats", db)


def test_frames_hours_ahead_are_dropped_and_counted_never_stored(
    running: RunningAggregator, publisher: Publisher, influxd: Influxd
) -> None:
    node = "rack-future"
    max_future_ms = int(running.agg.config.clock.max_future_s * 1000)
    assert max_future_ms < 2 * HOUR_MS
    stream = squat_stream(node, 2, ts0=now_ms() - 30_000)
    half = len(stream.frames) // 2
    # One boot: the first half on time, then the edge clock jumps 2 hours ahead.
    ahead = [f.model_copy(update={"ts": f.ts + 2 * HOUR_MS}) for f in stream.frames[half:]]
    publisher.publish_frames(stream.frames[:half] + ahead)
    assert wait_until(lambda: running.agg.counters["messages"] >= len(stream.frames), 15)
    assert wait_until(lambda: running.invalid().get("ts_future") == len(ahead), 10), running.invalid()
    assert running.station(node)["frames"] == half
    db = db_of(running)
    assert wait_until(lambda: any(r.get("invalid_ts_future") == len(ahead) for r in stats_rows(influxd, db)), 10), \
        stats_rows(influxd, db)[-1:]
    assert_nothing_in_the_future(influxd, db_of(running))
    frames = influx_rows(influxd, f"SELECT count(vis) FROM \"frames\".frame WHERE node = '{node}'", db_of(running))
    assert frames and frames[0]["count"] == half, frames


def test_backwards_clock_step_keeps_the_reps_and_is_counted(
    running: RunningAggregator, publisher: Publisher, influxd: Influxd
) -> None:
    node = "rack-ntp"
    reps = 3
    stream = squat_stream(node, reps, ts0=now_ms() - 120_000, stand=45)
    # An NTP step of -30 s in the standing stretch between rep 1 and rep 2 (same boot, seq continues).
    step_at = 45 + (24 + 9 + 24) + 20
    assert stream.frames[step_at].phase == "standing"
    stepped = stream.frames[:step_at] + [f.model_copy(update={"ts": f.ts - 30_000}) for f in stream.frames[step_at:]]
    assert stepped[step_at].ts < stepped[step_at - 1].ts - 1000
    publisher.publish_frames(stepped)
    assert wait_until(lambda: running.station(node).get("frames") == len(stepped), 15)
    assert running.station(node)["clock_backwards"] == 1
    assert wait_until(lambda: running.agg.counters["reps"] == reps, 5), running.agg.counters
    rows = influx_rows(influxd, f"SELECT * FROM rep WHERE node = '{node}'", db_of(running))
    assert wait_until(lambda: len(influx_rows(influxd, f"SELECT * FROM rep WHERE node = '{node}'",
                                              db_of(running))) == reps, 10), rows
    assert wait_until(lambda: any(r.get("clock_backwards") == 1 for r in stats_rows(influxd, db_of(running))), 10)
    assert running.invalid().get("ts_future", 0) == 0 and running.invalid().get("ts_past", 0) == 0
    assert_nothing_in_the_future(influxd, db_of(running))


def assert_nothing_in_the_future(influxd: Influxd, db: str) -> None:
    """No point of any measurement, in any retention policy, is stamped more than an hour ahead (e.g. in 2100)."""
    for rp in RETENTION_POLICIES:
        assert query_all_series(influxd, f'SELECT * FROM "{rp}"./.*/', db), f"the query must see points in {rp}"
        future = query_all_series(influxd, f'SELECT * FROM "{rp}"./.*/ WHERE time > now() + 1h', db)
        assert future == [], (rp, future)
