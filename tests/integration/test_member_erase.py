"""``formcheck member erase`` against the real components (issue 13 item 8).

The shipped ``mosquitto/mosquitto.conf`` (accounts made by ``formcheck broker users``, an ``operator`` account
for the command), an influxd with authentication set up by the shipped init script, and the real
``formcheck aggregator`` writing with its own non-admin account. Two members check in, train and get their set
summaries retained; two points of the schema used before ``member`` became a tag are added for each. After
``formcheck member erase alice``: no InfluxQL query (tag values, tag filter, a scan of every field of every
measurement in every retention policy) returns anything of alice, no retained topic holds her, her account is
refused, and bob's points, retained notification, check-in and account are exactly as before.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from formcheck.local_services import Influxd, Mosquitto, influx_query, start_influxd
from formcheck_protocol.messages import FrameMessage, SessionMessage
from tests.integration.frame_factory import init_database_as_compose_does, now_ms, squat_stream
from tests.integration.test_broker_security import Conn, add_accounts, connect, make_ca, make_cert, start
from tests.waiting import wait_until

pytestmark = [pytest.mark.security, pytest.mark.broker]

ACCOUNTS = {"ops": "operator", "agg": "aggregator", "desk": "staff", "rack-1": "node", "rack-2": "node",
            "alice": "member", "bob": "member"}
AT = {"alice": "rack-1", "bob": "rack-2"}
ADMIN = ("admin", "admin-password-for-test")
WRITER = ("aggregator", "writer-password-for-test")
ERASER = ("gdpr", "eraser-password-for-test")  # READ and WRITE on the database, not an administrator
DB = "formcheck"
ROOT = "gym/main"
WAIT = 5.0


@dataclass
class Stack:
    broker: Mosquitto
    influxd: Influxd
    accounts: Path
    secrets: Path
    passwords: dict[str, str]
    aggregator_log: Path

    def login(self, name: str) -> Conn:
        conn = connect(self.broker.port, name, self.passwords[name])
        assert conn.connected.is_set(), f"{name} could not log in: {conn.connack}"
        return conn

    def query(self, q: str, auth: tuple[str, str] = ADMIN) -> list[dict[str, Any]]:
        return influx_query(self.influxd.url, q, db=DB, auth=auth)

    def series(self, q: str) -> list[dict[str, Any]]:
        """Every series of the answer (name, tags, rows), unlike ``influx_query`` (first series only)."""
        request = urllib.request.Request(
            f"{self.influxd.url}/query", method="POST",
            data=urllib.parse.urlencode({"q": q, "db": DB, "epoch": "ms"}).encode(),
            headers={"Authorization": "Basic " + base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()})
        with urllib.request.urlopen(request, timeout=10) as response:
            result = json.loads(response.read())["results"][0]
        assert "error" not in result, (q, result)
        return [{"name": s.get("name", ""), "tags": s.get("tags") or {},
                 "rows": [dict(zip(s["columns"], row, strict=True)) for row in s.get("values") or []]}
                for s in result.get("series") or []]

    def write(self, lines: str) -> None:
        request = urllib.request.Request(
            f"{self.influxd.url}/write?db={DB}&precision=ms", data=lines.encode(), method="POST",
            headers={"Authorization": "Basic " + base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 204

    def count(self, measurement: str, member: str) -> int:
        field_ = {"rep": "score", "set": "reps", "session": "checked_in", "open_set": "set_id"}[measurement]
        rows = self.query(f'SELECT count("{field_}") FROM "{measurement}" WHERE "member"::tag = \'{member}\'')
        return int(rows[0]["count"]) if rows else 0


def publish_all(conn: Conn, messages: list[tuple[str, bytes]], retain: bool = False) -> None:
    infos = [conn.client.publish(topic, payload, qos=1, retain=retain) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(timeout=20)
        assert info.is_published()


def frames_topic(frame: FrameMessage) -> tuple[str, bytes]:
    return f"{ROOT}/nodes/{frame.node}/frames", frame.to_json()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("member-erase")
    make_ca(root / "tls", "formcheck-ca")
    make_cert(root / "tls", "formcheck-ca", "formcheck-server", server=True)
    passwords = add_accounts(root / "accounts", root / "secrets", ACCOUNTS)
    broker, _ = start(root)
    influxd = start_influxd(root / "influxd", auth_enabled=True)
    log = root / "aggregator.log"
    proc = None
    try:
        init_database_as_compose_does(influxd, ADMIN, DB, (WRITER, ERASER))
        (root / "secrets" / "influx.password").write_text(ERASER[1] + "\n")
        env = {
            "FORMCHECK_AGG__INFLUX__USERNAME": WRITER[0], "FORMCHECK_AGG__INFLUX__PASSWORD": WRITER[1],
            "FORMCHECK_AGG__INFLUX__CREATE_DATABASE": "false", "FORMCHECK_AGG__INFLUX__FLUSH_INTERVAL_S": "0.1",
            "FORMCHECK_AGG__MQTT__USERNAME": "agg",
            "FORMCHECK_AGG__MQTT__PASSWORD_FILE": str(root / "secrets" / "agg.password"),
            "FORMCHECK_AGG__SETS__REST_TIMEOUT_S": "2", "FORMCHECK_AGG__WORKERS": "thread",
        }
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "formcheck.cli", "aggregator", "--broker", f"127.0.0.1:{broker.port}",
                 "--influx", influxd.url], stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, **env})
        assert wait_until(lambda: b"connected to broker" in log.read_bytes(), 20), log.read_text()
        stack = Stack(broker, influxd, root / "accounts", root / "secrets", passwords, log)
        train(stack)
        yield stack
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        influxd.stop()
        broker.stop()


def train(stack: Stack) -> None:
    """Through the real aggregator: each member checks in, does a set of two reps (ended by the rest timeout,
    so its summary is retained on the member's topic) and one more rep (an open set, checkpointed); alice then
    checks out (her second set ends), bob stays checked in. Plus points of the schema before the member tag."""
    desk = stack.login("desk")
    try:
        publish_all(desk, [(f"{ROOT}/nodes/{node}/session",
                            SessionMessage(member=member, exercise="squat", ts=now_ms()).to_json())
                           for member, node in AT.items()], retain=True)
        assert wait_until(lambda: all(stack.count("session", m) == 1 for m in AT), 20), stack.aggregator_log.read_text()
        for node in AT.values():
            first = squat_stream(node, 2).frames
            # 3 s of standing: past the rest timeout, so the set ends; then one more rep opens the next set.
            rest = squat_stream(node, 0, ts0=first[-1].ts + 33, seq0=first[-1].seq + 1, boot=first[0].boot,
                                stand=90).frames
            more = squat_stream(node, 1, ts0=rest[-1].ts + 33, seq0=rest[-1].seq + 1, boot=first[0].boot).frames
            conn = stack.login(node)
            try:
                publish_all(conn, [frames_topic(f) for f in [*first, *rest, *more]])
            finally:
                conn.close()
        assert wait_until(lambda: all(stack.count("rep", m) == 3 and stack.count("set", m) == 1 for m in AT), 30), (
            stack.aggregator_log.read_text()[-3000:])
        publish_all(desk, [(f"{ROOT}/nodes/rack-1/session", b"")], retain=True)   # alice checks out
        assert wait_until(lambda: stack.count("set", "alice") == 2, 20), stack.aggregator_log.read_text()[-3000:]
    finally:
        desk.close()
    for member in AT:
        assert stack.count("open_set", member) == 2   # bob's open set: its checkpoint; alice's: both closed
    # Stored by an earlier version: the check-in's member in a field, the checkpoint's member in its JSON state.
    ts = now_ms() - 120_000
    stack.write("\n".join(
        f'session,site=main,node={node} member="{member}",exercise="squat",checked_in=true {ts}\n'
        f'open_set,site=main,node={node} set_id="{node}-0-0",closed=false,'
        f'state="{{\\"set_id\\":\\"{node}-0-0\\",\\"member\\":\\"{member}\\"}}" {ts}'
        for member, node in AT.items()))


def retained(stack: Stack, account: str, topic: str) -> list[bytes]:
    """What a fresh subscriber of ``account`` receives on ``topic``: its retained message, if any."""
    conn = stack.login(account)
    try:
        conn.subscribe(topic)
        # A barrier: the retained message (if any) is delivered before this one's SUBACK.
        conn.subscribe(f"{ROOT}/aggregator/status")
        time.sleep(0.3)
        return [p for t, p, is_retained in conn.messages if t == topic and is_retained]
    finally:
        conn.close()


def erase(stack: Stack, member: str, *extra: str) -> tuple[int, str, str]:
    argv = ["member", "erase", member, "--broker", f"127.0.0.1:{stack.broker.port}", "--username", "ops",
            "--password-file", str(stack.secrets / "ops.password"), "--influx", stack.influxd.url,
            "--influx-username", ERASER[0], "--influx-password-file", str(stack.secrets / "influx.password"), *extra]
    result = subprocess.run([sys.executable, "-m", "formcheck.cli", *argv], capture_output=True, text=True,
                            timeout=60, check=False)
    return result.returncode, result.stdout, result.stderr


def everything(stack: Stack) -> list[dict[str, Any]]:
    """Every point of every measurement in every retention policy, with its tags."""
    policies = [row["name"] for row in stack.query(f'SHOW RETENTION POLICIES ON "{DB}"')]
    return [{"rp": rp, **s} for rp in policies for s in stack.series(f'SELECT * FROM "{rp}"./.*/ GROUP BY *')]


def of(stack: Stack, member: str) -> list[dict[str, Any]]:
    """Every point naming ``member`` anywhere: in a tag or in any field value."""
    return [s for s in everything(stack)
            if s["tags"].get("member") == member
            or any(member in str(value) for row in s["rows"] for key, value in row.items() if key != "time")]


def test_erase_removes_one_member_everywhere_and_nothing_else(stack: Stack) -> None:
    assert retained(stack, "alice", f"{ROOT}/members/alice/notifications"), "alice's set summary was not retained"
    bob_notification = retained(stack, "bob", f"{ROOT}/members/bob/notifications")
    assert bob_notification
    bob_points = of(stack, "bob")
    assert {s["name"] for s in bob_points} == {"rep", "set", "session", "open_set"}
    assert {s["name"] for s in of(stack, "alice")} == {"rep", "set", "session", "open_set"}

    # bob is still checked in: refused, nothing erased.
    status, out, err = erase(stack, "bob")
    assert status == 2 and "checked in at rack-2" in err and "nothing erased" in err and "Traceback" not in err
    assert of(stack, "bob") == bob_points

    status, out, err = erase(stack, "alice")
    assert status == 0, err
    # 3 reps, 2 sets, the check-in and the one stored before the tag, 2 checkpoints and the one before the tag
    # (her check-out names nobody: it stays, an anonymous "rack-1 became free").
    assert "removed 3 open_set, 3 rep, 2 session, 2 set points of member 'alice'" in out, out
    assert f"cleared the retained message on {ROOT}/members/alice/notifications" in out
    assert "broker account: not checked" in out

    # InfluxDB: nothing of alice by tag, in the tag index, or in any field of any point.
    assert of(stack, "alice") == []
    assert stack.series("""SELECT * FROM /.*/ WHERE "member"::tag = 'alice'""") == []
    values = {row["value"] for s in stack.series('SHOW TAG VALUES WITH KEY = "member"') for row in s["rows"]}
    assert "alice" not in values and "bob" in values
    assert not any("alice" in row["key"] for s in stack.series("SHOW SERIES") for row in s["rows"])
    # The broker: a fresh subscriber gets no retained message on her topic (she still has her account here).
    assert retained(stack, "alice", f"{ROOT}/members/alice/notifications") == []

    # bob is untouched: every point, his retained summary and his retained check-in.
    assert of(stack, "bob") == bob_points
    assert retained(stack, "bob", f"{ROOT}/members/bob/notifications") == bob_notification
    [check_in] = retained(stack, "desk", f"{ROOT}/nodes/rack-2/session")
    assert json.loads(check_in)["member"] == "bob"

    # Again, with the account directory: nothing left in InfluxDB, the account goes; the broker applies it on reload.
    status, out, err = erase(stack, "alice", "--accounts", str(stack.accounts))
    assert status == 0, err
    assert "nothing stored for member 'alice'" in out and "removed member account 'alice'" in out
    os.kill(stack.broker.pid, signal.SIGHUP)
    assert wait_until(lambda: refused(stack, "alice"), WAIT), "alice's account still logs in after the reload"
    assert not refused(stack, "bob")
    assert "alice" not in (stack.accounts / "passwd").read_text() + (stack.accounts / "users.yaml").read_text()
    assert "bob" in (stack.accounts / "passwd").read_text()


def refused(stack: Stack, name: str) -> bool:
    conn = connect(stack.broker.port, name, stack.passwords[name])
    try:
        return conn.connack is not None and conn.connack.is_failure
    finally:
        conn.close()


def test_unknown_member_is_nothing_to_erase(stack: Stack) -> None:
    status, out, err = erase(stack, "m-never-seen", "--accounts", str(stack.accounts))
    assert status == 0, err
    assert "nothing stored for member 'm-never-seen'" in out
    assert "broker account: none named 'm-never-seen'" in out


@pytest.mark.parametrize(("member", "accounts", "message"), [
    ("al/ice", False, "invalid member id"),
    ("guest", False, "'guest' is not a member"),
    ("rack-1", True, "'rack-1' is a node account"),
])
def test_user_mistakes_are_one_line(stack: Stack, member: str, accounts: bool, message: str) -> None:
    status, _, err = erase(stack, member, *(["--accounts", str(stack.accounts)] if accounts else []))
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
