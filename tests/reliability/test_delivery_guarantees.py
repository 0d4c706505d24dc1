"""Delivery guarantees of the aggregator, asserted on what is STORED in InfluxDB and DELIVERED on MQTT.

* a broker restart (with persistence) while the aggregator is away loses no queued frame;
* an aggregator (network process + worker process) SIGKILLed before it could write loses nothing and
  doubles nothing: the broker redelivers what was never acknowledged;
* duplicated frames and a re-sent retained session give one stored point per rep and one notification per set.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from formcheck.local_services import Influxd, Mosquitto, start_mosquitto
from formcheck_aggregator.config import AggregatorConfig
from formcheck_aggregator.service import Aggregator
from formcheck_aggregator.station import Station
from formcheck_protocol.messages import FrameMessage, SessionMessage
from tests.integration.frame_factory import (
    FRAME_MS,
    TOP,
    TOPICS,
    Publisher,
    RunningAggregator,
    Stream,
    aggregator_config,
    frame,
    influx_rows,
    squat_stream,
)
from tests.integration.mqtt_helpers import Recorder
from tests.waiting import wait_until

REST_S = 2.0          # a set ends 2 s (capture time) after its last rep
TAIL_FRAMES = 90      # ~3 s of standing after the last rep: ends the set by rest timeout
# Plenty of room for the offline queue (default 1000); our volumes stay well below either way.
BROKER_EXTRA = "max_queued_messages 5000"

RepRow = tuple[str, int, int, float]  # (node, rep_index, start time ms, score)


def stream_with_tail(node: str, reps: int) -> Stream:
    """``reps`` clean squats, then enough standing frames that the set ends (rest timeout) within the stream."""
    base = squat_stream(node, reps)
    last = base.frames[-1]
    tail = [frame(node, base.boot, last.seq + 1 + i, last.ts + (i + 1) * FRAME_MS, "standing", TOP)
            for i in range(TAIL_FRAMES)]
    return Stream(node, base.boot, base.frames + tail, reps)


def session_json(member: str) -> bytes:
    return SessionMessage(member=member, exercise="squat").to_json()


def reference(config: AggregatorConfig, frames: list[FrameMessage], member: str | None = None) -> set[RepRow]:
    """The reps an undisturbed aggregator stores for one station's frames (same code, no I/O)."""
    station = Station(frames[0].node, rep_config=config.reps, set_config=config.sets, grading=config.grading)
    if member is not None:
        station.on_session(SessionMessage(member=member, exercise="squat"))
    rows: set[RepRow] = set()
    sets = 0
    for f in frames:
        out = station.on_frame(f)
        rows |= {(r.node, r.rep_index, r.start_ts, r.score) for r in out.reps}
        sets += len(out.sets)
    assert sets == 1, "the synthetic stream must end its set by itself"
    return rows


def stored_reps(influxd: Influxd, db: str) -> list[RepRow]:
    return [(r["node"], int(r["rep_index"]), int(r["time"]), float(r["score"]))
            for r in influx_rows(influxd, "SELECT * FROM rep", db)]


def stored_sets(influxd: Influxd, db: str) -> list[dict[str, Any]]:
    return influx_rows(influxd, 'SELECT * FROM "set"', db)


@contextlib.contextmanager
def closing_recorder(rec: Recorder) -> Iterator[Recorder]:
    rec.start()
    try:
        yield rec
    finally:
        rec.stop()


def retained_notification(broker: Mosquitto, member: str) -> dict[str, Any]:
    """The member's retained set summary as a phone that connects now receives it."""
    rec = Recorder(broker.host, broker.port, TOPICS.member_notifications(member))
    with closing_recorder(rec):
        assert rec.wait_for(lambda m: bool(m), 5), f"no retained notification for {member}"
        first = rec.messages[0]
    assert first.retain
    result: dict[str, Any] = first.json()
    return result


# --- 1. broker restart with persistence while the aggregator is offline ----------------------------------------------


