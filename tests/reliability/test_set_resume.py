"""An aggregator killed in the middle of a set: the next one continues the set instead of splitting it.

Real Mosquitto, real InfluxDB, real ``formcheck aggregator`` processes (network + worker). The first aggregator
stores reps 1-3 of a member's set and is SIGKILLed; the member does reps 4-5 while no aggregator runs; the next
aggregator reads the open set's checkpoint from InfluxDB and finishes the set: one ``set`` row of 5 reps under
the first rep's set id, reps 1-5 once each, and one notification of 5 reps.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from formcheck.local_services import Influxd, Mosquitto
from formcheck_protocol.messages import NodeStatus
from tests.integration.frame_factory import TOPICS, Publisher, influx_rows, squat_stream
from tests.integration.mqtt_helpers import Recorder
from tests.reliability.test_delivery_guarantees import (
    _aggregator_online,
    _kill_group,
    closing_recorder,
    retained_notification,
    session_json,
)
from tests.reliability.test_influx_outage import aggregators, start_aggregator, stop_aggregator
from tests.waiting import wait_until

NODE = "rack-resume"
DB = "formcheck_resume"
MEMBERS = {"rack-resume": "carla", "rack-resume-2": "dan"}  # two stations: one checkpoint query serves both
REP_FRAMES = 24 + 9 + 24 + 30  # squat_stream: descend, bottom, ascend, stand


def stored_reps(influxd: Influxd, node: str) -> list[tuple[int, str]]:
    return sorted((int(r["rep_index"]), str(r["set_id"]))
                  for r in influx_rows(influxd, f"SELECT * FROM rep WHERE \"node\" = '{node}'", DB))


def stored_sets(influxd: Influxd, node: str) -> list[dict[str, Any]]:
    return influx_rows(influxd, f"SELECT * FROM \"set\" WHERE \"node\" = '{node}'", DB)


def test_sets_in_progress_survive_an_aggregator_kill(mosquitto: Mosquitto, influxd: Influxd, tmp_path: Path) -> None:
    streams = {node: squat_stream(node, 5) for node in MEMBERS}
    cut = 30 + 3 * REP_FRAMES  # up to the end of rep 3 (with the standing that confirms it)
    log = tmp_path / "aggregator.log"
    agg_id = "agg-resume"
    options = {"INFLUX__DATABASE": DB, "SETS__REST_TIMEOUT_S": "60"}
    notes = Recorder(mosquitto.host, mosquitto.port, "gym/main/members/+/notifications")
    with closing_recorder(notes), aggregators() as procs:
        procs.append(start_aggregator(mosquitto, influxd, log, agg_id, **options))
        assert wait_until(lambda: _aggregator_online(mosquitto, agg_id), 20), log.read_text()[-2000:]
        pub = Publisher(mosquitto.host, mosquitto.port)
        try:
            pub.publish_all([(TOPICS.node(n, "session"), session_json(m)) for n, m in MEMBERS.items()], retain=True)
            for stream in streams.values():
                pub.publish_frames(stream.frames[:cut])
            assert wait_until(lambda: all(len(stored_reps(influxd, n)) == 3 for n in MEMBERS), 20), \
                log.read_text()[-2000:]
            time.sleep(0.5)  # the acks of the stored frames reach the broker
            _kill_group(procs[0])

            # The members go on while no aggregator runs; the broker queues the frames for its session.
            for stream in streams.values():
                pub.publish_frames(stream.frames[cut:])
            procs.append(start_aggregator(mosquitto, influxd, log, agg_id, **options))
            assert wait_until(lambda: all(len(stored_reps(influxd, n)) == 5 for n in MEMBERS), 20), \
                log.read_text()[-2000:]
            for node, stream in streams.items():
                stopped = NodeStatus(state="stopped", node=node, boot=stream.boot, ts=stream.frames[-1].ts + 100)
                pub.publish_all([(TOPICS.node(node, "status"), stopped.to_json())], retain=True)
        finally:
            pub.close()
        assert wait_until(lambda: all(stored_sets(influxd, n) for n in MEMBERS), 20), log.read_text()[-2000:]
        assert wait_until(lambda: len([m for m in notes.messages if not m.retain]) >= len(MEMBERS), 10)
        time.sleep(0.5)  # a second set or notification, if any, would arrive now
        stop_aggregator(procs[1], log)

    for node, member in MEMBERS.items():
        reps = stored_reps(influxd, node)
        set_ids = {set_id for _, set_id in reps}
        assert [index for index, _ in reps] == [1, 2, 3, 4, 5] and len(set_ids) == 1, reps
        [row] = stored_sets(influxd, node)
        assert (row["reps"], row["set_id"], row["member"], row["complete"]) == (5, set_ids.pop(), member, True), row
        live = [m.json() for m in notes.messages if not m.retain and m.json()["member"] == member]
        assert [n["reps"] for n in live] == [5], live
        assert retained_notification(mosquitto, member)["reps"] == 5
    text = log.read_text()
    assert text.count("resumed open set") == len(MEMBERS) and "Traceback" not in text, text[-3000:]


def test_without_checkpoints_the_kill_splits_the_set(mosquitto: Mosquitto, influxd: Influxd, tmp_path: Path) -> None:
    """The same kill with ``sets.resume_open_sets`` off: what the checkpoints prevent (the known split)."""
    stream = squat_stream(f"{NODE}-off", 4)
    cut = 30 + 2 * REP_FRAMES
    log = tmp_path / "aggregator.log"
    agg_id = "agg-resume-off"
    db = f"{DB}_off"
    options = {"INFLUX__DATABASE": db, "SETS__REST_TIMEOUT_S": "60", "SETS__RESUME_OPEN_SETS": "false"}
    query = f"SELECT * FROM rep WHERE \"node\" = '{stream.node}'"
    with aggregators() as procs:
        procs.append(start_aggregator(mosquitto, influxd, log, agg_id, **options))
        assert wait_until(lambda: _aggregator_online(mosquitto, agg_id), 20), log.read_text()[-2000:]
        pub = Publisher(mosquitto.host, mosquitto.port)
        try:
            pub.publish_frames(stream.frames[:cut])
            assert wait_until(lambda: len(influx_rows(influxd, query, db)) == 2, 20), log.read_text()[-2000:]
            time.sleep(0.5)
            _kill_group(procs[0])
            pub.publish_frames(stream.frames[cut:])
            procs.append(start_aggregator(mosquitto, influxd, log, agg_id, **options))
            assert wait_until(lambda: len(influx_rows(influxd, query, db)) == 4, 20), log.read_text()[-2000:]
        finally:
            pub.close()
        stop_aggregator(procs[1], log)
    rows = influx_rows(influxd, query, db)
    assert sorted(int(r["rep_index"]) for r in rows) == [1, 1, 2, 2]
    assert len({r["set_id"] for r in rows}) == 2
