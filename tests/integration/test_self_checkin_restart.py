"""The check-in service against the real broker (the shipped config and ACL): a self check-in is still checked out
for idleness after the service restarts, because the station's retained session says who checked in.

The service is the real ``formcheck checkin-service`` process with its own ``checkin`` account; a member asks for
the check-in with their own account, staff check in with ``formcheck checkin``. The idle time is shortened to a
few seconds (``--idle-checkout-min``), and the first service is stopped well before it runs out, so only the
restarted service can have checked the member out.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from formcheck_protocol.topics import Topics
from tests.integration.test_broker_security import add_accounts, connect, make_ca, make_cert, start
from tests.waiting import wait_until

pytestmark = pytest.mark.broker

T = Topics(site="main")
IDLE_MIN = 0.1  # 6 s
IDLE_S = IDLE_MIN * 60
ACCOUNTS = {"desk": "staff", "wall": "display", "rack-1": "node", "rack-2": "node", "ci": "checkin",
            "alice": "member", "bob": "member"}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "formcheck.cli", *args]


class Service:
    """One ``formcheck checkin-service`` process."""

    def __init__(self, port: int, secrets: Path) -> None:
        self.proc = subprocess.Popen(
            cli("checkin-service", "--broker", f"127.0.0.1:{port}", "--username", "ci", "--password-file",
                str(secrets / "ci.password"), "--idle-checkout-min", str(IDLE_MIN), "--log-level", "INFO"),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.started = time.monotonic()

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=15)
        assert self.proc.returncode == 0 and "Traceback" not in err, err[-3000:]
        return err


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[int, dict[str, str], Path]]:
    make_ca(tmp_path / "tls", "formcheck-ca")  # the shipped file's TLS listeners need a certificate to start
    make_cert(tmp_path / "tls", "formcheck-ca", "formcheck-server", server=True)
    passwords = add_accounts(tmp_path / "accounts", tmp_path / "secrets", ACCOUNTS)
    server, _ = start(tmp_path)
    try:
        yield server.port, passwords, tmp_path / "secrets"
    finally:
        server.stop()


def test_a_self_checkin_is_checked_out_for_idleness_after_the_service_restarts(
    broker: tuple[int, dict[str, str], Path]
) -> None:
    port, passwords, secrets = broker
    watcher = connect(port, "wall", passwords["wall"])  # a screen reads every station's session
    alice = connect(port, "alice", passwords["alice"])
    bob = connect(port, "bob", passwords["bob"])
    first = Service(port, secrets)
    second: Service | None = None
    try:
        watcher.subscribe(T.all_nodes("session"))

        def session(node: str) -> dict[str, object] | None:
            got = watcher.received(T.node(node, "session"))
            return json.loads(got[-1]) if got and got[-1] else None

        # The service is subscribed once it mirrors staff's check-in of bob to bob; then alice checks in herself.
        bob.subscribe(T.member("bob", "session"))
        staff = subprocess.run(cli("checkin", "--node", "rack-2", "--member", "bob", "--broker", f"127.0.0.1:{port}",
                                   "--username", "desk", "--password-file", str(secrets / "desk.password")),
                               capture_output=True, text=True, timeout=30, check=False)
        assert staff.returncode == 0, staff.stderr
        assert wait_until(lambda: session("rack-2") is not None, 5)
        assert wait_until(lambda: bob.received(T.member("bob", "session")), 10), "the service mirrored nothing"
        alice.subscribe(T.member("alice", "session"))
        request = b'{"v":1,"action":"start","node":"rack-1","exercise":"squat"}'
        assert alice.publish(T.member("alice", "checkin"), request) == "Success"
        assert wait_until(lambda: (session("rack-1") or {}).get("member") == "alice", 5)
        checked_in = time.monotonic()
        assert (session("rack-1") or {}).get("checked_in_by") == "member"
        assert (session("rack-2") or {}).get("checked_in_by") == "staff"

        first.stop()
        assert time.monotonic() - checked_in < IDLE_S / 2, "the first service ran too long to prove anything"
        second = Service(port, secrets)
        # The restarted service knows from the retained session that alice checked herself in: with no rep, it
        # checks her out one idle time after it started (its idle clock starts then; the last rep before the
        # restart is not known to it), and leaves the staff check-in alone.
        assert wait_until(lambda: session("rack-1") is None, IDLE_S + 15), "alice was not checked out"
        idle = time.monotonic() - second.started
        print(f"\nthe restarted service checked alice out {idle:.1f} s after it started (idle time {IDLE_S:.0f} s)")
        assert IDLE_S - 0.5 <= idle <= IDLE_S + 10, idle
        assert (session("rack-2") or {}).get("member") == "bob"
        assert wait_until(lambda: json.loads(alice.received(T.member("alice", "session"))[-1]) == {"v": 1,
                                                                                                  "error": ""}, 5)
        log = second.stop()
        second = None
        assert "rack-1: alice checked out after" in log, log
    finally:
        for service in (first, second):
            if service is not None and service.proc.poll() is None:
                service.proc.kill()
                service.proc.wait()
        for conn in (watcher, alice, bob):
            conn.close()
