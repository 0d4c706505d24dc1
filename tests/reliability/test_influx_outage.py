"""InfluxDB outages through the whole aggregator (a real ``formcheck aggregator`` process and its worker).

* InfluxDB stopped for 30 s while three stations keep publishing in real time, and the aggregator SIGKILLed
  and restarted in the middle of it: nothing was acknowledged before it was stored (the broker redelivers
  what the killed aggregator had received, and no rep or set is announced while InfluxDB is down), nothing
  is lost (every frame, rep and set of an undisturbed run is stored), and reps and sets are written and
  announced in capture order once InfluxDB is back.
* The same with a small ``influx.buffer_max_points``: the documented overflow policy applies (frame points,
  best effort, are dropped oldest first; reps and sets never), and ``aggregator_stats.points_overflow`` says
  exactly how many frame points are missing.
* InfluxDB hung (SIGSTOP) while frames flood in: writes time out within ``influx.timeout_s`` (the stored
  ``aggregator_stats`` show the errors as they happened), the MQTT connection stays up (one retained
  ``online``, no reconnect) although the aggregator stops reading at Receive Maximum for longer than two
  keep-alives, its memory stays flat, and after SIGCONT everything lands.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from formcheck.local_services import Influxd, Mosquitto, start_influxd, start_mosquitto
from formcheck_aggregator.config import load_config
from formcheck_aggregator.station import Station
from formcheck_protocol.messages import FrameMessage
from tests.integration.frame_factory import (
    FRAME_MS,
    TOP,
    TOPICS,
    Publisher,
    frame,
    influx_rows,
    new_boot,
    now_ms,
    squat_stream,
)
from tests.integration.mqtt_helpers import Received, Recorder
from tests.reliability.test_delivery_guarantees import (
    _agg_env,
    _aggregator_online,
    _frames_sent,
    _kill_group,
    closing_recorder,
)
from tests.waiting import wait_until

DB = "formcheck"
REST_S = 2.0
STATIONS = ("rack-1", "rack-2", "rack-3")
OUTAGE_S = 30.0
# Room for everything the tests publish while the aggregator cannot acknowledge.
BROKER_EXTRA = "max_queued_messages 100000\nmax_queued_bytes 0"

Event = tuple[str, str, int]  # ("rep", set_id, rep_index) or ("set", set_id, reps)


# --- streams ---------------------------------------------------------------------------------------------------------


def segment(node: str, boot: str, seq0: int, ts0: int, reps: int, rest: int) -> list[FrameMessage]:
    """``reps`` clean squats (standing before and between), then ``rest`` standing frames."""
    frames = squat_stream(node, reps, ts0=ts0, boot=boot, seq0=seq0).frames if reps else []
    n = len(frames)
    return frames + [frame(node, boot, seq0 + n + i, ts0 + (n + i) * FRAME_MS, "standing", TOP) for i in range(rest)]


@dataclass
class Program:
    """One station's frames, built segment after segment (one boot, seq and capture time continuing)."""

    node: str
    ts0: int
    boot: str = field(default_factory=new_boot)
    frames: list[FrameMessage] = field(default_factory=list)

    def add(self, reps: int, rest: int) -> list[FrameMessage]:
        part = segment(self.node, self.boot, len(self.frames), self.ts0 + len(self.frames) * FRAME_MS, reps, rest)
        self.frames += part
        return part


def interleave(parts: Sequence[Sequence[FrameMessage]]) -> list[FrameMessage]:
    """Frames of several stations in capture-time order, as they would reach the broker."""
    return sorted((f for part in parts for f in part), key=lambda f: (f.ts, f.node))


def reference(frames: list[FrameMessage]) -> list[Event]:
    """What an undisturbed aggregator announces for one station, in order (same code, no I/O)."""
    config = load_config(None, {"sets": {"rest_timeout_s": REST_S}}, environ={})
    station = Station(frames[0].node, rep_config=config.reps, set_config=config.sets, grading=config.grading)
    events: list[Event] = []
    for f in frames:
        out = station.on_frame(f)
        events += [("rep", r.set_id, r.rep_index) for r in out.reps]
        events += [("set", s.set_id, s.reps) for s in out.sets]
    return events


