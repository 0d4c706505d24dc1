"""docker-compose.yml, Dockerfile and .env.example agree with the repository and the app's config."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from formcheck_aggregator.config import load_config as load_aggregator_config
from formcheck_edge.config import load_config as load_edge_config
from formcheck_runtime.paths import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def env_example() -> dict[str, str]:
    values = {}
    for line in (REPO_ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def substitute(text: str, env: dict[str, str]) -> str:
    return VAR.sub(lambda m: env[m.group(1)], text)


def test_services_and_profiles() -> None:
    services = compose()["services"]
    assert set(services) == {"preflight", "mosquitto", "influxdb", "grafana", "grafana-kiosk", "aggregator",
                             "checkin", "edge-demo"}
    assert services["edge-demo"]["profiles"] == ["demo"]
    for name, service in services.items():
        assert "restart" in service, f"{name} has no restart policy"
        if name not in ("edge-demo", "preflight", "grafana-kiosk"):  # one-shot jobs
            assert "healthcheck" in service, f"{name} has no health check"


def test_every_variable_is_in_the_env_example() -> None:
    used = set(VAR.findall(COMPOSE.read_text()))
    missing = used - set(env_example())
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_bind_mounts_and_build_context_exist() -> None:
    env = env_example()
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            host = substitute(volume.split(":")[0], env)
            if host.startswith((".", "/")) and "FORMCHECK_DATA" not in volume:
                assert (REPO_ROOT / host).exists(), f"{name}: {host} does not exist"
        if "build" in service:
            assert (REPO_ROOT / service["build"]["context"] / "Dockerfile").is_file()


def test_dockerfile_copies_existing_paths() -> None:
    for line in (REPO_ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:  # --from= copies out of an earlier stage
            for source in line.split()[1:-1]:
                assert (REPO_ROOT / source).exists(), f"Dockerfile copies missing {source}"


def _service_env(service: str, prefix: str) -> dict[str, str]:
    env = env_example()
    raw = compose()["services"][service]["environment"]
    return {k: substitute(str(v), env) for k, v in raw.items() if k.startswith(prefix)}


def test_aggregator_environment_is_valid_config() -> None:
    environ = _service_env("aggregator", "FORMCHECK_AGG__")
    assert environ, "the aggregator is configured through FORMCHECK_AGG__ variables"
    config = load_aggregator_config(None, environ=environ)
    assert config.mqtt.host == "mosquitto"
    assert config.influx.url == "http://influxdb:8086"
    assert config.heartbeat_file is not None
    # issue 13 item 7: it writes without admin rights; the init script made the retention policies.
    assert not config.influx.create_database
    assert config.influx.username is not None
    assert config.influx.username.get_secret_value() == env_example()["INFLUXDB_WRITE_USER"]
    influx = compose()["services"]["influxdb"]
    assert influx["environment"]["INFLUXDB_USER"].startswith("${INFLUXDB_WRITE_USER:?")
    assert "./deploy/influxdb/init:/docker-entrypoint-initdb.d:ro" in influx["volumes"]


@pytest.mark.security
def test_the_influx_init_script_is_the_aggregators_schema() -> None:
    from formcheck_aggregator.influx import schema_statements

    config = load_aggregator_config(None, environ=_service_env("aggregator", "FORMCHECK_AGG__"))
    script = (REPO_ROOT / "deploy/influxdb/init/formcheck.iql").read_text()
    assert script == "".join(f"{s};\n" for s in schema_statements(config.influx)), (
        "deploy/influxdb/init/formcheck.iql is stale: formcheck aggregator --print-schema | sed 's/$/;/'")


def test_demo_edge_environment_is_valid_config() -> None:
    environ = _service_env("edge-demo", "FORMCHECK_EDGE__")
    config = load_edge_config(None, environ=environ)
    assert config.mqtt.host == "mosquitto"
    assert config.node.id == config.mqtt.username, "a node's id is its broker account's name"


@pytest.mark.parametrize("service", ["aggregator", "edge-demo"])
def test_unknown_config_variables_would_be_caught(service: str) -> None:
    # Guard the guard: a misspelt variable must fail loading, so the tests above mean something.
    loader = load_aggregator_config if service == "aggregator" else load_edge_config
    prefix = "FORMCHECK_AGG__" if service == "aggregator" else "FORMCHECK_EDGE__"
    with pytest.raises(ValueError):
        loader(None, environ={f"{prefix}MQTT__HOTS": "x"})


def test_grafana_home_dashboard_is_provisioned() -> None:
    grafana = compose()["services"]["grafana"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    for container_dir, host_dir in mounts.items():
        if home.startswith(container_dir + "/"):
            assert (REPO_ROOT / host_dir / home[len(container_dir) + 1:]).is_file()
            break
    else:
        pytest.fail(f"{home} is not inside a mounted directory")


def test_mosquitto_config_is_the_shipped_one() -> None:
    mosquitto = compose()["services"]["mosquitto"]
    mounts = {v.split(":")[1]: Path(v.split(":")[0]) for v in mosquitto["volumes"] if v.startswith("./")}
    conf = REPO_ROOT / mounts["/mosquitto/config/mosquitto.conf"]
    text = conf.read_text()
    assert "allow_anonymous false" in text


def test_mosquitto_files_the_config_names_are_mounted() -> None:
    mosquitto = compose()["services"]["mosquitto"]
    targets = [v.split(":")[1] for v in mosquitto["volumes"]]
    conf = (REPO_ROOT / "mosquitto" / "mosquitto.conf").read_text()
    for line in conf.splitlines():
        key, _, value = line.strip().partition(" ")
        if key in {"password_file", "acl_file", "certfile", "keyfile", "cafile", "persistence_location", "http_dir"}:
            assert any(value.strip().startswith(t.rstrip("/") + "/") for t in targets), (
                f"{key} {value} is not inside a volume of the mosquitto service"
            )


def listener_blocks(conf: str) -> dict[int, dict[str, str]]:
    """Each listener's port -> its options (the lines up to the next listener)."""
    blocks: dict[int, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in conf.splitlines():
        key, _, value = line.strip().partition(" ")
        if key == "listener":
            current = blocks.setdefault(int(value.split()[0]), {})
        elif current is not None and key and not key.startswith("#"):
            current[key] = value.strip()
    return blocks


@pytest.mark.security
def test_compose_publishes_the_pages_over_tls_only() -> None:
    """The eclipse-mosquitto image serves the pages on the TLS websockets listener (its libwebsockets has no
    HTTP/2); Debian's plain-HTTP page listener stays unpublished (mosquitto/README.md)."""
    published = {str(p).rsplit(":", 1)[-1] for p in compose()["services"]["mosquitto"]["ports"]}
    assert "9001" in published and "8080" not in published, published
    listeners = listener_blocks((REPO_ROOT / "mosquitto" / "mosquitto.conf").read_text())
    pages = listeners[9001]
    assert pages["protocol"] == "websockets" and {"certfile", "keyfile", "http_dir"} <= set(pages), pages
    assert listeners[8080]["http_dir"] == pages["http_dir"] and "certfile" not in listeners[8080]


def dockerfile_stages() -> dict[str, str]:
    """Stage name -> its instructions (from its FROM line to the next)."""
    stages = {}
    for block in re.split(r"\n(?=FROM )", (REPO_ROOT / "Dockerfile").read_text()):
        found = re.match(r"FROM \S+ AS (\S+)", block)
        if found:
            stages[found.group(1)] = block
    return stages


# Service -> the Dockerfile target (deployable) it runs: the server side never carries the edge's stack.
SERVICE_TARGETS = {"preflight": "aggregator", "grafana-kiosk": "aggregator", "aggregator": "aggregator",
                   "checkin": "aggregator", "edge-demo": "edge"}


def test_each_service_builds_the_image_of_its_deployable() -> None:
    stages = dockerfile_stages()
    assert {"aggregator", "edge"} <= set(stages)
    assert list(stages)[-1] == "aggregator", "a plain `docker build .` gives the aggregator image"
    built = {name: service for name, service in compose()["services"].items() if "build" in service}
    assert set(built) == set(SERVICE_TARGETS)
    images: dict[str, str] = {}
    for name, service in built.items():
        assert service["build"] == {"context": ".", "target": SERVICE_TARGETS[name]}, name
        # One image name per target: two targets under one tag would overwrite each other.
        assert images.setdefault(SERVICE_TARGETS[name], service["image"]) == service["image"], name
    assert len(set(images.values())) == len(images)


def test_the_edge_image_builds_the_pose_model_outside_site_packages_and_the_cache() -> None:
    """The model is built at image build time where FORMCHECK_MODELS_DIR points, not into the installed package.

    Not under the cache either: compose mounts a tmpfs on the cache directory, which would hide it.
    """
    edge = dockerfile_stages()["edge"]
    models_dir = re.search(r"ENV FORMCHECK_MODELS_DIR=(\S+)", edge)
    assert models_dir, "the edge image names where its pose model lives"
    assert edge.index("FORMCHECK_MODELS_DIR=") < edge.index("formcheck models build")
    assert "--out" not in edge and "site-packages" not in models_dir.group(1)
    cache = re.search(r"FORMCHECK_CACHE=(\S+)", (REPO_ROOT / "Dockerfile").read_text())
    assert cache and not models_dir.group(1).startswith(cache.group(1))
    tmpfs = [mount.split(":")[0] for mount in compose()["services"]["edge-demo"]["tmpfs"]]
    assert not any(models_dir.group(1).startswith(path) for path in tmpfs), tmpfs
    assert "formcheck models build" not in dockerfile_stages()["aggregator"]


SERVERS = {"mosquitto", "influxdb", "mosquitto-clients"}


def _package_set(mode: str) -> set[str]:
    listed = subprocess.run(["bash", str(REPO_ROOT / "deploy/system-packages.sh"), "--list", mode],
                            capture_output=True, text=True, check=True)
    return set(listed.stdout.split())


def _make_dry_run(*targets: str) -> str:
    # -n: print the commands, run none; -B: as on a fresh clone (no stamp files count as done).
    return subprocess.run(["make", "-n", "-B", *targets], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.operations
def test_an_edge_install_installs_no_server() -> None:
    """Debian's influxdb listens on :8086 without authentication: never on a camera node."""
    assert not _package_set("base") & SERVERS
    assert _package_set("server") >= SERVERS
    for targets in (("edge-install",), ("model",)):
        commands = _make_dry_run(*targets)
        assert "system-packages.sh base" in commands, targets
        assert "system-packages.sh server" not in commands, targets
    assert "system-packages.sh server" in _make_dry_run("test")
    assert "system-packages.sh server" in _make_dry_run("demo")


# --- issue 13 items 5, 6 and 7: secrets as files, none in the environment, no example secret runs -------------------

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY\b")


def _secret_dir_paths(text: str) -> set[str]:
    return set(re.findall(r"/run/secrets/([a-z0-9_]+)", text))


@pytest.mark.security
def test_secrets_reach_services_as_files_only() -> None:
    """Item 7: compose `secrets:`, never environment variables (before: six passwords in `environment:`)."""
    from formcheck.secrets_check import COMPOSE_SECRETS

    declared = compose()["secrets"]
    assert set(declared) == set(COMPOSE_SECRETS)
    for name, spec in declared.items():
        assert spec == {"file": f"./secrets/{name}"}, name
    for service_name, service in compose()["services"].items():
        granted = set(service.get("secrets", []))
        assert granted <= set(declared), service_name
        for key, value in service.get("environment", {}).items():
            if SECRET_NAME.search(key):
                # Only a path to a granted secret file, never a value.
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), (service_name, key)
        used = _secret_dir_paths(yaml.safe_dump(service))
        for volume in service.get("volumes", []):  # files the service reads, e.g. Grafana's provisioning
            host = REPO_ROOT / volume.split(":")[0]
            if volume.startswith("./") and host.exists():
                for path in [host] if host.is_file() else sorted(host.rglob("*.yaml")):
                    used |= _secret_dir_paths(path.read_text())
        assert used <= granted, f"{service_name} reads {sorted(used - granted)} without being granted them"
        if service_name != "preflight":  # it names the files it checks in its command instead
            assert granted == used, f"{service_name} is granted secrets it does not read"
    assert not [name for name in VAR.findall(COMPOSE.read_text()) if SECRET_NAME.search(name)]
    assert not [key for key in env_example() if SECRET_NAME.search(key)], ".env.example holds names only"


@pytest.mark.security
def test_nothing_starts_before_the_secrets_are_checked() -> None:
    from formcheck.secrets_check import COMPOSE_SECRETS

    services = compose()["services"]
    preflight = services["preflight"]
    assert preflight["command"][:4] == ["deploy", "check-secrets", "--dir", "/run/secrets"]
    checked = set(preflight["command"][4:])
    assert checked == set(COMPOSE_SECRETS) - {"mqtt_demo_node_password"}
    assert set(preflight["secrets"]) == checked
    for name, service in services.items():
        if name != "preflight":
            assert service["depends_on"]["preflight"] == {"condition": "service_completed_successfully"}, name


@pytest.mark.security
def test_init_secrets_writes_random_secrets_the_check_accepts(tmp_path: Path) -> None:
    from formcheck.secrets_check import COMPOSE_SECRETS, init_secrets, read_secrets, secret_problems

    secrets_dir = tmp_path / "secrets"
    assert secret_problems(COMPOSE_SECRETS, read_secrets(secrets_dir, COMPOSE_SECRETS)) == [
        f"{name} is not set" for name in COMPOSE_SECRETS]
    assert init_secrets(secrets_dir) == list(COMPOSE_SECRETS)
    values = read_secrets(secrets_dir, COMPOSE_SECRETS)
    assert secret_problems(COMPOSE_SECRETS, values) == []
    assert len(set(values.values())) == len(COMPOSE_SECRETS), "every secret is drawn on its own"
    assert secrets_dir.stat().st_mode & 0o777 == 0o700
    assert {(secrets_dir / n).stat().st_mode & 0o777 for n in COMPOSE_SECRETS} == {0o444}
    (secrets_dir / "grafana_secret_key").chmod(0o644)
    (secrets_dir / "grafana_secret_key").write_text("change-me-grafana-secret-key\n")
    (secrets_dir / "influxdb_admin_password").unlink()
    assert init_secrets(secrets_dir) == ["influxdb_admin_password"], "existing secrets are kept"
    assert secret_problems(COMPOSE_SECRETS, read_secrets(secrets_dir, COMPOSE_SECRETS)) == [
        "grafana_secret_key still has an example value"]
    assert secret_problems(["x"], {"x": "short"}) == ["x is shorter than 12 characters"]


def _docker_compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Debian's docker-compose (1.29) renders the shipped file; it predates the top-level `name:` only."""
    shipped = compose()
    assert shipped.pop("name") == "formcheck"
    rendered = env_file.parent / "docker-compose.yml"
    rendered.write_text(yaml.safe_dump(shipped, sort_keys=False))
    try:
        return subprocess.run(["docker-compose", "--project-directory", str(REPO_ROOT), "--env-file", str(env_file),
                               "-f", str(rendered), *args], capture_output=True, text=True, check=False, timeout=60)
    except FileNotFoundError:
        pytest.fail("docker-compose is missing: `make test` installs Debian's docker-compose", pytrace=False)


@pytest.mark.security
def test_compose_accepts_the_file_and_renders_no_secret(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text((REPO_ROOT / ".env.example").read_text())
    result = _docker_compose(env_file, "config")
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    assert set(rendered["services"]) == set(compose()["services"])
    assert rendered["services"]["aggregator"]["read_only"] is True
    for name, target in SERVICE_TARGETS.items():  # compose 1.29 understands the build targets as written
        assert rendered["services"][name]["build"]["target"] == target, name
        assert Path(rendered["services"][name]["build"]["context"]) == REPO_ROOT, name
    for name, service in rendered["services"].items():
        secret_vars = [key for key in service.get("environment", {}) if SECRET_NAME.search(key)]
        assert all(key.endswith("_FILE") for key in secret_vars), (name, secret_vars)
    # A name that is missing from .env stops compose with the variable named.
    env_file.write_text("\n".join(line for line in env_file.read_text().splitlines()
                                  if not line.startswith("FORMCHECK_SITE=")))
    result = _docker_compose(env_file, "config")
    assert result.returncode != 0 and "set FORMCHECK_SITE in .env" in result.stderr


# --- issue 13 item 11: containers ------------------------------------------------------------------------------------

# What a service's own start-up needs, and why (anything else is dropped).
ALLOWED_CAPABILITIES = {
    "mosquitto": {"CHOWN", "SETUID", "SETGID"},   # chown the persistence volume, then drop to uid 1883
    "influxdb": {"CHOWN", "SETUID", "SETGID"},    # the image's entrypoint may hand its data to its own user
}


@pytest.mark.security
def test_every_container_is_hardened() -> None:
    for name, service in compose()["services"].items():
        assert service.get("read_only") is True, name
        assert service.get("cap_drop") == ["ALL"], name
        assert set(service.get("cap_add", [])) <= ALLOWED_CAPABILITIES.get(name, set()), name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert re.fullmatch(r"[0-9]+[mg]", str(service.get("mem_limit", ""))), f"{name} has no memory limit"
        assert service.get("pids_limit"), name
        assert "privileged" not in service and service.get("user") != "root", name


@pytest.mark.security
def test_third_party_images_name_an_exact_release() -> None:
    """No floating tags (`2.0`, `latest`): an `up` months later runs the release that was tested and reviewed."""
    for name, service in compose()["services"].items():
        image = service["image"]
        if "build" not in service:  # else built from this repository by the same `up`
            assert re.fullmatch(r"[a-z0-9./-]+:[0-9]+\.[0-9]+\.[0-9]+(@sha256:[0-9a-f]{64})?", image), (name, image)


@pytest.mark.security
def test_grafana_carries_the_cve_2025_4123_fix() -> None:
    image = compose()["services"]["grafana"]["image"]
    repository, _, tag = image.partition(":")
    assert repository in {"grafana/grafana", "grafana/grafana-oss"}
    version = tuple(int(part) for part in re.match(r"(\d+)\.(\d+)\.(\d+)", tag).groups())  # type: ignore[union-attr]
    # Fixed in 12.0.0+security-01 and every 12.x release after; 11.x and older are out of support.
    assert version >= (12, 0, 1), image


# --- issue 13 item 2: the wall display is a read-only anonymous Viewer in an organisation of its own -------------

def _dashboard(name: str) -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads((REPO_ROOT / "dashboards" / "json" / name).read_text())
    return data


@pytest.mark.security
def test_the_kiosk_is_an_anonymous_viewer_in_its_own_organisation() -> None:
    services = compose()["services"]
    grafana = services["grafana"]["environment"]
    kiosk = services["grafana-kiosk"]
    command = kiosk["command"]
    org = command[command.index("--org") + 1]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana["GF_AUTH_ANONYMOUS_ORG_NAME"] == org
    assert grafana["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert org != "Main Org.", "the staff organisation (id 1) must not be the anonymous one"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert grafana["GF_USERS_ALLOW_SIGN_UP"] == "false" and grafana["GF_USERS_ALLOW_ORG_CREATE"] == "false"
    # Provisioning fills only the main organisation: the staff dashboards never enter the kiosk's.
    provisioning = REPO_ROOT / "dashboards" / "provisioning"
    for path in provisioning.rglob("*.yaml"):
        for entry in (yaml.safe_load(path.read_text()).get("datasources") or []) + (
                yaml.safe_load(path.read_text()).get("providers") or []):
            assert entry.get("orgId", 1) == 1, path
    # The kiosk organisation gets the gym-floor dashboard and nothing else.
    mounts = {v.split(":")[1]: v.split(":")[0] for v in kiosk["volumes"]}
    dashboard_arg = command[command.index("--dashboard") + 1]
    host = mounts[str(Path(dashboard_arg).parent)]
    assert (REPO_ROOT / host / Path(dashboard_arg).name).resolve() == (
        REPO_ROOT / "dashboards/json/gym-floor.json").resolve()
    assert [a for a in command if a.endswith(".json")] == [dashboard_arg]
    assert kiosk["depends_on"]["grafana"] == {"condition": "service_healthy"}


@pytest.mark.security
def test_the_gym_floor_dashboard_leads_nowhere_else() -> None:
    """Its only data source is the one the kiosk organisation gets; no link reaches Member or Fleet health."""
    from formcheck.grafana_kiosk import dashboard_datasource_uids, dashboard_link_targets, kiosk_datasource

    floor = _dashboard("gym-floor.json")
    source = kiosk_datasource((REPO_ROOT / "dashboards/provisioning/datasources/influxdb.yaml").read_text(),
                              {"INFLUX_URL": "http://influxdb:8086", "INFLUX_DATABASE": "formcheck",
                               "INFLUX_USER": "grafana"}, "reader-password-123")
    assert dashboard_datasource_uids(floor) == {source["uid"]}
    assert source["url"] == "http://influxdb:8086" and source["user"] == "grafana"
    assert source["jsonData"]["dbName"] == "formcheck"
    assert source["secureJsonData"] == {"password": "reader-password-123"} and "orgId" not in source
    staff = {_dashboard(name)["uid"] for name in ("member.json", "fleet-health.json")}
    for target in dashboard_link_targets(floor):
        assert not any(uid in target for uid in staff), target


@pytest.mark.security
def test_the_kiosk_setup_removes_everything_else() -> None:
    from formcheck.grafana_kiosk import OrgContents, removals

    found = OrgContents(dashboard_uids=["formcheck-gym-floor", "formcheck-member"], folder_uids=["staff"],
                        datasource_uids=["formcheck-influxdb", "other"], user_logins=["admin", "trainer"])
    extra = removals(found, "formcheck-gym-floor", "formcheck-influxdb", "admin")
    assert extra.dashboard_uids == ("formcheck-member",) and extra.folder_uids == ("staff",)
    assert extra.datasource_uids == ("other",) and extra.user_logins == ("trainer",)
    clean = OrgContents(["formcheck-gym-floor"], [], ["formcheck-influxdb"], ["admin"])
    assert removals(clean, "formcheck-gym-floor", "formcheck-influxdb", "admin").count() == 0


@pytest.mark.security
def test_plain_mqtt_is_published_on_loopback_only() -> None:
    ports = [str(p) for p in compose()["services"]["mosquitto"]["ports"]]
    plain = [p for p in ports if p.endswith(":1883")]
    assert plain == ["127.0.0.1:1883:1883"], ports
    grafana = compose()["services"]["grafana"]["environment"]
    assert "GF_SECURITY_SECRET_KEY__FILE" in grafana and "GF_SECURITY_COOKIE_SECURE" in grafana


@pytest.mark.security
def test_secrets_are_kept_out_of_git_and_images() -> None:
    ignored = subprocess.run(["git", "check-ignore", "--no-index", ".env", "mosquitto/secrets/passwd",
                              "mosquitto/certs/formcheck-server.key"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=False).stdout.split()
    assert ignored == [".env", "mosquitto/secrets/passwd", "mosquitto/certs/formcheck-server.key"]
    docker = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".env", "mosquitto/secrets", "mosquitto/certs"} <= set(docker)


@pytest.mark.security
def test_the_edge_example_connects_over_tls() -> None:
    example = yaml.safe_load((REPO_ROOT / "deploy/edge.example.yaml").read_text())
    assert example["mqtt"]["port"] == 8883
    assert example["mqtt"]["tls"]["ca_file"]



@pytest.mark.security
def test_the_edge_unit_is_sandboxed() -> None:
    """issue 13 item 10: 8.5 ("EXPOSED") before; the password through LoadCredential, not the environment."""
    unit = REPO_ROOT / "deploy/systemd/formcheck-edge.service"
    try:
        result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True,
                                text=True, check=False, timeout=60)
    except FileNotFoundError:
        pytest.fail("systemd-analyze is missing: install Debian's systemd package", pytrace=False)
    score = re.search(r"Overall exposure level for formcheck-edge\.service: ([0-9.]+)", result.stdout)
    assert score, result.stdout[-2000:] + result.stderr[-2000:]
    assert float(score.group(1)) <= 4.0, result.stdout
    text = unit.read_text()
    assert "LoadCredential=mqtt-password:/etc/formcheck/mqtt.password" in text
    assert "FORMCHECK_EDGE__MQTT__PASSWORD_FILE=%d/mqtt-password" in text
    assert "MQTT__PASSWORD=" not in text.replace("PASSWORD_FILE=", "")


def _pinned(lock_name: str) -> dict[str, str]:
    lock = (REPO_ROOT / "requirements" / lock_name).read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", lock.split("\n", 2)[2])  # one requirement with its hashes each
    pinned = {}
    for block in blocks:
        found = re.match(r"([A-Za-z0-9_.\-]+)==([^ ;\\\n]+)", block)
        assert found and re.search(r"--hash=sha256:[0-9a-f]{64}", block), block[:200]
        pinned[found.group(1).lower().replace("_", "-")] = found.group(2)
    return pinned


@pytest.mark.security
@pytest.mark.parametrize(("target", "extra"), [("aggregator", "aggregator"), ("edge", "edge")])
def test_the_image_installs_python_packages_from_the_hash_lock(target: str, extra: str) -> None:
    """Item 11: every third-party package of an image comes hash-checked from its deployable's lock."""
    import tomllib

    stage = dockerfile_stages()[target]
    lock_name = f"{target}.txt"
    assert f"pip install --require-hashes -r requirements/{lock_name}" in stage
    installs = [line for line in (REPO_ROOT / "Dockerfile").read_text().splitlines() if "pip install" in line]
    assert all("--require-hashes" in line or "--no-deps" in line for line in installs), installs
    assert re.findall(r"requirements/\w+\.txt", stage) == [f"requirements/{lock_name}"] * 3, "COPY and install"
    pinned = _pinned(lock_name)
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"] + project["optional-dependencies"][extra]:
        name = re.split(r"[<>=!~; \[]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pinned, f"{name} is not in requirements/{lock_name}: make lock"
        if "==" in requirement:
            assert pinned[name] == requirement.split("==", 1)[1].split(";")[0].strip(), f"{name}: make lock"
    if target == "aggregator":
        heavy = {"mediapipe", "opencv-contrib-python", "opencv-python", "ai-edge-litert", "tensorflow", "numpy"}
        assert not heavy & set(pinned), "the aggregator image would carry the edge's stack"
        assert "apt-get" not in stage, "the aggregator needs no system libraries beyond the Python image"


@pytest.mark.security
def test_the_aggregator_reads_its_passwords_from_the_secret_files(tmp_path: Path) -> None:
    from formcheck_runtime.settings import ConfigError

    (tmp_path / "mqtt").write_text("mqtt-secret-123456\n")
    (tmp_path / "influx").write_text("influx-secret-123456\n")
    environ = {**_service_env("aggregator", "FORMCHECK_AGG__"),
               "FORMCHECK_AGG__MQTT__PASSWORD_FILE": str(tmp_path / "mqtt"),
               "FORMCHECK_AGG__INFLUX__PASSWORD_FILE": str(tmp_path / "influx")}
    config = load_aggregator_config(None, environ=environ)
    assert config.mqtt.resolved_password() == "mqtt-secret-123456"
    assert config.influx.resolved_password() == "influx-secret-123456"
    (tmp_path / "influx").write_text("")
    with pytest.raises(ConfigError, match=r"influx\.password_file: cannot read a password from"):
        config.influx.resolved_password()
