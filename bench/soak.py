"""Soak: 10 stations at 30 frames/s for 10 minutes through the whole stack; nothing lost, nothing growing.

``make soak`` (or ``python -m bench.soak [--minutes M]``) starts a real Mosquitto, a real InfluxDB and a
real ``formcheck aggregator`` process with its production defaults, checks one member in per station, and
runs ``--stations`` edge nodes (``bench/paced_publisher.py``: the edge node's own MQTT publisher fed with
synthetic squat frames in real time, 30 frames/s each). Each station does sets of ``--set-reps`` reps with
a 50 s rest between them (longer than the 45 s rest timeout, so each ends as a set of its own) and stops
cleanly at the end (``stopped`` status: the last set closes). The numbers of complete reps and sets are
known by construction (``bench/load.py``).

While it runs, the aggregator's resident memory (its process and its worker process) is sampled every
second, the broker's ``$SYS`` store and heap every 5 s, and the aggregator writes its own
``aggregator_stats`` (writer buffer, inbox) every 10 s.

Checks (exit status 1 when one fails, 2 when the run itself could not be done):

- every frame handed to the edge publishers was published (no edge queue drop, nothing refused) and stored
  as a frame point;
- reps: stored per station == expected, and as many rep messages on MQTT, no (set, rep index) twice, rep
  indexes 1..n within each set;
- sets: stored == expected, all complete, their rep counts add up; one set message and one member
  notification per set;
- the aggregator counted no duplicates, gaps, invalid messages, inbox drops, overflow drops or write errors;
- memory flat: the aggregator's RSS grows by at most ``RSS_GROWTH_MB`` over the second half of the run;
- no growing queue: over the last third of the run the broker's stored-message count and the
  aggregator's writer buffer and inbox stay within twice their first-third maximum (or one second of
  traffic, whichever is larger).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.aggregator_bench import RSS_GROWTH_MB
from bench.fullstack import (
    AggregatorProcess,
    EdgeFleet,
    Subscriber,
    check_in,
    influx_rows,
    load_average,
    run_and_report,
    running_services,
)
from bench.load import FPS
from bench.paced_publisher import station_plan
from formcheck.local_services import Influxd, ServiceError
from tests.waiting import wait_until

START_DELAY_S = 3.0  # between launching the edge process and the first capture time: time to connect
DRAIN_S = 60.0       # after the last frame, for the last writes and the 'stopped' sets to land
SYS_TOPICS = ("$SYS/broker/store/messages/count", "$SYS/broker/heap/current",
              "$SYS/broker/publish/messages/dropped")


@dataclass
class Series:
    """(seconds since the first frame, value) samples of one figure."""

    points: list[tuple[float, float]] = field(default_factory=list)

    def add(self, t: float, value: float) -> None:
        self.points.append((t, value))

    def at(self, t: float) -> float | None:
        """The sample closest to ``t``."""
        return min(self.points, key=lambda p: abs(p[0] - t))[1] if self.points else None

    def window_max(self, start: float, end: float) -> float | None:
        values = [v for t, v in self.points if start <= t <= end]
        return max(values) if values else None

    def slope_per_hour(self, start: float, end: float) -> float | None:
        """Least-squares slope over [start, end], units per hour."""
        pts = [(t, v) for t, v in self.points if start <= t <= end]
        if len(pts) < 3:
            return None
        mt = sum(t for t, _ in pts) / len(pts)
        mv = sum(v for _, v in pts) / len(pts)
        den = sum((t - mt) ** 2 for t, _ in pts)
        return 3600 * sum((t - mt) * (v - mv) for t, v in pts) / den if den else None


def _bounded_growth(series: Series, duration: float, one_second: float) -> tuple[bool, float | None, float | None]:
    """Last-third maximum against the first-third maximum (see the module docstring)."""
    first = series.window_max(0, duration / 3)
    last = series.window_max(2 * duration / 3, duration)
    if first is None or last is None:
        return False, first, last
    return last <= max(2 * first, one_second), first, last


def stored_checks(influxd: Influxd, plans: list[Any]) -> dict[str, Any]:
    reps = influx_rows(influxd, "SELECT node, set_id, rep_index, member FROM rep")
    sets = influx_rows(influxd, 'SELECT node, set_id, reps, complete, ended_by FROM "set"')
    frames = {p.node: 0 for p in plans}
    for plan in plans:
        rows = influx_rows(influxd, f'SELECT count(seq) FROM "frames"."frame" WHERE node = \'{plan.node}\'')
        frames[plan.node] = int(rows[0]["count"]) if rows else 0
    return {"reps": reps, "sets": sets, "frames": frames}


def run(args: argparse.Namespace) -> dict[str, Any]:
    seconds = args.minutes * 60
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="formcheck-soak-") as tmp, running_services() as (broker, influxd):
        workdir = Path(args.keep) if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        out = Subscriber(broker, (TOPICS_REPS, TOPICS_SETS, TOPICS_NOTES), "soak-out").start()
        sys_sub = Subscriber(broker, SYS_TOPICS, "soak-sys").start()
        agg = AggregatorProcess.start(broker, influxd, workdir)
        fleet: EdgeFleet | None = None
        rss = Series()
        rss_launch = agg.rss_mb()
        try:
            t0_ms = int((time.time() + START_DELAY_S) * 1000)
            plans = station_plan(args.stations, seconds, t0_ms, args.seed, args.set_reps)
            check_in(broker, {p.node: f"m-{p.index + 1:04d}" for p in plans})
            fleet = EdgeFleet.start(broker, workdir, args.stations, seconds, t0_ms, args.seed, args.set_reps)
            t0 = t0_ms / 1000
            next_report = t0 + 60
            while fleet.proc.poll() is None and time.time() < t0 + seconds + 60:
                now = time.time()
                if now >= t0:
                    value = agg.rss_mb()
                    if value is None:
                        raise ServiceError(f"aggregator exited during the soak: {agg.tail()}")
                    rss.add(now - t0, value)
                if now >= next_report and not args.quiet:
                    print(f"soak: {now - t0:5.0f} s of {seconds:.0f}, aggregator RSS {rss.points[-1][1]:.1f} MB, "
                          f"{len(out.snapshot())} reps/sets/notifications received", file=sys.stderr)
                    next_report += 60
                time.sleep(1.0)
            edges = fleet.wait(timeout=60)
            last_frame_at = time.time()
            expected_reps = sum(p.reps for p in plans)
            expected_sets = sum(p.sets for p in plans)

            def all_stored() -> bool:
                stored = stored_checks(influxd, plans)
                return len(stored["reps"]) >= expected_reps and len(stored["sets"]) >= expected_sets

            drained = wait_until(all_stored, DRAIN_S, interval=1.0)
            drain_s = time.time() - last_frame_at
            time.sleep(2.0)  # anything extra (a duplicate) would arrive now
            stored = stored_checks(influxd, plans)
            # A stats point written after everything landed carries the final counters.
            settled_ms = int(time.time() * 1000)
            wait_until(lambda: bool(influx_rows(
                influxd, f"SELECT messages FROM aggregator_stats WHERE time > {settled_ms}ms")), 30, interval=1.0)
            stats = influx_rows(influxd, "SELECT * FROM aggregator_stats")
        finally:
            if fleet is not None:
                fleet.stop()
            exit_status = agg.stop()
            out.stop()
            sys_sub.stop()
        if exit_status != 0:
            errors.append(f"aggregator exited {exit_status}: {agg.tail()}")
        if not drained:
            errors.append(f"not everything was stored within {DRAIN_S:.0f} s after the last frame")
        return evaluate(args, plans, edges, stored, stats, out.snapshot(), sys_sub.snapshot(), rss, rss_launch,
                        t0, seconds, drain_s, errors)


TOPICS_REPS = "gym/main/nodes/+/reps"
TOPICS_SETS = "gym/main/nodes/+/sets"
TOPICS_NOTES = "gym/main/members/+/notifications"


def evaluate(args: argparse.Namespace, plans: list[Any], edges: dict[str, Any], stored: dict[str, Any],
             stats: list[dict[str, Any]], received: list[Any], sys_msgs: list[Any], rss: Series,
             rss_launch: float | None, t0: float, seconds: float, drain_s: float,
             errors: list[str]) -> dict[str, Any]:
    checks: dict[str, bool] = {}
    expected = {p.node: {"frames": p.frames, "reps": p.reps, "sets": p.sets} for p in plans}

    # Edge side: everything handed over was published.
    frames_total = sum(p.frames for p in plans)
    checks["edge: every frame published, none dropped or refused"] = (
        edges["handed"] == frames_total and sum(edges["published"].values()) == frames_total
        and not any(edges["dropped"].values()) and not any(edges["refused"].values())
        and not any(edges["rejected"].values()))
    checks["frames stored == published"] = stored["frames"] == {n: e["frames"] for n, e in expected.items()}

    # Reps.
    rep_rows = stored["reps"]
    stored_reps = Counter(r["node"] for r in rep_rows)
    keys = [(r["node"], r["set_id"], r["rep_index"]) for r in rep_rows]
    by_set: dict[str, list[int]] = defaultdict(list)
    for _, set_id, index in keys:
        by_set[set_id].append(index)
    checks["reps stored per station == expected"] = all(stored_reps[n] == e["reps"] for n, e in expected.items())
    checks["no rep stored twice, indexes 1..n in each set"] = (
        len(set(keys)) == len(keys) and all(sorted(v) == list(range(1, len(v) + 1)) for v in by_set.values()))
    checks["reps stored for the checked-in member"] = all(
        r["member"] == f"m-{int(r['node'].split('-')[1]):04d}" for r in rep_rows)
    rep_msgs = [m.json() for m in received if m.topic.endswith("/reps")]
    mqtt_reps = Counter(m["node"] for m in rep_msgs)
    mqtt_keys = [(m["node"], m["set_id"], m["rep_index"]) for m in rep_msgs]
    checks["rep messages on MQTT == expected, none twice"] = (
        all(mqtt_reps[n] == e["reps"] for n, e in expected.items()) and len(set(mqtt_keys)) == len(mqtt_keys))

    # Sets.
    set_rows = stored["sets"]
    stored_sets = Counter(r["node"] for r in set_rows)
    checks["sets stored per station == expected, all complete"] = (
        all(stored_sets[n] == e["sets"] for n, e in expected.items()) and all(r["complete"] is True for r in set_rows))
    checks["set rep counts add up to the reps"] = sum(int(r["reps"]) for r in set_rows) == sum(
        e["reps"] for e in expected.values())
    set_msgs = [m for m in received if m.topic.endswith("/sets")]
    notes = [m for m in received if m.topic.endswith("/notifications")]
    n_sets = sum(e["sets"] for e in expected.values())
    checks["one set message and one notification per set"] = (
        len(set_msgs) == n_sets and len(notes) == n_sets
        and len({m.json()["set_id"] for m in notes}) == n_sets)

    # The aggregator's own counters (its last stats point, written at shutdown at the latest).
    last = stats[-1] if stats else {}
    counters = {k: last.get(k) for k in ("messages", "frames", "reps", "sets", "duplicates", "gaps", "invalid",
                                          "inbox_dropped", "points_overflow", "points_rejected", "write_errors")}
    checks["aggregator: no duplicates, gaps, invalid, inbox drops, overflow, rejected points or write errors"] = (
        bool(last) and all(counters[k] == 0 for k in ("duplicates", "gaps", "invalid", "inbox_dropped",
                                                       "points_overflow", "points_rejected", "write_errors")))

    # Memory.
    rss_start, rss_mid, rss_end = rss.at(0.1 * seconds), rss.at(0.5 * seconds), rss.at(seconds)
    peak = max((v for _, v in rss.points), default=None)
    growth = None if rss_mid is None or rss_end is None else round(rss_end - rss_mid, 1)
    checks[f"aggregator RSS flat: growth over the second half <= {RSS_GROWTH_MB:g} MB"] = (
        growth is not None and growth <= RSS_GROWTH_MB)

    # Queues.
    buffer, inbox = Series(), Series()
    for row in stats:
        t = row["time"] / 1000 - t0
        if 0 <= t <= seconds:
            buffer.add(t, float(row.get("buffer") or 0))
            inbox.add(t, float(row.get("inbox") or 0))
    store, heap = Series(), Series()
    dropped_sys = 0.0
    for m in sys_msgs:
        t = m.at - t0
        value = float(m.payload.decode())
        if m.topic.endswith("store/messages/count") and 0 <= t <= seconds:
            store.add(t, value)
        elif m.topic.endswith("heap/current") and 0 <= t <= seconds:
            heap.add(t, value / 2**20)
        elif m.topic.endswith("publish/messages/dropped"):
            dropped_sys = max(dropped_sys, value)
    one_second = float(len(plans) * FPS)
    queue_checks = {name: _bounded_growth(series, seconds, one_second)
                    for name, series in (("broker stored messages", store), ("aggregator writer buffer", buffer),
                                         ("aggregator inbox", inbox))}
    for name, (ok, _, _) in queue_checks.items():
        checks[f"{name} not growing"] = ok
    checks["broker dropped no publish"] = dropped_sys == 0

    return {
        "stations": len(plans), "fps": FPS, "seconds": seconds, "set_reps": args.set_reps,
        "load_average_end": load_average(),
        "expected": {"frames": frames_total, "reps": sum(e["reps"] for e in expected.values()), "sets": n_sets},
        "stored": {"frames": sum(stored["frames"].values()), "reps": len(rep_rows), "sets": len(set_rows)},
        "mqtt": {"reps": len(rep_msgs), "sets": len(set_msgs), "notifications": len(notes)},
        "edges": edges, "aggregator_counters": counters, "drain_s": round(drain_s, 1),
        "aggregator_rss_mb": {"launch": rss_launch, "start_10pct": rss_start, "middle": rss_mid, "end": rss_end,
                              "peak": peak, "growth_second_half": growth,
                              "slope_second_half_mb_per_h": _round(rss.slope_per_hour(seconds / 2, seconds))},
        "queues": {name: {"first_third_max": first, "last_third_max": last}
                   for name, (_, first, last) in queue_checks.items()},
        "broker_heap_mb": {"start": _round(heap.at(0.1 * seconds)), "middle": _round(heap.at(0.5 * seconds)),
                           "end": _round(heap.at(seconds))},
        "checks": checks, "errors": errors,
    }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def print_report(r: dict[str, Any]) -> None:
    e, s, m = r["expected"], r["stored"], r["mqtt"]
    print(f"soak: {r['stations']} stations x {r['fps']} frames/s for {r['seconds'] / 60:g} min through mosquitto, "
          f"the formcheck aggregator process (production defaults) and influxd; sets of {r['set_reps']} reps with "
          f"50 s rests; load average at the end {r['load_average_end'][0]:.1f}")
    print(f"frames  expected {e['frames']:>7}  stored {s['frames']:>7}")
    print(f"reps    expected {e['reps']:>7}  stored {s['reps']:>7}  on MQTT {m['reps']}")
    print(f"sets    expected {e['sets']:>7}  stored {s['sets']:>7}  on MQTT {m['sets']}, notifications "
          f"{m['notifications']}")
    late = r["edges"]["late_ms"]
    print(f"edge publishers: published {sum(r['edges']['published'].values())}, dropped "
          f"{sum(r['edges']['dropped'].values())}, refused {sum(r['edges']['refused'].values())}; frames handed "
          f"over late by p50 {late['p50']} ms, p99 {late['p99']} ms, max {late['max']} ms")
    print(f"aggregator counters: {r['aggregator_counters']}")
    rss = r["aggregator_rss_mb"]
    print(f"aggregator RSS MB (process + worker): launch {rss['launch']}, 10 % {rss['start_10pct']}, 50 % "
          f"{rss['middle']}, end {rss['end']}, peak {rss['peak']}; second half {rss['growth_second_half']:+} MB "
          f"({rss['slope_second_half_mb_per_h']} MB/h)")
    for name, q in r["queues"].items():
        print(f"{name}: max over the first third {q['first_third_max']}, over the last third {q['last_third_max']}")
    heap = r["broker_heap_mb"]
    print(f"broker heap MB: 10 % {heap['start']}, 50 % {heap['middle']}, end {heap['end']}")
    print(f"last rep/set stored {r['drain_s']} s after the edge nodes stopped")
    for name, ok in r["checks"].items():
        print(f"  {'OK    ' if ok else 'FAILED'} {name}")
    for error in r["errors"]:
        print(f"ERROR: {error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stations", type=int, default=10, help="edge nodes (default 10)")
    parser.add_argument("--minutes", type=float, default=10.0, help="duration at 30 frames/s (default 10)")
    parser.add_argument("--set-reps", type=int, default=10, help="reps per set, 50 s rest between sets (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the synthetic frames (default 1)")
    parser.add_argument("--keep", metavar="DIR", help="keep the aggregator and edge logs in DIR")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.stations < 1 or args.minutes <= 0 or args.set_reps < 1:
        parser.error("need at least 1 station, a positive duration and at least 1 rep per set")
    result, status = run_and_report("soak", lambda: run(args), print_report, args.json)
    if result is None or status:
        return status
    return 0 if all(result["checks"].values()) else 1

if __name__ == "__main__":
    sys.exit(main())
