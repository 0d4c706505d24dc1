from __future__ import annotations

import pytest

from formcheck.docs_gen import DOCS, GENERATED


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_docs_are_current(name: str) -> None:
    path = DOCS / name
    assert path.is_file(), f"{path} missing: run python -m formcheck.docs_gen"
    assert path.read_text() == GENERATED[name](), f"{path} is stale: run python -m formcheck.docs_gen"
