"""Edge health figures published on the ``stats`` topic."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

from formcheck_edge.processor import ProcessorTimings
from formcheck_protocol.messages import Activity, NodeStats

_THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
_PROC_STATUS = Path("/proc/self/status")


def cpu_temperature() -> float | None:
    """SoC temperature in °C (Raspberry Pi and most Linux boards), ``None`` where unavailable."""
    try:
        return round(int(_THERMAL_ZONE.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def rss_mb() -> float:
    """Current resident memory of this process in MiB."""
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except (OSError, ValueError, IndexError):
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


@dataclass
class StatsWindow:
    """Turns cumulative counters into per-interval rates."""

    node: str
    boot: str
    activity: Activity | None = None
    _t: float = field(default_factory=time.monotonic)
    _frames: int = 0
    _captured: int = 0
    _pose_s: float = 0.0
    _classify_s: float = 0.0

    def sample(
        self, timings: ProcessorTimings, captured: int, dropped: int, unpublished: int, queue: int, out_queue: int,
        refused: int = 0, exercise_mismatches: int = 0,
    ) -> NodeStats:
        now = time.monotonic()
        dt = max(now - self._t, 1e-6)
        frames = timings.frames - self._frames
        pose_s = timings.pose_s - self._pose_s
        classify_s = timings.classify_s - self._classify_s
        stats = NodeStats(
            node=self.node, boot=self.boot, ts=int(time.time() * 1000),
            fps=round(frames / dt, 2), capture_fps=round((captured - self._captured) / dt, 2),
            infer_ms=round(1000.0 * (pose_s + classify_s) / frames, 2) if frames else 0.0,
            pose_ms=round(1000.0 * pose_s / frames, 2) if frames else 0.0,
            dropped=dropped, unpublished=unpublished, refused=refused, queue=queue, out_queue=out_queue,
            frames=timings.frames, no_person=timings.no_person, exercise_mismatches=exercise_mismatches,
            cpu_temp=cpu_temperature(), rss_mb=rss_mb(), activity=self.activity,
        )
        self._t, self._frames, self._captured = now, timings.frames, captured
        self._pose_s, self._classify_s = timings.pose_s, timings.classify_s
        return stats
