"""``formcheck stations qr``: the printed sheet's codes decode back to each station's page.

The PDF is rendered by poppler's ``pdftoppm`` (an independent reader, not this project's code) and the codes are
found and decoded on the rendered pages by OpenCV's QR detector; the PNG pages are decoded as written.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import pytest

from formcheck.cli import main as cli_main

STATIONS = [f"rack-{n}" for n in range(1, 8)] + ["curl.bench_2"]  # 8: a second page (6 per page)
BASE = "https://broker.gym.lan:9001/"


def qr(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The command run in this process (its import of OpenCV costs a second per subprocess): exit code, output."""
    code = cli_main(["stations", "qr", *args])
    out, err = capsys.readouterr()
    return code, out, err


def station_args() -> list[str]:
    return [arg for node in STATIONS for arg in ("--station", node)]


def decoded(page: Path) -> set[str]:
    found, texts, *_ = cv2.QRCodeDetector().detectAndDecodeMulti(cv2.imread(str(page), cv2.IMREAD_GRAYSCALE))
    return {text for text in texts if text} if found else set()


def expected(nodes: list[str]) -> set[str]:
    return {f"{BASE}?site=main&station={node}" for node in nodes}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing (Debian's poppler-utils): run 'make test-system-deps'", pytrace=False)
    return path


def test_the_pdf_sheet_prints_every_station_on_a4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sheet = tmp_path / "sheet.pdf"
    code, out, err = qr(capsys, "--url", BASE, *station_args(), "--out", str(sheet))
    assert code == 0, err
    assert out.splitlines()[0] == f"wrote {sheet}"
    info = subprocess.run([tool("pdfinfo"), str(sheet)], capture_output=True, text=True, check=True).stdout
    assert "Pages:           2" in info and "595.28 x 841.89 pts (A4)" in info, info
    # Rendered at 150 dpi, the resolution of the PNG sheet; each page's codes are this page's stations.
    subprocess.run([tool("pdftoppm"), "-r", "150", "-gray", "-png", str(sheet), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert [decoded(page) for page in pages] == [expected(STATIONS[:6]), expected(STATIONS[6:])]
    # The station names are text on the page (pdftotext reads them), each on its own line under its code.
    words = subprocess.run([tool("pdftotext"), "-layout", str(sheet), "-"], capture_output=True, text=True,
                           check=True).stdout.split()
    assert all(node in words for node in STATIONS), words
    assert words.count("Start") == len(STATIONS)


def test_the_png_sheet_has_the_same_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sheet = tmp_path / "sheet.png"
    code, out, err = qr(capsys, "--url", BASE, *station_args(), "-o", str(sheet))
    assert code == 0, err
    second = tmp_path / "sheet-2.png"
    assert out.splitlines()[:2] == [f"wrote {sheet}", f"wrote {second}"]
    assert [decoded(sheet), decoded(second)] == [expected(STATIONS[:6]), expected(STATIONS[6:])]


@pytest.mark.parametrize(("args", "message"), [
    (["--url", BASE, "--station", "rack-1", "--out", "sheet.jpg"],
     "the sheet is a PDF or a PNG: name it *.pdf or *.png, not 'sheet.jpg'"),
    (["--url", BASE, "--out", "sheet.pdf"], "no stations: name them with --station"),
    (["--url", "broker.gym.lan", "--station", "rack-1"], "--url must be the member page's http(s) address"),
    (["--url", BASE, "--station", "rack 1"], "invalid station id 'rack 1'"),
])
def test_bad_input_gets_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                 args: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)  # where a sheet named without a directory would go
    code, _, err = qr(capsys, *args)
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not list(tmp_path.iterdir())
