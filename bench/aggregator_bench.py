"""Aggregator benchmark: the aggregator's message rate next to bare MQTT consumers, measured in one run.

A real Mosquitto and a real InfluxDB are started on loopback. ``--stations`` x
``--frames`` valid frame messages (squat reps and sets with known counts, see
``bench/load.py``) are published at QoS 1 by one ``mosquitto_pub -l`` per
station, then one ``stopped`` status per station (it closes the open set).
Three consumers receive the whole flood, one after another:

a. ``mosquitto_sub`` (C client, MQTT 5, QoS 1): the practical limit;
b. a bare paho client configured exactly like the aggregator (``make_client`` with
   ``manual_ack``, clean start off, session expiry, Receive Maximum 1000, QoS 1)
   that only counts and acknowledges;
c. the aggregator itself (``Aggregator.run`` in a thread): decode and validate,
   rep/set state machine, grading, InfluxDB writes, acknowledgement after the
   write; its rate runs from the first frame received to the acknowledgement
   of the last frame.

Fairness: every consumer has its own persistent session (clean start off,
session expiry 1 h) subscribed *before* anything is published, so the broker
queues the full flood for each of them (``max_queued_messages 0``). Each
consumer then connects alone and drains its backlog at its own pace: no
publisher competes for the CPUs during a measurement, nothing depends on how
fast the publishers were, and all three ask for the same flow control (Receive
Maximum 1000; ``mosquitto_sub`` through ``-D connect receive-maximum``). This is
also the aggregator's real worst case: the drain after a restart or an outage.
Consumers b and c run in fresh child processes, so the generator's objects in
this process do not burden their garbage collector and the aggregator's RSS is
its own. ``--rounds`` repeats publish + drain (fresh sessions, a fresh
InfluxDB database per round); the best rate of each consumer is kept, so a
burst of background load does not decide a ratio.

Reported per consumer: msgs/s, CPU time of the consumer process per message,
and the CPU Mosquitto and influxd spent meanwhile. For the aggregator also RSS
at start, 1/3, 2/3 and the end of the frames, the peak, the most messages it
held unacknowledged (Receive Maximum should bound that), its inbox and writer
buffer depths. ``--profile FILE`` records the aggregator of round 1 with
py-spy and prints where its threads spend the GIL.

Targets: aggregator / paho >= 0.8; aggregator / mosquitto_sub >= 0.5; RSS does
not grow with the number of messages: over the last third of the frames it
grows by at most ``RSS_GROWTH_MB`` in every round (a leak grows in every third;
warm-up such as the per-station duplicate window of ``sets.seen_window`` seq
numbers only in the first ones). ``--frames 12000 --set-reps 10 --rounds 1`` is
a soak run well past the warm-up, with rests between sets like a real gym.

Exit status: 0; 1 with ``--check`` when a target is missed; 2 when the run
itself is wrong whatever ``--check`` says (a consumer did not receive every
message, frames/reps/sets missing in InfluxDB or miscounted, a service did not
start); 130 when interrupted. Every child process is stopped on the way out.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.load import Load, create_session, generate, publish, publish_status
from formcheck.local_services import Influxd, Mosquitto, ServiceError, find_binary, running_influxd, running_mosquitto
from formcheck_aggregator.config import AggregatorMqtt

REPO = Path(__file__).resolve().parents[1]
PAHO_TARGET = 0.8
MOSQUITTO_SUB_TARGET = 0.5
RSS_GROWTH_MB = 5.0
# The aggregator's own default, so every consumer is compared at the product's setting.
RECEIVE_MAXIMUM: int = AggregatorMqtt().receive_maximum
SESSION_EXPIRY_S = 3600
CPU_SAMPLE_EVERY = 256  # consumers read their CPU time every this many messages, and at the last one
SITE = "main"
PREFIX = "gym"
CLIENT_IDS = {"mosquitto_sub": "bench-mosquitto-sub", "paho": "bench-paho", "aggregator": "bench-aggregator"}
# What the aggregator subscribes to (formcheck_aggregator.service._CONSUMED); its session must hold the same.
AGGREGATOR_KINDS = ("frames", "status", "session", "stats")

# Broker settings for the benchmark, appended to formcheck.local_services.mosquitto_config:
BROKER_EXTRA = "\n".join([
    # The default (1000) drops the excess of an offline persistent session silently; the backlogs here are the
    # whole flood. 0 = no limit (max_queued_bytes is 0 = no limit by default; stated to be explicit).
    "max_queued_messages 0",
    "max_queued_bytes 0",
    # Outgoing QoS 1 window for clients that send no Receive Maximum (MQTT 3.1.1, or MQTT 5 without the
    # property). Every consumer here sends Receive Maximum 1000, which takes precedence for MQTT 5 clients;
    # this only keeps a consumer that forgot it from being throttled to 20 (DESIGN.md, measured pitfalls).
    "max_inflight_messages 0",
    # The test config dumps the whole in-memory database every second; with ~3 x N queued messages that
    # would stall the broker's single thread periodically and favour whichever consumer drains last.
    "autosave_interval 3600",
])


# --- child processes -----------------------------------------------------------------------------------------------


def _setup_child_logging() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _tree() -> list[psutil.Process]:
    me = psutil.Process()
    return [me, *me.children(recursive=True)]


def rss_mb() -> float:
    """Resident memory of this process and its children (the aggregator's worker process), MiB.

    Not ``formcheck_edge.stats.rss_mb``: importing that module imports ``formcheck_edge.processor`` and with it
    OpenCV and NumPy (about +40 MB), which the aggregator process itself never loads.
    """
    total = 0
    for proc in _tree():
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return round(total / 2**20, 1)


def cpu_s() -> float:
    """CPU seconds of this process and its live children (the worker process included)."""
    total = 0.0
    for proc in _tree():
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def wait_progress(done: Callable[[], bool], progress: Callable[[], int], timeout: float, stall_s: float) -> str:
    """Wait until ``done()``; give up after ``timeout`` or when ``progress()`` has not moved for ``stall_s``.

    Returns "done", "timeout" or "stalled". Polls every 20 ms, so it is bounded in count and in time.
    """
    start = time.monotonic()
    deadline = start + timeout
    last, last_change = progress(), start
    while not done():
        now = time.monotonic()
        if now >= deadline:
            return "timeout"
        current = progress()
        if current != last:
            last, last_change = current, now
        elif now - last_change >= stall_s:
            return "stalled"
        time.sleep(0.02)
    return "done"


def _aggregator_config(spec: dict[str, Any]) -> Any:
    from formcheck_aggregator.config import load_config

    return load_config(None, {
        "site": SITE, "id": "bench",
        "mqtt": {"host": spec["host"], "port": spec["port"], "prefix": PREFIX, "client_id": spec["client_id"],
                 "session_expiry_s": SESSION_EXPIRY_S, "receive_maximum": RECEIVE_MAXIMUM},
        "influx": {"url": spec.get("influx_url", "http://127.0.0.1:8086"),
                   "database": spec.get("database", "formcheck")},
        "log_level": "WARNING", "worker_processes": spec.get("worker_processes", 0),
    }, environ={})


def child_paho(spec: dict[str, Any]) -> dict[str, Any]:
    """Scenario b: paho exactly as the aggregator configures it; count and acknowledge, nothing else."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    from formcheck_runtime.broker import connect_properties, make_client

    cfg = _aggregator_config(spec).mqtt
    expected: int = spec["expected"]
    state = {"n": 0, "first": 0.0, "last": 0.0, "cpu_first": 0.0, "cpu_last": 0.0}

    def on_connect(client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason: ReasonCode,
                   properties: Properties | None) -> None:
        if not reason.is_failure:
            client.subscribe(spec["filter"], qos=1)

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        if state["n"] == 0:
            state["first"] = now
            state["cpu_first"] = time.process_time()
        state["n"] += 1
        state["last"] = now
        if state["n"] % CPU_SAMPLE_EVERY == 0 or state["n"] == expected:
            state["cpu_last"] = time.process_time()  # a system call: not on every message
        client.ack(message.mid, message.qos)

    client = make_client(cfg, spec["client_id"], manual_ack=True)
    client.on_connect = on_connect
    client.on_message = on_message
    client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s, clean_start=False,
                         properties=connect_properties(cfg.session_expiry_s, cfg.receive_maximum))
    client.loop_start()
    try:
        outcome = wait_progress(lambda: state["n"] >= expected, lambda: int(state["n"]), spec["timeout"],
                                spec["stall_s"])
        time.sleep(0.2)  # anything beyond the expected count (redeliveries) would show up now
    finally:
        client.disconnect()
        client.loop_stop()
    return {"received": state["n"], "first": state["first"], "last": state["last"], "outcome": outcome,
            "cpu_s": state["cpu_last"] - state["cpu_first"]}


