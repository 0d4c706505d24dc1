"""The generated Grafana dashboards: committed JSON is current, every panel is wired to the datasource."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from formcheck_dashboards import build, grafana
from formcheck_dashboards.influxql import DATASOURCE_UID
from formcheck_protocol.messages import Activity, NodeState

ROOT = Path(__file__).resolve().parents[2]
PROVISIONING = ROOT / "dashboards" / "provisioning"


def models() -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in build.render_all().items()}


def test_committed_json_is_current() -> None:
    stale = build.stale()
    assert not stale, f"dashboards/json is stale ({', '.join(stale)}): run '{build.REBUILD_COMMAND}' and commit"


def test_build_is_byte_stable(tmp_path: Path) -> None:
    build.write_all(tmp_path)
    first = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    build.write_all(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == first
    assert sorted(first) == sorted(build.DASHBOARDS)


def test_check_command_reports_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert build.main(["--out", str(tmp_path)]) == 0
    assert build.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "member.json").write_text("{}\n")
    (tmp_path / "old.json").write_text("{}\n")
    assert build.main(["--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "member.json" in err and "old.json" in err and build.REBUILD_COMMAND in err


def test_dashboards_have_fixed_identity() -> None:
    seen = set()
    for name, model in models().items():
        assert model["uid"] == "formcheck-" + name.removesuffix(".json")
        assert model["version"] == 1
        assert "id" not in model or model["id"] is None
        assert model["title"] and model["description"]
        seen.add(model["title"])
    assert seen == {"Gym floor", "Member", "Fleet health"}


@pytest.mark.parametrize("name", sorted(build.DASHBOARDS))
def test_every_panel_has_datasource_title_and_query(name: str) -> None:
    model = models()[name]
    panels = [p for p in model["panels"] if p["type"] != "row"]
    assert panels
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel.get("title"), panel
        assert panel["datasource"] == {"type": "influxdb", "uid": DATASOURCE_UID}, panel["title"]
        targets = panel.get("targets") or []
        assert targets, f"{panel['title']}: no target"
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in targets:
            assert target["datasource"]["uid"] == DATASOURCE_UID
            assert target["rawQuery"] is True
            assert target["query"].startswith("SELECT "), target
            assert target["resultFormat"] in {"time_series", "table"}
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0


@pytest.mark.parametrize("name", sorted(build.DASHBOARDS))
def test_variables_query_the_datasource(name: str) -> None:
    model = models()[name]
    for variable in model["templating"]["list"]:
        assert variable["type"] == "query"
        assert variable["datasource"]["uid"] == DATASOURCE_UID
        assert variable["query"].startswith("SHOW TAG VALUES FROM ")
        assert variable["definition"] == variable["query"]
        assert "auto_count" not in variable
    used = {m for q in grafana.queries(model) for m in re.findall(r"\$(node|member)\b", q.query)}
    assert used <= {v["name"] for v in model["templating"]["list"]}


def test_frames_are_queried_in_their_retention_policy() -> None:
    for model in models().values():
        for query in grafana.queries(model):
            if re.search(r'FROM "?frame"?\b', query.query) and not query.query.startswith("SHOW"):
                pytest.fail(f"{query.panel}: frame points live in retention policy 'frames': {query.query}")


def test_gym_floor_is_a_wall_display() -> None:
    model = models()["gym-floor.json"]
    assert model["refresh"] and model["time"] == {"from": "now/d", "to": "now"}
    tiles = [p for p in model["panels"] if p.get("repeat") == "node"]
    assert len(tiles) == 1 and tiles[0]["type"] == "stat"
    assert "node_status" in model["description"] and "session" in model["description"]
    assert "derived" not in model["description"]


def mappings_of(panel: dict[str, Any], field: str | None = None) -> list[dict[str, Any]]:
    if field is None:
        return list(panel["fieldConfig"]["defaults"]["mappings"])
    (override,) = [o for o in panel["fieldConfig"]["overrides"] if o["matcher"] == {"id": "byName", "options": field}]
    (mappings,) = [p["value"] for p in override["properties"] if p["id"] == "mappings"]
    return list(mappings)


def value_texts(mappings: list[dict[str, Any]]) -> dict[str, str]:
    return {key: result["text"] for m in mappings if m["type"] == "value" for key, result in m["options"].items()}


def test_station_tile_reads_stored_sessions_and_statuses() -> None:
    (tile,) = [p for p in models()["gym-floor.json"]["panels"] if p.get("repeat") == "node"]
    queries = {t["refId"]: t["query"] for t in tile["targets"]}
    # Current member: the last session point, whatever its age (a check-in lasts until the check-out).
    # The member is a tag (erasable, issue 13 item 8); a check-out has none, so it reads null.
    assert queries["A"] == ('SELECT last("checked_in") AS "checked_in", "member"::tag AS "member" FROM "session" '
                            'WHERE "node" =~ /^$node$/')
    assert '"member"' not in queries["B"]                      # the last rep's member is not the current one
    # Status: the node's last word, not derived from stats; its activity (idle or not) from the same point.
    assert queries["D"] == ('SELECT last("state") AS "status", "activity" FROM "node_status" '
                            'WHERE "node" =~ /^$node$/')
    assert "node_stats" in queries["E"] and queries["E"].endswith('WHERE "s" = 0')
    assert value_texts(mappings_of(tile, "status")) == {
        state: state.upper() for state in get_args(NodeState)}
    assert value_texts(mappings_of(tile, "activity")) == {
        activity: activity.upper() for activity in get_args(Activity)}
    assert value_texts(mappings_of(tile, "stats")) == {"0": "STALE"}
    dashes = mappings_of(tile, "member")
    assert {m["type"] for m in dashes} == {"special"} and {m["options"]["result"]["text"] for m in dashes} == {"—"}
    assert {m["options"]["match"] for m in dashes} == {"null", "empty"}   # a check-out; one stored before the tag
    shown = re.compile(tile["options"]["reduceOptions"]["fields"].strip("/"))
    assert all(shown.match(f) for f in ("member", "reps", "grade", "phase", "status", "activity", "stats"))


def test_fleet_node_status_reads_node_status() -> None:
    (panel,) = [p for p in models()["fleet-health.json"]["panels"] if p["title"] == "Node status"]
    (target,) = panel["targets"]
    assert target["query"] == ('SELECT last("state") AS "status" FROM "node_status" WHERE "node" =~ /^$node$/ '
                               'GROUP BY "node"')
    assert target["alias"] == "$tag_node"
    assert value_texts(mappings_of(panel)) == {state: state.upper() for state in get_args(NodeState)}
    # String values: the stat panel shows only numeric fields unless told otherwise; the time is not a status.
    shown = re.compile(panel["options"]["reduceOptions"]["fields"].strip("/"))
    assert shown.match("rack-1") and not shown.match("Time")


def test_provisioning_points_at_the_generated_dashboards() -> None:
    datasource = yaml.safe_load((PROVISIONING / "datasources" / "influxdb.yaml").read_text())
    (ds,) = datasource["datasources"]
    assert ds["uid"] == DATASOURCE_UID and ds["type"] == "influxdb"
    assert ds["jsonData"]["version"] == "InfluxQL"
    assert ds["url"] == "${INFLUX_URL}" and ds["jsonData"]["dbName"] == "${INFLUX_DATABASE}"
    assert ds["user"] == "${INFLUX_USER}" and ds["secureJsonData"]["password"] == (
        "$__file{/run/secrets/influxdb_reader_password}")
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "formcheck.yaml").read_text())
    (prov,) = provider["providers"]
    assert prov["type"] == "file" and prov["options"]["path"] == "/var/lib/grafana/dashboards/formcheck"
    assert build.JSON_DIR == ROOT / "dashboards" / "json"


def test_interpolate_like_grafana() -> None:
    variables = {"node": {"multi": True, "includeAll": True}, "member": {"multi": False, "includeAll": False}}
    q = """SELECT x FROM "rep" WHERE $timeFilter AND "node" =~ /^$node$/ AND "member" = '$member' """ \
        "GROUP BY time($__interval) LIMIT $__interval_ms"
    one = grafana.interpolate(q, time_from_ms=1000, time_to_ms=2000, interval="10s",
                              values={"node": ["rack.1"], "member": ["a.b"]}, variables=variables)
    assert one == ("""SELECT x FROM "rep" WHERE time >= 1000ms and time <= 2000ms AND "node" =~ /^rack\\.1$/ """
                   """AND "member" = 'a.b' GROUP BY time(10s) LIMIT 10000""")
    many = grafana.interpolate(q, time_from_ms=0, time_to_ms=1, interval="1m",
                               values={"node": ["r-1", "r-2"], "member": ["m"]}, variables=variables)
    assert '/^(r-1|r-2)$/' in many and "time(1m)" in many
    assert grafana.unreplaced_macros(many) == []
    assert grafana.unreplaced_macros(q) == ["$timeFilter", "$node", "$member", "$__interval", "$__interval_ms"]
