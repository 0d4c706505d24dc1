"""Every clip's frame messages exactly as the edge publishes them, computed once and cached.

Evaluating the rep counter over the whole data set, many times (every candidate setting, every fold), must
not run pose estimation each time: the edge path (``formcheck_edge.offline.classify_video``: decode, pose,
features, classifier, fault rules) runs once per clip and its messages are kept as JSON lines, keyed by
everything that shapes them: the video, the pose model, the decoder and pose runtime, the classifier
model, and the edge's own code. A changed input recomputes the entry, nothing else does.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from formcheck_edge.offline import classify_video, offline_config
from formcheck_models.training.dataset import file_sha256, pose_pipeline_id
from formcheck_protocol.messages import Exercise, FrameMessage
from formcheck_runtime.paths import POSE_MODEL, REPO_ROOT, cache_dir, classifier_model

_EDGE_CODE = ("edge_node/formcheck_edge", "protocol/formcheck_protocol")


def _code_digest() -> str:
    digest = hashlib.sha256()
    for package in _EDGE_CODE:
        for path in sorted((REPO_ROOT / package).glob("*.py")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def frames_cache_path(video: Path, exercise: Exercise) -> Path:
    stat = video.stat()
    key = hashlib.sha256("|".join((
        f"{stat.st_size}:{stat.st_mtime_ns}", exercise, file_sha256(POSE_MODEL), pose_pipeline_id(),
        file_sha256(classifier_model(exercise)), _code_digest(),
    )).encode()).hexdigest()[:16]
    return cache_dir() / "frames" / f"{video.stem}-{key}.jsonl"


def edge_frames(video: Path, exercise: Exercise) -> list[FrameMessage]:
    """The frame messages of ``video`` as a file-fed edge node set to ``exercise`` publishes them."""
    cached = frames_cache_path(video, exercise)
    if cached.is_file():
        return [FrameMessage.model_validate_json(line) for line in cached.read_text().splitlines()]
    frames = list(classify_video(offline_config(video, node="eval", exercise=exercise)))
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(frame.model_dump_json() + "\n" for frame in frames))
    tmp.replace(cached)
    return frames