def announced(rec: Recorder, node: str) -> list[Event]:
    """Reps and sets the aggregator published for ``node``, in arrival order."""
    reps, sets = TOPICS.node(node, "reps"), TOPICS.node(node, "sets")
    events: list[Event] = []
    for m in list(rec.messages):
        if m.topic in (reps, sets):
            body = m.json()
            events.append(("rep", body["set_id"], body["rep_index"]) if m.topic == reps
                          else ("set", body["set_id"], body["reps"]))
    return events


class PacedPublisher:
    """Publishes frames (QoS 1) on a thread at the pace of their capture times, as live cameras would."""

    def __init__(self, broker: Mosquitto, frames: list[FrameMessage]) -> None:
        self._frames = frames
        self._pub = Publisher(broker.host, broker.port)
        self.sent = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="paced-publisher", daemon=True)

    def start(self) -> PacedPublisher:
        self._thread.start()
        return self

    def _run(self) -> None:
        start = time.monotonic()
        ts0 = self._frames[0].ts
        try:
            while self.sent < len(self._frames):
                due = time.monotonic() - start
                batch: list[FrameMessage] = []
                while self.sent + len(batch) < len(self._frames):
                    f = self._frames[self.sent + len(batch)]
                    if (f.ts - ts0) / 1000 > due:
                        break
                    batch.append(f)
                if batch:
                    self._pub.publish_frames(batch)
                    self.sent += len(batch)
                time.sleep(0.05)
        except (TimeoutError, OSError, RuntimeError) as exc:  # reported by join()
            self.error = exc

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        self._pub.close()
        assert not self._thread.is_alive(), f"publisher still running after {timeout} s ({self.sent} sent)"
        assert self.error is None, f"publisher failed: {self.error!r}"


# --- the aggregator process ------------------------------------------------------------------------------------------


def start_aggregator(broker: Mosquitto, influxd: Influxd, log: Path, agg_id: str,
                     **options: str) -> subprocess.Popen[bytes]:
    """``formcheck aggregator`` (network process + worker process) in its own process group.

    ``options`` are ``FORMCHECK_AGG__*`` settings, e.g. ``INFLUX__BUFFER_MAX_POINTS="100"``.
    """
    env = {**_agg_env(agg_id), **{f"FORMCHECK_AGG__{key}": value for key, value in options.items()}}
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "formcheck.cli", "aggregator", "--broker", f"127.0.0.1:{broker.port}",
             "--influx", influxd.url],
            stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True,
        )


