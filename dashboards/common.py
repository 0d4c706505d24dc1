"""Pieces shared by the dashboards: layout, colours, value mappings and the per-fault queries."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common, dashboard

from dashboards.influxql import InfluxQL
from protocol.messages import FAULTS

GRADES = ("A", "B", "C", "D", "F")
GRADE_COLORS = {"A": "green", "B": "#73BF69", "C": "yellow", "D": "orange", "F": "red"}
PHASE_COLORS = {"no_person": "text", "standing": "blue", "descending": "purple", "bottom": "orange",
                "ascending": "green"}

# A node counts as online when a node_stats point arrived within the last ~30 s: the edge sends one every
# 5 s by default. Counting stats in 10 s buckets (filled with 0 over the last hour, so silent nodes still get a
# row) and averaging the last three buckets gives > 0 exactly when one arrived in the current or the two previous
# buckets, i.e. within the last 20-30 s.
ONLINE_EXPLANATION = (
    "Online/offline is derived, not stored: the node's status topic (and its Last Will) is not written to "
    "InfluxDB. A node is ONLINE when a node_stats point (sent every 5 s by default) arrived in the last ~30 s "
    "(three 10 s buckets), OFFLINE when it reported in the last hour but not in the last ~30 s; nodes silent "
    "for longer than an hour show no status."
)


def online_query(group_by_node: bool) -> str:
    outer_group = ' GROUP BY "node"' if group_by_node else ""
    return (
        'SELECT last("n") AS "status" FROM ('
        'SELECT moving_average(count("fps"), 3) AS "n" FROM "node_stats" '
        'WHERE time > now() - 1h AND "node" =~ /^$node$/ GROUP BY time(10s), "node" fill(0))'
        f"{outer_group}"
    )


def place(x: int, y: int, w: int, h: int) -> dashboard.GridPos:
    return dashboard.GridPos(h=h, w=w, x=x, y=y)


def thresholds(base: str = "green", *steps: tuple[float, str]) -> dash.ThresholdsConfig:
    return dash.ThresholdsConfig().mode(dashboard.ThresholdsMode.ABSOLUTE).steps(
        [dashboard.Threshold(value=None, color=base)] + [dashboard.Threshold(value=v, color=c) for v, c in steps]
    )


def online_mappings() -> list[dashboard.ValueMapping]:
    return [
        dashboard.ValueMap(options={"0": dashboard.ValueMappingResult(text="OFFLINE", color="red", index=0)}),
        dashboard.RangeMap(options=dashboard.DashboardRangeMapOptions(
            from_val=1e-9, to=1e9, result=dashboard.ValueMappingResult(text="ONLINE", color="green", index=1))),
        dashboard.SpecialValueMap(options=dashboard.DashboardSpecialValueMapOptions(
            match=dashboard.SpecialValueMatch.NULL_AND_NAN,
            result=dashboard.ValueMappingResult(text="OFFLINE", color="red", index=2))),
    ]


def text_mappings(colors: dict[str, str], labels: dict[str, str] | None = None) -> list[dashboard.ValueMapping]:
    labels = labels or {}
    return [dashboard.ValueMap(options={
        key: dashboard.ValueMappingResult(text=labels.get(key, key), color=color, index=i)
        for i, (key, color) in enumerate(colors.items())
    })]


def grade_overrides() -> list[tuple[str, list[dashboard.DynamicConfigValue]]]:
    """Per-grade series colour (series named by grade, e.g. alias ``$tag_grade``)."""
    return [(g, [fixed_color(GRADE_COLORS[g])]) for g in GRADES]


def fixed_color(color: str) -> dashboard.DynamicConfigValue:
    return dashboard.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": color})


def display_name(name: str) -> dashboard.DynamicConfigValue:
    return dashboard.DynamicConfigValue(id_val="displayName", value=name)


def reduce(calc: str, fields: str | None = None, values: bool = False) -> common_builders.ReduceDataOptions:
    options = common_builders.ReduceDataOptions().calcs([calc]).values(values)
    return options.fields(fields) if fields is not None else options


def legend(placement: common.LegendPlacement = common.LegendPlacement.BOTTOM,
           show: bool = True) -> common_builders.VizLegendOptions:
    return (common_builders.VizLegendOptions().show_legend(show).placement(placement)
            .display_mode(common.LegendDisplayMode.LIST))


def fault_regex(fault: str) -> str:
    """``faults`` is stored as one comma-joined string field: match one fault id inside it."""
    return f"/(^|,){fault}(,|$)/"


def fault_targets(where: str) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    """One target per known fault: reps whose ``faults`` field contains it, named by the fault id."""
    targets: list[cogbuilder.Builder[cogvariants.Dataquery]] = []
    for i, fault in enumerate(FAULTS):
        ref = chr(ord("A") + i)
        targets.append(InfluxQL(ref, f'SELECT count("score") AS "{fault}" FROM "rep" '
                                     f'WHERE $timeFilter AND {where} AND "faults" =~ {fault_regex(fault)}')
                       .alias(fault))
    return targets


def top_fault_transformations() -> list[dashboard.DataTransformerConfig]:
    """Per-fault series → one row per fault with its total → sorted, most frequent first."""
    return [
        dashboard.DataTransformerConfig(id_val="reduce", options={
            "mode": "seriesToRows", "reducers": ["sum"], "includeTimeField": False}),
        dashboard.DataTransformerConfig(id_val="sortBy", options={"sort": [{"field": "Total", "desc": True}]}),
    ]

