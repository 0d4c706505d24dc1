"""Video sources and the capture thread that feeds the inference loop.

Capture runs in its own thread so decoding overlaps with inference. Live
sources (cameras, streams, files played in real time) push into a bounded
queue that drops the oldest frame when inference falls behind; a file read
as fast as possible waits instead, so every decoded frame is classified.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from formcheck_edge.config import SourceSection
from formcheck_runtime.queues import DropQueue, QueueClosed
from formcheck_runtime.ratelog import growing_interval

log = logging.getLogger(__name__)

RgbImage = npt.NDArray[np.uint8]


class SourceError(RuntimeError):
    """A video source cannot be opened or read; one line for the operator."""


@dataclass(frozen=True)
class CapturedFrame:
    """One decoded frame with its capture time."""

    index: int
    ts_ms: int
    rgb: RgbImage


class FrameSource(Protocol):
    kind: str
    live: bool
    fps: float | None

    def read(self) -> RgbImage | None:
        """Next RGB frame, ``None`` at end of file or when the device stops delivering."""
        ...

    def close(self) -> None: ...


def redacted(uri: str) -> str:
    """``uri`` fit for a log line: a password in it (``rtsp://user:secret@host``) becomes ``***``."""
    if "://" not in uri:
        return uri
    scheme, rest = uri.split("://", 1)
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return uri
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}{slash}{path}"


def source_kind(uri: str) -> str:
    """file, camera, url or picamera2."""
    if uri == "picamera2":
        return "picamera2"
    if uri.isdigit():
        return "camera"
    if "://" in uri:
        return "url"
    return "file"


def open_video_file(path: Path) -> cv2.VideoCapture:
    """A video file opened for decoding upright: the container's rotation flag applied.

    Phones store portrait video as landscape frames plus a rotation flag. OpenCV 4's FFmpeg backend ignores
    the flag unless asked (OpenCV 5 applies it by default): the lifter would lie on their side in every frame
    and every vertical measure (hip depth, trunk lean) would be wrong. Every reader of video files (the edge,
    training, benchmarks) opens them here.
    """
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1.0)
    return cap


class OpenCvSource:
    """Camera (V4L2), video file, or RTSP/HTTP stream through OpenCV."""

    def __init__(self, cfg: SourceSection) -> None:
        self.kind = source_kind(cfg.uri)
        self.live = self.kind != "file"
        if self.kind == "camera":
            cap = cv2.VideoCapture(int(cfg.uri), cv2.CAP_V4L2)
            for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, cfg.width), (cv2.CAP_PROP_FRAME_HEIGHT, cfg.height),
                                (cv2.CAP_PROP_FPS, cfg.fps)):
                if value:
                    cap.set(prop, float(value))
        elif self.kind == "url":
            timeout_ms = int(cfg.read_timeout_s * 1000)
            cap = cv2.VideoCapture(
                cfg.uri, cv2.CAP_FFMPEG,
                [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms],
            )
            cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1.0)  # a phone streaming portrait video flags it too
        else:
            path = Path(cfg.uri)
            if path.is_dir():
                raise SourceError(f"{path} is a directory, not a video file")
            if not path.is_file():
                raise SourceError(f"video file not found: {path}")
            cap = open_video_file(path)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open video source {redacted(cfg.uri)!r} ({self.kind})")
        self._cap = cap
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if self.kind == "file" else 0
        self.frame_count: int | None = count if count > 0 else None
        """Frames the file's header announces (None for live sources): a file that ends well short was cut."""
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 1.0 <= fps <= 240.0 else None

    def read(self) -> RgbImage | None:
        ok, frame = self._cap.read()
        if not ok or frame is None:
            return None
        rgb: RgbImage = np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        return rgb

    def skip(self) -> bool:
        """Take the next frame without converting it (an idle node does not look at it); False at the end.

        A camera's frame is not even decoded (V4L2 hands over the buffer; the MJPEG/YUYV conversion happens in
        ``retrieve``); a file or stream is still decoded, inter-coded video cannot skip that.
        """
        return bool(self._cap.grab())

    def close(self) -> None:
        self._cap.release()


class Picamera2Source:
    """Raspberry Pi camera module through Picamera2 (libcamera)."""

    kind = "picamera2"
    live = True

    def __init__(self, cfg: SourceSection) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise SourceError("source 'picamera2' needs the python3-picamera2 package (Raspberry Pi OS)") from exc
        try:
            self._cam = Picamera2()
            size = (cfg.width or 640, cfg.height or 480)
            config = self._cam.create_video_configuration(main={"size": size, "format": "RGB888"})
            self._cam.configure(config)
            if cfg.fps:
                self._cam.set_controls({"FrameRate": cfg.fps})
            self._cam.start()
        except Exception as exc:
            raise SourceError(f"cannot open the Raspberry Pi camera: {exc}") from exc
        self.fps = cfg.fps

    def read(self) -> RgbImage | None:
        try:
            # Picamera2's "RGB888" is BGR byte order in memory.
            frame = self._cam.capture_array("main")
        except Exception:  # noqa: BLE001 - camera unplugged mid-run surfaces as assorted errors
            return None
        rgb: RgbImage = np.ascontiguousarray(frame[:, :, 2::-1], dtype=np.uint8)
        return rgb

    def close(self) -> None:
        self._cam.close()


