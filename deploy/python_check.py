"""Says in one line whether this Python and machine can run formcheck, before anything is installed.

Standard library only: `make` runs it with the system Python before the virtualenv exists. Exit status 0
when supported, 1 with one line on stderr saying which Python to use otherwise.
"""

from __future__ import annotations

import platform
import sys

SUPPORTED = ((3, 11), (3, 12))
"""Pythons the pinned pose runtime (mediapipe 0.10.18) has wheels for; Raspberry Pi OS Bookworm ships 3.11."""
MACHINES = ("x86_64", "amd64", "aarch64", "arm64")


def problem(version: tuple[int, int], machine: str) -> str | None:
    """Why formcheck cannot be installed for ``version`` on ``machine``, or ``None`` when it can."""
    found = f"{version[0]}.{version[1]}"
    if machine.lower() not in MACHINES:
        return (f"formcheck needs a 64-bit OS (x86-64 or aarch64), this is {machine}: on a Raspberry Pi install "
                "Raspberry Pi OS (64-bit) Bookworm; the pose runtime has no 32-bit ARM wheels")
    if version not in SUPPORTED:
        return (f"formcheck needs Python 3.11 or 3.12, this is {found}: the pose runtime (mediapipe 0.10.18, the "
                "last release that runs on a Raspberry Pi 4) has no wheels for it; on a Raspberry Pi use Raspberry "
                "Pi OS Bookworm (Python 3.11), elsewhere run make with PYTHON=python3.11")
    return None


def main() -> int:
    reason = problem(sys.version_info[:2], platform.machine())
    if reason is None:
        return 0
    print(reason, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
