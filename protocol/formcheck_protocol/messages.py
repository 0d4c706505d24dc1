"""Message payloads, one pydantic model per topic kind (JSON on the wire).

Every model forbids unknown keys and non-finite numbers: a payload either
validates completely or is dropped and counted by the receiver.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION: Literal[1] = 1

Exercise = Literal["squat", "pushup", "curl", "lunge"]
EXERCISES: tuple[Exercise, ...] = get_args(Exercise)
Phase = Literal["no_person", "standing", "descending", "bottom", "ascending"]
PHASES: tuple[Phase, ...] = get_args(Phase)
Form = Literal["good", "bad"]
Fault = Literal["knees_in", "forward_lean", "shallow", "heels_up", "knee_over_toes", "hips_sag", "hips_pike",
                "swinging", "partial_range"]
FAULTS: tuple[Fault, ...] = get_args(Fault)

# Identifiers end up in topic levels and InfluxDB tags: keep them to a safe alphabet.
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Identifier = Annotated[str, Field(pattern=_ID_PATTERN)]

# Counters are stored as InfluxDB integers (int64).
_INT64_MAX = 2**63 - 1

# Capture times outside this window are absurd for a live system (2020-01-01 .. 2100-01-01).
MIN_TS_MS = 1_577_836_800_000
MAX_TS_MS = 4_102_444_800_000


# NaN and infinity are refused inside pydantic-core (a Python validator per float cost ~3 µs per frame).
Finite = Annotated[float, Field(allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> bytes:
        """Compact JSON for the wire."""
        return self.model_dump_json(exclude_none=True).encode()


class FrameMessage(_Message):
    """One classified video frame; ``(node, boot, seq)`` identifies it."""

    v: Literal[1] = Field(PROTOCOL_VERSION, description="Schema version of this message.")
    node: Identifier = Field(description="Edge node id (also in the topic).")
    boot: Annotated[str, Field(pattern=r"^[0-9a-f]{8,32}$")] = Field(
        description="Random id chosen at each edge process start; seq restarts with it."
    )
    seq: int = Field(ge=0, lt=2**53, description="Frame counter, +1 per published frame within a boot (an idle "
                     "node publishes none, so idle time is no gap).")
    ts: int = Field(ge=MIN_TS_MS, le=MAX_TS_MS, description="Capture time, unix milliseconds (edge clock).")
    exercise: Exercise = Field(description="Exercise the station is set to.")
    phase: Phase = Field(description="Movement phase of this frame.")
    phase_p: dict[Phase, Probability] = Field(
        default_factory=dict, description="Classifier probability per phase (empty when no person)."
    )
    form: Form = Field(description="good, or bad when bad_p reached the model's threshold.")
    bad_p: Probability = Field(description="Probability that the form in this frame is bad.")
    faults: list[Fault] = Field(default_factory=list, max_length=len(FAULTS), description="Fault flags seen.")
    angles: dict[Annotated[str, Field(max_length=32)], Finite] = Field(
        default_factory=dict, max_length=32, description="Joint angles (degrees), body ratios and the "
        "better-seen ankle's visibility (`ankle_vis`, 0-1)."
    )
    vis: Probability = Field(description="Mean landmark visibility of the pose, 0 when no person.")


NodeState = Literal["online", "offline", "stopped"]
Activity = Literal["active", "idle"]


class NodeStatus(_Message):
    """Retained availability of an edge node; the Last Will carries ``offline``."""

    v: Literal[1] = PROTOCOL_VERSION
    state: NodeState = Field(description="online on connect, stopped on clean exit, offline from the Last Will.")
    node: Identifier = Field(description="Edge node id.")
    boot: str | None = Field(None, description="Boot id of the process that published this.")
    ts: int | None = Field(None, description="Publish time, unix milliseconds.")
    exercise: Exercise | None = Field(None, description="Exercise the node classifies.")
    model: str | None = Field(None, description="Classifier model name@version.")
    source: str | None = Field(None, description="Video source kind (camera, file, url, picamera2).")
    source_ok: bool | None = Field(
        None, description="False while the video source cannot be opened or was lost (retried with backoff)."
    )
    activity: Activity | None = Field(
        None, description="idle: nobody at the station for the node's idle.after_s, no frames are published until "
        "a person appears (seq goes on from the last published frame); absent or active: frames are published."
    )


class NodeStats(_Message):
    """Periodic edge health figures."""

    v: Literal[1] = PROTOCOL_VERSION
    node: Identifier
    boot: str
    ts: int
    fps: Finite = Field(description="Frames classified per second over the last interval.")
    capture_fps: Finite = Field(description="Frames captured per second over the last interval.")
    infer_ms: Finite = Field(description="Mean pose + classifier time per frame, milliseconds.")
    pose_ms: Finite = Field(description="Mean pose time per frame, milliseconds.")
    dropped: int = Field(
        ge=0, le=_INT64_MAX, description="Frames dropped by the capture queue since start (oldest first)."
    )
    unpublished: int = Field(ge=0, le=_INT64_MAX, description="Messages dropped by the outgoing queue since start.")
    refused: int = Field(
        0, ge=0, le=_INT64_MAX, description="Frames the broker refused or could never accept (too large) since start."
    )
    queue: int = Field(ge=0, le=_INT64_MAX, description="Capture queue depth now.")
    out_queue: int = Field(ge=0, le=_INT64_MAX, description="Outgoing message queue depth now.")
    frames: int = Field(ge=0, le=_INT64_MAX, description="Frames classified since start.")
    no_person: int = Field(ge=0, le=_INT64_MAX, description="Frames without a detected person since start.")
    exercise_mismatches: int = Field(
        0, ge=0, le=_INT64_MAX, description="Check-ins since start whose named exercise the pose did not look like "
        "(the named one is kept)."
    )
    cpu_temp: Finite | None = Field(None, description="SoC temperature, °C, where the OS exposes it.")
    rss_mb: Finite | None = Field(None, description="Resident memory of the edge process, MiB.")
    activity: Activity | None = Field(
        None, description="idle at the end of the interval (see NodeStatus; absent: active); idle stats also tell "
        "the aggregator that capture time goes on (a set's rest timeout) while no frame comes."
    )


class SessionMessage(_Message):
    """Retained check-in of a member at a station; an empty payload means checked out."""

    v: Literal[1] = PROTOCOL_VERSION
    member: Identifier = Field(description="Member id (no personal data: an opaque id).")
    exercise: Exercise | None = Field(
        None, description="Exercise the member is doing; absent: the node recognises it from the pose within the "
        "first rep."
    )
    ts: int | None = Field(None, description="Check-in time, unix milliseconds.")
    checked_in_by: Literal["staff", "member"] | None = Field(
        None, description="member: the member's own Start on the member page, which the check-in service checks out "
        "after its idle time without a rep (also after the service restarts: this retained message is what it "
        "knows); staff: `formcheck checkin`; absent: another tool."
    )


Grade = Literal["A", "B", "C", "D", "F"]
Verdict = Literal["perfect", "good", "bad"]


class RepMessage(_Message):
    """One graded repetition (``reps`` topic); also the row of the ``rep`` measurement."""

    v: Literal[1] = PROTOCOL_VERSION
    node: Identifier = Field(description="Station the rep was done at.")
    member: Identifier = Field(description="Member checked in at the station, or 'guest'.")
    exercise: Exercise
    set_id: str = Field(description="Deterministic id of the set: '<node>-<boot>-<first frame seq>'.")
    rep_index: int = Field(ge=1, description="1-based position in the set.")
    start_ts: int = Field(description="Capture time of the rep's first frame, unix ms (the point's timestamp).")
    bottom_ts: int = Field(description="Capture time of the rep's bottom (the middle of a pause there).")
    end_ts: int = Field(description="Capture time of the rep's last frame.")
    start_seq: int = Field(ge=0, description="seq of the rep's first frame (frames of one boot).")
    bottom_seq: int = Field(ge=0, description="seq of the rep's bottom frame.")
    end_seq: int = Field(ge=0, description="seq of the rep's last frame.")
    descent_s: Finite = Field(description="Seconds from start to reaching the bottom (a pause there is in neither).")
    ascent_s: Finite = Field(description="Seconds from leaving the bottom to the end.")
    depth: Finite = Field(description="Deepest value of the exercise's depth signal (squat: hip_depth).")
    min_knee: Finite | None = Field(None, description="Smallest knee angle in the rep, degrees.")
    min_elbow: Finite | None = Field(None, description="Smallest elbow angle in the rep, degrees.")
    hip_below_knee: bool | None = Field(None, description="Squat: the hips went below the knees.")
    bad_ratio: Probability = Field(description="Share of the rep's frames the form model judged bad.")
    faults: dict[Fault, list[int]] = Field(
        default_factory=dict, description="Each fault seen often enough to count, with the seq of its frames."
    )
    checks: dict[str, bool] = Field(default_factory=dict, description="Posture checks and whether each passed.")
    score: Annotated[float, Field(ge=0, le=100)] = Field(description="0-100 (see docs/aggregator.md, Grading).")
    grade: Grade
    verdict: Verdict = Field(description="perfect: all checks passed; good: one failed; bad: more, or poor form.")
    cue: str = Field("", description="The rep's fault and what to do about it in plain words, as the set's main_fault "
                     "('knees caved in on rep 3: push them out over your toes'), or '' when there is none.")


class SetMessage(_Message):
    """One graded set (``sets`` topic and the member's notification)."""

    v: Literal[1] = PROTOCOL_VERSION
    node: Identifier
    member: Identifier
    exercise: Exercise
    set_id: str
    start_ts: int = Field(description="Start of the first rep, unix ms (the point's timestamp).")
    end_ts: int = Field(description="End of the last rep, unix ms.")
    reps: int = Field(ge=0, description="Complete repetitions.")
    partial_reps: int = Field(ge=0, description="Movements that did not count as reps.")
    score_mean: Finite
    score_min: Finite
    grade: Grade = Field(description="Worse of the mean-score grade and the bad-frame-share grade.")
    bad_ratio: Probability = Field(description="Share of bad-form frames over all reps.")
    main_fault: str = Field(description="The main fault in plain words, or '' when there is none.")
    complete: bool = Field(description="False when the set was aborted (station went offline).")
    ended_by: str = Field(
        description="rest, checkout, exercise_change, member_change, offline, restart, node_stopped, end_of_stream."
    )
    rep_scores: list[Finite] = Field(default_factory=list, description="Score of each rep, in order.")


class HistoryEntry(_Message):
    """One set in a member's history (what the member page lists)."""

    set_id: str
    node: Identifier
    exercise: Exercise
    end_ts: int = Field(description="End of the set's last rep, unix ms.")
    reps: int = Field(ge=0)
    grade: Grade
    score_mean: Finite
    main_fault: str = Field("", description="The set's main fault in plain words, or ''.")
    complete: bool = True


class MemberHistory(_Message):
    """The member's last sets, newest first (retained per member; the page reads it, never the database)."""

    v: Literal[1] = PROTOCOL_VERSION
    member: Identifier
    sets: list[HistoryEntry] = Field(default_factory=list, description="At most 20 sets, newest first.")


class CheckinRequest(_Message):
    """A member's own check-in or check-out from the member page (``members/{member}/checkin``).

    The member is the topic's member level, which the broker's ACL lets only that member write: a payload names
    no member, so nobody can check in as someone else. The check-in service (``formcheck checkin-service``) turns
    an accepted request into the station's retained session.
    """

    v: Literal[1] = PROTOCOL_VERSION
    action: Literal["start", "stop"]
    node: Identifier = Field(description="Station to start or stop at (the QR code's station).")
    exercise: Exercise | None = Field(None, description="Exercise; absent: recognised from the pose.")


class MemberSession(_Message):
    """Where the member is checked in (retained per member), and why their last request was refused, if it was."""

    v: Literal[1] = PROTOCOL_VERSION
    node: Identifier | None = Field(None, description="Station the member is checked in at; absent: none.")
    exercise: Exercise | None = None
    ts: int | None = Field(None, description="Check-in time, unix ms.")
    error: str = Field("", description="Why the member's last request was refused, in plain words; '' otherwise.")


class MemberProfile(_Message):
    """How the member appears on station screens and the wall (retained; storage keeps the pseudonymous id)."""

    v: Literal[1] = PROTOCOL_VERSION
    display_name: str = Field(min_length=1, max_length=40, pattern=r"^[^\x00-\x1f\x7f]+$",
                              description="Name shown on station screens and the wall; set by staff, changeable by "
                              "the member.")
