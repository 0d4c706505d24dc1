"""Synthetic, fast frame streams and a QoS 1 publisher for the aggregator's integration tests.

A squat stream at 30 fps looks like the edge node's output: the phase cycles
standing → descending → bottom → ascending → standing, ``phase_p`` puts 0.9 on
the labelled phase, ``hip_depth`` goes linearly from -1.0 (standing) to +0.1
(bottom) and back, the knee angle follows it (170° → 70°), ``vis`` is 0.9 and
the capture time advances 33 ms per frame. ``K`` clean reps give ``K`` reps.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from formcheck.local_services import Influxd, Mosquitto, ServiceError
from formcheck_aggregator.config import AggregatorConfig, load_config
from formcheck_aggregator.core import STATION_SECTION
from formcheck_aggregator.service import Aggregator
from formcheck_protocol.messages import PHASES, FrameMessage, NodeStatus, Phase
from formcheck_protocol.topics import Topics

FRAME_MS = 33
TOP = -1.0
BOTTOM = 0.1
KNEE_TOP = 170.0
KNEE_BOTTOM = 70.0
P_MAIN = 0.9
TOPICS = Topics(site="main")


def now_ms() -> int:
    return int(time.time() * 1000)


def new_boot() -> str:
    return secrets.token_hex(8)


def phase_probabilities(phase: Phase) -> dict[Phase, float]:
    rest = round((1.0 - P_MAIN) / (len(PHASES) - 1), 4)
    return {ph: (P_MAIN if ph == phase else rest) for ph in PHASES}


def frame(node: str, boot: str, seq: int, ts: int, phase: Phase, depth: float) -> FrameMessage:
    t = (depth - TOP) / (BOTTOM - TOP)
    return FrameMessage(
        node=node, boot=boot, seq=seq, ts=ts, exercise="squat", phase=phase, phase_p=phase_probabilities(phase),
        form="good", bad_p=0.05, faults=[],
        angles={"hip_depth": round(depth, 4), "knee": round(KNEE_TOP + t * (KNEE_BOTTOM - KNEE_TOP), 3)},
        vis=0.9,
    )


@dataclass(frozen=True)
class Stream:
    """One station's frames (one boot) and the number of complete reps they contain."""

    node: str
    boot: str
    frames: list[FrameMessage]
    reps: int

    def topic(self) -> str:
        return TOPICS.node(self.node, "frames")


def squat_stream(
    node: str, reps: int, *, ts0: int | None = None, boot: str | None = None, seq0: int = 0,
    stand: int = 30, down: int = 24, hold: int = 9, up: int = 24,
) -> Stream:
    """``reps`` clean squats with ``stand`` standing frames before, between and after them."""
    boot = boot or new_boot()
    ts0 = now_ms() - 60_000 if ts0 is None else ts0
    phases: list[tuple[Phase, float]] = [("standing", TOP)] * stand
    for _ in range(reps):
        phases += [("descending", TOP + (BOTTOM - TOP) * (k + 1) / (down + 1)) for k in range(down)]
        phases += [("bottom", BOTTOM)] * hold
        phases += [("ascending", BOTTOM + (TOP - BOTTOM) * (k + 1) / (up + 1)) for k in range(up)]
        phases += [("standing", TOP)] * stand
    frames = [frame(node, boot, seq0 + i, ts0 + i * FRAME_MS, ph, d) for i, (ph, d) in enumerate(phases)]
    return Stream(node, boot, frames, reps)


def status_payload(node: str, state: str = "online") -> bytes:
    return NodeStatus(state=state, node=node, ts=now_ms()).to_json()  # type: ignore[arg-type]


