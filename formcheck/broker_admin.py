"""Accounts of the production Mosquitto: role registry, password file and the ACL generated from them.

``formcheck broker users add|remove|list --dir DIR`` keeps three files in ``DIR``:

* ``users.yaml``: the registry, ``name: role`` for every account plus the topic prefix. It holds no secret.
* ``passwd``: Mosquitto's password file, written only by ``mosquitto_passwd`` (PBKDF2-SHA512 hashes). The
  password reaches ``mosquitto_passwd`` on its standard input, never on a command line or in our output.
* ``acl``: generated from ``users.yaml`` by :func:`render_acl` on every change; never edited by hand.

Node and member rights are ``pattern`` lines with ``%u`` (the connecting user's name), and Mosquitto applies
patterns to *every* user. Account names are therefore one namespace across roles (a name is refused when it
exists in any role), and each account that is not a node gets ``topic deny`` on the node topics named after
it, so a member's phone or a kiosk cannot pose as a station. Mosquitto rereads both files on SIGHUP.

:func:`render_config` substitutes ports and paths in the shipped ``mosquitto/mosquitto.conf`` so tests run the
production file itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import pwd
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, cast, get_args

import yaml

from formcheck_protocol.topics import DEFAULT_PREFIX, REGISTRY, Scope, TopicError, level

DEFAULT_SITE: Final = "main"

Role = Literal["node", "aggregator", "staff", "display", "member", "operator", "checkin"]
ROLES: Final[tuple[Role, ...]] = cast(tuple[Role, ...], get_args(Role))

REGISTRY_FILE: Final = "users.yaml"
PASSWORD_FILE: Final = "passwd"
ACL_FILE: Final = "acl"
LOCK_FILE: Final = ".users.lock"

# Mosquitto wants its password and ACL files unreadable by others (later 2.0 releases warn otherwise).
PASSWORD_MODE: Final = 0o600
ACL_MODE: Final = 0o640
REGISTRY_MODE: Final = 0o640
SECRET_MODE: Final = 0o600
DIR_MODE: Final = 0o750

BROKER_USER: Final = "mosquitto"
MIN_PASSWORD: Final = 8
MAX_PASSWORD: Final = 256

# Topics below ``{prefix}/{site}/`` (the registry's one site). Node and member rows use the account name via ``%u``.
NODE_PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    ("write", "nodes/%u/frames"),
    ("write", "nodes/%u/status"),
    ("write", "nodes/%u/stats"),
    ("read", "nodes/%u/session"),
)
MEMBER_PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    ("read", "members/%u/notifications"),
    ("read", "members/%u/reps"),
    ("read", "members/%u/history"),
    ("write", "members/%u/checkin"),
    ("read", "members/%u/session"),
    ("readwrite", "members/%u/profile"),
)
SCREEN_READS: Final[tuple[tuple[str, str], ...]] = (
    ("read", "members/+/profile"),
    ("read", "nodes/+/session"),
    ("read", "nodes/+/reps"),
    ("read", "nodes/+/sets"),
    ("read", "nodes/+/status"),
    ("read", "aggregator/status"),
)
"""What a wall or station screen shows: who is checked in, reps, sets, availability."""
ROLE_TOPICS: Final[dict[Role, tuple[tuple[str, str], ...]]] = {
    "node": (),
    "member": (),
    "aggregator": (
        ("read", "nodes/+/frames"),
        ("read", "nodes/+/status"),
        ("read", "nodes/+/stats"),
        ("read", "nodes/+/session"),
        ("write", "nodes/+/reps"),
        ("write", "nodes/+/sets"),
        ("write", "members/+/notifications"),
        ("write", "members/+/reps"),
        ("write", "members/+/history"),
        ("readwrite", "aggregator/status"),
    ),
    # Staff read what a screen shows and write the registered stations' sessions (lines per node, see
    # render_acl): a retained session per station, never one under an invented station name.
    "staff": (*SCREEN_READS, ("write", "members/+/profile")),
    "display": SCREEN_READS,
    # `formcheck member erase`: refuse while the member is checked in (reads the retained sessions), then clear the
    # member's retained topics with an empty message. Not the aggregator's account: one connection per
    # account, a second one would take over the running aggregator's session.
    # Every retained member topic of the registry (the last set summary, and any added later).
    # `formcheck checkin-service`: turns a member's own start / stop (members/{member}/checkin, which only that
    # member may write) into the station's session; idle stations are checked out (it watches the reps).
    "checkin": (
        ("read", "nodes/+/session"),
        ("read", "nodes/+/reps"),
        ("read", "members/+/checkin"),
        ("write", "members/+/session"),
    ),
    "operator": (
        ("read", "nodes/+/session"),
        *(("write", f"members/+/{spec.kind}") for spec in REGISTRY.values()
          if spec.scope is Scope.MEMBER and spec.retain),
    ),
}
PER_NODE_TOPICS: Final[dict[Role, tuple[tuple[str, str], ...]]] = {
    "staff": (("readwrite", "session"),),
    "checkin": (("readwrite", "session"),),
}
"""Rights a role has on each registered station's topics, written out per node name."""
ROLE_TITLES: Final[dict[Role, str]] = {
    "aggregator": "Aggregators: read every station's frames, status, stats and session;\n"
                  "# write reps, sets, member notifications, live reps and history, and their own availability.",
    "staff": "Staff and check-in kiosks: write and read the registered stations' sessions;\n"
             "# read reps, sets, availability and display names; set display names.",
    "display": "Wall and station screens: read sessions, reps, sets, availability and display names; write\n"
               "# nothing.",
    "member": "Members: their rights come from the patterns above (their own topics only).",
    "node": "Edge nodes: their rights come from the patterns above.",
    "checkin": "Self check-in service (`formcheck checkin-service`): members' start / stop requests become\n"
               "# the registered stations' sessions; reads reps to check idle stations out.",
    "operator": "Operators (`formcheck member erase`): read the stations' sessions (is the member checked\n"
                "# in?); write members' retained topics (clear an erased member's).",
}


