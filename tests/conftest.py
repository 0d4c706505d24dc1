"""Shared fixtures. Data-dependent tests fail (never skip) with a clear message when the data set is missing."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from formcheck.local_services import Influxd, Mosquitto, running_influxd, running_mosquitto
from formcheck.paths import POSE_MODEL, DataMissingError, require_data_dir
from models.training.dataset import TRAINING_CLIPS
from tests.analyze_floors import FLOORS, floor_verdicts


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


_ANALYZE_ROWS: list[dict[str, Any]] = []
_FLOOR_VERDICT: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect the rows of tests/integration/test_analyze_ground_truth.py (on the xdist controller too)."""
    if report.when == "call":
        _ANALYZE_ROWS.extend(value for name, value in report.user_properties if name == "analyze_row")


def _expected_clips() -> set[str]:
    """Every clip the analyze test covers, or an empty set when the data set is missing."""
    try:
        data = require_data_dir()
    except DataMissingError:
        return set()
    with (data / "ground_truth.csv").open() as f:
        return {Path(r["path"]).stem for r in csv.DictReader(f) if r["exercise"] in TRAINING_CLIPS}


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the run when a held-out total fell below its floor (only when every clip was analysed)."""
    if hasattr(session.config, "workerinput") or not _ANALYZE_ROWS:
        return
    lines, failed = floor_verdicts(_ANALYZE_ROWS, FLOORS, _expected_clips())
    _FLOOR_VERDICT.extend(lines)
    if failed:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the analyze-vs-ground-truth table, the totals and the floor verdicts."""
    rows = _ANALYZE_ROWS
    if not rows:
        return
    write = terminalreporter.write_line
    terminalreporter.section("formcheck analyze vs ground_truth.csv")
    write("set: train = a classifier trained on this clip (in-sample), held = never seen; R = regression clip")
    write(f"{'clip':40} {'set':5} {'reps exp':>8} {'counted':>7} {'partial exp':>11} {'partial':>7}  "
          f"{'bottom err':>10}  {'labelled bad':>12} {'flagged bad':>11}  grades")
    for r in sorted(rows, key=lambda r: r["clip"]):
        ok = "ok " if r["expected"] == r["counted"] else "XX "
        worst = max((abs(e) for e in r["bottom_errors"]), default=None)
        kind = ("held " if r["held_out"] else "train") + ("R" if r["regression"] else " ")
        write(f"{ok}{r['clip']:37} {kind:6}{r['expected']:>7} {r['counted']:>7} {r['partial_expected']:>11} "
              f"{r['partial']:>7}  {'-' if worst is None else worst:>10}  {r['labelled_bad']!s:>12} "
              f"{r['flagged_bad']!s:>11}  {r['grades']}")
    for exercise in sorted({r["exercise"] for r in rows}):
        for held_out, name in ((True, "held-out"), (False, "in training")):
            part = [r for r in rows if r["exercise"] == exercise and r["held_out"] is held_out]
            if part:
                exact = sum(r["expected"] == r["counted"] for r in part)
                write(f"{exercise} {name}: {exact}/{len(part)} clips counted exactly")
    exact = sum(r["expected"] == r["counted"] for r in rows)
    write(f"all: {exact}/{len(rows)} clips counted exactly")
    for line in _FLOOR_VERDICT:
        write(line)
