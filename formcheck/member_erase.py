"""``formcheck member erase MEMBER``: remove one member's personal data from InfluxDB, the broker and its accounts.

A member id is pseudonymous (``m-1042``), but the gym can tie it to a person: it is personal data, and so is
everything stored under it. Where a member is stored, and how each place is erased:

* InfluxDB: every point that names a member carries a ``member`` tag (``rep``, ``set``, ``session`` check-ins,
  ``open_set`` checkpoints), so one ``DROP SERIES WHERE "member"::tag = '…'`` removes them in every measurement
  and retention policy. InfluxDB 1.x deletes by tag only; it needs the WRITE privilege on the database (no
  admin), counting needs READ. ``::tag``: check-ins stored before the member became a tag have a ``member``
  field, and a bare ``"member"`` in a deletion's WHERE clause is then refused ("fields not supported"). Those
  older points (``session`` with the ``member`` field, ``open_set`` whose JSON state names the member) are found
  by a field scan and deleted one by one by node and time.
* The broker: the member's last set summary is retained on ``{prefix}/{site}/members/{member}/notifications``
  (every retained member topic of the registry is cleared); an empty retained message (acknowledged by the
  broker) clears it, so a reused id never receives the last person's set. Only the ``operator`` role (and the
  aggregator) may write it; the command never uses the
  aggregator's account, which would take over the running aggregator's connection (one connection per
  account). A member still checked in at a station (a retained session naming them) is refused before
  anything is erased: the aggregator would go on storing their set.
* The broker's accounts (``--accounts DIR``): the member's account is removed with ``formcheck broker users``'s
  own code; the broker applies it on reload.

Everything is idempotent: erasing a member who is not stored anywhere says so and succeeds.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from formcheck_aggregator.influx import InfluxError, InfluxHttp, error_message, influxql_string
from formcheck_aggregator.influx_config import InfluxSection
from formcheck_protocol.topics import REGISTRY, Scope, Topics
from formcheck_runtime.broker import BrokerSection, connect_properties, make_client, unreachable_reason

BROKER_WAIT_S = 5.0

# Points written before ``member`` became a tag on them (one query each, deleted by node and time).
LEGACY_SESSION = 'SELECT "member"::field AS "member" FROM "session" WHERE "member"::field = {member} GROUP BY "node"'
LEGACY_OPEN_SET = 'SELECT "state" FROM "open_set" WHERE "state" =~ {pattern} GROUP BY "node"'


class EraseError(RuntimeError):
    """The erase could not be done (or finished); one line for the operator."""


class CheckedInError(EraseError):
    """The member is still checked in at a station."""


# --- pure parts ------------------------------------------------------------------------------------------------


def quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def regex_literal(text: str) -> str:
    """``text`` matched literally, as an InfluxQL regex (Go RE2 between slashes)."""
    return "/" + re.sub(r"([\\.+*?()|\[\]{}^$/])", r"\\\1", text) + "/"


def count_statement(rp: str, member: str) -> str:
    """Per measurement of retention policy ``rp``: how many of its points name ``member`` (by tag)."""
    return f'SELECT count(*) FROM {quote_ident(rp)}./.*/ WHERE "member"::tag = {influxql_string(member)}'


def drop_statement(member: str) -> str:
    """Every series naming ``member``, in every measurement and retention policy of the database."""
    return f'DROP SERIES WHERE "member"::tag = {influxql_string(member)}'


def legacy_statements(member: str) -> dict[str, str]:
    """Measurement → the field scan finding its points that name ``member`` without a ``member`` tag."""
    return {
        "session": LEGACY_SESSION.format(member=influxql_string(member)),
        "open_set": LEGACY_OPEN_SET.format(pattern=regex_literal(f'"member":{json.dumps(member)}')),
    }


def delete_point_statement(measurement: str, node: str, ts_ns: int) -> str:
    return f'DELETE FROM {quote_ident(measurement)} WHERE "node" = {influxql_string(node)} AND time = {ts_ns}'


def points_per_series(series: list[tuple[str, dict[str, str], list[dict[str, Any]]]]) -> dict[str, int]:
    """``count(*)`` answers → points per measurement: the largest field count (every point has that field)."""
    counts: dict[str, int] = {}
    for name, _, rows in series:
        total = max((int(v) for row in rows for k, v in row.items() if k.startswith("count_") and v), default=0)
        if total:
            counts[name] = counts.get(name, 0) + total
    return counts


def retained_check_ins(messages: dict[str, bytes], member: str) -> list[str]:
    """Topics among the retained session messages whose payload checks ``member`` in (sorted)."""
    found = []
    for topic, payload in messages.items():
        try:
            data = json.loads(payload) if payload else None
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("member") == member:
            found.append(topic)
    return sorted(found)


def summary(counts: dict[str, int]) -> str:
    """``3 rep, 1 set`` in a stable order (measurement names as stored)."""
    return ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))


# --- InfluxDB --------------------------------------------------------------------------------------------------


@dataclass
class InfluxEraseResult:
    removed: dict[str, int] = field(default_factory=dict)  # measurement (rp.measurement outside "default") → points


class InfluxEraser:
    """InfluxQL over the v1 HTTP API with an account that has READ and WRITE on ``database``."""

    def __init__(self, url: str, database: str, username: str | None, password: str | None,
                 timeout_s: float = 30.0) -> None:
        self.config = InfluxSection(url=url, database=database, create_database=False, timeout_s=timeout_s,
                                    username=SecretStr(username) if username else None,
                                    password=SecretStr(password or "") if username else None)
        self._http = InfluxHttp(self.config)

    def close(self) -> None:
        self._http.close()

    def series(self, q: str) -> list[tuple[str, dict[str, str], list[dict[str, Any]]]]:
        """Every series of the answer as (measurement, GROUP BY tags, rows); time in ns. Raises ``EraseError``."""
        params = {"q": q, "db": self.config.database, "epoch": "ns"}
        try:
            status, body = self._http.post("/query", params, b"", {"Content-Length": "0"})
        except InfluxError as exc:
            raise EraseError(f"InfluxDB {self.config.url}: {exc.message}") from exc
        if status in (401, 403):
            raise EraseError(f"InfluxDB refused {q.split(maxsplit=1)[0]} ({error_message(body)}): the account "
                             f"needs READ and WRITE on {self.config.database!r} (GRANT ALL ON ...; no admin needed)")
        if status >= 300:
            raise EraseError(f"InfluxDB answered HTTP {status} to {q!r}: {error_message(body)}")
        data = json.loads(body or b"{}")
        result = (data.get("results") or [{}])[0]
        if "error" in result or "error" in data:
            message = str(result.get("error") or data.get("error"))
            if "database not found" in message:
                return []
            raise EraseError(f"InfluxDB refused {q!r}: {message}")
        return [(str(one.get("name", "")), dict(one.get("tags") or {}),
                 [dict(zip(one["columns"], row, strict=True)) for row in one.get("values") or []])
                for one in result.get("series") or []]

    def retention_policies(self) -> list[str]:
        rows = [row for _, _, rows in self.series(f"SHOW RETENTION POLICIES ON {quote_ident(self.config.database)}")
                for row in rows]
        return [str(row["name"]) for row in rows]

    def tagged(self, member: str) -> dict[str, int]:
        """Points naming ``member`` by tag, per measurement (``rp.measurement`` outside the default policy)."""
        counts: dict[str, int] = {}
        for rp in self.retention_policies():
            for name, n in points_per_series(self.series(count_statement(rp, member))).items():
                key = name if rp == "default" else f"{rp}.{name}"
                counts[key] = counts.get(key, 0) + n
        return counts

    def legacy(self, member: str) -> dict[str, list[tuple[str, int]]]:
        """Measurement → (node, time in ns) of points naming ``member`` in a field only (stored before the tag)."""
        found: dict[str, list[tuple[str, int]]] = {}
        for measurement, q in legacy_statements(member).items():
            for _, tags, rows in self.series(q):
                for row in rows:
                    found.setdefault(measurement, []).append((tags.get("node", ""), int(row["time"])))
        return found

    def erase(self, member: str) -> InfluxEraseResult:
        """Count, drop, delete the older points, then check that nothing naming ``member`` is left."""
        removed = self.tagged(member)
        legacy = self.legacy(member)
        if removed:
            self.series(drop_statement(member))
        for measurement, points in legacy.items():
            for node, ts_ns in points:
                self.series(delete_point_statement(measurement, node, ts_ns))
            removed[measurement] = removed.get(measurement, 0) + len(points)
        left = {**self.tagged(member), **{m: len(p) for m, p in self.legacy(member).items() if p}}
        if left:
            raise EraseError(f"InfluxDB still holds points of member {member!r} after the erase: {summary(left)}")
        return InfluxEraseResult(removed)


# --- broker ----------------------------------------------------------------------------------------------------


class BrokerSession:
    """One MQTT connection of the operator's account: read retained check-ins, clear retained notifications."""

    def __init__(self, cfg: BrokerSection, topics: Topics, wait_s: float = BROKER_WAIT_S) -> None:
        self.cfg = cfg
        self.topics = topics
        self.wait_s = wait_s
        self.client = make_client(cfg, "formcheck-member-erase")
        self._lock = threading.Lock()
        self._connack: list[ReasonCode] = []
        self._connected = threading.Event()
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._pubacks: dict[int, ReasonCode] = {}
        self._changed = threading.Condition(self._lock)
        self.retained: dict[str, bytes] = {}
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message

    def _on_connect(self, c: mqtt.Client, u: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        self._connack.append(reason)
        self._connected.set()

    def _on_subscribe(self, c: mqtt.Client, u: Any, mid: int, codes: list[ReasonCode], props: Any) -> None:
        with self._changed:
            self._subacks[mid] = codes
            self._changed.notify_all()

    def _on_publish(self, c: mqtt.Client, u: Any, mid: int, reason: ReasonCode, props: Any) -> None:
        with self._changed:
            self._pubacks[mid] = reason
            self._changed.notify_all()

    def _on_message(self, c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            with self._lock:
                self.retained[msg.topic] = bytes(msg.payload)

    def connect(self) -> None:
        cfg = self.cfg
        try:
            self.client.connect(cfg.host, cfg.port, keepalive=10, properties=connect_properties())
        except ssl.SSLError as exc:
            raise EraseError(f"TLS with broker {cfg.host}:{cfg.port} failed: {exc.reason or exc}"
                             + (f" ({exc.verify_message})" if isinstance(exc, ssl.SSLCertVerificationError)
                                else "")) from None
        except OSError:
            raise EraseError(f"cannot reach broker {cfg.host}:{cfg.port}: "
                             f"{unreachable_reason(cfg.host, cfg.port)}") from None
        self.client.loop_start()
        if not self._connected.wait(self.wait_s):
            raise EraseError(f"no answer from broker {cfg.host}:{cfg.port} within {self.wait_s:g} s: "
                             f"{unreachable_reason(cfg.host, cfg.port)}")
        if self._connack[0].is_failure:
            raise EraseError(f"broker {cfg.host}:{cfg.port} refused the login: {self._connack[0]}"
                             + ("" if cfg.username else " (no --username given: use an operator account)"))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        with self._changed:
            if not self._changed.wait_for(done, self.wait_s):
                raise EraseError(f"broker {self.cfg.host}:{self.cfg.port} did not acknowledge {what} within "
                                 f"{self.wait_s:g} s")

    def _subscribe(self, topic: str) -> list[ReasonCode]:
        result, mid = self.client.subscribe(topic, qos=0)
        if result != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise EraseError(f"cannot subscribe to {topic}: {mqtt.error_string(result)}")
        self._wait(lambda: mid in self._subacks, f"the subscription to {topic}")
        return self._subacks[mid]

    def check_ins(self, member: str) -> list[str]:
        """Stations whose retained session checks ``member`` in.

        The broker queues a subscription's retained messages while it handles the SUBSCRIBE, so they are all
        here once a second SUBSCRIBE, sent after the first one's SUBACK, is acknowledged (QoS 0: no in-flight
        window holds them back).
        """
        sessions = f"{self.topics.root}/nodes/+/session"
        codes = self._subscribe(sessions)
        if any(code.is_failure for code in codes):
            raise EraseError(f"broker refused reading station sessions ({codes[0]}): account "
                             f"{self.cfg.username!r} must have the operator role")
        self._subscribe(f"{self.topics.root}/members/{member}/notifications")  # the barrier (no right to read)
        with self._lock:
            retained = dict(self.retained)
        return [topic.split("/")[-2] for topic in retained_check_ins(
            {t: p for t, p in retained.items() if t.endswith("/session")}, member)]

    def clear_retained(self, member: str) -> list[str]:
        """Publish an empty retained message on each retained member topic; return the topics once all are acked."""
        topics = member_retained_topics(self.topics, member)
        infos = [(topic, self.client.publish(topic, b"", qos=1, retain=True)) for topic in topics]
        for topic, info in infos:
            self._wait(lambda info=info: info.mid in self._pubacks, f"clearing {topic}")  # type: ignore[misc]
            reason = self._pubacks[info.mid]
            if reason.is_failure:
                raise EraseError(f"broker refused clearing {topic}: {reason} (account {self.cfg.username!r} needs "
                                 "the operator role)")
        return topics


def member_retained_topics(topics: Topics, member: str) -> list[str]:
    """The member's retained topics in the registry (the last set summary, and any added later)."""
    return [f"{topics.root}/members/{member}/{spec.kind}" for spec in REGISTRY.values()
            if spec.scope is Scope.MEMBER and spec.retain]