def child_aggregator(spec: dict[str, Any]) -> dict[str, Any]:
    """Scenario c: the real aggregator, in-process, with its full work; timings and RSS samples."""

    from formcheck_aggregator.core import Inbound
    from formcheck_aggregator.service import Aggregator
    from formcheck_runtime.paho_internals import RawMessage

    expected: int = spec["expected"]
    sets: int = spec["sets"]
    timeout: float = spec["timeout"]

    class TimedAggregator(Aggregator):
        """Adds timestamps and counters around the aggregator's own receive and ack; the work is unchanged."""

        def __init__(self, config: Any) -> None:
            self.first_frame_at: float | None = None
            self.last_frame_acked_at: float | None = None
            self.frames_acked = 0
            self.delivered = self.acked = self.redelivered = self.max_unacked = 0
            self.cpu_first = self.cpu_last = 0.0
            self.ninety_at: float | None = None  # 90 % of the frames acknowledged
            super().__init__(config)

        def _on_raw_messages(self, messages: list[RawMessage]) -> None:
            if self.first_frame_at is None and any(m[0].endswith("/frames") for m in messages):
                self.first_frame_at = time.monotonic()
                self.cpu_first = cpu_s()
            self.delivered += len(messages)
            self.redelivered += sum(1 for m in messages if m[4])
            # Unacknowledged QoS 1 messages the broker has sent us: Receive Maximum must bound this.
            self.max_unacked = max(self.max_unacked, self.delivered - self.acked)
            super()._on_raw_messages(messages)

        def _send_acks(self, items: list[Inbound]) -> None:
            # Counted before the PUBACKs leave, so the broker's next message can never find them uncounted.
            self.acked += len(items)
            super()._send_acks(items)
            for item in items:
                if item.topic.endswith("/frames"):
                    self.frames_acked += 1
                    self.last_frame_acked_at = time.monotonic()
                    if self.frames_acked == expected * 9 // 10:
                        self.ninety_at = self.last_frame_acked_at
                    if self.frames_acked % CPU_SAMPLE_EVERY == 0 or self.frames_acked == expected:
                        self.cpu_last = cpu_s()  # system calls: not on every message

    agg = TimedAggregator(_aggregator_config(spec))
    rss_start = rss_mb()
    # (time, frames acknowledged, RSS MB, inbox depth, writer buffer in points); 20 per second, bounded.
    # No ru_maxrss: Linux carries it over exec from the forked parent, so it would report the bench's own RSS.
    samples: deque[tuple[float, int, float, int, int]] = deque(maxlen=200_000)
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.wait(0.05):
            buffer = agg.snapshot().get("writer", {}).get("buffer", -1)
            samples.append((time.monotonic(), agg.frames_acked, rss_mb(), len(agg._inbox), buffer))

    stop = threading.Event()
    failure: list[str] = []

    def run() -> None:
        try:
            agg.run(stop)
        except Exception as exc:  # reported to the parent, which fails the run
            failure.append(f"{type(exc).__name__}: {exc}")
            logging.exception("aggregator failed")

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    worker = threading.Thread(target=run, name="aggregator", daemon=True)
    sampler.start()
    worker.start()
    stall_s: float = spec["stall_s"]
    outcome = wait_progress(lambda: agg.frames_acked >= expected or not worker.is_alive(),
                            lambda: agg.frames_acked, timeout, stall_s)
    if outcome == "done" and agg.frames_acked < expected:
        outcome = "aggregator thread ended"
    rss_end = rss_mb()
    # The 'stopped' status messages queued after the frames close one set per station.
    wait_progress(lambda: agg.counters["sets"] >= sets or not worker.is_alive(),
                  lambda: agg.counters["messages"], stall_s, stall_s)
    stop.set()
    worker.join(agg.config.influx.timeout_s * 2 + 10)
    stop_sampling.set()
    sampler.join(5)
    totals: dict[str, int] = {}
    snapshot = agg.snapshot()  # the worker's final report, sent when it closed
    totals.update(snapshot.get("stations", {}))
    writer = snapshot.get("writer", {})
    return {
        "first": agg.first_frame_at or 0.0, "last": agg.last_frame_acked_at or 0.0, "outcome": outcome,
        "cpu_s": agg.cpu_last - agg.cpu_first,
        # Without the tail: the last partial batch waits up to influx.flush_interval_s before it is written.
        "rate_first_90pct": ((expected * 9 // 10 - 1) / (agg.ninety_at - agg.first_frame_at)
                             if agg.ninety_at and agg.first_frame_at and agg.ninety_at > agg.first_frame_at else 0.0),
        "frames_acked": agg.frames_acked, "counters": dict(agg.counters), "invalid": snapshot.get("invalid", {}),
        "stations": totals, "inbox_dropped": agg._inbox.dropped, "delivered": agg.delivered,
        "redelivered": agg.redelivered, "max_unacked": agg.max_unacked,
        "writer": {"points_written": writer.get("points_written", 0), "rejected": writer.get("rejected", 0),
                   "overflow": writer.get("overflow", 0), "write_errors": writer.get("write_errors", 0)},
        "rss_start": rss_start, "rss_end": rss_end,
        "samples": list(samples), "failure": failure, "worker_alive": worker.is_alive(),
    }


def child_main(kind: str, spec_path: str) -> int:
    _setup_child_logging()
    spec = json.loads(Path(spec_path).read_text())
    result = child_paho(spec) if kind == "paho" else child_aggregator(spec)
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


# --- scenarios (parent) --------------------------------------------------------------------------------------------


@dataclass
class Measured:
    name: str
    received: int
    seconds: float
    cpu_s: float = 0.0  # CPU time of the consumer process (all threads) over the measured window
    broker_cpu_s: float = 0.0  # CPU time Mosquitto used during the scenario
    influxd_cpu_s: float = 0.0  # CPU time influxd used during the scenario

    @property
    def cpu_us_per_msg(self) -> float:
        return self.cpu_s / self.received * 1e6 if self.received else 0.0

    @property
    def rate(self) -> float:
        # Messages after the first, over the time from the first to the last: a receive rate, not startup.
        return (self.received - 1) / self.seconds if self.seconds > 0 and self.received > 1 else 0.0


class ServiceCpu:
    """CPU seconds Mosquitto and influxd use while one scenario runs (start-up and shutdown of the consumer too)."""

    def __init__(self, broker_pid: int, influxd_pid: int) -> None:
        self._procs = (psutil.Process(broker_pid), psutil.Process(influxd_pid))
        self._start = self._now()

    def _now(self) -> tuple[float, float]:
        broker, influxd = (p.cpu_times() for p in self._procs)
        return broker.user + broker.system, influxd.user + influxd.system

    def reset(self) -> None:
        self._start = self._now()

    def measure(self, measured: Measured) -> Measured:
        now = self._now()
        measured.broker_cpu_s = now[0] - self._start[0]
        measured.influxd_cpu_s = now[1] - self._start[1]
        return measured


class Processes:
    """Every child we start; all of them are killed on the way out, whatever happened."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(cmd, **kwargs)
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


def _wait(proc: subprocess.Popen[bytes], what: str, timeout: float, log: Path, check: bool = True) -> None:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.wait(timeout=5)
        raise TimeoutError(f"{what} did not finish within {timeout:.0f} s; see {log}") from exc
    if check and proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"{what} exited with status {proc.returncode}:\n{tail}")


def run_mosquitto_sub(broker: Mosquitto, workdir: Path, expected: int, timeout: float,
                      procs: Processes) -> Measured:
    out, err = workdir / "mosquitto_sub.out", workdir / "mosquitto_sub.err"
    cmd = [find_binary("mosquitto_sub"), "-h", broker.host, "-p", str(broker.port), "-q", "1", "-V", "mqttv5",
           "-c", "-i", CLIENT_IDS["mosquitto_sub"], "-x", str(SESSION_EXPIRY_S),
           "-D", "connect", "receive-maximum", str(RECEIVE_MAXIMUM),
           "-t", f"{PREFIX}/{SITE}/nodes/+/frames", "-C", str(expected), "-W", str(max(1, int(timeout))), "-F", "%U"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = procs.start(cmd, stdout=stdout, stderr=stderr)
        # -C/-W end it; a shortfall (timeout, non-zero status) shows up as a count error in the report.
        _wait(proc, "mosquitto_sub", timeout + 30, err, check=False)
    stamps = out.read_text().split()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Reaped children in between: only mosquitto_sub. Its whole life, start-up included (a C client: negligible).
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if len(stamps) < 2:
        return Measured("mosquitto_sub", len(stamps), 0.0, cpu)
    return Measured("mosquitto_sub", len(stamps), float(stamps[-1]) - float(stamps[0]), cpu)


def run_child(kind: str, spec: dict[str, Any], workdir: Path, timeout: float, stall_s: float, procs: Processes,
              profile: Path | None = None) -> dict[str, Any]:
    spec_path, result_path = workdir / f"{kind}.spec.json", workdir / f"{kind}.result.json"
    log = workdir / f"{kind}.log"
    spec = {**spec, "timeout": timeout, "stall_s": stall_s, "result": str(result_path)}
    spec_path.write_text(json.dumps(spec))
    cmd = [sys.executable, "-m", "bench.aggregator_bench", "--child", kind, str(spec_path)]
    if profile is not None:
        cmd = [_py_spy(), "record", "--threads", "--subprocesses", "--gil", "--rate", "250", "--format", "raw",
               "--output", str(profile), "--", *cmd]
    with log.open("wb") as stderr:
        proc = procs.start(cmd, cwd=REPO, stdout=stderr, stderr=stderr, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        # The child has its own deadline; this one only catches a hang on the way out.
        _wait(proc, f"{kind} child", timeout + 60, log)
    result: dict[str, Any] = json.loads(result_path.read_text())
    result["log_tail"] = log.read_text(errors="replace")[-1500:]
    return result


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).is_file():
        raise RuntimeError("--profile needs py-spy (pip install py-spy)")
    return found


def summarize_profile(path: Path, top: int = 12) -> dict[str, Any]:
    """Per thread: share of samples, and the functions with the most self and inclusive samples.

    Reads py-spy's raw output with ``--subprocesses`` (``process PID:"cmd";...;thread (tid): name;frame;... count``
    per line); threads are named after their process: ``worker`` (spawned) or ``network``.
    """
    threads: Counter[str] = Counter()
    own: dict[str, Counter[str]] = defaultdict(Counter)
    inclusive: dict[str, Counter[str]] = defaultdict(Counter)
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        processes = [p for p in parts if p.startswith("process ")]
        heads = [p for p in parts if p.startswith("thread (")]
        if not heads:
            continue
        # 'func (file.py:123)' -> 'func (file.py)': one entry per function, whatever line was running.
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in parts if not frame.startswith(("process ", "thread ("))]
        name = re.sub(r"^thread \(\d+\):?\s*", "", heads[0]) or heads[0]
        name = re.sub(r"-bench-aggregator$", "", name)
        role = "worker" if processes and "spawn_main" in processes[-1] else "network"
        thread = f"{role} {name}"
        threads[thread] += count
        if frames:
            own[thread][frames[-1]] += count
        for frame in set(frames):
            inclusive[thread][frame] += count
    total = sum(threads.values()) or 1
    out: dict[str, Any] = {}
    for thread, count in threads.most_common():
        wrappers = {f for f, n in inclusive[thread].items() if n >= 0.95 * count}
        out[thread] = {
            "share": round(count / total, 3),
            "self": [(f, round(n / count, 3)) for f, n in own[thread].most_common(top)],
            "inclusive": [(f, round(n / count, 3)) for f, n in inclusive[thread].most_common(top + len(wrappers))
                          if f not in wrappers][:top],
        }
    return out


def _rss_at(samples: list[list[float]], acked: int) -> float | None:
    """RSS of the first sample taken once ``acked`` frames were acknowledged."""
    for _, done, rss, *_ in samples:
        if done >= acked:
            return rss
    return None


def _influx_count(influx: Influxd, query: str, database: str) -> int:
    rows = influx.query(query, db=database)
    if not rows:
        return 0
    return int(next(v for k, v in rows[0].items() if k != "time"))


@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="formcheck-aggbench-"))
    try:
        yield path
    finally:
        if keep:
            print(f"work files kept in {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


@dataclass
class Round:
    """One round: the flood published once, drained by each consumer in turn."""

    index: int
    publish_rate: float
    sub: Measured
    paho: Measured
    paho_outcome: str
    agg: Measured
    agg_result: dict[str, Any]
    stored: dict[str, int]


def run_round(index: int, args: argparse.Namespace, load: Load, broker: Mosquitto, influx: Influxd, workdir: Path,
              timeout: float, procs: Processes, note: Callable[[str], None]) -> Round:
    expected = load.frames
    topics = load.topics
    frames_filter = topics.all_nodes("frames")
    # Fresh sessions (clean start) for every consumer, subscribed before anything is published.
    create_session(broker.host, broker.port, CLIENT_IDS["mosquitto_sub"], [frames_filter], expiry_s=SESSION_EXPIRY_S)
    create_session(broker.host, broker.port, CLIENT_IDS["paho"], [frames_filter], expiry_s=SESSION_EXPIRY_S)
    create_session(broker.host, broker.port, CLIENT_IDS["aggregator"], [topics.all_nodes(k) for k in AGGREGATOR_KINDS],
                   expiry_s=SESSION_EXPIRY_S)
    published = publish(load, broker.host, broker.port, timeout)
    publish_status(load, broker.host, broker.port, "stopped", timeout=30)
    note(f"round {index + 1}: published {published.messages} frames in {published.seconds:.2f} s "
         f"({published.rate:.0f} msgs/s, {len(load.stations)} x mosquitto_pub -l)")
    rdir = workdir / f"round{index + 1}"
    rdir.mkdir()
    services = ServiceCpu(broker.pid, influx.pid)
    sub = services.measure(run_mosquitto_sub(broker, rdir, expected, timeout, procs))
    note(f"  a. mosquitto_sub: {sub.received} in {sub.seconds:.3f} s = {sub.rate:.0f} msgs/s")
    # A database per round: what one aggregator run stored is counted on its own.
    database = f"bench{index + 1}"
    base = {"host": broker.host, "port": broker.port, "expected": expected, "sets": load.sets,
            "filter": frames_filter, "influx_url": influx.url, "database": database,
            "worker_processes": args.worker_processes}
    services.reset()
    paho_result = run_child("paho", {**base, "client_id": CLIENT_IDS["paho"]}, rdir, timeout, args.stall, procs)
    paho = services.measure(Measured("paho", paho_result["received"], paho_result["last"] - paho_result["first"],
                                     paho_result["cpu_s"]))
    note(f"  b. paho: {paho.received} in {paho.seconds:.3f} s = {paho.rate:.0f} msgs/s")
    services.reset()
    profile = args.profile if index == 0 else None
    agg_result = run_child("aggregator", {**base, "client_id": CLIENT_IDS["aggregator"]}, rdir, timeout, args.stall,
                           procs, profile=profile)
    agg = services.measure(Measured("aggregator", agg_result["frames_acked"],
                                    max(0.0, agg_result["last"] - agg_result["first"]), agg_result["cpu_s"]))
    note(f"  c. aggregator: {agg.received} in {agg.seconds:.3f} s = {agg.rate:.0f} msgs/s"
         + (" (under py-spy)" if profile else ""))
    stored = {
        # Frame points are sampled (influx.frame_points_per_s); each counts the frames it stands for.
        "frames": _influx_count(influx, 'SELECT sum("frames") FROM "frames"."frame"', database),
        "frame_points": _influx_count(influx, 'SELECT count(bad_p) FROM "frames"."frame"', database),
        "reps": _influx_count(influx, 'SELECT count(score) FROM "rep"', database),
        "sets": _influx_count(influx, 'SELECT count(reps) FROM "set"', database),
        "set_reps": _influx_count(influx, 'SELECT sum(reps) FROM "set"', database),
    }
    return Round(index, published.rate, sub, paho, paho_result["outcome"], agg, agg_result, stored)


def run(args: argparse.Namespace) -> dict[str, Any]:
    expected = args.stations * args.frames
    timeout = args.timeout or max(60.0, expected / 200)
    procs = Processes()

    def note(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    rounds: list[Round] = []
    with _workdir(args.keep) as workdir, running_mosquitto(extra_config=BROKER_EXTRA) as broker, \
            running_influxd() as influx:
        try:
            load = generate(workdir / "load", args.stations, args.frames, site=SITE, prefix=PREFIX,
                            set_reps=args.set_reps)
            note(f"generated {load.frames} frames ({load.reps} reps, {load.sets} sets) in {load.seconds:.1f} s; "
                 f"broker :{broker.port}, influxd :{influx.port}")
            for index in range(args.rounds):
                rounds.append(run_round(index, args, load, broker, influx, workdir, timeout, procs, note))
        finally:
            procs.close()
        mosquitto_version = subprocess.run([find_binary("mosquitto"), "-h"], capture_output=True, text=True,
                                           timeout=10, check=False).stdout.splitlines()[0:1]
        influx_version = influx.version
    result = _report(args, load, rounds, (mosquitto_version or ["mosquitto"])[0], influx_version)
    if args.profile is not None and args.profile.exists():
        result["profile"] = {"file": str(args.profile), "threads": summarize_profile(args.profile)}
    return result


def _check_round(load: Load, rnd: Round) -> dict[str, Any]:
    """Correctness of one round, and the aggregator's memory and flow figures."""
    expected = load.frames
    agg_result = rnd.agg_result
    samples = agg_result["samples"]
    rss = {
        "start": agg_result["rss_start"],
        "third": _rss_at(samples, expected // 3),
        "two_thirds": _rss_at(samples, 2 * expected // 3),
        "end": agg_result["rss_end"],
        "peak": max([agg_result["rss_end"], *(row[2] for row in samples)]),  # sampled every 50 ms
    }
    # A leak grows in every third; warm-up (duplicate windows, set tables) shows in the first ones only.
    growth = None if rss["two_thirds"] is None else round(rss["end"] - rss["two_thirds"], 1)
    counters = agg_result["counters"]
    station_totals = agg_result["stations"]
    stored = rnd.stored
    errors: list[str] = []

    def expect(what: str, got: object, want: object) -> None:
        if got != want:
            errors.append(f"{what}: {got} (expected {want})")

    expect("mosquitto_sub received", rnd.sub.received, expected)
    expect("paho received", rnd.paho.received, expected)
    expect("aggregator frames acknowledged", rnd.agg.received, expected)
    expect("frames stored in InfluxDB (sum of the points' frames)", stored["frames"], expected)
    expect("reps found by the aggregator", counters.get("reps", 0), load.reps)
    expect("reps stored in InfluxDB", stored["reps"], load.reps)
    expect("sets found by the aggregator", counters.get("sets", 0), load.sets)
    expect("sets stored in InfluxDB", stored["sets"], load.sets)
    expect("reps in stored sets", stored["set_reps"], load.reps)
    expect("invalid messages", sum(agg_result["invalid"].values()), 0)
    for key in ("duplicates", "gaps", "late"):
        expect(f"aggregator {key}", station_totals.get(key, 0), 0)
    expect("aggregator inbox drops", agg_result["inbox_dropped"], 0)
    expect("InfluxDB points rejected or dropped",
           agg_result["writer"]["rejected"] + agg_result["writer"]["overflow"], 0)
    for name, outcome in (("paho", rnd.paho_outcome), ("aggregator", agg_result["outcome"])):
        if outcome != "done":
            errors.append(f"{name} did not receive everything: {outcome}")
    if agg_result["failure"]:
        errors.append(f"aggregator failed: {agg_result['failure']}")
    return {
        "round": rnd.index + 1,
        "publish_msgs_per_s": round(rnd.publish_rate, 1),
        "msgs_per_s": {m.name: round(m.rate, 1) for m in (rnd.sub, rnd.paho, rnd.agg)},
        "aggregator_msgs_per_s_first_90pct": round(agg_result["rate_first_90pct"], 1),
        "seconds": {m.name: round(m.seconds, 3) for m in (rnd.sub, rnd.paho, rnd.agg)},
        "cpu_us_per_msg": {m.name: round(m.cpu_us_per_msg, 1) for m in (rnd.sub, rnd.paho, rnd.agg)},
        "broker_cpu_s": {m.name: round(m.broker_cpu_s, 2) for m in (rnd.sub, rnd.paho, rnd.agg)},
        "influxd_cpu_s": {m.name: round(m.influxd_cpu_s, 2) for m in (rnd.sub, rnd.paho, rnd.agg)},
        "aggregator_rss_mb": {**rss, "growth_last_third": growth},
        "aggregator": {"reps": counters.get("reps", 0), "sets": counters.get("sets", 0),
                       "messages": counters.get("messages", 0), "invalid": agg_result["invalid"],
                       "stations": station_totals, "inbox_dropped": agg_result["inbox_dropped"],
                       "delivered": agg_result["delivered"], "redelivered": agg_result["redelivered"],
                       "max_unacked": agg_result["max_unacked"],
                       "max_inbox": max((int(row[3]) for row in samples), default=0),
                       "max_writer_buffer": max((int(row[4]) for row in samples), default=0),
                       "writer": agg_result["writer"]},
        "stored": stored,
        "errors": errors,
    }


CONSUMERS = ("mosquitto_sub", "paho", "aggregator")


def _rate_of(name: str, checked: dict[str, Any]) -> float:
    rate: float = checked["msgs_per_s"][name]
    return rate


def _report(args: argparse.Namespace, load: Load, rounds: list[Round], mosquitto_version: str,
            influx_version: str) -> dict[str, Any]:
    checked = [_check_round(load, rnd) for rnd in rounds]
    # Best of the rounds per consumer, so a burst of background load does not decide a ratio.
    best = {name: max(checked, key=functools.partial(_rate_of, name)) for name in CONSUMERS}
    rates = {name: best[name]["msgs_per_s"][name] for name in CONSUMERS}
    ratio_paho = rates["aggregator"] / rates["paho"] if rates["paho"] else 0.0
    ratio_sub = rates["aggregator"] / rates["mosquitto_sub"] if rates["mosquitto_sub"] else 0.0
    growths = [c["aggregator_rss_mb"]["growth_last_third"] for c in checked]
    worst_growth = None if any(g is None for g in growths) else max(growths)
    max_unacked = max(c["aggregator"]["max_unacked"] for c in checked)
    warnings: list[str] = []
    # Mosquitto 2.0.11 does not hold to a client's Receive Maximum while it drains a queued backlog: each PUBACK
    # can move up to Receive Maximum queued messages into flight. The aggregator trusts the broker here.
    if max_unacked > RECEIVE_MAXIMUM:
        warnings.append(
            f"the broker sent the aggregator up to {max_unacked} messages it had not acknowledged yet, more than its "
            f"Receive Maximum {RECEIVE_MAXIMUM} (its inbox holds {2 * RECEIVE_MAXIMUM + 64}, then drops)")
    return {
        "stations": len(load.stations), "frames_per_station": args.frames, "messages": load.frames,
        "payload_bytes_mean": round(load.payload_bytes / load.frames, 1), "reps_generated": load.reps,
        "sets_generated": load.sets, "rounds": len(rounds),
        "broker": mosquitto_version, "influxdb": influx_version, "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "method": "each consumer drains its own persistent session, created before publishing; best of the rounds",
        "msgs_per_s": rates,
        "aggregator_msgs_per_s_first_90pct": max(c["aggregator_msgs_per_s_first_90pct"] for c in checked),
        "best_round": {name: best[name]["round"] for name in CONSUMERS},
        "seconds": {name: best[name]["seconds"][name] for name in CONSUMERS},
        "cpu_us_per_msg": {name: best[name]["cpu_us_per_msg"][name] for name in CONSUMERS},
        "broker_cpu_s": {name: best[name]["broker_cpu_s"][name] for name in CONSUMERS},
        "influxd_cpu_s": {name: best[name]["influxd_cpu_s"][name] for name in CONSUMERS},
        "ratio": {"aggregator/paho": round(ratio_paho, 3), "aggregator/mosquitto_sub": round(ratio_sub, 3)},
        "target": {"aggregator/paho": PAHO_TARGET, "aggregator/mosquitto_sub": MOSQUITTO_SUB_TARGET,
                   "rss_growth_mb": RSS_GROWTH_MB},
        "met": {
            "aggregator/paho": ratio_paho >= PAHO_TARGET,
            "aggregator/mosquitto_sub": ratio_sub >= MOSQUITTO_SUB_TARGET,
            "rss_growth": worst_growth is not None and worst_growth <= RSS_GROWTH_MB,
        },
        "worst_rss_growth_mb": worst_growth,
        "per_round": checked,
        "warnings": warnings,
        "errors": [f"round {c['round']}: {e}" for c in checked for e in c["errors"]],
    }


def print_table(r: dict[str, Any]) -> None:
    def ok(key: str) -> str:
        return "OK" if r["met"][key] else "MISSED"

    def mb(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    rates = r["msgs_per_s"]
    print(f"aggregator benchmark: {r['stations']} stations x {r['frames_per_station']} frames = {r['messages']} "
          f"QoS 1 messages ({r['payload_bytes_mean']:.0f} B each, {r['reps_generated']} reps in "
          f"{r['sets_generated']} sets), {r['broker']}, InfluxDB {r['influxdb']}, {r['cpus']} CPUs, load average "
          f"{r['load_average'][0]:.1f}")
    print(f"method: each consumer has its own persistent session, created before the flood is published, and drains "
          f"it alone; measured from its first message to its last (aggregator: to the ack of the last frame, sent "
          f"after its InfluxDB write); Receive Maximum {RECEIVE_MAXIMUM} for all; best of {r['rounds']} round(s)")
    print()
    print(f"{'consumer':<58}{'msgs/s':>9}{'seconds':>9}{'CPU us/msg':>12}{'broker CPU s':>14}{'influxd CPU s':>15}")
    labels = {
        "mosquitto_sub": "a. mosquitto_sub (C client, MQTT 5, QoS 1)",
        "paho": "b. paho like the aggregator (manual ack), count + ack only",
        "aggregator": "c. aggregator (decode, reps, grading, InfluxDB, ack)",
    }
    for key, label in labels.items():
        print(f"{label:<58}{rates[key]:>9.0f}{r['seconds'][key]:>9.3f}{r['cpu_us_per_msg'][key]:>12.1f}"
              f"{r['broker_cpu_s'][key]:>14.2f}{r['influxd_cpu_s'][key]:>15.2f}")
    print(f"(aggregator over its first 90 % of frames, without the final flush interval: "
          f"{r['aggregator_msgs_per_s_first_90pct']:.0f} msgs/s)")
    print("(b uses paho's stock receive path; the aggregator's client parses PUBLISH packets itself and batches "
          "PUBACKs: runtime/formcheck_runtime/paho_internals.py)")
    if r["rounds"] > 1:
        per = "; ".join(f"{key} " + "/".join(f"{c['msgs_per_s'][key]:.0f}" for c in r["per_round"])
                        for key in labels)
        print(f"msgs/s per round: {per}")
    print()
    ratio = r["ratio"]
    print(f"{'aggregator / paho':<34}{ratio['aggregator/paho']:>7.3f}   target >= {PAHO_TARGET}   "
          f"{ok('aggregator/paho')}")
    print(f"{'aggregator / mosquitto_sub':<34}{ratio['aggregator/mosquitto_sub']:>7.3f}   target >= "
          f"{MOSQUITTO_SUB_TARGET}   {ok('aggregator/mosquitto_sub')}")
    print(f"{'aggregator RSS growth 2/3 -> end':<34}{mb(r['worst_rss_growth_mb']):>7} MB   target <= "
          f"{RSS_GROWTH_MB:.0f} MB  {ok('rss_growth')}   (worst round)")
    for c in r["per_round"]:
        m, a, s = c["aggregator_rss_mb"], c["aggregator"], c["stored"]
        print(f"round {c['round']}: aggregator RSS MB start {mb(m['start'])}, 1/3 {mb(m['third'])}, "
              f"2/3 {mb(m['two_thirds'])}, end {mb(m['end'])}, peak {mb(m['peak'])}")
        print(f"         stored frames {s['frames']}/{r['messages']} in {s['frame_points']} points, "
              f"reps {s['reps']}/{r['reps_generated']}, sets "
              f"{s['sets']}/{r['sets_generated']}; found reps {a['reps']}, sets {a['sets']}; invalid "
              f"{sum(a['invalid'].values())}, duplicates {a['stations'].get('duplicates', 0)}, gaps "
              f"{a['stations'].get('gaps', 0)}, inbox drops {a['inbox_dropped']}")
        print(f"         max unacked {a['max_unacked']} (Receive Maximum {RECEIVE_MAXIMUM}), max inbox "
              f"{a['max_inbox']}, max writer buffer {a['max_writer_buffer']} points, "
              f"{a['writer']['write_errors']} write errors")
    if "profile" in r:
        print(f"\nprofile of the aggregator processes in round 1 (py-spy, GIL-holding samples): {r['profile']['file']}")
        for thread, info in r["profile"]["threads"].items():
            if info["share"] < 0.02:
                continue
            print(f"  thread {thread}: {100 * info['share']:.0f}% of samples")
            print("    self:      " + "; ".join(f"{f} {100 * p:.1f}%" for f, p in info["self"][:8]))
            print("    inclusive: " + "; ".join(f"{f} {100 * p:.1f}%" for f, p in info["inclusive"][:8]))
    for warning in r["warnings"]:
        print(f"WARNING: {warning}")
    for error in r["errors"]:
        print(f"ERROR: {error}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 3 and argv[0] == "--child":
        return child_main(argv[1], argv[2])
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stations", type=int, default=20, help="stations (one publisher each); default 20")
    parser.add_argument("--frames", type=int, default=1500, help="frames per station; default 1500")
    parser.add_argument("--set-reps", type=int, default=0, metavar="K",
                        help="reps per set, with a 50 s rest between sets (default 0: one set per station)")
    parser.add_argument("--timeout", type=float, default=0.0,
                        help="seconds allowed per step (default max(60, messages / 200))")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds (publish, then each consumer drains it); the best rate of each consumer is "
                        "kept (default 3)")
    parser.add_argument("--stall", type=float, default=15.0,
                        help="a consumer that makes no progress for this many seconds is stopped (default 15)")
    parser.add_argument("--worker-processes", type=int, default=0, metavar="N",
                        help="the aggregator's worker_processes (default 0: the aggregator default: cores - 1, 1 to 4)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="record the aggregator of round 1 with py-spy (raw collapsed stacks) into FILE")
    parser.add_argument("--keep", action="store_true", help="keep the generated files and child logs")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.stations < 1 or args.frames < 100 or args.rounds < 1:
        parser.error("need at least 1 station, 100 frames per station and 1 round")
    try:
        result = run(args)
    except (ServiceError, TimeoutError, RuntimeError, OSError) as exc:
        print(f"aggregator benchmark failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aggregator benchmark interrupted (processes stopped)", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    if result["errors"]:
        return 2
    return 1 if args.check and not all(result["met"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
