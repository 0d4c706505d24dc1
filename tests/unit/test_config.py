from __future__ import annotations

from pathlib import Path

import pytest

from formcheck_edge.config import ConfigError, EdgeConfig, example_yaml, load_config

NODE = {"node": {"id": "squat-rack-1"}}


def test_defaults_are_valid() -> None:
    cfg = load_config(None, NODE, environ={})
    assert cfg.mqtt.port == 1883
    assert cfg.node.exercise == "squat"


@pytest.mark.operations
@pytest.mark.parametrize("text", ["", "node: {}\n", "node:\n  id:\n", "mqtt:\n  host: broker.lan\n"])
def test_node_id_is_required(tmp_path: Path, text: str) -> None:
    """Two unconfigured nodes must not both run as the same station."""
    path = tmp_path / "edge.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert str(err.value) == "node.id: required, it has no default"


def test_unknown_key_is_rejected_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("mqtt:\n  hots: broker.local\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert "mqtt.hots" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.operations
def test_every_invalid_value_is_named_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("mqtt:\n  port: 70000\nnode:\n  id: 'bad/id'\nstats:\n  interval_s: -1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    message = str(err.value)
    assert "\n" not in message and "more)" not in message
    for field in ("mqtt.port", "node.id", "stats.interval_s"):
        assert field in message


@pytest.mark.operations
def test_not_yaml_says_where_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("node:\n  id: rack-1\nmqtt: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line 4, column 1: ") as err:
        load_config(path, environ={})
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_precedence_file_env_cli(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("mqtt:\n  host: from-file\n  port: 1000\nsource:\n  realtime: true\n")
    env = {"FORMCHECK_EDGE__MQTT__PORT": "2000", "FORMCHECK_EDGE__SOURCE__REALTIME": "false"}
    cfg = load_config(path, {"mqtt": {"port": 3000}, **NODE}, environ=env)
    assert cfg.mqtt.host == "from-file"
    assert cfg.mqtt.port == 3000
    assert cfg.source.realtime is False
    assert load_config(path, NODE, environ=env).mqtt.port == 2000


def test_password_from_file_and_env(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    cfg = load_config(None, {"mqtt": {"password_file": str(secret)}, **NODE}, environ={})
    assert cfg.mqtt.resolved_password() == "s3cret"
    cfg = load_config(None, NODE, environ={"FORMCHECK_EDGE__MQTT__PASSWORD": "envpw"})
    assert cfg.mqtt.resolved_password() == "envpw"
    assert "envpw" not in repr(cfg)
    missing = load_config(None, {"mqtt": {"password_file": str(tmp_path / "none")}, **NODE}, environ={})
    with pytest.raises(ConfigError):
        missing.mqtt.resolved_password()


def test_every_field_is_documented_and_in_the_example() -> None:
    def walk(model: type[EdgeConfig] | type, prefix: str) -> None:
        for name, field in model.model_fields.items():
            assert field.description, f"{prefix}{name} has no description"
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann, f"{prefix}{name}.")

    walk(EdgeConfig, "")
    example = example_yaml()
    for section in ("node:", "source:", "pose:", "classifier:", "faults:", "mqtt:", "stats:"):
        assert section in example


def test_example_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(example_yaml())
    with pytest.raises(ConfigError, match=r"node\.id: required"):
        load_config(path, environ={})
    assert load_config(path, NODE, environ={}) == load_config(None, NODE, environ={})
