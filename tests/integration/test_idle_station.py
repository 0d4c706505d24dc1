"""An idle station end to end: a real ``formcheck edge`` process, Mosquitto, the aggregator and InfluxDB.

The edge plays, in real time, a video written for the test in its temporary directory (never next to the data
set): a clip, 12 s of an empty scene (the clip's mean colour with sensor noise), the clip again. Nobody is
there for 12 s: the node publishes ``no_person`` frames for ``idle.after_s`` (5 s), says ``activity: idle`` in
its retained status and its stats, publishes nothing until the person is back, then every frame again.

The aggregator (rest timeout 8 s) must count no lost frame for the idle time (``seq`` numbers published frames
only), end the first set on its rest timeout while the node is idle (the idle stats carry the time on: no
frame would), not before, and count the second play as a new set with as many reps as the clip alone. Frame
points are stored at the lower rate, and ``sum("frames")`` is every frame received.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from formcheck.local_services import Influxd, Mosquitto
from formcheck_aggregator.service import Aggregator
from formcheck_edge.analyze import analyze_frames
from formcheck_edge.offline import empty_scene, rgb_frames
from formcheck_models.training.frame_cache import edge_frames
from tests.integration.frame_factory import RunningAggregator, aggregator_config, influx_rows
from tests.integration.mqtt_helpers import Recorder
from tests.waiting import wait_until

pytestmark = [pytest.mark.data, pytest.mark.broker, pytest.mark.influx]

CLIP = "videos/squat/squat_front_goblet_d.mp4"
EMPTY_S = 12.0
REST_S = 8.0
NODE = "idle-rack"
DB = "idle_station"


def write_video(path: Path, clip: Path) -> tuple[int, int, float]:
    """clip + EMPTY_S of empty scene + clip, as mp4; (frames of the clip, frames of the empty part, fps)."""
    frames, fps = rgb_frames(clip)
    rgb = list(frames)
    h, w = rgb[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    blanks = empty_scene(rgb[0])
    empty = round(EMPTY_S * fps)
    for frame in [*rgb, *(blanks[i % len(blanks)] for i in range(empty)), *rgb]:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return len(rgb), empty, fps


def test_an_idle_station_publishes_nothing_loses_nothing_and_ends_the_set_on_rest(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, data_dir: Path, pose_model: Path
) -> None:
    clip_frames, empty_frames, fps = write_video(tmp_path / "station.mp4", data_dir / CLIP)
    reps_alone = analyze_frames(edge_frames(data_dir / CLIP, "squat"), CLIP, "squat").complete_reps
    assert reps_alone >= 1
    agg = RunningAggregator(Aggregator(aggregator_config(mosquitto, influxd, "agg-idle", DB,
                                                         sets={"rest_timeout_s": REST_S}))).start()
    frames = Recorder(mosquitto.host, mosquitto.port, f"gym/main/nodes/{NODE}/frames").start()
    statuses = Recorder(mosquitto.host, mosquitto.port, f"gym/main/nodes/{NODE}/status").start()
    stats = Recorder(mosquitto.host, mosquitto.port, f"gym/main/nodes/{NODE}/stats").start()
    sets = Recorder(mosquitto.host, mosquitto.port, f"gym/main/nodes/{NODE}/sets").start()
    try:
        assert wait_until(agg.agg.connected.is_set, 10)
        env = {**os.environ, "FORMCHECK_EDGE__STATS__INTERVAL_S": "1"}
        edge = subprocess.run(
            [sys.executable, "-m", "formcheck.cli", "edge", "--source", str(tmp_path / "station.mp4"), "--node",
             NODE, "--broker", f"{mosquitto.host}:{mosquitto.port}", "--realtime", "on"],
            check=False, capture_output=True, text=True, timeout=120, env=env)
        assert edge.returncode == 0, edge.stderr[-3000:]
        assert "idle" in edge.stderr and "person seen" in edge.stderr, edge.stderr[-3000:]

        def stored_sets() -> list[dict[str, object]]:
            return influx_rows(influxd, 'SELECT * FROM "set"', DB)

        assert wait_until(lambda: len(stored_sets()) == 2, 20), stored_sets()
        received = frames.messages
        first_set = sets.messages[0]
    finally:
        for recorder in (frames, statuses, stats, sets):
            recorder.stop()
        station = agg.station(NODE)
        assert agg.stop() == 0

    # Published: the clip, idle.after_s of the empty scene, nothing while idle, then the person again.
    published = [json.loads(m.payload) for m in received]
    assert [f["seq"] for f in published] == list(range(len(published)))
    total = 2 * clip_frames + empty_frames
    assert len(published) <= total - (EMPTY_S - 5.0 - 1.0) * fps, (len(published), total)
    states = [json.loads(m.payload).get("activity") for m in statuses.messages if m.payload]
    assert "idle" in states and states[-1] is None, states  # idle, then active again (the field left out)
    assert any(json.loads(m.payload).get("activity") == "idle" for m in stats.messages)
    # What the wall display reads (the station's last node_status point): idle while nobody was there, active
    # once the person came back, none once the node stopped.
    stored = [(r["state"], r["activity"]) for r in influx_rows(influxd, 'SELECT "state", "activity" FROM '
                                                                        '"node_status"', DB)]
    went_idle = stored.index(("online", "idle"))
    assert ("online", "active") in stored[went_idle:] and stored[-1] == ("stopped", None), stored
    # No lost frame counted for the idle time; the first set ended on its rest timeout while idle, before the
    # person came back; the second play is a set of its own.
    assert station["gaps"] == 0 and station["frames"] == len(published), station
    back = next(m.at for m, f in zip(received, published, strict=True)
                if f["seq"] > 0 and f["ts"] - published[f["seq"] - 1]["ts"] > 2000)
    assert first_set.at < back
    rows = sorted(stored_sets(), key=lambda r: str(r["time"]))
    assert [(r["reps"], r["ended_by"], r["complete"]) for r in rows] == [
        (reps_alone, "rest", True), (reps_alone, "node_stopped", True)]
    # Frame points count every frame received, and there are at most 20 % as many as a 30 frames/s node that
    # stored every frame would have stored in the time frames were published (this clip is 10 frames/s).
    (points,) = influx_rows(influxd, 'SELECT count("bad_p") AS n, sum("frames") AS frames FROM "frames"."frame"', DB)
    active_s = sum(min(b["ts"] - a["ts"], 1000) for a, b in itertools.pairwise(published)) / 1000
    assert points["frames"] == len(published) and points["n"] <= 0.2 * 30 * active_s, (points, active_s)
