"""End-to-end rep latency at 10 stations x 30 fps: capture of the frame that ends a rep → MQTT and → InfluxDB.

``make bench-latency`` (or ``python -m bench.latency_bench``) runs the whole stack like ``bench/soak.py``: a
real Mosquitto, a real InfluxDB, a real ``formcheck aggregator`` process (production defaults unless
``--flush-interval`` overrides ``influx.flush_interval_s``), and ``--stations`` edge nodes publishing
synthetic squats in real time through the edge node's own publisher (``bench/paced_publisher.py``), one
continuous set per station so reps keep coming. A frame's ``ts`` is its capture time: the moment it was
handed to the edge publisher.

For every rep two arrival times are taken: when its message arrives on ``gym/main/nodes/+/reps`` (a
subscriber in this process, clock of this machine), and when its point is first returned by InfluxDB (a
query every ``--poll-ms``; the time the answer arrived, so the figure is an upper bound by at most one poll
interval plus the query time). Two starting points are reported:

- **closing frame**: the capture time of the frame on whose arrival the aggregator closed the rep. Which
  frame that is comes from replaying the same frames through the same station logic
  (``formcheck_aggregator.station.Station``) here. This is the system's latency, the figure the targets apply to.
- **hand-over of the closing frame**: the same, from the moment this bench's edge process actually handed
  the frame to the publisher. It differs from the first only when that process was starved of CPU (a
  loaded machine): the edge "camera" here shares the cores with everything else, a real one does not.
- **last frame of the movement** (the rep's ``end_ts``): adds the detector's deliberate confirmation delay
  (the body must have stopped rising for ``reps.top_hold_s``, 0.25 s, before the rep is closed), which no
  faster transport removes.

Targets (p99, from the closing frame): under 250 ms to MQTT, under 1.5 s to InfluxDB. Note that a rep is
published only after its point is stored (``docs/aggregator.md``), so the MQTT figure includes the InfluxDB
write and with it the writer's batching interval.

Exit status: 0; 1 with ``--check`` when a target is missed; 2 when the run itself failed (a service did
not start, reps missing).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.fullstack import (
    AggregatorProcess,
    EdgeFleet,
    Subscriber,
    influx_rows,
    load_average,
    percentile,
    run_and_report,
    running_services,
    tree_cpu_s,
)
from bench.paced_publisher import StationPlan, station_plan
from formcheck.local_services import Influxd, ServiceError
from formcheck_aggregator.config import AggregatorConfig
from formcheck_aggregator.station import Station
from tests.waiting import wait_until

MQTT_TARGET_MS = 250.0
INFLUX_TARGET_MS = 1500.0
START_DELAY_S = 3.0
REPS_TOPIC = "gym/main/nodes/+/reps"
# Rep points are stamped with the rep's first frame; a window this wide covers a rep's duration plus any
# plausible delay, and keeps each poll's answer small.
POLL_WINDOW_S = 30


def closing_frames(plans: list[StationPlan], set_reps: int) -> dict[tuple[str, int], tuple[int, int]]:
    """(node, rep start_ts) → (seq, capture time) of the frame whose arrival made the aggregator emit that rep."""
    config = AggregatorConfig()
    closing: dict[tuple[str, int], tuple[int, int]] = {}
    for plan in plans:
        station = Station(plan.node, rep_config=config.reps, set_config=config.sets, grading=config.grading)
        for frame in plan.stream(set_reps):
            for rep in station.on_frame(frame).reps:
                closing[(plan.node, rep.start_ts)] = (frame.seq, frame.ts)
    return closing


class InfluxPoller:
    """Polls the ``rep`` measurement; remembers when each rep point was first returned."""

    def __init__(self, influxd: Influxd, interval_s: float) -> None:
        self._influxd = influxd
        self._interval = interval_s
        self.first_seen: dict[tuple[str, int], float] = {}
        self.polls = 0
        self.query_ms: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="influx-poller", daemon=True)

    def start(self) -> InfluxPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            sent = time.time()
            try:
                rows = influx_rows(self._influxd,
                                   f"SELECT node, rep_index FROM rep WHERE time > now() - {POLL_WINDOW_S}s")
            except (ServiceError, OSError):
                self.errors += 1  # reported; a rep missed by every poll shows up as missing
                rows = []
            answered = time.time()
            self.polls += 1
            self.query_ms.append((answered - sent) * 1000)
            for row in rows:
                self.first_seen.setdefault((str(row["node"]), int(row["time"])), answered)
            self._stop.wait(max(0.0, self._interval - (time.time() - sent)))


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(percentile(values, 50), 1), "p95": round(percentile(values, 95), 1),
            "p99": round(percentile(values, 99), 1), "max": round(max(values), 1)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    seconds = args.seconds
    env: dict[str, str] = {}
    if args.flush_interval is not None:
        env["FORMCHECK_AGG__INFLUX__FLUSH_INTERVAL_S"] = str(args.flush_interval)
    flush_interval = AggregatorConfig().influx.flush_interval_s if args.flush_interval is None else args.flush_interval
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="formcheck-latency-") as tmp, running_services() as (broker, influxd):
        workdir = Path(args.keep) if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        reps_sub = Subscriber(broker, (REPS_TOPIC,), "latency-reps").start()
        agg = AggregatorProcess.start(broker, influxd, workdir, env)
        poller = InfluxPoller(influxd, args.poll_ms / 1000).start()
        fleet: EdgeFleet | None = None
        try:
            t0_ms = int((time.time() + START_DELAY_S) * 1000)
            plans = station_plan(args.stations, seconds, t0_ms, args.seed, 0)
            fleet = EdgeFleet.start(broker, workdir, args.stations, seconds, t0_ms, args.seed, 0, record_late=True)
            closing = closing_frames(plans, 0)  # computed while the edges run: the same frames, replayed here
            # CPU over the steady part of the run: what a shorter flush interval costs.
            wait_until(lambda: time.time() >= t0_ms / 1000, START_DELAY_S + 5, interval=0.01)
            cpu0 = (time.monotonic(), tree_cpu_s(agg.pid), tree_cpu_s(influxd.pid))
            edges = fleet.wait(timeout=seconds + START_DELAY_S + 60)
            wall = time.monotonic() - cpu0[0]
            cpu = {"aggregator_pct": round(100 * (tree_cpu_s(agg.pid) - cpu0[1]) / wall, 1),
                   "influxd_pct": round(100 * (tree_cpu_s(influxd.pid) - cpu0[2]) / wall, 1)}
            expected = sum(p.reps for p in plans)
            got_all = wait_until(lambda: len(poller.first_seen) >= expected and len(reps_sub.snapshot()) >= expected,
                               30, interval=0.2)
            if not got_all:
                errors.append(f"reps: expected {expected}, on MQTT {len(reps_sub.snapshot())}, in InfluxDB "
                              f"{len(poller.first_seen)} within 30 s after the last frame")
        finally:
            poller.stop()
            if fleet is not None:
                fleet.stop()
            exit_status = agg.stop()
            reps_sub.stop()
        if exit_status != 0:
            errors.append(f"aggregator exited {exit_status}: {agg.tail()}")

    mqtt_close, mqtt_end, influx_close, influx_end, hold, mqtt_handed, influx_handed = [], [], [], [], [], [], []
    late_by_node: dict[str, list[float]] = edges.pop("late_by_node") or {}
    unmatched = 0
    for arrival in reps_sub.snapshot():
        rep = arrival.json()
        key = (str(rep["node"]), int(rep["start_ts"]))
        found = closing.get(key)
        if found is None:
            unmatched += 1
            continue
        seq, closed_at = found
        # When this bench's edge process actually handed the closing frame over (it can be starved of CPU).
        handed_at = closed_at + late_by_node[key[0]][seq]
        end_ts = int(rep["end_ts"])
        hold.append(closed_at - end_ts)
        mqtt_close.append(arrival.at * 1000 - closed_at)
        mqtt_handed.append(arrival.at * 1000 - handed_at)
        mqtt_end.append(arrival.at * 1000 - end_ts)
        seen = poller.first_seen.get(key)
        if seen is not None:
            influx_close.append(seen * 1000 - closed_at)
            influx_handed.append(seen * 1000 - handed_at)
            influx_end.append(seen * 1000 - end_ts)
    if unmatched:
        errors.append(f"{unmatched} rep messages match no rep of the replayed frames")
    result = {
        "stations": args.stations, "seconds": seconds, "reps_expected": sum(p.reps for p in plans),
        "flush_interval_s": flush_interval, "poll_ms": args.poll_ms, "load_average_end": load_average(),
        "polls": poller.polls,
        "poll_query_ms": summary(poller.query_ms),
        "edge_late_ms": edges["late_ms"], "poll_errors": poller.errors, "cpu_during_run": cpu,
        "confirmation_hold_ms": summary([float(h) for h in hold]),
        "from_closing_frame": {"mqtt_ms": summary(mqtt_close), "influx_ms": summary(influx_close)},
        "from_last_movement_frame": {"mqtt_ms": summary(mqtt_end), "influx_ms": summary(influx_end)},
        "from_closing_frame_handed_over": {"mqtt_ms": summary(mqtt_handed), "influx_ms": summary(influx_handed)},
        "errors": errors,
    }
    close = result["from_closing_frame"]
    result["met"] = {
        "mqtt_p99": bool(close["mqtt_ms"].get("n")) and close["mqtt_ms"]["p99"] < MQTT_TARGET_MS,
        "influx_p99": bool(close["influx_ms"].get("n")) and close["influx_ms"]["p99"] < INFLUX_TARGET_MS,
    }
    return result


def print_report(r: dict[str, Any]) -> None:
    print(f"rep latency: {r['stations']} stations x 30 fps for {r['seconds']:g} s through mosquitto, the formcheck "
          f"aggregator process and influxd; influx.flush_interval_s {r['flush_interval_s']:g}; InfluxDB polled "
          f"every {r['poll_ms']:g} ms (query p50 {r['poll_query_ms'].get('p50')} ms); load average at the end "
          f"{r['load_average_end'][0]:.1f}; edge hand-over late p99 {r['edge_late_ms'].get('p99')} ms")
    print(f"{'from':<47}{'to':<10}{'reps':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}   target p99")
    targets = {"mqtt_ms": MQTT_TARGET_MS, "influx_ms": INFLUX_TARGET_MS}
    for start, label in (("from_closing_frame", "capture of the frame that closes the rep"),
                         ("from_closing_frame_handed_over", "hand-over of that frame to the edge publisher"),
                         ("from_last_movement_frame", "capture of the rep's last movement frame")):
        for key, to in (("mqtt_ms", "MQTT"), ("influx_ms", "InfluxDB")):
            s = r[start][key]
            target = f"< {targets[key]:.0f}" if start == "from_closing_frame" else ""
            if start == "from_closing_frame":
                met = r["met"]["mqtt_p99" if key == "mqtt_ms" else "influx_p99"]
                target += "  OK" if met else "  MISSED"
            print(f"{label:<47}{to:<10}{s.get('n', 0):>6}{s.get('p50', '-'):>9}{s.get('p95', '-'):>9}"
                  f"{s.get('p99', '-'):>9}{s.get('max', '-'):>9}   {target}")
    cpu = r["cpu_during_run"]
    print(f"CPU while frames flowed (one core = 100 %): aggregator (both processes) {cpu['aggregator_pct']} %, "
          f"influxd {cpu['influxd_pct']} % (includes the {r['poll_ms']:g} ms polling queries)")
    hold = r["confirmation_hold_ms"]
    print(f"detector confirmation (closing frame - last movement frame): p50 {hold.get('p50')} ms, "
          f"max {hold.get('max')} ms")
    for error in r["errors"]:
        print(f"ERROR: {error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stations", type=int, default=10, help="edge nodes at 30 fps (default 10)")
    parser.add_argument("--seconds", type=float, default=120.0, help="duration (default 120: ~400 reps)")
    parser.add_argument("--flush-interval", type=float, default=None, metavar="S",
                        help="override the aggregator's influx.flush_interval_s (default: its own default)")
    parser.add_argument("--poll-ms", type=float, default=25.0, help="InfluxDB poll interval (default 25)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the synthetic frames (default 1)")
    parser.add_argument("--keep", metavar="DIR", help="keep the aggregator and edge logs in DIR")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.stations < 1 or args.seconds < 10 or args.poll_ms <= 0:
        parser.error("need at least 1 station, 10 s and a positive poll interval")
    result, status = run_and_report("latency benchmark", lambda: run(args), print_report, args.json)
    if result is None or status:
        return status
    return 1 if args.check and not all(result["met"].values()) else 0

if __name__ == "__main__":
    sys.exit(main())
