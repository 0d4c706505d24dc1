"""A network video source that ends or disappears is reopened with backoff; the node stays up and stops cleanly."""

from __future__ import annotations

import functools
import http.server
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from formcheck.local_services import Mosquitto, free_port
from tests.integration.mqtt_helpers import Recorder, states
from tests.integration.test_edge_mqtt import SHORT_CLIP, decoded_frames, run_env


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_clips(directory: Path, port: int = 0) -> http.server.ThreadingHTTPServer:
    """The clips of ``directory`` over HTTP on loopback (a network camera that can go away)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port),
                                             functools.partial(_QuietHandler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_edge(url: str, node: str, mosquitto: Mosquitto) -> subprocess.Popen[str]:
    """``formcheck edge`` on a stream, reopening it quickly (0.2 s, backoff to 0.5 s)."""
    env = {**run_env(), "FORMCHECK_EDGE__SOURCE__RECONNECT_S": "0.2", "FORMCHECK_EDGE__SOURCE__RECONNECT_MAX_S": "0.5"}
    return subprocess.Popen(
        [sys.executable, "-m", "formcheck.cli", "edge", "--source", url, "--node", node,
         "--broker", f"127.0.0.1:{mosquitto.port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )


def test_stream_loss_is_survived(mosquitto: Mosquitto, data_dir: Path, pose_model: Path) -> None:
    clip = data_dir / SHORT_CLIP
    per_pass = decoded_frames(clip)
    server = serve_clips(clip.parent)
    url = f"http://127.0.0.1:{server.server_address[1]}/{clip.name}"
    rec = Recorder(mosquitto.host, mosquitto.port, "gym/main/nodes/edge-u/#").start()
    proc = start_edge(url, "edge-u", mosquitto)
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


@pytest.mark.operations
def test_a_stream_not_ready_at_boot_is_waited_for(mosquitto: Mosquitto, data_dir: Path, pose_model: Path) -> None:
    """A camera that is not up when the node starts must not leave the station dead (exit 2 is not restarted)."""
    clip = data_dir / SHORT_CLIP
    port = free_port()
    url = f"http://127.0.0.1:{port}/{clip.name}"
    rec = Recorder(mosquitto.host, mosquitto.port, "gym/main/nodes/edge-w/#").start()
    proc = start_edge(url, "edge-w", mosquitto)
    server = None
    try:
        assert rec.wait_for(lambda m: any(x.topic.endswith("/status") and x.json().get("source_ok") is False
                                          for x in m), 30), "status must say the source is not ready"
        assert proc.poll() is None, "the node exited instead of waiting for its camera"
        server = serve_clips(clip.parent, port)
        assert rec.wait_for(lambda m: sum(x.topic.endswith("/frames") for x in m) >= 10, 60)
        assert rec.wait_for(lambda m: any(x.topic.endswith("/status") and x.json().get("source_ok") is True
                                          for x in m), 10)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        rec.stop()
        if server is not None:
            server.shutdown()
            server.server_close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    assert "retrying with backoff" in stderr
    assert "Traceback" not in stderr
