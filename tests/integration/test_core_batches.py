"""The processing core handles messages in batches (one InfluxDB submission each): what the batch stores, and the
order in which it publishes and acknowledges, against a real InfluxDB.

The core reaches MQTT only through its ``Outbox``; here the outbox records what the core asks for, in order,
so the test sees exactly what a broker would be sent.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

from formcheck.local_services import Influxd
from formcheck_aggregator.config import load_config
from formcheck_aggregator.core import Inbound, ProcessingCore
from tests.integration.frame_factory import TOPICS, influx_rows, squat_stream
from tests.waiting import wait_until


class RecordingOutbox:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._lock = threading.Lock()

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        with self._lock:
            self.events.append(("publish", topic.rsplit("/", 1)[-1]))

    def ack(self, mids: list[int]) -> None:
        with self._lock:
            self.events.extend(("ack", mid) for mid in mids)

    def acked(self) -> list[int]:
        with self._lock:
            return [mid for kind, mid in self.events if kind == "ack"]


def test_a_batch_stores_its_frames_publishes_its_reps_then_acks_everything_in_arrival_order(
    influxd: Influxd,
) -> None:
    database = f"batch_{secrets.token_hex(4)}"
    config = load_config(None, {
        "influx": {"url": influxd.url, "database": database, "flush_interval_s": 0.05, "timeout_s": 5,
                   "retry_min_s": 0.1, "retry_max_s": 1,
                   "frame_points_per_s": 0},  # one point per frame: the test counts them
        "workers": "thread",
    }, environ={})
    stream = squat_stream("n1", 2)
    frames = [Inbound(stream.topic(), f.to_json(), mid, 1) for mid, f in enumerate(stream.frames, start=1)]
    bad = [
        Inbound(stream.topic(), b"{not json", 9001, 1),
        Inbound(stream.topic(), b'{"v": 1, "node": "n1", "seq": NaN}', 9002, 1),
        Inbound(TOPICS.node("n1", "stats"), b"\xff\xfe", 9003, 0),  # QoS 0: counted, nothing to acknowledge
    ]
    # The bad messages sit in the middle of the second batch; each batch ends past one completed rep.
    half = len(frames) // 2
    batches = [frames[:half], frames[half:half + 10] + bad + frames[half + 10:]]
    outbox = RecordingOutbox()
    core = ProcessingCore(config, outbox)
    core.start()
    try:
        for batch in batches:
            core.handle_batch(batch)
        expected_acks = [item.mid for batch in batches for item in batch if item.qos > 0]
        assert wait_until(lambda: outbox.acked() == expected_acks, 20), outbox.acked()[-5:]
    finally:
        core.close()

    # Each batch: the publishes of the reps it completed, then its acks; nothing of a batch after its acks.
    runs: list[list[Any]] = []
    for kind, _ in outbox.events:
        if runs and runs[-1][0] == kind:
            runs[-1][1] += 1
        else:
            runs.append([kind, 1])
    acks_per_batch = [sum(1 for item in batch if item.qos > 0) for batch in batches]
    # A rep goes to the station's topic and to its member's (issue 15's live view): two publishes each.
    assert runs == [["publish", 2], ["ack", acks_per_batch[0]], ["publish", 2], ["ack", acks_per_batch[1]]], runs
    assert core.counters["reps"] == stream.reps == 2
    assert core.counters["messages"] == len(frames) + len(bad)
    assert dict(core.invalid) == {"invalid_json": 2, "not_utf8": 1}  # NaN is no JSON literal

    frames_stored = influx_rows(influxd, 'SELECT count("bad_p") FROM "frames"."frame"', database)
    assert frames_stored and frames_stored[0]["count"] == len(frames)
    reps_stored = influx_rows(influxd, 'SELECT "score" FROM "rep"', database)
    assert len(reps_stored) == stream.reps