class BrokerAdminError(RuntimeError):
    """An account operation was refused or failed; the message is one line for the operator."""


# --- pure parts ------------------------------------------------------------------------------------------------


def account_name(name: str) -> str:
    """A valid account name: it doubles as a topic level (node or member id) in the ACL patterns."""
    try:
        return level(name, "account name")
    except TopicError as exc:
        raise BrokerAdminError(str(exc)) from exc


def topic_prefix(prefix: str) -> str:
    try:
        for part in prefix.split("/"):
            level(part, "topic prefix level")
    except TopicError as exc:
        raise BrokerAdminError(str(exc)) from exc
    return prefix


def site_name(site: str) -> str:
    try:
        return level(site, "site")
    except TopicError as exc:
        raise BrokerAdminError(str(exc)) from exc


def role_of(value: str) -> Role:
    if value not in ROLES:
        raise BrokerAdminError(f"unknown role {value!r}: use one of {', '.join(ROLES)}")
    return value


def render_acl(users: Mapping[str, str], prefix: str = DEFAULT_PREFIX, site: str = DEFAULT_SITE) -> str:
    """The Mosquitto ACL file for ``users`` (name → role) at ``site``. Pure; deterministic (accounts sorted).

    Every right is under ``{prefix}/{site}/``: an account can touch no other site's topics (a node publishing
    retained messages under invented sites was stored and delivered when rights were on ``{prefix}/+/``).
    """
    topic_prefix(prefix)
    site = site_name(site)
    accounts = {account_name(name): role_of(role) for name, role in users.items()}
    root = f"{prefix}/{site}"
    nodes = sorted(name for name, r in accounts.items() if r == "node")
    lines = [
        f"# Generated by `formcheck broker users` from {REGISTRY_FILE}: do not edit, changes are overwritten.",
        "# Mosquitto reads this file at start and on SIGHUP (systemctl reload mosquitto).",
        "#",
        "# `pattern` lines apply to EVERY authenticated user, %u being that user's name. Account names are",
        "# one namespace across roles, and every account that is not a node is denied the node topics named",
        "# after it, so no phone or kiosk can pose as a station; every account that is not a member is denied",
        "# the member topics named after it, so no station or screen can check itself in as a member.",
        "",
        "# Edge nodes: publish their own frames, status (also their Last Will) and stats;",
        "# read their own session.",
        *(f"pattern {access} {root}/{topic}" for access, topic in NODE_PATTERNS),
        "",
        "# Members: read their own notifications, live reps, set history and check-in state; ask for their",
        "# own check-in (the member page).",
        *(f"pattern {access} {root}/{topic}" for access, topic in MEMBER_PATTERNS),
    ]
    blocks: tuple[Role, ...] = ("aggregator", "staff", "checkin", "display", "operator", "member")
    for role in blocks:
        names = sorted(name for name, r in accounts.items() if r == role)
        if not names:
            continue
        lines += ["", f"# {ROLE_TITLES[role]}"]
        for name in names:
            lines += [f"user {name}", f"topic deny {root}/nodes/{name}/#"]
            if role != "member":
                lines.append(f"topic deny {root}/members/{name}/#")
            lines += [f"topic {access} {root}/{topic}" for access, topic in ROLE_TOPICS[role]]
            lines += [f"topic {access} {root}/nodes/{node}/{topic}"
                      for node in nodes for access, topic in PER_NODE_TOPICS.get(role, ())]
    lines += ["", f"# Edge node accounts: their rights come from the patterns above{'' if nodes else ' (none yet)'}."]
    for name in nodes:
        lines += [f"user {name}", f"topic deny {root}/members/{name}/#"]
    lines.append("")
    return "\n".join(lines)