class Publisher:
    """One paho MQTT 5 client publishing at QoS 1; ``publish_all`` returns once the broker acknowledged all."""

    def __init__(self, host: str, port: int, client_id: str | None = None) -> None:
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"pub-{new_boot()}",
                                   protocol=mqtt.MQTTv5)
        self._client.max_inflight_messages_set(200)
        connected = threading.Event()
        self._client.on_connect = lambda *a: connected.set()
        self._client.connect(host, port, keepalive=5)
        self._client.loop_start()
        if not connected.wait(5):
            self.close()
            raise TimeoutError(f"publisher could not connect to {host}:{port}")

    def publish_all(self, messages: Iterable[tuple[str, bytes]], timeout: float = 20.0, retain: bool = False) -> int:
        infos = [self._client.publish(topic, payload, qos=1, retain=retain) for topic, payload in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(timeout=max(0.01, deadline - time.monotonic()))
            if not info.is_published():
                raise TimeoutError(f"{len(infos)} QoS 1 publishes not acknowledged within {timeout} s")
        return len(infos)

    def publish_frames(self, frames: Sequence[FrameMessage], timeout: float = 20.0) -> int:
        return self.publish_all(((TOPICS.node(f.node, "frames"), f.to_json()) for f in frames), timeout)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()



def init_database_as_compose_does(influxd: Influxd, admin: tuple[str, str], db: str,
                                  users: Sequence[tuple[str, str]]) -> None:
    """On an influxd with authentication: the admin account, the shipped init script run as admin (the database
    and its retention policies, deploy/influxdb/init/formcheck.iql) and ``users`` with ALL on ``db``, no admin."""
    from formcheck_runtime.paths import REPO_ROOT

    influxd.query(f"CREATE USER {admin[0]} WITH PASSWORD '{admin[1]}' WITH ALL PRIVILEGES")
    for statement in (REPO_ROOT / "deploy/influxdb/init/formcheck.iql").read_text().split(";"):
        if statement.strip():
            influxd.query(statement.strip(), auth=admin)
    for user, password in users:
        influxd.query(f"CREATE USER {user} WITH PASSWORD '{password}'", auth=admin)
        influxd.query(f'GRANT ALL ON "{db}" TO {user}', auth=admin)


def influx_rows(influxd: Influxd, q: str, db: str) -> list[dict[str, Any]]:
    """Rows of an InfluxQL query; ``[]`` while the aggregator has not created the database yet."""
    try:
        return influxd.query(q, db=db)
    except ServiceError as exc:
        if "database not found" in str(exc):
            return []
        raise


# --- aggregators in this process ------------------------------------------------------------------------------------


def aggregator_config(
    broker: Mosquitto, influxd: Influxd, agg_id: str, database: str, **sections: Any
) -> AggregatorConfig:
    """Short keep-alive, quick flushes and stats; ``sections`` are merged over that (e.g. ``partition={...}``)."""
    overrides: dict[str, Any] = {
        "id": agg_id,
        "mqtt": {"host": broker.host, "port": broker.port, "keepalive_s": 5, "connect_timeout_s": 5,
                 "reconnect_min_s": 0.2, "reconnect_max_s": 1},
        "influx": {"url": influxd.url, "database": database, "flush_interval_s": 0.1, "timeout_s": 5,
                   "retry_min_s": 0.1, "retry_max_s": 1},
        "stats_interval_s": 0.5,
        "workers": "process",  # the production topology; tests read the public snapshot (every stats interval)
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(overrides.get(key), dict):
            overrides[key] = {**overrides[key], **value}
        else:
            overrides[key] = value
    return load_config(None, overrides, environ={})


@dataclass
class RunningAggregator:
    """``Aggregator.run`` on a thread; ``outcome`` is its return value or the exception it raised."""

    agg: Aggregator
    stop_event: threading.Event = field(default_factory=threading.Event)
    outcome: list[object] = field(default_factory=list)
    thread: threading.Thread | None = None

    @property
    def id(self) -> str:
        return self.agg.config.id

    def start(self) -> RunningAggregator:
        def target() -> None:
            try:
                self.outcome.append(self.agg.run(self.stop_event))
            except BaseException as exc:
                self.outcome.append(exc)  # for the test's assertion; pytest also reports the thread's exception
                raise

        self.thread = threading.Thread(target=target, name=f"aggregator-{self.id}", daemon=True)
        self.thread.start()
        return self

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive() and not self.outcome

    def station(self, node: str) -> dict[str, int]:
        """The station's counters as the aggregator's snapshot reports them (empty before its first message)."""
        return self.agg.snapshot().get(f"{STATION_SECTION}{node}", {})

    def invalid(self) -> dict[str, int]:
        """Messages dropped as invalid, by reason."""
        return self.agg.snapshot().get("invalid", {})

    def stop(self, timeout: float = 20.0) -> object:
        """Stop and join; the run's outcome (0 on a clean stop)."""
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout)
            if self.thread.is_alive():
                raise TimeoutError(f"aggregator {self.id} did not stop within {timeout} s")
        return self.outcome[0] if self.outcome else None

    def messages(self) -> int:
        return self.agg.counters["messages"]
