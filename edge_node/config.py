"""Edge node configuration: one YAML file, overridable by environment and CLI.

Precedence, lowest first: field defaults, the YAML file, ``FORMCHECK_EDGE__*``
environment variables (``__`` separates levels, e.g.
``FORMCHECK_EDGE__MQTT__HOST``), then command-line options. Unknown keys are
errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from formcheck.paths import POSE_MODEL, classifier_model
from protocol.messages import Exercise
from protocol.topics import DEFAULT_PREFIX, TopicError, level

ENV_PREFIX = "FORMCHECK_EDGE__"


class ConfigError(ValueError):
    """Configuration is invalid; the message is one line naming the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _validated_id(value: str, what: str) -> str:
    try:
        return level(value, what)
    except TopicError as exc:
        raise ValueError(str(exc)) from exc


class NodeSection(_Section):
    id: str = Field("node-1", description="Station id: a topic level and an InfluxDB tag (letters, digits, _ . -).")
    site: str = Field("main", description="Gym/site id, second topic level.")
    exercise: Exercise = Field("squat", description="Exercise classified until a session message says otherwise.")
    follow_session: bool = Field(
        True, description="Switch exercise when the station's retained session message names another one."
    )

    @field_validator("id", "site")
    @classmethod
    def _ids(cls, value: str) -> str:
        return _validated_id(value, "id")


class SourceSection(_Section):
    uri: str = Field(
        "0",
        description="Video source: a camera index ('0' = /dev/video0), a video file path, an rtsp:// or "
        "http(s):// URL, or 'picamera2' for the Raspberry Pi camera module.",
    )
    realtime: bool = Field(
        True,
        description="Play files at their own frame rate like a camera (frames may be dropped when inference "
        "falls behind). Off: read as fast as inference goes, no drops (tests, benchmarks).",
    )
    width: int | None = Field(None, gt=0, description="Requested capture width (cameras only).")
    height: int | None = Field(None, gt=0, description="Requested capture height (cameras only).")
    fps: float | None = Field(None, gt=0, description="Requested capture frame rate (cameras only).")
    queue_size: int = Field(2, ge=1, le=256, description="Capture queue length; the oldest frame is dropped when full.")
    reconnect_s: float = Field(
        2.0, gt=0, description="Initial wait before reopening a live source that stopped delivering frames."
    )
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest wait between reopen attempts (backoff cap).")
    read_timeout_s: float = Field(
        5.0, gt=0, description="A live source delivering no frame for this long is treated as lost."
    )


class PoseSection(_Section):
    model: Path | None = Field(
        None, description="MediaPipe pose landmarker bundle (.task). Default: the one 'make model' builds."
    )
    min_detection_confidence: float = Field(0.5, ge=0, le=1, description="Person detection threshold.")
    min_tracking_confidence: float = Field(0.5, ge=0, le=1, description="Landmark tracking threshold.")
    min_presence_confidence: float = Field(0.5, ge=0, le=1, description="Pose presence threshold.")
    min_visibility: float = Field(
        0.3, ge=0, le=1, description="Mean lower-body visibility below which a frame counts as no_person."
    )


    def model_path(self) -> Path:
        return self.model if self.model is not None else POSE_MODEL


class ClassifierSection(_Section):
    model: Path | None = Field(
        None, description="Classifier .tflite (manifest .json beside it). Default: the committed model of the exercise."
    )
    num_threads: int = Field(1, ge=1, le=8, description="LiteRT interpreter threads.")

    def model_for(self, exercise: str) -> Path:
        return self.model if self.model is not None else classifier_model(exercise)


class FaultSection(_Section):
    """Per-frame fault rules. Defaults follow common coaching cues, not the bundled clips."""

    knees_in_width_ratio: float = Field(
        0.8, gt=0, description="knees_in when knee distance / ankle distance drops below this while bending."
    )
    forward_lean_deg: float = Field(55.0, gt=0, description="forward_lean when the trunk tilts more than this.")
    bending_knee_deg: float = Field(
        150.0, gt=0, description="Fault rules apply only once the knee is bent below this angle."
    )


class TlsSection(_Section):
    ca_file: Path | None = Field(None, description="CA certificate to verify the broker; enables TLS.")
    cert_file: Path | None = Field(None, description="Client certificate, when the broker requires one.")
    key_file: Path | None = Field(None, description="Client private key.")


