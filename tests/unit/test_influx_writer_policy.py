"""Writer policy against a scripted HTTP endpoint on loopback: splitting refused batches, retrying the same
body, keeping order, auth header and gzip. The real-server behaviour is in tests/integration/test_influx_writer.py."""

from __future__ import annotations

import base64
import gzip
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from formcheck_aggregator.influx import InfluxWriter, Point
from formcheck_aggregator.influx_config import InfluxSection

Responder = Callable[[list[str]], tuple[int, bytes]]


@dataclass
class Request:
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    lines: list[str]
    body: bytes


class FakeInflux:
    """Answers POST /write with whatever ``respond`` says about the request's lines; records every request."""

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                lines = body.decode().splitlines()
                with fake.lock:
                    fake.requests.append(Request(url.path, dict(urllib.parse.parse_qsl(url.query)), dict(self.headers),
                                                 lines, raw))
                    status, answer = fake.respond(lines)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)


@pytest.fixture
def fake_factory() -> Iterator[Callable[[Responder], FakeInflux]]:
    fakes: list[FakeInflux] = []

    def make(respond: Responder) -> FakeInflux:
        fake = FakeInflux(respond)
        fake.thread.start()
        fakes.append(fake)
        return fake

    yield make
    for fake in fakes:
        fake.server.shutdown()
        fake.server.server_close()


def config(url: str, **overrides: object) -> InfluxSection:
    values: dict[str, object] = {"url": url, "flush_interval_s": 0.02, "timeout_s": 2.0, "retry_min_s": 0.01,
                                 "retry_max_s": 0.05, "create_database": False}
    return InfluxSection(**{**values, **overrides})  # type: ignore[arg-type]


def points(n: int, bad: frozenset[int] = frozenset()) -> list[Point]:
    return [Point("rep", {"node": "bad" if i in bad else "ok"}, {"i": i}, 1000 + i) for i in range(n)]


def test_one_bad_point_in_a_refused_batch_does_not_take_the_good_ones(
    fake_factory: Callable[[Responder], FakeInflux],
) -> None:
    stored: list[str] = []

    def respond(lines: list[str]) -> tuple[int, bytes]:
        if any("node=bad" in line for line in lines):
            return 400, b'{"error":"field type conflict"}'
        stored.extend(lines)
        return 204, b""

    fake = fake_factory(respond)
    with InfluxWriter(config(fake.url, batch_size=64)) as writer:
        writer.submit(points(64, bad=frozenset({37})))
        assert writer.flush(5)
        stats = writer.stats()
    assert len(stored) == 63 and not any("node=bad" in line for line in stored)
    assert (stats.points_written, stats.points_dropped_rejected) == (63, 1)
    assert len(fake.requests) <= 1 + 2 * 6  # two requests per halving, log2(64) levels


def test_a_request_refused_whatever_it_holds_costs_three_requests(
    fake_factory: Callable[[Responder], FakeInflux],
) -> None:
    fake = fake_factory(lambda lines: (400, b'{"error":"bad request"}'))
    with InfluxWriter(config(fake.url, batch_size=100)) as writer:
        writer.submit(points(100))
        assert writer.flush(5)
        stats = writer.stats()
    assert len(fake.requests) == 3
    assert (stats.points_written, stats.points_dropped_rejected, stats.write_errors["4xx"]) == (0, 100, 3)


def test_5xx_retries_the_same_body_and_later_batches_wait(fake_factory: Callable[[Responder], FakeInflux]) -> None:
    failures = [3]

    def respond(lines: list[str]) -> tuple[int, bytes]:
        if failures[0] > 0:
            failures[0] -= 1
            return 503, b'{"error":"overloaded"}'
        return 204, b""

    fake = fake_factory(respond)
    done: list[int] = []
    with InfluxWriter(config(fake.url, batch_size=5)) as writer:
        for k in range(4):
            writer.submit([points(5)[k]], lambda k=k: done.append(k))  # type: ignore[misc]
        assert writer.flush(5)
        stats = writer.stats()
    bodies = [r.body for r in fake.requests]
    assert bodies[:4] == [bodies[0]] * 4  # 3 failures + the success, same bytes
    # nothing of a later batch went out before the failing one succeeded
    assert [line for r in fake.requests[3:] for line in r.lines] == [f"rep,node=ok i={k}i {1000 + k}" for k in range(4)]
    assert done == [0, 1, 2, 3]
    assert stats.write_errors["5xx"] == 3 and stats.points_written == 4


def test_basic_auth_gzip_and_query_parameters(fake_factory: Callable[[Responder], FakeInflux]) -> None:
    fake = fake_factory(lambda lines: (204, b""))
    cfg = config(fake.url + "/proxy", username="agg", password="s3cret", gzip=True, database="gym")
    frame = Point("frame", {"node": "n"}, {"seq": 1}, 5, durable=False, retention="frames")
    with InfluxWriter(cfg) as writer:
        writer.submit([*points(3), frame])
        assert writer.flush(5)
    by_rp = {r.params["rp"]: r for r in fake.requests}
    assert set(by_rp) == {"frames", "default"}
    request = by_rp["default"]
    assert request.path == "/proxy/write"
    assert request.params == {"db": "gym", "rp": "default", "precision": "ms"}
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"agg:s3cret").decode()
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.lines == ["rep,node=ok i=0i 1000", "rep,node=ok i=1i 1001", "rep,node=ok i=2i 1002"]
    assert by_rp["frames"].lines == ["frame,node=n seq=1i 5"]
    assert "s3cret" not in str(request.params)


def frames(n: int, start: int = 0) -> list[Point]:
    return [Point("frame", {"node": "n"}, {"seq": i}, i, durable=False, retention="frames")
            for i in range(start, start + n)]


def test_memory_stays_bounded_while_frames_are_dropped(fake_factory: Callable[[Responder], FakeInflux]) -> None:
    fake = fake_factory(lambda lines: (503, b'{"error":"down"}'))
    cfg = config(fake.url, buffer_max_points=100, batch_size=10, retry_min_s=0.5, retry_max_s=0.5)
    writer = InfluxWriter(cfg).start()
    try:
        for k in range(2000):
            writer.submit(frames(10, k * 10))
        stats = writer.stats()
        assert stats.buffer == 100 and stats.points_dropped_overflow == 20_000 - 100
        # white-box: the queues hold what is buffered, not everything ever dropped
        assert len(writer._queue) <= 100 + 1024 + 10
        assert len(writer._frames) <= 100 + 10
    finally:
        writer.close(0.1)


def test_frame_bookkeeping_is_released_after_writing(fake_factory: Callable[[Responder], FakeInflux]) -> None:
    fake = fake_factory(lambda lines: (204, b""))
    with InfluxWriter(config(fake.url, batch_size=100)) as writer:
        for k in range(50):
            writer.submit(frames(20, k * 20))
        assert writer.flush(5)
        assert writer.stats().points_written == 1000
        assert len(writer._queue) == len(writer._frames) == len(writer._subs) == 0
