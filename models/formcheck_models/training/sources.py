"""Which public repository each clip of the data set came from: the group of leave-one-source-out evaluation.

The data README lists every video with its source ("repository : path @ commit; blob"). Clips of one source
share a person, a camera or a gym far more often than clips of different sources, so a held-out figure is
only honest when all clips of a source are held out together.
"""

from __future__ import annotations

from pathlib import Path

README = "README.md"


class SourceTableError(ValueError):
    """The data README does not name a source for a clip of ground_truth.csv."""


def clip_sources(data_dir: Path, clip_paths: set[str]) -> dict[str, str]:
    """Source repository (``owner/name``) of each of ``clip_paths`` (data-set-relative video paths)."""
    sources: dict[str, str] = {}
    for line in (data_dir / README).read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3:
            continue
        path = cells[0].strip("`")
        if path in clip_paths and " : " in cells[2]:
            sources[path] = cells[2].split(" : ", 1)[0].strip()
    missing = sorted(clip_paths - set(sources))
    if missing:
        raise SourceTableError(f"{README} names no source for {len(missing)} clip(s), e.g. {missing[0]}")
    return sources
