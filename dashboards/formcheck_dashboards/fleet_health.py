"""'Fleet health': edge nodes (fps, inference time, drops, status) and the aggregator (throughput, errors)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.models import common, dashboard

from formcheck_dashboards.common import (
    STATUS_EXPLANATION,
    legend,
    place,
    reduce,
    status_mappings,
    status_query,
    thresholds,
)
from formcheck_dashboards.gym_floor import node_variable
from formcheck_dashboards.influxql import DATASOURCE, FRAME, InfluxQL, node_filter

UID = "formcheck-fleet-health"
NODE = node_filter()
BY_NODE = 'GROUP BY time($__interval), "node"'
BY_AGG = 'GROUP BY time($__interval), "aggregator"'

DESCRIPTION = (
    "Edge nodes (from node_stats, sent by each node every 5 s by default) and aggregators (aggregator_stats, "
    "every 10 s by default). Counters that grow since a process started (dropped, invalid, write errors...) are "
    "shown as increases per interval, so restarts do not show as negative spikes. " + STATUS_EXPLANATION
)


def _series(panel_id: int, title: str, grid: dashboard.GridPos, unit: str, *targets: InfluxQL,
            description: str = "", bars: bool = False) -> timeseries.Panel:
    panel = (timeseries.Panel().id(panel_id).title(title).datasource(DATASOURCE).grid_pos(grid)
             .targets(list(targets)).unit(unit).legend(legend()).line_width(1).fill_opacity(10 if not bars else 80)
             .draw_style(common.GraphDrawStyle.BARS if bars else common.GraphDrawStyle.LINE)
             .span_nulls(False).min(0))
    return panel.description(description) if description else panel


def _agg(ref: str, select: str, label: str, fill: str = "none") -> InfluxQL:
    """One aggregator_stats expression per interval and aggregator."""
    return InfluxQL(ref, f'SELECT {select} FROM "aggregator_stats" WHERE $timeFilter {BY_AGG} fill({fill})').alias(
        f"$tag_aggregator {label}")


def status() -> stat.Panel:
    # One series per node, named by the node: every field but the time is a node's status.
    return (
        stat.Panel().id(2).title("Node status").datasource(DATASOURCE).description(STATUS_EXPLANATION)
        .grid_pos(place(0, 1, 24, 4))
        .with_target(InfluxQL("A", status_query(group_by_node=True)).alias("$tag_node"))
        .reduce_options(reduce("lastNotNull", fields="/^(?!Time$)/")).mappings(status_mappings())
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME).color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE).orientation(common.VizOrientation.VERTICAL)
        .thresholds(thresholds("text")).no_value("no node has published a status")
    )


def build() -> dash.Dashboard:
    edge = dash.Row("Edge nodes").id(1).grid_pos(place(0, 0, 24, 1))
    aggregator = dash.Row("Aggregator").id(10).grid_pos(place(0, 29, 24, 1))
    return (
        dash.Dashboard("Fleet health").uid(UID).description(DESCRIPTION).tags(["formcheck", "ops"])
        .version(1).readonly().time("now-6h", "now").refresh("30s").timezone("browser")
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
        .with_variable(node_variable())
        .with_row(edge)
        .with_panel(status())
        .with_panel(_series(
            3, "Frames classified per second", place(0, 5, 12, 8), "fps",
            InfluxQL("A", f'SELECT mean("fps") FROM "node_stats" WHERE $timeFilter AND {NODE} {BY_NODE} fill(null)')
            .alias("$tag_node"),
            description="Edge-side rate (node_stats.fps); a camera at 30 fps should stay close to 30."))
        .with_panel(_series(
            4, "Inference time per frame", place(12, 5, 12, 8), "ms",
            InfluxQL("A", f'SELECT mean("infer_ms") FROM "node_stats" WHERE $timeFilter AND {NODE} '
                          f"{BY_NODE} fill(null)").alias("$tag_node total"),
            InfluxQL("B", f'SELECT mean("pose_ms") FROM "node_stats" WHERE $timeFilter AND {NODE} '
                          f"{BY_NODE} fill(null)").alias("$tag_node pose"),
            description="Mean pose + classifier time (infer_ms) and pose alone (pose_ms)."))
        .with_panel(_series(
            5, "Dropped frames", place(0, 13, 12, 8), "none",
            InfluxQL("A", f'SELECT non_negative_difference(max("dropped")) FROM "node_stats" WHERE $timeFilter '
                          f"AND {NODE} {BY_NODE} fill(none)").alias("$tag_node capture"),
            InfluxQL("B", f'SELECT non_negative_difference(max("unpublished")) FROM "node_stats" WHERE $timeFilter '
                          f"AND {NODE} {BY_NODE} fill(none)").alias("$tag_node unpublished"),
            description="Frames dropped by the capture queue and messages dropped by the outgoing queue, per "
                        "interval.", bars=True))
        .with_panel(_series(
            6, "Frames received and stored per station", place(12, 13, 12, 8), "none",
            InfluxQL("A", f'SELECT sum("frames") FROM {FRAME} WHERE $timeFilter AND {NODE} {BY_NODE} fill(0)')
            .alias("$tag_node frames"),
            InfluxQL("B", f'SELECT count("bad_p") FROM {FRAME} WHERE $timeFilter AND {NODE} {BY_NODE} fill(0)')
            .alias("$tag_node points"),
            description="Frames the aggregator received from the node, and the frame points it stored for them "
                        "(retention policy 'frames': every phase change plus influx.frame_points_per_s a second; "
                        "each point counts the frames since the previous one in its 'frames' field), per "
                        "interval. An idle node publishes no frames."))
        .with_panel(_series(
            7, "Queues", place(0, 21, 12, 8), "none",
            InfluxQL("A", f'SELECT max("queue") FROM "node_stats" WHERE $timeFilter AND {NODE} {BY_NODE} fill(null)')
            .alias("$tag_node capture"),
            InfluxQL("B", f'SELECT max("out_queue") FROM "node_stats" WHERE $timeFilter AND {NODE} '
                          f"{BY_NODE} fill(null)").alias("$tag_node outgoing"),
            description="Capture and outgoing queue depth on the edge nodes."))
        .with_panel(_series(
            8, "CPU temperature", place(12, 21, 12, 8), "celsius",
            InfluxQL("A", f'SELECT mean("cpu_temp") FROM "node_stats" WHERE $timeFilter AND {NODE} '
                          f"{BY_NODE} fill(null)").alias("$tag_node"),
            description="SoC temperature where the OS exposes it (Raspberry Pi throttles at 80-85 °C).")
            .thresholds(thresholds("green", (70, "orange"), (80, "red")))
            .thresholds_style(common_builders.GraphThresholdsStyleConfig()
                              .mode(common.GraphThresholdsStyleMode.LINE)))
        .with_row(aggregator)
        .with_panel(_series(
            11, "Aggregator throughput", place(0, 30, 12, 8), "reqps",
            _agg("A", 'non_negative_derivative(last("messages"), 1s)', "messages/s"),
            _agg("B", 'non_negative_derivative(last("points_written"), 1s)', "points written/s"),
            description="MQTT messages handled and InfluxDB points written per second."))
        .with_panel(_series(
            12, "Invalid messages", place(12, 30, 12, 8), "none",
            _agg("A", 'non_negative_difference(last("invalid"))', "invalid"),
            _agg("B", 'non_negative_difference(last("duplicates"))', "duplicates"),
            _agg("C", 'non_negative_difference(last("gaps"))', "missing frames"),
            description="Messages dropped as invalid (bad JSON, schema, clock...), duplicate frames and frames "
                        "missing from a node's sequence, per interval.", bars=True))
        .with_panel(_series(
            13, "Write errors", place(0, 38, 12, 8), "none",
            _agg("A", 'non_negative_difference(last("write_errors"))', "write errors"),
            _agg("B", 'non_negative_difference(last("points_rejected"))', "points rejected"),
            _agg("C", 'non_negative_difference(last("points_overflow"))', "points dropped (buffer full)"),
            description="Failed InfluxDB write requests (retried), points InfluxDB refused, and frame points "
                        "dropped because the buffer was full, per interval.", bars=True))
        .with_panel(_series(
            14, "Buffer depth", place(12, 38, 12, 8), "none",
            _agg("A", 'max("buffer")', "write buffer (points)", fill="null"),
            _agg("B", 'max("inbox")', "inbox (messages)", fill="null"),
            description="Points waiting to be written to InfluxDB, and MQTT messages waiting to be processed."))
    )
