"""User mistakes on the newer commands: one line, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from formcheck.local_services import free_port


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["analyze", "/nonexistent/clip.mp4"], "video not found"),
        (["analyze", "pyproject.toml"], "cannot open video source"),
        pytest.param(["analyze", "tests"], "tests is a directory, not a video file", marks=pytest.mark.operations),
        (["checkin", "--node", "rack-1", "--member", "bad member"], "invalid member id"),
        (["checkin", "--node", "bad/node", "--member", "m1"], "node id"),
        (["checkout", "--node", "rack-1", "--broker", f"127.0.0.1:{free_port()}"], "cannot reach broker"),
        (["aggregator", "--config", "/nonexistent.yaml"], "cannot read config file"),
        pytest.param(["deploy", "check-secrets", "--dir", "/nonexistent", "grafana_admin_password"],
                     "refusing to start: grafana_admin_password is not set", marks=pytest.mark.security),
        pytest.param(["deploy", "grafana-kiosk", "--admin-password-file", "/nonexistent", "--dashboard", "x.json",
                      "--datasource", "x.yaml", "--influx-password-file", "/nonexistent"],
                     "--admin-password-file: cannot read a password from /nonexistent", marks=pytest.mark.security),
        pytest.param(["deploy", "grafana-kiosk", "--url", f"http://127.0.0.1:{free_port()}", "--wait-s", "0",
                      "--admin-password-file", "pyproject.toml", "--influx-password-file", "pyproject.toml",
                      "--dashboard", "dashboards/json/gym-floor.json",
                      "--datasource", "dashboards/provisioning/datasources/influxdb.yaml"],
                     "cannot reach Grafana at http://127.0.0.1:", marks=pytest.mark.security),
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


@pytest.mark.operations
@pytest.mark.data
def test_a_cut_off_video_is_graded_up_to_where_it_ends_and_says_so(data_dir: Path, tmp_path: Path) -> None:
    whole = data_dir / "videos/squat/squat_side_bodyweight_b.mp4"  # index ("moov") at the start: still opens
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    result = subprocess.run([sys.executable, "-m", "formcheck.cli", "analyze", str(cut), "--exercise", "squat"],
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "the video file ended early" in result.stderr and "of the 96 frames" in result.stderr
    whole_run = subprocess.run([sys.executable, "-m", "formcheck.cli", "analyze", str(whole), "--exercise", "squat"],
                               capture_output=True, text=True, check=False, timeout=120)
    assert "ended early" not in whole_run.stderr



@pytest.mark.operations
@pytest.mark.data
def test_analyze_prints_no_native_start_up_chatter(data_dir: Path) -> None:
    from formcheck_runtime.native_log import is_native_noise

    result = subprocess.run([sys.executable, "-m", "formcheck.cli", "analyze", "--exercise", "squat",
                             str(data_dir / "videos/squat/squat_side_bodyweight_b.mp4")],
                            capture_output=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    noise = [line for line in result.stderr.splitlines(keepends=True) if is_native_noise(line)]
    assert noise == [], noise
