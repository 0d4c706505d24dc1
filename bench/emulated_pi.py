"""An emulated Raspberry Pi for the edge's tests and parity benchmark: an arm64 Debian root under qemu-user.

Raspberry Pi OS Bookworm is Debian 12 for arm64 with Python 3.11, so a Debian arm64 root holds the same
Python and C libraries. Its user space runs on this x86-64 machine through ``qemu-aarch64-static`` with the
CPU model of a Pi 4 (Cortex-A72, ARMv8.0-A, no LSE atomics) or a Pi 5 (Cortex-A76, ARMv8.2-A): a wheel
built for a newer core dies with SIGILL here as it would on the board. Each board's root also carries that
board's ``/proc/cpuinfo`` (qemu-user opens a path inside the ``-L`` root when it exists there): qemu 7.2
would otherwise show the host's x86 one, on which the CPU-detection code bundled in newer LiteRT and
MediaPipe wheels crashes although a real Pi runs it. What emulation cannot show is speed
(docs/raspberry-pi.md).

The root, the downloaded aarch64 wheels and the root's virtualenv are cached (``formcheck_runtime.paths.cache_dir()``),
keyed by what they are made from, so a second run only emulates the edge itself. Several pytest-xdist
workers share one cache through a file lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from formcheck_runtime.paths import REPO_ROOT, SOURCE_FOLDERS, cache_dir

PI_CPUS = {"pi4": "cortex-a72", "pi5": "cortex-a76"}
"""qemu CPU model per board: the Pi 4's BCM2711 has Cortex-A72 cores, the Pi 5's BCM2712 Cortex-A76."""

_CORE = {
    # (Features line of the 64-bit kernel, CPU variant, CPU part, CPU revision): ARM's MIDR fields
    "pi4": ("fp asimd evtstrm crc32 cpuid", "0x0", "0xd08", "3"),
    "pi5": ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp",
            "0x4", "0xd0b", "1"),
}
_BOARD = {"pi4": ("c03114", "Raspberry Pi 4 Model B Rev 1.4"), "pi5": ("d04170", "Raspberry Pi 5 Model B Rev 1.0")}


def cpuinfo(board: str) -> str:
    """``/proc/cpuinfo`` as Raspberry Pi OS (64-bit) shows it on ``board``: four cores, then the board lines."""
    features, variant, part, revision = _CORE[board]
    cores = "".join(
        f"processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: {variant}\nCPU part\t: {part}\nCPU revision\t: {revision}\n\n"
        for n in range(4)
    )
    code, model = _BOARD[board]
    return f"{cores}Revision\t: {code}\nSerial\t\t: 100000000000cafe\nModel\t\t: {model}\n"

SUITE = "bookworm"
"""Debian release under Raspberry Pi OS Bookworm: Python 3.11, glibc 2.36."""
PYTHON = "3.11"
PACKAGES = ("python3.11", "python3.11-venv", "python3-pip", "libgl1", "libglib2.0-0")
"""What a Pi OS Lite install has or gets from apt for the edge: Python, pip, and OpenCV's libGL/GLib."""
MIRROR_ENV = "FORMCHECK_DEBIAN_MIRROR"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

EDGE_LOCK = REPO_ROOT / "requirements" / "edge.txt"

# Every wheel platform tag pip on a glibc 2.36 aarch64 system accepts. `pip download --platform` takes the
# listed tags literally (manylinux_2_28 does not imply the older manylinux_2_17 / manylinux2014), so a
# single tag would refuse wheels the Pi itself installs.
GLIBC_MINOR = 36
PLATFORM_TAGS = (
    *(f"manylinux_2_{minor}_aarch64" for minor in range(GLIBC_MINOR, 16, -1)),
    "manylinux2014_aarch64",
    "linux_aarch64",
)


class EmulationError(RuntimeError):
    """The emulated Pi could not be prepared; the message says which step and why in one line."""


