"""'Member': pick a member and see their sets over time with grades, the score trend and their faults."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common, dashboard

from formcheck_dashboards.common import (
    GRADE_COLORS,
    display_name,
    fault_targets,
    grade_overrides,
    legend,
    place,
    reduce,
    text_mappings,
    thresholds,
    top_fault_transformations,
)
from formcheck_dashboards.influxql import DATASOURCE, InfluxQL

UID = "formcheck-member"
# Single value, no All: Grafana inserts it unescaped, so compare exactly (ids are [A-Za-z0-9_.-]).
MEMBER = """"member" = '$member'"""
SET_COLUMNS = ('"exercise", "node", "reps", "partial_reps", "grade", "score_mean", "score_min", "main_fault", '
               '"duration", "complete", "ended_by"')

DESCRIPTION = (
    "One member's training: every stored set (reps, grade, mean and worst rep score, main fault), the rep score "
    "trend and how often each fault was flagged. Members are the ids checked in at the stations (no personal "
    "data); the list holds every member with at least one stored set."
)


def member_variable() -> dash.QueryVariable:
    return (dash.QueryVariable("member").label("Member").datasource(DATASOURCE)
            .query('SHOW TAG VALUES FROM "set" WITH KEY = "member"')
            .refresh(dashboard.VariableRefresh.ON_DASHBOARD_LOAD).sort(dashboard.VariableSort.ALPHABETICAL_ASC)
            .multi(False).include_all(False))


def totals() -> stat.Panel:
    return (
        stat.Panel().id(1).title("In this time range").datasource(DATASOURCE)
        .grid_pos(place(0, 0, 12, 5))
        .with_target(InfluxQL("A", 'SELECT count("reps") AS "sets", sum("reps") AS "reps", '
                                   'mean("score_mean") AS "mean score", min("score_min") AS "worst rep score" '
                                   f'FROM "set" WHERE $timeFilter AND {MEMBER}').table())
        .reduce_options(reduce("lastNotNull", fields="/^(sets|reps|mean score|worst rep score)$/"))
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME).color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.NONE).decimals(0).thresholds(thresholds("blue")).no_value("0")
    )


def rep_grades() -> bargauge.Panel:
    panel = (
        bargauge.Panel().id(2).title("Rep grades").datasource(DATASOURCE)
        .grid_pos(place(12, 0, 12, 5))
        .with_target(InfluxQL("A", f'SELECT count("score") AS "reps" FROM "rep" WHERE $timeFilter AND {MEMBER} '
                                   'GROUP BY "grade"').alias("$tag_grade"))
        .reduce_options(reduce("sum")).orientation(common.VizOrientation.VERTICAL)
        .display_mode(common.BarGaugeDisplayMode.BASIC).value_mode(common.BarGaugeValueMode.COLOR)
        .min(0).decimals(0).thresholds(thresholds("blue"))
    )
    for name, props in grade_overrides():
        panel = panel.override_by_name(name, props)
    return panel


def sets_over_time() -> timeseries.Panel:
    panel = (
        timeseries.Panel().id(3).title("Sets: reps per set, coloured by set grade").datasource(DATASOURCE)
        .grid_pos(place(0, 5, 12, 9))
        .with_target(InfluxQL("A", f'SELECT "reps" FROM "set" WHERE $timeFilter AND {MEMBER} GROUP BY "grade"')
                     .alias("$tag_grade"))
        .draw_style(common.GraphDrawStyle.BARS).bar_alignment(common.BarAlignment.CENTER).fill_opacity(90)
        .line_width(1).show_points(common.VisibilityMode.ALWAYS).point_size(8)
        .legend(legend()).min(0).decimals(0).unit("none")
    )
    for name, props in grade_overrides():
        panel = panel.override_by_name(name, props)
    return panel


def score_trend() -> timeseries.Panel:
    return (
        timeseries.Panel().id(4).title("Score trend").datasource(DATASOURCE)
        .grid_pos(place(12, 5, 12, 9))
        .with_target(InfluxQL("A", f'SELECT mean("score") AS "rep score" FROM "rep" WHERE $timeFilter AND {MEMBER} '
                                   "GROUP BY time($__interval) fill(none)").alias("rep score (mean)"))
        .with_target(InfluxQL("B", f'SELECT "score_mean" FROM "set" WHERE $timeFilter AND {MEMBER}')
                     .alias("set mean score"))
        .draw_style(common.GraphDrawStyle.LINE).line_width(2).span_nulls(True)
        .show_points(common.VisibilityMode.ALWAYS).point_size(5)
        .legend(legend()).min(0).max(100).unit("none").decimals(0)
        .thresholds(thresholds("red", (60, "orange"), (70, "yellow"), (80, "#73BF69"), (90, "green")))
        .thresholds_style(common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED))
    )


def faults() -> bargauge.Panel:
    return (
        bargauge.Panel().id(5).title("Faults (reps flagged)").datasource(DATASOURCE)
        .description("Reps on which each fault was flagged, most frequent first.")
        .grid_pos(place(0, 14, 8, 10))
        .targets(fault_targets(MEMBER))
        .transformations(top_fault_transformations())
        .reduce_options(reduce("lastNotNull", fields="/^Total$/", values=True))
        .orientation(common.VizOrientation.HORIZONTAL).display_mode(common.BarGaugeDisplayMode.BASIC)
        .value_mode(common.BarGaugeValueMode.COLOR).min(0).decimals(0).thresholds(thresholds("orange"))
    )


def sets_table() -> table.Panel:
    return (
        table.Panel().id(6).title("Sets").datasource(DATASOURCE)
        .grid_pos(place(8, 14, 16, 10))
        .with_target(InfluxQL("A", f'SELECT {SET_COLUMNS} FROM "set" WHERE $timeFilter AND {MEMBER}').table())
        .sort_by([common_builders.TableSortByFieldState().display_name("Time").desc(True)])
        .override_by_name("grade", [dashboard.DynamicConfigValue(id_val="mappings",
                                                                 value=text_mappings(GRADE_COLORS)),
                                    dashboard.DynamicConfigValue(id_val="custom.cellOptions",
                                                                 value={"type": "color-text"})])
        .override_by_name("score_mean", [display_name("mean score"),
                                         dashboard.DynamicConfigValue(id_val="decimals", value=0)])
        .override_by_name("score_min", [display_name("worst rep"),
                                        dashboard.DynamicConfigValue(id_val="decimals", value=0)])
        .override_by_name("duration", [dashboard.DynamicConfigValue(id_val="unit", value="s")])
        .override_by_name("main_fault", [display_name("main fault")])
        .override_by_name("partial_reps", [display_name("partial")])
        .override_by_name("ended_by", [display_name("ended by")])
    )


def build() -> dash.Dashboard:
    return (
        dash.Dashboard("Member").uid(UID).description(DESCRIPTION).tags(["formcheck", "member"])
        .version(1).readonly().time("now-30d", "now").timezone("browser")
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
        .with_variable(member_variable())
        .with_panel(totals())
        .with_panel(rep_grades())
        .with_panel(sets_over_time())
        .with_panel(score_trend())
        .with_panel(faults())
        .with_panel(sets_table())
    )
