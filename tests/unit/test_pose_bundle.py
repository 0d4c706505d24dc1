"""The pose bundle (`make model`) built from the pinned graphs of the installed mediapipe or its 0.10.21 wheel."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from formcheck_models.pose_bundle import (
    MEMBERS,
    BundleBuildError,
    build_bundle,
    ensure_bundle,
    installed_graphs,
    write_bundle,
)


def _input_normalisation(tflite: bytes) -> tuple[list[float], list[float]]:
    from mediapipe.tasks.metadata import metadata_schema_py_generated as meta
    from mediapipe.tasks.metadata import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(tflite, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == b"TFLITE_METADATA":
            buf = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
            md = meta.ModelMetadataT.InitFromObj(meta.ModelMetadata.GetRootAsModelMetadata(buf, 0))
            options = md.subgraphMetadata[0].inputTensorMetadata[0].processUnits[0].options
            return list(options.mean), list(options.std)
    raise AssertionError("no TFLITE_METADATA in model")


def test_bundle_is_stored_uncompressed_with_normalisation(pose_model: Path) -> None:
    with zipfile.ZipFile(pose_model) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        assert set(infos) == {m.bundle_name for m in MEMBERS}
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos.values())
        for member in MEMBERS:
            mean, std = _input_normalisation(zf.read(member.bundle_name))
            assert mean == [member.mean]
            assert std == [member.std]


def test_ensure_bundle_keeps_a_valid_bundle(pose_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "pose.task"
    copy.write_bytes(pose_model.read_bytes())
    before = copy.stat().st_mtime_ns
    assert ensure_bundle(copy, tmp_path / "no-wheels-needed") == copy
    assert copy.stat().st_mtime_ns == before


def test_not_a_wheel_is_one_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "mediapipe-0.10.21-cp311-none-any.whl"
    fake.write_bytes(b"not a zip")
    with pytest.raises(BundleBuildError, match="not a usable mediapipe wheel"):
        build_bundle(fake, tmp_path / "out.task")


def test_tampered_graph_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "mediapipe-0.10.21-cp311-none-any.whl"
    with zipfile.ZipFile(fake, "w") as zf:
        for member in MEMBERS:
            zf.writestr(member.wheel_path, b"TFL3 tampered")
    with pytest.raises(BundleBuildError, match="sha256"):
        build_bundle(fake, tmp_path / "out.task")
    assert not (tmp_path / "out.task").exists()


def test_installed_pose_runtime_carries_the_pinned_graphs() -> None:
    graphs = installed_graphs()
    assert graphs is not None, (
        "the installed mediapipe lacks the sha256-pinned pose graphs: 'make model' would need the 0.10.21 wheel "
        "from the registry; pin the pose runtime the edge is tested with (pyproject.toml)"
    )
    assert set(graphs) == {m.bundle_name for m in MEMBERS}


def test_bundle_from_the_installed_package_equals_the_one_from_the_wheel(tmp_path: Path) -> None:
    graphs = installed_graphs()
    assert graphs is not None
    wheel = tmp_path / "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for member in MEMBERS:
            zf.writestr(member.wheel_path, graphs[member.bundle_name])
    from_wheel = build_bundle(wheel, tmp_path / "from-wheel.task").read_bytes()
    from_installed = write_bundle(graphs, tmp_path / "from-installed.task", "installed").read_bytes()
    assert from_wheel == from_installed
