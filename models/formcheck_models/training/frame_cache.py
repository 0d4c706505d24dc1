"""Every clip's frame messages exactly as the edge publishes them, computed once and cached.

Evaluating the rep counter over the whole data set, many times (every candidate setting, every fold), must
not run pose estimation each time: the edge path (``formcheck_edge.offline.classify_video``: decode, pose,
features, classifier, fault rules) runs once per clip and its messages are kept as JSON lines, keyed by
everything that shapes them: the video, the pose model, the decoder and pose runtime, the classifier
model, and the edge's own code. A changed input recomputes the entry, nothing else does.

Files are keyed by their content, not their timestamps: a data set copied or unpacked again (new modification
times, same bytes) keeps its entries, which cost ~10 CPU-minutes to recompute. Each file is hashed once per
process while its size, modification time and inode stay the same (``dataset.file_sha256``). Only the newest
``KEEP_PER_CLIP`` entries of a clip are kept (checkouts at different commits share the cache; older entries
would only grow it).
"""

from __future__ import annotations

import functools
import glob
import hashlib
import os
from pathlib import Path
from typing import Final

from formcheck_edge.offline import classify_video, offline_config
from formcheck_models.training.dataset import file_sha256, pose_pipeline_id
from formcheck_protocol.messages import Exercise, FrameMessage
from formcheck_runtime.paths import POSE_MODEL, REPO_ROOT, cache_dir, classifier_model

_EDGE_CODE = ("edge_node/formcheck_edge", "protocol/formcheck_protocol")
KEEP_PER_CLIP: Final = 3
_KEY_CHARS: Final = 16


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
    )).encode()).hexdigest()[:_KEY_CHARS]
    return cache_dir() / "frames" / f"{video.stem}-{key}.jsonl"


def edge_frames(video: Path, exercise: Exercise) -> list[FrameMessage]:
    """The frame messages of ``video`` as a file-fed edge node set to ``exercise`` publishes them."""
    cached = frames_cache_path(video, exercise)
    try:
        return [FrameMessage.model_validate_json(line) for line in cached.read_text().splitlines()]
    except FileNotFoundError:
        pass  # not computed yet, or pruned by a run at another commit since
    frames = list(classify_video(offline_config(video, node="eval", exercise=exercise)))
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(frame.model_dump_json() + "\n" for frame in frames))
    tmp.replace(cached)
    prune(cached.parent, video.stem)
    return frames


def prune(folder: Path, clip: str, keep: int = KEEP_PER_CLIP) -> list[Path]:
    """Remove all but the ``keep`` newest entries of ``clip`` in ``folder``; returns what was removed."""
    siblings = sorted(folder.glob(f"{glob.escape(clip)}-{'?' * _KEY_CHARS}.jsonl"),
                      key=lambda p: p.stat().st_mtime_ns, reverse=True)
    removed = siblings[keep:]
    for old in removed:
        old.unlink(missing_ok=True)
    return removed
