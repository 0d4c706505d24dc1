"""Edge nodes in real time for the soak and latency benchmarks: N stations, 30 frames/s each, one process.

Each station is a real :class:`formcheck_edge.publisher.EdgePublisher` (the edge node's own MQTT side: bounded
outgoing queue, QoS 1, retained ``online`` status with a Last Will, ``stopped`` on a clean exit). Only the
camera, pose model and classifier are replaced: frames come from :func:`station_plan`, the squat cycles of
``bench/load.py`` with a known number of complete reps and sets. A frame's capture time ``ts`` is its
scheduled wall-clock time, and it is handed to the publisher at that moment, as a camera would; if this
process falls behind, the frame still carries its capture time, so any lag shows in the measured latency.

The plan is a pure function of its arguments, so the parent process can rebuild the same frames (to know
the expected counts, or which frame closed which rep) without talking to this one.

Run by the benchmarks as ``python -m bench.paced_publisher SPEC.json``; the result (published, dropped and
refused counts per station, how late frames were handed over; with ``record_late`` in the spec, for every
frame) is written to the path named in the spec.
SIGTERM stops early, cleanly (``stopped`` status, queues drained for a bounded time).
"""

from __future__ import annotations

import heapq
import json
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from bench.load import FPS, LEAD_IN, station_frames, station_phases
from formcheck_protocol.messages import FrameMessage

SITE = "main"
PREFIX = "gym"
STAGGER_MS = 7  # stations' capture times are a few ms apart, like independent cameras


@dataclass(frozen=True)
class StationPlan:
    """One station's stream: identity, frame count and what it contains."""

    index: int
    node: str
    boot: str
    frames: int
    reps: int
    sets: int
    ts0: int
    lead_in: int
    seed: str

    def stream(self, set_reps: int) -> Iterator[FrameMessage]:
        """The station's frames, identical on every call."""
        rng = random.Random(self.seed)
        rng.getrandbits(64)  # the boot id drawn in station_plan
        frames, _, _ = station_frames(self.node, self.boot, self.frames, self.ts0, self.lead_in, rng, set_reps)
        return frames


def station_plan(stations: int, seconds: float, t0_ms: int, seed: int = 1, set_reps: int = 0) -> list[StationPlan]:
    """``stations`` streams of ``seconds`` at 30 fps starting at ``t0_ms``; complete reps and sets by construction."""
    frames = max(1, round(seconds * FPS))
    plans: list[StationPlan] = []
    for index in range(stations):
        node = f"rack-{index + 1:03d}"
        station_seed = f"{seed}-{node}"
        boot = f"{random.Random(station_seed).getrandbits(64):016x}"
        lead_in = LEAD_IN + (index % 10) * 3  # reps of different stations do not line up
        _, reps, sets = station_phases(frames, lead_in, set_reps)
        plans.append(StationPlan(index, node, boot, frames, reps, sets, t0_ms + STAGGER_MS * index, lead_in,
                                 station_seed))
    return plans


def merged(plans: list[StationPlan], set_reps: int) -> Iterator[FrameMessage]:
    """All stations' frames in capture-time order."""
    streams = [plan.stream(set_reps) for plan in plans]
    return heapq.merge(*streams, key=lambda frame: frame.ts)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    # Imported here: the parent imports this module for station_plan only.
    from formcheck_edge.config import MqttSection
    from formcheck_edge.publisher import EdgePublisher
    from formcheck_protocol.topics import Topics

    set_reps = int(spec["set_reps"])
    plans = station_plan(int(spec["stations"]), float(spec["seconds"]), int(spec["t0_ms"]), int(spec["seed"]),
                         set_reps)
    mqtt_cfg = MqttSection(host=spec["host"], port=int(spec["port"]), prefix=PREFIX,
                           keepalive_s=int(spec.get("keepalive_s", 15)))
    topics = Topics(site=SITE, prefix=PREFIX)
    publishers = {
        plan.node: EdgePublisher(mqtt_cfg, topics, plan.node, plan.boot,
                                 {"exercise": "squat", "model": "bench-synthetic", "source": "synthetic"})
        for plan in plans
    }
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    for publisher in publishers.values():
        publisher.start()
    connected = sum(p.wait_connected() for p in publishers.values())
    handed = 0
    late_ms: list[float] = []
    # Per station, in seq order: how late each frame was handed over (only when the spec asks: it is large).
    late_by_node: dict[str, list[float]] | None = {p.node: [] for p in plans} if spec.get("record_late") else None
    max_queue = 0
    for frame in merged(plans, set_reps):
        delay = frame.ts / 1000 - time.time()
        if delay > 0 and stop.wait(delay):
            break
        if stop.is_set():
            break
        publisher = publishers[frame.node]
        publisher.enqueue(frame)
        handed += 1
        late = time.time() * 1000 - frame.ts
        late_ms.append(late)
        if late_by_node is not None:
            late_by_node[frame.node].append(round(late, 2))
        if handed % 300 == 0:
            max_queue = max(max_queue, *(len(p.queue) for p in publishers.values()))
    for publisher in publishers.values():
        publisher.stop("stopped", drain_timeout_s=10.0)
    late_ms.sort()

    def pct(q: float) -> float:
        return round(late_ms[min(len(late_ms) - 1, int(q * len(late_ms)))], 2) if late_ms else 0.0

    return {
        "connected_at_start": connected, "handed": handed, "interrupted": stop.is_set(),
        "published": {node: p.published for node, p in publishers.items()},
        "dropped": {node: p.queue.dropped for node, p in publishers.items()},
        "refused": {node: p.refused for node, p in publishers.items()},
        "rejected": {node: p.rejected for node, p in publishers.items()},
        "max_out_queue": max_queue,
        "late_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": round(late_ms[-1], 2) if late_ms else 0.0},
        "late_by_node": late_by_node,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.paced_publisher SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    result = run(spec)
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
