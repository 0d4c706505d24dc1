"""Bad input on the frame topics is dropped, counted by reason, and never disturbs the valid stream.

One aggregator (real Mosquitto, real InfluxDB) receives a clean three-rep
stream with bad messages interleaved: every bad message must be acknowledged,
dropped and counted under the reason ``aggregator/formcheck_aggregator/decoder.py`` gives it, write
nothing to InfluxDB, and leave the station's reps exactly as they would have
been. Re-published frames count as duplicates, skipped seq numbers as gaps.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from formcheck.local_services import Influxd, Mosquitto
from formcheck_aggregator.decoder import DROP_REASONS
from formcheck_aggregator.service import Aggregator
from formcheck_protocol.messages import MAX_TS_MS
from tests.integration.frame_factory import (
    TOPICS,
    Publisher,
    RunningAggregator,
    aggregator_config,
    influx_rows,
    now_ms,
    squat_stream,
    status_payload,
)
from tests.waiting import wait_until

NODE = "rack-9"
GHOST = "rack-ghost"
DB = "badinput"
MAX_PAYLOAD = 2048
REPS = 3
BAD_SEQ = 900_000          # bad messages carry seq >= this (when they carry one at all)
GAP = range(10, 15)        # seq numbers never sent (inside the first standing stretch): 5 gaps
DUPLICATES = range(40, 52)  # sent twice: 12 duplicates
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Bad:
    name: str
    reason: str
    payload: bytes
    topic: str = TOPICS.node(NODE, "frames")


def bad_messages(template: dict[str, Any], now: int) -> list[Bad]:
    """The table of bad messages; ``template`` is a valid frame of the stream (as a dict)."""

    def frame(i: int, **update: Any) -> dict[str, Any]:
        # A distinct seq and a capture time between two valid frames: a stored bad frame could not hide.
        return {**template, "seq": BAD_SEQ + i, "ts": template["ts"] + 7 + i, **update}

    def js(data: Any) -> bytes:
        return json.dumps(data).encode()

    def swap(data: dict[str, Any], old: str, new: str) -> bytes:
        text = json.dumps(data)
        assert old in text, (old, text)
        return text.replace(old, new).encode()

    return [
        Bad("truncated JSON", "invalid_json", js(frame(1))[:40]),
        Bad("not JSON at all", "invalid_json", b"hello, aggregator"),
        Bad("empty payload", "invalid_json", b""),
        Bad("NaN literal", "invalid_json", swap(frame(0), '"bad_p": 0.05', '"bad_p": NaN')),
        Bad("Infinity literal", "invalid_json", swap(frame(2), '"vis": 0.9', '"vis": Infinity')),
        Bad("-Infinity in angles", "invalid_json", swap(frame(3), '"knee": 170.0', '"knee": -Infinity')),
        Bad("JSON array", "schema", js([frame(4)])),
        Bad("JSON null", "schema", b"null"),
        Bad("schema version 2", "schema_version", js(frame(5, v=2))),
        Bad("unknown phase", "schema", js(frame(6, phase="jumping"))),
        Bad("1e999 overflows to inf", "schema", swap(frame(7), '"knee": 170.0', '"knee": 1e999')),
        Bad("negative seq", "schema", js(frame(8, seq=-1))),
        Bad("huge seq 2**60", "schema", js(frame(9, seq=2**60))),
        Bad("unknown key", "schema", js(frame(10, camera="cam0"))),
        Bad("upper-case boot", "schema", js(frame(11, boot=template["boot"].upper()))),
        Bad("non-UTF-8 bytes", "not_utf8", b"\xff\xfe\x00\x80garbage"),
        Bad("invalid UTF-8 inside a string", "not_utf8", js(frame(12)).replace(b'"squat"', b'"squ\xc3("')),
        Bad("over max_payload_bytes", "too_large", js(frame(13)) + b" " * MAX_PAYLOAD),
        Bad("ts in 1970", "schema", js(frame(14, ts=86_400_000))),
        Bad("ts in mid-2100 (beyond the schema's range)", "schema", js(frame(15, ts=MAX_TS_MS + 180 * DAY_MS))),
        Bad("ts 2100-01-01 (schema's limit, far ahead of the clock)", "ts_future", js(frame(16, ts=MAX_TS_MS))),
        Bad("ts one hour ahead", "ts_future", js(frame(17, ts=now + 3_600_000))),
        Bad("ts 30 days old", "ts_past", js(frame(18, ts=now - 30 * DAY_MS))),
        Bad("node in payload differs from topic", "node_mismatch", js(frame(19, node=GHOST))),
        Bad("node id too long for a topic level", "topic", js(frame(20, node="x" * 65)),
            topic=f"gym/main/nodes/{'x' * 65}/frames"),
    ]


@pytest.fixture
def aggregator(mosquitto: Mosquitto, influxd: Influxd) -> Iterator[RunningAggregator]:
    """Not started yet: the test starts it (and stops it to read its final outcome); stopped here in any case."""
    # In process: the test reads the rate-limited drop log lines through caplog, which sees this process only.
    config = aggregator_config(mosquitto, influxd, "guard", DB, mqtt={"max_payload_bytes": MAX_PAYLOAD},
                               workers="thread", influx={"frame_points_per_s": 0})  # every frame a point
    running = RunningAggregator(Aggregator(config))
    yield running
    running.stop()


def stats(influxd: Influxd) -> dict[str, Any]:
    fields = ["messages", "invalid", "frames", "duplicates", "gaps", "late", "reps", "sets", "write_errors",
              *(f"invalid_{r}" for r in DROP_REASONS)]
    rows = influx_rows(influxd, f"SELECT {', '.join(f'last({f}) AS {f}' for f in fields)} FROM aggregator_stats", DB)
    return {k: v for k, v in rows[0].items() if k != "time"} if rows else {}


def test_bad_payloads_are_dropped_counted_and_do_not_disturb_the_stream(
    mosquitto: Mosquitto, influxd: Influxd, aggregator: RunningAggregator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    stream = squat_stream(NODE, REPS)
    valid = [f for f in stream.frames if f.seq not in GAP]
    bads = bad_messages(json.loads(stream.frames[0].to_json()), now_ms())
    expected_invalid = Counter(b.reason for b in bads)
    assert set(expected_invalid) == set(DROP_REASONS), "the table must exercise every drop reason"
    assert all(len(b.payload) <= MAX_PAYLOAD for b in bads if b.reason != "too_large")

    # One bad message after every few valid frames; the duplicated range goes out again mid-stream.
    messages: list[tuple[str, bytes]] = []
    step = len(valid) // (len(bads) + 1)
    pending = list(bads)
    for i, f in enumerate(valid):
        messages.append((TOPICS.node(NODE, "frames"), f.to_json()))
        if f.seq == 100:
            messages += [(TOPICS.node(NODE, "frames"), stream.frames[s].to_json()) for s in DUPLICATES]
        if pending and (i + 1) % step == 0:
            bad = pending.pop(0)
            messages.append((bad.topic, bad.payload))
    assert not pending
    total = 1 + len(messages) + 1  # status online, the stream, status stopped

    publisher = Publisher(mosquitto.host, mosquitto.port)
    aggregator.start()
    try:
        assert wait_until(aggregator.agg.connected.is_set, 10), "aggregator did not connect"
        publisher.publish_all([(TOPICS.node(NODE, "status"), status_payload(NODE))], retain=True)
        assert wait_until(lambda: aggregator.messages() >= 1, 10), "status not received: subscription missing"
        publisher.publish_all(messages)
        publisher.publish_all([(TOPICS.node(NODE, "status"), status_payload(NODE, "stopped"))], retain=True)

        assert wait_until(lambda: stats(influxd).get("messages") == total and stats(influxd).get("sets") == 1,
                          20, interval=0.25), (aggregator.messages(), total, stats(influxd))
        assert aggregator.alive(), aggregator.outcome
        assert aggregator.agg.connected.is_set()
    finally:
        publisher.close()
        outcome = aggregator.stop()
    assert outcome == 0

    # -- counted per reason, exactly ------------------------------------------------------------------------
    got = stats(influxd)
    assert {r: got[f"invalid_{r}"] for r in DROP_REASONS} == {r: expected_invalid[r] for r in DROP_REASONS}
    assert got["invalid"] == len(bads)
    assert got["duplicates"] == len(DUPLICATES)
    assert got["gaps"] == len(GAP)
    assert got["late"] == 0
    assert got["frames"] == len(valid)
    assert got["write_errors"] == 0

    # -- the valid stream is unaffected: its reps and its set --------------------------------------------------
    reps = influxd.query("SELECT node, rep_index, score, set_id FROM rep", db=DB)
    assert [(r["node"], r["rep_index"]) for r in reps] == [(NODE, i) for i in range(1, REPS + 1)], reps
    sets = influxd.query('SELECT node, reps, complete FROM "set"', db=DB)
    assert [(s["node"], s["reps"], s["complete"]) for s in sets] == [(NODE, REPS, True)], sets
    assert got["reps"] == REPS

    # -- nothing of a bad message was stored --------------------------------------------------------------------
    frames = influxd.query('SELECT count(seq) FROM "frames"."frame"', db=DB)
    assert frames and frames[0]["count"] == len(valid), frames
    assert influxd.query(f'SELECT * FROM "frames"."frame" WHERE seq >= {BAD_SEQ}', db=DB) == []
    assert influxd.query(f'SELECT * FROM "frames"."frame" WHERE node <> \'{NODE}\'', db=DB) == []
    valid_ts = {f.ts for f in valid}
    stored_ts = {r["time"] for r in influxd.query('SELECT seq FROM "frames"."frame"', db=DB)}
    assert stored_ts == valid_ts
    measurements = {r["name"] for r in influxd.query("SHOW MEASUREMENTS", db=DB)}
    # node_status: the stream's own online/stopped statuses (valid messages) are stored too; open_set: the
    # checkpoints of its set.
    assert measurements == {"frame", "rep", "set", "aggregator_stats", "node_status", "open_set"}, measurements

    # -- logged, rate-limited: one warning per reason, no errors -------------------------------------------------
    drop_lines = Counter(
        reason for rec in caplog.records if rec.name == "formcheck_aggregator.service"
        for reason in DROP_REASONS if rec.getMessage().startswith("dropped message") and f": {reason}: " in
        rec.getMessage()
    )
    assert drop_lines == Counter(dict.fromkeys(expected_invalid, 1)), drop_lines
    errors = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert not errors, errors


def test_one_frame_with_an_absurd_seq_jump_does_not_silence_the_station(
    mosquitto: Mosquitto, influxd: Influxd, aggregator: RunningAggregator
) -> None:
    stream = squat_stream(NODE, REPS)
    # seq 2**53 - 1 passes the schema (seq < 2**53); 2**60 (above) does not and is counted as schema.
    poison = stream.frames[20].model_copy(update={"seq": 2**53 - 1, "ts": stream.frames[20].ts + 7})
    frames = [*stream.frames[:21], poison, *stream.frames[21:]]
    publisher = Publisher(mosquitto.host, mosquitto.port)
    aggregator.start()
    try:
        assert wait_until(aggregator.agg.connected.is_set, 10), "aggregator did not connect"
        publisher.publish_all([(TOPICS.node(NODE, "status"), status_payload(NODE))], retain=True)
        assert wait_until(lambda: aggregator.messages() >= 1, 10), "status not received: subscription missing"
        publisher.publish_frames(frames)
        total = 1 + len(frames)
        assert wait_until(lambda: stats(influxd).get("messages") == total, 20, interval=0.25), stats(influxd)
    finally:
        publisher.close()
        outcome = aggregator.stop()
    assert outcome == 0
    got = stats(influxd)
    reps = influx_rows(influxd, "SELECT rep_index FROM rep", DB)
    # Expected: the valid stream's reps survive the one bad frame, and the gap counter stays plausible.
    assert len(reps) == REPS, (reps, got)
    assert got["gaps"] < 1000, got