def stop_aggregator(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise AssertionError(f"aggregator did not stop on SIGTERM: {log.read_text()[-2000:]}") from None
    assert proc.returncode == 0, log.read_text()[-3000:]


@contextlib.contextmanager
def aggregators() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Every aggregator started in the block is SIGKILLed (with its worker) if still running at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                _kill_group(proc)


def wait_ready(broker: Mosquitto, influxd: Influxd, agg_id: str, log: Path) -> None:
    assert wait_until(lambda: any(r["name"] == DB for r in influxd.query("SHOW DATABASES")), 30), \
        log.read_text()[-2000:]
    assert wait_until(lambda: _aggregator_online(broker, agg_id), 20), log.read_text()[-2000:]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the aggregator's worker), MiB."""
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


# --- what is stored --------------------------------------------------------------------------------------------------


def stored_frames(influxd: Influxd) -> dict[str, set[int]]:
    rows = influx_rows(influxd, 'SELECT node, seq FROM "frames".frame', DB)
    out: dict[str, set[int]] = {}
    for r in rows:
        out.setdefault(r["node"], set()).add(int(r["seq"]))
    return out


def stored_events(influxd: Influxd, node: str) -> set[Event]:
    reps = influx_rows(influxd, f"SELECT set_id, rep_index FROM rep WHERE node = '{node}'", DB)
    sets = influx_rows(influxd, f"SELECT set_id, reps, complete FROM \"set\" WHERE node = '{node}'", DB)
    assert all(s["complete"] is True for s in sets), sets
    return ({("rep", r["set_id"], int(r["rep_index"])) for r in reps}
            | {("set", s["set_id"], int(s["reps"])) for s in sets})


def events_stored(influxd: Influxd, node: str, expected: list[Event]) -> bool:
    return stored_events(influxd, node) == set(expected)


def stats_rows(influxd: Influxd) -> list[dict[str, Any]]:
    return influx_rows(influxd, "SELECT * FROM aggregator_stats", DB)


def count_stored(influxd: Influxd) -> int:
    return sum(len(v) for v in stored_frames(influxd).values())


def during(messages: list[Received], start: float, end: float) -> list[str]:
    return [m.topic for m in messages if start < m.at < end and m.topic.rsplit("/", 1)[-1] in ("reps", "sets")]


# --- 5. InfluxDB stopped for 30 s, aggregator killed and restarted meanwhile -----------------------------------------


def test_influx_stopped_30s_with_aggregator_restart_loses_nothing(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path / "broker", extra_config=f"log_type debug\n{BROKER_EXTRA}")
    influxd = start_influxd(tmp_path / "influxd")
    log = tmp_path / "aggregator.log"
    agg_id = "agg-outage"
    client_id = f"formcheck-aggregator-main-{agg_id}"
    t0 = now_ms() - 300_000
    programs = {node: Program(node, t0 + 7 * i) for i, node in enumerate(STATIONS)}
    # Before the outage: one set of 2 reps that ends (rest timeout) and is stored.
    before = interleave([p.add(2, 120) for p in programs.values()])
    # During the outage (~30 s at 30 fps): a set of 3 reps ended by rest, the aggregator is killed and
    # restarted, then a set of 2 reps ended by rest, all while InfluxDB is down.
    first_half = [p.add(3, 150) for p in programs.values()]
    second_half = [p.add(2, 246) for p in programs.values()]
    kill_after = sum(len(x) for x in first_half)
    outage = interleave(first_half) + interleave(second_half)
    expected = {node: reference(p.frames) for node, p in programs.items()}
    assert all(sum(e[0] == "set" for e in ev) == 3 for ev in expected.values()), expected
    assert OUTAGE_S - 1 < (outage[-1].ts - outage[0].ts) / 1000 < OUTAGE_S + 1

    rec = Recorder(broker.host, broker.port, "gym/main/nodes/#")
    try:
        with closing_recorder(rec), aggregators() as procs:
            procs.append(start_aggregator(broker, influxd, log, agg_id))
            wait_ready(broker, influxd, agg_id, log)
            pub = Publisher(broker.host, broker.port)
            try:
                pub.publish_frames(before)
            finally:
                pub.close()
            assert wait_until(lambda: count_stored(influxd) == len(before), 30), log.read_text()[-2000:]
            assert wait_until(lambda: len(influx_rows(influxd, 'SELECT * FROM "set"', DB)) == len(STATIONS), 10)

            influxd.stop()  # SIGTERM: really stopped; restarted below on the same port and directory
            assert influxd.proc.returncode is not None
            down_at = time.monotonic()
            sent_before = _frames_sent(broker, client_id, 0)
            paced = PacedPublisher(broker, outage).start()
            assert wait_until(lambda: paced.sent >= kill_after, OUTAGE_S), paced.sent
            # The first aggregator has received the whole first half (the broker's debug log says so) ...
            assert wait_until(lambda: _frames_sent(broker, client_id, 0) - sent_before >= kill_after, 10)
            received = _frames_sent(broker, client_id, 0) - sent_before
            _kill_group(procs[0])  # the aggregator and its worker, mid-outage
            procs.append(start_aggregator(broker, influxd, log, agg_id))
            paced.join(OUTAGE_S + 10)
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))  # the outage lasts 30 s at least
            assert procs[1].poll() is None, log.read_text()[-3000:]
            influxd = start_influxd(influxd.workdir, port=influxd.port)
            up_at = time.monotonic()

            total = len(before) + len(outage)
            assert wait_until(lambda: count_stored(influxd) == total, 60), \
                f"{count_stored(influxd)} of {total} frames stored; {log.read_text()[-2000:]}"
            for node in STATIONS:
                assert wait_until(functools.partial(events_stored, influxd, node, expected[node]), 20), \
                    (node, sorted(stored_events(influxd, node) ^ set(expected[node])))
            assert wait_until(lambda: all(len(announced(rec, n)) == len(expected[n]) for n in STATIONS), 10)
            time.sleep(0.5)  # a duplicate announcement, if any, would arrive now
            stop_aggregator(procs[1], log)
            frames = stored_frames(influxd)
    finally:
        influxd.stop()
        broker.stop()

    print(f"outage {up_at - down_at:.1f} s; frames the killed aggregator had received: {received}; "
          f"redelivered (DUP): {_frames_sent(broker, client_id, 1)}")
    assert up_at - down_at >= OUTAGE_S
    # Nothing acknowledged early: what the killed aggregator held was redelivered to its successor ...
    assert _frames_sent(broker, client_id, 1) >= received, "the broker did not redeliver (DUP) what it had sent"
    # ... and nobody was told of a rep or set that was not stored yet.
    assert during(rec.messages, down_at + 1.0, up_at) == []
    # Nothing lost, nothing doubled, and announced in capture order.
    assert {n: sorted(s) for n, s in frames.items()} == \
        {n: list(range(len(p.frames))) for n, p in programs.items()}
    for node in STATIONS:
        assert announced(rec, node) == expected[node], node
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert "session resumed" in text


