"""Shared fixtures. Data-dependent tests fail (never skip) with a clear message when the data set is missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from formcheck.local_services import Influxd, Mosquitto, running_influxd, running_mosquitto
from formcheck.paths import POSE_MODEL, DataMissingError, require_data_dir


@pytest.fixture(scope="session")
def data_dir() -> Path:
    try:
        return require_data_dir()
    except DataMissingError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def pose_model() -> Path:
    if not POSE_MODEL.is_file():
        pytest.fail(f"pose model missing at {POSE_MODEL}: run 'make model'", pytrace=False)
    return POSE_MODEL


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    with running_mosquitto() as broker:
        yield broker




@pytest.fixture
def influxd() -> Iterator[Influxd]:
    """A fresh influxd 1.x on a free loopback port in its own temporary directory."""
    with running_influxd() as server:
        yield server


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the analyze-vs-ground-truth table collected by tests/integration/test_analyze_ground_truth.py."""
    rows = [
        value
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        if getattr(report, "when", "") == "call"
        for name, value in getattr(report, "user_properties", [])
        if name == "analyze_row"
    ]
    if not rows:
        return
    terminalreporter.section("formcheck analyze vs ground_truth.csv")
    terminalreporter.write_line(f"{'clip':40} {'reps exp':>8} {'counted':>7} {'partial exp':>11} {'partial':>7}  "
                                f"{'labelled bad':>12} {'flagged bad':>11}  grades")
    for r in sorted(rows, key=lambda r: r["clip"]):
        ok = "ok " if r["expected"] == r["counted"] else "XX "
        terminalreporter.write_line(
            f"{ok}{r['clip']:37} {r['expected']:>8} {r['counted']:>7} {r['partial_expected']:>11} {r['partial']:>7}  "
            f"{r['labelled_bad']!s:>12} {r['flagged_bad']!s:>11}  {r['grades']}"
        )
    exact = sum(r["expected"] == r["counted"] for r in rows)
    terminalreporter.write_line(f"{exact}/{len(rows)} clips counted exactly")
