"""The influx config section: defaults, durations, refusal of typos."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from formcheck_aggregator.influx_config import InfluxSection, duration_seconds


def test_defaults() -> None:
    cfg = InfluxSection()
    assert cfg.url == "http://127.0.0.1:8086"
    # Member data is personal data: finite by default (issue 13 item 8).
    assert (cfg.database, cfg.frame_retention, cfg.default_retention) == ("formcheck", "7d", "730d")
    assert (cfg.batch_size, cfg.flush_interval_s, cfg.timeout_s, cfg.buffer_max_points) == (500, 0.1, 5.0, 100_000)
    assert (cfg.retry_min_s, cfg.retry_max_s, cfg.create_database, cfg.gzip) == (0.5, 30.0, True, False)
    assert cfg.username is None and cfg.password is None


def test_every_field_is_described() -> None:
    assert all(f.description for f in InfluxSection.model_fields.values())


@pytest.mark.parametrize(("text", "seconds"), [("1h", 3600), ("7d", 604_800), ("52w", 31_449_600), ("INF", None),
                                               ("inf", None), ("90m", 5400)])
def test_duration_seconds(text: str, seconds: int | None) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("kwargs", [
    {"frame_retention": "30m"},  # InfluxDB's minimum is 1h
    {"frame_retention": "INF"},
    {"frame_retention": "7 days"},
    {"default_retention": "0d"},
    {"url": "127.0.0.1:8086"},
    {"batch_size": 0},
    {"retry_min_s": 5, "retry_max_s": 1},
    {"bucket": "x"},
])
def test_invalid_values_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        InfluxSection(**kwargs)  # type: ignore[arg-type]


def test_secrets_do_not_print() -> None:
    cfg = InfluxSection(username="admin", password="hunter2", url="https://influx.example:8086/")
    assert "hunter2" not in repr(cfg)
    assert cfg.url == "https://influx.example:8086"
    assert InfluxSection(default_retention="inf").default_retention == "INF"
