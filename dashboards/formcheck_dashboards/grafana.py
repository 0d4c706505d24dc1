"""What Grafana does with the generated JSON before a query reaches InfluxDB, for tests and smoke checks.

:func:`queries` lists every InfluxQL statement in a dashboard (panel targets and template-variable queries);
:func:`interpolate` replaces Grafana's macros the way its InfluxDB datasource (InfluxQL mode) does:
``$timeFilter`` → ``time >= <from>ms and time <= <to>ms``, ``$__interval``/``$__interval_ms`` → the panel
interval, and template variables → their values (regex-escaped, and ``(a|b)`` for several values, for
multi-value or All-capable variables).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Grafana's escapeRegex (public/app/features/templating: characters special in a regex literal).
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|[\]{}/]")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class Query:
    dashboard: str       # uid
    panel: str           # panel title, or "variable <name>"
    ref_id: str          # target refId, or the variable's name
    query: str
    datasource_uid: str | None
    alias: str | None = None
    result_format: str | None = None
    repeat: str | None = None    # variable the panel repeats over (one copy per value)


def escape_regex(value: str) -> str:
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def _panels(panels: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])  # collapsed rows keep their panels inside


def queries(model: Mapping[str, Any]) -> list[Query]:
    uid = str(model["uid"])
    out: list[Query] = []
    for variable in model.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"] if isinstance(variable["query"], str) else variable["query"].get("query", "")
            out.append(Query(uid, f"variable {variable['name']}", variable["name"], query,
                             (variable.get("datasource") or {}).get("uid")))
    for panel in _panels(model.get("panels") or []):
        for target in panel.get("targets") or []:
            out.append(Query(uid, panel.get("title", ""), target.get("refId", ""), target.get("query", ""),
                             (target.get("datasource") or panel.get("datasource") or {}).get("uid"),
                             target.get("alias"), target.get("resultFormat"), panel.get("repeat")))
    return out


def variables_of(model: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in model.get("templating", {}).get("list", [])}


def interpolate(
    query: str, *, time_from_ms: int, time_to_ms: int, interval: str,
    values: Mapping[str, Sequence[str]] | None = None, variables: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """``query`` with Grafana's macros and template variables replaced.

    ``values`` maps a variable name to its selected values; ``variables`` gives each variable's model
    (``multi``/``includeAll`` decide regex escaping and the ``(a|b)`` form, as in Grafana's InfluxDB datasource).
    """
    interval_ms = _interval_ms(interval)
    text = query.replace("$timeFilter", f"time >= {time_from_ms}ms and time <= {time_to_ms}ms")
    text = text.replace("$__interval_ms", str(interval_ms)).replace("${__interval_ms}", str(interval_ms))
    text = text.replace("${__interval}", interval).replace("$__interval", interval)
    values = values or {}
    variables = variables or {}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            return match.group(0)
        selected = list(values[name])
        model = variables.get(name, {})
        if not (model.get("multi") or model.get("includeAll")):
            return selected[0] if selected else ""
        escaped = [escape_regex(v) for v in selected]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"

    return _VARIABLE.sub(substitute, text)


_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _interval_ms(interval: str) -> int:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", interval)
    if match is None:
        raise ValueError(f"{interval!r} is not a Grafana interval like '10s'")
    return int(match.group(1)) * _UNITS_MS[match.group(2)]


def unreplaced_macros(query: str) -> list[str]:
    """Grafana macros or variables still in an interpolated query (``$`` inside a regex anchor excluded)."""
    return [m.group(0) for m in _VARIABLE.finditer(query)]
