"""The aggregator writes with an InfluxDB account that is not an administrator (issue 13 item 7).

A real influxd with authentication on, set up as the compose stack's first start does it: an admin runs the
shipped init script (deploy/influxdb/init/formcheck.iql) and the aggregator's account gets read and write on
the database only. The real ``formcheck aggregator`` then stores frames, reps and sets with that account, and
that account cannot create or change retention policies.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from formcheck.local_services import ServiceError, start_influxd, start_mosquitto
from tests.integration.frame_factory import Publisher, init_database_as_compose_does, squat_stream
from tests.waiting import wait_until

pytestmark = [pytest.mark.security, pytest.mark.broker]

ADMIN = ("admin", "admin-password-for-test")
WRITER = ("aggregator", "writer-password-for-test")
DB = "formcheck"


def test_aggregator_stores_everything_without_admin_rights(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path / "broker")
    influxd = start_influxd(tmp_path / "influxd", auth_enabled=True)
    log = tmp_path / "aggregator.log"
    proc = None
    try:
        init_database_as_compose_does(influxd, ADMIN, DB, (WRITER,))

        with pytest.raises(ServiceError, match="requires admin privilege"):
            influxd.query(f'CREATE RETENTION POLICY "sneaky" ON "{DB}" DURATION 1h REPLICATION 1', auth=WRITER)
        with pytest.raises(ServiceError, match="requires admin privilege"):
            influxd.query(f'ALTER RETENTION POLICY "frames" ON "{DB}" DURATION 1h', auth=WRITER)

        env = {
            "FORMCHECK_AGG__INFLUX__USERNAME": WRITER[0], "FORMCHECK_AGG__INFLUX__PASSWORD": WRITER[1],
            "FORMCHECK_AGG__INFLUX__CREATE_DATABASE": "false", "FORMCHECK_AGG__INFLUX__FLUSH_INTERVAL_S": "0.1",
            "FORMCHECK_AGG__SETS__REST_TIMEOUT_S": "2", "FORMCHECK_AGG__WORKERS": "thread",
            "FORMCHECK_AGG__INFLUX__FRAME_POINTS_PER_S": "0",  # every frame a point: the test counts them
        }
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "formcheck.cli", "aggregator", "--broker", f"127.0.0.1:{broker.port}",
                 "--influx", influxd.url], stdout=subprocess.DEVNULL, stderr=err,
                env={**os.environ, **env},
            )
        frames = squat_stream("rack-7", 2).frames
        # Then 3 s of standing: past the rest timeout, so the set ends and is stored.
        rest = squat_stream("rack-7", 0, ts0=frames[-1].ts + 33, seq0=frames[-1].seq + 1, boot=frames[0].boot,
                            stand=90).frames
        publisher = Publisher(broker.host, broker.port)
        try:
            assert wait_until(lambda: b"connected to broker" in log.read_bytes(), 20), log.read_text()
            publisher.publish_frames([*frames, *rest])
        finally:
            publisher.close()

        def count(q: str) -> int:
            rows = influxd.query(q, db=DB, auth=WRITER)
            return int(rows[0]["count"]) if rows else 0

        assert wait_until(lambda: count('SELECT count("bad_p") FROM "frames"."frame"') == len(frames) + len(rest),
                          30), log.read_text()[-2000:]
        assert wait_until(lambda: count('SELECT count("score") FROM "rep"') == 2, 20), log.read_text()[-2000:]
        assert wait_until(lambda: count('SELECT count("reps") FROM "set"') == 1, 20), log.read_text()[-2000:]
        policies = {row["name"]: row["duration"] for row in influxd.query(f'SHOW RETENTION POLICIES ON "{DB}"',
                                                                          auth=ADMIN)}
        assert policies == {"autogen": "0s", "frames": "168h0m0s", "default": "17520h0m0s"}  # 730d: finite
        text = log.read_text()
        assert "Traceback" not in text and "admin" not in text.lower(), text[-2000:]
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        influxd.stop()
        broker.stop()