_PATH_OPTIONS: Final = frozenset({
    "password_file", "acl_file", "psk_file", "persistence_location", "pid_file",
    "cafile", "capath", "certfile", "keyfile", "crlfile", "dhparamfile", "http_dir",
})


def render_config(
    text: str,
    *,
    ports: Mapping[int, int],
    paths: Mapping[str, Path | str],
    bind: str | None = None,
    user: str | None = None,
) -> str:
    """``text`` (a mosquitto.conf) with listener ports, file paths and ``user`` substituted; nothing else changes.

    ``ports`` maps every listener port in the file to its replacement (a listener without one is an error,
    so a rendered file never opens a production port); ``bind`` replaces every listener's address;
    ``paths`` maps directory prefixes (ending in ``/``) to directories, and every absolute path in a file
    option must match one of them.
    """
    prefixes = sorted(paths.items(), key=lambda item: -len(item[0]))
    for prefix, _ in prefixes:
        if not prefix.endswith("/"):
            raise ValueError(f"path prefix {prefix!r} must end with '/'")

    def mapped(path: str) -> str:
        for prefix, target in prefixes:
            if path.startswith(prefix):
                return f"{str(target).rstrip('/')}/{path[len(prefix):]}"
        raise ValueError(f"no substitute for path {path!r}")

    seen: set[int] = set()
    out: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            out.append(line)
            continue
        key, _, rest = stripped.partition(" ")
        value = rest.strip()
        if key == "listener":
            parts = value.split()
            port = int(parts[0])
            if port not in ports:
                raise ValueError(f"listener {port} has no substitute port")
            seen.add(port)
            address = bind if bind is not None else (parts[1] if len(parts) > 1 else None)
            out.append(f"listener {ports[port]}" + (f" {address}" if address else ""))
        elif key in _PATH_OPTIONS:
            out.append(f"{key} {mapped(value)}")
        elif key == "log_dest" and value.split()[0] == "file":
            out.append(f"log_dest file {mapped(value.split(None, 1)[1])}")
        elif key == "user" and user is not None:
            out.append(f"user {user}")
        elif key == "include_dir":
            raise ValueError("include_dir would read files outside the rendered configuration")
        else:
            out.append(line)
    unused = sorted(set(ports) - seen)
    if unused:
        raise ValueError(f"no listener on port(s) {unused} in the configuration")
    return "\n".join(out) + "\n"


