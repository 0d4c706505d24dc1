"""Shared fixtures. Data-dependent tests fail (never skip) with a clear message when the data set is missing."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from formcheck import local_services
from formcheck.local_services import Influxd, Mosquitto, running_influxd, running_mosquitto
from formcheck_runtime.paths import POSE_MODEL, DataMissingError, require_data_dir
from tests.analyze_floors import BOTTOM_FLOOR, LOSO_FLOORS, RECOGNITION_FLOOR, floor_verdicts

# Property tests check what holds, not how fast (speed targets live in bench/): under the suite's parallel load
# one case of test_points took 294 ms against Hypothesis's default 200 ms deadline and failed a fresh-clone run.
hypothesis_settings.register_profile("formcheck", deadline=None)
hypothesis_settings.load_profile("formcheck")


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


# --- markers that are really applied ---------------------------------------------------------------------------
# `pytest -m "not broker"` must mean what it says: markers come from the fixtures a test uses and from the server
# starters its module calls, and a test that starts a server without its marker fails (checked at teardown).

FIXTURE_MARKERS = {"data_dir": "data", "pose_model": "data", "mosquitto": "broker", "influxd": "influx"}
STARTER_MARKERS = {"start_mosquitto": "broker", "start_mosquitto_with_config": "broker", "running_mosquitto": "broker",
                   "start_influxd": "influx", "running_influxd": "influx"}
SERVER_MARKERS = {"mosquitto": "broker", "influxd": "influx"}
_MODULE_MARKERS: dict[str, set[str]] = {}


def _module_markers(path: Path) -> set[str]:
    if str(path) not in _MODULE_MARKERS:
        source = path.read_text() if path.suffix == ".py" else ""
        _MODULE_MARKERS[str(path)] = {mark for name, mark in STARTER_MARKERS.items() if name + "(" in source}
    return _MODULE_MARKERS[str(path)]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        wanted = {FIXTURE_MARKERS[name] for name in getattr(item, "fixturenames", ()) if name in FIXTURE_MARKERS}
        wanted |= _module_markers(item.path)
        for mark in sorted(wanted - {m.name for m in item.iter_markers()}):
            item.add_marker(mark)


@pytest.fixture(autouse=True)
def _markers_cover_the_servers_started(request: pytest.FixtureRequest) -> Iterator[None]:
    before = Counter(local_services.STARTED)
    yield
    started = local_services.STARTED - before
    missing = [f"{program} -> @pytest.mark.{mark}" for program, mark in SERVER_MARKERS.items()
               if started[program] and request.node.get_closest_marker(mark) is None]
    if missing:
        pytest.fail(f"{request.node.nodeid} started servers its markers do not say: {', '.join(missing)}",
                    pytrace=False)


_ANALYZE_ROWS: list[dict[str, Any]] = []
_FLOOR_VERDICT: list[str] = []
_LOSO_ROWS: list[dict[str, Any]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect the rows of tests/integration/test_analyze_ground_truth.py (on the xdist controller too)."""
    if report.when == "call":
        _ANALYZE_ROWS.extend(value for name, value in report.user_properties if name == "analyze_row")


