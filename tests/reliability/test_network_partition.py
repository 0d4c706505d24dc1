"""A network partition between an edge node and the broker: two network namespaces joined by a veth pair.

The test creates its own namespace and veth pair (unique names and a random private /30 per run, removed
even on failure). Mosquitto listens on the root-namespace end; a real ``formcheck edge`` plays a clip in real
time inside the other namespace; a real aggregator (in this process) writes to a real InfluxDB. Mid-set the
link goes down for longer than the broker needs to declare the node gone (1.5 x keep-alive), then up again.

Asserted: the broker publishes the node's Last Will and the node comes back ``online`` by itself; its
outgoing queue stays within ``mqtt.out_queue`` and what it could not keep is counted; every frame missing
at the aggregator is counted as a seq gap; the set that was open when the node went offline is stored as
aborted (``complete=false``) and every stored set agrees with the reps stored for it (nothing silently
half-counted); the edge's memory stays flat.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from formcheck.local_services import Influxd, Mosquitto, free_port, start_mosquitto
from formcheck_aggregator.service import Aggregator
from tests.integration.frame_factory import RunningAggregator, aggregator_config, influx_rows
from tests.integration.mqtt_helpers import Received, Recorder, states
from tests.integration.test_edge_mqtt import edge_cmd, run_env
from tests.waiting import wait_until

pytestmark = [pytest.mark.netns, pytest.mark.slow]

CLIP = "videos/squat/squat_front_bodyweight_a.mp4"  # 6 reps in 18 s
CLIP_REPS = 6
NODE = "edge-part"
KEEPALIVE_S = 2
OUT_QUEUE = 60  # 2 s at 30 fps: a partition of several seconds must overflow it
PARTITION_S = 8.0  # > 1.5 x keep-alive; the test then waits for the Will (Mosquitto scans keep-alives every 6 s)
DB = "partition"


@dataclass(frozen=True)
class Link:
    """A veth pair: ``host_if`` in the root namespace, ``ns_if`` in namespace ``ns``."""

    ns: str
    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str

    def set(self, state: str) -> None:
        _ip("link", "set", self.host_if, state)


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"'ip {' '.join(args)}' failed: {result.stderr.strip()}")


def _free_subnet() -> tuple[str, str]:
    """Two addresses of a random private /30 that no interface here uses yet."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, timeout=10,
                          check=False).stdout
    for _ in range(50):
        base = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}.{4 * random.randint(0, 63)}"
        prefix = base.rsplit(".", 1)[0]
        if f" {prefix}." not in used:
            last = int(base.rsplit(".", 1)[1])
            return f"{prefix}.{last + 1}", f"{prefix}.{last + 2}"
    raise RuntimeError("no free private /30 found")


@contextlib.contextmanager
def veth_link() -> Iterator[Link]:
    tag = secrets.token_hex(3)
    host_ip, ns_ip = _free_subnet()
    link = Link(ns=f"fc-part-{tag}", host_if=f"fcp{tag}h", ns_if=f"fcp{tag}n", host_ip=host_ip, ns_ip=ns_ip)
    try:
        _ip("netns", "add", link.ns)
    except RuntimeError as exc:
        pytest.fail(f"this machine refuses network namespaces (needs root and CAP_SYS_ADMIN): {exc}",
                    pytrace=False)
    try:
        _ip("link", "add", link.host_if, "type", "veth", "peer", "name", link.ns_if, "netns", link.ns)
        _ip("addr", "add", f"{host_ip}/30", "dev", link.host_if)
        _ip("link", "set", link.host_if, "up")
        _ip("-n", link.ns, "addr", "add", f"{ns_ip}/30", "dev", link.ns_if)
        _ip("-n", link.ns, "link", "set", link.ns_if, "up")
        _ip("-n", link.ns, "link", "set", "lo", "up")
        yield link
    finally:
        # Deleting the namespace deletes its end of the pair, and with it the other end.
        with contextlib.suppress(RuntimeError):
            _ip("netns", "del", link.ns)
        with contextlib.suppress(RuntimeError):
            _ip("link", "del", link.host_if)


def last_state(messages: list[Received]) -> str | None:
    """The node's latest status in ``messages`` (``Recorder.wait_for`` holds the recorder's lock)."""
    found = [m.json()["state"] for m in messages if m.topic.endswith("/status")]
    return found[-1] if found else None


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def test_partition_mid_set_aborts_or_completes_never_half_counts(
    tmp_path: Path, influxd: Influxd, data_dir: Path, pose_model: Path
) -> None:
    with veth_link() as link:
        edge_port = free_port()
        broker = start_mosquitto(tmp_path / "broker", extra_config=f"listener {edge_port} {link.host_ip}",
                                 extra_ports={"edge": edge_port})
        try:
            _partition(link, broker, edge_port, influxd, data_dir, tmp_path)
        finally:
            broker.stop()
        # The test cleaned up after itself (also checked on failure by the context manager's finally).
    leftover = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    assert link.ns not in leftover


