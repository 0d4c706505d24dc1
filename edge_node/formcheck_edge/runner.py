"""``formcheck edge``: capture → classify → publish until end of file or a signal."""

from __future__ import annotations

import logging
import secrets
import signal
import threading
import time
from types import FrameType

from formcheck_edge.capture import (
    CapturedFrame,
    CaptureThread,
    FrameSource,
    SourceError,
    open_source,
    redacted,
    source_kind,
)
from formcheck_edge.classifier import ModelLoadError
from formcheck_edge.classify_stage import ClassifyStage, SessionBox
from formcheck_edge.config import ConfigError, EdgeConfig
from formcheck_edge.exercise_gate import ExerciseGate
from formcheck_edge.idle import IdleWatch
from formcheck_edge.pose import PoseModelError
from formcheck_edge.processor import FrameProcessor
from formcheck_edge.publisher import EdgePublisher
from formcheck_edge.stats import StatsWindow
from formcheck_protocol.topics import Topics
from formcheck_runtime.queues import DropQueue, QueueClosed

log = logging.getLogger(__name__)


EXIT_NOT_DELIVERED = 1
"""Exit status of a file run whose frames did not all reach the broker."""


class StartupError(RuntimeError):
    """The node cannot start; one line for the operator (exit status 2)."""


def run_edge(config: EdgeConfig, stop: threading.Event | None = None, source: FrameSource | None = None) -> int:
    """Run one edge node; returns the process exit status.

    ``source``: an already open video source instead of ``config.source.uri`` (benchmarks feed frames from memory,
    like a camera that hands over raw frames).
    """
    stop = stop or threading.Event()
    boot = secrets.token_hex(8)
    try:
        source = source or open_source(config.source)
    except SourceError as exc:
        if source_kind(config.source.uri) == "file":
            raise StartupError(str(exc)) from exc
        # A camera or stream that is not ready at boot (USB enumeration, a camera still starting): wait for it.
        log.warning("%s; retrying with backoff (%.0f s to %.0f s); status says source_ok false meanwhile", exc,
                    config.source.reconnect_s, config.source.reconnect_max_s)
        source = None
    try:
        processor = FrameProcessor.create(config, boot)
    except (PoseModelError, ModelLoadError) as exc:
        if source is not None:
            source.close()
        raise StartupError(str(exc)) from exc

    sessions = SessionBox()
    topics = Topics(site=config.node.site, prefix=config.mqtt.prefix)
    try:
        publisher = EdgePublisher(
            config.mqtt, topics, config.node.id, boot,
            {"exercise": processor.exercise, "model": processor.classifier.version,
             "source": source_kind(config.source.uri), "source_ok": source is not None},
            on_session=sessions.put if config.node.follow_session else None,
        )
    except (ConfigError, OSError, ValueError) as exc:
        processor.close()
        if source is not None:
            source.close()
        raise StartupError(f"mqtt: {exc}") from exc
    frames: DropQueue[CapturedFrame] = DropQueue(config.source.queue_size, "drop_oldest")
    capture = CaptureThread(config.source, source, frames)
    _install_signal_handlers(stop)
    log.info("edge node %s/%s boot %s: %s source %r, %s model %s", config.node.site, config.node.id, boot,
             capture.kind, redacted(config.source.uri), processor.exercise, processor.classifier.version)
    gate = ExerciseGate(processor, config.recognition)
    stage = ClassifyStage(processor, gate, sessions, publisher)
    publisher.start()
    stage.start()
    capture.start()
    window = StatsWindow(node=config.node.id, boot=boot)
    watch = IdleWatch(config.idle, processor, before_probe=lambda: setattr(capture, "stride", 1))
    source_ok = source is not None
    next_stats = time.monotonic() + config.stats.interval_s
    try:
        while not stop.is_set():
            try:
                frame = frames.get(timeout=0.25)
            except QueueClosed:
                break
            if capture.source_ok != source_ok:
                source_ok = capture.source_ok
                publisher.update_status(source_ok=source_ok)
            if frame is not None:
                # The pose model, and only it, on this thread: the rest of a frame's path is the classify stage's.
                seen = watch.step(frame)
                capture.stride = watch.stride
                if watch.changed:
                    _log_activity(watch, frame.ts_ms)
                    # Only an idle node says so (absent: active), which keeps the status and stats small.
                    publisher.update_status(activity="idle" if watch.idle else None)
                    window.activity = "idle" if watch.idle else None
                if seen is not None:
                    stage.submit(seen)
            if time.monotonic() >= next_stats:
                next_stats += config.stats.interval_s
                publisher.publish_stats(window.sample(
                    processor.timings, capture.captured, frames.dropped, publisher.queue.dropped,
                    len(frames), len(publisher.queue), publisher.refused, gate.mismatches,
                ))
    finally:
        stage.close()  # it classifies what is queued and publishes what the gate still holds
        stage.join()
        capture.stop()
        publisher.stop("stopped")
        processor.close()
        capture.join(timeout=2.0)
    if stage.error is not None:
        raise stage.error  # a bug in the classify stage ended it: fail as the single-threaded loop would have
    lost = publisher.never_published
    log.info(
        "stopped: %d frames captured, %d classified, %d dropped by capture, %d published, %d dropped unpublished, "
        "%d refused by the broker, %d never published",
        capture.captured, processor.timings.frames, frames.dropped, publisher.accepted - publisher.unacknowledged,
        publisher.queue.dropped, publisher.refused, lost,
    )
    if capture.kind == "file" and (lost or publisher.queue.dropped):
        # A file run is a batch job: frames that never reached the broker make it a failed run.
        log.error("%d of %d frames never reached the broker %s:%d", lost + publisher.queue.dropped,
                  processor.timings.frames, config.mqtt.host, config.mqtt.port)
        return EXIT_NOT_DELIVERED
    return 0


def _log_activity(watch: IdleWatch, ts_ms: int) -> None:
    if watch.idle:
        log.info("no person for %.0f s: idle (one frame in %d looked at, %s gate), no frames published",
                 watch.config.after_s, watch.config.check_every, watch.config.gate)
    else:
        log.info("person seen: back to every frame")


def _install_signal_handlers(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
