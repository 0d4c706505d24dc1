"""``formcheck demo`` (what ``make demo`` runs): the whole loop on one machine.

A local Mosquitto and InfluxDB (temporary, stopped afterwards), the
aggregator, two members checked in at two stations, and two edge nodes
playing real clips from the data set in real time as separate processes,
like two Raspberry Pis. The terminal shows each station going online, every
graded rep and set as it happens, then what was stored in InfluxDB and the
notification each member received.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from formcheck.broker_admin import add_user, render_acl
from formcheck.local_services import Influxd, Mosquitto, free_port, influx_query, running_influxd, running_mosquitto
from formcheck_aggregator.config import load_config as load_aggregator_config
from formcheck_aggregator.service import Aggregator
from formcheck_runtime.paths import REPO_ROOT, require_data_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoStation:
    node: str
    member: str
    clip: str
    display_name: str  # what the station screens and the wall call the member (staff set it, as in a gym)


STATIONS = (
    DemoStation("rack-1", "alice", "videos/squat/squat_side_bodyweight_a.mp4", "Alice"),
    DemoStation("rack-2", "bob", "videos/squat/squat_front_bodyweight_a.mp4", "Bob"),
)


class _LiveView:
    """Prints station availability, reps, sets and notifications as they arrive."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.notifications: dict[str, dict[str, Any]] = {}
        self.stopped: set[str] = set()

    def on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        data = json.loads(msg.payload) if msg.payload else {}
        with self.lock:
            if parts[2] == "members":
                self.notifications[parts[3]] = data
                print(f"  📱 {parts[3]} notified: {data['reps']} reps, grade {data['grade']}"
                      f"{' — ' + data['main_fault'] if data['main_fault'] else ''}")
            elif parts[-1] == "status":
                print(f"  ● {parts[3]} is {data.get('state')}")
                if data.get("state") == "stopped":
                    self.stopped.add(parts[3])
            elif parts[-1] == "reps":
                faults = ", ".join(data["faults"]) or "no faults"
                print(f"  {data['node']:7} {data['member']:6} rep {data['rep_index']:2d}: score {data['score']:5.1f} "
                      f"grade {data['grade']}  {data['verdict']:<7}  depth {data['depth']:+.2f}  "
                      f"down {data['descent_s']:.1f}s up {data['ascent_s']:.1f}s  {faults}")
            elif parts[-1] == "sets":
                print(f"  {data['node']:7} {data['member']:6} SET: {data['reps']} reps, mean {data['score_mean']:.1f}, "
                      f"worst {data['score_min']:.1f}, grade {data['grade']}"
                      f"{' — ' + data['main_fault'] if data['main_fault'] else ''}")
            sys.stdout.flush()


WEB_DIST = REPO_ROOT / "web" / "dist"
DISPLAY = "screen"  # the demo's station-screen account
WALL = "wall"  # the demo's wall account: a screen of its own (one connection per account)


@dataclass(frozen=True)
class DemoWeb:
    """The member, station and wall pages on the demo broker: page and MQTT on one loopback websockets port."""

    port: int
    passwords: dict[str, str]

    def member_url(self, station: str | None = None) -> str:
        query = f"?site=main&broker=ws://127.0.0.1:{self.port}/mqtt"
        return f"http://127.0.0.1:{self.port}/{query}" + (f"&station={station}" if station else "")

    def station_url(self, station: str) -> str:
        return self.member_url() + f"&view=station&station={station}"

    def wall_url(self) -> str:
        return self.member_url() + "&view=wall"

    def print_urls(self, stations: tuple[DemoStation, ...]) -> None:
        print(f"\nmember page:  {self.member_url()}")
        for s in stations:
            print(f"              {s.member} / password {self.passwords[s.member]}")
        for s in stations:
            print(f"station {s.node}: {self.station_url(s.node)}  ({DISPLAY} / password {self.passwords[DISPLAY]})")
        print(f"wall (every station, members by name): {self.wall_url()}  ({WALL} / password {self.passwords[WALL]})")
        sys.stdout.flush()


def demo_web_config(directory: Path, stations: tuple[DemoStation, ...]) -> tuple[str, DemoWeb]:
    """Broker configuration lines for the pages: member accounts with the shipped ACL patterns (each member reads
    only their own topics), a display account, and the demo's own processes anonymous with rights on everything
    (``topic`` lines before the first ``user`` line are the anonymous client's). Plain ws on loopback only: the
    passwords never leave this machine; a gym's broker uses the shipped config (TLS, mosquitto/README.md)."""
    passwords = {s.member: f"{s.member}-demo-{index + 1}" for index, s in enumerate(stations)}
    passwords[DISPLAY] = "screen-demo-1"
    passwords[WALL] = "wall-demo-1"
    users = {name: "display" if name in (DISPLAY, WALL) else "member" for name in passwords}
    accounts = directory / "accounts"
    for name, password in passwords.items():
        add_user(accounts, name, users[name], password)
    acl = accounts / "acl"
    acl.write_text("# anonymous: the demo's aggregator, edge nodes and viewer\ntopic readwrite gym/#\n\n"
                   + render_acl(users))
    port = free_port()
    config = "\n".join([
        "allow_anonymous true", f"password_file {accounts / 'passwd'}", f"acl_file {acl}",
        f"listener {port} 127.0.0.1", "protocol websockets", "socket_domain ipv4", f"http_dir {WEB_DIST}",
    ])
    return config, DemoWeb(port, passwords)