def test_frames_queued_across_broker_restart_while_aggregator_offline(tmp_path: Path, influxd: Influxd) -> None:
    workdir = tmp_path / "broker"
    broker = start_mosquitto(workdir, extra_config=BROKER_EXTRA)
    port = broker.port
    try:
        config = aggregator_config(broker, influxd, "agg-persist", "persist", mqtt={"session_expiry_s": 300},
                                   sets={"rest_timeout_s": REST_S})
        # Connect once: the broker now holds our persistent session and its subscriptions.
        first = RunningAggregator(Aggregator(config)).start()
        assert wait_until(first.agg.connected.is_set, 10), "aggregator never connected"
        assert first.stop() == 0

        streams = [stream_with_tail(node, reps) for node, reps in (("rack-1", 2), ("rack-2", 3), ("rack-3", 1))]
        pub = Publisher(broker.host, port)
        try:
            for s in streams:
                pub.publish_frames(s.frames)
        finally:
            pub.close()

        broker.stop()  # SIGTERM: Mosquitto saves its persistence (queued QoS 1 messages included)
        assert broker.proc.returncode == 0
        broker = start_mosquitto(workdir, port=port, extra_config=BROKER_EXTRA)

        expected = set().union(*(reference(config, s.frames) for s in streams))
        assert len(expected) == sum(s.reps for s in streams)
        second = RunningAggregator(Aggregator(config)).start()  # same id → same client id → same session
        try:
            assert wait_until(lambda: len(stored_sets(influxd, "persist")) == len(streams), 30), \
                f"sets stored: {stored_sets(influxd, 'persist')}; reps: {stored_reps(influxd, 'persist')}"
            assert wait_until(lambda: second.messages() >= sum(len(s.frames) for s in streams), 10)
        finally:
            assert second.stop() == 0
        rows = stored_reps(influxd, "persist")
        assert len(rows) == len(expected)
        assert set(rows) == expected
        station_counters = {n: second.station(n) for n in ("rack-1", "rack-2", "rack-3")}
        assert all(c["frames"] > 0 and c["gaps"] == 0 and c["duplicates"] == 0
                   for c in station_counters.values()), station_counters
    finally:
        broker.stop()


# --- 2. aggregator (network + worker process) killed before it could write -------------------------------------------


def _agg_env(agg_id: str) -> dict[str, str]:
    return {
        **os.environ,
        "FORMCHECK_AGG__ID": agg_id,
        "FORMCHECK_AGG__MQTT__KEEPALIVE_S": "5",
        "FORMCHECK_AGG__MQTT__SESSION_EXPIRY_S": "300",
        "FORMCHECK_AGG__MQTT__RECONNECT_MIN_S": "0.2",
        "FORMCHECK_AGG__MQTT__RECONNECT_MAX_S": "1",
        "FORMCHECK_AGG__INFLUX__FLUSH_INTERVAL_S": "0.1",
        "FORMCHECK_AGG__INFLUX__TIMEOUT_S": "2",
        "FORMCHECK_AGG__INFLUX__RETRY_MIN_S": "0.1",
        "FORMCHECK_AGG__INFLUX__RETRY_MAX_S": "1",
        "FORMCHECK_AGG__SETS__REST_TIMEOUT_S": str(REST_S),
        "FORMCHECK_AGG__STATS_INTERVAL_S": "1",
        "FORMCHECK_AGG__INFLUX__FRAME_POINTS_PER_S": "0",  # every frame a point: the tests count them all
    }


def _start_agg_process(broker: Mosquitto, influxd: Influxd, log: Path, agg_id: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "formcheck.cli", "aggregator", "--broker", f"127.0.0.1:{broker.port}",
             "--influx", influxd.url],
            stdout=subprocess.DEVNULL, stderr=err, env=_agg_env(agg_id), start_new_session=True,
        )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the aggregator and its worker process (same process group: start_new_session=True)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _aggregator_online(broker: Mosquitto, agg_id: str) -> bool:
    rec = Recorder(broker.host, broker.port, TOPICS.aggregator_status())
    with closing_recorder(rec):
        return rec.wait_for(lambda m: any(x.json().get("state") == "online" and x.json().get("node") == agg_id
                                           for x in m), 0.5)


