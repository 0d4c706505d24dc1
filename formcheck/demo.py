"""``formcheck demo``: a real clip through an edge node and a real local broker, shown as it is published.

Starts Mosquitto on a free loopback port (unless ``--broker`` names one),
subscribes to everything the node publishes, and plays a clip from the data
set in real time through the same code as ``formcheck edge``.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_node.config import load_config
from edge_node.runner import run_edge
from formcheck.local_services import running_mosquitto
from formcheck.paths import require_data_dir

DEFAULT_CLIP = "videos/squat/squat_side_bodyweight_a.mp4"
log = logging.getLogger(__name__)


class _Printer:
    """Prints what arrives on the node's topics: every status and stats message, frames sampled."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.frames = 0
        self.phases: Counter[str] = Counter()
        self.states: list[str] = []
        self._last_phase: str | None = None
        self.lock = threading.Lock()

    def on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        kind = msg.topic.rsplit("/", 1)[-1]
        data = json.loads(msg.payload) if msg.payload else {}
        with self.lock:
            if kind == "frames":
                self.frames += 1
                self.phases[data["phase"]] += 1
                changed = data["phase"] != self._last_phase
                self._last_phase = data["phase"]
                if changed or data["seq"] % self.every == 0:
                    angles = data.get("angles", {})
                    knee = f"{angles['knee']:6.1f}" if "knee" in angles else "     -"
                    faults = ",".join(data.get("faults", [])) or "-"
                    p = data.get("phase_p", {}).get(data["phase"], 1.0)
                    print(f"{msg.topic}  seq={data['seq']:4d}  phase={data['phase']:<10} p={p:4.2f}  "
                          f"form={data['form']:<4} bad_p={data['bad_p']:4.2f}  knee={knee}  faults={faults}")
            elif kind == "status":
                self.states.append(data.get("state", "?"))
                print(f"{msg.topic}  {json.dumps(data)}")
            elif kind == "stats":
                print(f"{msg.topic}  fps={data['fps']} infer_ms={data['infer_ms']} dropped={data['dropped']} "
                      f"queue={data['queue']} rss_mb={data.get('rss_mb')}")
            sys.stdout.flush()


def run_demo(clip: Path | None, broker: tuple[str, int | None] | None, every: int, realtime: bool) -> int:
    clip = clip or require_data_dir() / DEFAULT_CLIP
    if not clip.is_file():
        raise FileNotFoundError(f"clip not found: {clip}")
    if broker is not None:
        return _run(clip, broker[0], broker[1] or 1883, every, realtime)
    with running_mosquitto() as mosq:
        print(f"started mosquitto pid {mosq.pid} on {mosq.host}:{mosq.port} (temporary, stopped afterwards)")
        return _run(clip, mosq.host, mosq.port, every, realtime)


def _run(clip: Path, host: str, port: int, every: int, realtime: bool) -> int:
    printer = _Printer(every)
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="formcheck-demo-viewer", protocol=mqtt.MQTTv5)
    sub.on_message = printer.on_message
    sub.connect(host, port, keepalive=10)
    sub.subscribe("gym/+/nodes/+/#", qos=1)
    sub.loop_start()
    config = load_config(None, {
        "node": {"id": "demo-1", "site": "main", "exercise": "squat"},
        "source": {"uri": str(clip), "realtime": realtime},
        "mqtt": {"host": host, "port": port, "keepalive_s": 5},
        "stats": {"interval_s": 2.0},
    })
    print(f"edge node demo-1 playing {clip.name} ({'real time' if realtime else 'as fast as possible'}); "
          f"every phase change and every {every}th frame shown")
    started = time.monotonic()
    status = run_edge(config)
    time.sleep(0.5)
    sub.loop_stop()
    sub.disconnect()
    with printer.lock:
        phases = ", ".join(f"{k} {v}" for k, v in printer.phases.most_common())
        print(f"\n{printer.frames} frame messages received in {time.monotonic() - started:.1f} s ({phases}); "
              f"status sequence: {' → '.join(printer.states)}")
    return status
