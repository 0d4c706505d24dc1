"""Start real Mosquitto and InfluxDB (influxd 1.x) processes on free loopback ports.

Used by the tests, ``formcheck demo`` and the benchmarks: each service runs
in its own temporary directory, and we check that the process we started is
the one listening on the port before anyone talks to it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

STARTED: Counter[str] = Counter()
"""Servers this process has started, by program ("mosquitto", "influxd"): the test suite checks each test's
markers against it (a test that starts a broker is marked ``broker``)."""


class ServiceError(RuntimeError):
    """A local service could not be started; one line saying why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _listening_pid(pid: int, port: int) -> bool:
    """True when process ``pid`` itself holds the listening socket on ``port``."""
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns)


def _wait_listening(proc: subprocess.Popen[bytes], port: int, what: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise ServiceError(f"{what} exited with status {proc.returncode}: {' '.join(tail) or 'no output'}")
        if _listening_pid(proc.pid, port):
            return
        time.sleep(0.02)
    proc.kill()
    raise ServiceError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def _wait_all_listening(proc: subprocess.Popen[bytes], ports: Iterable[int], what: str, log: Path,
                        timeout: float) -> None:
    """Wait until ``proc`` listens on every one of ``ports`` (servers open their listeners one after another)."""
    deadline = time.monotonic() + timeout
    for port in ports:
        _wait_listening(proc, port, what, log, max(0.1, deadline - time.monotonic()))


def find_binary(name: str, *extra: str) -> str:
    for candidate in (name, *extra):
        found = shutil.which(candidate)
        if found:
            return found
    for directory in ("/usr/sbin", "/usr/bin", "/usr/local/sbin"):
        path = Path(directory) / name
        if path.is_file():
            return str(path)
    raise ServiceError(f"{name} is not installed (run 'make test' or 'make demo' to install it)")


@dataclass
class Mosquitto:
    """A running ``mosquitto`` owned by us."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes]
    config: Path
    log: Path
    extra_ports: dict[str, int] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def mosquitto_config(port: int, workdir: Path, extra: str = "") -> str:
    """A minimal test/demo broker: loopback only, anonymous, persistence in ``workdir``.

    Started as root, Mosquitto drops to the ``mosquitto`` user unless told
    otherwise, and could then neither save its persistence file nor write its
    log in our temporary directory: a restart would silently lose queued
    messages. It keeps the identity of whoever started it.
    """
    return "\n".join([
        f"user {pwd.getpwuid(os.getuid()).pw_name}",
        "per_listener_settings false",
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "persistence true",
        f"persistence_location {workdir}/",
        "autosave_interval 1",
        f"log_dest file {workdir}/mosquitto.log",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        extra,
        "",
    ])


def start_mosquitto(
    workdir: Path | None = None, port: int | None = None, extra_config: str = "", timeout: float = 10.0,
    extra_ports: dict[str, int] | None = None,
) -> Mosquitto:
    """Start Mosquitto on a free loopback port and verify it is the process answering there.

    ``extra_ports`` names the listeners ``extra_config`` adds (e.g. websockets): Mosquitto opens its listeners one
    after the other, so the broker is ready only when our process listens on each of them too.
    """
    binary = find_binary("mosquitto")
    workdir = workdir or Path(tempfile.mkdtemp(prefix="formcheck-mosquitto-"))
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(mosquitto_config(port, workdir, extra_config))
    log = workdir / "mosquitto.log"
    stdout = (workdir / "stdout.log").open("ab")
    proc = subprocess.Popen([binary, "-c", str(config)], stdout=stdout, stderr=subprocess.STDOUT, cwd=workdir)
    stdout.close()
    _wait_all_listening(proc, (port, *(extra_ports or {}).values()), "mosquitto", log, timeout)
    if not log.exists():
        proc.kill()
        raise ServiceError(f"mosquitto cannot write to {workdir}: persistence would be lost on restart")
    STARTED["mosquitto"] += 1
    return Mosquitto(port=port, workdir=workdir, proc=proc, config=config, log=log,
                     extra_ports=dict(extra_ports or {}))


def start_mosquitto_with_config(
    config_text: str, workdir: Path, ports: dict[str, int], timeout: float = 10.0
) -> Mosquitto:
    """Start Mosquitto on a complete configuration (e.g. the production file rendered with test ports).

    ``ports`` names every port the configuration listens on (the first one is ``Mosquitto.port``); the broker
    is ready when our process itself listens on all of them.
    """
    if not ports:
        raise ServiceError("start_mosquitto_with_config needs at least one port to wait for")
    binary = find_binary("mosquitto")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "mosquitto.conf"
    config.write_text(config_text)
    log = workdir / "stdout.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([binary, "-c", str(config)], stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        _wait_all_listening(proc, ports.values(), "mosquitto", log, timeout)
    except ServiceError:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        raise
    names = list(ports)
    STARTED["mosquitto"] += 1
    return Mosquitto(port=ports[names[0]], workdir=workdir, proc=proc, config=config, log=log,
                     extra_ports={name: ports[name] for name in names[1:]})


@contextlib.contextmanager
def running_mosquitto(extra_config: str = "", extra_ports: dict[str, int] | None = None) -> Iterator[Mosquitto]:
    """Context manager: a fresh broker in a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="formcheck-mosquitto-") as tmp:
        broker = start_mosquitto(Path(tmp), extra_config=extra_config, extra_ports=extra_ports)
        try:
            yield broker
        finally:
            broker.stop()


# --- InfluxDB -----------------------------------------------------------------------------------------------------

# influxd reads INFLUXDB_* variables as config overrides (e.g. INFLUXDB_HTTP_BIND_ADDRESS); a developer's shell
# must not be able to move our test server onto another port or data directory.
_INFLUXD_ENV_PREFIX = "INFLUXDB_"


