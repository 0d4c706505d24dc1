"""User mistakes on the newer commands: one line, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from formcheck.local_services import free_port


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["analyze", "/nonexistent/clip.mp4"], "video not found"),
        (["analyze", "pyproject.toml"], "cannot open video source"),
        (["checkin", "--node", "rack-1", "--member", "bad member"], "invalid member id"),
        (["checkin", "--node", "bad/node", "--member", "m1"], "node id"),
        (["checkout", "--node", "rack-1", "--broker", f"127.0.0.1:{free_port()}"], "cannot reach broker"),
        (["aggregator", "--config", "/nonexistent.yaml"], "cannot read config file"),
    ],
)
def test_mistakes_give_one_line_and_status_2(args: list[str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "formcheck.cli", *args], capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("formcheck: error:")]
    assert len(errors) == 1, result.stderr
    assert message in errors[0]
    assert "Traceback" not in result.stderr
