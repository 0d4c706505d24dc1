"""ACL and config rendering (pure), and `formcheck broker users` against a temporary directory."""

from __future__ import annotations

import io
import os
import pwd
import stat
from pathlib import Path

import pytest

from formcheck.broker_admin import (
    BrokerAdminError,
    check_password,
    list_users,
    load_registry,
    render_acl,
    render_config,
)
from formcheck.cli import main as cli_main
from formcheck_protocol.topics import REGISTRY, Scope
from formcheck_runtime.paths import REPO_ROOT

CONF = REPO_ROOT / "mosquitto" / "mosquitto.conf"
ME = pwd.getpwuid(os.geteuid()).pw_name


def acl_rules(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


# --- render_acl --------------------------------------------------------------------------------------------------


# The operator clears every retained member topic of the registry (the last set summary, ...).
RETAINED_MEMBER_WRITES = [f"topic write gym/main/members/+/{spec.kind}" for spec in REGISTRY.values()
                          if spec.scope is Scope.MEMBER and spec.retain]


def test_acl_for_every_role() -> None:
    acl = render_acl({"st-2": "node", "st-1": "node", "agg": "aggregator", "desk": "staff", "zoe": "member",
                      "al": "member", "wall": "display", "ops": "operator"})
    assert acl_rules(acl) == [
        "pattern write gym/main/nodes/%u/frames",
        "pattern write gym/main/nodes/%u/status",
        "pattern write gym/main/nodes/%u/stats",
        "pattern read gym/main/nodes/%u/session",
        "pattern read gym/main/members/%u/notifications",
        "pattern read gym/main/members/%u/reps",
        "pattern read gym/main/members/%u/history",
        "pattern write gym/main/members/%u/checkin",
        "pattern read gym/main/members/%u/session",
        "pattern readwrite gym/main/members/%u/profile",
        "user agg",
        "topic deny gym/main/nodes/agg/#",
        "topic deny gym/main/members/agg/#",
        "topic read gym/main/nodes/+/frames",
        "topic read gym/main/nodes/+/status",
        "topic read gym/main/nodes/+/stats",
        "topic read gym/main/nodes/+/session",
        "topic write gym/main/nodes/+/reps",
        "topic write gym/main/nodes/+/sets",
        "topic write gym/main/members/+/notifications",
        "topic write gym/main/members/+/reps",
        "topic write gym/main/members/+/history",
        "topic readwrite gym/main/aggregator/status",
        "user desk",
        "topic deny gym/main/nodes/desk/#",
        "topic deny gym/main/members/desk/#",
        "topic read gym/main/members/+/profile",
        "topic read gym/main/nodes/+/session",
        "topic read gym/main/nodes/+/reps",
        "topic read gym/main/nodes/+/sets",
        "topic read gym/main/nodes/+/status",
        "topic read gym/main/aggregator/status",
        "topic write gym/main/members/+/profile",
        "topic readwrite gym/main/nodes/st-1/session",
        "topic readwrite gym/main/nodes/st-2/session",
        "user wall",
        "topic deny gym/main/nodes/wall/#",
        "topic deny gym/main/members/wall/#",
        "topic read gym/main/members/+/profile",
        "topic read gym/main/nodes/+/session",
        "topic read gym/main/nodes/+/reps",
        "topic read gym/main/nodes/+/sets",
        "topic read gym/main/nodes/+/status",
        "topic read gym/main/aggregator/status",
        "user ops",
        "topic deny gym/main/nodes/ops/#",
        "topic deny gym/main/members/ops/#",
        "topic read gym/main/nodes/+/session",
        *RETAINED_MEMBER_WRITES,
        "user al",
        "topic deny gym/main/nodes/al/#",
        "user zoe",
        "topic deny gym/main/nodes/zoe/#",
        "user st-1",
        "topic deny gym/main/members/st-1/#",
        "user st-2",
        "topic deny gym/main/members/st-2/#",
    ]
    # No right anywhere but the registry's site, and no write at all for a display.
    assert all("gym/main/" in rule for rule in acl_rules(acl) if not rule.startswith("user "))
    wall = acl_rules(acl)[acl_rules(acl).index("user wall") + 1:acl_rules(acl).index("user ops")]
    assert not any(rule.startswith(("topic write", "topic readwrite")) for rule in wall)
    # The operator (member erase) writes members' notifications only: no session, no station, no reps.
    ops = acl_rules(acl)[acl_rules(acl).index("user ops") + 1:acl_rules(acl).index("user al")]
    assert [rule for rule in ops if rule.startswith(("topic write", "topic readwrite"))] == RETAINED_MEMBER_WRITES
    assert "topic write gym/main/members/+/notifications" in RETAINED_MEMBER_WRITES
    assert "# Edge node accounts: their rights come from the patterns above." in acl
    # Mosquitto only knows whole-line comments: every line is a comment, blank, or one rule.
    for line in acl.splitlines():
        assert not line or line.startswith("#") or line.split()[0] in {"pattern", "topic", "user"}


def test_acl_without_accounts_still_has_the_patterns() -> None:
    rules = acl_rules(render_acl({}))
    assert len(rules) == 10
    assert all(rule.startswith("pattern ") for rule in rules)


def test_acl_prefix_and_determinism() -> None:
    users = {"b": "staff", "a": "staff", "rack": "node"}
    acl = render_acl(users, prefix="acme/gym", site="north")
    assert "pattern write acme/gym/north/nodes/%u/frames" in acl
    assert "topic readwrite acme/gym/north/nodes/rack/session" in acl
    assert acl.index("user a") < acl.index("user b")
    assert render_acl(dict(reversed(users.items())), prefix="acme/gym", site="north") == acl


@pytest.mark.parametrize(
    ("users", "prefix", "message"),
    [
        ({"a/b": "node"}, "gym", "invalid account name"),
        ({"+": "member"}, "gym", "invalid account name"),
        ({"a b": "staff"}, "gym", "invalid account name"),
        ({"ok": "admin"}, "gym", "unknown role 'admin'"),
        ({"ok": "node"}, "gym/#", "invalid topic prefix level"),
        ({"ok": "node"}, "gym", "invalid site"),
    ],
)
def test_acl_refuses_what_could_break_out_of_a_topic(users: dict[str, str], prefix: str, message: str) -> None:
    with pytest.raises(BrokerAdminError, match=message):
        render_acl(users, prefix, site="+" if message == "invalid site" else "main")


# --- render_config -----------------------------------------------------------------------------------------------

PATHS = {
    "/etc/mosquitto/formcheck/": "/t/accounts",
    "/etc/mosquitto/certs/": "/t/tls",
    "/etc/mosquitto/ca_certificates/": "/t/tls",
    "/var/lib/mosquitto/": "/t/data",
    "/var/log/mosquitto/": "/t/log",
    "/usr/share/formcheck/web/": "/t/web",
}


def test_render_the_shipped_config() -> None:
    shipped = CONF.read_text()
    out = render_config(shipped, ports={1883: 1, 8883: 2, 9001: 3, 8080: 4}, paths=PATHS, bind="127.0.0.1",
                        user="me")
    assert "listener 1 127.0.0.1\n" in out
    assert "listener 2 127.0.0.1\n" in out
    assert "listener 3 127.0.0.1\n" in out
    assert "listener 4 127.0.0.1\n" in out
    assert "http_dir /t/web/\n" in out
    assert "password_file /t/accounts/passwd\n" in out
    assert "acl_file /t/accounts/acl\n" in out
    assert "persistence_location /t/data/\n" in out
    assert "log_dest stdout\n" in out
    assert "user me\n" in out
    assert "/etc/" not in "".join(line for line in out.splitlines() if not line.startswith("#"))
    changed = [(a, b) for a, b in zip(shipped.splitlines(), out.splitlines(), strict=True) if a != b]
    assert {a.split()[0] for a, _ in changed} == {
        "listener", "password_file", "acl_file", "persistence_location", "certfile", "keyfile", "cafile", "user",
        "http_dir",
    }


@pytest.mark.parametrize(
    ("text", "ports", "message"),
    [
        ("listener 1883\nlistener 8883\n", {1883: 1}, "listener 8883 has no substitute port"),
        ("listener 1883\n", {1883: 1, 9001: 3}, r"no listener on port\(s\) \[9001\]"),
        ("listener 1883\nacl_file /srv/acl\n", {1883: 1}, "no substitute for path '/srv/acl'"),
        ("listener 1883\nlog_dest file /srv/m.log\n", {1883: 1}, "no substitute for path '/srv/m.log'"),
        ("listener 1883\ninclude_dir /etc/mosquitto/conf.d\n", {1883: 1}, "include_dir"),
    ],
)
def test_render_config_leaves_nothing_of_production_behind(text: str, ports: dict[int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_config(text, ports=ports, paths=PATHS)


def test_render_config_keeps_addresses_unless_told() -> None:
    out = render_config("listener 1883 192.168.1.2\nlistener 9001\n", ports={1883: 5, 9001: 6}, paths={})
    assert out == "listener 5 192.168.1.2\nlistener 6\n"


# --- passwords ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["short", " leading-space", "trailing-space ", "two\nlines-here", "x" * 257])
def test_check_password_refuses(bad: str) -> None:
    with pytest.raises(BrokerAdminError):
        check_password(bad)


# --- the tool ----------------------------------------------------------------------------------------------------


def run(*args: str) -> int:
    return cli_main(["broker", "users", *args])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_add_list_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    accounts = tmp_path / "accounts"
    secret = tmp_path / "st-1.password"
    assert run("add", "st-1", "--role", "node", "--dir", str(accounts), "--generate-password-to", str(secret),
               "--owner", ME) == 0
    password = secret.read_text().strip()
    assert len(password) >= 32
    assert mode(secret) == 0o600
    pw_file = tmp_path / "given"
    pw_file.write_text("a-given-password\n")
    assert run("add", "desk", "--role", "staff", "--dir", str(accounts), "--password-file", str(pw_file),
               "--owner", ME) == 0
    out = capsys.readouterr().out
    assert password not in out
    assert "a-given-password" not in out

    passwd = (accounts / "passwd").read_text()
    assert password not in passwd
    assert "a-given-password" not in passwd
    assert [line.split(":")[0] for line in passwd.splitlines()] == ["st-1", "desk"]
    assert all(line.split(":")[1].startswith("$7$") for line in passwd.splitlines())  # PBKDF2-SHA512
    assert mode(accounts / "passwd") == 0o600
    assert mode(accounts / "acl") == 0o640
    assert (accounts / "acl").read_text() == render_acl({"st-1": "node", "desk": "staff"})
    assert load_registry(accounts).users == {"st-1": "node", "desk": "staff"}
    assert {(p.stat().st_uid, p.name) for p in accounts.iterdir() if not p.name.startswith(".")} == {
        (os.geteuid(), "passwd"), (os.geteuid(), "acl"), (os.geteuid(), "users.yaml"),
    }

    assert run("list", "--dir", str(accounts)) == 0
    assert capsys.readouterr().out == "st-1\tnode\ndesk\tstaff\n"

    assert run("remove", "st-1", "--dir", str(accounts), "--owner", ME) == 0
    assert "st-1" not in (accounts / "passwd").read_text()
    assert "nodes/st-1" not in (accounts / "acl").read_text()
    assert [a.name for a in list_users(accounts)] == ["desk"]


def test_names_are_one_namespace_across_roles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    accounts = tmp_path / "accounts"
    pw_file = tmp_path / "pw"
    pw_file.write_text("long-enough-password\n")
    assert run("add", "sam", "--role", "member", "--dir", str(accounts), "--password-file", str(pw_file)) == 0
    capsys.readouterr()
    secret = tmp_path / "never-written"
    for role in ("node", "member", "staff"):
        assert run("add", "sam", "--role", role, "--dir", str(accounts), "--generate-password-to", str(secret)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert err.startswith("formcheck: error: account 'sam' already exists as member")
    assert not secret.exists()
    assert load_registry(accounts).users == {"sam": "member"}


def test_refusals_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    accounts = tmp_path / "accounts"
    existing = tmp_path / "existing"
    existing.write_text("keep me\n")
    short = tmp_path / "short"
    short.write_text("abc\n")
    cases = [
        (["add", "st/1", "--role", "node", "--dir", str(accounts), "--password-file", str(short)],
         "invalid account name"),
        (["add", "st-1", "--role", "node", "--dir", str(accounts), "--password-file", str(short)],
         "the password must have 8 to 256 characters"),
        (["add", "st-1", "--role", "node", "--dir", str(accounts), "--password-file", str(tmp_path / "missing")],
         "cannot read a password from"),
        (["add", "st-1", "--role", "node", "--dir", str(accounts), "--generate-password-to", str(existing)],
         "exists: choose a new file"),
        (["remove", "ghost", "--dir", str(accounts)], "no account 'ghost'"),
        (["list", "--dir", str(tmp_path / "nowhere")], "is not a directory"),
    ]
    for args, message in cases:
        assert run(*args) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert message in err, err
    assert existing.read_text() == "keep me\n"


def test_password_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    accounts = tmp_path / "accounts"
    monkeypatch.setattr("sys.stdin", io.StringIO("from-standard-input\n"))
    assert run("add", "kiosk", "--role", "staff", "--dir", str(accounts)) == 0
    assert "from-standard-input" not in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert run("add", "kiosk2", "--role", "staff", "--dir", str(accounts)) == 2
    assert "no password on standard input" in capsys.readouterr().err


def test_default_owner_is_the_broker_user_when_run_as_root(tmp_path: Path) -> None:
    pw_file = tmp_path / "pw"
    pw_file.write_text("long-enough-password\n")
    assert run("add", "n1", "--role", "node", "--dir", str(tmp_path / "a"), "--password-file", str(pw_file)) == 0
    owner = (tmp_path / "a" / "passwd").stat().st_uid
    try:
        broker_uid = pwd.getpwnam("mosquitto").pw_uid
    except KeyError:
        broker_uid = None
    expected = broker_uid if os.geteuid() == 0 and broker_uid is not None else os.geteuid()
    assert owner == expected


def test_stray_password_file_entries_are_listed_and_block_the_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    accounts = tmp_path / "accounts"
    pw_file = tmp_path / "pw"
    pw_file.write_text("long-enough-password\n")
    assert run("add", "n1", "--role", "node", "--dir", str(accounts), "--password-file", str(pw_file),
               "--owner", ME) == 0
    with (accounts / "passwd").open("a") as out:
        out.write("legacy:$7$101$c2FsdA==$aGFzaA==\n")
    capsys.readouterr()
    assert run("list", "--dir", str(accounts)) == 0
    assert capsys.readouterr().out == "n1\tnode\nlegacy\tunmanaged\n"
    assert run("add", "legacy", "--role", "member", "--dir", str(accounts), "--password-file", str(pw_file)) == 2
    assert "is in " in (err := capsys.readouterr().err)
    assert "but not in users.yaml" in err
    assert run("remove", "legacy", "--dir", str(accounts), "--owner", ME) == 0
    assert "legacy" not in (accounts / "passwd").read_text()


def test_corrupt_registry_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "users.yaml").write_text("users:\n  st-1: superuser\n")
    assert run("list", "--dir", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unknown role 'superuser'" in err


EXAMPLE_ACCOUNTS = {"rack-1": "node", "rack-2": "node", "agg-main": "aggregator", "front-desk": "staff",
                    "wall-display": "display", "m1001": "member", "m1002": "member"}


def test_the_example_acl_in_mosquitto_dir_is_current() -> None:
    path = REPO_ROOT / "mosquitto" / "acl.example"
    assert path.read_text() == render_acl(EXAMPLE_ACCOUNTS), (
        "mosquitto/acl.example is stale: regenerate it with "
        "render_acl(tests.unit.test_broker_admin.EXAMPLE_ACCOUNTS)"
    )


def test_numeric_owner_for_a_container_user(tmp_path: Path) -> None:
    pw_file = tmp_path / "pw"
    pw_file.write_text("long-enough-password\n")
    me = f"{os.geteuid()}:{os.getegid()}"
    assert run("add", "n1", "--role", "node", "--dir", str(tmp_path / "a"), "--password-file", str(pw_file),
               "--owner", me) == 0
    assert (tmp_path / "a" / "acl").stat().st_uid == os.geteuid()
    assert run("add", "n2", "--role", "node", "--dir", str(tmp_path / "a"), "--password-file", str(pw_file),
               "--owner", "no-such-user-here") == 2
