"""Write the generated dashboards to ``dashboards/json/`` (``python -m formcheck_dashboards.build``).

The output is byte-stable (sorted keys, fixed uid and version per dashboard), so the committed JSON can be
compared with a fresh build: ``python -m formcheck_dashboards.build --check`` exits 1 and names the stale files.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from formcheck_dashboards import fleet_health, gym_floor, member

JSON_DIR = Path(__file__).resolve().parent.parent / "json"  # dashboards/json: the build tool runs in a checkout
REBUILD_COMMAND = "python -m formcheck_dashboards.build"

# file name → builder; the file name is the dashboard's uid without the "formcheck-" prefix.
DASHBOARDS: dict[str, Callable[[], dash.Dashboard]] = {
    "gym-floor.json": gym_floor.build,
    "member.json": member.build,
    "fleet-health.json": fleet_health.build,
}


# The SDK's variable model is shared by all variable kinds and always carries the interval variable's settings.
_INTERVAL_ONLY = ("auto", "auto_count", "auto_min")


def _tidy(model: dict[str, Any]) -> dict[str, Any]:
    """Drop interval-only keys from query variables and add ``definition`` (what Grafana's editor shows)."""
    for variable in model.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            for key in _INTERVAL_ONLY:
                variable.pop(key, None)
            if isinstance(variable.get("query"), str):
                variable["definition"] = variable["query"]
    return model


def render(builder: Callable[[], dash.Dashboard]) -> str:
    """One dashboard as the JSON text Grafana provisions (stable: sorted keys, two-space indent)."""
    model = _tidy(json.loads(json.dumps(builder().build(), cls=JSONEncoder)))
    return json.dumps(model, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def render_all() -> dict[str, str]:
    return {name: render(builder) for name, builder in DASHBOARDS.items()}


def stale(directory: Path = JSON_DIR) -> list[str]:
    """Files in ``directory`` that differ from a fresh build, are missing, or are left over."""
    rendered = render_all()
    out = [name for name, text in rendered.items()
           if not (directory / name).is_file() or (directory / name).read_text(encoding="utf-8") != text]
    out += sorted(p.name for p in directory.glob("*.json") if p.name not in rendered)
    return out


def write_all(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    rendered = render_all()
    for name, text in rendered.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    for leftover in directory.glob("*.json"):
        if leftover.name not in rendered:
            leftover.unlink()
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m formcheck_dashboards.build", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is stale")
    parser.add_argument("--out", type=Path, default=JSON_DIR, help="output directory (default: dashboards/json)")
    args = parser.parse_args(argv)
    if args.check:
        names = stale(args.out)
        if names:
            print(f"stale dashboards in {args.out}: {', '.join(names)}; run '{REBUILD_COMMAND}'", file=sys.stderr)
            return 1
        print(f"{len(DASHBOARDS)} dashboards up to date")
        return 0
    for path in write_all(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
