"""requirements/edge.txt, the hash-locked set a Raspberry Pi installs, agrees with pyproject.toml."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from formcheck.paths import REPO_ROOT

LOCK = REPO_ROOT / "requirements" / "edge.txt"


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of every requirement in the lock (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", LOCK.read_text())
    pins: dict[str, tuple[str, list[str]]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        spec, *hashes = line.split(" --hash=")
        requirement = Requirement(spec.strip())
        (pin,) = requirement.specifier
        assert pin.operator == "==", line
        pins[canonicalize_name(requirement.name)] = (pin.version, [h.strip() for h in hashes])
    return pins


def test_every_runtime_dependency_is_locked_within_its_range() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins = locked()
    for dependency in project["dependencies"]:
        requirement = Requirement(dependency)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in {LOCK.name}: run 'make lock'"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), (
            f"{LOCK.name} pins {name}=={pins[name][0]}, pyproject.toml asks {requirement.specifier}: run 'make lock'"
        )


def test_every_pin_carries_hashes() -> None:
    for name, (_, hashes) in locked().items():
        assert hashes and all(h.startswith("sha256:") for h in hashes), f"{name} has no sha256 hash"


def test_the_pose_and_tflite_runtimes_are_the_ones_that_run_on_a_pi_4() -> None:
    # Why these versions: docs/raspberry-pi.md. mediapipe 1.2.x needs ARMv8.2; 0.10.20/21 have no aarch64 wheels.
    pins = locked()
    assert pins["mediapipe"][0] == "0.10.18"
    assert pins["ai-edge-litert"][0] == "2.1.6"
