"""Load for broker benchmarks: realistic squat frame streams, published with the C client.

``generate`` writes one frame stream per station, shaped like the edge node's
messages (``edge_node/formcheck_edge/processor.py``): every published angle, phase
probabilities over all five phases, form and fault flags, seq ``0..n-1`` of one
boot per station, capture times at 30 fps ending about now. Each station does
squats: a lead-in while standing, then cycles of descending (0.8 s), bottom
(0.3 s), ascending (0.8 s) and standing (1.0 s). Every full cycle is one
complete repetition for the aggregator's detector, so the expected rep count is
known by construction; frames left over at the end are standing. With
``set_reps`` the member walks away (no-person frames) for ``REST_FRAMES``
after every ``set_reps`` reps, longer than the aggregator's rest timeout, so each
group is a set of its own; without it the whole stream is one set.

``publish`` runs one ``mosquitto_pub -l`` per station in parallel (one process
reads one payload per line for one topic): a single paho publisher is far too
slow to flood a broker (DESIGN.md, measured pitfalls).
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from formcheck.local_services import find_binary
from formcheck_protocol.messages import PHASES, Fault, FrameMessage, NodeStatus, Phase
from formcheck_protocol.topics import Topics
from formcheck_runtime.broker import connect_properties

FPS = 30
FRAME_MS = 1000 / FPS
# Frames per segment of one squat cycle (30 fps): the shape of tests/unit/synthetic_frames.rep_segments.
DESCEND, BOTTOM, ASCEND, STAND = 24, 9, 24, 30
CYCLE = DESCEND + BOTTOM + ASCEND + STAND
LEAD_IN = 30          # standing frames before the first rep (plus a per-station offset)
TOP = -1.0            # hip_depth standing
DEEP = 0.1            # hip_depth at the bottom of a full squat
SHALLOW_BOTTOM = -0.35  # every 5th rep stops here (flagged 'shallow' by grading, still a complete rep)
P_MAIN = 0.9
REST_FRAMES = 50 * FPS  # a rest longer than the default set rest timeout (45 s)
PUBLISH_ARGS = ("-q", "1", "-V", "mqttv5")


@dataclass(frozen=True)
class StationLoad:
    """One station's stream as written to disk."""

    node: str
    boot: str
    topic: str
    frames: int
    reps: int
    sets: int
    payloads: Path  # one JSON payload per line, seq order


@dataclass
class Load:
    """Everything ``generate`` produced."""

    site: str
    prefix: str
    stations: list[StationLoad]
    lines: Path  # all frames as 'topic payload' lines, interleaved in capture-time order
    payload_bytes: int
    seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.stations)

    @property
    def reps(self) -> int:
        return sum(s.reps for s in self.stations)

    @property
    def sets(self) -> int:
        return sum(s.sets for s in self.stations)

    @property
    def topics(self) -> Topics:
        return Topics(site=self.site, prefix=self.prefix)


def _probabilities(phase: Phase, rng: random.Random) -> dict[Phase, float]:
    main = round(P_MAIN + rng.uniform(-0.04, 0.04), 4)
    rest = round((1.0 - main) / (len(PHASES) - 1), 4)
    return {ph: (main if ph == phase else rest) for ph in PHASES}


def _angles(depth: float, rng: random.Random) -> dict[str, float]:
    """Published angles for a hip_depth (t = 0 standing .. 1 deep), with a little sensor noise."""
    t = (depth - TOP) / (DEEP - TOP)

    def noisy(value: float, spread: float) -> float:
        return round(value + rng.uniform(-spread, spread), 3)

    return {
        "knee": noisy(170.0 - 100.0 * t, 0.8), "hip": noisy(175.0 - 105.0 * t, 0.8),
        "trunk_lean": noisy(8.0 + 27.0 * t, 0.5), "knee_valgus": noisy(2.0, 0.5), "knee_width": noisy(1.1, 0.02),
        "hip_depth": round(depth + rng.uniform(-0.003, 0.003), 3), "shin_lean": noisy(5.0 + 25.0 * t, 0.5),
        "heel_lift": noisy(0.01, 0.005), "elbow": noisy(160.0, 2.0), "body_line": noisy(170.0 - 20.0 * t, 1.0),
        "view_yaw": noisy(15.0, 1.0),
    }