def check_password(password: str) -> str:
    """Refuse passwords Mosquitto's tools or our clients would mangle (they strip the line they read)."""
    if any(c in password for c in "\r\n\0"):
        raise BrokerAdminError("the password must be one line")
    if password != password.strip():
        raise BrokerAdminError("the password must not start or end with white space")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BrokerAdminError(f"the password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def generate_password() -> str:
    """32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


# --- registry and files ----------------------------------------------------------------------------------------


@dataclass
class Registry:
    """``users.yaml``: every account's role and the topic prefix and site the ACL is written for."""

    prefix: str = DEFAULT_PREFIX
    site: str = DEFAULT_SITE
    users: dict[str, Role] = field(default_factory=dict)

    def to_yaml(self) -> str:
        body = yaml.safe_dump(
            {"version": 1, "prefix": self.prefix, "site": self.site, "users": dict(sorted(self.users.items()))},
            sort_keys=False, default_flow_style=False,
        )
        return (f"# formcheck broker accounts (name: role). Managed by `formcheck broker users`; the ACL file\n"
                f"# is generated from this. Passwords are only in {PASSWORD_FILE}, hashed.\n{body}")


def load_registry(directory: Path) -> Registry:
    path = directory / REGISTRY_FILE
    if not path.exists():
        return Registry()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise BrokerAdminError(f"cannot read {path}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("users") or {}, dict):
        raise BrokerAdminError(f"{path}: expected a mapping with 'prefix' and 'users' (name: role)")
    users_raw = cast(dict[object, object], data.get("users") or {})
    users: dict[str, Role] = {}
    for name, role in users_raw.items():
        try:
            users[account_name(str(name))] = role_of(str(role))
        except BrokerAdminError as exc:
            raise BrokerAdminError(f"{path}: {exc}") from exc
    try:
        prefix = topic_prefix(str(data.get("prefix", DEFAULT_PREFIX)))
        site = site_name(str(data.get("site", DEFAULT_SITE)))
    except BrokerAdminError as exc:
        raise BrokerAdminError(f"{path}: {exc}") from exc
    return Registry(prefix=prefix, site=site, users=users)


def password_file_users(path: Path) -> set[str]:
    """Names present in a Mosquitto password file."""
    if not path.exists():
        return set()
    return {line.split(":", 1)[0] for line in path.read_text().splitlines() if line.strip()}


def read_password_file(path: Path) -> str:
    """The first line of ``path`` (the same rule formcheck's clients use for ``mqtt.password_file``)."""
    try:
        first = path.read_text().splitlines()[0]
    except (OSError, IndexError) as exc:
        raise BrokerAdminError(f"cannot read a password from {path}") from exc
    return check_password(first)


def prompt_password() -> str:
    """From a terminal: asked twice without echo. Otherwise the first line of standard input."""
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != first:
            raise BrokerAdminError("the passwords do not match")
        return check_password(first)
    line = sys.stdin.readline()
    if not line:
        raise BrokerAdminError("no password on standard input (or use --password-file / --generate-password-to)")
    return check_password(line.rstrip("\r\n"))


def write_new_secret(path: Path, secret: str) -> None:
    """Create ``path`` (mode 0600, refusing to overwrite) holding ``secret`` and a newline."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE)
    except FileExistsError as exc:
        raise BrokerAdminError(f"{path} exists: choose a new file for the generated password") from exc
    except OSError as exc:
        raise BrokerAdminError(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")


def _owner_ids(owner: str | None) -> tuple[int, int] | None:
    """uid/gid for the broker's files: ``owner`` (a user name or ``UID[:GID]``), else the broker's user when we
    run as root, else None (leave them to whoever runs the tool)."""
    if owner is None:
        if os.geteuid() != 0:
            return None
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(BROKER_USER)
            return entry.pw_uid, entry.pw_gid
        return None
    uid, _, gid = owner.partition(":")
    if uid.isdigit() and (gid.isdigit() or not gid):
        # Numeric: e.g. 1883:1883, the mosquitto user of the eclipse-mosquitto container image.
        return int(uid), int(gid or uid)
    try:
        entry = pwd.getpwnam(owner)
    except KeyError as exc:
        raise BrokerAdminError(f"no such user {owner!r} to own the broker files (a name or UID[:GID])") from exc
    return entry.pw_uid, entry.pw_gid


def _install(tmp: Path, dest: Path, mode: int, owner: tuple[int, int] | None) -> None:
    os.chmod(tmp, mode)
    if owner is not None:
        try:
            os.chown(tmp, *owner)
        except PermissionError as exc:
            raise BrokerAdminError(f"cannot give {dest} to uid {owner[0]}: run as root or omit --owner") from exc
    os.replace(tmp, dest)


def _write_atomic(dest: Path, text: str, mode: int, owner: tuple[int, int] | None) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        _install(tmp, dest, mode, owner)
    finally:
        tmp.unlink(missing_ok=True)


def _find_mosquitto_passwd() -> str:
    from formcheck.local_services import ServiceError, find_binary

    try:
        return find_binary("mosquitto_passwd")
    except ServiceError as exc:
        raise BrokerAdminError(f"{exc} (Debian package 'mosquitto')") from exc


def _update_password_file(directory: Path, args: list[str], stdin: str, owner: tuple[int, int] | None) -> None:
    """Run ``mosquitto_passwd`` on a copy of the password file, then put the copy in place."""
    dest = directory / PASSWORD_FILE
    fd, name = tempfile.mkstemp(prefix=f".{PASSWORD_FILE}.", dir=directory)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            if dest.exists():
                out.write(dest.read_bytes())
        os.chmod(tmp, PASSWORD_MODE)
        result = subprocess.run(
            [_find_mosquitto_passwd(), *args[:-1], str(tmp), args[-1]],
            input=stdin.encode(), capture_output=True, timeout=30, check=False,
        )
        if result.returncode != 0:
            detail = " ".join(
                line for line in result.stderr.decode(errors="replace").splitlines() if "assword:" not in line
            ).strip()
            raise BrokerAdminError(f"mosquitto_passwd failed (status {result.returncode}): {detail or 'no output'}")
        _install(tmp, dest, PASSWORD_MODE, owner)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(directory: Path, owner: tuple[int, int] | None) -> Iterator[None]:
    """Serialise tool runs on one directory (the three files change together); create it if needed."""
    try:
        if not directory.exists():
            directory.mkdir(mode=DIR_MODE, parents=True)
            if owner is not None:
                # The broker only needs to traverse it: root keeps the directory, the broker's group enters.
                os.chown(directory, -1, owner[1])
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise BrokerAdminError(f"cannot use {directory}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _save(directory: Path, registry: Registry, owner: tuple[int, int] | None) -> None:
    _write_atomic(directory / REGISTRY_FILE, registry.to_yaml(), REGISTRY_MODE, owner)
    _write_atomic(directory / ACL_FILE, render_acl(registry.users, registry.prefix, registry.site), ACL_MODE, owner)


def check_new_account(directory: Path, name: str, role: str) -> None:
    """Raise unless ``name`` is a valid account name free in every role and ``role`` is known."""
    name = account_name(name)
    role_of(role)
    registry = load_registry(directory)
    if name in registry.users:
        raise BrokerAdminError(
            f"account {name!r} already exists as {registry.users[name]}: names are shared by all roles "
            f"(the ACL patterns use them as node and member ids); remove it first to change it"
        )
    if name in password_file_users(directory / PASSWORD_FILE):
        raise BrokerAdminError(
            f"account {name!r} is in {directory / PASSWORD_FILE} but not in {REGISTRY_FILE}: remove it first"
        )


def add_user(directory: Path, name: str, role: str, password: str, owner: str | None = None,
             site: str | None = None) -> None:
    """Create account ``name`` with ``role``; refused when the name exists in any role (or in the password file).

    ``site`` is set with the first account; an existing registry for another site refuses it.
    """
    name = account_name(name)
    checked_role = role_of(role)
    check_password(password)
    ids = _owner_ids(owner)
    with _locked(directory, ids):
        check_new_account(directory, name, checked_role)
        registry = load_registry(directory)
        if site is not None:
            site = site_name(site)
            if registry.users and site != registry.site:
                raise BrokerAdminError(f"the accounts in {directory} are for site {registry.site!r}, not {site!r}: "
                                       "one broker account directory per site")
            registry.site = site
        _update_password_file(directory, [name], f"{password}\n{password}\n", ids)
        registry.users[name] = checked_role
        _save(directory, registry, ids)


def remove_user(directory: Path, name: str, owner: str | None = None) -> str:
    """Delete account ``name`` from the password file and the registry; returns its former role."""
    name = account_name(name)
    ids = _owner_ids(owner)
    with _locked(directory, ids):
        registry = load_registry(directory)
        in_passwd = name in password_file_users(directory / PASSWORD_FILE)
        if name not in registry.users and not in_passwd:
            raise BrokerAdminError(f"no account {name!r} in {directory}")
        if in_passwd:
            _update_password_file(directory, ["-D", name], "", ids)
        role = registry.users.pop(name, "unmanaged")
        _save(directory, registry, ids)
        return role


@dataclass(frozen=True)
class Account:
    name: str
    role: str  # a Role, or "unmanaged" for a password-file entry missing from the registry
    has_password: bool


def list_users(directory: Path) -> list[Account]:
    """Every account, by role then name: registry entries and stray password-file entries."""
    if not directory.is_dir():
        raise BrokerAdminError(f"{directory} is not a directory")
    registry = load_registry(directory)
    in_passwd = password_file_users(directory / PASSWORD_FILE)
    accounts = [Account(name, role, name in in_passwd) for name, role in registry.users.items()]
    accounts += [Account(name, "unmanaged", True) for name in in_passwd - set(registry.users)]
    order = {role: index for index, role in enumerate((*ROLES, "unmanaged"))}
    return sorted(accounts, key=lambda a: (order[a.role], a.name))
