"""The InfluxDB v1 HTTP API: one keep-alive connection, InfluxQL queries, and what a ``/write`` answer means.

``classify_write_response`` maps every answer InfluxDB gives to an action (done, retry, recreate the schema),
after Telegraf's policy; it is pure so each observed answer is unit-tested. ``InfluxHttp`` is one connection,
reopened after any error; network failures raise ``InfluxError`` classed ``timeout`` or ``connection``.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from formcheck_aggregator.influx_config import InfluxSection

ErrorClass = Literal["timeout", "connection", "5xx", "4xx", "auth"]
ERROR_CLASSES: tuple[ErrorClass, ...] = ("timeout", "connection", "5xx", "4xx", "auth")


@dataclass(frozen=True)
class WriteOutcome:
    """What to do with a batch after InfluxDB answered ``status``."""

    action: Literal["done", "retry", "ensure"]
    rejected: int = 0
    error_class: ErrorClass | None = None
    message: str = ""
    # InfluxDB stored none of the request (a 4xx that is not a partial write).
    whole: bool = False


_DROPPED = re.compile(r"dropped=(\d+)")


def error_message(body: bytes) -> str:
    """InfluxDB's error text: ``{"error": ...}`` on 1.x, ``{"message": ...}`` on 2.x/3.x, else the raw body."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500]
    if isinstance(data, dict):
        for key in ("error", "message"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return text[:500]


def classify_write_response(status: int, body: bytes, points: int) -> WriteOutcome:
    """Map a ``/write`` answer to an action; pure, so every observed InfluxDB answer can be unit-tested."""
    if 200 <= status < 300:
        return WriteOutcome("done")
    message = error_message(body)
    if status in (401, 403):
        return WriteOutcome("retry", error_class="auth", message=message)
    if status == 404:
        return WriteOutcome("ensure", error_class="4xx", message=message)
    if status >= 500:
        if "retention policy not found" in message:
            return WriteOutcome("ensure", error_class="5xx", message=message)
        return WriteOutcome("retry", error_class="5xx", message=message)
    if status in (408, 429):
        # Too busy / too slow is transient: InfluxDB 2.x rate-limits with 429.
        return WriteOutcome("retry", error_class="4xx", message=message)
    if "partial write" in message:
        found = _DROPPED.search(message)
        reported = int(found.group(1)) if found else 0
        unparsable = message.count("unable to parse '")
        rejected = min(points, max(1, reported + unparsable))
        return WriteOutcome("done", rejected=rejected, error_class="4xx", message=message)
    return WriteOutcome("done", rejected=points, error_class="4xx", message=message, whole=True)


class InfluxError(Exception):
    """A request to InfluxDB failed; ``error_class`` is one of ``ERROR_CLASSES``."""

    def __init__(self, error_class: ErrorClass, message: str) -> None:
        super().__init__(f"{error_class}: {message}")
        self.error_class: ErrorClass = error_class
        self.message = message


class InfluxHttp:
    """One keep-alive HTTP(S) connection to InfluxDB; reopened after any error."""

    def __init__(self, config: InfluxSection) -> None:
        parsed = urllib.parse.urlsplit(config.url)
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port
        self._prefix = parsed.path.rstrip("/")
        self._timeout = config.timeout_s
        self._headers: dict[str, str] = {}
        if config.username is not None:
            password = config.resolved_password()
            token = base64.b64encode(f"{config.username.get_secret_value()}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def post(self, path: str, params: Mapping[str, str], body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """POST and read the whole answer; network failures raise ``InfluxError`` (timeout / connection)."""
        url = f"{self._prefix}{path}?{urllib.parse.urlencode(params)}"
        conn = self._connection()
        try:
            conn.request("POST", url, body=body, headers={**self._headers, **headers})
            response = conn.getresponse()
            data = response.read()
        except TimeoutError as exc:
            self.close()
            raise InfluxError("timeout", f"no answer within {self._timeout:g} s") from exc
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise InfluxError("connection", f"{type(exc).__name__}: {exc}") from exc
        if response.will_close:
            self.close()
        return response.status, data


def influxql_string(value: str) -> str:
    """``value`` as an InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def query(http_: InfluxHttp, q: str, db: str | None = None) -> list[dict[str, object]]:
    """One InfluxQL statement over POST /query; the first series' rows as dicts; errors raise InfluxError."""
    series = query_series(http_, q, db)
    return series[0][1] if series else []


Series = tuple[dict[str, str], list[dict[str, object]]]
"""One series of a query answer: its GROUP BY tags and its rows as dicts."""


def query_series(http_: InfluxHttp, q: str, db: str | None = None) -> list[Series]:
    """One InfluxQL statement over POST /query; every series as (its GROUP BY tags, its rows as dicts)."""
    params = {"q": q, **({"db": db} if db else {})}
    status, body = http_.post("/query", params, b"", {"Content-Length": "0"})
    if status in (401, 403):
        raise InfluxError("auth", f"{q}: {error_message(body)}")
    if status >= 500:
        raise InfluxError("5xx", f"{q}: {error_message(body)}")
    if status >= 300:
        raise InfluxError("4xx", f"{q}: HTTP {status} {error_message(body)}")
    data = json.loads(body or b"{}")
    result = (data.get("results") or [{}])[0]
    if "error" in result or "error" in data:
        raise InfluxError("4xx", f"{q}: {result.get('error') or data.get('error')}")
    return [(dict(one.get("tags") or {}),
             [dict(zip(one["columns"], row, strict=True)) for row in one.get("values") or []])
            for one in result.get("series") or []]
