"""Keep the native libraries' start-up chatter out of the operator's log.

MediaPipe (absl), LiteRT and XNNPACK write straight to file descriptor 2 while models load and while the pose
graph's threads run their first frames ("Created TensorFlow Lite XNNPACK delegate", "Feedback manager requires
a model with a single signature", "Using NORM_RECT without IMAGE_DIMENSIONS", ...), and no environment
variable of the pinned versions turns that off (GLOG_minloglevel and TF_CPP_MIN_LOG_LEVEL were tried). For
that window, and only then, fd 2 goes to a temporary file; when it ends every line is written back except
native INFO and WARNING lines. Native errors (absl ``E``/``F`` lines), Python log lines and anything else come
through, in order. With the log level at DEBUG nothing is filtered.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from typing import IO, Final

NATIVE_NOISE: Final = re.compile(
    rb"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] "  # absl/glog INFO and WARNING (seconds since the epoch
    # before absl::InitializeLog)
    rb"|INFO: "  # TensorFlow Lite's own logger
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$)"
)

_active = threading.Lock()  # one window at a time per process: fd 2 is process-wide


def is_native_noise(line: bytes) -> bool:
    return NATIVE_NOISE.match(line) is not None


class NativeLogFilter:
    """:meth:`start` a window, :meth:`stop` it (idempotent, any thread; a second concurrent window does nothing).

    ``max_s`` bounds the window: whatever happens (no frame ever comes, a camera that is not there), the log is
    never held back longer than that.
    """

    def __init__(self, max_s: float = 8.0) -> None:
        self._saved: int | None = None
        self._capture: IO[bytes] | None = None
        self._max_s = max_s
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    @property
    def active(self) -> bool:
        return self._saved is not None

    def start(self) -> NativeLogFilter:
        if self.active or logging.getLogger().isEnabledFor(logging.DEBUG) or not _active.acquire(blocking=False):
            return self
        sys.stderr.flush()
        self._capture = tempfile.TemporaryFile()  # noqa: SIM115 - open across start()/stop(), closed in stop()
        self._saved = os.dup(2)
        os.dup2(self._capture.fileno(), 2)
        self._timer = threading.Timer(self._max_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        with self._lock:
            saved, capture, timer = self._saved, self._capture, self._timer
            if saved is None or capture is None:
                return
            self._saved = self._capture = self._timer = None
            if timer is not None and timer is not threading.current_thread():
                timer.cancel()
            self._restore(saved, capture)

    @staticmethod
    def _restore(saved: int, capture: IO[bytes]) -> None:
        try:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = b"".join(line for line in capture if not is_native_noise(line))
            capture.close()
            if kept:
                os.write(2, kept)
        finally:
            _active.release()
