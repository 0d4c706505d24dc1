"""The stack's secrets as files: ``formcheck deploy init-secrets`` writes them, ``check-secrets`` vets them.

docker compose hands each service the secrets it needs as files under ``/run/secrets`` (compose ``secrets:``),
never as environment variables, so neither ``docker inspect`` nor ``docker compose config`` shows them. The
compose file's ``preflight`` service, which every other service waits for, runs ``check-secrets`` and stops
the stack with one line naming every missing, example or short secret.

Compose (without swarm) bind-mounts a secret file with its host owner and mode, and the services run as
different users (Grafana 472, formcheck 10001): the files are world-readable and the directory holding them
is the protection (mode 700, owned by the operator).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

EXAMPLE_PREFIX: Final = "change-me"
"""Example values in documentation start with this; a secret that still does is refused."""

MIN_LENGTH: Final = 12

COMPOSE_SECRETS: Final[tuple[str, ...]] = (
    "mqtt_aggregator_password",
    "mqtt_demo_node_password",
    "mqtt_checkin_password",
    "influxdb_admin_password",
    "influxdb_writer_password",
    "influxdb_reader_password",
    "grafana_admin_password",
    "grafana_secret_key",
)
"""Every secret docker-compose.yml declares, one file each in the secrets directory (a test keeps them equal)."""

GENERATED_BYTES: Final = 24
"""Random bytes per generated secret (32 URL-safe characters)."""


def secret_problems(names: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """One phrase per name of ``names`` whose value is missing, an example or too short (values never shown)."""
    problems = []
    for name in names:
        value = values.get(name, "")
        if not value:
            problems.append(f"{name} is not set")
        elif value.lower().startswith(EXAMPLE_PREFIX):
            problems.append(f"{name} still has an example value")
        elif len(value) < MIN_LENGTH:
            problems.append(f"{name} is shorter than {MIN_LENGTH} characters")
    return problems


def read_secrets(directory: Path, names: Sequence[str]) -> dict[str, str]:
    """The first line of ``directory/NAME`` per name; a missing or unreadable file reads as unset."""
    values = {}
    for name in names:
        try:
            lines = (directory / name).read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        values[name] = lines[0].strip() if lines else ""
    return values


def init_secrets(directory: Path, names: Sequence[str] = COMPOSE_SECRETS) -> list[str]:
    """Write a random secret into each missing file of ``names``; existing files are kept. Returns those written.

    The directory is made private (700); the files are readable by the container users that mount them.
    """
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    written = []
    for name in names:
        path = directory / name
        if path.exists():
            continue
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(GENERATED_BYTES) + "\n")
        path.chmod(0o444)
        written.append(name)
    return written