def station_phases(frames: int, lead_in: int, set_reps: int = 0) -> tuple[list[tuple[Phase, float, int]], int, int]:
    """(phase, hip_depth, rep number or -1) per frame; the numbers of complete reps and of sets in it."""
    out: list[tuple[Phase, float, int]] = [("standing", TOP, -1)] * min(lead_in, frames)
    reps = sets = in_set = 0
    while len(out) + CYCLE <= frames:
        if set_reps and in_set == set_reps:
            if len(out) + REST_FRAMES + LEAD_IN + CYCLE > frames:
                break
            rest: list[tuple[Phase, float, int]] = [("no_person", TOP, -1)] * REST_FRAMES
            out += rest + [("standing", TOP, -1)] * LEAD_IN
            in_set = 0
        bottom = SHALLOW_BOTTOM if reps % 5 == 4 else DEEP
        out += [("descending", TOP + (bottom - TOP) * (k + 1) / (DESCEND + 1), reps) for k in range(DESCEND)]
        out += [("bottom", bottom, reps)] * BOTTOM
        out += [("ascending", bottom + (TOP - bottom) * (k + 1) / (ASCEND + 1), reps) for k in range(ASCEND)]
        out += [("standing", TOP, -1)] * STAND
        sets += in_set == 0
        reps += 1
        in_set += 1
    out += [("standing", TOP, -1)] * (frames - len(out))
    return out, reps, sets


def station_frames(
    node: str, boot: str, frames: int, ts0: int, lead_in: int, rng: random.Random, set_reps: int = 0
) -> tuple[Iterator[FrameMessage], int, int]:
    """Validated frame messages of one station, its complete rep count and its set count."""
    plan, reps, sets = station_phases(frames, lead_in, set_reps)

    def iterate() -> Iterator[FrameMessage]:
        for seq, (phase, depth, rep) in enumerate(plan):
            ts = ts0 + round(seq * FRAME_MS)
            if phase == "no_person":
                # As the edge node sends it: no probabilities, no angles.
                yield FrameMessage(node=node, boot=boot, seq=seq, ts=ts, exercise="squat", phase="no_person",
                                   form="good", bad_p=0.0, vis=round(rng.uniform(0.0, 0.2), 3))
                continue
            # Every 4th rep caves the knees in at the bottom and on the way up: bad form, a counted fault.
            faulty = rep >= 0 and rep % 4 == 3 and phase in ("bottom", "ascending")
            faults: list[Fault] = ["knees_in"] if faulty else []
            bad_p = round(rng.uniform(0.7, 0.9) if faulty else rng.uniform(0.02, 0.2), 4)
            yield FrameMessage(
                node=node, boot=boot, seq=seq, ts=ts, exercise="squat", phase=phase,
                phase_p=_probabilities(phase, rng), form="bad" if bad_p >= 0.5 else "good", bad_p=bad_p,
                faults=faults, angles=_angles(depth, rng), vis=round(rng.uniform(0.85, 0.97), 3),
            )

    return iterate(), reps, sets


def generate(
    workdir: Path, stations: int, frames: int, *, site: str = "main", prefix: str = "gym", seed: int = 1,
    now_ms: int | None = None, set_reps: int = 0,
) -> Load:
    """Write ``stations`` x ``frames`` frames to ``workdir``; the last capture time is about ``now_ms``."""
    started = time.monotonic()
    rng = random.Random(seed)
    topics = Topics(site=site, prefix=prefix)
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    ts0 = now_ms - round(frames * FRAME_MS) - 1000
    workdir.mkdir(parents=True, exist_ok=True)
    loads: list[StationLoad] = []
    per_station: list[list[tuple[int, str]]] = []
    total_bytes = 0
    for index in range(stations):
        node = f"rack-{index + 1:03d}"
        boot = f"{rng.getrandbits(64):016x}"
        topic = topics.node(node, "frames")
        # Stations start a few frames apart so their reps do not line up.
        stream, reps, sets = station_frames(node, boot, frames, ts0 + 7 * index, LEAD_IN + (index % 10) * 3, rng,
                                            set_reps)
        path = workdir / f"{node}.payloads"
        rows: list[tuple[int, str]] = []
        with path.open("w") as out:
            for frame in stream:
                payload = frame.to_json().decode()
                if "\n" in payload:
                    raise ValueError("a payload contains a newline; mosquitto_pub -l would split it")
                out.write(payload + "\n")
                total_bytes += len(payload)
                rows.append((frame.ts, payload))
        per_station.append(rows)
        loads.append(StationLoad(node, boot, topic, frames, reps, sets, path))
    lines = workdir / "frames.lines"
    merged = sorted(
        ((ts, load.topic, payload) for load, rows in zip(loads, per_station, strict=True) for ts, payload in rows),
        key=lambda row: row[0],
    )
    with lines.open("w") as out:
        for _, topic, payload in merged:
            out.write(f"{topic} {payload}\n")
    return Load(site, prefix, loads, lines, total_bytes, seconds=time.monotonic() - started)