def run_demo(clip: Path | None, realtime: bool, keep: bool | None = None) -> int:
    """``keep``: leave everything running after the clips until Enter (default: when standard input is a terminal),
    so that the pages can be looked at."""
    data = require_data_dir()
    stations = STATIONS if clip is None else (DemoStation("rack-1", "alice", str(clip), "Alice"),)
    for station in stations:
        if not (data / station.clip).is_file():
            raise FileNotFoundError(f"clip not found: {data / station.clip}")
    if not (WEB_DIST / "index.html").is_file():
        raise FileNotFoundError(f"the pages are not built ({WEB_DIST}): run 'make web'")
    with tempfile.TemporaryDirectory(prefix="formcheck-demo-") as tmp:
        extra, web = demo_web_config(Path(tmp), stations)
        with running_mosquitto(extra, {"websockets": web.port}) as mosq, running_influxd() as influx:
            print(f"mosquitto pid {mosq.pid} on {mosq.host}:{mosq.port}, influxd {influx.version} pid {influx.pid} "
                  f"on {influx.url} (temporary)")
            web.print_urls(stations)
            status = _run(data, stations, mosq, influx, realtime, web)
            if keep if keep is not None else sys.stdin.isatty():
                web.print_urls(stations)
                with contextlib.suppress(EOFError, KeyboardInterrupt):
                    input("\nthe broker and the pages stay up: press Enter to stop ")
            return status


def _run(data: Path, stations: tuple[DemoStation, ...], mosq: Mosquitto, influx: Influxd, realtime: bool,
         web: DemoWeb) -> int:
    broker = f"{mosq.host}:{mosq.port}"
    cli = [sys.executable, "-m", "formcheck.cli"]
    for s in stations:
        subprocess.run([*cli, "checkin", "--node", s.node, "--member", s.member, "--broker", broker],
                       check=True, capture_output=True, timeout=30)
        subprocess.run([*cli, "member", "name", s.member, s.display_name, "--broker", broker],
                       check=True, capture_output=True, timeout=30)
        print(f"checked in {s.member} ({s.display_name}) at {s.node}")
    view = _LiveView()
    viewer = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="formcheck-demo-view", protocol=mqtt.MQTTv5)
    viewer.on_message = view.on_message
    viewer.connect(mosq.host, mosq.port, keepalive=10)
    viewer.subscribe([("gym/main/nodes/+/reps", 1), ("gym/main/nodes/+/sets", 1), ("gym/main/nodes/+/status", 1),
                      ("gym/main/members/+/notifications", 1)])
    viewer.loop_start()
    config = load_aggregator_config(None, {
        "mqtt": {"host": mosq.host, "port": mosq.port, "keepalive_s": 5},
        "influx": {"url": influx.url, "flush_interval_s": 0.2},
        "stats_interval_s": 2.0,
    }, environ={})
    aggregator = Aggregator(config)
    stop = threading.Event()
    worker = threading.Thread(target=aggregator.run, args=(stop,), name="aggregator")
    worker.start()
    print(f"aggregator running; {len(stations)} edge node(s) playing clips "
          f"{'in real time' if realtime else 'as fast as possible'}:\n")
    edges = [
        subprocess.Popen([*cli, "edge", "--source", str(data / s.clip), "--node", s.node, "--broker", broker,
                          "--realtime", "on" if realtime else "off", "--log-level", "WARNING"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for s in stations
    ]
    status = 0
    try:
        for edge in edges:
            _, err = edge.communicate(timeout=600)
            if edge.returncode != 0:
                print(f"edge node failed: {err.strip().splitlines()[-1] if err.strip() else edge.returncode}")
                status = 1
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(view.notifications) < len(stations):
            time.sleep(0.2)
    finally:
        stop.set()
        worker.join(timeout=30)
        viewer.loop_stop()
        viewer.disconnect()
    _print_summary(influx, view, stations)
    web.print_urls(stations)
    return status


def _print_summary(influx: Influxd, view: _LiveView, stations: tuple[DemoStation, ...]) -> None:
    print("\nstored in InfluxDB (database 'formcheck'):")
    for s in stations:
        sets = influx_query(influx.url, f"SELECT * FROM \"set\" WHERE node = '{s.node}'", db="formcheck")
        reps = influx_query(influx.url, f"SELECT score, grade, verdict FROM rep WHERE node = '{s.node}'",
                            db="formcheck")
        for row in sets:
            print(f"  set  {s.node} {row['member']:6} {row['exercise']}: {row['reps']} reps, grade {row['grade']}, "
                  f"mean {row['score_mean']}, {'complete' if row['complete'] else 'aborted'}"
                  f"{', ' + row['main_fault'] if row['main_fault'] else ''}")
        print(f"  reps {s.node}: " + " ".join(f"{r['grade']}({r['score']:.0f})" for r in reps))
    stats = influx_query(influx.url, "SELECT last(messages) AS messages, last(invalid) AS invalid, "
                         "last(points_written) AS points FROM aggregator_stats", db="formcheck")
    if stats:
        print(f"  aggregator: {stats[0]['messages']} messages, {stats[0]['invalid']} invalid, "
              f"{stats[0]['points']} points written")
    print("\nnotifications (retained on gym/main/members/<member>/notifications):")
    for s in stations:
        note = view.notifications.get(s.member)
        print(f"  {s.member}: {json.dumps(note) if note else 'none received'}")
