"""Edge node configuration: one YAML file, overridable by environment and CLI.

Precedence, lowest first: field defaults, the YAML file, ``FORMCHECK_EDGE__*``
environment variables (``__`` separates levels, e.g.
``FORMCHECK_EDGE__MQTT__HOST``), then command-line options. Unknown keys are
errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from formcheck_aggregator.recognition import RecognitionConfig
from formcheck_protocol.messages import Exercise
from formcheck_runtime.broker import BrokerSection
from formcheck_runtime.paths import POSE_MODEL, classifier_model
from formcheck_runtime.settings import ConfigError, Section, load_settings, validated_id
from formcheck_runtime.settings import example_yaml as render_example

ENV_PREFIX = "FORMCHECK_EDGE__"
__all__ = ["ConfigError", "EdgeConfig", "example_yaml", "load_config"]


class NodeSection(Section):
    id: str = Field(
        description="Station id: a topic level and an InfluxDB tag (letters, digits, _ . -), and the node's broker "
        "account name. Required: two nodes with the same id would mix their frames.",
        examples=["squat-rack-1"],
    )
    site: str = Field("main", description="Gym/site id, second topic level.")
    exercise: Exercise = Field("squat", description="Exercise classified until a session message says otherwise.")
    follow_session: bool = Field(
        True, description="Switch exercise when the station's retained session message names another one."
    )

    @field_validator("id", mode="before")
    @classmethod
    def _required_id(cls, value: object) -> object:
        if value is None:  # `id:` left empty, as in the example config
            raise PydanticCustomError("missing", "required, it has no default")
        return value

    @field_validator("id", "site")
    @classmethod
    def _ids(cls, value: str) -> str:
        return validated_id(value, "id")


class SourceSection(Section):
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


class PoseSection(Section):
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


class ClassifierSection(Section):
    model: Path | None = Field(
        None, description="Classifier .tflite (manifest .json beside it). Default: the committed model of the exercise."
    )
    num_threads: int = Field(1, ge=1, le=8, description="LiteRT interpreter threads.")

    def model_for(self, exercise: str) -> Path:
        return self.model if self.model is not None else classifier_model(exercise)


class FaultSection(Section):
    """Per-frame fault rules. Defaults follow common coaching cues, not the bundled clips."""

    knees_in_width_ratio: float = Field(
        0.8, gt=0, description="knees_in when knee distance / ankle distance drops below this while bending."
    )
    frontal_view_max_deg: float = Field(
        35.0, gt=0, le=90, description="knees_in is judged only when the camera is within this yaw of front/rear; "
        "the trunk's lean (squat forward_lean, curl swinging) only outside it, where it is not along the camera's "
        "axis."
    )
    forward_lean_deg: float = Field(55.0, gt=0, description="forward_lean when the trunk tilts more than this.")
    bending_knee_deg: float = Field(
        150.0, gt=0, description="Squat fault rules apply only once the knee is bent below this angle."
    )
    hips_sag_deg: float = Field(
        20.0, gt=0, description="Push-up hips_sag when the hips drop this many degrees below the shoulder-ankle line."
    )
    hips_pike_deg: float = Field(
        25.0, gt=0, description="Push-up hips_pike when the hips rise this many degrees above the shoulder-ankle line."
    )
    side_view_min_deg: float = Field(
        55.0, ge=0, le=90,
        description="Push-up hip rules are judged only when the camera sees the body from at least this yaw "
        "(90 = side-on): head-on, the hips' height against the shoulder-ankle line is a depth guess.",
    )
    swing_lean_deg: float = Field(
        20.0, gt=0, description="Curl swinging when the trunk tilts more than this from vertical during a rep."
    )


class MqttSection(BrokerSection):
    """Broker connection plus the edge node's outgoing queue."""

    out_queue: int = Field(
        3000, ge=1, description="Outgoing frame messages held while the broker is slow or away (~100 s at 30 fps)."
    )
    drop_policy: Literal["drop_oldest", "drop_newest"] = Field(
        "drop_oldest", description="Which message to drop, and count, when the outgoing queue is full."
    )
    max_inflight: int = Field(100, ge=1, le=65535, description="Unacknowledged QoS 1 messages in flight.")


class StatsSection(Section):
    interval_s: float = Field(5.0, gt=0, description="Seconds between stats messages.")


class IdleSection(Section):
    """An empty station costs almost nothing: no full-rate pose, no frame messages, until a person appears."""

    enabled: bool = Field(True, description="Go idle after after_s without a person; off: pose on every frame.")
    after_s: float = Field(
        5.0, gt=0, description="Seconds without a person (frames published as no_person meanwhile) before the "
        "node goes idle.",
    )
    check_every: int = Field(
        1, ge=1, le=30, description="While idle, one captured frame in this many is looked at (the others are "
        "not converted or queued): less CPU, but the person's first check_every - 1 frames may be lost (with 3, "
        "2 of the 90 clips counted a rep less).",
    )
    gate: Literal["motion", "detector"] = Field(
        "motion", description="motion: the pose model runs on a looked-at frame only when a downscaled grey image "
        "changed (or every probe_s); detector: the pose model runs on every looked-at frame.",
    )
    probe_s: float = Field(
        1.0, ge=0, description="motion gate: the pose model also runs this often without motion (a person who "
        "came in unseen and stands still); 0: never.",
    )
    motion_pixel_delta: int = Field(
        20, ge=1, le=255, description="Grey-level change (0-255) from the background that makes a pixel moving.",
    )
    motion_area: float = Field(
        0.005, gt=0, le=1, description="Share of the downscaled image's pixels that must move to wake the pose "
        "model.",
    )


class EdgeConfig(Section):
    """Everything an edge node needs."""

    node: NodeSection = Field(description="Station identity (node.id is required).")
    source: SourceSection = Field(default_factory=SourceSection, description="Video input.")
    pose: PoseSection = Field(default_factory=PoseSection, description="Pose estimation.")
    classifier: ClassifierSection = Field(default_factory=ClassifierSection, description="Phase/form model.")
    faults: FaultSection = Field(default_factory=FaultSection, description="Per-frame fault rules.")
    recognition: RecognitionConfig = Field(
        default_factory=RecognitionConfig, description="Exercise recognition, for check-ins that name no exercise."
    )
    mqtt: MqttSection = Field(default_factory=MqttSection, description="Broker connection.")
    stats: StatsSection = Field(default_factory=StatsSection, description="Health reporting.")
    idle: IdleSection = Field(default_factory=IdleSection, description="Idle mode of an empty station.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log verbosity.")

    @model_validator(mode="before")
    @classmethod
    def _node_section(cls, data: Any) -> Any:
        # A missing section reports its missing id ("node.id: required"), not a bare "node: required".
        if isinstance(data, dict) and "node" not in data:
            return {**data, "node": {}}
        return data

    @model_validator(mode="after")
    def _backoff(self) -> EdgeConfig:
        if self.mqtt.reconnect_max_s < self.mqtt.reconnect_min_s:
            raise ValueError("mqtt.reconnect_max_s must be >= mqtt.reconnect_min_s")
        return self


def load_config(
    path: Path | None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> EdgeConfig:
    """Build the config from file, environment and CLI overrides; :class:`ConfigError` if invalid."""
    return load_settings(EdgeConfig, path, overrides, environ, ENV_PREFIX)


def example_yaml() -> str:
    """Every field with its default (docs and ``formcheck edge --print-config``)."""
    return render_example(EdgeConfig, "formcheck edge node configuration")
