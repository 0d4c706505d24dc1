"""``formcheck stations qr``: a printable sheet (PNG, A4 at 150 dpi) with one QR code per station.

Each code opens the member page on that station (``URL?site=SITE&station=NODE``): the member signs in and taps
Start. Drawn with OpenCV's QR encoder (already an edge dependency), so nothing else is installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import cv2
import numpy as np
import numpy.typing as npt

from formcheck_protocol.topics import level

PAGE_W, PAGE_H = 1240, 1754  # A4 at 150 dpi
COLUMNS, ROWS = 2, 3
MARGIN = 60


class QrError(ValueError):
    """The sheet cannot be made; the message is one line for the operator."""


def station_url(base: str, site: str, node: str, wss_port: int | None = None) -> str:
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise QrError(f"--url must be the member page's http(s) address, e.g. http://broker.gym.lan:8080/, "
                      f"not {base!r}")
    query = {"site": level(site, "site id"), "station": level(node, "station id")}
    if wss_port is not None:
        query["wss"] = str(wss_port)
    path = parts.path or "/"
    return f"{parts.scheme}://{parts.netloc}{path}?{urlencode(query)}"


def qr_matrix(text: str) -> npt.NDArray[np.uint8]:
    """The code's modules, 0 = dark, 255 = light, without a quiet zone."""
    encoder = cv2.QRCodeEncoder.create()
    image = encoder.encode(text)
    if image is None or image.size == 0:
        raise QrError(f"cannot encode {text!r} as a QR code")
    matrix = np.asarray(image, dtype=np.uint8)
    # OpenCV adds a quiet zone of its own: trim it, the sheet adds a wider one.
    dark = np.argwhere(matrix == 0)
    (top, left), (bottom, right) = dark.min(axis=0), dark.max(axis=0)
    return matrix[top:bottom + 1, left:right + 1]


def _centred_text(sheet: npt.NDArray[np.uint8], text: str, centre_x: int, y: int, scale: float, thick: int) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    (width, _), _ = cv2.getTextSize(text, font, scale, thick)
    cv2.putText(sheet, text, (centre_x - width // 2, y), font, scale, (0,), thick, cv2.LINE_AA)


def render_sheet(urls: Sequence[tuple[str, str]]) -> list[npt.NDArray[np.uint8]]:
    """One or more A4 pages (grey images) with a code, the station's name and a line of help per station."""
    per_page = COLUMNS * ROWS
    cell_w = (PAGE_W - 2 * MARGIN) // COLUMNS
    cell_h = (PAGE_H - 2 * MARGIN) // ROWS
    pages = []
    for start in range(0, len(urls), per_page):
        sheet = np.full((PAGE_H, PAGE_W), 255, dtype=np.uint8)
        for index, (node, url) in enumerate(urls[start:start + per_page]):
            col, row = index % COLUMNS, index // COLUMNS
            x0, y0 = MARGIN + col * cell_w, MARGIN + row * cell_h
            matrix = qr_matrix(url)
            module = max(1, (min(cell_w, cell_h) - 170) // (matrix.shape[0] + 8))
            code = cv2.resize(matrix, None, fx=module, fy=module, interpolation=cv2.INTER_NEAREST)
            size = code.shape[0]
            cx = x0 + cell_w // 2
            top = y0 + 20
            sheet[top:top + size, cx - size // 2:cx - size // 2 + size] = code
            _centred_text(sheet, node, cx, top + size + 50, 1.3, 3)
            _centred_text(sheet, "Scan, sign in, tap Start", cx, top + size + 90, 0.8, 2)
            cv2.rectangle(sheet, (x0 + 5, y0 + 5), (x0 + cell_w - 5, y0 + cell_h - 5), (200,), 1)
        pages.append(sheet)
    return pages


def write_sheet(output: Path, urls: Sequence[tuple[str, str]]) -> list[Path]:
    """PNG page(s): ``output`` for the first, ``output`` with -2, -3 ... for the next; the paths written."""
    if not urls:
        raise QrError("no stations: name them with --station, or give --accounts DIR with node accounts")
    if output.suffix.lower() != ".png":
        raise QrError(f"the sheet is a PNG: name it *.png, not {output.name!r}")
    written = []
    for number, page in enumerate(render_sheet(urls), start=1):
        path = output if number == 1 else output.with_name(f"{output.stem}-{number}{output.suffix}")
        if not cv2.imwrite(str(path), page):
            raise QrError(f"cannot write {path}")
        written.append(path)
    return written
