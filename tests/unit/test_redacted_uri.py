"""Camera URLs in log lines never show a password."""

from __future__ import annotations

import pytest

from formcheck_edge.capture import redacted


@pytest.mark.security
@pytest.mark.parametrize(("uri", "shown"), [
    ("rtsp://admin:hunter2@10.0.0.5:554/stream1", "rtsp://admin:***@10.0.0.5:554/stream1"),
    ("rtsp://admin:p@ss:w0rd@cam.lan/live", "rtsp://admin:***@cam.lan/live"),
    ("http://user@cam.lan/mjpeg", "http://user@cam.lan/mjpeg"),
    ("rtsp://cam.lan/live?x=a@b", "rtsp://cam.lan/live?x=a@b"),
    ("rtsp://cam.lan:554/live", "rtsp://cam.lan:554/live"),
    ("0", "0"),
    ("/videos/clip.mp4", "/videos/clip.mp4"),
    ("picamera2", "picamera2"),
])
def test_password_is_masked(uri: str, shown: str) -> None:
    assert redacted(uri) == shown
