"""Whole loop with real components: edge nodes replaying clips → Mosquitto → aggregator → InfluxDB + members."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from formcheck.local_services import Influxd, Mosquitto
from tests.integration.mqtt_helpers import Recorder
from tests.waiting import wait_until

# (node, member, clip, complete reps in ground_truth.csv). With two worker processes the two stations land on
# different workers (crc32 of the node id: rack-1 -> 1, rack-4 -> 0), so the stats check below sees a real sum.
STATIONS = (
    ("rack-1", "alice", "videos/squat/squat_side_bodyweight_a.mp4", 3),
    ("rack-4", "bob", "videos/squat/squat_rear_barbell_c.mp4", 2),
)
WORKERS = 2


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "formcheck.cli", *args]



def test_clips_become_stored_reps_sets_and_notifications(
    mosquitto: Mosquitto, influxd: Influxd, data_dir: Path, pose_model: Path
) -> None:
    broker = f"127.0.0.1:{mosquitto.port}"
    env = {**os.environ, "FORMCHECK_AGG__STATS_INTERVAL_S": "1", "FORMCHECK_AGG__MQTT__KEEPALIVE_S": "5",
           "FORMCHECK_AGG__INFLUX__FLUSH_INTERVAL_S": "0.2", "FORMCHECK_AGG__WORKER_PROCESSES": str(WORKERS)}
    for node, member, _, _ in STATIONS:
        subprocess.run(cli("checkin", "--node", node, "--member", member, "--broker", broker),
                       check=True, capture_output=True, timeout=30)
    notes = Recorder(mosquitto.host, mosquitto.port, "gym/main/members/+/notifications").start()
    reps_seen = Recorder(mosquitto.host, mosquitto.port, "gym/main/nodes/+/reps").start()
    agg = subprocess.Popen(cli("aggregator", "--broker", broker, "--influx", influxd.url),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert wait_until(lambda: bool(influxd.query("SHOW DATABASES") and any(
            r["name"] == "formcheck" for r in influxd.query("SHOW DATABASES"))), 30), "database not created"
        edges = [subprocess.Popen(cli("edge", "--source", str(data_dir / clip), "--node", node, "--broker", broker,
                                      "--realtime", "off"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)
                 for node, _, clip, _ in STATIONS]
        for edge in edges:
            _, err = edge.communicate(timeout=180)
            assert edge.returncode == 0, err[-2000:]

        def stored_sets() -> list[dict[str, object]]:
            return influxd.query('SELECT * FROM "set"', db="formcheck")

        assert wait_until(lambda: len(stored_sets()) == len(STATIONS), 60), stored_sets()

        # aggregator_stats stays one series per aggregator: the workers' counters are summed into it.
        # Frame points are stored at a lower rate; each counts the frames it stands for (the node's "stopped"
        # stores the last ones).
        def frames_stored() -> int:
            rows = influxd.query('SELECT sum(frames) FROM "frames"."frame"', db="formcheck")
            return int(str(rows[0]["sum"])) if rows else 0

        def stats() -> dict[str, object]:
            rows = influxd.query('SELECT last(frames) AS frames, last(sets) AS sets, last(reps) AS reps '
                                 'FROM aggregator_stats', db="formcheck")
            return rows[0] if rows else {}

        assert wait_until(lambda: stats().get("frames") == frames_stored() and stats().get("sets") == len(STATIONS),
                          20), (stats(), frames_stored())
        assert stats()["reps"] == sum(n for *_, n in STATIONS)
        series = influxd.query('SHOW SERIES FROM aggregator_stats', db="formcheck")
        assert len(series) == 1, series
    finally:
        agg.send_signal(signal.SIGTERM)
        _, agg_err = agg.communicate(timeout=30)
        notes.stop()
        reps_seen.stop()
    assert agg.returncode == 0, agg_err[-3000:]
    assert "Traceback" not in agg_err

    sets = {row["node"]: row for row in stored_sets()}
    for node, member, _, expected in STATIONS:
        row = sets[node]
        assert row["member"] == member
        assert row["reps"] == expected
        assert row["complete"] is True
        assert row["grade"] in {"A", "B", "C", "D", "F"}
        reps = influxd.query(f"SELECT * FROM rep WHERE node = '{node}'", db="formcheck")
        assert [r["rep_index"] for r in reps] == list(range(1, expected + 1))
        assert {r["member"] for r in reps} == {member}
        assert {r["set_id"] for r in reps} == {row["set_id"]}
        frames = influxd.query(f'SELECT count(bad_p), sum(frames) FROM "frames"."frame" WHERE node = \'{node}\'',
                               db="formcheck")
        assert frames and frames[0]["sum"] > 50 and frames[0]["count"] <= 0.3 * frames[0]["sum"], frames

    by_member = {m.topic.split("/")[3]: m.json() for m in notes.messages}
    assert {"alice", "bob"} <= set(by_member)
    assert by_member["alice"]["reps"] == 3 and by_member["bob"]["reps"] == 2
    assert len(reps_seen.messages) == sum(n for *_, n in STATIONS)

    stats = influxd.query("SELECT last(messages), last(invalid), last(write_errors) FROM aggregator_stats",
                          db="formcheck")
    assert stats and stats[0]["last"] > 0
