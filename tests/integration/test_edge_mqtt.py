"""Edge node against a real Mosquitto, observed by a real subscriber."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from formcheck.local_services import Mosquitto, free_port
from formcheck_edge.capture import open_video_file
from formcheck_models.training.frame_cache import edge_frames
from formcheck_protocol.messages import FrameMessage
from formcheck_runtime.paths import classifier_model
from tests.integration.mqtt_helpers import Recorder, states

SHORT_CLIP = "videos/squat/squat_side_bodyweight_b.mp4"
LONG_CLIP = "videos/squat/squat_side_barbell_a.mp4"


def decoded_frames(path: Path) -> int:
    cap = open_video_file(path)
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


def edge_cmd(clip: Path, port: int, node: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "formcheck.cli", "edge", "--source", str(clip), "--node", node,
            "--broker", f"127.0.0.1:{port}", *extra]


def run_env() -> dict[str, str]:
    return {**os.environ, "FORMCHECK_EDGE__MQTT__KEEPALIVE_S": "2", "FORMCHECK_EDGE__STATS__INTERVAL_S": "0.5"}


def test_clip_yields_one_message_per_decoded_frame(mosquitto: Mosquitto, data_dir: Path, pose_model: Path) -> None:
    clip = data_dir / SHORT_CLIP
    expected = decoded_frames(clip)
    rec = Recorder(mosquitto.host, mosquitto.port, "gym/main/nodes/edge-a/#").start()
    try:
        result = subprocess.run(edge_cmd(clip, mosquitto.port, "edge-a", "--realtime", "off"),
                                capture_output=True, text=True, check=False, timeout=120, env=run_env())
        assert result.returncode == 0, result.stderr[-2000:]
        assert rec.wait_for(lambda m: sum(x.topic.endswith("/frames") for x in m) >= expected, 10)
        assert rec.wait_for(lambda m: "stopped" in [x.json()["state"] for x in m if x.topic.endswith("/status")], 5)
    finally:
        rec.stop()
    frames = [m.json() for m in rec.of_kind("frames")]
    assert len(frames) == expected
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(expected)), "seq must increase by one per frame, in order"
    assert len({f["boot"] for f in frames}) == 1
    ts = [f["ts"] for f in frames]
    assert ts == sorted(ts)
    assert {f["node"] for f in frames} == {"edge-a"}
    # A person squats in this clip: the classifier must see more than one phase.
    assert {f["phase"] for f in frames} >= {"standing", "bottom"}
    assert states(rec) == ["online", "stopped"]
    assert rec.of_kind("stats"), "stats are published while running"
    assert "Traceback" not in result.stderr
    # Two threads (the pose loop, the classify stage) publish exactly what the single-threaded offline path computes
    # (formcheck analyze, the frame cache), frame for frame; only the capture clock and the node's ids differ.
    own = {"ts", "node", "boot"}
    offline = [f.model_dump(exclude=own) for f in edge_frames(clip, "squat")]
    assert [FrameMessage.model_validate(f).model_dump(exclude=own) for f in frames] == offline


def test_killed_node_goes_offline_and_retained(mosquitto: Mosquitto, data_dir: Path, pose_model: Path) -> None:
    rec = Recorder(mosquitto.host, mosquitto.port, "gym/main/nodes/edge-k/status").start()
    proc = subprocess.Popen(edge_cmd(data_dir / LONG_CLIP, mosquitto.port, "edge-k"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=run_env())
    try:
        assert rec.wait_for(lambda m: any(x.json()["state"] == "online" for x in m), 60), "node never came online"
        killed_at = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=5)
        assert rec.wait_for(lambda m: m[-1].json()["state"] == "offline", 5)
        offline = rec.of_kind("status")[-1]
        assert offline.at - killed_at < 1.0, "Last Will must arrive within 1 s of the kill"
    finally:
        rec.stop()
        if proc.poll() is None:
            proc.kill()
    # A late subscriber sees the retained offline state.
    late = Recorder(mosquitto.host, mosquitto.port, "gym/main/nodes/edge-k/status").start()
    try:
        assert late.wait_for(lambda m: bool(m), 5)
        assert late.messages[-1].retain
        assert late.messages[-1].json()["state"] == "offline"
    finally:
        late.stop()


def test_sigterm_is_a_clean_stop(mosquitto: Mosquitto, data_dir: Path, pose_model: Path) -> None:
    rec = Recorder(mosquitto.host, mosquitto.port, "gym/main/nodes/edge-t/#").start()
    proc = subprocess.Popen(edge_cmd(data_dir / LONG_CLIP, mosquitto.port, "edge-t"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=run_env())
    try:
        assert rec.wait_for(lambda m: sum(x.topic.endswith("/frames") for x in m) >= 10, 60)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
        assert proc.returncode == 0, stderr[-2000:]
        assert rec.wait_for(lambda m: "stopped" in [x.json()["state"] for x in m if x.topic.endswith("/status")], 5)
    finally:
        rec.stop()
        if proc.poll() is None:
            proc.kill()
    assert states(rec) == ["online", "stopped"]
    assert "Traceback" not in stderr


@pytest.mark.operations
def test_broker_down_at_start_is_not_fatal_but_a_file_run_says_it_failed(data_dir: Path, pose_model: Path) -> None:
    """The node keeps classifying without a broker; a file run whose frames never arrived ends in failure."""
    clip = data_dir / SHORT_CLIP
    port = free_port()  # nothing listens here
    env = {**run_env(), "FORMCHECK_EDGE__MQTT__CONNECT_TIMEOUT_S": "1"}
    result = subprocess.run(edge_cmd(clip, port, "edge-d", "--realtime", "off"),
                            capture_output=True, text=True, check=False, timeout=120, env=env)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "not reachable yet (connection refused" in result.stderr
    frames = decoded_frames(clip)
    assert f"{frames} never published" in result.stderr
    assert f"{frames} of {frames} frames never reached the broker" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "/nonexistent/clip.mp4", "--node", "n1"], "video file not found"),
        (["--source", "0", "--node", "bad/id"], "node.id"),
        (["--source", "{clip}"], "node.id: required, it has no default"),
        (["--config", "/nonexistent.yaml"], "cannot read config file"),
        (["--source", "pyproject.toml", "--node", "n1"], "cannot open video source"),
        (["--source", "{clip}", "--node", "n1", "--model", "/nonexistent/model.tflite"], "classifier model not found"),
        (["--source", "{clip}", "--node", "n1", "--model", "{stale_model}"], "trained on feature spec"),
    ],
)
def test_user_mistakes_give_one_line_and_status_2(
    args: list[str], message: str, data_dir: Path, tmp_path: Path
) -> None:
    stale = tmp_path / "stale.tflite"
    stale.write_bytes(classifier_model("squat").read_bytes())
    manifest = json.loads(classifier_model("squat").with_suffix(".json").read_text())
    stale.with_suffix(".json").write_text(json.dumps({**manifest, "feature_spec_hash": "0000000000000000"}))
    args = [a.format(clip=data_dir / SHORT_CLIP, stale_model=stale) for a in args]
    result = subprocess.run([sys.executable, "-m", "formcheck.cli", "edge", *args],
                            capture_output=True, text=True, check=False, timeout=60, env=run_env(),
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("formcheck: error:")]
    assert len(errors) == 1, result.stderr
    assert message in errors[0]
    assert "Traceback" not in result.stderr


def test_session_for_an_exercise_without_model_keeps_the_current_one(
    mosquitto: Mosquitto, data_dir: Path, pose_model: Path
) -> None:
    """A node given one model file (classifier.model) has no model for another exercise a check-in names."""
    from paho.mqtt import publish

    session = json.dumps({"member": "m-17", "exercise": "pushup"})
    publish.single("gym/main/nodes/edge-s/session", session, qos=1, retain=True,
                   hostname=mosquitto.host, port=mosquitto.port)
    rec = Recorder(mosquitto.host, mosquitto.port, "gym/main/nodes/edge-s/frames").start()
    env = {**run_env(), "FORMCHECK_EDGE__CLASSIFIER__MODEL": str(classifier_model("squat"))}
    try:
        result = subprocess.run(edge_cmd(data_dir / SHORT_CLIP, mosquitto.port, "edge-s", "--realtime", "off"),
                                capture_output=True, text=True, check=False, timeout=120, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        assert rec.wait_for(lambda m: len(m) >= decoded_frames(data_dir / SHORT_CLIP), 10)
    finally:
        rec.stop()
    assert "asks for pushup but no model exists" in result.stderr
    assert {m.json()["exercise"] for m in rec.of_kind("frames")} == {"squat"}


def test_lunge_runs_with_its_own_model(mosquitto: Mosquitto, data_dir: Path, pose_model: Path) -> None:
    """A lunge station classifies with the lunge model (no stand-in): its frames and status say lunge."""
    rec = Recorder(mosquitto.host, mosquitto.port, "gym/main/nodes/edge-l/#").start()
    try:
        result = subprocess.run(edge_cmd(data_dir / SHORT_CLIP, mosquitto.port, "edge-l", "--realtime", "off",
                                         "--exercise", "lunge"),
                                capture_output=True, text=True, check=False, timeout=120, env=run_env())
        assert result.returncode == 0, result.stderr[-2000:]
        assert rec.wait_for(lambda m: sum(x.topic.endswith("/frames") for x in m) >= decoded_frames(
            data_dir / SHORT_CLIP), 10)
    finally:
        rec.stop()
    assert {m.json()["exercise"] for m in rec.of_kind("frames")} == {"lunge"}
    status = rec.of_kind("status")[0].json()
    assert status["exercise"] == "lunge" and status["model"].startswith("lunge_phase_form@"), status
    assert "form model is trained" not in result.stderr
