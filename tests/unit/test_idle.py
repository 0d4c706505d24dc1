"""Idle mode, pure logic: the edge's IdleWatch and motion gate, the aggregator's frame sampler and idle sets.

The watch runs over a fake pose (a frame "shows a person" when its image says so) and real motion-gate
arithmetic on small synthetic images; the station and sampler over synthetic frame messages.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pytest

from formcheck_aggregator.points import FrameSampler
from formcheck_aggregator.station import SetConfig, Station
from formcheck_edge.capture import CapturedFrame
from formcheck_edge.config import IdleSection
from formcheck_edge.features import NUM_LANDMARKS, PoseLandmarks
from formcheck_edge.idle import IdleWatch, MotionGate
from formcheck_edge.processor import Observation, ProcessorTimings, Sighting
from formcheck_protocol.messages import FrameMessage
from tests.unit.synthetic_frames import BOOT, NODE, TS0, rep_segments, squat_clip

FPS = 30
FRAME_MS = 1000 / FPS
PERSON_VALUE = 200  # a frame whose pixels are this bright "shows a person" to the fake pose model


def image(value: int, noise: int = 0, seed: int = 0) -> np.ndarray:
    img = np.full((120, 160, 3), value, dtype=np.uint8)
    if noise:
        rng = np.random.default_rng(seed)
        img = np.clip(img.astype(np.int16) + rng.integers(-noise, noise + 1, img.shape), 0, 255).astype(np.uint8)
    return img


@dataclass
class FakePose:
    """``look`` is the pose model: a person when the image is bright; counts the frames it ran on."""

    timings: ProcessorTimings = field(default_factory=ProcessorTimings)
    looked: list[int] = field(default_factory=list)
    seq: int = 0

    def look(self, frame: CapturedFrame) -> Sighting:
        self.looked.append(frame.index)
        person = int(frame.rgb.mean()) >= PERSON_VALUE - 10
        pose = PoseLandmarks(np.zeros((NUM_LANDMARKS, 3), np.float32), np.ones(NUM_LANDMARKS, np.float32))
        return Sighting(ts=frame.ts_ms, pose=pose if person else None, vis=0.9 if person else 0.0)

    def number(self, sighting: Sighting) -> Observation:
        self.seq += 1
        self.timings.frames += 1
        return Observation(seq=self.seq - 1, ts=sighting.ts, pose=sighting.pose, vis=sighting.vis)


def run(watch: IdleWatch, images: list[np.ndarray], start: int = 0) -> list[Observation | None]:
    out = []
    for i, img in enumerate(images, start):
        out.append(watch.step(CapturedFrame(index=i, ts_ms=TS0 + round(i * FRAME_MS), rgb=img)))
    return out


def test_goes_idle_after_the_configured_time_and_publishes_nothing_then() -> None:
    pose = FakePose()
    watch = IdleWatch(IdleSection(after_s=2.0, check_every=3, probe_s=1.0), pose)
    empty = [image(60, noise=3, seed=i) for i in range(10 * FPS)]
    out = run(watch, empty)
    published = [o for o in out if o is not None]
    # Published (as no_person) until 2 s without a person, nothing after.
    assert len(published) == 2 * FPS + 1
    assert [o.seq for o in published] == list(range(len(published)))
    assert watch.idle and watch.stride == 3
    # Idle for 8 s: one frame in 3 looked at; the pose model ran once a second (probe_s), never on camera noise.
    idle_pose = [i for i in pose.looked if i > 2 * FPS]
    assert pose.timings.idle_looked == pytest.approx(8 * FPS / 3, abs=2)
    assert 7 <= len(idle_pose) <= 9, idle_pose


def test_wakes_on_the_first_looked_at_frame_showing_a_person_and_seq_goes_on() -> None:
    pose = FakePose()
    watch = IdleWatch(IdleSection(after_s=1.0, check_every=3, probe_s=0), pose)
    out = run(watch, [image(60, noise=3, seed=i) for i in range(5 * FPS)])
    last_seq = max(o.seq for o in out if o is not None)
    assert watch.idle
    appears = 5 * FPS + 1  # not a looked-at index: the next one (a multiple of 3) wakes the node
    out = run(watch, [image(60, noise=3, seed=7)] + [image(PERSON_VALUE)] * 30, start=5 * FPS)
    woke = next(i for i, o in enumerate(out, 5 * FPS) if o is not None)
    assert woke == appears + 2 and not watch.idle and watch.wakes == 1
    assert (woke - appears) * FRAME_MS <= 500  # the first frame message within 0.5 s of the person
    first = out[woke - 5 * FPS]
    assert first is not None and first.seq == last_seq + 1 and first.pose is not None
    assert all(o is not None for o in out[woke - 5 * FPS:])  # every frame from then on


def test_detector_gate_runs_the_pose_model_on_every_looked_at_frame() -> None:
    pose = FakePose()
    probes: list[int] = []
    watch = IdleWatch(IdleSection(after_s=1.0, check_every=3, gate="detector"), pose,
                      before_probe=lambda: probes.append(len(pose.looked)))
    run(watch, [image(60)] * (4 * FPS))
    assert pose.timings.idle_probes == pose.timings.idle_looked == len(probes) > 0


def test_disabled_never_goes_idle() -> None:
    pose = FakePose()
    watch = IdleWatch(IdleSection(enabled=False), pose)
    assert all(o is not None for o in run(watch, [image(60)] * (20 * FPS)))
    assert not watch.idle


def test_motion_gate_ignores_noise_and_sees_a_person_walking_in() -> None:
    gate = MotionGate(pixel_delta=20, area=0.005)
    assert not gate.moved(image(60, noise=4, seed=0))  # first look: the background
    assert not any(gate.moved(image(60, noise=4, seed=s)) for s in range(1, 50))
    walking_in = image(60, noise=4, seed=99)
    walking_in[30:110, 10:40] = 180
    assert gate.moved(walking_in)
    assert MotionGate.small(np.zeros((1080, 1920, 3), np.uint8)).shape[1] == 64


# -- aggregator ----------------------------------------------------------------------------------------------------


def frame(seq: int, phase: str = "standing", ts: int | None = None) -> FrameMessage:
    return FrameMessage(node=NODE, boot=BOOT, seq=seq, ts=TS0 + round(seq * FRAME_MS) if ts is None else ts,
                        exercise="squat", phase=phase, form="good", bad_p=0.1, vis=0.9)  # type: ignore[arg-type]


def test_sampler_stores_phase_changes_and_a_few_a_second_counting_what_it_skipped() -> None:
    sampler = FrameSampler(4.0)
    phases = ["standing"] * 40 + ["descending"] * 20 + ["bottom"] * 5 + ["ascending"] * 20 + ["standing"] * 35
    counts = [sampler.take(frame(i, p)) for i, p in enumerate(phases)]
    stored = [i for i, c in enumerate(counts) if c]
    assert sum(counts) == len(phases) - (len(phases) - 1 - stored[-1])  # every frame up to the last stored
    for i in (0, 40, 60, 65, 85):
        assert i in stored  # the first frame and every phase change
    assert len(stored) <= len(phases) * 0.25
    assert all(b - a <= 8 for a, b in itertools.pairwise(stored))  # at least 4 a second at 30 fps
    assert [c for c in map(FrameSampler(0).take, (frame(i) for i in range(5)))] == [1] * 5
    # The stream pauses (stats, status): the frames after the last point are stored with their count.
    tail = sampler.flush()
    assert tail is not None and tail[0].seq == len(phases) - 1 and sum(counts) + tail[1] == len(phases)
    assert sampler.flush() is None


def test_idle_stats_end_a_set_on_its_rest_timeout_and_idle_is_no_gap() -> None:
    station = Station(NODE, set_config=SetConfig(rest_timeout_s=45.0))
    clip = squat_clip([*rep_segments(2), ("no_person", 5.0)]).frames  # then the node goes idle
    for f in clip:
        station.on_frame(f)
    last = clip[-1]
    # The node goes idle: its stats carry time on; the set stays open until the rest timeout.
    assert station._set is not None
    end = station._set.last_rep_end_ts
    assert station.on_idle(end + 30_000).sets == []
    assert station._set is not None
    # Frames resume after the idle time: seq continues (published frames only): no gap, same set.
    resumed = squat_clip([("standing", 0.5)], seq0=last.seq + 1, ts0=end + 35_000).frames
    for f in resumed:
        assert station.on_frame(f).sets == []
    assert station.counters.gaps == 0 and station._set is not None
    # Idle again: the set ends once the rest timeout has passed since its last rep, not before.
    assert station.on_idle(end + 44_000).sets == []
    (ended,) = station.on_idle(end + 46_000).sets
    assert ended.ended_by == "rest" and ended.complete and ended.reps == 2


def test_motion_without_a_person_looks_at_every_frame_until_a_second_after_it() -> None:
    pose = FakePose()
    watch = IdleWatch(IdleSection(after_s=1.0, check_every=3, probe_s=0), pose)
    run(watch, [image(60, noise=3, seed=i) for i in range(3 * FPS)])
    assert watch.idle and watch.stride == 3
    passing = image(60, noise=3, seed=5)
    passing[20:100, 60:90] = 120  # someone walks past, too dim to be "a person" for the fake pose model
    before = len(pose.looked)
    run(watch, [passing] * 10, start=3 * FPS)
    assert watch.idle and watch.stride == 1 and len(pose.looked) - before >= 9  # every frame, pose on each
    run(watch, [image(60, noise=3, seed=i) for i in range(2 * FPS)], start=3 * FPS + 10)
    assert watch.idle and watch.stride == 3  # a second after the motion: sparse again