class MqttSection(_Section):
    host: str = Field("localhost", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 for TLS).")
    prefix: str = Field(DEFAULT_PREFIX, description="Topic prefix, first topic level(s).")
    client_id: str | None = Field(None, description="MQTT client id; default formcheck-edge-<node id>.")
    username: str | None = Field(None, description="Broker user name.")
    password: SecretStr | None = Field(None, description="Broker password (prefer password_file or the env var).")
    password_file: Path | None = Field(None, description="File whose first line is the broker password.")
    keepalive_s: int = Field(
        15, ge=2, le=3600, description="MQTT keep-alive; the broker declares the node offline after 1.5x this."
    )
    tls: TlsSection = Field(default_factory=TlsSection, description="TLS settings; off unless ca_file is set.")
    out_queue: int = Field(
        3000, ge=1, description="Outgoing frame messages held while the broker is slow or away (~100 s at 30 fps)."
    )
    drop_policy: Literal["drop_oldest", "drop_newest"] = Field(
        "drop_oldest", description="Which message to drop, and count, when the outgoing queue is full."
    )
    max_inflight: int = Field(100, ge=1, le=65535, description="Unacknowledged QoS 1 messages in flight.")
    reconnect_min_s: float = Field(1.0, gt=0, description="First reconnect delay.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Reconnect delay cap (exponential backoff).")
    connect_timeout_s: float = Field(
        10.0, gt=0, description="How long to wait for the first connection before running on and retrying."
    )

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        for part in value.split("/"):
            _validated_id(part, "topic prefix level")
        return value

    def resolved_password(self) -> str | None:
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            try:
                return self.password_file.read_text().splitlines()[0].strip()
            except (OSError, IndexError) as exc:
                raise ConfigError(f"mqtt.password_file: cannot read a password from {self.password_file}") from exc
        return None


class StatsSection(_Section):
    interval_s: float = Field(5.0, gt=0, description="Seconds between stats messages.")


class EdgeConfig(_Section):
    """Everything an edge node needs."""

    node: NodeSection = Field(default_factory=NodeSection, description="Station identity.")
    source: SourceSection = Field(default_factory=SourceSection, description="Video input.")
    pose: PoseSection = Field(default_factory=PoseSection, description="Pose estimation.")
    classifier: ClassifierSection = Field(default_factory=ClassifierSection, description="Phase/form model.")
    faults: FaultSection = Field(default_factory=FaultSection, description="Per-frame fault rules.")
    mqtt: MqttSection = Field(default_factory=MqttSection, description="Broker connection.")
    stats: StatsSection = Field(default_factory=StatsSection, description="Health reporting.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log verbosity.")

    @model_validator(mode="after")
    def _backoff(self) -> EdgeConfig:
        if self.mqtt.reconnect_max_s < self.mqtt.reconnect_min_s:
            raise ValueError("mqtt.reconnect_max_s must be >= mqtt.reconnect_min_s")
        return self


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX):].split("__") if p]
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        if path:
            # YAML scalars so that "false", "30" and "null" mean what they say.
            node[path[-1]] = yaml.safe_load(value) if value else value
    return tree


def describe_error(exc: ValidationError) -> str:
    """One line for the operator: the first problem, its field, and how many more."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "config"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def load_config(
    path: Path | None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> EdgeConfig:
    """Build the config from file, environment and CLI overrides; :class:`ConfigError` if invalid."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must be a mapping of sections")
        data = loaded or {}
    data = _merge(data, _env_overrides(dict(os.environ if environ is None else environ)))
    data = _merge(data, overrides or {})
    try:
        return EdgeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_error(exc)) from exc


def example_yaml() -> str:
    """A commented YAML file with every field and its default (docs and ``formcheck edge --print-config``)."""
    lines = ["# formcheck edge node configuration. Every key is optional; shown values are the defaults."]

    def walk(model: type[BaseModel], indent: int) -> None:
        for name, field in model.model_fields.items():
            pad = "  " * indent
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                lines.append(f"{pad}# {field.description}")
                lines.append(f"{pad}{name}:")
                walk(annotation, indent + 1)
                continue
            default = field.get_default(call_default_factory=True)
            rendered = yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()
            lines.append(f"{pad}# {field.description}")
            lines.append(f"{pad}{name}: {rendered}")

    walk(EdgeConfig, 0)
    return "\n".join(lines) + "\n"