def open_source(cfg: SourceSection) -> FrameSource:
    """Open the configured source or raise :class:`SourceError`."""
    if source_kind(cfg.uri) == "picamera2":
        return Picamera2Source(cfg)
    return OpenCvSource(cfg)


def file_frame_ts(start_ms: int, index: int, fps: float) -> int:
    """Capture time of frame ``index`` of a file played from ``start_ms``: whole milliseconds from the file's frame
    rate, rounded per frame from a whole-millisecond start.

    The pose landmarker smooths landmarks over the intervals between timestamps: intervals that follow the
    wall clock's sub-millisecond phase (33 or 34 ms in another order on each run of a 29.92 frames/s clip) move
    landmarks by up to 2 cm and flipped a borderline rep. Rounded from a whole start, the intervals are the same
    on every run and the same as the training set's pose tracks (``formcheck_models.training.dataset``), so a
    file gives the same frames whenever it is played.
    """
    return start_ms + round(index * 1000.0 / fps)


_SKIPPED: RgbImage = np.zeros((0, 0, 3), dtype=np.uint8)
"""Stands for a frame taken from the source but not converted (``CaptureThread.stride``)."""


class CaptureThread(threading.Thread):
    """Reads a source into a :class:`DropQueue` until end of file or :meth:`stop`."""

    def __init__(self, cfg: SourceSection, source: FrameSource | None, frames: DropQueue[CapturedFrame]) -> None:
        """``source`` None: a live source (camera, stream) not ready yet, opened with backoff once running."""
        super().__init__(name="capture", daemon=True)
        self._cfg = cfg
        self._source: FrameSource | None = source
        self._frames = frames
        self._stop_event = threading.Event()
        self.captured = 0
        self.reopened = 0
        self.open_failures = 0
        self.kind = source.kind if source is not None else source_kind(cfg.uri)
        self.error: str | None = None
        # Files read faster than real time get capture times from their own
        # frame rate, so downstream timing (tempo, rest) matches the video.
        self._paced = source is None or source.live or cfg.realtime
        self._fps = (source.fps if source is not None else None) or 30.0
        self.stride = 1
        """Deliver only frames whose index is a multiple of this (an idle node's ``IdleWatch.stride``); the
        others are taken from the source without being converted or queued."""

    @property
    def source_ok(self) -> bool:
        """The source is open (False while a lost or not yet ready camera is being retried)."""
        return self._source is not None

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        start_ms = int(time.time() * 1000)
        start_mono = time.monotonic()
        index = 0
        try:
            while not self._stop_event.is_set():
                source = self._source or self._reopen()
                if source is None:
                    break
                stride = self.stride
                skip = getattr(source, "skip", None) if stride > 1 and index % stride else None
                if skip is not None:
                    rgb: RgbImage | None = _SKIPPED if skip() else None
                else:
                    rgb = source.read()
                if rgb is None:
                    if not source.live:
                        announced = getattr(source, "frame_count", None)
                        if announced is not None and index < announced - max(2, announced // 50):
                            log.warning("the video file ended early: %d of the %d frames its header announces "
                                        "could be decoded (cut off or damaged); graded up to there", index,
                                        announced)
                        else:
                            log.info("end of video after %d frames", index)
                        break
                    log.warning("video source %r stopped delivering frames; reopening", redacted(self._cfg.uri))
                    source.close()
                    self._source = None
                    continue
                if source.live:
                    ts = int(time.time() * 1000)
                elif self._cfg.realtime:
                    due = start_mono + index / self._fps
                    delay = due - time.monotonic()
                    if delay > 0 and self._stop_event.wait(delay):
                        break
                    ts = file_frame_ts(start_ms, index, self._fps)
                else:
                    ts = file_frame_ts(start_ms, index, self._fps)
                index += 1
                self.captured = index
                if rgb is _SKIPPED:
                    continue
                frame = CapturedFrame(index=index - 1, ts_ms=ts, rgb=rgb)
                if self._paced:
                    self._frames.put(frame)
                else:
                    while not self._frames.put_wait(frame, timeout=0.2):
                        if self._stop_event.is_set():
                            return
        except QueueClosed:
            pass
        finally:
            if self._source is not None:
                self._source.close()
            self._frames.close()

    def _reopen(self) -> FrameSource | None:
        """Reopen a lost live source with exponential backoff; ``None`` once stopped."""
        delay = self._cfg.reconnect_s
        while not self._stop_event.wait(delay):
            try:
                self._source = open_source(self._cfg)
            except SourceError as exc:
                self.open_failures += 1
                if growing_interval(self.open_failures):
                    log.warning("%s (%d attempts so far); retrying every %.0f s at most", exc, self.open_failures,
                                self._cfg.reconnect_max_s)
                delay = min(delay * 2, self._cfg.reconnect_max_s)
                continue
            self.reopened += 1
            log.info("video source %r reopened", redacted(self._cfg.uri))
            return self._source
        return None
