"""A network video source that ends or disappears is reopened with backoff; the node stays up and stops cleanly."""

from __future__ import annotations

import functools
import http.server
import signal
import subprocess
import sys
import threading
from pathlib import Path

from formcheck.local_services import Mosquitto
from tests.integration.mqtt_helpers import Recorder, states
from tests.integration.test_edge_mqtt import SHORT_CLIP, decoded_frames, run_env


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_stream_loss_is_survived(mosquitto: Mosquitto, data_dir: Path, pose_model: Path) -> None:
    clip = data_dir / SHORT_CLIP
    per_pass = decoded_frames(clip)
    handler = functools.partial(_QuietHandler, directory=str(clip.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{clip.name}"
    rec = Recorder(mosquitto.host, mosquitto.port, "gym/main/nodes/edge-u/#").start()
    env = {**run_env(), "FORMCHECK_EDGE__SOURCE__RECONNECT_S": "0.2", "FORMCHECK_EDGE__SOURCE__RECONNECT_MAX_S": "0.5"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "formcheck.cli", "edge", "--source", url, "--node", "edge-u",
         "--broker", f"127.0.0.1:{mosquitto.port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        # A stream that ends is a lost camera: the node reopens it, so frames keep coming past one pass.
        assert rec.wait_for(lambda m: sum(x.topic.endswith("/frames") for x in m) > per_pass + 10, 60)
        server.shutdown()
        server.server_close()
        # Source gone for good: the node keeps retrying and stays responsive to a clean stop.
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        rec.stop()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    assert "stopped delivering frames; reopening" in stderr
    assert "reopened" in stderr
    assert states(rec) == ["online", "stopped"]
    frames = [m.json() for m in rec.of_kind("frames")]
    assert [f["seq"] for f in frames] == list(range(len(frames)))
    assert len({f["boot"] for f in frames}) == 1
    assert "Traceback" not in stderr
