"""Services with a wrong broker password against the production Mosquitto config: they back off, never hammer.

The shipped ``mosquitto/mosquitto.conf`` is rendered with test ports and paths exactly as
``tests/integration/test_broker_security.py`` does, with accounts made by ``formcheck broker users add``. A
real ``formcheck edge`` and a real ``formcheck aggregator`` log in with a wrong password. The broker logs
every TCP connection it accepts (``connection_messages true``; the test adds a ``log_dest file`` to the
rendered file, written line by line, next to the shipped ``stdout``, which is block-buffered into a file).
Over a 10 s window each service may connect only a few times, at growing intervals (reconnect delay from 1 s,
doubling), and keeps running so that fixing the password on the broker is enough; SIGTERM still stops it.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from formcheck.local_services import Mosquitto, free_port, start_mosquitto_with_config
from tests.integration.test_broker_security import add_accounts, free_ports, make_ca, make_cert, named, render
from tests.integration.test_edge_mqtt import LONG_CLIP, edge_cmd
from tests.waiting import wait_until

WINDOW_S = 10.0
# From a 1 s reconnect delay doubling: attempts at about 0, 1, 3 and 7 s. A fixed 1 s retry would make 10 or more,
# a loop without any delay thousands (what the aggregator did before its fix).
MAX_ATTEMPTS = 5
_CONNECTION = re.compile(r"^(\S+): New connection from \S+ on port (\d+)\.$", re.MULTILINE)


@dataclass(frozen=True)
class Secured:
    server: Mosquitto
    log: Path


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Secured]:
    make_ca(tmp_path / "tls", "formcheck-ca")
    make_cert(tmp_path / "tls", "formcheck-ca", "formcheck-server", server=True)
    add_accounts(tmp_path / "accounts", tmp_path / "secrets", {"st-a": "node", "agg": "aggregator"})
    log = tmp_path / "broker.log"
    ports = free_ports()
    (tmp_path / "data").mkdir()
    rendered = render(tmp_path, ports) + f"log_dest file {log}\n"
    server = start_mosquitto_with_config(rendered, tmp_path / "run", named(ports))
    try:
        yield Secured(server, log)
    finally:
        server.stop()


def connections(broker: Secured) -> list[float]:
    """Times (unix s, whole seconds as the production log stamps them) of TCP connections to the MQTT port."""
    text = broker.log.read_text(errors="replace")
    return [datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").timestamp()
            for stamp, port in _CONNECTION.findall(text) if int(port) == broker.server.port]


def assert_backs_off(proc: subprocess.Popen[bytes], broker: Secured, log: Path, what: str, status: int = 0) -> None:
    """``status``: the exit status after SIGTERM (an edge node's file run that delivered nothing says it failed)."""
    try:
        assert wait_until(lambda: connections(broker), 60), f"{what} never tried: {log.read_text()[-2000:]}"
        time.sleep(WINDOW_S)  # the measurement window: count what the service does in it
        attempts = connections(broker)
        assert proc.poll() is None, f"{what} gave up: {log.read_text()[-2000:]}"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    text = log.read_text()
    window = [t for t in attempts if t - attempts[0] <= WINDOW_S]
    gaps = [b - a for a, b in itertools.pairwise(window)]
    print(f"{what}: {len(window)} connection attempts in {WINDOW_S:.0f} s, intervals {gaps} s")
    assert "disconnected, not authorised" in broker.log.read_text()
    assert 2 <= len(window) <= MAX_ATTEMPTS, f"{what} hammers the broker: {len(window)} attempts in {WINDOW_S} s"
    assert gaps[-1] >= 2, f"{what} retries at a fixed short interval: {gaps}"
    assert proc.returncode == status, text[-2000:]
    assert "Traceback" not in text, text[-2000:]
    assert "Not authorized" in text, f"{what} does not say why it cannot connect"


def test_aggregator_with_wrong_password_backs_off(secured: Secured, tmp_path: Path) -> None:
    log = tmp_path / "aggregator.log"
    env = {**os.environ, "FORMCHECK_AGG__MQTT__USERNAME": "agg", "FORMCHECK_AGG__MQTT__PASSWORD": "wrong"}
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "formcheck.cli", "aggregator", "--broker", f"127.0.0.1:{secured.server.port}",
             "--influx", f"http://127.0.0.1:{free_port()}"],
            stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True,
        )
    assert_backs_off(proc, secured, log, "aggregator")


def test_edge_with_wrong_password_backs_off(
    secured: Secured, tmp_path: Path, data_dir: Path, pose_model: Path
) -> None:
    log = tmp_path / "edge.log"
    env = {**os.environ, "FORMCHECK_EDGE__MQTT__USERNAME": "st-a", "FORMCHECK_EDGE__MQTT__PASSWORD": "wrong"}
    with log.open("wb") as err:
        proc = subprocess.Popen(edge_cmd(data_dir / LONG_CLIP, secured.server.port, "st-a"), stdout=subprocess.DEVNULL,
                                stderr=err, env=env, start_new_session=True)
    assert_backs_off(proc, secured, log, "edge node", status=1)
    assert "frames never reached the broker" in log.read_text()