# --- publishing -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishResult:
    messages: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def publish(load: Load, host: str, port: int, timeout: float) -> PublishResult:
    """One ``mosquitto_pub -l`` per station, all in parallel, QoS 1; returns when every one exited 0."""
    binary = find_binary("mosquitto_pub")
    procs: list[subprocess.Popen[bytes]] = []
    started = time.monotonic()
    try:
        for station in load.stations:
            with station.payloads.open("rb") as stdin:
                procs.append(subprocess.Popen(
                    [binary, "-h", host, "-p", str(port), *PUBLISH_ARGS, "-i", f"bench-pub-{station.node}",
                     "-l", "-t", station.topic],
                    stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                ))
        deadline = started + timeout
        for proc, station in zip(procs, load.stations, strict=True):
            try:
                _, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as exc:
                raise TimeoutError(f"mosquitto_pub for {station.node} did not finish within {timeout:g} s") from exc
            if proc.returncode != 0:
                raise RuntimeError(f"mosquitto_pub for {station.node} exited {proc.returncode}: "
                                   f"{err.decode(errors='replace')[-300:]}")
        return PublishResult(load.frames, time.monotonic() - started)
    finally:
        _stop(procs)


def publish_status(load: Load, host: str, port: int, state: str, timeout: float) -> None:
    """One QoS 1 status message per station (not retained: a retained copy would arrive twice on resubscribe)."""
    binary = find_binary("mosquitto_pub")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for station in load.stations:
            payload = NodeStatus.model_validate(
                {"state": state, "node": station.node, "boot": station.boot, "ts": int(time.time() * 1000)}
            ).to_json()
            procs.append(subprocess.Popen(
                [binary, "-h", host, "-p", str(port), *PUBLISH_ARGS, "-t", load.topics.node(station.node, "status"),
                 "-m", payload.decode()],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            ))
        deadline = time.monotonic() + timeout
        for proc in procs:
            _, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            if proc.returncode != 0:
                raise RuntimeError(f"mosquitto_pub (status) exited {proc.returncode}: {err.decode(errors='replace')}")
    finally:
        _stop(procs)


def create_session(
    host: str, port: int, client_id: str, filters: Sequence[str], *, expiry_s: int = 3600, timeout: float = 10.0
) -> None:
    """Create a fresh persistent MQTT 5 session subscribed to ``filters`` at QoS 1, then leave it offline.

    The broker then queues every matching QoS 1 message for ``client_id`` until that client connects again
    with clean start off (up to ``max_queued_messages``).
    """
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    subscribed = threading.Event()
    failure: list[str] = []

    def on_subscribe(c: mqtt.Client, userdata: object, mid: int, codes: list[ReasonCode], props: object) -> None:
        failure.extend(str(code) for code in codes if code.is_failure)
        subscribed.set()

    client.on_subscribe = on_subscribe
    client.connect(host, port, keepalive=10, clean_start=True, properties=connect_properties(expiry_s, 1000))
    client.loop_start()
    try:
        client.subscribe([(f, 1) for f in filters])
        if not subscribed.wait(timeout):
            raise TimeoutError(f"session {client_id}: subscription not acknowledged within {timeout:.0f} s")
        if failure:
            raise RuntimeError(f"session {client_id}: subscription refused: {failure}")
    finally:
        client.disconnect()
        client.loop_stop()
