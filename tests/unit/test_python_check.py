"""deploy/python_check.py: an unsupported Python or machine stops the install with one line naming what to use."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from formcheck_runtime.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "deploy" / "python_check.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("python_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("version", "machine"), [((3, 11), "aarch64"), ((3, 11), "x86_64"), ((3, 12), "x86_64")])
def test_supported(version: tuple[int, int], machine: str) -> None:
    assert load().problem(version, machine) is None


@pytest.mark.parametrize("version", [(3, 13), (3, 14), (3, 10)])
def test_other_pythons_are_told_which_python_to_use(version: tuple[int, int]) -> None:
    reason = load().problem(version, "aarch64")
    assert reason is not None
    assert f"this is {version[0]}.{version[1]}" in reason
    assert "Python 3.11" in reason and "Bookworm" in reason
    assert "\n" not in reason


def test_32_bit_arm_is_refused() -> None:
    reason = load().problem((3, 11), "armv7l")
    assert reason is not None and "64-bit" in reason


def test_runs_before_any_install_with_the_system_python() -> None:
    # Standard library only: the interpreter running the tests passes, and prints nothing.
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_an_unsupported_python_exits_1_with_one_line(tmp_path: Path) -> None:
    # The same script under a Python that reports 3.13: one line on stderr, exit 1, no traceback.
    shim = tmp_path / "shim.py"
    shim.write_text(
        "import runpy, sys\n"
        "class V(tuple):\n    pass\n"
        "sys.version_info = V((3, 13, 0, 'final', 0))\n"
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, str(shim)], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Python 3.11 or 3.12, this is 3.13" in result.stderr
