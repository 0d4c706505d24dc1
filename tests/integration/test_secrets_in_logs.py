"""What an edge node prints about its camera never includes the camera's password (issue 13 item 9)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from formcheck.local_services import free_port

pytestmark = pytest.mark.security


def test_rtsp_password_is_not_printed(tmp_path: object) -> None:
    port = free_port()  # nothing listens there: the source cannot be opened
    uri = f"rtsp://viewer:s3cret-Pass@127.0.0.1:{port}/stream"
    result = subprocess.run(
        [sys.executable, "-m", "formcheck.cli", "edge", "--source", uri, "--node", "cam-test",
         "--broker", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, check=False, timeout=60,
    )
    output = result.stdout + result.stderr
    assert "s3cret-Pass" not in output
    assert "viewer:***@127.0.0.1" in output