# --- 5b. the buffer limit exceeded during an outage ------------------------------------------------------------------


BUFFER_POINTS = 100


def test_buffer_limit_drops_oldest_frame_points_counted_reps_and_sets_kept(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path / "broker", extra_config=BROKER_EXTRA)
    influxd = start_influxd(tmp_path / "influxd")
    log = tmp_path / "aggregator.log"
    agg_id = "agg-overflow"
    t0 = now_ms() - 300_000
    programs = {node: Program(node, t0 + 7 * i) for i, node in enumerate(STATIONS)}
    # Paced like cameras even before the outage: a burst would overflow so small a buffer by itself.
    before = interleave([p.add(0, 45) for p in programs.values()])
    outage = interleave([p.add(2, 90) for p in programs.values()])  # ~10 s at 30 fps, 3 stations
    expected = {node: reference(p.frames) for node, p in programs.items()}
    order = [(f.node, f.seq) for f in before + outage]  # the order the aggregator receives them in
    assert len(outage) > 5 * BUFFER_POINTS

    rec = Recorder(broker.host, broker.port, "gym/main/nodes/+/+")
    try:
        with closing_recorder(rec), aggregators() as procs:
            procs.append(start_aggregator(broker, influxd, log, agg_id,
                                          INFLUX__BUFFER_MAX_POINTS=str(BUFFER_POINTS)))
            wait_ready(broker, influxd, agg_id, log)
            PacedPublisher(broker, before).start().join(10)
            assert wait_until(lambda: count_stored(influxd) == len(before), 30), log.read_text()[-2000:]

            influxd.stop()
            down_at = time.monotonic()
            paced = PacedPublisher(broker, outage).start()
            paced.join(30)
            influxd = start_influxd(influxd.workdir, port=influxd.port)
            up_at = time.monotonic()

            for node in STATIONS:
                assert wait_until(functools.partial(events_stored, influxd, node, expected[node]), 30), \
                    (node, sorted(stored_events(influxd, node) ^ set(expected[node])))

            def accounted() -> bool:
                overflow = max((int(r["points_overflow"]) for r in stats_rows(influxd)), default=0)
                return overflow + count_stored(influxd) == len(order)

            assert wait_until(accounted, 20), (count_stored(influxd), stats_rows(influxd)[-1:])
            assert wait_until(lambda: all(len(announced(rec, n)) == len(expected[n]) for n in STATIONS), 10)
            stop_aggregator(procs[0], log)
            frames = stored_frames(influxd)
            overflow = max(int(r["points_overflow"]) for r in stats_rows(influxd))
            buffer_peak = max(int(r["buffer"]) for r in stats_rows(influxd))
    finally:
        influxd.stop()
        broker.stop()

    missing = [i for i, (node, seq) in enumerate(order) if seq not in frames.get(node, set())]
    print(f"outage {up_at - down_at:.1f} s, {len(outage)} frames: {overflow} frame points dropped "
          f"(buffer limit {BUFFER_POINTS}, peak buffer {buffer_peak})")
    # The policy: frame points beyond the limit are dropped, oldest first, and counted exactly ...
    assert overflow == len(missing) > len(outage) - 2 * BUFFER_POINTS
    assert missing == list(range(missing[0], missing[0] + len(missing))), "dropped frames are not the oldest run"
    assert order[missing[0]] in [(f.node, f.seq) for f in outage[: BUFFER_POINTS]], "dropping began late"
    assert buffer_peak <= BUFFER_POINTS
    # ... reps and sets never: all stored, announced once each, in order, and none before it was stored.
    for node in STATIONS:
        assert announced(rec, node) == expected[node], node
    assert during(rec.messages, down_at + 1.0, up_at) == []
    assert "Traceback" not in log.read_text()