def _expected_clips() -> set[str]:
    """Every clip of ground_truth.csv, or an empty set when the data set is missing."""
    try:
        data = require_data_dir()
    except DataMissingError:
        return set()
    with (data / "ground_truth.csv").open() as f:
        return {Path(r["path"]).stem for r in csv.DictReader(f)}


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Once every clip was analysed: the leave-one-source-out evaluation, its floors and the shipped settings."""
    if hasattr(session.config, "workerinput") or not _ANALYZE_ROWS:
        return
    missing = _expected_clips() - {r["clip"] for r in _ANALYZE_ROWS}
    if missing:
        _FLOOR_VERDICT.append(f"leave-one-source-out not run: {len(missing)} clip(s) of ground_truth.csv "
                              "were not analysed in this run")
        return
    from formcheck_aggregator.recognition import RecognitionConfig
    from formcheck_aggregator.reps import RepConfig
    from formcheck_models.training import rep_selection as selection

    data_dir = require_data_dir()
    clips = selection.load_eval_clips(data_dir)  # frames cached by the tests
    table = selection.Table.build(clips, data_dir=data_dir)
    results = selection.leave_one_source_out(table)
    _LOSO_ROWS.extend(selection.summary_rows(results))
    exact = {ex: (t.exact, t.clips)
             for ex in LOSO_FLOORS for t in [selection.totals(results, None if ex == "all" else ex)]}
    everything = selection.totals(results)
    lines, failed = floor_verdicts(exact, (everything.bottoms_within, everything.bottoms), LOSO_FLOORS,
                                   BOTTOM_FLOOR)
    shipped_ok = selection.chosen_config(table) == RepConfig()
    lines.append("shipped rep settings (aggregator/formcheck_aggregator/reps.py RepConfig) = the choice on all clips: "
                 + ("ok" if shipped_ok else "DIFFERS: run 'formcheck models evaluate-reps' and update the defaults"))
    recognised, recognition = selection.recognition_loso(clips)
    right = sum(r.correct for r in recognised)
    recognition_below = right < RECOGNITION_FLOOR
    lines.append(f"exercise recognised: {right}/{len(recognised)} clips (leave-one-source-out), floor "
                 f"{RECOGNITION_FLOOR}: {'BELOW FLOOR' if recognition_below else 'ok'}")
    recognition_ok = recognition == RecognitionConfig()
    lines.append("shipped recognition thresholds (formcheck_aggregator.recognition.RecognitionConfig) = the choice "
                 "on all clips: " + ("ok" if recognition_ok else
                                     "DIFFERS: run 'formcheck models evaluate-reps' and update the defaults"))
    _FLOOR_VERDICT.extend(lines)
    if failed or not shipped_ok or recognition_below or not recognition_ok:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the analyze-vs-ground-truth table, the leave-one-source-out table and the floor verdicts."""
    rows = _ANALYZE_ROWS
    if not rows:
        return
    write = terminalreporter.write_line
    terminalreporter.section("formcheck analyze vs ground_truth.csv (shipped settings; R = regression clip)")
    write(f"{'clip':40} {'reps exp':>8} {'counted':>7} {'partial exp':>11} {'partial':>7}  "
          f"{'bottom err':>10}  {'labelled bad':>12} {'flagged bad':>11}  grades")
    for r in sorted(rows, key=lambda r: r["clip"]):
        ok = "ok " if r["expected"] == r["counted"] else "XX "
        worst = max((abs(e) for e in r["bottom_errors"]), default=None)
        write(f"{ok}{r['clip']:36}{'R' if r['regression'] else ' '} {r['expected']:>8} {r['counted']:>7} "
              f"{r['partial_expected']:>11} {r['partial']:>7}  {'-' if worst is None else worst:>10}  "
              f"{r['labelled_bad']!s:>12} {r['flagged_bad']!s:>11}  {r['grades']}")
    exact = sum(r["expected"] == r["counted"] for r in rows)
    write(f"shipped settings, in sample: {exact}/{len(rows)} clips counted exactly")
    recognised = sum(r["recognised"] == r["exercise"] for r in rows)
    write(f"shipped recognition thresholds, in sample: {recognised}/{len(rows)} clips' exercise recognised"
          + "".join(f"; {r['clip']} taken for {r['recognised']}" for r in rows if r["recognised"] != r["exercise"]))
    if _LOSO_ROWS:
        terminalreporter.section("leave-one-source-out (settings chosen without the clip's source)")
        write(f"{'clip':40} {'exercise':8} {'view':10} {'exp':>3} {'got':>3}  {'bottom |err| med/max':>20}  source")
        for r in _LOSO_ROWS:
            ok = "ok " if r["expected"] == r["counted"] else "XX "
            bottom = "-" if r["bottom_median"] is None else f"{r['bottom_median']:g}/{r['bottom_max']}"
            write(f"{ok}{r['clip']:37} {r['exercise']:8} {r['view']:10} {r['expected']:>3} {r['counted']:>3}  "
                  f"{bottom:>20}  {r['source']}")
    for line in _FLOOR_VERDICT:
        write(line)