@dataclass
class Influxd:
    """A running ``influxd`` (1.x) owned by us; its data survives a restart on the same ``workdir``."""

    port: int
    rpc_port: int
    workdir: Path
    proc: subprocess.Popen[bytes]
    config: Path
    log: Path
    version: str

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (influxd closes its shards and WAL cleanly), SIGKILL if it does not exit in time."""
        if self.proc.poll() is not None:
            return
        # A SIGSTOPped process keeps SIGTERM pending until continued.
        self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: a crash; what was acknowledged is in the WAL and must survive a restart."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections (kernel backlog) but nothing answers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def query(
        self, q: str, db: str | None = None, timeout: float = 10.0, auth: tuple[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Run InfluxQL; return the first series' rows as ``{column: value}`` (time in unix ms), or ``[]``.

        Raises ``ServiceError`` when InfluxDB reports an error for the statement.
        """
        return influx_query(self.url, q, db=db, timeout=timeout, auth=auth)


def influx_query(
    url: str, q: str, db: str | None = None, timeout: float = 10.0, auth: tuple[str, str] | None = None
) -> list[dict[str, Any]]:
    """InfluxQL over the v1 HTTP API (POST, so write statements work too); first series' rows as dicts."""
    params = {"q": q, "epoch": "ms"}
    if db:
        params["db"] = db
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if auth:
        # influxd reads u/p from the URL only, never from a form body; a header keeps them out of access logs.
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    request = urllib.request.Request(
        f"{url.rstrip('/')}/query", data=urllib.parse.urlencode(params).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise ServiceError(f"InfluxQL {q!r} failed: HTTP {exc.code} {exc.read()[:300]!r}") from exc
    if "error" in body:
        raise ServiceError(f"InfluxQL {q!r} failed: {body['error']}")
    results = body.get("results") or [{}]
    first = results[0]
    if "error" in first:
        raise ServiceError(f"InfluxQL {q!r} failed: {first['error']}")
    series = first.get("series") or []
    if not series:
        return []
    columns: list[str] = series[0]["columns"]
    return [dict(zip(columns, row, strict=True)) for row in series[0].get("values") or []]


def influxd_config(port: int, rpc_port: int, workdir: Path, auth_enabled: bool = False) -> str:
    """A loopback-only influxd with everything in ``workdir``: no UDP/Graphite/collectd/OpenTSDB, no _internal db.

    With ``auth_enabled`` the first ``CREATE USER ... WITH ALL PRIVILEGES`` may be run without credentials.
    """
    return "\n".join([
        "reporting-disabled = true",
        f'bind-address = "127.0.0.1:{rpc_port}"',
        "",
        "[meta]",
        f'  dir = "{workdir}/meta"',
        "",
        "[data]",
        f'  dir = "{workdir}/data"',
        f'  wal-dir = "{workdir}/wal"',
        "  query-log-enabled = false",
        "",
        "[monitor]",
        "  store-enabled = false",
        "",
        "[http]",
        "  enabled = true",
        f'  bind-address = "127.0.0.1:{port}"',
        f"  auth-enabled = {'true' if auth_enabled else 'false'}",
        "  log-enabled = true",
        # Every write would be one access-log line; queries and errors are what helps when a test fails.
        "  suppress-write-log = true",
        "  pprof-enabled = false",
        "",
        "[logging]",
        '  format = "logfmt"',
        '  level = "info"',
        "  suppress-logo = true",
        "",
        "[[graphite]]",
        "  enabled = false",
        "[[collectd]]",
        "  enabled = false",
        "[[opentsdb]]",
        "  enabled = false",
        "[[udp]]",
        "  enabled = false",
        "",
    ])


def _ping(url: str, timeout: float) -> str | None:
    """The ``X-Influxdb-Version`` of a server answering ``GET /ping`` with 204, else None."""
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=timeout) as response:
            if response.status == 204:
                version: str | None = response.headers.get("X-Influxdb-Version")
                return version or "unknown"
    except (OSError, urllib.error.URLError):
        return None
    return None


def start_influxd(
    workdir: Path | None = None, port: int | None = None, timeout: float = 30.0, auth_enabled: bool = False
) -> Influxd:
    """Start influxd on a free loopback port; ready when our PID listens there and ``/ping`` answers 204.

    Starting again with the same ``workdir`` (and ``port``) reopens the same data.
    """
    binary = find_binary("influxd")
    workdir = workdir or Path(tempfile.mkdtemp(prefix="formcheck-influxd-"))
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    rpc_port = free_port()
    config = workdir / "influxd.conf"
    config.write_text(influxd_config(port, rpc_port, workdir, auth_enabled))
    log = workdir / "influxd.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INFLUXD_ENV_PREFIX)}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [binary, "-config", str(config)], stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env=env
        )
    started = time.monotonic()
    _wait_listening(proc, port, "influxd", log, timeout)
    url = f"http://127.0.0.1:{port}"
    deadline = started + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"influxd exited with status {proc.returncode}; see {log}")
        version = _ping(url, timeout=1.0)
        if version is not None:
            STARTED["influxd"] += 1
            return Influxd(port=port, rpc_port=rpc_port, workdir=workdir, proc=proc, config=config, log=log,
                           version=version)
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=10)
    raise ServiceError(f"influxd on {url} did not answer /ping within {timeout:.0f} s; see {log}")


@contextlib.contextmanager
def running_influxd(auth_enabled: bool = False) -> Iterator[Influxd]:
    """Context manager: a fresh influxd in a temporary directory, stopped and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="formcheck-influxd-") as tmp:
        server = start_influxd(Path(tmp), auth_enabled=auth_enabled)
        try:
            yield server
        finally:
            server.stop()
