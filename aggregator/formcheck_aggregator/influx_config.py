"""The ``influx`` section of the aggregator configuration: where and how points are written.

The aggregator talks to InfluxDB through the v1 HTTP API only (line protocol on ``/write``, InfluxQL on
``/query``), which InfluxDB 1.x serves natively and 2.x/3.x serve as their v1 compatibility API. Points go
to two retention policies in one database:

- ``frames`` — per-frame telemetry, kept ``frame_retention`` (default 7 days): it is large and only useful
  while someone looks at a live wall display or debugs a station.
- ``default`` — reps, sets, check-ins, open-set checkpoints and node/aggregator stats, kept
  ``default_retention`` (default ``730d``, two years). Everything here that names a member is personal data
  (a pseudonymous member id included), and storage must be limited in time: two years keep a year-on-year
  comparison of a member's training, then it goes. Set what the gym's data-protection rules say; ``INF`` keeps
  it forever. ``formcheck member erase`` removes one member at any time.

With ``create_database`` on, the writer creates the database and both policies (and alters their durations
when the config changes) through InfluxQL; that works on 1.x. On 2.x/3.x turn it off and map the database
and the two policy names to buckets (DBRP mappings) by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from formcheck_runtime.settings import read_secret_file

# InfluxQL duration literals as retention policies accept them; one unit keeps them readable in configs.
_DURATION = re.compile(r"^([1-9][0-9]*)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
INFINITE = "INF"
# Member data (reps, sets, check-ins) is personal data: kept for a limited time unless configured otherwise.
DEFAULT_RETENTION = "730d"
# InfluxDB refuses retention policies shorter than one hour.
MIN_RETENTION_S = 3600


def duration_seconds(value: str) -> int | None:
    """Seconds in an InfluxQL duration like ``7d``; ``None`` for ``INF`` (keep forever)."""
    if value.upper() == INFINITE:
        return None
    match = _DURATION.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a duration like '12h', '7d' or '52w'")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def _check_retention(value: str, allow_infinite: bool) -> str:
    seconds = duration_seconds(value)
    if seconds is None:
        if not allow_infinite:
            raise ValueError("must be finite (e.g. '7d')")
        return INFINITE
    if seconds < MIN_RETENTION_S:
        raise ValueError(f"{value!r} is shorter than InfluxDB's minimum retention of 1h")
    return value


class InfluxSection(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    url: str = Field(
        "http://127.0.0.1:8086",
        description="Base URL of the InfluxDB v1 HTTP API (http:// or https://, optionally with a path prefix "
        "when behind a reverse proxy).",
    )
    database: str = Field("formcheck", min_length=1, description="Database the aggregator writes to.")
    username: SecretStr | None = Field(
        None, description="User for HTTP basic auth; unset when InfluxDB runs without authentication."
    )
    password: SecretStr | None = Field(
        None,
        description="Password for HTTP basic auth (on 2.x/3.x: an API token). Prefer the environment variable "
        "over the YAML file so it stays out of version control.",
    )
    password_file: Path | None = Field(
        None,
        description="File whose first line is the password (a compose secret or systemd credential); used when "
        "password is unset.",
    )
    frame_points_per_s: float = Field(
        4.0, ge=0, description="Frame points stored per second and station, besides one at every phase change "
        "(the live phase is always the current one); each point's 'frames' field counts the frames it stands for. "
        "The full-rate stream still reaches the rep counter over MQTT. 0: one point per frame.",
    )
    frame_retention: str = Field(
        "7d",
        description="How long per-frame telemetry (retention policy 'frames') is kept: an InfluxQL duration "
        "such as '2d', '7d' or '4w', at least 1h.",
    )
    default_retention: str = Field(
        DEFAULT_RETENTION,
        description="How long reps, sets, check-ins and stats (retention policy 'default') are kept: member data "
        "is personal data, so finite by default (730d: two years, a year-on-year comparison); a duration such "
        "as '365d' or '104w', or 'INF' (forever) if your data-protection rules allow it.",
    )
    batch_size: int = Field(500, ge=1, le=50_000, description="Most points sent in one write request.")
    flush_interval_s: float = Field(
        0.1, gt=0, le=60,
        description="Longest a point waits for its batch to fill before it is sent anyway. Reps and sets are "
        "announced on MQTT only after their write, so this is most of a rep's latency: 0.5 gave p99 540 ms from "
        "the closing frame to MQTT at 10 stations x 30 fps, 0.1 gave 150-235 ms (bench/latency_bench.py). Under "
        "load, batches fill to batch_size first and this does not matter.",
    )
    timeout_s: float = Field(
        5.0, gt=0, le=300, description="Network timeout of one request; a write that times out is retried."
    )
    buffer_max_points: int = Field(
        100_000,
        ge=1,
        description="Points held in memory while InfluxDB is slow or down. Beyond it the oldest frame points are "
        "dropped (counted) and submitting reps/sets blocks until there is room. The aggregator's total: split evenly "
        "over its worker processes.",
    )
    retry_min_s: float = Field(0.5, gt=0, description="First wait before retrying a failed write.")
    retry_max_s: float = Field(30.0, gt=0, description="Longest wait between retries (exponential backoff cap).")
    create_database: bool = Field(
        True,
        description="Create the database and the 'frames'/'default' retention policies at start and when a write "
        "finds them missing (InfluxDB 1.x; turn off for 2.x/3.x).",
    )
    gzip: bool = Field(False, description="Gzip request bodies (saves bandwidth to a remote InfluxDB, costs CPU).")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("frame_retention")
    @classmethod
    def _frames(cls, value: str) -> str:
        return _check_retention(value, allow_infinite=False)

    @field_validator("default_retention")
    @classmethod
    def _default(cls, value: str) -> str:
        return _check_retention(value, allow_infinite=True)

    @model_validator(mode="after")
    def _retry_range(self) -> InfluxSection:
        if self.retry_max_s < self.retry_min_s:
            raise ValueError("retry_max_s must not be smaller than retry_min_s")
        return self

    def resolved_password(self) -> str:
        """The password from ``password`` or else ``password_file``; empty when neither is set."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return read_secret_file(self.password_file, "influx.password_file")
        return ""