def qemu() -> str:
    path = shutil.which("qemu-aarch64-static")
    if path is None:
        raise EmulationError("qemu-aarch64-static not found: install Debian's qemu-user-static (make test does)")
    return path


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _run(cmd: Sequence[str], step: str, timeout: float, **kwargs: object) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(list(cmd), capture_output=True, text=True, check=False, timeout=timeout,
                                **kwargs)  # type: ignore[call-overload]
    except subprocess.TimeoutExpired as exc:
        raise EmulationError(f"{step}: no result after {timeout:.0f} s") from exc
    if result.returncode != 0:
        tail = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
        raise EmulationError(f"{step} failed (exit {result.returncode}): {tail}")
    return result  # type: ignore[no-any-return]


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass(frozen=True)
class EmulatedPi:
    """One board: its root (with its ``/proc/cpuinfo``) holding the edge's locked dependencies in ``venv``."""

    board: str
    root: Path
    venv: Path

    @property
    def cpu(self) -> str:
        return PI_CPUS[self.board]

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python3"

    def command(self, *args: str) -> list[str]:
        """argv running ``python3 ARGS`` of the root's virtualenv on the board's emulated CPU.

        At a lower priority: emulation keeps a core busy for minutes, and the test suite runs it beside
        tests that time a broker's keep-alive.
        """
        return ["nice", "-n", "10", qemu(), "-cpu", self.cpu, "-L", str(self.root), str(self.python), *args]

    def environment(self, **extra: str) -> dict[str, str]:
        """Host environment for an emulated process: the checkout's code on the path, no host site-packages."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env.update(PYTHONPATH=os.pathsep.join(str(folder.resolve()) for folder in SOURCE_FOLDERS),
                   PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1",
                   GLOG_minloglevel="2", **extra)
        return env


def build_root(base: Path) -> Path:
    """The arm64 bookworm root (``mmdebstrap --variant=extract``: packages unpacked, no scripts run)."""
    mirror = os.environ.get(MIRROR_ENV, DEFAULT_MIRROR)
    root = base / f"root-{SUITE}-{_digest(mirror.encode(), *(p.encode() for p in PACKAGES))}"
    if (root / ".complete").is_file():
        return root
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise EmulationError("mmdebstrap not found: install Debian's mmdebstrap (make test does)")
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    _run([mmdebstrap, "--quiet", "--variant=extract", "--architectures=arm64", f"--include={','.join(PACKAGES)}",
          SUITE, str(partial), mirror], f"mmdebstrap of the arm64 {SUITE} root from {mirror}", timeout=600)
    (partial / ".complete").write_text("")
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    return root


def download_wheels(base: Path, lock: Path = EDGE_LOCK) -> Path:
    """The aarch64 cp311 wheels of ``lock``, downloaded by this machine's pip with the Pi's platform tags."""
    wheels = base / f"wheels-{_digest(lock.read_bytes(), PYTHON.encode())}"
    if (wheels / ".complete").is_file():
        return wheels
    tags = [arg for tag in PLATFORM_TAGS for arg in ("--platform", tag)]
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
          *tags, "--python-version", PYTHON, "--implementation", "cp", "--abi", f"cp{PYTHON.replace('.', '')}",
          "--require-hashes", "-r", str(lock), "-d", str(wheels)],
         f"pip download of {lock.name} for linux/aarch64 Python {PYTHON}", timeout=900)
    (wheels / ".complete").write_text("")
    return wheels


def install_venv(root: Path, wheels: Path, lock: Path = EDGE_LOCK) -> Path:
    """A virtualenv in the root, filled by the root's own (aarch64) pip from ``wheels`` with ``lock``'s hashes.

    pip runs emulated, so it judges the wheels' platform tags as pip on a Pi does.
    """
    venv = root / "opt" / f"formcheck-{_digest(lock.read_bytes(), str(wheels).encode())}"
    if (venv / ".complete").is_file():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    python = root / "usr" / "bin" / f"python{PYTHON}"
    emulate = ["nice", "-n", "10", qemu(), "-cpu", PI_CPUS["pi4"], "-L", str(root)]
    _run([*emulate, str(python), "-m", "venv", "--without-pip", str(venv)], "python -m venv in the arm64 root",
         timeout=300)
    # The venv has no pip of its own: Debian's pip from the root runs with the venv's interpreter (pip
    # cannot start a second emulated interpreter: without binfmt_misc an aarch64 child cannot be executed).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = str(root / "usr" / "lib" / "python3" / "dist-packages")
    _run([*emulate, str(venv / "bin" / "python3"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
          "--no-index", "--find-links", str(wheels), "--only-binary=:all:", "--no-compile", "--require-hashes",
          "-r", str(lock)], f"emulated pip install of {lock.name}", timeout=1200, env=env)
    (venv / ".complete").write_text("")
    return venv


def board_root(root: Path, venv: Path, board: str) -> Path:
    """A hard-linked copy of ``root`` (venv included) with ``board``'s ``/proc/cpuinfo``: cheap, and per board."""
    copy = root.with_name(f"{root.name}-{venv.name}-{board}")
    text = cpuinfo(board)
    if (copy / ".complete").is_file() and (copy / "proc" / "cpuinfo").read_text() == text:
        return copy
    shutil.rmtree(copy, ignore_errors=True)
    _run(["cp", "-al", str(root), str(copy)], f"hard-linked copy of the root for {board}", timeout=300)
    (copy / "proc").mkdir(exist_ok=True)
    (copy / "proc" / "cpuinfo").write_text(text)
    return copy


def prepare(board: str, lock: Path = EDGE_LOCK) -> EmulatedPi:
    """Build (or reuse from the cache) the root, the wheels, the virtualenv and ``board``'s copy of them."""
    if board not in PI_CPUS:
        raise EmulationError(f"unknown board {board!r}: one of {', '.join(PI_CPUS)}")
    base = cache_dir() / "pi-emulation"
    with _locked(base):
        root = build_root(base)
        wheels = download_wheels(base, lock)
        venv = install_venv(root, wheels, lock)
        copy = board_root(root, venv, board)
    return EmulatedPi(board=board, root=copy, venv=copy / venv.relative_to(root))
