"""The hash-locked requirement sets (make lock), one per deployable, agree with pyproject.toml.

requirements/edge.txt is what a Raspberry Pi (make edge-install) and the compose edge image install,
requirements/aggregator.txt the aggregator image, requirements/dev.txt the test suite (make venv / make test).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from formcheck_runtime.paths import REPO_ROOT

LOCKS = REPO_ROOT / "requirements"
LOCK = LOCKS / "edge.txt"
# lock file -> the extras it installs on top of the base dependencies
DEPLOYABLES = {
    "edge.txt": ("edge",),
    "aggregator.txt": ("aggregator",),
    "dev.txt": ("edge", "aggregator", "dashboards", "dev"),
}
# What the aggregator image must not carry (issue 14): the pose, vision and training stacks.
HEAVY = {"mediapipe", "opencv-contrib-python", "opencv-python", "ai-edge-litert", "tensorflow", "tensorflow-cpu",
         "jax", "jaxlib", "numpy", "scipy", "matplotlib"}


def locked(lock: Path = LOCK) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of every requirement in the lock (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", lock.read_text())
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


def project() -> dict[str, object]:
    data: dict[str, object] = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return data


def requirements_of(extras: tuple[str, ...]) -> list[Requirement]:
    """The base dependencies and those of ``extras`` (self-references like formcheck[edge] followed)."""
    meta = project()
    optional: dict[str, list[str]] = meta["optional-dependencies"]  # type: ignore[assignment]
    found = [Requirement(d) for d in meta["dependencies"]]  # type: ignore[attr-defined]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for dependency in optional[extra]:
            requirement = Requirement(dependency)
            if canonicalize_name(requirement.name) == "formcheck":
                todo.extend(requirement.extras)
            else:
                found.append(requirement)
    return found


@pytest.mark.parametrize("lock_name", sorted(DEPLOYABLES))
def test_every_dependency_of_the_deployable_is_locked_within_its_range(lock_name: str) -> None:
    pins = locked(LOCKS / lock_name)
    for requirement in requirements_of(DEPLOYABLES[lock_name]):
        if requirement.marker is not None and not requirement.marker.evaluate({"platform_machine": "x86_64"}):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in {lock_name}: run 'make lock'"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), (
            f"{lock_name} pins {name}=={pins[name][0]}, pyproject.toml asks {requirement.specifier}: run 'make lock'"
        )


@pytest.mark.parametrize("lock_name", sorted(DEPLOYABLES))
def test_every_pin_carries_hashes(lock_name: str) -> None:
    for name, (_, hashes) in locked(LOCKS / lock_name).items():
        assert hashes and all(h.startswith("sha256:") for h in hashes), f"{lock_name}: {name} has no sha256 hash"


def test_the_pose_and_tflite_runtimes_are_the_ones_that_run_on_a_pi_4() -> None:
    # Why these versions: docs/raspberry-pi.md. mediapipe 1.2.x needs ARMv8.2; 0.10.20/21 have no aarch64 wheels.
    for lock_name in ("edge.txt", "dev.txt"):  # the tests run the runtime a Pi runs
        pins = locked(LOCKS / lock_name)
        assert pins["mediapipe"][0] == "0.10.18", lock_name
        assert pins["ai-edge-litert"][0] == "2.1.6", lock_name
        assert pins["opencv-contrib-python"][0] == "4.11.0.86", lock_name


def test_the_aggregator_installs_no_pose_vision_or_training_stack() -> None:
    assert not HEAVY & set(locked(LOCKS / "aggregator.txt")), "the aggregator image would carry the edge's stack"
    assert not {"grafana-foundation-sdk", "pytest", "playwright", "psutil"} & set(locked(LOCKS / "aggregator.txt"))
    assert not {"apprise", "grafana-foundation-sdk", "pytest", "playwright", "psutil"} & set(locked(LOCK))


def test_the_shared_packages_are_locked_alike_everywhere() -> None:
    """A package in two locks has one version: the tests run what the edge and the aggregator run."""
    locks = {name: locked(LOCKS / name) for name in DEPLOYABLES}
    for name, pins in locks.items():
        for package, (version, _) in pins.items():
            dev_version = locks["dev.txt"].get(package, (version,))[0]
            assert dev_version == version, f"{package}: {name} pins {version}, dev.txt {dev_version}: run 'make lock'"