def _frames_sent(broker: Mosquitto, client_id: str, dup: int) -> int:
    """Frames the broker sent to ``client_id`` with the DUP flag ``dup`` (from its debug log)."""
    text = broker.log.read_text(errors="replace")
    return len(re.findall(rf"Sending PUBLISH to {re.escape(client_id)} \(d{dup}, q1, r0, m\d+, '[^']*/frames'", text))


def test_aggregator_killed_before_writing_loses_and_doubles_nothing(influxd: Influxd, tmp_path: Path) -> None:
    # Our own broker with a debug log: it shows the frames really reached the first aggregator before the kill.
    mosquitto = start_mosquitto(tmp_path / "broker", extra_config="log_type debug")
    try:
        _killed_before_writing(mosquitto, influxd, tmp_path)
    finally:
        mosquitto.stop()


def _killed_before_writing(mosquitto: Mosquitto, influxd: Influxd, tmp_path: Path) -> None:
    db = "formcheck"
    client_id = "formcheck-aggregator-main-agg-kill"
    agg_id = "agg-kill"
    members = {"rack-1": "alice", "rack-2": "bob"}
    streams = [stream_with_tail("rack-1", 3), stream_with_tail("rack-2", 2)]
    log = tmp_path / "aggregator.log"
    reps_seen = Recorder(mosquitto.host, mosquitto.port, "gym/main/nodes/+/reps")
    notes = Recorder(mosquitto.host, mosquitto.port, "gym/main/members/+/notifications")
    procs: list[subprocess.Popen[bytes]] = []
    with closing_recorder(reps_seen), closing_recorder(notes):
        try:
            first = _start_agg_process(mosquitto, influxd, log, agg_id)
            procs.append(first)
            # Up: database created (InfluxDB reachable) and the MQTT session subscribed.
            assert wait_until(lambda: any(r["name"] == db for r in influxd.query("SHOW DATABASES")), 20), \
                log.read_text()[-2000:]
            assert wait_until(lambda: _aggregator_online(mosquitto, agg_id), 20), log.read_text()[-2000:]

            influxd.pause()  # from now on nothing can be stored, so nothing can be acknowledged
            try:
                pub = Publisher(mosquitto.host, mosquitto.port)
                try:
                    pub.publish_all([(TOPICS.node(n, "session"), session_json(m)) for n, m in members.items()],
                                    retain=True)
                    for s in streams:
                        pub.publish_frames(s.frames)
                finally:
                    pub.close()
                time.sleep(2.0)  # the aggregator receives (and processes, in its worker) what it can
                assert first.poll() is None, log.read_text()[-2000:]
                assert _frames_sent(mosquitto, client_id, 0) > 0, "no frame reached the aggregator before the kill"
                _kill_group(first)
                assert wait_until(lambda: not _group_alive(first.pid), 5), "worker process survived the kill"
            finally:
                influxd.resume()
            assert reps_seen.messages == [] and [m for m in notes.messages if not m.retain] == [], \
                "published before anything could be stored"

            second = _start_agg_process(mosquitto, influxd, log, agg_id)  # same id: resumes the session
            procs.append(second)
            expected_sets = len(streams)
            assert wait_until(lambda: len(stored_sets(influxd, db)) == expected_sets, 30), log.read_text()[-3000:]
            expected_reps = sum(s.reps for s in streams)
            assert wait_until(lambda: len(reps_seen.messages) >= expected_reps, 10)
            assert wait_until(lambda: len(notes.messages) >= expected_sets, 10)
            time.sleep(0.5)  # late duplicates, if any, would show up now
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)
            assert second.returncode == 0, log.read_text()[-3000:]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    _kill_group(proc)

    expected_keys = {(s.node, i) for s in streams for i in range(1, s.reps + 1)}
    rows = influx_rows(influxd, "SELECT * FROM rep", db)
    keys = [(r["node"], int(r["rep_index"])) for r in rows]
    assert sorted(keys) == sorted(expected_keys), rows
    assert {(r["node"], r["member"]) for r in rows} == set(members.items())
    sets = {r["node"]: r for r in stored_sets(influxd, db)}
    assert {n: sets[n]["reps"] for n in sets} == {s.node: s.reps for s in streams}

    published = [(m.json()["node"], m.json()["rep_index"]) for m in reps_seen.messages]
    assert set(published) == expected_keys
    assert all(published.count(k) <= 2 for k in expected_keys), published
    for s in streams:
        summary = retained_notification(mosquitto, members[s.node])
        assert summary["node"] == s.node and summary["reps"] == s.reps and summary["complete"] is True
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert "session resumed" in text, "the second aggregator must resume the first one's session"
    assert _frames_sent(mosquitto, client_id, 1) > 0, "the broker redelivered nothing in flight (DUP set)"


