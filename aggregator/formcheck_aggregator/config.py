"""Aggregator configuration: one YAML file, ``FORMCHECK_AGG__*`` environment variables, CLI options."""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from formcheck_aggregator.grading import GradingConfig
from formcheck_aggregator.influx_config import InfluxSection
from formcheck_aggregator.reps import RepConfig
from formcheck_aggregator.station import SetConfig
from formcheck_runtime.broker import BrokerSection
from formcheck_runtime.settings import ConfigError, Section, load_settings, validated_id
from formcheck_runtime.settings import example_yaml as render_example

ENV_PREFIX = "FORMCHECK_AGG__"
__all__ = ["AggregatorConfig", "ConfigError", "example_yaml", "load_config"]


class AggregatorMqtt(BrokerSection):
    """Broker connection of the aggregator: a persistent session, acknowledged only after storage."""

    session_expiry_s: int = Field(
        86_400, ge=0, description="How long the broker keeps our session and queues frames while we are away."
    )
    receive_maximum: int = Field(
        4000, ge=1, le=65535,
        description="Most QoS 1 messages unacknowledged at once (we stop reading beyond it; it bounds the inbox, "
        "~1 KB each). Messages are acked only after their InfluxDB write, so throughput is at most this divided by "
        "the write latency: 1000 capped a 2-core box at ~8,400 msgs/s, where 4000 leaves the CPU as the limit.",
    )
    max_payload_bytes: int = Field(65_536, ge=256, description="Larger payloads are dropped and counted.")


class PartitionSection(Section):
    """Which stations this aggregator owns when several share one broker."""

    mode: Literal["all", "list", "hash"] = Field(
        "all", description="all: every station; list: the stations listed; hash: crc32(node) % count == index."
    )
    stations: list[str] = Field(default_factory=list, description="Station ids owned in 'list' mode.")
    index: int = Field(0, ge=0, description="This aggregator's index in 'hash' mode.")
    count: int = Field(1, ge=1, description="Number of aggregators in 'hash' mode.")

    @model_validator(mode="after")
    def _consistent(self) -> PartitionSection:
        if self.mode == "hash" and self.index >= self.count:
            raise ValueError("partition.index must be < partition.count")
        if self.mode == "list" and not self.stations:
            raise ValueError("partition.stations must list at least one station in 'list' mode")
        for station in self.stations:
            validated_id(station, "station id")
        return self

    def owns(self, node: str) -> bool:
        if self.mode == "list":
            return node in self.stations
        if self.mode == "hash":
            # crc32, not hash(): must agree across processes and Python versions.
            return zlib.crc32(node.encode()) % self.count == self.index
        return True


class ClockSection(Section):
    """Which capture times are believable (edge clocks can be wrong)."""

    max_future_s: float = Field(300.0, ge=0, description="Frames stamped further ahead of our clock are dropped.")
    max_age_s: float = Field(
        7 * 86_400.0, gt=0,
        description="Frames older than this are dropped (keep >= the frame retention; the broker may hold "
        "frames for as long as our session lives).",
    )


class NotificationSection(Section):
    """Delivery of set summaries beyond MQTT."""

    apprise: dict[str, list[SecretStr]] = Field(
        default_factory=dict,
        description="Per member id, apprise URLs (mailto://, tgram://, ntfy://, ...) to send each set summary to. "
        "Needs the optional 'apprise' package.",
    )
    retries: int = Field(3, ge=0, description="Attempts after the first for a failing channel.")
    retry_delay_s: float = Field(5.0, ge=0, description="Wait before the first retry; doubles each time.")
    queue: int = Field(100, ge=1, description="Pending deliveries kept; the oldest is dropped and counted beyond.")


class AggregatorConfig(Section):
    """Everything an aggregator needs."""

    site: str = Field("main", description="Gym/site id (second topic level, InfluxDB tag).")
    id: str = Field("agg-1", description="This aggregator's id (client id, status payload).")
    mqtt: AggregatorMqtt = Field(default_factory=AggregatorMqtt, description="Broker connection.")
    influx: InfluxSection = Field(default_factory=InfluxSection, description="InfluxDB (v1 HTTP API).")
    reps: RepConfig = Field(default_factory=RepConfig, description="Repetition detection.")
    sets: SetConfig = Field(default_factory=SetConfig, description="When sets end.")
    grading: GradingConfig = Field(default_factory=GradingConfig, description="Scores, grades and verdicts.")
    partition: PartitionSection = Field(default_factory=PartitionSection, description="Station ownership.")
    clock: ClockSection = Field(default_factory=ClockSection, description="Accepted capture times.")
    notifications: NotificationSection = Field(
        default_factory=NotificationSection, description="Optional delivery to members' phones or mail."
    )
    workers: Literal["process", "thread"] = Field(
        "process",
        description="process: decoding, reps, grading and InfluxDB writes run in a worker process, so they do not "
        "compete with MQTT packet handling for one core; thread: all in one process (single-core boxes, tests).",
    )
    worker_processes: int = Field(
        0, ge=0, le=32,
        description="Worker processes in 'process' mode. A station's messages always go to the same worker (a hash "
        "of the node id independent of the partition's), each with its own InfluxDB connection and an even share "
        "of influx.buffer_max_points. 0: one per CPU core but one (left for the network process, Mosquitto and "
        "InfluxDB), at least 1, at most 4.",
    )
    stats_interval_s: float = Field(10.0, gt=0, description="Seconds between aggregator_stats points.")
    stop_timeout_s: float = Field(
        4.0, gt=0, le=60,
        description="On SIGTERM, the longest the aggregator spends storing what it holds before it exits; what is "
        "not stored by then was never acknowledged and the broker redelivers it to the next run. Keep it under the "
        "supervisor's grace period (Docker: 10 s, then SIGKILL).",
    )
    heartbeat_file: Path | None = Field(
        None, description="Touched every stats interval while the worker loop runs (container health checks)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log verbosity.")

    @field_validator("site", "id")
    @classmethod
    def _ids(cls, value: str) -> str:
        return validated_id(value, "id")

    def worker_process_count(self) -> int:
        """``worker_processes``, with 0 resolved from the CPU cores this process may use."""
        if self.worker_processes:
            return self.worker_processes
        return max(1, min(4, len(os.sched_getaffinity(0)) - 1))


def load_config(
    path: Path | None, overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None
) -> AggregatorConfig:
    return load_settings(AggregatorConfig, path, overrides, environ, ENV_PREFIX)


def example_yaml() -> str:
    return render_example(AggregatorConfig, "formcheck aggregator configuration")
