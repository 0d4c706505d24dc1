"""InfluxWriter against a real influxd 1.6.7: read-back, overwrite, rejections, outages, overflow, auth."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from formcheck.local_services import Influxd, ServiceError, influx_query, running_influxd, start_influxd
from formcheck_aggregator.influx import InfluxWriter, Point, WriterClosedError
from formcheck_aggregator.influx_config import InfluxSection
from tests.waiting import wait_until

DB = "formcheck"


def config(url: str, **overrides: Any) -> InfluxSection:
    values: dict[str, Any] = {"url": url, "flush_interval_s": 0.05, "timeout_s": 2.0, "retry_min_s": 0.05,
                              "retry_max_s": 0.3}
    return InfluxSection(**{**values, **overrides})


def now_ms() -> int:
    return int(time.time() * 1000)


def rep(k: int, ts: int, **tags: str) -> Point:
    return Point("rep", {"site": "main", "node": "n1", **tags}, {"score": 50.0 + k, "rep_index": k}, ts)


def frame(k: int, ts: int) -> Point:
    return Point("frame", {"site": "main", "node": "n1"}, {"seq": k, "phase": "standing"}, ts, durable=False,
                 retention="frames")


def count(url: str, q: str) -> int:
    rows = influx_query(url, q, db=DB)
    return int(next(v for k, v in rows[0].items() if k != "time")) if rows else 0


class Acks:
    """Records on_done calls; thread-safe."""

    def __init__(self) -> None:
        self.done: list[int] = []
        self.lock = threading.Lock()

    def callback(self, k: int) -> Callable[[], None]:
        def on_done() -> None:
            with self.lock:
                self.done.append(k)
        return on_done

    def snapshot(self) -> list[int]:
        with self.lock:
            return list(self.done)



def test_points_are_written_and_read_back(influxd: Influxd) -> None:
    ts = now_ms()
    acks = Acks()
    with InfluxWriter(config(influxd.url)) as writer:
        writer.submit([rep(k, ts + k, member="m-7") for k in range(5)], acks.callback(0))
        writer.submit([frame(k, ts + k) for k in range(20)], acks.callback(1))
        writer.submit([Point("set", {"node": "n1", "grade": "B"},
                             {"reps": 5, "complete": True, "main_fault": 'knees "in"\\', "score_mean": 71.25}, ts)],
                      acks.callback(2))
        assert writer.flush(5)
        stats = writer.stats()
    assert acks.snapshot() == [0, 1, 2]
    assert (stats.points_written, stats.buffer, stats.write_errors_total, stats.last_error) == (26, 0, 0, None)
    reps = influxd.query("SELECT * FROM rep ORDER BY time", db=DB)
    assert [r["rep_index"] for r in reps] == list(range(5))
    assert reps[0] == {"time": ts, "member": "m-7", "node": "n1", "site": "main", "score": 50.0, "rep_index": 0}
    assert influxd.query('SELECT * FROM "set"', db=DB) == [
        {"time": ts, "complete": True, "grade": "B", "main_fault": 'knees "in"\\', "node": "n1", "reps": 5,
         "score_mean": 71.25}]
    # frames went to their own retention policy, reps to the default one
    assert count(influxd.url, 'SELECT count(seq) FROM "frames"."frame"') == 20
    assert count(influxd.url, "SELECT count(seq) FROM frame") == 0
    policies = {r["name"]: r for r in influxd.query(f"SHOW RETENTION POLICIES ON {DB}")}
    assert policies["frames"]["duration"] == "168h0m0s"
    # Member data is kept 730 days by default (issue 13 item 8).
    assert policies["default"]["default"] is True and policies["default"]["duration"] == "17520h0m0s"


def test_identical_point_written_twice_is_one_row(influxd: Influxd) -> None:
    ts = now_ms()
    with InfluxWriter(config(influxd.url)) as writer:
        writer.submit([rep(1, ts)])
        assert writer.flush(5)
        writer.submit([rep(2, ts)])
        writer.submit([rep(3, ts), rep(4, ts)])  # same request: the later line wins
        assert writer.flush(5)
        assert writer.stats().points_written == 4
    assert influxd.query("SELECT score, rep_index FROM rep", db=DB) == [{"time": ts, "score": 54.0, "rep_index": 4}]


def test_rejected_points_are_counted_and_not_retried(influxd: Influxd) -> None:
    ts = now_ms()
    acks = Acks()
    good = [rep(k, ts + k) for k in range(3)]
    conflict = [Point("typed", {"node": "n1"}, {"x": 1}, ts), Point("typed", {"node": "n1"}, {"x": "one"}, ts + 1)]
    malformed = [Point("rep", {"node": "n1"}, {"score": float("nan")}, ts + 10),
                 Point("rep", {"node": "n1"}, {"score": 2**64}, ts + 11)]
    frames = [frame(k, ts + k) for k in range(3)]
    too_old = [frame(99, ts - 8 * 86_400_000)]  # frames are kept 7 days
    # a retry would wait at least retry_min_s: the elapsed time shows there was none
    with InfluxWriter(config(influxd.url, retry_min_s=2.0, retry_max_s=2.0, batch_size=100)) as writer:
        started = time.monotonic()
        writer.submit([*good, *conflict, *malformed, *frames, *too_old], acks.callback(0))
        assert writer.flush(5)
        elapsed = time.monotonic() - started
        stats = writer.stats()
    assert elapsed < 1.5
    assert acks.snapshot() == [0]
    assert stats.points_dropped_rejected == 4  # conflict 1 + NaN 1 + out-of-range int 1 + beyond retention 1
    assert stats.points_written == 7
    # 2 partial writes, plus the whole-request refusal 1.6.7 gives a type conflict in a new shard
    assert stats.write_errors["4xx"] in (2, 3) and stats.write_errors_total == stats.write_errors["4xx"]
    assert stats.last_error is not None and "partial write" in stats.last_error
    assert stats.buffer == 0
    assert count(influxd.url, "SELECT count(score) FROM rep") == 3
    assert influxd.query("SELECT x FROM typed", db=DB) == [{"time": ts, "x": 1}]
    assert count(influxd.url, 'SELECT count(seq) FROM "frames"."frame"') == 3


def test_awkward_names_round_trip(influxd: Influxd) -> None:
    ts = now_ms()
    tags = {"k ey,=": "v a,l=u e", "unicode": "Grüße 💪", "tab": "a\tb", 'quote"d': 'x"y"z', "eq": "=,= "}
    fields = {"f,i=e ld": 1.5, "text": 'q"uo\\te\nnext "line"\\', 'quote"key': 2, '"=, ': True}
    measurements = ["we,ird m=x", 'quo"te', "Übung"]
    with InfluxWriter(config(influxd.url)) as writer:
        writer.submit([Point("awk", tags, fields, ts)] + [Point(m, {}, {"v": 1}, ts) for m in measurements])
        assert writer.flush(5)
        assert writer.stats().points_written == 1 + len(measurements)
    assert influxd.query("SELECT * FROM awk", db=DB) == [{"time": ts, **tags, **fields}]
    names = {r["name"] for r in influxd.query("SHOW MEASUREMENTS", db=DB)}
    assert names == {"awk", *measurements}


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_outage_mid_stream_writes_everything_in_order_and_acks_only_stored(influxd: Influxd, how: str) -> None:
    """influxd goes away (SIGTERM or SIGKILL) while durable points stream in, then comes back on the same
    port and data directory. Each on_done checks, against the server, that its points are stored; it blocks
    the writer thread while doing so, so nothing can be written between the ack and the check."""
    url, ts, submissions, per = influxd.url, now_ms(), 60, 5
    acks = Acks()
    problems: list[str] = []

    def verify(k: int) -> Callable[[], None]:
        def on_done() -> None:
            acks.callback(k)()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    found = count(url, f"SELECT count(score) FROM rep WHERE sub = '{k}'")
                except (ServiceError, OSError):
                    time.sleep(0.05)  # influxd is down; the point must be there once it is back
                    continue
                if found != per:
                    problems.append(f"submission {k} acked with {found}/{per} points stored")
                return
            problems.append(f"submission {k}: could not check within 20 s")
        return on_done

    restarted: Influxd | None = None
    writer = InfluxWriter(config(url, timeout_s=1.0, batch_size=20)).start()
    try:
        for k in range(submissions):
            points = [rep(k * per + i, ts + k * per + i, sub=str(k)) for i in range(per)]
            # one point with a fixed identity: its final value shows the writes happened in order
            points.append(Point("latest", {"node": "n1"}, {"k": k}, ts))
            writer.submit(points, verify(k))
            if k == 15:
                influxd.stop() if how == "stop" else influxd.kill()
            if k == 45:
                restarted = start_influxd(influxd.workdir, influxd.port)
            time.sleep(0.02)
        assert writer.flush(30), writer.stats()
        stats = writer.stats()
        stored = count(url, "SELECT count(score) FROM rep")
        latest = influx_query(url, "SELECT k FROM latest", db=DB)
    finally:
        writer.close(2)
        if restarted is not None:
            restarted.stop()
    assert problems == []
    assert acks.snapshot() == list(range(submissions))
    assert stats.points_written == submissions * (per + 1)
    assert stats.points_dropped_rejected == stats.points_dropped_overflow == 0
    assert stats.write_errors["connection"] > 0
    assert stored == submissions * per
    assert latest == [{"time": ts, "k": submissions - 1}]


def test_sigstop_attempts_time_out_and_writer_stays_responsive(influxd: Influxd) -> None:
    """A SIGSTOPped influxd still accepts connections (kernel backlog) but never answers: every attempt must
    end after timeout_s, and the writer must keep answering stats() meanwhile."""
    timeout_s, backoff_s, pause_s = 0.5, 0.1, 2.2
    acks = Acks()
    ts = now_ms()
    with InfluxWriter(config(influxd.url, timeout_s=timeout_s, retry_min_s=backoff_s, retry_max_s=backoff_s)) as writer:
        writer.submit([rep(0, ts)])
        assert writer.flush(5)
        influxd.pause()
        try:
            writer.submit([rep(k, ts + k) for k in range(1, 11)], acks.callback(1))
            started = time.monotonic()
            slowest_stats, seen, timeout_at = 0.0, 0, [started]
            while time.monotonic() - started < pause_s:
                t = time.monotonic()
                stats = writer.stats()
                slowest_stats = max(slowest_stats, time.monotonic() - t)
                if stats.write_errors["timeout"] != seen:
                    seen = stats.write_errors["timeout"]
                    timeout_at.append(time.monotonic())
                time.sleep(0.02)
            assert acks.snapshot() == []
            assert stats.buffer == 10
            assert stats.last_error is not None and stats.last_error.startswith("timeout")
        finally:
            influxd.resume()
        assert slowest_stats < 0.05
        # the first attempt starts at submit + flush_interval; then one attempt per timeout_s + backoff
        gaps = [b - a for a, b in itertools.pairwise(timeout_at)]
        assert len(gaps) >= 3, gaps
        assert all(timeout_s - 0.05 <= g <= timeout_s + backoff_s + 0.2 for g in gaps[1:]), gaps
        assert gaps[0] <= timeout_s + 0.05 + 0.2, gaps
        assert writer.flush(10)
    assert acks.snapshot() == [1]
    assert count(influxd.url, "SELECT count(score) FROM rep") == 11


def test_overflow_drops_oldest_frames_and_keeps_durable(influxd: Influxd) -> None:
    url, ts, limit = influxd.url, now_ms(), 200
    influxd.stop()
    acks = Acks()
    writer = InfluxWriter(config(url, buffer_max_points=limit, batch_size=50, retry_max_s=0.2)).start()
    restarted: Influxd | None = None
    try:
        submitted, durable, durable_subs = 0, 0, set()
        for k in range(50):
            writer.submit([frame(k * 10 + i, ts + k * 10 + i) for i in range(10)], acks.callback(submitted))
            submitted += 1
            if k % 5 == 0:
                writer.submit([rep(k, ts + k)], acks.callback(submitted))
                durable_subs.add(submitted)
                submitted, durable = submitted + 1, durable + 1
        stats = writer.stats()
        assert stats.buffer == limit
        assert stats.points_dropped_overflow == 500 + durable - limit
        # only frame submissions dropped entirely before the first batch was taken can be acked yet
        early = acks.snapshot()
        assert early == list(range(len(early))) and not durable_subs & set(early)
        restarted = start_influxd(influxd.workdir, influxd.port)
        assert writer.flush(20), writer.stats()
        stats = writer.stats()
        assert count(url, "SELECT count(score) FROM rep") == durable
        seqs = [r["seq"] for r in influx_query(url, 'SELECT seq FROM "frames"."frame" ORDER BY time', db=DB)]
    finally:
        writer.close(2)
        if restarted is not None:
            restarted.stop()
    assert acks.snapshot() == list(range(submitted))
    assert stats.points_written == limit and stats.points_dropped_rejected == 0
    assert stats.points_dropped_overflow == 500 + durable - limit
    assert len(seqs) == limit - durable
    # oldest first: what survived is the newest frames, plus at most one batch that was already in flight
    runs = [[seqs[0]]]
    for seq in seqs[1:]:
        if seq == runs[-1][-1] + 1:
            runs[-1].append(seq)
        else:
            runs.append([seq])
    assert runs[-1][-1] == 499
    assert len(runs) <= 2 and (len(runs) == 1 or len(runs[0]) <= 50), runs


def test_durable_points_block_when_buffer_is_full(influxd: Influxd) -> None:
    url, ts, limit, total = influxd.url, now_ms(), 50, 80
    influxd.stop()
    acks = Acks()
    progress = [0]
    writer = InfluxWriter(config(url, buffer_max_points=limit, batch_size=10, retry_max_s=0.2)).start()

    def produce() -> None:
        for k in range(total):
            writer.submit([rep(k, ts + k)], acks.callback(k))
            progress[0] = k + 1

    producer = threading.Thread(target=produce, daemon=True)
    restarted: Influxd | None = None
    try:
        producer.start()
        assert wait_until(lambda: progress[0] == limit, 5)
        time.sleep(0.3)
        assert producer.is_alive() and progress[0] == limit
        assert writer.stats().buffer == limit
        restarted = start_influxd(influxd.workdir, influxd.port)
        producer.join(20)
        assert not producer.is_alive()
        assert writer.flush(20)
        stats = writer.stats()
        assert count(url, "SELECT count(score) FROM rep") == total
    finally:
        writer.close(2)
        if restarted is not None:
            restarted.stop()
    assert acks.snapshot() == list(range(total))
    assert (stats.points_written, stats.points_dropped_overflow) == (total, 0)


def test_close_releases_a_blocked_submit(influxd: Influxd) -> None:
    influxd.stop()
    acks = Acks()
    writer = InfluxWriter(config(influxd.url, buffer_max_points=5, timeout_s=0.5)).start()
    writer.submit([rep(k, k) for k in range(5)], acks.callback(0))
    raised: list[BaseException] = []

    def blocked() -> None:
        try:
            writer.submit([rep(5, 5)], acks.callback(1))
        except WriterClosedError as exc:
            raised.append(exc)

    thread = threading.Thread(target=blocked, daemon=True)
    thread.start()
    time.sleep(0.2)
    assert thread.is_alive()
    started = time.monotonic()
    assert writer.close(0.3) is False  # the points could not be written
    thread.join(2)
    assert time.monotonic() - started < 2.5
    assert not thread.is_alive() and len(raised) == 1
    assert acks.snapshot() == []  # nothing acked that was not stored
    assert writer.stats().buffer == 5


def test_dropped_database_and_policy_are_recreated(influxd: Influxd) -> None:
    ts = now_ms()
    with InfluxWriter(config(influxd.url)) as writer:
        writer.submit([rep(0, ts)])
        assert writer.flush(5)
        influxd.query(f"DROP DATABASE {DB}")
        writer.submit([rep(1, ts + 1)])
        assert writer.flush(5)
        assert writer.stats().write_errors["4xx"] == 1  # 404 database not found
        influxd.query(f'DROP RETENTION POLICY "frames" ON {DB}')
        writer.submit([frame(2, ts + 2)])
        assert writer.flush(5)
        stats = writer.stats()
    assert stats.write_errors["5xx"] == 1  # 1.x: 500 "retention policy not found"
    assert (stats.points_written, stats.points_dropped_rejected) == (3, 0)
    assert count(influxd.url, "SELECT count(score) FROM rep") == 1
    assert count(influxd.url, 'SELECT count(seq) FROM "frames"."frame"') == 1


def test_ensure_database_is_idempotent_and_applies_new_durations(influxd: Influxd) -> None:
    def policies() -> dict[str, tuple[str, bool]]:
        return {r["name"]: (r["duration"], r["default"]) for r in influxd.query(f"SHOW RETENTION POLICIES ON {DB}")}

    InfluxWriter(config(influxd.url)).ensure_database()
    InfluxWriter(config(influxd.url)).ensure_database()
    assert policies() == {"autogen": ("0s", False), "frames": ("168h0m0s", False), "default": ("17520h0m0s", True)}
    InfluxWriter(config(influxd.url, frame_retention="1d", default_retention="1825d")).ensure_database()
    assert policies()["frames"] == ("24h0m0s", False)
    assert policies()["default"] == ("43800h0m0s", True)
    InfluxWriter(config(influxd.url, default_retention="INF")).ensure_database()
    assert policies()["frames"] == ("168h0m0s", False) and policies()["default"] == ("0s", True)


def test_gzip_bodies(influxd: Influxd) -> None:
    ts = now_ms()
    with InfluxWriter(config(influxd.url, gzip=True)) as writer:
        writer.submit([rep(k, ts + k) for k in range(300)])
        assert writer.flush(5)
    assert count(influxd.url, "SELECT count(score) FROM rep") == 300


def test_wrong_credentials_hold_points_until_fixed() -> None:
    with running_influxd(auth_enabled=True) as server:
        admin = ("admin", "admin-pw")
        server.query("CREATE USER admin WITH PASSWORD 'admin-pw' WITH ALL PRIVILEGES")
        acks = Acks()
        ts = now_ms()
        cfg = config(server.url, username="writer", password="writer-pw", retry_max_s=0.1)
        with InfluxWriter(cfg) as writer:
            writer.submit([rep(k, ts + k) for k in range(3)], acks.callback(0))
            assert wait_until(lambda: writer.stats().write_errors["auth"] >= 3, 5)
            stats = writer.stats()
            assert acks.snapshot() == [] and stats.points_dropped_rejected == 0 and stats.buffer == 3
            assert stats.last_error is not None and stats.last_error.startswith("auth")
            server.query("CREATE USER writer WITH PASSWORD 'writer-pw' WITH ALL PRIVILEGES", auth=admin)
            assert writer.flush(5)
        assert acks.snapshot() == [0]
        assert count_with_auth(server, admin) == 3


def count_with_auth(server: Influxd, auth: tuple[str, str]) -> int:
    rows = server.query("SELECT count(score) FROM rep", db=DB, auth=auth)
    return int(rows[0]["count"]) if rows else 0