# --- 3. duplicated frames and a re-sent retained session -------------------------------------------------------------


def test_duplicate_frames_and_resent_session_store_and_notify_once(mosquitto: Mosquitto, influxd: Influxd) -> None:
    db = "dups"
    config = aggregator_config(mosquitto, influxd, "agg-dup", db, sets={"rest_timeout_s": REST_S})
    members = {"rack-1": "alice", "rack-2": "bob"}
    s1, s2 = stream_with_tail("rack-1", 3), stream_with_tail("rack-2", 2)
    expected = reference(config, s1.frames, "alice") | reference(config, s2.frames, "bob")
    notes = Recorder(mosquitto.host, mosquitto.port, "gym/main/members/+/notifications")
    reps_seen = Recorder(mosquitto.host, mosquitto.port, "gym/main/nodes/+/reps")
    running = RunningAggregator(Aggregator(config))
    with closing_recorder(notes), closing_recorder(reps_seen):
        running.start()
        try:
            assert wait_until(running.agg.connected.is_set, 10)
            pub = Publisher(mosquitto.host, mosquitto.port)
            try:
                sessions = [(TOPICS.node(n, "session"), session_json(m)) for n, m in members.items()]
                pub.publish_all(sessions, retain=True)
                # rack-1: every frame twice in a row, and the retained session re-sent half way.
                half = len(s1.frames) // 2
                doubled = [f for f in s1.frames for _ in range(2)]
                pub.publish_frames(doubled[: 2 * half])
                pub.publish_all(sessions[:1], retain=True)
                pub.publish_frames(doubled[2 * half:])
                # rack-2: the whole stream, then the whole stream again (e.g. an edge re-sending its backlog).
                pub.publish_frames(s2.frames)
                pub.publish_all(sessions[1:], retain=True)
                pub.publish_frames(s2.frames)
            finally:
                pub.close()
            total = len(sessions) + 1 + len(doubled) + 1 + 2 * len(s2.frames)
            assert wait_until(lambda: running.messages() >= total, 20), running.agg.counters
            assert wait_until(lambda: len(stored_sets(influxd, db)) == 2, 20), stored_sets(influxd, db)
            assert wait_until(lambda: len([m for m in notes.messages if not m.retain]) >= 2, 10)
            assert wait_until(lambda: len(reps_seen.messages) >= len(expected), 10)
            time.sleep(0.5)  # a second notification, if any, would arrive now
            assert running.station("rack-1")["duplicates"] == len(s1.frames)
            assert running.station("rack-2")["duplicates"] == len(s2.frames)
        finally:
            assert running.stop() == 0

    rows = stored_reps(influxd, db)
    assert len(rows) == len(expected)
    assert set(rows) == expected
    sets = stored_sets(influxd, db)
    assert sorted((r["node"], r["member"], r["reps"]) for r in sets) == [("rack-1", "alice", 3), ("rack-2", "bob", 2)]

    live = [m for m in notes.messages if not m.retain]
    per_member = {member: [m.json() for m in live if m.topic == TOPICS.member_notifications(member)]
                  for member in members.values()}
    assert {k: len(v) for k, v in per_member.items()} == {"alice": 1, "bob": 1}, per_member
    assert per_member["alice"][0]["reps"] == 3 and per_member["bob"][0]["reps"] == 2
    published = sorted((m.json()["node"], m.json()["rep_index"]) for m in reps_seen.messages)
    assert published == sorted((node, idx) for node, idx, _, _ in expected)
