"""Start real Mosquitto (and later InfluxDB) processes on free loopback ports.

Used by the tests, ``formcheck demo`` and the benchmarks: each service runs
in its own temporary directory, and we check that the process we started is
the one listening on the port before anyone talks to it.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil


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
    """A minimal test/demo broker: loopback only, anonymous, persistence in ``workdir``."""
    return "\n".join([
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
    workdir: Path | None = None, port: int | None = None, extra_config: str = "", timeout: float = 10.0
) -> Mosquitto:
    """Start Mosquitto on a free loopback port and verify it is the process answering there."""
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
    _wait_listening(proc, port, "mosquitto", log, timeout)
    return Mosquitto(port=port, workdir=workdir, proc=proc, config=config, log=log)


@contextlib.contextmanager
def running_mosquitto(extra_config: str = "") -> Iterator[Mosquitto]:
    """Context manager: a fresh broker in a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="formcheck-mosquitto-") as tmp:
        broker = start_mosquitto(Path(tmp), extra_config=extra_config)
        try:
            yield broker
        finally:
            broker.stop()
