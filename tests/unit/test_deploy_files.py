"""docker-compose.yml, Dockerfile and .env.example agree with the repository and the app's config."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from aggregator.config import load_config as load_aggregator_config
from edge_node.config import load_config as load_edge_config
from formcheck.paths import REPO_ROOT

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
    assert set(services) == {"preflight", "mosquitto", "influxdb", "grafana", "aggregator", "edge-demo"}
    assert services["edge-demo"]["profiles"] == ["demo"]
    for name, service in services.items():
        assert "restart" in service, f"{name} has no restart policy"
        if name not in ("edge-demo", "preflight"):
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
            assert (REPO_ROOT / service["build"] / "Dockerfile").is_file()


def test_dockerfile_copies_existing_paths() -> None:
    for line in (REPO_ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
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
    assert influx["environment"]["INFLUXDB_USER"] == "${INFLUXDB_WRITE_USER}"
    assert "./deploy/influxdb/init:/docker-entrypoint-initdb.d:ro" in influx["volumes"]


@pytest.mark.security
def test_the_influx_init_script_is_the_aggregators_schema() -> None:
    from aggregator.influx import schema_statements

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
        if key in {"password_file", "acl_file", "certfile", "keyfile", "cafile", "persistence_location"}:
            assert any(value.strip().startswith(t.rstrip("/") + "/") for t in targets), (
                f"{key} {value} is not inside a volume of the mosquitto service"
            )


def test_dockerfile_builds_the_pose_model_where_the_installed_package_looks() -> None:
    # After a non-editable install, formcheck.paths resolves models/ inside site-packages: an explicit
    # --out elsewhere would leave the edge without its pose model.
    build = [line for line in (REPO_ROOT / "Dockerfile").read_text().splitlines() if "formcheck models build" in line]
    assert build and all("--out" not in line for line in build)


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


# --- issue 13 items 5 and 6: no example secret runs, no plain MQTT on the network ----------------------------------

SECRET = re.compile(r"PASSWORD|SECRET")


def _secret_variables() -> set[str]:
    return {name for name in VAR.findall(COMPOSE.read_text()) if SECRET.search(name)}


@pytest.mark.security
def test_every_secret_is_required_by_compose() -> None:
    text = COMPOSE.read_text()
    for name in _secret_variables():
        uses = re.findall(r"\$\{" + name + r"(:?[-?]?)[^}]*\}", text)
        assert uses and all(use == ":?" for use in uses), f"${{{name}}} must be written ${{{name}:?...}}"


@pytest.mark.security
def test_nothing_starts_before_the_secrets_are_checked() -> None:
    services = compose()["services"]
    preflight = services["preflight"]
    checked = set(preflight["command"][2:])
    assert preflight["command"][:2] == ["deploy", "check-secrets"]
    assert _secret_variables() - {"DEMO_NODE_MQTT_PASSWORD"} <= checked
    for name, service in services.items():
        if name != "preflight":
            assert service["depends_on"]["preflight"] == {"condition": "service_completed_successfully"}, name


@pytest.mark.security
def test_the_example_secrets_are_refused() -> None:
    from formcheck.secrets_check import secret_problems

    env = env_example()
    names = sorted(_secret_variables())
    problems = secret_problems(names, env)
    assert len(problems) == len(names), problems
    assert secret_problems(names, {n: f"{n.lower()}-0123456789abcdef" for n in names}) == []
    assert secret_problems(["X"], {"X": "short"}) == ["X is shorter than 12 characters"]


@pytest.mark.security
def test_plain_mqtt_is_published_on_loopback_only() -> None:
    ports = [str(p) for p in compose()["services"]["mosquitto"]["ports"]]
    plain = [p for p in ports if p.endswith(":1883")]
    assert plain == ["127.0.0.1:1883:1883"], ports
    grafana = compose()["services"]["grafana"]["environment"]
    assert "GF_SECURITY_SECRET_KEY" in grafana and "GF_SECURITY_COOKIE_SECURE" in grafana


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
