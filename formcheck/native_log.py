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
    """:meth:`start` a window, :meth:`stop` it (idempotent; a second concurrent window does nothing)."""

    def __init__(self) -> None:
        self._saved: int | None = None
        self._capture: IO[bytes] | None = None

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
        return self

    def stop(self) -> None:
        saved, capture = self._saved, self._capture
        if saved is None or capture is None:
            return
        self._saved = self._capture = None
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
