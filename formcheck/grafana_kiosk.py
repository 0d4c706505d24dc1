"""``formcheck deploy grafana-kiosk``: the wall display's Grafana organisation, read-only and without a login.

The kiosk TV stands in the gym: whoever presses Esc there must not reach the staff dashboards (Member history,
Fleet health) or any admin right. Grafana's anonymous access puts visitors into one organisation with one role,
so the display gets an organisation of its own ("Gym floor") holding the gym-floor dashboard and its read-only
data source and nothing else, and anonymous visitors are Viewers there (docker-compose.yml sets
``GF_AUTH_ANONYMOUS_*``). The staff dashboards stay in the main organisation, which anonymous visitors never
enter.

Grafana's file provisioning cannot create organisations (it refuses an ``orgId`` that does not exist), so this
command does it through Grafana's HTTP API as the admin, idempotently, at every ``docker compose up``: create
the organisation if missing, put the data source and the dashboard in it (the same files the main organisation
is provisioned from), make the dashboard its home, and delete every other dashboard, folder, data source and
user found there.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

KIOSK_ROLE: Final = "Viewer"
"""The only role anonymous visitors get (docker-compose.yml's GF_AUTH_ANONYMOUS_ORG_ROLE)."""

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class GrafanaError(RuntimeError):
    """Grafana refused a request or could not be reached; the message is one line."""


def expand_env(value: Any, environ: Mapping[str, str]) -> Any:
    """``value`` with every ``${VAR}`` in its strings replaced from ``environ``, as Grafana's provisioning does."""
    if isinstance(value, str):
        return _ENV_REFERENCE.sub(lambda match: environ.get(match.group(1), ""), value)
    if isinstance(value, dict):
        return {key: expand_env(item, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [expand_env(item, environ) for item in value]
    return value


def kiosk_datasource(provisioning_yaml: str, environ: Mapping[str, str], password: str) -> dict[str, Any]:
    """The API payload of the provisioned data source (the first in the file), for another organisation."""
    sources = yaml.safe_load(provisioning_yaml).get("datasources") or []
    if not sources:
        raise GrafanaError("the data source provisioning file lists no data source")
    source = expand_env(dict(sources[0]), environ)
    source.pop("orgId", None)
    source.pop("editable", None)
    source["secureJsonData"] = {**source.get("secureJsonData", {}), "password": password}
    return dict(source)


def dashboard_datasource_uids(dashboard: Mapping[str, Any]) -> set[str]:
    """Every data source uid a dashboard's panels, targets and variables refer to."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            source = node.get("datasource")
            if isinstance(source, dict) and isinstance(source.get("uid"), str):
                found.add(source["uid"])
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dict(dashboard))
    return found


def dashboard_link_targets(dashboard: Mapping[str, Any]) -> set[str]:
    """Every URL and dashboard uid a dashboard links to (dashboard links, panel links, data links)."""
    targets: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("url", "dashUid"):
                if isinstance(node.get(key), str) and node[key]:
                    targets.add(node[key])
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({"links": dashboard.get("links", []), "panels": dashboard.get("panels", [])})
    return targets


@dataclass(frozen=True)
class OrgContents:
    """What one organisation holds, as Grafana's API lists it."""

    dashboard_uids: Sequence[str]
    folder_uids: Sequence[str]
    datasource_uids: Sequence[str]
    user_logins: Sequence[str]


@dataclass(frozen=True)
class Removals:
    """What does not belong in the kiosk organisation."""

    dashboard_uids: tuple[str, ...]
    folder_uids: tuple[str, ...]
    datasource_uids: tuple[str, ...]
    user_logins: tuple[str, ...]

    def count(self) -> int:
        return len(self.dashboard_uids) + len(self.folder_uids) + len(self.datasource_uids) + len(self.user_logins)


def removals(contents: OrgContents, dashboard_uid: str, datasource_uid: str, admin_login: str) -> Removals:
    """Everything in the organisation but the kiosk's dashboard, its data source and the admin who manages it."""
    return Removals(
        dashboard_uids=tuple(uid for uid in contents.dashboard_uids if uid != dashboard_uid),
        folder_uids=tuple(contents.folder_uids),
        datasource_uids=tuple(uid for uid in contents.datasource_uids if uid != datasource_uid),
        user_logins=tuple(login for login in contents.user_logins if login != admin_login),
    )


class GrafanaApi:
    """Grafana's HTTP API with basic auth; ``org_id`` selects the organisation a request acts in."""

    def __init__(self, url: str, user: str, password: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.user = user
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self._timeout_s = timeout_s

    def call(self, method: str, path: str, body: Any = None, org_id: int | None = None,
             ok_statuses: Sequence[int] = ()) -> Any:
        headers = {"Authorization": self._auth, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if org_id is not None:
            headers["X-Grafana-Org-Id"] = str(org_id)
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            if exc.code in ok_statuses:
                return None
            detail = exc.read().decode(errors="replace")[:200].replace("\n", " ")
            raise GrafanaError(f"Grafana answered {exc.code} to {method} {path}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise GrafanaError(f"cannot reach Grafana at {self.url}: {reason}") from exc
        return json.loads(text) if text else None

    def wait_ready(self, timeout_s: float) -> None:
        """Return once Grafana answers its health check; GrafanaError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.call("GET", "/api/health")
                return
            except GrafanaError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(1.0)


@dataclass
class KioskReport:
    """What the setup found and did, for the one line the command prints."""

    org_id: int
    created_org: bool
    removed: Removals
    extra: list[str] = field(default_factory=list)

    def summary(self, org_name: str) -> str:
        made = "created" if self.created_org else "found"
        return (f"kiosk organisation {org_name!r} (id {self.org_id}) {made}; gym-floor dashboard and data source "
                f"in place, home dashboard set; removed {self.removed.count()} other item(s)")


def _org_id(api: GrafanaApi, org_name: str) -> tuple[int, bool]:
    found = api.call("GET", "/api/orgs/name/" + urllib.parse.quote(org_name, safe=""), ok_statuses=(404,))
    if found is not None:
        return int(found["id"]), False
    created = api.call("POST", "/api/orgs", {"name": org_name})
    return int(created["orgId"]), True


def _contents(api: GrafanaApi, org_id: int) -> OrgContents:
    dashboards = api.call("GET", "/api/search?type=dash-db&limit=5000", org_id=org_id) or []
    folders = api.call("GET", "/api/folders?limit=1000", org_id=org_id) or []
    sources = api.call("GET", "/api/datasources", org_id=org_id) or []
    users = api.call("GET", f"/api/orgs/{org_id}/users") or []
    return OrgContents(
        dashboard_uids=[item["uid"] for item in dashboards],
        folder_uids=[item["uid"] for item in folders],
        datasource_uids=[item["uid"] for item in sources],
        user_logins=[item["login"] for item in users],
    )


def set_up_kiosk(api: GrafanaApi, org_name: str, dashboard: Mapping[str, Any],
                 datasource: Mapping[str, Any]) -> KioskReport:
    """Make ``org_name`` hold exactly ``dashboard`` (its home) and ``datasource``; see the module docstring."""
    org_id, created = _org_id(api, org_name)
    # The admin may have been removed from the organisation by hand; 409 = already a member.
    api.call("POST", f"/api/orgs/{org_id}/users", {"loginOrEmail": api.user, "role": "Admin"},
             ok_statuses=(409,))
    dashboard_uid = str(dashboard["uid"])
    datasource_uid = str(datasource["uid"])
    extra = removals(_contents(api, org_id), dashboard_uid, datasource_uid, api.user)
    for uid in extra.folder_uids:
        api.call("DELETE", f"/api/folders/{uid}", org_id=org_id, ok_statuses=(404,))
    for uid in extra.dashboard_uids:
        api.call("DELETE", f"/api/dashboards/uid/{uid}", org_id=org_id, ok_statuses=(404,))
    for uid in extra.datasource_uids:
        api.call("DELETE", f"/api/datasources/uid/{uid}", org_id=org_id, ok_statuses=(404,))
    for login in extra.user_logins:
        user = api.call("GET", "/api/users/lookup?loginOrEmail=" + urllib.parse.quote(login))
        api.call("DELETE", f"/api/orgs/{org_id}/users/{user['id']}", ok_statuses=(404,))
    existing = api.call("GET", f"/api/datasources/uid/{datasource_uid}", org_id=org_id, ok_statuses=(404,))
    if existing is None:
        api.call("POST", "/api/datasources", dict(datasource), org_id=org_id)
    else:
        api.call("PUT", f"/api/datasources/uid/{datasource_uid}", {**datasource, "id": existing["id"]},
                 org_id=org_id)
    api.call("POST", "/api/dashboards/db", {"dashboard": {**dashboard, "id": None}, "overwrite": True,
                                            "message": "formcheck deploy grafana-kiosk"}, org_id=org_id)
    api.call("PUT", "/api/org/preferences", {"homeDashboardUID": dashboard_uid}, org_id=org_id)
    left = removals(_contents(api, org_id), dashboard_uid, datasource_uid, api.user)
    if left.count():
        raise GrafanaError(f"the kiosk organisation still holds other items after cleaning: {left}")
    return KioskReport(org_id=org_id, created_org=created, removed=extra)
