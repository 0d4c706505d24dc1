"""The database and its two retention policies: the InfluxQL an administrator runs once, or the writer runs.

``schema_statements`` is what ``formcheck aggregator --print-schema`` prints (the compose stack's init script);
``ensure_schema`` creates what is missing and aligns durations when the aggregator may (``create_database``).
"""

from __future__ import annotations

import logging
import re

from formcheck_aggregator.influx.http import InfluxHttp, query
from formcheck_aggregator.influx_config import InfluxSection, duration_seconds

log = logging.getLogger("formcheck_aggregator.influx")


def _quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _go_duration_s(text: str) -> int | None:
    """Seconds in a Go duration as SHOW RETENTION POLICIES prints it ('168h0m0s'); '0s' means infinite."""
    total = 0.0
    for amount, unit in re.findall(r"([0-9.]+)(h|ms|m|s|us|µs|ns)", text):
        total += float(amount) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}[unit]
    return None if total == 0 else round(total)


def _retention_policies(cfg: InfluxSection) -> list[tuple[str, str, bool, str]]:
    """(name, duration, is default, the policy as CREATE/ALTER RETENTION POLICY take it) of both policies."""
    db = _quote_ident(cfg.database)
    policies = []
    wanted = (("frames", cfg.frame_retention, False), ("default", cfg.default_retention, True))
    for name, duration, is_default in wanted:
        spec = (f"{_quote_ident(name)} ON {db} DURATION {duration} REPLICATION 1 "
                f"SHARD DURATION {_shard_duration(duration_seconds(duration))}{' DEFAULT' if is_default else ''}")
        policies.append((name, duration, is_default, spec))
    return policies


def schema_statements(cfg: InfluxSection) -> list[str]:
    """The InfluxQL that creates the database and both retention policies: what an administrator runs once when
    the aggregator writes with an account that may not (``create_database`` off; the compose stack's init script
    is this, ``formcheck aggregator --print-schema``)."""
    return [f"CREATE DATABASE {_quote_ident(cfg.database)}",
            *(f"CREATE RETENTION POLICY {spec}" for _, _, _, spec in _retention_policies(cfg))]


def _shard_duration(seconds: int | None) -> str:
    """InfluxDB's own default shard group duration for a retention period, stated explicitly so that
    ALTERing a policy to a shorter duration is never refused for a too-long shard duration."""
    if seconds is None or seconds >= 180 * 86_400:
        return "7d"
    if seconds >= 2 * 86_400:
        return "1d"
    return "1h"


def ensure_schema(conn: InfluxHttp, cfg: InfluxSection) -> None:
    """Create the database and both retention policies, or align their durations and the default; idempotent."""
    db = _quote_ident(cfg.database)
    query(conn, f"CREATE DATABASE {db}")
    existing = {str(row["name"]): row for row in query(conn, f"SHOW RETENTION POLICIES ON {db}")}
    for name, duration, is_default, spec in _retention_policies(cfg):
        row = existing.get(name)
        if row is None:
            query(conn, f"CREATE RETENTION POLICY {spec}")
        elif (_go_duration_s(str(row["duration"])) != duration_seconds(duration)
              or (is_default and not row["default"])):
            query(conn, f"ALTER RETENTION POLICY {spec}")
    log.info("InfluxDB database %s ready (frames %s, default %s)", cfg.database, cfg.frame_retention,
             cfg.default_retention)
