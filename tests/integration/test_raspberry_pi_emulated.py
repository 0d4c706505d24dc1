"""The edge on an emulated Raspberry Pi 4 and 5: installs from the lock, builds its pose model, publishes frames.

Each board runs the project's own ``formcheck models build`` and ``formcheck edge`` (the checkout's code,
the locked aarch64 dependencies installed by the root's own pip) under ``qemu-aarch64-static`` with the
board's CPU model, against a real Mosquitto on this machine. Emulation costs about 3 s per frame, so the
edge reads a few frames of a real clip (cut and scaled here, in a temporary folder). The same frames go
through the same code on this machine: the Pi must find the person and reach the same decisions.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import pytest

from bench.emulated_pi import PI_CPUS, EmulatedPi, EmulationError, prepare
from formcheck.local_services import Mosquitto
from formcheck_edge.capture import open_video_file
from formcheck_edge.classifier import MODEL_PHASES
from formcheck_edge.offline import classify_video, offline_config
from formcheck_models.pose_bundle import installed_graphs, write_bundle
from formcheck_protocol.messages import FrameMessage
from tests.integration.mqtt_helpers import Recorder

pytestmark = [pytest.mark.pi, pytest.mark.broker, pytest.mark.data, pytest.mark.slow, pytest.mark.timeout(900)]

CLIP = "videos/squat/squat_side_bodyweight_a.mp4"
FIRST_FRAME = 70  # the descent into the first rep's bottom (labelled at frame 79) and the bottom itself
FRAMES = 8
SIZE = (480, 272)
ANGLE_TOLERANCE_DEG = 4.0
"""Per-frame joint angles may differ between the Pi and x86-64: both decoders' colour conversion and the
pose model's SIMD arithmetic round differently (docs/raspberry-pi.md has the measured spread)."""
CLEAR_MARGIN = 0.2
"""A frame whose top two phase probabilities on x86-64 differ by less than this is on a class boundary;
its phase may legitimately flip under float differences, so only clearly decided frames must agree."""


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    cap = open_video_file(data_dir / CLIP)
    out = tmp_path_factory.mktemp("pi-clip") / "short.mp4"
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, SIZE)
    index = written = 0
    while written < FRAMES:
        ok, frame = cap.read()
        if not ok:
            pytest.fail(f"{CLIP} has fewer than {FIRST_FRAME + FRAMES} frames", pytrace=False)
        if index >= FIRST_FRAME:
            writer.write(cv2.resize(frame, SIZE, interpolation=cv2.INTER_AREA))
            written += 1
        index += 1
    cap.release()
    writer.release()
    return out


@pytest.fixture(scope="module")
def x86_frames(short_clip: Path, pose_model: Path) -> list[FrameMessage]:
    return list(classify_video(offline_config(short_clip, node="x86")))


def emulated(board: str) -> EmulatedPi:
    try:
        return prepare(board)
    except EmulationError as exc:
        pytest.fail(f"emulated {board}: {exc}", pytrace=False)


def run_on_pi(pi: EmulatedPi, args: list[str], timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(pi.command("-m", "formcheck.cli", *args), capture_output=True, text=True, check=False,
                          timeout=timeout, env=pi.environment(**env))


@pytest.mark.parametrize("board", sorted(PI_CPUS))
def test_edge_runs_on_emulated_pi(board: str, mosquitto: Mosquitto, short_clip: Path,
                                  x86_frames: list[FrameMessage], tmp_path: Path) -> None:
    pi = emulated(board)

    # The pose model builds on the Pi from its own installed mediapipe, with no download, byte for byte as here.
    bundle = tmp_path / "pose_landmarker_full.task"
    built = run_on_pi(pi, ["models", "build", "--out", str(bundle)], timeout=300,
                      FORMCHECK_CACHE=str(tmp_path / "cache"), PIP_NO_INDEX="1")
    assert built.returncode == 0, built.stderr[-3000:]
    graphs = installed_graphs()
    assert graphs is not None
    assert bundle.read_bytes() == write_bundle(graphs, tmp_path / "x86.task", "x86").read_bytes()

    # formcheck edge on the Pi, publishing to the broker on this machine.
    node = f"emulated-{board}"
    rec = Recorder(mosquitto.host, mosquitto.port, f"gym/main/nodes/{node}/#").start()
    try:
        edge = run_on_pi(pi, ["edge", "--source", str(short_clip), "--node", node, "--exercise", "squat",
                              "--broker", f"127.0.0.1:{mosquitto.port}", "--realtime", "off"], timeout=600,
                         FORMCHECK_EDGE__POSE__MODEL=str(bundle), FORMCHECK_EDGE__MQTT__KEEPALIVE_S="5")
        assert edge.returncode == 0, edge.stderr[-3000:]
        assert rec.wait_for(lambda m: sum(x.topic.endswith("/frames") for x in m) >= FRAMES, 10)
        assert rec.wait_for(lambda m: any(x.topic.endswith("/status") and x.json()["state"] == "stopped"
                                          for x in m), 10)
    finally:
        rec.stop()
    frames = [FrameMessage.model_validate_json(m.payload) for m in rec.of_kind("frames")]
    assert [f.seq for f in frames] == list(range(FRAMES))

    # Pose found on every frame, classes from the model.
    assert all(f.phase != "no_person" and f.vis > 0.5 for f in frames), [f.phase for f in frames]
    assert all(f.phase in MODEL_PHASES and f.form in ("good", "bad") for f in frames)
    assert {"knee", "hip", "trunk_lean"} <= set(frames[0].angles)

    # The same decisions as on x86-64, and nearly the same angles.
    assert len(x86_frames) == FRAMES
    for pi_frame, x86 in zip(frames, x86_frames, strict=True):
        for angle in ("knee", "hip", "trunk_lean"):
            assert abs(pi_frame.angles[angle] - x86.angles[angle]) <= ANGLE_TOLERANCE_DEG, (
                f"frame {x86.seq}: {angle} {pi_frame.angles[angle]:.1f} on {board}, {x86.angles[angle]:.1f} on x86-64")
        top, second = sorted(x86.phase_p.values(), reverse=True)[:2]
        if top - second >= CLEAR_MARGIN:
            assert pi_frame.phase == x86.phase, f"frame {x86.seq}: {pi_frame.phase} on {board}, {x86.phase} on x86-64"
        assert pi_frame.form == x86.form or abs(pi_frame.bad_p - x86.bad_p) < CLEAR_MARGIN
