"""``formcheck stations qr``: a printable A4 sheet, PDF or PNG (150 dpi), with one QR code per station.

Each code opens the member page on that station (``URL?site=SITE&station=NODE``): the member signs in and taps
Start. The codes come from OpenCV's QR encoder (already an edge dependency); the PDF is written here, a few
objects by hand (the codes as images, the names in a font every PDF reader has), so nothing else is installed.
"""

from __future__ import annotations

import zlib
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
        raise QrError(f"--url must be the member page's http(s) address, e.g. https://broker.gym.lan:9001/, "
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
            _centred_text(sheet, HELP, cx, top + size + 90, 0.8, 2)
            cv2.rectangle(sheet, (x0 + 5, y0 + 5), (x0 + cell_w - 5, y0 + cell_h - 5), (200,), 1)
        pages.append(sheet)
    return pages


# A4 in PostScript points (1/72 inch).
A4_W, A4_H = 595.28, 841.89
PDF_MARGIN = 36.0  # half an inch: inside every printer's unprintable border
QUIET_MODULES = 4  # the light border a QR code needs around it (ISO/IEC 18004)
NAME_PT, HELP_PT = 20.0, 10.0
HELP = "Scan, sign in, tap Start"
# Courier is one of the 14 fonts every PDF reader has, and monospaced (every glyph 0.6 em wide): a line's width
# is its length times that, so names are centred without embedding font metrics.
COURIER_EM = 0.6


def _pdf_string(text: str) -> bytes:
    """A PDF literal string (station ids are ASCII letters, digits, ``_ . -``; the help line is ASCII)."""
    return b"(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("ascii") + b")"


def _centred(font: bytes, size: float, text: str, centre_x: float, baseline: float) -> bytes:
    x = centre_x - COURIER_EM * size * len(text) / 2
    return b"BT /%s %.2f Tf %.2f %.2f Td %s Tj ET\n" % (font, size, x, baseline, _pdf_string(text))


def render_pdf(urls: Sequence[tuple[str, str]]) -> bytes:
    """A4 pages laid out like the PNG sheet: per station the code (one image pixel per module, scaled by the
    reader, so it prints sharp at any resolution), the station's name and a line of help."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)  # the object's number

    def stream(header: bytes, data: bytes) -> int:
        return add(b"<< " + header + b" /Length %d >>\nstream\n" % len(data) + data + b"\nendstream")

    catalog, pages = add(b""), add(b"")  # written once the pages are known
    fonts = b"/F1 %d 0 R /F2 %d 0 R" % (
        add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier-Bold /Encoding /WinAnsiEncoding >>"),
        add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier /Encoding /WinAnsiEncoding >>"))
    cell_w, cell_h = (A4_W - 2 * PDF_MARGIN) / COLUMNS, (A4_H - 2 * PDF_MARGIN) / ROWS
    size = min(cell_w, cell_h) - 70  # the code with its quiet zone; the rest of the cell holds the two lines
    kids = []
    for start in range(0, len(urls), COLUMNS * ROWS):
        content = bytearray(b"0.75 G 0.5 w\n")
        images = []
        for index, (node, url) in enumerate(urls[start:start + COLUMNS * ROWS]):
            col, row = index % COLUMNS, index // COLUMNS
            x0, y0 = PDF_MARGIN + col * cell_w, A4_H - PDF_MARGIN - (row + 1) * cell_h  # origin: bottom left
            content += b"%.2f %.2f %.2f %.2f re S\n" % (x0 + 4, y0 + 4, cell_w - 8, cell_h - 8)
            code = np.pad(qr_matrix(url), QUIET_MODULES, constant_values=255)
            images.append(stream(b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
                                 b"/BitsPerComponent 8 /Filter /FlateDecode" % (code.shape[1], code.shape[0]),
                                 zlib.compress(np.ascontiguousarray(code).tobytes(), 9)))
            cx, top = x0 + cell_w / 2, y0 + cell_h - 14
            content += b"q %.2f 0 0 %.2f %.2f %.2f cm /Im%d Do Q\n0 g\n" % (size, size, cx - size / 2, top - size,
                                                                             len(images))
            content += _centred(b"F1", NAME_PT, node, cx, top - size - 22)
            content += _centred(b"F2", HELP_PT, HELP, cx, top - size - 38)
        xobjects = b" ".join(b"/Im%d %d 0 R" % (n, obj) for n, obj in enumerate(images, start=1))
        kids.append(add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %.2f %.2f] /Contents %d 0 R "
                        b"/Resources << /Font << %s >> /XObject << %s >> >> >>"
                        % (pages, A4_W, A4_H, stream(b"", bytes(content)), fonts, xobjects)))
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages
    objects[pages - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids),
                                                                        len(kids))
    # The cross-reference table: every object's byte offset, so readers find them without scanning.
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, catalog, xref)
    return bytes(out)


def write_sheet(output: Path, urls: Sequence[tuple[str, str]]) -> list[Path]:
    """A PDF (every page in ``output``) or PNG page(s) (``output`` for the first, then -2, -3 ...), chosen by the
    file name; the paths written."""
    if not urls:
        raise QrError("no stations: name them with --station, or give --accounts DIR with node accounts")
    suffix = output.suffix.lower()
    if suffix == ".pdf":
        try:
            output.write_bytes(render_pdf(urls))
        except OSError as exc:
            raise QrError(f"cannot write {output}: {exc.strerror or exc}") from exc
        return [output]
    if suffix != ".png":
        raise QrError(f"the sheet is a PDF or a PNG: name it *.pdf or *.png, not {output.name!r}")
    written = []
    for number, page in enumerate(render_sheet(urls), start=1):
        path = output if number == 1 else output.with_name(f"{output.stem}-{number}{output.suffix}")
        if not cv2.imwrite(str(path), page):
            raise QrError(f"cannot write {path}")
        written.append(path)
    return written
