"""Every clip's frame messages exactly as the edge publishes them, computed once and cached.

Evaluating the rep counter over the whole data set, many times (every candidate setting, every fold), must
not run pose estimation each time: the edge path runs once per clip and its messages are kept as JSON lines,
keyed by everything that shapes them: the video, the pose model, the decoder and pose runtime, the classifier
model, and the edge's own code. A changed input recomputes the entry, nothing else does.

An entry is computed in two steps, each cached: the clip's pose track (``dataset.load_poses``: decoding and the
pose model, 90 % of the cost, kept while the video, the pose model and the edge's decoding and pose code stay),
then the edge's per-frame path after the pose model played over it (``formcheck_edge.offline.replay_poses``:
body measures, classifier, fault rules; about 0.4 ms a frame). A change to the edge's classification code
therefore costs seconds, not the ~10 CPU-minutes of running the pose model over every clip again.
``tests/integration/test_edge_mqtt.py`` checks that a live edge publishes these messages frame for frame.

Files are keyed by their content, not their timestamps: a data set copied or unpacked again (new modification
times, same bytes) keeps its entries. Each file is hashed once per process while its size, modification time and
inode stay the same (``dataset.file_sha256``). Only the newest ``KEEP_PER_CLIP`` entries of a clip are kept
(checkouts at different commits share the cache; older entries would only grow it).
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from formcheck_edge.offline import offline_config, replay_poses
from formcheck_models.training.dataset import (
    CACHE_KEY_CHARS,
    KEEP_PER_CLIP,
    file_sha256,
    load_poses,
    pose_pipeline_id,
    prune,
)
from formcheck_protocol.messages import Exercise, FrameMessage
from formcheck_runtime.paths import POSE_MODEL, REPO_ROOT, cache_dir, classifier_model

_EDGE_CODE = ("edge_node/formcheck_edge", "protocol/formcheck_protocol")


@functools.cache
def _code_digest() -> str:
    digest = hashlib.sha256()
    for package in _EDGE_CODE:
        for path in sorted((REPO_ROOT / package).glob("*.py")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def frames_cache_path(video: Path, exercise: Exercise) -> Path:
    key = hashlib.sha256("|".join((
        file_sha256(video), exercise, file_sha256(POSE_MODEL), pose_pipeline_id(),
        file_sha256(classifier_model(exercise)), _code_digest(),
    )).encode()).hexdigest()[:CACHE_KEY_CHARS]
    return cache_dir() / "frames" / f"{video.stem}-{key}.jsonl"


def edge_frames(video: Path, exercise: Exercise) -> list[FrameMessage]:
    """The frame messages of ``video`` as a file-fed edge node set to ``exercise`` publishes them."""
    cached = frames_cache_path(video, exercise)
    try:
        return [FrameMessage.model_validate_json(line) for line in cached.read_text().splitlines()]
    except FileNotFoundError:
        pass  # not computed yet, or pruned by a run at another commit since
    track = load_poses(video, POSE_MODEL).track()
    frames = list(replay_poses(offline_config(video, node="eval", exercise=exercise), track))
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(frame.model_dump_json() + "\n" for frame in frames))
    tmp.replace(cached)
    prune(cached.parent, video.stem, ".jsonl", KEEP_PER_CLIP)
    return frames
