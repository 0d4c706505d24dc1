"""The whole stack on this machine for the soak and latency benchmarks.

A real Mosquitto and a real InfluxDB (``formcheck.local_services``), a real ``formcheck aggregator`` process
with its production defaults, edge nodes from ``bench/paced_publisher.py`` in a process of their own, and
MQTT subscribers that record what the aggregator publishes with the arrival time. Every wait is bounded,
and every process started here is stopped on the way out.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.paced_publisher import PREFIX, SITE
from formcheck.local_services import Influxd, Mosquitto, ServiceError, running_influxd, running_mosquitto
from formcheck_protocol.messages import SessionMessage
from formcheck_protocol.topics import Topics
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
TOPICS = Topics(site=SITE, prefix=PREFIX)
DATABASE = "formcheck"  # the aggregator's default
# $SYS every 5 s (default 10) so a 2-minute run still has a series of broker figures.
BROKER_EXTRA = "sys_interval 5"


def tree_rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` and its children (the aggregator's worker process), MiB; None once gone."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return round(total / 2**20, 1)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its live children so far; 0 once gone."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


@dataclass
class Arrival:
    topic: str
    payload: bytes
    at: float  # time.time() when paho handed it to us

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """Records every message on ``filters`` with its wall-clock arrival time (QoS 1, Receive Maximum set)."""

    broker: Mosquitto
    filters: tuple[str, ...]
    name: str
    messages: list[Arrival] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _client: mqtt.Client | None = None

    def start(self, timeout: float = 10.0) -> Subscriber:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{self.name}-{os.getpid()}",
                             protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        client.on_message = self._on_message
        client.on_subscribe = lambda *a: subscribed.set()
        client.on_connect = lambda c, *a: c.subscribe([(f, 1) for f in self.filters])
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        # Without Receive Maximum a paho MQTT 5 subscriber at QoS 1 is throttled (DESIGN.md, measured pitfalls).
        props.ReceiveMaximum = 1000
        client.connect(self.broker.host, self.broker.port, keepalive=10, properties=props)
        client.loop_start()
        self._client = client
        if not subscribed.wait(timeout):
            self.stop()
            raise TimeoutError(f"subscriber {self.name}: subscription not acknowledged within {timeout:.0f} s")
        return self

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        arrival = Arrival(message.topic, bytes(message.payload), time.time())
        with self._lock:
            self.messages.append(arrival)

    def snapshot(self) -> list[Arrival]:
        with self._lock:
            return list(self.messages)

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None


def check_in(broker: Mosquitto, members: dict[str, str], timeout: float = 10.0) -> None:
    """Retained check-ins (node → member), as ``formcheck checkin`` publishes them."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-checkin-{os.getpid()}", protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port, keepalive=10)
    client.loop_start()
    try:
        infos = [client.publish(TOPICS.node(node, "session"),
                                SessionMessage(member=member, exercise="squat", ts=int(time.time() * 1000)).to_json(),
                                qos=1, retain=True)
                 for node, member in members.items()]
        for info in infos:
            info.wait_for_publish(timeout)
    finally:
        client.disconnect()
        client.loop_stop()


def influx_rows(influxd: Influxd, q: str) -> list[dict[str, Any]]:
    """Rows of a query on the aggregator's database; [] while it does not exist yet."""
    try:
        return influxd.query(q, db=DATABASE)
    except ServiceError as exc:
        if "database not found" in str(exc):
            return []
        raise


@dataclass
class AggregatorProcess:
    """``formcheck aggregator`` as a gym runs it (production defaults unless ``env`` overrides them)."""

    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, broker: Mosquitto, influxd: Influxd, workdir: Path, env: dict[str, str] | None = None,
              timeout: float = 30.0) -> AggregatorProcess:
        log = workdir / "aggregator.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("FORMCHECK_AGG__")}
        environ.update(env or {})
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "formcheck.cli", "aggregator", "--broker", f"{broker.host}:{broker.port}",
                 "--influx", influxd.url],
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=environ,
            )
        agg = cls(proc, log)
        status = Subscriber(broker, (TOPICS.aggregator_status(),), "agg-status").start()
        try:
            ready = wait_until(lambda: proc.poll() is not None or any(
                m.payload and m.json().get("state") == "online" for m in status.snapshot()), timeout)
        finally:
            status.stop()
        if proc.poll() is not None or not ready:
            agg.stop()
            raise ServiceError(f"aggregator did not come online within {timeout:.0f} s: {agg.tail()}")
        # The database is created by the writer thread at start; queries before it exist would fail.
        if not wait_until(lambda: any(r.get("name") == DATABASE for r in influxd.query("SHOW DATABASES")), timeout):
            agg.stop()
            raise ServiceError(f"aggregator did not create database {DATABASE!r} within {timeout:.0f} s")
        return agg

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_mb(self) -> float | None:
        return tree_rss_mb(self.proc.pid)

    def tail(self, lines: int = 5) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines() if self.log.exists() else []
        return " | ".join(text[-lines:]) or "no output"

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (flushes, then exits 0); SIGKILL when it does not exit in time. Its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


@dataclass
class EdgeFleet:
    """``bench.paced_publisher`` in its own process; ``result()`` once it exited."""

    proc: subprocess.Popen[bytes]
    result_path: Path
    log: Path

    @classmethod
    def start(cls, broker: Mosquitto, workdir: Path, stations: int, seconds: float, t0_ms: int, seed: int,
              set_reps: int, record_late: bool = False) -> EdgeFleet:
        result = workdir / "edges.json"
        spec = {"host": broker.host, "port": broker.port, "stations": stations, "seconds": seconds,
                "t0_ms": t0_ms, "seed": seed, "set_reps": set_reps, "result": str(result),
                "record_late": record_late}
        spec_path = workdir / "edges.spec.json"
        spec_path.write_text(json.dumps(spec))
        log = workdir / "edges.log"
        with log.open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "bench.paced_publisher", str(spec_path)],
                                    stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        return cls(proc, result, log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float) -> dict[str, Any]:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.stop()
            raise TimeoutError(f"edge nodes did not finish within {timeout:.0f} s") from exc
        if self.proc.returncode != 0 or not self.result_path.exists():
            tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"edge nodes exited {self.proc.returncode}: {' | '.join(tail)}")
        result: dict[str, Any] = json.loads(self.result_path.read_text())
        return result

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@contextlib.contextmanager
def running_services() -> Iterator[tuple[Mosquitto, Influxd]]:
    """A fresh broker (with $SYS every 5 s) and a fresh influxd, both stopped and removed afterwards."""
    with running_mosquitto(BROKER_EXTRA) as broker, running_influxd() as influxd:
        yield broker, influxd


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def run_and_report(name: str, run: Callable[[], dict[str, Any]], report: Callable[[dict[str, Any]], None],
                   as_json: bool) -> tuple[dict[str, Any] | None, int]:
    """Run a benchmark and print its result (JSON or ``report``): (result, exit status so far).

    A run that could not be done (a service did not start, a process hung) is one line on stderr and status 2;
    an interrupted one 130; a result with ``errors`` 2. Every process was stopped by then.
    """
    try:
        result = run()
    except (ServiceError, TimeoutError, RuntimeError, OSError) as exc:
        print(f"{name} failed: {exc}", file=sys.stderr)
        return None, 2
    except KeyboardInterrupt:
        print(f"{name} interrupted (processes stopped)", file=sys.stderr)
        return None, 130
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
    return result, 2 if result["errors"] else 0
