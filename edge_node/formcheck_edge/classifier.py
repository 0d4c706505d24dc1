"""Per-frame phase and form classifier: a small TFLite model run with LiteRT.

A model is two files side by side: ``<name>.tflite`` and ``<name>.json``
(:class:`ModelManifest`). The manifest names the feature spec the model was
trained on; a model whose spec hash differs from the running code's is
refused, because it would silently read the wrong numbers.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from formcheck_edge.features import FEATURE_SPEC_VERSION, feature_names, feature_spec_hash
from formcheck_protocol.messages import Exercise, Phase

log = logging.getLogger(__name__)

MODEL_PHASES: tuple[Phase, ...] = ("standing", "descending", "bottom", "ascending")
"""Phases the model predicts. ``no_person`` is decided before the model runs."""

class ModelLoadError(RuntimeError):
    """A classifier model could not be used; the message is one line for the operator."""


class HeldOutMetrics(BaseModel):
    """Quality measured on clips the model did not train on."""

    model_config = ConfigDict(extra="forbid")

    phase_accuracy: float = Field(description="Share of held-out frames whose phase was right.")
    phase_macro_f1: float = Field(description="Macro-averaged F1 over the model's phases.")
    form_accuracy: float = Field(description="Share of held-out frames whose good/bad form was right.")
    form_macro_f1: float = Field(description="Macro-averaged F1 over good/bad.")
    frames: int = Field(description="Number of held-out frames scored.")
    method: str = Field(description="How the held-out set was chosen (e.g. leave-one-clip-out).")


class ModelManifest(BaseModel):
    """Sidecar JSON describing a classifier model."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Model name, also the file stem.")
    version: str = Field(description="Model version, published in stats and frame messages' provenance.")
    exercise: Exercise = Field(description="Exercise the model classifies.")
    feature_spec_version: int = Field(description="FEATURE_SPEC_VERSION the model was trained with.")
    feature_spec_hash: str = Field(description="feature_spec_hash() the model was trained with.")
    input_size: int = Field(description="Length of the input vector.")
    phases: list[Phase] = Field(description="Phase labels, in the order of the phase output.")
    bad_threshold: float = Field(0.5, ge=0, le=1, description="bad_p at or above which a frame is form=bad.")
    trained_on: list[str] = Field(default_factory=list, description="Data files the model was trained on.")
    held_out: HeldOutMetrics | None = Field(None, description="Quality on clips never seen in training.")
    created: str = Field("", description="UTC creation time, ISO 8601.")


@dataclass(frozen=True)
class Classification:
    """Classifier output for one frame."""

    phase: Phase
    phase_p: dict[Phase, float]
    bad_p: float


class _Interpreter(Protocol):
    def allocate_tensors(self) -> None: ...
    def get_input_details(self) -> list[dict[str, Any]]: ...
    def get_output_details(self) -> list[dict[str, Any]]: ...
    def set_tensor(self, index: int, value: npt.NDArray[Any]) -> None: ...
    def invoke(self) -> None: ...
    def get_tensor(self, index: int) -> npt.NDArray[Any]: ...


def _make_interpreter(model_path: Path, num_threads: int) -> _Interpreter:
    """LiteRT interpreter from ``ai-edge-litert``, or ``tflite-runtime`` where that is what is installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as exc:
            raise ModelLoadError("no TFLite runtime: install 'ai-edge-litert' (or 'tflite-runtime')") from exc
    interpreter: _Interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
    return interpreter


def load_manifest(model_path: Path) -> ModelManifest:
    """Read and validate the manifest beside ``model_path``."""
    manifest_path = model_path.with_suffix(".json")
    try:
        return ModelManifest.model_validate(json.loads(manifest_path.read_text()))
    except FileNotFoundError as exc:
        raise ModelLoadError(f"model manifest not found: {manifest_path}") from exc
    except (json.JSONDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise ModelLoadError(f"invalid model manifest {manifest_path}: {first}") from exc


class PhaseFormClassifier:
    """Runs one model; one instance per stream (LiteRT interpreters are not thread-safe)."""

    def __init__(self, model_path: Path, *, num_threads: int = 1) -> None:
        if not model_path.is_file():
            raise ModelLoadError(f"classifier model not found: {model_path}")
        self.manifest = load_manifest(model_path)
        expected = feature_spec_hash()
        if self.manifest.feature_spec_hash != expected:
            raise ModelLoadError(
                f"model {model_path.name} was trained on feature spec "
                f"v{self.manifest.feature_spec_version}/{self.manifest.feature_spec_hash}, this code computes "
                f"v{FEATURE_SPEC_VERSION}/{expected}: retrain it with 'formcheck models train'"
            )
        if self.manifest.input_size != len(feature_names()):
            raise ModelLoadError(f"model {model_path.name} expects {self.manifest.input_size} inputs")
        try:
            self._interp = _make_interpreter(model_path, num_threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"cannot load {model_path}: {str(exc).splitlines()[0]}") from exc
        inputs = self._interp.get_input_details()
        if len(inputs) != 1 or int(inputs[0]["shape"][-1]) != self.manifest.input_size:
            raise ModelLoadError(f"model {model_path.name} input does not match its manifest")
        self._input = int(inputs[0]["index"])
        self._phase_out = self._bad_out = -1
        # Outputs are told apart by width: converters do not keep Keras output order.
        for detail in self._interp.get_output_details():
            width = int(detail["shape"][-1])
            if width == len(self.manifest.phases):
                self._phase_out = int(detail["index"])
            elif width == 1:
                self._bad_out = int(detail["index"])
        if self._phase_out < 0 or self._bad_out < 0:
            raise ModelLoadError(f"model {model_path.name} lacks a phase or a form output")

    @property
    def version(self) -> str:
        return f"{self.manifest.name}@{self.manifest.version}"

    def classify(self, vector: npt.NDArray[np.float32]) -> Classification:
        """Classify one feature vector (from :class:`formcheck_edge.features.FeatureWindow`)."""
        self._interp.set_tensor(self._input, vector.reshape(1, -1).astype(np.float32))
        self._interp.invoke()
        probs = self._interp.get_tensor(self._phase_out).reshape(-1)
        bad_p = float(self._interp.get_tensor(self._bad_out).reshape(-1)[0])
        phase_p = {label: round(float(p), 4) for label, p in zip(self.manifest.phases, probs, strict=True)}
        phase = self.manifest.phases[int(np.argmax(probs))]
        return Classification(phase=phase, phase_p=phase_p, bad_p=round(bad_p, 4))
