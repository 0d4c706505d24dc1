"""Self check-in decisions (formcheck.self_checkin): the member comes from the topic, stations are not taken over."""

from __future__ import annotations

import json

from formcheck.self_checkin import Publication, SelfCheckin
from formcheck_protocol.topics import Topics

T = Topics(site="main")


def request(logic: SelfCheckin, member: str, action: str, node: str, now: float = 0.0,
            exercise: str | None = None) -> list[Publication]:
    body = {"v": 1, "action": action, "node": node, **({"exercise": exercise} if exercise else {})}
    return logic.on_message(T.member(member, "checkin"), json.dumps(body).encode(), now)


def by_topic(pubs: list[Publication]) -> dict[str, dict[str, object] | None]:
    return {p.topic: json.loads(p.payload) if p.payload else None for p in pubs}


def test_start_writes_the_members_session_and_mirrors_it() -> None:
    logic = SelfCheckin(T)
    out = by_topic(request(logic, "alice", "start", "rack-1", exercise="squat"))
    session = out[T.node("rack-1", "session")]
    assert session is not None and session["member"] == "alice" and session["exercise"] == "squat"
    assert session["checked_in_by"] == "member"
    assert out[T.member("alice", "session")] == {"v": 1, "node": "rack-1", "exercise": "squat",
                                                  "ts": session["ts"], "error": ""}
    # The broker's echo of the retained session changes nothing.
    assert logic.on_message(T.node("rack-1", "session"), json.dumps(session).encode(), 1.0) == []


def test_a_station_in_use_is_refused_and_only_its_member_stops_it() -> None:
    logic = SelfCheckin(T)
    request(logic, "alice", "start", "rack-1")
    refused = by_topic(request(logic, "bob", "start", "rack-1"))
    assert list(refused) == [T.member("bob", "session")]
    assert "in use" in str(refused[T.member("bob", "session")])
    refused = by_topic(request(logic, "bob", "stop", "rack-1"))
    assert list(refused) == [T.member("bob", "session")]
    assert "not checked in" in str(refused[T.member("bob", "session")])
    assert logic.sessions["rack-1"].member == "alice"
    stopped = by_topic(request(logic, "alice", "stop", "rack-1"))
    assert stopped[T.node("rack-1", "session")] is None
    assert stopped[T.member("alice", "session")] == {"v": 1, "error": ""}


def test_starting_elsewhere_checks_out_the_first_station() -> None:
    logic = SelfCheckin(T)
    request(logic, "alice", "start", "rack-1")
    out = by_topic(request(logic, "alice", "start", "rack-2"))
    assert out[T.node("rack-1", "session")] is None
    assert out[T.node("rack-2", "session")] is not None
    assert set(logic.sessions) == {"rack-2"}


def test_idle_self_checkins_are_checked_out_but_not_staffs() -> None:
    logic = SelfCheckin(T, idle_checkout_s=60)
    request(logic, "alice", "start", "rack-1", now=0.0)
    staff = {"v": 1, "member": "carol", "ts": 1_700_000_000_000}
    logic.on_message(T.node("rack-2", "session"), json.dumps(staff).encode(), 0.0)
    logic.on_message(T.node("rack-1", "reps"), b"{}", 50.0)  # a rep keeps the check-in
    assert logic.tick(100.0) == []
    out = by_topic(logic.tick(111.0))
    assert out == {T.node("rack-1", "session"): None, T.member("alice", "session"): {"v": 1, "error": ""}}
    assert set(logic.sessions) == {"rack-2"}


def test_a_restarted_service_still_checks_out_idle_self_checkins() -> None:
    first = SelfCheckin(T, idle_checkout_s=60)
    published = request(first, "alice", "start", "rack-1", now=0.0)
    retained = next(p.payload for p in published if p.topic == T.node("rack-1", "session"))
    staff = json.dumps({"v": 1, "member": "carol", "ts": 1_700_000_000_000, "checked_in_by": "staff"}).encode()
    # The new process knows only the retained sessions, read when it starts (its clock starts anew too).
    second = SelfCheckin(T, idle_checkout_s=60)
    assert second.on_message(T.node("rack-1", "session"), retained, 1000.0) != []  # mirrored to alice again
    second.on_message(T.node("rack-2", "session"), staff, 1000.0)
    # The idle time counts from the restart: alice's last rep before it is unknown to the new process.
    assert second.tick(1059.0) == []
    out = by_topic(second.tick(1060.0))
    assert out == {T.node("rack-1", "session"): None, T.member("alice", "session"): {"v": 1, "error": ""}}
    assert second.tick(5000.0) == [] and set(second.sessions) == {"rack-2"}


def test_staff_checkins_are_mirrored_and_garbage_is_answered() -> None:
    logic = SelfCheckin(T)
    staff = {"v": 1, "member": "carol", "exercise": "curl"}
    out = by_topic(logic.on_message(T.node("rack-2", "session"), json.dumps(staff).encode(), 0.0))
    assert out == {T.member("carol", "session"): {"v": 1, "node": "rack-2", "exercise": "curl", "error": ""}}
    out = by_topic(logic.on_message(T.member("carol", "checkin"), b"{nonsense", 0.0))
    assert "not understood" in str(out[T.member("carol", "session")])
    assert logic.on_message("other/main/members/carol/checkin", b"{}", 0.0) == []
    assert logic.on_message(T.root + "/members/+/checkin", b"{}", 0.0) == []


def test_a_session_the_broker_refuses_is_undone() -> None:
    logic = SelfCheckin(T)
    out = request(logic, "alice", "start", "ghost")
    session = next(p for p in out if p.topic == T.node("ghost", "session"))
    answer = by_topic(logic.refused(session.topic, session.payload))[T.member("alice", "session")]
    assert answer is not None and "not a registered station" in str(answer["error"]) and "node" not in answer
    assert logic.sessions == {}
    assert logic.refused(session.topic, session.payload) == []  # already undone
