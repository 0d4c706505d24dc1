"""Flow control: the aggregator never holds more than Receive Maximum unacknowledged messages (plus one read).

Mosquitto 2.0.11 sends far more than a client's Receive Maximum while it drains a backlog; the aggregator's own
loop stops reading the socket instead, so its inbox (sized from Receive Maximum) never overflows. Here InfluxDB
is hung (SIGSTOP), so nothing can be stored and nothing acknowledged, while a backlog far larger than Receive
Maximum waits in the broker. Real Mosquitto, real InfluxDB, the aggregator in this process.
"""

from __future__ import annotations

import time

from formcheck.local_services import Influxd, Mosquitto, ServiceError
from formcheck_aggregator.service import Aggregator
from formcheck_runtime.paho_internals import MAX_BATCH
from tests.integration.frame_factory import (
    Publisher,
    RunningAggregator,
    aggregator_config,
    influx_rows,
    squat_stream,
)
from tests.waiting import wait_until

RECEIVE_MAXIMUM = 300
DB = "flow"


def test_unacknowledged_messages_stay_within_receive_maximum(mosquitto: Mosquitto, influxd: Influxd) -> None:
    # 1,134 frames, 3.8 x Receive Maximum, and below what the broker queues for a client (max_queued_messages,
    # default 1000, beyond Receive Maximum): more would be dropped by the broker, not held back by us.
    streams = [squat_stream(f"flow-{i}", 4) for i in range(3)]
    total = sum(len(s.frames) for s in streams)
    config = aggregator_config(mosquitto, influxd, "agg-flow", DB, mqtt={"receive_maximum": RECEIVE_MAXIMUM},
                               influx={"frame_points_per_s": 0})  # every frame a point: the test counts them
    agg = Aggregator(config)
    running = RunningAggregator(agg).start()
    try:
        assert wait_until(agg.connected.is_set, 10)
        influxd.pause()
        try:
            pub = Publisher(mosquitto.host, mosquitto.port)
            try:
                for stream in streams:
                    pub.publish_frames(stream.frames)
            finally:
                pub.close()
            assert wait_until(lambda: len(agg._pending) >= RECEIVE_MAXIMUM, 10), len(agg._pending)
            peak = 0
            deadline = time.monotonic() + 1.5  # the broker keeps sending; a leaky gate would let it in now
            while time.monotonic() < deadline:
                peak = max(peak, len(agg._pending))
                time.sleep(0.01)
        finally:
            influxd.resume()
        # The gate is checked before each read; one read takes at most MAX_BATCH whole packets from the buffer.
        assert RECEIVE_MAXIMUM <= peak <= RECEIVE_MAXIMUM + MAX_BATCH, peak
        assert agg._inbox.dropped == 0
        assert wait_until(lambda: stored(influxd) == total, 30), (stored(influxd), total, agg.snapshot())
    finally:
        assert running.stop() == 0


def stored(influxd: Influxd) -> int:
    try:
        rows = influx_rows(influxd, 'SELECT count("seq") FROM "frames"."frame"', DB)
    except ServiceError as exc:  # the writer creates the database and its retention policies at its first write
        if "not found" in str(exc):
            return 0
        raise
    return int(rows[0]["count"]) if rows else 0
