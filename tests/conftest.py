"""Shared fixtures. Data-dependent tests fail (never skip) with a clear message when the data set is missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from formcheck.local_services import Mosquitto, running_mosquitto
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


from formcheck.local_services import Influxd, running_influxd  # noqa: E402  (appended: fixtures below are InfluxDB's)


@pytest.fixture
def influxd() -> Iterator[Influxd]:
    """A fresh influxd 1.x on a free loopback port in its own temporary directory."""
    with running_influxd() as server:
        yield server
