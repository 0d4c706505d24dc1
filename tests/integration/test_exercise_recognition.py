"""A station checked in without an exercise: the node recognises it from the pose and loses no frame or rep.

Real clips, the real edge per-frame path, a real Mosquitto. The accuracy of recognition over every clip of
the data set, held out by source, is checked by tests/conftest.py (``RECOGNITION_FLOOR``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from paho.mqtt import publish

from formcheck.local_services import Mosquitto
from formcheck_edge.analyze import analyze_frames, analyze_video
from formcheck_models.training.frame_cache import edge_frames
from tests.integration.mqtt_helpers import Recorder
from tests.integration.test_edge_mqtt import decoded_frames, edge_cmd, run_env

pytestmark = [pytest.mark.data]

PUSHUP = "videos/pushup/pushup_side_06.mp4"


def test_analyze_without_exercise_recognises_it_and_counts_as_if_named(data_dir: Path, pose_model: Path) -> None:
    clip = data_dir / PUSHUP
    recognised = analyze_video(clip)
    assert recognised.recognition is not None and recognised.recognition.exercise == "pushup"
    assert recognised.exercise == "pushup"
    assert recognised.frames == decoded_frames(clip)
    named = analyze_frames(edge_frames(clip, "pushup"), str(clip), "pushup")
    assert [(r.start_seq, r.end_seq, r.grade) for r in recognised.reps] == [
        (r.start_seq, r.end_seq, r.grade) for r in named.reps], "the held frames were classified as if named"


def test_cli_prints_what_it_recognised(data_dir: Path, pose_model: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "formcheck.cli", "analyze", str(data_dir / PUSHUP)],
                            capture_output=True, text=True, check=False, timeout=300, env=run_env())
    assert result.returncode == 0, result.stderr[-2000:]
    assert "recognised: pushup (confidence" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.broker
def test_node_checked_in_without_exercise_switches_to_the_recognised_one(
    mosquitto: Mosquitto, data_dir: Path, pose_model: Path
) -> None:
    clip = data_dir / PUSHUP
    expected = decoded_frames(clip)
    publish.single("gym/main/nodes/edge-r/session", json.dumps({"member": "m-18"}), qos=1, retain=True,
                   hostname=mosquitto.host, port=mosquitto.port)
    rec = Recorder(mosquitto.host, mosquitto.port, "gym/main/nodes/edge-r/#").start()
    try:
        result = subprocess.run(edge_cmd(clip, mosquitto.port, "edge-r", "--realtime", "off", "--exercise", "squat"),
                                capture_output=True, text=True, check=False, timeout=120, env=run_env())
        assert result.returncode == 0, result.stderr[-2000:]
        assert rec.wait_for(lambda m: sum(x.topic.endswith("/frames") for x in m) >= expected, 10)
    finally:
        rec.stop()
    frames = [m.json() for m in rec.of_kind("frames")]
    assert [f["seq"] for f in frames] == list(range(expected)), "every frame once, in order"
    with_person = [f["exercise"] for f in frames if f["phase"] != "no_person"]
    # The retained check-in arrives a few frames after the node starts (the file is read as fast as it goes):
    # frames before it are the node's own exercise; from it on, every frame is the recognised one.
    first = with_person.index("pushup")
    assert set(with_person[first:]) == {"pushup"}
    assert first <= 0.1 * len(with_person), f"check-in applied only at frame {first} of {len(with_person)}"
    statuses = [m.json() for m in rec.of_kind("status")]
    assert any(s.get("exercise") == "pushup" and "pushup" in (s.get("model") or "") for s in statuses), statuses
    assert "recognised pushup" in result.stderr
    assert "Traceback" not in result.stderr
