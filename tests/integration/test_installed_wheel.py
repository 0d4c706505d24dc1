"""An installed copy, not the editable checkout, runs the pose-model build and `formcheck analyze`.

The wheel is built from the sources and installed into a fresh virtualenv that sees the third-party packages of
the test environment through a ``.pth`` line (a plain path line: the checkout's editable finder in that directory
is not activated, so ``formcheck`` comes from the wheel). Both commands run from an empty working directory, and
the virtualenv's site-packages are compared before and after: nothing is written into the installed package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from formcheck_runtime.paths import POSE_MODEL_NAME, REPO_ROOT

SOURCES = ("pyproject.toml", "README.md", "formcheck", "protocol", "runtime", "edge_node", "aggregator", "models",
           "dashboards")
CLIP = "videos/squat/squat_front_bodyweight_d.mp4"  # 90 frames, one rep


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: relative path -> (size, modification time)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_an_installed_wheel_builds_the_pose_model_and_analyzes_a_clip(tmp_path: Path, data_dir: Path) -> None:
    clip = data_dir / CLIP
    assert clip.is_file(), f"{clip} is missing from the data set"
    # The sources only (a copy, so the build writes no build/ or egg-info into the checkout).
    source = tmp_path / "src"
    for name in SOURCES:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.task", "reports"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(REPO_ROOT / name, source / name)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "FORMCHECK_", "PIP_REQUIRE"))}
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
          "--wheel-dir", str(tmp_path / "wheel"), str(source)], tmp_path, env)
    (wheel,) = (tmp_path / "wheel").glob("formcheck-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist()} - {f"{wheel.name.split('-')[0]}-"
                                                                         f"{wheel.name.split('-')[1]}.dist-info"}
    # No import name that could collide with another distribution's (issue 14).
    assert top_level == {"formcheck", "formcheck_protocol", "formcheck_runtime", "formcheck_edge",
                         "formcheck_aggregator", "formcheck_dashboards", "formcheck_models"}, top_level

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path,
                     env).stdout.strip())
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--disable-pip-version-check",
          "--no-deps", "--no-compile", str(wheel)], tmp_path, env)
    # The test environment's third-party packages (mediapipe, OpenCV, LiteRT, ...), after the venv's own.
    (site / "test-environment.pth").write_text(sysconfig.get_path("purelib") + "\n")

    work = tmp_path / "work"  # an empty working directory: no checkout on the path
    work.mkdir()
    env.update(FORMCHECK_CACHE=str(tmp_path / "cache"), PYTHONDONTWRITEBYTECODE="1", GLOG_minloglevel="2")
    where = _run([str(python), "-c", "import formcheck, formcheck_models, formcheck_edge; print(formcheck.__file__); "
                  "print(formcheck_models.__file__); print(formcheck_edge.__file__)"], work, env)
    assert all(Path(line).is_relative_to(site) for line in where.stdout.split()), where.stdout

    before = _tree(site)
    built = _run([str(venv / "bin" / "formcheck"), "models", "build"], work, env)
    model = tmp_path / "cache" / "formcheck" / "models" / POSE_MODEL_NAME
    assert built.stdout.strip() == f"pose model ready: {model}"
    assert model.is_file()
    analyzed = _run([str(venv / "bin" / "formcheck"), "analyze", "--exercise", "squat", str(clip)], work, env)
    assert "rep  1" in analyzed.stdout and "1 complete reps" in analyzed.stdout, analyzed.stdout
    # The edge's default pose model is the one just built; the training tools, which rewrite the committed
    # models and reports, refuse to run from an installed copy instead of writing into it.
    default = _run([str(python), "-c", "from formcheck_edge.config import load_config; "
                    "print(load_config(None, {'node': {'id': 'x'}}).pose.model_path())"], work, env)
    assert default.stdout.strip() == str(model)
    _run([str(venv / "bin" / "formcheck"), "edge", "--print-config"], work, env)
    refused = subprocess.run([str(venv / "bin" / "formcheck"), "models", "evaluate-reps"], cwd=work, env=env,
                             capture_output=True, text=True, check=False, timeout=120)
    assert refused.returncode == 2 and "source checkout only" in refused.stderr, refused.stderr[-2000:]
    assert _tree(site) == before, "the installed package was written to"
    assert not any(work.iterdir()), "files were left in the working directory"
