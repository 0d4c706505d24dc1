"""'Gym floor': the wall display. One tile per station, today's grades, reps per hour and the top fault."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, stat, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common, dashboard

from formcheck_dashboards.common import (
    ACTIVITY_EXPLANATION,
    GRADE_COLORS,
    PHASE_COLORS,
    STALE_AFTER_S,
    STALE_EXPLANATION,
    STATUS_EXPLANATION,
    activity_mappings,
    display_name,
    fault_targets,
    grade_overrides,
    member_mappings,
    place,
    reduce,
    stale_mappings,
    stale_query,
    status_mappings,
    status_query,
    text_mappings,
    thresholds,
    top_fault_transformations,
)
from formcheck_dashboards.influxql import DATASOURCE, FRAME, InfluxQL, node_filter

UID = "formcheck-gym-floor"
NODE = node_filter()

DESCRIPTION = (
    "Wall display (open with ?kiosk; refreshes every 10 s; time range: today). One tile per station: the member "
    "checked in now (the station's last session point: a check-in, or a check-out shown as a dash), reps so far "
    "in the set of the station's last rep today and that rep's grade, the live phase (last frame in the last "
    "30 s), the station's status and activity. " + STATUS_EXPLANATION + " " + ACTIVITY_EXPLANATION + " "
    + STALE_EXPLANATION
)


def node_variable() -> dash.QueryVariable:
    return (dash.QueryVariable("node").label("Station").datasource(DATASOURCE)
            .query('SHOW TAG VALUES FROM "frame" WITH KEY = "node"')
            .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dashboard.VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True)
            .current(dashboard.VariableOption(selected=True, text="All", value="$__all")))


def station_tile() -> stat.Panel:
    fields = {"member": "Member", "reps": "Reps in set", "grade": "Last grade", "phase": "Phase",
              "status": "Status", "activity": "Activity", "stats": "Stats"}
    panel = (
        stat.Panel().id(1).title("$node").datasource(DATASOURCE)
        .description("Member checked in now (— after a check-out); reps in the set of the station's last rep "
                     "today and that rep's grade (the set may have ended after the rest timeout, and may be the "
                     "previous member's); live phase; the node's last status and, when online, its activity "
                     "(IDLE: nobody at the station, no frames); Stats STALE when the node has sent "
                     f"no stats for about {STALE_AFTER_S} s (next to ONLINE: connected but not working).")
        .repeat("node").repeat_direction("h").max_per_row(4).grid_pos(place(0, 0, 6, 7))
        # Target order is the order of the values on the tile.
        # The last session point and its member tag (a check-out has none: null). "::tag": sessions stored
        # before the member became a tag have a "member" field, and the bare name would read that field.
        .with_target(InfluxQL("A", f'SELECT last("checked_in") AS "checked_in", "member"::tag AS "member" '
                                   f'FROM "session" WHERE {NODE}').table())
        .with_target(InfluxQL("B", f'SELECT last("rep_index") AS "reps", "grade" FROM "rep" '
                                   f"WHERE $timeFilter AND {NODE}").table())
        .with_target(InfluxQL("C", f'SELECT last("phase") AS "phase" FROM {FRAME} '
                                   f"WHERE time > now() - 30s AND {NODE}").table())
        .with_target(InfluxQL("D", status_query(group_by_node=False, activity=True)).table())
        .with_target(InfluxQL("E", stale_query()).table())
        .reduce_options(reduce("lastNotNull", fields="/^(member|reps|grade|phase|status|activity|stats)$/"))
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME).color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.NONE).justify_mode(common.BigValueJustifyMode.CENTER)
        .orientation(common.VizOrientation.AUTO).thresholds(thresholds("text")).no_value("–")
        .override_by_name("member", [display_name(fields["member"]),
                                     dashboard.DynamicConfigValue(id_val="mappings", value=member_mappings())])
        .override_by_name("status", [display_name(fields["status"]),
                                     dashboard.DynamicConfigValue(id_val="mappings", value=status_mappings())])
        .override_by_name("activity", [display_name(fields["activity"]),
                                       dashboard.DynamicConfigValue(id_val="mappings", value=activity_mappings())])
        .override_by_name("stats", [display_name(fields["stats"]),
                                    dashboard.DynamicConfigValue(id_val="mappings", value=stale_mappings())])
        .override_by_name("grade", [display_name(fields["grade"]),
                                    dashboard.DynamicConfigValue(id_val="mappings",
                                                                 value=text_mappings(GRADE_COLORS))])
        .override_by_name("phase", [display_name(fields["phase"]),
                                    dashboard.DynamicConfigValue(id_val="mappings",
                                                                 value=text_mappings(PHASE_COLORS))])
        .override_by_name("reps", [display_name(fields["reps"]), dashboard.DynamicConfigValue(id_val="decimals",
                                                                                           value=0)])
    )
    return panel


def grade_distribution() -> bargauge.Panel:
    panel = (
        bargauge.Panel().id(2).title("Grades today").datasource(DATASOURCE)
        .description("Reps graded A-F today at the selected stations.")
        .grid_pos(place(0, 7, 8, 9))
        .with_target(InfluxQL("A", f'SELECT count("score") AS "reps" FROM "rep" WHERE $timeFilter AND {NODE} '
                                   'GROUP BY "grade"').alias("$tag_grade"))
        .reduce_options(reduce("sum")).orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.BASIC).value_mode(common.BarGaugeValueMode.COLOR)
        .show_unfilled(True).min(0).decimals(0).unit("none").thresholds(thresholds("blue"))
    )
    for name, props in grade_overrides():
        panel = panel.override_by_name(name, props)
    return panel


def reps_per_hour() -> timeseries.Panel:
    return (
        timeseries.Panel().id(3).title("Reps per hour").datasource(DATASOURCE)
        .description("Completed reps per clock hour, stacked by station.")
        .grid_pos(place(8, 7, 10, 9))
        .with_target(InfluxQL("A", f'SELECT count("score") AS "reps" FROM "rep" WHERE $timeFilter AND {NODE} '
                                   'GROUP BY time(1h), "node" fill(0)').alias("$tag_node"))
        .draw_style(common.GraphDrawStyle.BARS).fill_opacity(80).line_width(1)
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
        .legend(common_builders.VizLegendOptions().show_legend(True).placement(common.LegendPlacement.BOTTOM)
                .display_mode(common.LegendDisplayMode.LIST))
        .min(0).decimals(0).unit("none")
    )


def top_fault() -> stat.Panel:
    return (
        stat.Panel().id(4).title("Top fault today").datasource(DATASOURCE)
        .description("The fault flagged on the most reps today (one query per known fault: reps store their "
                     "faults as one comma-separated field), with its rep count.")
        .grid_pos(place(18, 7, 6, 9))
        .targets(fault_targets(NODE))
        .transformations([*top_fault_transformations(),
                          dashboard.DataTransformerConfig(id_val="limit", options={"limitField": 1})])
        .reduce_options(reduce("lastNotNull", fields="/^(Field|Total)$/", values=True))
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME).color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.NONE).orientation(common.VizOrientation.VERTICAL)
        .thresholds(thresholds("orange")).no_value("no faults today")
        .override_by_name("Field", [display_name("Fault")])
        .override_by_name("Total", [display_name("Reps"), dashboard.DynamicConfigValue(id_val="decimals", value=0)])
    )


def build() -> dash.Dashboard:
    return (
        dash.Dashboard("Gym floor").uid(UID).description(DESCRIPTION).tags(["formcheck", "wall"])
        .version(1).readonly().time("now/d", "now").refresh("10s").timezone("browser")
        .tooltip(dashboard.DashboardCursorSync.OFF)
        .timepicker(dash.TimePicker().refresh_intervals(["5s", "10s", "30s", "1m", "5m"]))
        .with_variable(node_variable())
        .with_panel(station_tile())
        .with_panel(grade_distribution())
        .with_panel(reps_per_hour())
        .with_panel(top_fault())
    )
