"""``formcheck deploy check-secrets VAR ...``: refuse to start a stack whose secrets are unset or still examples.

Run by the compose file's ``preflight`` service, which every other service waits for: ``docker compose up``
with a copied ``.env.example`` stops before any service starts, with one line naming every offending variable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

EXAMPLE_PREFIX: Final = "change-me"
"""Every secret in .env.example starts with this."""

MIN_LENGTH: Final = 12


def secret_problems(names: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """One phrase per variable of ``names`` that is unset, an example value or too short (values never shown)."""
    problems = []
    for name in names:
        value = environ.get(name, "")
        if not value:
            problems.append(f"{name} is not set")
        elif value.lower().startswith(EXAMPLE_PREFIX):
            problems.append(f"{name} still has the example value from .env.example")
        elif len(value) < MIN_LENGTH:
            problems.append(f"{name} is shorter than {MIN_LENGTH} characters")
    return problems
