"""What an edge node prints about its camera never includes the camera's password (issue 13 item 9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from formcheck.local_services import free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.security


def test_rtsp_password_is_not_printed(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there: the camera is "not ready", the node keeps retrying
    uri = f"rtsp://viewer:s3cret-Pass@127.0.0.1:{port}/stream"
    log = tmp_path / "edge.log"
    env = {**os.environ, "FORMCHECK_EDGE__SOURCE__RECONNECT_S": "0.2", "FORMCHECK_EDGE__SOURCE__RECONNECT_MAX_S": "0.5"}
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "formcheck.cli", "edge", "--source", uri, "--node", "cam-test",
             "--broker", f"127.0.0.1:{free_port()}"], stdout=err, stderr=err, env=env,
        )
    try:
        # The first refusal at start and the 10th retry are both logged.
        assert wait_until(lambda: log.read_text().count("viewer:***@127.0.0.1") >= 2, 60), log.read_text()[-2000:]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    output = log.read_text()
    assert "s3cret-Pass" not in output
