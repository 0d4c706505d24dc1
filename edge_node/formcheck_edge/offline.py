"""Run the edge per-frame path over a video file without a broker: what ``formcheck analyze`` and evaluation use."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from formcheck_edge.capture import CapturedFrame, CaptureThread, file_frame_ts, open_source, open_video_file
from formcheck_edge.config import EdgeConfig, load_config
from formcheck_edge.exercise_gate import ExerciseGate
from formcheck_edge.features import PoseLandmarks
from formcheck_edge.idle import IdleWatch
from formcheck_edge.processor import FrameProcessor
from formcheck_protocol.messages import Exercise, FrameMessage
from formcheck_runtime.queues import DropQueue, QueueClosed


def offline_config(video: Path, node: str = "analyze", exercise: Exercise = "squat") -> EdgeConfig:
    """Edge config for reading ``video`` as fast as possible (every frame classified, none dropped)."""
    return load_config(None, {
        "node": {"id": node, "exercise": exercise, "follow_session": False},
        "source": {"uri": str(video), "realtime": False},
    }, environ={})


def classify_video(config: EdgeConfig, gate: Callable[[FrameProcessor], ExerciseGate] | None = None
                   ) -> Iterator[FrameMessage]:
    """Every frame of the configured file source, classified exactly as a live edge node would.

    With ``gate``, the frames go through the :class:`ExerciseGate` it makes (e.g. to recognise the exercise, as
    a node checked in without one does); the gate is the caller's to read afterwards.
    """
    source = open_source(config.source)
    processor = FrameProcessor.create(config, secrets.token_hex(8))
    exercise_gate = gate(processor) if gate is not None else None
    frames: DropQueue[CapturedFrame] = DropQueue(config.source.queue_size)
    capture = CaptureThread(config.source, source, frames)
    capture.start()
    try:
        while True:
            try:
                frame = frames.get(timeout=1.0)
            except QueueClosed:
                if exercise_gate is not None:
                    yield from exercise_gate.finish()
                return
            if frame is None:
                continue
            if exercise_gate is None:
                yield processor.process(frame)
            else:
                yield from exercise_gate.submit(processor.observe(frame))
    finally:
        capture.stop()
        capture.join(timeout=2.0)
        processor.close()


def replay_poses(config: EdgeConfig, track: Iterable[tuple[int, PoseLandmarks | None]]) -> Iterator[FrameMessage]:
    """The frame messages of a recorded pose track, ``(capture time, pose model's answer)`` per captured frame.

    Everything after the pose model runs as in :func:`classify_video` (the same ``FrameProcessor`` steps, in
    capture order), so a track recorded from a file with the pose model's settings gives that file's messages
    without running the pose model again: evaluation replays every clip after each change to the edge's code.
    """
    processor = FrameProcessor.create(config, secrets.token_hex(8))
    try:
        for ts, pose in track:
            yield processor.classify(processor.number(processor.sight(ts, pose)))
    finally:
        processor.close()


@dataclass
class WakeRun:
    """A clip played after ``prefix_frames`` of an empty scene through the idle watch, as a live node would."""

    messages: list[FrameMessage]  # what the node published, prefix included
    prefix_frames: int
    fps: float
    woke_at: int | None  # captured-frame index of the first frame published after idle (None: never idle/woke)
    went_idle_at: int | None
    pose_runs_idle: int  # frames the pose model ran on while idle
    looked_idle: int
    ts0: int  # capture time of the clip's first frame

    def differing_frames(self, alone: list[FrameMessage]) -> int:
        """Frames of the clip ``alone`` (as a file-fed node publishes it, no empty scene) whose message differs
        here in anything but node, boot, seq and time; a frame not published here differs unless nobody was in it.

        The clip's frames are stamped here as a file-fed node stamps them (``file_frame_ts`` from ``ts0``), so the
        pose model sees the same frames at the same intervals: any difference is the empty scene's or the idle
        watch's doing.
        """
        published = {m.ts - self.ts0: m for m in self.messages if m.ts >= self.ts0}
        start = alone[0].ts if alone else 0
        differ = 0
        for frame in alone:
            here = published.get(frame.ts - start)
            if here is None:
                differ += frame.phase != "no_person"
            elif _content(here) != _content(frame):
                differ += 1
        return differ


def _content(frame: FrameMessage) -> dict[str, object]:
    return frame.model_dump(exclude={"node", "boot", "seq", "ts"})


def empty_scene(like: npt.NDArray[np.uint8], variants: int = 4, seed: int = 0) -> list[npt.NDArray[np.uint8]]:
    """A blank background the size of ``like``: its mean colour with a little sensor noise (a few variants)."""
    rng = np.random.default_rng(seed)
    base = np.asarray(like.reshape(-1, 3).mean(axis=0), dtype=np.float32)
    out = []
    for _ in range(variants):
        noise = rng.normal(0.0, 2.0, like.shape).astype(np.float32)
        out.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return out


def rgb_frames(video: Path) -> tuple[Iterator[npt.NDArray[np.uint8]], float]:
    """The frames of ``video`` as RGB, upright, read as they are used, and its frame rate."""
    cap = open_video_file(video)
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 30.0)

    def frames() -> Iterator[npt.NDArray[np.uint8]]:
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        finally:
            cap.release()

    return frames(), fps if 1.0 <= fps <= 240.0 else 30.0


def wake_run(video: Path, exercise: Exercise, prefix_s: float = 10.0, config: EdgeConfig | None = None,
             ts0: int = 1_763_700_000_000) -> WakeRun:
    """``video`` preceded by ``prefix_s`` of an empty scene, through pose, the idle watch and the classifier.

    Built in memory (nothing written next to the data set): the empty scene is a blank background of the
    clip's mean colour (``empty_scene``). The clip's first frame is captured at ``ts0`` and every frame, the
    empty scene's included, at ``file_frame_ts`` from there: the clip's frames get the intervals a file-fed node
    gives the clip alone (the pose landmarker's smoothing depends on them).
    """
    clip, fps = rgb_frames(video)
    first = next(clip, None)
    cfg = config or offline_config(video, node="wake", exercise=exercise)
    prefix = round(prefix_s * fps)
    blanks = empty_scene(first) if first is not None else []
    scene = itertools.chain((blanks[i % len(blanks)] for i in range(prefix)),
                            [first] if first is not None else [], clip)
    processor = FrameProcessor.create(cfg, secrets.token_hex(8))
    watch = IdleWatch(cfg.idle, processor)
    messages: list[FrameMessage] = []
    woke_at = went_idle_at = None
    idle_pose = idle_looked = 0
    try:
        for index, rgb in enumerate(scene):
            was_idle = watch.idle
            probes, looked = processor.timings.idle_probes, processor.timings.idle_looked
            seen = watch.step(CapturedFrame(index=index, ts_ms=file_frame_ts(ts0, index - prefix, fps), rgb=rgb))
            if was_idle:
                idle_pose += processor.timings.idle_probes - probes
                idle_looked += processor.timings.idle_looked - looked
            if watch.idle and not was_idle and went_idle_at is None:
                went_idle_at = index
            if was_idle and not watch.idle and woke_at is None:
                woke_at = index
            if seen is not None:
                messages.append(processor.classify(seen))
    finally:
        processor.close()
    return WakeRun(messages, prefix, fps, woke_at, went_idle_at, idle_pose, idle_looked, ts0)
