from __future__ import annotations

import pytest

from formcheck.docs_gen import DOCS, GENERATED


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_docs_are_current(name: str) -> None:
    path = DOCS / name
    assert path.is_file(), f"{path} missing: run python -m formcheck.docs_gen"
    assert path.read_text() == GENERATED[name](), f"{path} is stale: run python -m formcheck.docs_gen"


def test_every_repository_path_the_docs_and_comments_name_exists() -> None:
    """A doc or comment naming a test module or a page under docs/ must name a file that is there."""
    import re

    from formcheck_runtime.paths import REPO_ROOT

    named = re.compile(r"\b((?:tests/(?:unit|integration|reliability|browser)/test_\w+\.py)|(?:docs/[\w-]+\.md))\b")
    missing = set()
    for folder in ("aggregator", "edge_node", "formcheck", "protocol", "dashboards", "models", "bench", "tests",
                   "docs", "deploy", "mosquitto"):
        for path in (REPO_ROOT / folder).rglob("*"):
            if path.suffix in {".py", ".md"} and path.is_file():
                for match in named.finditer(path.read_text(errors="replace")):
                    if not (REPO_ROOT / match.group(1)).is_file():
                        missing.add(f"{path.relative_to(REPO_ROOT)} names {match.group(1)}")
    for match in named.finditer((REPO_ROOT / "README.md").read_text()):
        if not (REPO_ROOT / match.group(1)).is_file():
            missing.add(f"README.md names {match.group(1)}")
    assert not missing, sorted(missing)
