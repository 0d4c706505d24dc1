"""Ground-truth parsing, person groups, pose-cache keys and the missing-data path (no video decoding)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from formcheck_models.training.dataset import load_clips, person_group, pose_cache_path, read_ground_truth
from formcheck_models.training.train import train_main
from formcheck_runtime.paths import DataMissingError

HEADER = "path,exercise,view,complete_reps,partial_reps,bottom_frames,form,confidence\n"


def write_truth(folder: Path, *rows: str) -> Path:
    (folder / "ground_truth.csv").write_text(HEADER + "".join(f"{r}\n" for r in rows))
    return folder


def test_ground_truth_rows_of_one_exercise(tmp_path: Path) -> None:
    write_truth(
        tmp_path,
        "videos/squat/b.mp4,squat,side,2,0,10 40,good knees_in,high",
        "videos/squat/a.mp4,squat,rear,0,1,,,high",
        "videos/pushup/p.mp4,pushup,side,1,0,5,good,high",
    )
    clips = read_ground_truth(tmp_path, "squat")
    assert [c.name for c in clips] == ["a", "b"]
    assert clips[1].bottom_frames == (10, 40) and clips[1].form == ("good", "knees_in")
    assert clips[0].bottom_frames == () and clips[0].partial_reps == 1


def test_inconsistent_ground_truth_row_is_rejected(tmp_path: Path) -> None:
    write_truth(tmp_path, "videos/squat/b.mp4,squat,side,2,0,10,good,high")
    with pytest.raises(ValueError, match="2 reps"):
        read_ground_truth(tmp_path, "squat")


def test_clips_of_one_person_share_a_group() -> None:
    assert person_group("squat", "squat_side_bodyweight_b") == person_group("squat", "squat_side_bodyweight_too_deep")
    assert person_group("squat", "squat_front_bodyweight_a") == "squat_front_bodyweight_a"
    assert person_group("pushup", "pushup_side_01") == person_group("pushup", "pushup_front_14")
    assert person_group("pushup", "pushup_side_15") == "pushup_side_15"


def test_pose_cache_key_follows_the_video_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORMCHECK_CACHE", str(tmp_path / "cache"))
    video, model = tmp_path / "clip.mp4", tmp_path / "pose.task"
    video.write_bytes(b"video")
    model.write_bytes(b"model")
    first = pose_cache_path(video, model)
    assert first.parent == tmp_path / "cache" / "formcheck" / "poses"
    assert first.name.startswith("clip-")
    os.utime(video, ns=(1_000_000_000, 1_000_000_000))  # the same bytes copied again: the same track
    assert pose_cache_path(video, model) == first
    video.write_bytes(b"VIDEO")
    os.utime(video, ns=(2_000_000_000, 2_000_000_000))
    new_video = pose_cache_path(video, model)
    assert new_video != first
    model.write_bytes(b"MODEL")
    os.utime(model, ns=(3_000_000_000, 3_000_000_000))
    assert pose_cache_path(video, model) not in (first, new_video)


def test_listed_video_missing_is_a_data_error(tmp_path: Path) -> None:
    write_truth(tmp_path, "videos/squat/gone.mp4,squat,side,1,0,10,good,high")
    with pytest.raises(DataMissingError, match=r"gone\.mp4"):
        load_clips("squat", tmp_path)


def test_train_main_reports_missing_data_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FORMCHECK_DATA", str(tmp_path / "nowhere"))
    assert train_main("squat", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "FORMCHECK_DATA" in err
    assert not (tmp_path / "out").exists()


def test_train_main_rejects_an_unknown_exercise(capsys: pytest.CaptureFixture[str]) -> None:
    assert train_main("yoga") == 2
    assert "yoga" in capsys.readouterr().err
