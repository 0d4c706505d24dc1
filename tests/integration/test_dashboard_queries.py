"""Every query of the generated dashboards, run against data that went through the real pipeline.

Real Mosquitto and influxd, the real aggregator (in a thread): synthetic squat frames for three stations with
node statuses, check-ins, a check-out and node stats are published over MQTT, the aggregator turns them into
reps, sets, session and node_status points in InfluxDB, a second aggregator process then starts (fresh session:
the broker redelivers the retained statuses and check-ins), and then every panel target and template-variable
query in ``dashboards/json/*.json`` is interpolated the way Grafana's InfluxDB datasource does it
(``$timeFilter``, ``$__interval``, ``$node``/``$member``) and run. Each must succeed and return what was
published.

Stations (each announces itself ``online``, retained, with its own time, as the edge does):

* rack-1, alice checked in: a set of 3 clean reps, a set of 2 reps with caved-in knees (both end after the rest
  timeout), then an open set with 1 rep; node stats fresh, last frame seconds ago (live phase). Tile: alice,
  ONLINE.
* rack-2, bob checked in: 4 reps (2 knees_in, 1 forward_lean, 1 clean), set ended by bob's check-out (empty
  retained payload); stats fresh. Tile: no member, ONLINE.
* rack-3, carol checked in: 2 clean reps ten minutes ago, stats only from then, then the node's Last Will
  (``offline``, no time of its own). Tile: carol (still checked in), OFFLINE, stats STALE, no live phase.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from formcheck.local_services import Influxd, Mosquitto, ServiceError, influx_query
from formcheck_aggregator.config import AggregatorConfig, load_config
from formcheck_aggregator.points import FrameSampler
from formcheck_aggregator.service import Aggregator
from formcheck_dashboards import build, grafana
from formcheck_protocol.messages import (
    FAULTS,
    PHASES,
    Fault,
    FrameMessage,
    NodeState,
    NodeStats,
    NodeStatus,
    Phase,
    SessionMessage,
)

DB = "formcheck"
FRAME_MS = 33
INTERVAL = "5s"          # the datasource's minimum interval (timeInterval), what a 1 h range gets
INTERVAL_MS = 5000
REST_S = 2.0             # sets.rest_timeout_s for this test
STAND, DOWN, HOLD, UP = 30, 24, 9, 24
REST_FRAMES = int(REST_S * 1000 / FRAME_MS) + 40
MEMBERS = {"rack-1": "alice", "rack-2": "bob", "rack-3": "carol"}
NODES = sorted(MEMBERS)

pytestmark = pytest.mark.broker


# --- synthetic edge output ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rep:
    """One squat; ``bad`` frames are flagged with ``fault``: knees_in on bottom + ascent, forward_lean at the bottom."""

    fault: Fault | None = None


@dataclass
class Station:
    node: str
    ts: int                                  # capture time of the next frame
    boot: str = field(default_factory=lambda: secrets.token_hex(8))
    seq: int = 0
    frames: list[FrameMessage] = field(default_factory=list)
    reps: list[Rep] = field(default_factory=list)

    def _frame(self, phase: Phase, depth: float, fault: Fault | None = None) -> FrameMessage:
        t = (depth + 1.0) / 1.1                                    # hip_depth -1.0 standing → +0.1 bottom
        rest = round(0.1 / (len(PHASES) - 1), 4)
        frame = FrameMessage(
            node=self.node, boot=self.boot, seq=self.seq, ts=self.ts, exercise="squat", phase=phase,
            phase_p={p: (0.9 if p == phase else rest) for p in PHASES},
            form="bad" if fault else "good", bad_p=0.85 if fault else 0.05, faults=[fault] if fault else [],
            angles={"hip_depth": round(depth, 4), "knee": round(170.0 - 100.0 * t, 2), "trunk_lean": 12.0},
            vis=0.92,
        )
        self.seq += 1
        self.ts += FRAME_MS
        self.frames.append(frame)
        return frame

    def stand(self, n: int) -> list[FrameMessage]:
        return [self._frame("standing", -1.0) for _ in range(n)]

    def squat(self, rep: Rep) -> list[FrameMessage]:
        self.reps.append(rep)
        knees = rep.fault if rep.fault == "knees_in" else None
        lean = rep.fault if rep.fault == "forward_lean" else None
        out = [self._frame("descending", -1.0 + 1.1 * (k + 1) / (DOWN + 1)) for k in range(DOWN)]
        out += [self._frame("bottom", 0.1, knees or lean) for _ in range(HOLD)]
        out += [self._frame("ascending", 0.1 - 1.1 * (k + 1) / (UP + 1), knees) for k in range(UP)]
        return out + self.stand(STAND)

    def set_of(self, *reps: Rep, rest: int = REST_FRAMES) -> list[FrameMessage]:
        out = self.stand(STAND)
        for rep in reps:
            out += self.squat(rep)
        return out + self.stand(rest)

    def status(self, state: NodeState, ts: int | None) -> NodeStatus:
        """What the edge publishes: ``online``/``stopped`` with its time, the Last Will ``offline`` without."""
        return NodeStatus(state=state, node=self.node, boot=self.boot, ts=ts)

    def stats(self, ts: int, dropped: int, fps: float = 29.5) -> NodeStats:
        return NodeStats(node=self.node, boot=self.boot, ts=ts, fps=fps, capture_fps=30.0, infer_ms=21.5,
                         pose_ms=17.0, dropped=dropped, unpublished=0, queue=1, out_queue=0,
                         frames=self.seq, no_person=0, cpu_temp=61.5, rss_mb=180.0)


def topic(node: str, kind: str) -> str:
    return f"gym/main/nodes/{node}/{kind}"


class Publisher:
    """MQTT 5 at QoS 1; ``send`` returns once the broker acknowledged everything."""

    def __init__(self, broker: Mosquitto) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dash-pub-{secrets.token_hex(4)}",
                                  protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(200)
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        self.client.connect(broker.host, broker.port, keepalive=5)
        self.client.loop_start()
        assert connected.wait(5), "publisher could not connect"

    def send(self, messages: Sequence[tuple[str, bytes]], retain: bool = False, timeout: float = 20.0) -> None:
        infos = [self.client.publish(t, p, qos=1, retain=retain) for t, p in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(timeout=max(0.01, deadline - time.monotonic()))
            assert info.is_published(), f"{len(infos)} publishes not acknowledged within {timeout} s"

    def frames(self, frames: Sequence[FrameMessage]) -> None:
        self.send([(topic(f.node, "frames"), f.to_json()) for f in frames])

    def stats(self, stats: Sequence[NodeStats]) -> None:
        self.send([(topic(s.node, "stats"), s.to_json()) for s in stats])

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# --- InfluxDB ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    name: str
    tags: dict[str, str]
    rows: list[dict[str, Any]]


def series(url: str, q: str) -> list[Series]:
    """All series of one statement (``influx_query`` returns only the first); raises on any InfluxQL error."""
    request = urllib.request.Request(
        f"{url}/query", data=urllib.parse.urlencode({"q": q, "db": DB, "epoch": "ms"}).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.loads(response.read())
    result = body["results"][0]
    if "error" in result:
        raise ServiceError(f"InfluxQL {q!r} failed: {result['error']}")
    return [Series(s.get("name", ""), s.get("tags") or {}, [dict(zip(s["columns"], v, strict=True))
                                                            for v in s.get("values") or []])
            for s in result.get("series") or []]


def rows(url: str, q: str) -> list[dict[str, Any]]:
    try:
        return influx_query(url, q, db=DB)
    except ServiceError as exc:
        if "database not found" in str(exc):
            return []
        raise


def wait_for(what: str, predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


def aggregator_config(broker: Mosquitto, influxd: Influxd, agg_id: str, stats_interval_s: float) -> AggregatorConfig:
    return load_config(None, {
        "id": agg_id,
        "mqtt": {"host": broker.host, "port": broker.port, "keepalive_s": 5, "connect_timeout_s": 5,
                 "reconnect_min_s": 0.2, "reconnect_max_s": 1},
        "influx": {"url": influxd.url, "database": DB, "flush_interval_s": 0.1, "timeout_s": 5,
                   "retry_min_s": 0.1, "retry_max_s": 1},
        "sets": {"rest_timeout_s": REST_S},
        "stats_interval_s": stats_interval_s,
        "workers": "thread",  # one restart runs with a stats interval of an hour: a worker's snapshot would be that old
    }, environ={})


@contextmanager
def running(agg: Aggregator) -> Iterator[Aggregator]:
    stop = threading.Event()
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(agg.run(stop)), name="aggregator", daemon=True)
    thread.start()
    try:
        yield agg
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive(), "aggregator did not stop"
    assert outcome == [0], outcome


@pytest.fixture
def aggregator(mosquitto: Mosquitto, influxd: Influxd) -> Iterator[Aggregator]:
    with running(Aggregator(aggregator_config(mosquitto, influxd, "agg-dash", stats_interval_s=0.5))) as agg:
        yield agg


# --- the test ---------------------------------------------------------------------------------------------------


@dataclass
class Published:
    stations: dict[str, Station]
    dropped: dict[str, list[int]]
    reps: dict[str, list[dict[str, Any]]] = field(default_factory=dict)   # node → stored rep rows, by time
    sets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)   # member → stored set rows, by time


def points_per_node(url: str, measurement: str) -> dict[str, int]:
    found = series(url, f'SELECT count(*) FROM "{measurement}" GROUP BY "node"')
    return {s.tags["node"]: max(v for k, v in s.rows[0].items() if k != "time") for s in found}


def restart_aggregator(broker: Mosquitto, influxd: Influxd) -> Aggregator:
    """Another aggregator process, with a session of its own: the broker sends it every retained message again.

    Statuses and check-ins carrying their own time overwrite the points they wrote the first time; the Last Will
    has no time and is stored again at its new receive time (the same state again, not a new transition); the
    check-out is not redelivered at all (an empty retained payload clears the topic).
    """
    agg = Aggregator(aggregator_config(broker, influxd, "agg-dash-restarted", stats_interval_s=3600))
    with running(agg):
        wait_for("the retained statuses and check-ins", lambda: agg.counters["messages"] >= 5, 10)
        time.sleep(0.3)                       # anything beyond the five would arrive now
    return agg


def load_pipeline(broker: Mosquitto, influxd: Influxd, agg: Aggregator) -> Published:
    now = int(time.time() * 1000)
    r1 = Station("rack-1", ts=now - 40_000)
    r2 = Station("rack-2", ts=now - 25_000)
    r3 = Station("rack-3", ts=now - 600_000)
    pub = Publisher(broker)
    try:
        # Statuses and check-ins are retained: the aggregator gets them when it subscribes, before any frame.
        pub.send([(topic(st.node, "status"), st.status("online", now - 720_000).to_json()) for st in (r1, r2, r3)]
                 + [(topic(n, "session"), SessionMessage(member=m, ts=now - 700_000).to_json())
                    for n, m in MEMBERS.items()], retain=True)
        wait_for("the aggregator to connect", agg.connected.is_set, 10)
        pub.frames(r3.set_of(Rep(), Rep()))
        pub.frames(r2.set_of(Rep("knees_in"), Rep("knees_in"), Rep("forward_lean"), Rep(), rest=0))
        pub.frames(r1.set_of(Rep(), Rep(), Rep()) + r1.set_of(Rep("knees_in"), Rep("knees_in")))
        dropped = {"rack-1": [0, 2, 2, 5, 7], "rack-2": [0, 0, 1, 1, 1], "rack-3": [3, 3, 3, 3, 3]}
        pub.stats([r3.stats(r3.ts - 25_000 + 5_000 * i, d) for i, d in enumerate(dropped["rack-3"])])
        pub.stats([st.stats(now - 24_000 + 5_000 * i, d) for st in (r1, r2) for i, d in enumerate(dropped[st.node])])

        def stored_sets() -> int:
            return len(rows(influxd.url, 'SELECT "reps" FROM "set"'))

        wait_for("3 sets (rest timeout)", lambda: stored_sets() == 3, 20)
        pub.send([(topic("rack-2", "session"), b"")], retain=True)        # check-out ends bob's set
        pub.send([(topic("rack-3", "status"), r3.status("offline", None).to_json())], retain=True)  # rack-3's Will
        wait_for("bob's set (check-out)", lambda: stored_sets() == 4, 15)
        wait_for("the check-out and the Last Will", lambda: points_per_node(influxd.url, "session") == {
            "rack-1": 1, "rack-2": 2, "rack-3": 1} and points_per_node(influxd.url, "node_status") == {
            "rack-1": 1, "rack-2": 1, "rack-3": 2}, 10)
        # Nobody at rack-2 any more: its node goes idle (an online status saying so, retained like every status).
        idle = r2.status("online", int(time.time() * 1000)).model_copy(update={"activity": "idle"})
        pub.send([(topic("rack-2", "status"), idle.to_json())], retain=True)
        wait_for("rack-2's idle status", lambda: points_per_node(influxd.url, "node_status")["rack-2"] == 2, 10)

        # Aggregator counters must be seen at 0 in an earlier interval than the bad input below.
        first_stats = 'SELECT first("invalid") FROM "aggregator_stats"'
        wait_for("aggregator_stats", lambda: bool(rows(influxd.url, first_stats)), 10)
        first = rows(influxd.url, first_stats)
        assert first[0]["first"] == 0
        wait_for("a later stats interval", lambda: time.time() * 1000 // INTERVAL_MS > first[0]["time"] // INTERVAL_MS
                 and len(rows(influxd.url, 'SELECT "invalid" FROM "aggregator_stats"')) >= 2, 8)
        # Now the live part: rack-1 is mid-session (an open set of one rep), and both racks report stats.
        # Capture time jumps to "now" (the node stood idle meanwhile), so the last frame is seconds old.
        r1.ts = max(r1.ts, int(time.time() * 1000) - (2 * STAND + DOWN + HOLD + UP + 10) * FRAME_MS - 100)
        live = r1.stand(STAND) + r1.squat(Rep()) + r1.stand(10)
        assert live[-1].ts <= int(time.time() * 1000), "live frames must not be in the future"
        pub.frames(live)
        pub.send([(topic("rack-1", "frames"), live[5].to_json()),                 # a duplicate
                  (topic("rack-2", "frames"), b'{"v": 1, "node": "rack-2"}')])      # and an invalid message
        stats_now = int(time.time() * 1000)
        pub.stats([st.stats(stats_now, dropped[st.node][-1]) for st in (r1, r2)])
        for st in (r1, r2):
            dropped[st.node].append(dropped[st.node][-1])
    finally:
        pub.close()

    def settled() -> bool:
        last = rows(influxd.url, 'SELECT last("invalid") AS "invalid", last("duplicates") AS "dup" '
                                 'FROM "aggregator_stats"')
        reps = rows(influxd.url, """SELECT count("score") FROM "rep" WHERE "node" = 'rack-1'""")
        stats = rows(influxd.url, f'SELECT count("fps") FROM "node_stats" WHERE time >= {stats_now}ms')
        return (bool(last) and last[0]["invalid"] == 1 and last[0]["dup"] == 1 and bool(reps)
                and reps[0]["count"] == 6 and bool(stats) and stats[0]["count"] == 2)

    wait_for("the live frames, stats and counters", settled, 15)
    # The throughput panel needs the aggregator's counters over at least three intervals.
    intervals = (f'SELECT last("messages") FROM "aggregator_stats" WHERE time > now() - 1h '
                 f"GROUP BY time({INTERVAL}) fill(none)")
    wait_for("three stats intervals", lambda: len(rows(influxd.url, intervals)) >= 3, 12)

    published = Published({s.node: s for s in (r1, r2, r3)}, dropped)
    for node in NODES:
        published.reps[node] = rows(influxd.url, f"""SELECT * FROM "rep" WHERE "node" = '{node}'""")
    for member in MEMBERS.values():
        published.sets[member] = rows(influxd.url, f"""SELECT * FROM "set" WHERE "member" = '{member}'""")
    return published


def test_every_dashboard_query_returns_the_published_data(
    mosquitto: Mosquitto, influxd: Influxd, aggregator: Aggregator
) -> None:
    data = load_pipeline(mosquitto, influxd, aggregator)
    restarted = restart_aggregator(mosquitto, influxd)
    invalid = restarted.snapshot().get("invalid", {})
    assert restarted.counters["messages"] == 5 and not any(invalid.values()), (restarted.counters, invalid)
    assert points_per_node(influxd.url, "session") == {"rack-1": 1, "rack-2": 2, "rack-3": 1}
    assert points_per_node(influxd.url, "node_status") == {"rack-1": 1, "rack-2": 2, "rack-3": 3}
    # What the aggregator stored is what was published (the dashboards are checked against these rows).
    assert {n: len(r) for n, r in data.reps.items()} == {n: len(s.reps) for n, s in data.stations.items()}
    assert {m: [s["reps"] for s in rows_] for m, rows_ in data.sets.items()} == {
        "alice": [3, 2], "bob": [4], "carol": [2]}

    now = int(time.time() * 1000)
    checked: dict[tuple[str, str, str], list[Series]] = {}
    models = {name: json.loads(text) for name, text in build.render_all().items()}
    for name, model in models.items():
        committed = json.loads((build.JSON_DIR / name).read_text())
        assert committed == model, f"{name} is stale: run '{build.REBUILD_COMMAND}'"
        variables = grafana.variables_of(model)
        for query in grafana.queries(model):
            assert query.datasource_uid == "formcheck-influxdb"
            # A repeated panel runs once per value; otherwise $node is All (every station).
            selections: list[dict[str, list[str]]] = (
                [{"node": [n], "member": ["alice"]} for n in NODES] if query.repeat == "node"
                else [{"node": NODES, "member": [m]} for m in ("alice", "bob")] if "$member" in query.query
                else [{"node": NODES, "member": ["alice"]}])
            for values in selections:
                text = grafana.interpolate(query.query, time_from_ms=now - 3_600_000, time_to_ms=now,
                                           interval=INTERVAL, values=values, variables=variables)
                assert grafana.unreplaced_macros(text) == [], text
                influx_query(influxd.url, text, db=DB)                       # no InfluxQL error
                key = (model["uid"], query.panel, query.ref_id)
                if query.repeat == "node":
                    key = (*key[:2], f"{query.ref_id}@{values['node'][0]}")
                elif "$member" in query.query:
                    key = (*key[:2], f"{query.ref_id}@{values['member'][0]}")
                checked[key] = series(influxd.url, text)

    expectations = Expectations(data, checked)
    expectations.gym_floor()
    expectations.member()
    expectations.fleet_health()
    unchecked = sorted(set(checked) - expectations.seen)
    assert not unchecked, f"queries without an expectation: {unchecked}"


class Expectations:
    def __init__(self, data: Published, results: dict[tuple[str, str, str], list[Series]]) -> None:
        self.data = data
        self.results = results
        self.seen: set[tuple[str, str, str]] = set()

    def get(self, uid: str, panel: str, ref: str) -> list[Series]:
        key = (f"formcheck-{uid}", panel, ref)
        assert key in self.results, f"no query {key}; have {sorted(k for k in self.results if k[0].endswith(uid))}"
        self.seen.add(key)
        return self.results[key]

    def one(self, uid: str, panel: str, ref: str) -> list[dict[str, Any]]:
        found = self.get(uid, panel, ref)
        assert len(found) == 1, (panel, ref, found)
        return found[0].rows

    def by_tag(self, uid: str, panel: str, ref: str, tag: str) -> dict[str, list[dict[str, Any]]]:
        return {s.tags[tag]: s.rows for s in self.get(uid, panel, ref)}

    @staticmethod
    def values(rows_: list[dict[str, Any]], column: str | None = None) -> list[Any]:
        column = column or next(c for c in rows_[0] if c != "time")
        return [r[column] for r in rows_]

    def faults(self, uid: str, panel: str, suffix: str, expected: dict[str, int]) -> None:
        """One target per known fault (refIds A, B, ...); exactly the injected ones return a count."""
        counts: dict[str, int] = {}
        for i, fault in enumerate(FAULTS):
            found = self.get(uid, panel, chr(ord("A") + i) + suffix)
            if found:
                (only,) = found
                counts[fault] = only.rows[0][fault]
        assert counts == expected, (panel, suffix)
        # Grafana: reduce (series to rows, sum) → sort by Total, descending → the first row is the top fault.
        assert max(counts, key=lambda f: counts[f]) == max(expected, key=lambda f: expected[f])

    def gym_floor(self) -> None:
        uid = "gym-floor"
        assert {r["value"] for r in self.one(uid, "variable node", "node")} == set(NODES)
        reps, stations = self.data.reps, self.data.stations
        # Member: the last session point's member tag; bob checked out (no member: null, shown as a dash), carol
        # is still checked in at an offline node.
        member = {n: self.values(self.one(uid, "$node", f"A@{n}"), "member") for n in NODES}
        assert member == {"rack-1": ["alice"], "rack-2": [None], "rack-3": ["carol"]}
        checked_in = {n: self.values(self.one(uid, "$node", f"A@{n}"), "checked_in") for n in NODES}
        assert checked_in == {"rack-1": [True], "rack-2": [False], "rack-3": [True]}
        for node in NODES:
            (tile,) = self.one(uid, "$node", f"B@{node}")
            last = reps[node][-1]
            assert (tile["reps"], tile["grade"]) == (last["rep_index"], last["grade"])
        assert [r["reps"] for r in self.one(uid, "$node", "B@rack-1")] == [1]   # the open set has one rep
        assert self.values(self.one(uid, "$node", "C@rack-1")) == ["standing"]
        assert self.get(uid, "$node", "C@rack-3") == []                         # no frame in the last 30 s
        rack2 = self.get(uid, "$node", "C@rack-2")                              # ~15 s old: live or not
        assert rack2 == [] or self.values(rack2[0].rows) == ["standing"]
        # Status: the node's own last status; the Last Will made rack-3 offline. Activity from the same point:
        # rack-2 went idle, rack-1 is active, an offline node has none.
        status = {n: self.values(self.one(uid, "$node", f"D@{n}"), "status") for n in NODES}
        assert status == {"rack-1": ["online"], "rack-2": ["online"], "rack-3": ["offline"]}
        activity = {n: self.values(self.one(uid, "$node", f"D@{n}"), "activity") for n in NODES}
        assert activity == {"rack-1": ["active"], "rack-2": ["idle"], "rack-3": [None]}
        # Stats STALE (a row, 0) only where no node_stats arrived for ~60 s: rack-3.
        assert self.get(uid, "$node", "E@rack-1") == [] and self.get(uid, "$node", "E@rack-2") == []
        assert self.values(self.one(uid, "$node", "E@rack-3"), "stats") == [0]

        all_reps = [r for node in NODES for r in reps[node]]
        grades = {g: self.values(rows_)[0] for g, rows_ in self.by_tag(uid, "Grades today", "A", "grade").items()}
        assert grades == Counter(r["grade"] for r in all_reps) and sum(grades.values()) == 12
        per_hour = self.by_tag(uid, "Reps per hour", "A", "node")
        assert {n: sum(self.values(r)) for n, r in per_hour.items()} == {n: len(s.reps) for n, s in stations.items()}
        self.faults(uid, "Top fault today", "", {"knees_in": 4, "forward_lean": 1})

    def member(self) -> None:
        uid = "member"
        assert {r["value"] for r in self.one(uid, "variable member", "member")} == set(MEMBERS.values())
        for member, node in (("alice", "rack-1"), ("bob", "rack-2")):
            sets = self.data.sets[member]
            reps = self.data.reps[node]
            (totals,) = self.one(uid, "In this time range", f"A@{member}")
            assert (totals["sets"], totals["reps"]) == (len(sets), sum(s["reps"] for s in sets))
            assert totals["mean score"] == pytest.approx(sum(s["score_mean"] for s in sets) / len(sets))
            assert totals["worst rep score"] == min(s["score_min"] for s in sets)
            grades = self.by_tag(uid, "Rep grades", f"A@{member}", "grade")
            assert {g: self.values(r)[0] for g, r in grades.items()} == Counter(r["grade"] for r in reps)
            by_grade = self.by_tag(uid, "Sets: reps per set, coloured by set grade", f"A@{member}", "grade")
            points = sorted((r["time"], g, r["reps"]) for g, rows_ in by_grade.items() for r in rows_)
            assert points == [(s["time"], s["grade"], s["reps"]) for s in sets]
            trend = self.one(uid, "Score trend", f"A@{member}")
            scores = [r["score"] for r in reps]
            assert trend and all(min(scores) <= r["rep score"] <= max(scores) for r in trend)
            assert self.values(self.one(uid, "Score trend", f"B@{member}")) == [s["score_mean"] for s in sets]
            table = self.one(uid, "Sets", f"A@{member}")
            assert [(r["node"], r["reps"], r["grade"], r["complete"], r["ended_by"]) for r in table] == [
                (node, s["reps"], s["grade"], True, s["ended_by"]) for s in sets]
        assert [s["ended_by"] for s in self.data.sets["alice"]] == ["rest", "rest"]
        assert [s["ended_by"] for s in self.data.sets["bob"]] == ["checkout"]
        self.faults(uid, "Faults (reps flagged)", "@alice", {"knees_in": 2})
        self.faults(uid, "Faults (reps flagged)", "@bob", {"knees_in": 2, "forward_lean": 1})

    def fleet_health(self) -> None:
        uid = "fleet-health"
        assert {r["value"] for r in self.one(uid, "variable node", "node")} == set(NODES)
        status = {n: self.values(r) for n, r in self.by_tag(uid, "Node status", "A", "node").items()}
        assert status == {"rack-1": ["online"], "rack-2": ["online"], "rack-3": ["offline"]}

        def per_node(panel: str, ref: str = "A") -> dict[str, list[Any]]:
            found = self.by_tag(uid, panel, ref, "node")
            assert set(found) == set(NODES), (panel, ref, sorted(found))
            return {n: [v for v in self.values(r) if v is not None] for n, r in found.items()}   # fill(null)

        assert all(set(v) == {29.5} for v in per_node("Frames classified per second").values())
        assert all(set(v) == {21.5} for v in per_node("Inference time per frame", "A").values())
        assert all(set(v) == {17.0} for v in per_node("Inference time per frame", "B").values())
        dropped = per_node("Dropped frames", "A")
        assert {n: sum(v) for n, v in dropped.items()} == {
            n: d[-1] - d[0] for n, d in self.data.dropped.items()}
        assert all(set(v) == {0} for v in per_node("Dropped frames", "B").values())
        # Every frame received is counted (points.FrameSampler: each point counts the frames it stands for), and
        # fewer points are stored than frames (every phase change plus frame_points_per_s a second).
        received = per_node("Frames received and stored per station", "A")
        assert {n: sum(v) for n, v in received.items()} == {n: len(s.frames) for n, s in self.data.stations.items()}
        stored = per_node("Frames received and stored per station", "B")
        for n, s in self.data.stations.items():
            sampler = FrameSampler(AggregatorConfig().influx.frame_points_per_s)
            sampled = sum(1 for f in s.frames if sampler.take(f))
            # The sampled ones, and the last frames before each of the node's stats and statuses (flush).
            assert sampled <= sum(stored[n]) <= sampled + 10 and sum(stored[n]) <= 0.3 * len(s.frames), (n, stored)
        assert all(set(v) == {1} for v in per_node("Queues", "A").values())
        assert all(set(v) == {0} for v in per_node("Queues", "B").values())
        assert all(set(v) == {61.5} for v in per_node("CPU temperature").values())

        def per_agg(panel: str, ref: str) -> list[Any]:
            found = self.by_tag(uid, panel, ref, "aggregator")
            assert set(found) == {"agg-dash"}, (panel, ref)
            return [v for v in self.values(found["agg-dash"]) if v is not None]

        throughput = per_agg("Aggregator throughput", "A")
        assert len(throughput) >= 2 and all(v >= 0 for v in throughput) and max(throughput) > 0
        assert max(per_agg("Aggregator throughput", "B")) > 0
        assert sum(per_agg("Invalid messages", "A")) == 1
        assert sum(per_agg("Invalid messages", "B")) == 1
        assert sum(per_agg("Invalid messages", "C")) == 0
        for ref in "ABC":
            assert sum(per_agg("Write errors", ref)) == 0
        # Both series are there and within the aggregator's bounds (the writer's buffer and the inbox).
        limits = AggregatorConfig()
        buffer, inbox = per_agg("Buffer depth", "A"), per_agg("Buffer depth", "B")
        assert buffer and all(0 <= v <= limits.influx.buffer_max_points for v in buffer), buffer
        assert inbox and all(0 <= v <= 2 * limits.mqtt.receive_maximum + 64 for v in inbox), inbox
