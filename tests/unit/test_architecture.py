"""The import graph, read from the source with ``ast``: imports only run downward (docs/architecture.md).

Every import counts, the lazy ones inside functions included: a lazy import still makes a package depend on
another, it only defers the cost.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

from formcheck_runtime.paths import REPO_ROOT, SOURCE_FOLDERS

# Import name -> the folder that holds it. Every import name the wheel installs is formcheck or formcheck_*; bench
# is the checkout's benchmarks, never installed.
FOLDERS: dict[str, Path] = {
    "formcheck_protocol": REPO_ROOT / "protocol" / "formcheck_protocol",
    "formcheck_runtime": REPO_ROOT / "runtime" / "formcheck_runtime",
    "formcheck_aggregator": REPO_ROOT / "aggregator" / "formcheck_aggregator",
    "formcheck_edge": REPO_ROOT / "edge_node" / "formcheck_edge",
    "formcheck_dashboards": REPO_ROOT / "dashboards" / "formcheck_dashboards",
    "formcheck_models": REPO_ROOT / "models" / "formcheck_models",
    "formcheck": REPO_ROOT / "formcheck",
    "bench": REPO_ROOT / "bench",
}
PACKAGES = tuple(FOLDERS)

# Package -> the packages it may import. Lower layers first; the table itself is a DAG (checked below).
ALLOWED: dict[str, set[str]] = {
    "formcheck_protocol": set(),
    "formcheck_runtime": {"formcheck_protocol"},
    "formcheck_aggregator": {"formcheck_protocol", "formcheck_runtime"},
    "formcheck_edge": {"formcheck_protocol", "formcheck_runtime", "formcheck_aggregator"},
    "formcheck_dashboards": {"formcheck_protocol", "formcheck_runtime"},
    "formcheck_models": {"formcheck_protocol", "formcheck_runtime", "formcheck_aggregator", "formcheck_edge"},
    "formcheck": {"formcheck_protocol", "formcheck_runtime", "formcheck_aggregator", "formcheck_edge",
                  "formcheck_dashboards", "formcheck_models"},
    "bench": {"formcheck_protocol", "formcheck_runtime", "formcheck_aggregator", "formcheck_edge",
              "formcheck_dashboards", "formcheck_models", "formcheck"},
}

# Third-party imports each package may make; the base dependencies of pyproject.toml are what protocol, the
# runtime and the aggregator import (apprise is imported by name through importlib, so it is not seen here).
BASE = {"paho", "pydantic", "pydantic_core", "yaml"}
THIRD_PARTY = {
    "formcheck_protocol": {"pydantic", "pydantic_core"},
    "formcheck_runtime": BASE,
    "formcheck_aggregator": BASE,
    # the edge extra; tflite_runtime is the fallback interpreter, picamera2 comes from Raspberry Pi OS
    "formcheck_edge": BASE | {"numpy", "cv2", "mediapipe", "ai_edge_litert", "tflite_runtime", "picamera2"},
    "formcheck_dashboards": BASE | {"grafana_foundation_sdk"},
}


def module_name(path: Path) -> str:
    for package, folder in FOLDERS.items():
        if path.is_relative_to(folder):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join(parts)
    raise AssertionError(f"{path} is in no package of FOLDERS")


def component(module: str) -> str:
    return module.split(".", maxsplit=1)[0]


def imports(path: Path) -> set[str]:
    """Absolute module names ``path`` imports (relative imports resolved against its package)."""
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            # `from formcheck import local_services` imports that module, not only the package
            found.update(f"{module}.{alias.name}" for alias in node.names
                         if _is_module(f"{module}.{alias.name}"))
    return found


def _is_module(name: str) -> bool:
    top, *rest = name.split(".")
    if top not in FOLDERS:
        return False
    path = FOLDERS[top].joinpath(*rest)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def source_files() -> list[Path]:
    return sorted(p for folder in FOLDERS.values() for p in folder.rglob("*.py"))


def graph() -> dict[tuple[str, str], list[str]]:
    """(importing component, imported component) -> the ``module imports module`` lines behind the arrow."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in source_files():
        source = module_name(path)
        for name in imports(path):
            if name.split(".")[0] in PACKAGES:
                a, b = component(source), component(name)
                if a != b:
                    edges[(a, b)].append(f"{source} imports {name}")
    return edges