def _partition(link: Link, broker: Mosquitto, edge_port: int, influxd: Influxd, data_dir: Path,
               tmp_path: Path) -> None:
    config = aggregator_config(broker, influxd, "agg-part", DB, influx={"frame_points_per_s": 0})  # counts seqs
    rec = Recorder(broker.host, broker.port, f"gym/main/nodes/{NODE}/#").start()
    running = RunningAggregator(Aggregator(config)).start()
    env = {**run_env(), "FORMCHECK_EDGE__MQTT__KEEPALIVE_S": str(KEEPALIVE_S),
           "FORMCHECK_EDGE__MQTT__OUT_QUEUE": str(OUT_QUEUE),
           "FORMCHECK_EDGE__MQTT__RECONNECT_MIN_S": "1", "FORMCHECK_EDGE__MQTT__RECONNECT_MAX_S": "1"}
    cmd = ["ip", "netns", "exec", link.ns, *edge_cmd(data_dir / CLIP, edge_port, NODE)]
    cmd[cmd.index(f"127.0.0.1:{edge_port}")] = f"{link.host_ip}:{edge_port}"
    err = (tmp_path / "edge.log").open("w")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
    rss: list[tuple[float, float]] = []  # (seconds since the link went down, edge RSS MiB)
    try:
        assert wait_until(running.agg.connected.is_set, 10)
        assert rec.wait_for(lambda m: any(x.topic.endswith("/reps") for x in m), 60), \
            f"no rep before the partition: {states(rec)} {(tmp_path / 'edge.log').read_text()[-2000:]}"
        # ip netns exec execs the command: the edge node is this very process.
        assert psutil.Process(proc.pid).name().startswith("python")
        rss.append((0.0, rss_mb(proc.pid)))
        reps_before = len(rec.of_kind("reps"))

        link.set("down")
        down_at = time.monotonic()
        try:
            offline = False
            while time.monotonic() - down_at < PARTITION_S or not offline:
                assert time.monotonic() - down_at < PARTITION_S + 10, f"no Last Will: {states(rec)}"
                offline = offline or "offline" in states(rec)
                rss.append((time.monotonic() - down_at, rss_mb(proc.pid)))
                time.sleep(0.25)
        finally:
            link.set("up")
        up_at = time.monotonic()
        assert rec.wait_for(lambda m: last_state(m) == "online", 20), f"no reconnect: {states(rec)}"
        back_at = time.monotonic()
        while proc.poll() is None and time.monotonic() - up_at < 60:
            rss.append((time.monotonic() - down_at, rss_mb(proc.pid)))
            time.sleep(0.25)
        proc.wait(timeout=30)
        # A file run whose frames did not all reach the broker (the small queue dropped some) says it failed.
        assert proc.returncode == 1, (tmp_path / "edge.log").read_text()[-3000:]
        assert "frames never reached the broker" in (tmp_path / "edge.log").read_text()
        assert rec.wait_for(lambda m: last_state(m) == "stopped", 10), states(rec)

        def sets() -> list[dict[str, Any]]:
            return influx_rows(influxd, f"SELECT * FROM \"set\" WHERE node = '{NODE}'", DB)

        # The aborted set and the set the clean stop closes.
        assert wait_until(lambda: any(s["ended_by"] == "node_stopped" for s in sets()), 20), sets()
        station = running.station(NODE)
        reps = influx_rows(influxd, f"SELECT * FROM rep WHERE node = '{NODE}'", DB)
        frames = influx_rows(influxd, f"SELECT seq FROM \"frames\".frame WHERE node = '{NODE}'", DB)
        stored_sets = sets()
        gaps = station["gaps"]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        err.close()
        running.stop()
        rec.stop()

    stats = [m.json() for m in rec.of_kind("stats")]
    log = (tmp_path / "edge.log").read_text()
    unpublished = max(s["unpublished"] for s in stats)
    print(f"partition {up_at - down_at:.1f} s, back online {back_at - up_at:.1f} s after the link came up; "
          f"edge out_queue max {max(s['out_queue'] for s in stats)} (limit {OUT_QUEUE}), unpublished "
          f"{unpublished}; aggregator gaps {gaps}; sets {[(s['reps'], s['complete']) for s in stored_sets]}; "
          f"edge RSS {rss[0][1]:.0f} -> max {max(r for _, r in rss):.0f} MiB")
    # Availability: the broker declared the node gone, the node came back by itself.
    assert states(rec) == ["online", "offline", "online", "stopped"]
    # Bounded queue, and what did not fit is counted on both sides: nothing is lost silently.
    assert all(s["out_queue"] <= OUT_QUEUE for s in stats), [s["out_queue"] for s in stats]
    assert unpublished > 0, "a partition this long must overflow the outgoing queue"
    seqs = sorted(int(f["seq"]) for f in frames)
    assert len(set(seqs)) == len(seqs)
    assert gaps == seqs[-1] + 1 - len(seqs) >= unpublished, (gaps, unpublished)
    # Reps: the set open at the partition is aborted, never passed off as complete; each set agrees with its reps.
    aborted = [s for s in stored_sets if not s["complete"]]
    assert aborted and all(s["ended_by"] == "offline" for s in aborted), stored_sets
    assert sum(s["reps"] for s in aborted) >= reps_before
    per_set = {s["set_id"]: sum(r["set_id"] == s["set_id"] for r in reps) for s in stored_sets}
    assert {s["set_id"]: s["reps"] for s in stored_sets} == per_set, (stored_sets, reps)
    assert {r["set_id"] for r in reps} <= set(per_set), "a rep without its set"
    assert len(reps) <= CLIP_REPS
    # Memory: flat through the partition and the catch-up.
    assert max(r for _, r in rss) - rss[0][1] < 20.0, rss
    assert "Traceback" not in log
