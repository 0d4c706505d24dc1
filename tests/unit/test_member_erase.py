"""Pure parts of ``formcheck member erase``: the InfluxQL it sends and how it reads the answers."""

from __future__ import annotations

import re
from typing import Any

from formcheck.member_erase import (
    count_statement,
    delete_point_statement,
    drop_statement,
    legacy_statements,
    member_retained_topics,
    points_per_series,
    regex_literal,
    retained_check_ins,
    summary,
)
from formcheck_protocol.topics import Topics


def test_statements_select_the_member_by_tag_in_every_measurement() -> None:
    # "::tag": a bare "member" is refused in a deletion where older points have a "member" field.
    assert drop_statement("m-1042") == """DROP SERIES WHERE "member"::tag = 'm-1042'"""
    assert count_statement("frames", "m-1042") == (
        """SELECT count(*) FROM "frames"./.*/ WHERE "member"::tag = 'm-1042'""")
    assert drop_statement("o'hara") == """DROP SERIES WHERE "member"::tag = 'o\\'hara'"""
    assert delete_point_statement("session", "rack-1", 1_700_000_000_000_000_000) == (
        """DELETE FROM "session" WHERE "node" = 'rack-1' AND time = 1700000000000000000""")


def test_legacy_scans_match_only_this_member() -> None:
    scans = legacy_statements("m.1")
    assert """WHERE "member"::field = 'm.1'""" in scans["session"]
    pattern = re.search(r"=~ (/.*/)", scans["open_set"])
    assert pattern is not None and pattern.group(1) == r'/"member":"m\.1"/'   # the dot is literal
    regex = re.compile(pattern.group(1).strip("/"))
    assert regex.search('{"set_id":"x","member":"m.1","exercise":"squat"}')
    assert not regex.search('{"member":"mx1"}') and not regex.search('{"member":"m.10"}')
    assert regex_literal("a/b") == r"/a\/b/"


def test_points_per_measurement_from_count_answers() -> None:
    series: list[tuple[str, dict[str, str], list[dict[str, Any]]]] = [
        ("rep", {}, [{"time": 0, "count_score": 3, "count_min_knee": 2, "count_faults": 3}]),
        ("session", {}, [{"time": 0, "count_checked_in": 1, "count_exercise": 1, "count_member": None}]),
        ("frame", {}, [{"time": 0, "count_x": 0}]),
    ]
    counts = points_per_series(series)
    assert counts == {"rep": 3, "session": 1}
    assert summary(counts) == "3 rep, 1 session"


def test_check_ins_are_read_from_retained_sessions() -> None:
    retained = {
        "gym/main/nodes/rack-1/session": b'{"v":1,"member":"alice","exercise":"squat"}',
        "gym/main/nodes/rack-2/session": b'{"v":1,"member":"bob"}',
        "gym/main/nodes/rack-3/session": b"",                 # checked out
        "gym/main/nodes/rack-4/session": b"not json",
        "gym/main/nodes/rack-5/session": b'["alice"]',
    }
    assert retained_check_ins(retained, "alice") == ["gym/main/nodes/rack-1/session"]
    assert retained_check_ins(retained, "carol") == []


def test_every_retained_member_topic_is_cleared() -> None:
    topics = member_retained_topics(Topics(site="north", prefix="acme"), "m-7")
    assert "acme/north/members/m-7/notifications" in topics
    assert all(t.startswith("acme/north/members/m-7/") for t in topics)
