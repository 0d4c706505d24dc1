"""Broker limits: the offline queue cap (``max_queued_messages``) and the message size limit.

* Frames the broker drops from a persistent session's offline queue must show up as ``gaps`` in
  ``aggregator_stats``: exactly the frames that never reached InfluxDB, never zero (DESIGN.md, "Measured pitfalls").
* A broker that refuses the edge's frames because of their size must not make the edge hang, loop or flood its log.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from formcheck.local_services import Influxd, ServiceError, start_mosquitto
from formcheck_aggregator.service import Aggregator
from tests.integration.frame_factory import (
    FRAME_MS,
    TOP,
    Publisher,
    RunningAggregator,
    aggregator_config,
    frame,
    influx_rows,
    squat_stream,
)
from tests.waiting import wait_until

QUEUE_LIMIT = 100
AWAY_FRAMES = 600     # published while the aggregator is away: most exceed the offline queue
TAIL_FRAMES = 30      # published once it is back: the stream goes on, so the hole is between received seqs
NODE = "rack-q"
DB = "limits"
SHORT_CLIP = "videos/squat/squat_side_bodyweight_b.mp4"
EDGE_NODE = "n1"
MAX_WARNINGS = 5


def stored_seqs() -> str:
    return f'SELECT "seq" FROM "frames"."frame" WHERE "node" = \'{NODE}\''


def stored(influxd: Influxd) -> list[dict[str, object]]:
    """Stored frame points of the station; ``[]`` until the aggregator created the database and its policies."""
    try:
        return influx_rows(influxd, stored_seqs(), DB)
    except ServiceError as exc:
        if "retention policy not found" in str(exc):
            return []
        raise


def last_stats(influxd: Influxd) -> dict[str, int]:
    rows = influx_rows(influxd, 'SELECT last("gaps") AS gaps, last("frames") AS frames, last("duplicates") AS dup, '
                                'last("late") AS late, last("seq_outliers") AS outliers FROM "aggregator_stats"', DB)
    return {k: int(v) for k, v in rows[0].items() if k != "time"} if rows else {}


# --- 1. offline queue limit reached while the aggregator is away ------------------------------------------------------


def test_frames_dropped_by_offline_queue_limit_are_counted_as_gaps(tmp_path: Path, influxd: Influxd) -> None:
    broker = start_mosquitto(tmp_path / "broker", extra_config=f"max_queued_messages {QUEUE_LIMIT}")
    try:
        config = aggregator_config(broker, influxd, "agg-limits", DB, mqtt={"session_expiry_s": 300},
                                   influx={"frame_points_per_s": 0})  # every frame a point: the test reads seqs
        first = RunningAggregator(Aggregator(config)).start()
        assert wait_until(first.agg.connected.is_set, 10), "aggregator never connected"
        assert first.stop() == 0

        # Capture time: the away part and the tail are one continuous 30 fps stream of one boot.
        ts0 = int(time.time() * 1000) - (AWAY_FRAMES + TAIL_FRAMES) * FRAME_MS - 5_000
        away = squat_stream(NODE, 8, ts0=ts0).frames
        away = away[:AWAY_FRAMES] + [frame(NODE, away[0].boot, i, ts0 + i * FRAME_MS, "standing", TOP)
                                     for i in range(len(away), AWAY_FRAMES)]
        assert [f.seq for f in away] == list(range(AWAY_FRAMES))
        boot = away[0].boot
        tail = [frame(NODE, boot, AWAY_FRAMES + i, ts0 + (AWAY_FRAMES + i) * FRAME_MS, "standing", TOP)
                for i in range(TAIL_FRAMES)]
        pub = Publisher(broker.host, broker.port)
        try:
            pub.publish_frames(away, timeout=30)

            second = RunningAggregator(Aggregator(config)).start()  # same id → same session
            try:
                assert wait_until(second.agg.connected.is_set, 10), "aggregator never reconnected"
                # The broker delivers what it kept; once that is stored, the stream goes on.
                assert wait_until(lambda: len(stored(influxd)) >= QUEUE_LIMIT // 2, 20), \
                    "the queued frames were never stored"
                settled: list[int] = []

                def stable() -> bool:
                    settled.append(len(stored(influxd)))
                    return len(settled) >= 4 and len(set(settled[-4:])) == 1

                assert wait_until(stable, 20, interval=0.25), f"stored frames never settled: {settled[-8:]}"
                pub.publish_frames(tail)
                published = AWAY_FRAMES + TAIL_FRAMES
                # Everything up to the last tail frame is stored, and the stats report after it.
                assert wait_until(
                    lambda: {int(str(r["seq"])) for r in stored(influxd)} >= {f.seq for f in tail},
                    20), "the tail frames were never stored"
                assert wait_until(lambda: last_stats(influxd).get("frames", 0)
                                  >= len(stored(influxd)), 10), last_stats(influxd)
            finally:
                assert second.stop() == 0
        finally:
            pub.close()
    finally:
        broker.stop()

    seqs = [int(str(r["seq"])) for r in stored(influxd)]
    assert len(seqs) == len(set(seqs)), "one stored point per seq"
    received = len(seqs)
    assert set(seqs) <= set(range(published))
    assert received < published - QUEUE_LIMIT, f"the broker kept {received} of {published}: the limit did not bite"
    stats = last_stats(influxd)
    assert stats["frames"] == received, stats
    assert stats["dup"] == 0 and stats["late"] == 0 and stats["outliers"] == 0, stats
    assert stats["gaps"] == published - received, (
        f"published {published}, stored {received}: {published - received} frames lost, "
        f"aggregator_stats reports gaps={stats['gaps']}")
    assert stats["gaps"] > 0


# --- 2. oversized frames refused by the broker -----------------------------------------------------------------------


def run_edge(extra_config: str, tmp_path: Path, data_dir: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    broker = start_mosquitto(tmp_path / "broker", extra_config=extra_config)
    env = {**os.environ, "FORMCHECK_EDGE__MQTT__KEEPALIVE_S": "2", "FORMCHECK_EDGE__STATS__INTERVAL_S": "0.5"}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "formcheck.cli", "edge", "--source", str(data_dir / SHORT_CLIP),
             "--realtime", "off", "--node", EDGE_NODE, "--broker", f"127.0.0.1:{broker.port}"],
            capture_output=True, text=True, check=False, timeout=90, env=env,
        )
    finally:
        broker.stop()
    return result, broker.log


# With message_size_limit Mosquitto 2.0.11 refuses an oversized QoS 1 frame with PUBACK reason 0x95, which MQTT 5
# does not list for PUBACK: stock paho 2.2.0 calls the packet malformed and reconnects forever, re-sending the same
# frames. runtime/formcheck_runtime/paho_internals.py counts it as a refusal instead (that case was a strict
# xfail). With
# max_packet_size the broker announces its limit and the edge drops oversized frames before sending.
LIMITS = [
    pytest.param("message_size_limit 300", id="message_size_limit"),
    pytest.param("max_packet_size 300", id="max_packet_size"),
]


@pytest.mark.parametrize("extra_config", LIMITS)
def test_edge_finishes_clip_against_size_limited_broker(
    extra_config: str, tmp_path: Path, data_dir: Path, pose_model: Path
) -> None:
    started = time.monotonic()
    result, _ = run_edge(extra_config, tmp_path, data_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert time.monotonic() - started < 60, "the edge took far longer than the clip"
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if " WARNING edge_node" in line]
    assert len(warnings) <= MAX_WARNINGS, "\n".join(warnings)


SUMMARY = re.compile(r"(\d+) classified, .* (\d+) published, (\d+) dropped unpublished, (\d+) refused by the broker")


@pytest.mark.parametrize("extra_config", LIMITS)
def test_oversized_frames_are_refused_and_counted_not_looped(
    extra_config: str, tmp_path: Path, data_dir: Path, pose_model: Path
) -> None:
    result, broker_log = run_edge(extra_config, tmp_path, data_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    connections = broker_log.read_text(errors="replace").count(f"as formcheck-edge-{EDGE_NODE} ")
    match = SUMMARY.search(result.stderr)
    assert match, result.stderr[-2000:]
    classified, published, unpublished, refused = map(int, match.groups())
    assert connections == 1, f"the edge connected {connections} times for one short clip (reconnect loop)"
    assert published + unpublished + refused == classified, match.group(0)
    assert refused > 0, match.group(0)
