"""The edge node survives a broker restart: it reconnects, re-announces itself, and loses no frame."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from formcheck.local_services import start_mosquitto
from tests.integration.mqtt_helpers import Recorder, states
from tests.integration.test_edge_mqtt import decoded_frames, run_env

CLIP = "videos/squat/squat_side_bodyweight_a.mp4"


def test_broker_restart_mid_run_loses_no_frame(tmp_path: Path, data_dir: Path, pose_model: Path) -> None:
    clip = data_dir / CLIP
    expected = decoded_frames(clip)
    broker = start_mosquitto(tmp_path / "broker")
    # A persistent subscriber session: the broker keeps queueing for it across the restart.
    rec = Recorder(broker.host, broker.port, "gym/main/nodes/edge-r/#", session_expiry_s=300).start()
    env = {**run_env(), "FORMCHECK_EDGE__MQTT__RECONNECT_MIN_S": "1", "FORMCHECK_EDGE__MQTT__RECONNECT_MAX_S": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "formcheck.cli", "edge", "--source", str(clip), "--node", "edge-r",
         "--broker", f"127.0.0.1:{broker.port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert rec.wait_for(lambda m: sum(x.topic.endswith("/frames") for x in m) >= 60, 60)
        broker.stop()
        down_at = time.monotonic()
        time.sleep(2.0)
        broker = start_mosquitto(tmp_path / "broker", port=broker.port)
        _, stderr = proc.communicate(timeout=90)
        assert proc.returncode == 0, stderr[-2000:]
        assert rec.wait_for(lambda m: "stopped" in [x.json()["state"] for x in m if x.topic.endswith("/status")], 10)
    finally:
        rec.stop()
        broker.stop()
        if proc.poll() is None:
            proc.kill()
    frames = [m.json() for m in rec.of_kind("frames")]
    seqs = sorted({f["seq"] for f in frames})
    # Played in real time, a busy machine may drop a captured frame (counted);
    # seq numbers classified frames, and every one of those must arrive.
    summary = re.search(r"(\d+) frames captured, (\d+) classified, (\d+) dropped by capture", stderr)
    assert summary, stderr[-2000:]
    captured, classified, dropped = map(int, summary.groups())
    assert captured == expected
    assert classified + dropped == captured
    assert seqs == list(range(classified)), f"missing seq: {sorted(set(range(classified)) - set(seqs))[:20]}"
    assert len({f["boot"] for f in frames}) == 1, "same process, same boot across the reconnect"
    assert states(rec).count("online") >= 2, "online must be republished on reconnect"
    assert states(rec)[-1] == "stopped"
    assert "disconnected from broker" in stderr
    assert time.monotonic() - down_at < 120
    assert "Traceback" not in stderr