# --- 6. InfluxDB hung (SIGSTOP) while frames flood in ----------------------------------------------------------------


HANG_S = 15.0
WRITE_TIMEOUT_S = 1.0
KEEPALIVE_S = 2
RECEIVE_MAXIMUM = 500
FLOOD_STATIONS = 10
FLOOD_REPS = 22  # per station: ~2,000 frames, ~20,000 in all


def test_influx_hung_writes_time_out_mqtt_stays_up_memory_flat(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path / "broker", extra_config=BROKER_EXTRA)
    influxd = start_influxd(tmp_path / "influxd")
    log = tmp_path / "aggregator.log"
    agg_id = "agg-hung"
    t0 = now_ms() - 600_000
    warmup = Program("rack-warm", t0)
    warmup.add(1, 90)
    flood_programs = [Program(f"rack-{i:02d}", t0 + 7 * i) for i in range(FLOOD_STATIONS)]
    flood = interleave([p.add(FLOOD_REPS, 90) for p in flood_programs])
    expected = {p.node: reference(p.frames) for p in [warmup, *flood_programs]}
    status = Recorder(broker.host, broker.port, TOPICS.aggregator_status())
    samples: list[tuple[float, float]] = []  # (seconds since SIGSTOP, RSS MiB)
    try:
        with aggregators() as procs:
            procs.append(start_aggregator(
                broker, influxd, log, agg_id, MQTT__KEEPALIVE_S=str(KEEPALIVE_S),
                MQTT__RECEIVE_MAXIMUM=str(RECEIVE_MAXIMUM), INFLUX__TIMEOUT_S=str(WRITE_TIMEOUT_S),
            ))
            agg = procs[0]
            wait_ready(broker, influxd, agg_id, log)
            with closing_recorder(status):
                pub = Publisher(broker.host, broker.port)
                try:
                    pub.publish_frames(warmup.frames)
                    assert wait_until(lambda: count_stored(influxd) == len(warmup.frames), 30)
                    assert wait_until(lambda: len(stats_rows(influxd)) >= 2, 10)

                    influxd.pause()
                    stopped_at = time.time()
                    start = time.monotonic()
                    flooding = threading.Thread(target=pub.publish_frames, args=(flood, 60.0), daemon=True)
                    flooding.start()
                    while time.monotonic() - start < HANG_S:
                        samples.append((time.monotonic() - start, rss_mb(agg.pid)))
                        time.sleep(0.25)
                    flooding.join(30)
                    assert not flooding.is_alive(), "the flood was not accepted by the broker"
                finally:
                    influxd.resume()
                    resumed_at = time.time()
                    pub.close()
                assert agg.poll() is None, log.read_text()[-3000:]
                total = len(warmup.frames) + len(flood)
                assert wait_until(lambda: count_stored(influxd) == total, 90), \
                    f"{count_stored(influxd)} of {total} frames stored; {log.read_text()[-2000:]}"
                for node, events in expected.items():
                    assert wait_until(functools.partial(events_stored, influxd, node, events), 20), node
                online_after = _aggregator_online(broker, agg_id)
            stop_aggregator(agg, log)
            stats = sorted(stats_rows(influxd), key=lambda r: int(r["time"]))
    finally:
        influxd.stop()
        broker.stop()

    # Writes time out within the configured timeout, again and again, instead of hanging: the aggregator's
    # own stats points written during the hang (stored after SIGCONT) show the errors as they were counted.
    stopped_ms, resumed_ms = int(stopped_at * 1000), int(resumed_at * 1000)
    baseline = max(int(r["write_errors"]) for r in stats if int(r["time"]) < stopped_ms)
    hung = [(int(r["time"]) - stopped_ms, int(r["write_errors"]) - baseline) for r in stats
            if stopped_ms <= int(r["time"]) < resumed_ms]
    assert len(hung) >= HANG_S - 3, f"stats points missing during the hang: {hung}"
    first_error_s = min(t for t, errors in hung if errors > 0) / 1000
    # A write in flight at SIGSTOP needs up to flush interval + timeout; the stats point that shows it comes up to
    # one stats interval (1 s) later; 1 s more for a loaded machine. A write without a timeout would never end.
    assert first_error_s <= 0.1 + WRITE_TIMEOUT_S + 1.0 + 1.0, hung
    # Each attempt ends within the timeout, then waits at most retry_max_s (1 s) before the next one.
    assert hung[-1][1] >= (HANG_S - 3) / (WRITE_TIMEOUT_S + 1.0), hung
    # MQTT stayed up: the retained 'online' and nothing after it (a reconnect publishes 'online' again, a lost
    # connection the Will 'offline').
    assert [(m.retain, m.json()["state"]) for m in status.messages] == [(True, "online")], \
        [m.json() for m in status.messages]
    assert online_after
    # Memory flat while ~20,000 frames (~10 MB of payload) waited in the broker for it.
    settled = [rss for t, rss in samples if t >= 2.0]
    growth = max(settled) - settled[0]
    print(f"first write timeout counted {first_error_s:.2f} s after SIGSTOP; {hung[-1][1]} timed-out writes in "
          f"{HANG_S:.0f} s; aggregator RSS {samples[0][1]:.1f} -> {settled[0]:.1f} -> max {max(settled):.1f} MiB")
    assert growth < 10.0, samples
    assert "Traceback" not in log.read_text()


