"""A command run in an install without its extra ends in one line naming the extra, not a traceback."""

from __future__ import annotations

import argparse

import pytest

from formcheck import cli


def test_a_missing_edge_package_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    def analyze(args: argparse.Namespace) -> int:
        raise ModuleNotFoundError("No module named 'cv2'", name="cv2")

    monkeypatch.setattr(cli, "cmd_analyze", analyze)
    assert cli.main(["analyze", "clip.mp4"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]
    assert err.startswith("formcheck: error: 'formcheck analyze' needs the edge packages, and cv2 is not installed")
    assert "pip install 'formcheck[edge]'" in err


def test_any_other_missing_module_is_a_bug_and_stays_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def analyze(args: argparse.Namespace) -> int:
        raise ModuleNotFoundError("No module named 'formcheck_edge.gone'", name="formcheck_edge.gone")

    monkeypatch.setattr(cli, "cmd_analyze", analyze)
    with pytest.raises(ModuleNotFoundError):
        cli.main(["analyze", "clip.mp4"])