def third_party(comp: str) -> dict[str, list[str]]:
    std = set(sys.stdlib_module_names) | {"__future__"}
    found: dict[str, list[str]] = defaultdict(list)
    for path in source_files():
        if component(module_name(path)) == comp:
            for name in imports(path):
                top = name.split(".")[0]
                if top not in std and top not in PACKAGES:
                    found[top].append(module_name(path))
    return found


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Every elementary cycle's node list found by a depth-first search (empty when the graph is a DAG)."""
    out: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        out[a].add(b)
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(out[node]):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(out):
        if node not in state:
            visit(node)
    return found


def test_the_allowed_layers_form_no_cycle() -> None:
    assert cycles({(a, b) for a, targets in ALLOWED.items() for b in targets}) == []


def test_imports_only_run_downward() -> None:
    wrong = [line for (a, b), lines in graph().items() if b not in ALLOWED[a] for line in lines]
    assert not wrong, "imports running up or across the layers (docs/architecture.md):\n" + "\n".join(sorted(wrong))


def test_no_cycle_between_the_packages() -> None:
    assert cycles(set(graph())) == []


def test_the_aggregator_imports_nothing_of_the_edge_or_the_models() -> None:
    crossing = [line for (a, b), lines in graph().items()
                if a == "formcheck_aggregator" and b in {"formcheck_edge", "formcheck_models"} for line in lines]
    assert not crossing, crossing


def test_protocol_imports_nothing_of_ours_but_itself() -> None:
    ours = [line for (a, _), lines in graph().items() if a == "formcheck_protocol" for line in lines]
    assert not ours, ours


def test_the_base_dependencies_are_what_protocol_runtime_and_aggregator_import() -> None:
    for comp, allowed in THIRD_PARTY.items():
        extra = {name: users for name, users in third_party(comp).items() if name not in allowed}
        assert not extra, f"{comp} imports third-party packages outside its install unit: {extra}"


def test_every_package_folder_is_known() -> None:
    """A new package beside the others must be placed in the layers before the lower ones may import it."""
    found = {init.parent.name for init in REPO_ROOT.glob("*/formcheck_*/__init__.py")}
    found |= {init.parent.name for init in REPO_ROOT.glob("*/__init__.py")} - {"tests"}
    assert found == set(FOLDERS), found ^ set(FOLDERS)


def test_the_aggregator_process_loads_no_edge_code() -> None:
    """What `formcheck aggregator` imports before it runs: no edge, model or dashboard code, no numpy."""
    code = (
        "import sys\n"
        "import formcheck.cli as cli\n"
        "import formcheck_aggregator.config, formcheck_aggregator.service, formcheck_aggregator.core\n"
        "import formcheck_aggregator.workers, formcheck_aggregator.influx, formcheck_aggregator.notifier\n"
        "import formcheck_aggregator.station, formcheck_aggregator.points\n"
        "cli.build_parser()\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT,
                            timeout=60)
    loaded = set(result.stdout.split())
    assert "formcheck_aggregator" in loaded
    forbidden = {"formcheck_edge", "formcheck_models", "formcheck_dashboards", "bench", "numpy", "cv2", "mediapipe",
                 "ai_edge_litert", "tensorflow", "grafana_foundation_sdk", "psutil"}
    assert not loaded & forbidden, sorted(loaded & forbidden)


def test_the_deployables_never_resolve_paths_against_the_checkout() -> None:
    """Runtime code finds its files through formcheck_runtime.paths (package data, the cache, config), not REPO_ROOT."""
    deployed = {"formcheck_protocol", "formcheck_runtime", "formcheck_aggregator", "formcheck_edge",
                "formcheck_dashboards"}
    for path in source_files():
        if component(module_name(path)) in deployed and path != FOLDERS["formcheck_runtime"] / "paths.py":
            assert "REPO_ROOT" not in path.read_text(), f"{path.relative_to(REPO_ROOT)} uses the checkout's root"


def test_the_source_folders_are_the_ones_the_wheel_is_built_from() -> None:
    """What runs the checkout without installing it (the emulated Pi) sees the packages the wheel installs."""
    where = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["where"]
    assert [folder.resolve() for folder in SOURCE_FOLDERS] == [(REPO_ROOT / name).resolve() for name in where]
    found = {init.parent.resolve() for folder in SOURCE_FOLDERS for init in folder.glob("formcheck*/__init__.py")}
    assert found == {folder.resolve() for name, folder in FOLDERS.items() if name != "bench"}