# --- issue 13 item 14: SIGTERM while InfluxDB is down ----------------------------------------------------------------


@pytest.mark.operations
def test_sigterm_while_influx_is_down_exits_within_5s_and_loses_nothing(tmp_path: Path) -> None:
    """Docker kills at 10 s: the aggregator must be gone well before, acknowledging only what it stored.

    Before the stop budget this took 11-16 s: a flush of 2 x influx.timeout_s, then a join of one more request
    timeout, while the worker process got 15 s."""
    broker = start_mosquitto(tmp_path / "broker", extra_config=f"log_type debug\n{BROKER_EXTRA}")
    influxd = start_influxd(tmp_path / "influxd")
    log = tmp_path / "aggregator.log"
    agg_id = "agg-sigterm"
    client_id = f"formcheck-aggregator-main-{agg_id}"
    program = Program("rack-9", now_ms() - 120_000)
    frames = program.add(2, 60)
    try:
        with aggregators() as procs:
            # The default request timeout (5 s), as in production: the old stop waited 2 x 5 s + 6 s.
            procs.append(start_aggregator(broker, influxd, log, agg_id, INFLUX__TIMEOUT_S="5"))
            wait_ready(broker, influxd, agg_id, log)
            # Hung, not gone: every write attempt waits its whole influx.timeout_s (a dead host, a full disk).
            os.kill(influxd.proc.pid, signal.SIGSTOP)
            sent_before = _frames_sent(broker, client_id, 0)
            pub = Publisher(broker.host, broker.port)
            try:
                pub.publish_frames(frames)
            finally:
                pub.close()
            # The aggregator holds them all, none storable.
            assert wait_until(lambda: _frames_sent(broker, client_id, 0) - sent_before >= len(frames), 10)
            time.sleep(1.0)  # its writer is now retrying against the dead InfluxDB
            started = time.monotonic()
            procs[0].terminate()
            procs[0].wait(timeout=30)
            took = time.monotonic() - started
            print(f"SIGTERM -> exit with InfluxDB down: {took:.2f} s")
            assert procs[0].returncode == 0, log.read_text()[-3000:]
            assert took <= 5.0, f"took {took:.1f} s to exit; {log.read_text()[-2000:]}"
            # Nothing it held was acknowledged: the broker sends every frame again (DUP) to the next run, which
            # stores them (a write the stopped one had in flight may land too: points are idempotent).
            os.kill(influxd.proc.pid, signal.SIGCONT)
            redelivered_before = _frames_sent(broker, client_id, 1)
            procs.append(start_aggregator(broker, influxd, log, agg_id))
            wait_ready(broker, influxd, agg_id, log)
            assert wait_until(lambda: _frames_sent(broker, client_id, 1) - redelivered_before >= len(frames), 20), \
                "the broker did not redeliver what the stopped aggregator held: it had acknowledged it"
            assert wait_until(lambda: count_stored(influxd) == len(frames), 60), \
                f"{count_stored(influxd)} of {len(frames)} frames stored; {log.read_text()[-2000:]}"
            stop_aggregator(procs[1], log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(influxd.proc.pid, signal.SIGCONT)
        influxd.stop()
        broker.stop()
    assert "Traceback" not in log.read_text()
