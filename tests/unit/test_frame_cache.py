"""The edge-frame cache's keys and size: a file is known by its bytes, and a clip keeps its newest entries only."""

from __future__ import annotations

import os
from pathlib import Path

from formcheck_models.training.dataset import file_sha256, prune


def test_a_copy_with_new_timestamps_keeps_its_digest_and_new_bytes_change_it(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"frames" * 1000)
    before = file_sha256(video)
    copy = tmp_path / "again" / "clip.mp4"
    copy.parent.mkdir()
    copy.write_bytes(video.read_bytes())
    os.utime(copy, ns=(1_000_000_000, 1_000_000_000))
    assert file_sha256(copy) == before
    video.write_bytes(b"frames" * 999 + b"FRAMES")
    os.utime(video, ns=(2_000_000_000, 2_000_000_000))  # a new size or time is what makes it look again
    assert file_sha256(video) != before


def test_prune_keeps_the_newest_entries_of_the_same_clip_only(tmp_path: Path) -> None:
    def entry(name: str, age_s: int) -> Path:
        path = tmp_path / name
        path.write_text("{}\n")
        os.utime(path, ns=(10**9 * (100 - age_s),) * 2)
        return path

    entries = [entry(f"squat_a-{key:016x}.jsonl", age) for key, age in enumerate((1, 5, 3, 9, 7))]
    other_clip = entry("squat_a-b-0000000000000009.jsonl", 50)  # clip "squat_a-b", not "squat_a"
    removed = prune(tmp_path, "squat_a", ".jsonl", keep=3)
    assert sorted(removed) == sorted([entries[3], entries[4]])
    assert sorted(p for p in tmp_path.iterdir()) == sorted([entries[0], entries[1], entries[2], other_clip])
