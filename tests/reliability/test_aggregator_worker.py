"""The aggregator's worker process dying is fatal and prompt: exit status 1, nothing acknowledged early."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil

from formcheck.local_services import Influxd, Mosquitto
from formcheck_aggregator.config import load_config
from formcheck_aggregator.service import Aggregator
from tests.waiting import wait_until


def test_killed_worker_process_stops_the_aggregator(mosquitto: Mosquitto, influxd: Influxd) -> None:
    config = load_config(None, {
        "id": "agg-w", "workers": "process",
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "keepalive_s": 5, "connect_timeout_s": 5},
        "influx": {"url": influxd.url, "flush_interval_s": 0.1},
        "stats_interval_s": 0.5,
    }, environ={})
    agg = Aggregator(config)
    stop = threading.Event()
    outcome: list[int] = []
    thread = threading.Thread(target=lambda: outcome.append(agg.run(stop)), daemon=True)
    thread.start()
    try:
        up = wait_until(lambda: agg.connected.is_set() and bool(agg.worker_pids) and all(agg.worker_pids), 20)
        assert up, "never came up"
        # The stats round trip shows the worker is alive and answering before we kill it.
        assert wait_until(lambda: bool(agg.snapshot()), 10), "worker never reported"
        pid = agg.worker_pids[0]
        assert pid is not None and pid in [p.pid for p in psutil.Process().children()]
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        thread.join(timeout=30)
        assert time.monotonic() - killed_at < 10, "shutdown after the worker died took too long"
        assert not thread.is_alive(), "aggregator hung after its worker died"
        assert outcome == [1]
        assert agg.fatal is not None and "worker" in agg.fatal
    finally:
        stop.set()
        thread.join(timeout=30)
