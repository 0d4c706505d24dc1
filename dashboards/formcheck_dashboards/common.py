"""Pieces shared by the dashboards: layout, colours, value mappings and the per-fault queries."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common, dashboard

from formcheck_dashboards.influxql import InfluxQL
from formcheck_protocol.messages import FAULTS

GRADES = ("A", "B", "C", "D", "F")
GRADE_COLORS = {"A": "green", "B": "#73BF69", "C": "yellow", "D": "orange", "F": "red"}
PHASE_COLORS = {"no_person": "text", "standing": "blue", "descending": "purple", "bottom": "orange",
                "ascending": "green"}

# Station status is what the node itself last said on its retained status topic (the aggregator stores every
# status message as a node_status point): online on connect, stopped on a clean exit, offline from its Last Will.
STATUS_COLORS = {"online": "green", "offline": "red", "stopped": "blue"}
STATUS_LABELS = {"online": "ONLINE", "offline": "OFFLINE", "stopped": "STOPPED"}
# What an online node is doing, from the same status point: idle (nobody at the station, no frames) or active.
ACTIVITY_COLORS = {"idle": "text", "active": "green"}
ACTIVITY_LABELS = {"idle": "IDLE", "active": "ACTIVE"}
# node_stats (every 5 s by default) only add something when they contradict an ONLINE status: a node whose
# connection (and so its Last Will) is still up but whose pipeline sends nothing is shown as STALE.
STALE_AFTER_S = 60
STATUS_EXPLANATION = (
    "Status is the node's own last word on its retained status topic, stored by the aggregator as a "
    "node_status point: ONLINE when it connected, STOPPED on a clean exit, OFFLINE from its Last Will (sent "
    "by the broker when the node's connection is lost without a clean disconnect). A Last Will carries no time "
    "of its own, so it is stored at the time the aggregator received it."
)
ACTIVITY_EXPLANATION = (
    "Activity, from the same node_status point: IDLE when nobody has been at the station for the node's idle "
    "time (it publishes no frames until someone comes), ACTIVE otherwise, none when the node is not online."
)
STALE_EXPLANATION = (
    f"Stats STALE: the node sent no node_stats (every 5 s by default) for about {STALE_AFTER_S} s although it "
    "reported within the last hour. Next to ONLINE it means the node is connected but its pipeline is not "
    "reporting (hung process, or a lost connection whose Last Will has not fired yet); next to OFFLINE or "
    "STOPPED it only confirms the status."
)


def status_query(group_by_node: bool, activity: bool = False) -> str:
    """The state of each node's last node_status point (all time: a node can stay up for months), with
    ``activity`` that point's activity too (null unless online)."""
    group = ' GROUP BY "node"' if group_by_node else ""
    also = ', "activity"' if activity else ""
    return f'SELECT last("state") AS "status"{also} FROM "node_status" WHERE "node" =~ /^$node$/{group}'


def stale_query() -> str:
    """One row, ``stats`` = 0, only for a node without node_stats for ~60 s that reported in the last hour.

    node_stats counted in 10 s buckets (filled with 0 over the last hour, so a silent node still has buckets) and
    averaged over the current and the five previous buckets: 0 when nothing arrived in the last 50-60 s. The
    last bucket of each node is kept only when it is 0. (InfluxDB 1.x passes an outer query's time condition
    into its subqueries, so "the last bucket" has to be a ``last()`` one level up, not a time condition.)
    """
    buckets = STALE_AFTER_S // 10
    return (
        'SELECT "s" AS "stats" FROM (SELECT last("n") AS "s" FROM ('
        f'SELECT moving_average(count("fps"), {buckets}) AS "n" FROM "node_stats" '
        'WHERE time > now() - 1h AND "node" =~ /^$node$/ GROUP BY time(10s), "node" fill(0)) GROUP BY "node") '
        'WHERE "s" = 0'
    )


def place(x: int, y: int, w: int, h: int) -> dashboard.GridPos:
    return dashboard.GridPos(h=h, w=w, x=x, y=y)


def thresholds(base: str = "green", *steps: tuple[float, str]) -> dash.ThresholdsConfig:
    return dash.ThresholdsConfig().mode(dashboard.ThresholdsMode.ABSOLUTE).steps(
        [dashboard.Threshold(value=None, color=base)] + [dashboard.Threshold(value=v, color=c) for v, c in steps]
    )


def status_mappings() -> list[dashboard.ValueMapping]:
    return text_mappings(STATUS_COLORS, STATUS_LABELS)


def activity_mappings() -> list[dashboard.ValueMapping]:
    return text_mappings(ACTIVITY_COLORS, ACTIVITY_LABELS)


def stale_mappings() -> list[dashboard.ValueMapping]:
    return [dashboard.ValueMap(options={"0": dashboard.ValueMappingResult(text="STALE", color="orange", index=0)})]


def member_mappings() -> list[dashboard.ValueMapping]:
    """A check-out names no member (its point has no ``member`` tag, read as null): shown as a dash, like a
    station nobody ever checked in at. Empty matches the ``member`` field "" of check-outs stored before the
    member became a tag."""
    return [dashboard.SpecialValueMap(options=dashboard.DashboardSpecialValueMapOptions(
        match=match, result=dashboard.ValueMappingResult(text="—", index=index)))
        for index, match in enumerate((dashboard.SpecialValueMatch.NULL, dashboard.SpecialValueMatch.EMPTY))]


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

