"""Liveness: a short live video that answers a random challenge proves the enrolled face is
the sender's own, not a photo of someone else.

A check passes only when three things hold, each with a reason the user can act on:

- **the same person throughout**: a face is followed in (almost) every frame, and its dlib
  descriptor is within ``identity_threshold`` of the enrolled face at evenly spaced frames;
- **the challenge, in order**: the head turns to one side and then the other (yaw from the
  landmarks, relative to where the head started), or the eyes close and open twice (eye
  aspect ratio against the person's own open-eye baseline) before a turn to either side;
- **a 3D head, not a picture**: for every frame a homography is fitted to the rigid
  landmarks of the most frontal frame. A photo moved, zoomed, tilted or rotated in front of
  the camera is a plane, and a homography maps it onto itself to within landmark noise; a
  turning head is not (the nose tip moves across the cheeks, the far cheek's outline slides),
  so the residual grows with the turn. A flat picture cannot fake the yaw either: a plane
  seen at any angle keeps the nose where it sits between the jaw's sides.

Directions are the person's own in an unmirrored camera picture (what getUserMedia,
MediaRecorder and phone video files hold): turning to one's left moves the nose to the
right of the picture.

The check runs in a job runner's worker like a render: :func:`liveness_order` takes a small
picklable :class:`LivenessOrder` (the video's bytes, the enrolled face's bytes, the
challenge and the thresholds) and returns a :class:`LivenessReport`.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args

import cv2
import numpy as np
from numpy.typing import NDArray

from core import progress
from core.errors import BadMedia
from core.faces.analyzer import Analyzer, Embedding, identity_distance
from core.faces.landmarks import Points, eye_distance, yaw_degrees
from core.faces.profile import FaceProfile
from core.faces.tracking import FaceTracker, TrackSettings
from core.media.images import RGBImage
from core.media.video import even_size, probe_video

Challenge = Literal["left-right", "right-left", "blink-twice"]
CHALLENGES: tuple[Challenge, ...] = get_args(Challenge)

INSTRUCTIONS: dict[Challenge, str] = {
    "left-right": "turn your head to your left, then to your right",
    "right-left": "turn your head to your right, then to your left",
    "blink-twice": "blink twice, then turn your head a little to one side",
}

# Landmarks that move with the skull, not with an expression: jaw outline, brows, nose and
# the eye corners (lids blink, lips talk).
RIGID = np.array([*range(0, 27), *range(27, 36), 36, 39, 42, 45])
_DLIB_DIMENSIONS = 128


@dataclass(frozen=True, slots=True)
class LivenessLimits:
    """What a live capture must show; picklable, so it travels in a :class:`LivenessOrder`."""

    identity_threshold: float = 0.55  # dlib descriptor distance; its own rule is 0.6
    min_turn_degrees: float = 12.0  # each turn, from where the head started
    min_depth: float = 0.03  # homography residual per eye distance that only 3D gives
    min_coverage: float = 0.85  # share of frames in which the face is followed
    min_seconds: float = 1.0
    max_seconds: float = 8.0
    max_bytes: int = 25 * 1024 * 1024
    sample_fps: float = 15.0  # frames looked at per second (a blink lasts 100-300 ms)
    max_side: int = 480  # frames are scaled down to this first
    identity_samples: int = 6  # frames whose identity is computed


@dataclass(frozen=True, slots=True)
class Trace:
    """What the analysis saw: the face's landmarks per looked-at frame (or None) and the
    identity distance at a few of them."""

    landmarks: list[Points | None]
    distances: list[float]
    fps: float  # of the looked-at frames


@dataclass(frozen=True, slots=True)
class LivenessReport:
    passed: bool
    reason: str  # for the user: why it failed, or that it passed
    challenge: Challenge
    frames: int = 0
    coverage: float = 0.0
    identity_distance: float = 0.0  # the worst frame
    turn_left: float = 0.0  # degrees, the furthest turn to the person's left
    turn_right: float = 0.0
    blinks: int = 0
    depth: float = 0.0  # homography residual per eye distance (the 90th percentile frame)
    seconds: float = 0.0  # how long the check took


# -- measuring ------------------------------------------------------------------------------


def eye_aspect_ratio(points: Points) -> float:
    """Mean eye opening of both eyes (Soukupová and Čech): lid gaps over eye width."""

    def one(eye: Points) -> float:
        gap = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
        return float(gap / (2.0 * max(float(np.linalg.norm(eye[0] - eye[3])), 1e-3)))

    return (one(points[36:42]) + one(points[42:48])) / 2.0


def planar_residual(reference: Points, points: Points) -> float:
    """RMS distance, per eye distance, between ``points``' rigid landmarks and the best
    homography image of ``reference``'s: near zero for a moved picture, larger for a 3D
    head seen from another angle."""
    src = reference[RIGID].astype(np.float64)
    dst = points[RIGID].astype(np.float64)
    matrix, _ = cv2.findHomography(src, dst, 0)
    if matrix is None:
        return 0.0
    mapped = cv2.perspectiveTransform(src.reshape(-1, 1, 2), matrix).reshape(-1, 2)
    rms = float(np.sqrt(((mapped - dst) ** 2).sum(axis=1).mean()))
    return rms / max(eye_distance(points), 1.0)


def blink_count(openness: NDArray[np.float64], baseline: float) -> int:
    """Closings of the eyes: runs under 70 % of the open baseline, each followed by the eyes
    opening again past 85 % of it."""
    blinks, closed = 0, False
    for value in openness:
        if not closed and value < 0.7 * baseline:
            closed = True
        elif closed and value > 0.85 * baseline:
            closed = False
            blinks += 1
    return blinks


def reference_embedding(profile: FaceProfile, analyzer: Analyzer) -> Embedding:
    """The enrolled face's dlib descriptor: stored with a classic enrolment, recomputed from
    the face texture for one made by another engine."""
    if profile.embedding is not None and profile.embedding.shape == (_DLIB_DIMENSIONS,):
        return profile.embedding
    return analyzer.embedding(profile.texture, profile.points[:68])


def timed_frames(
    path: Path, *, max_side: int, max_seconds: float, max_bytes: int
) -> Iterator[tuple[float, RGBImage]]:
    """(seconds, frame) of a video, by each frame's own timestamp: what a browser's
    MediaRecorder writes has a variable frame rate and no declared one."""
    import av

    probe_video(path, max_bytes=max_bytes)  # a friendly BadMedia for what is not a video
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > 4096 * 4096:
            raise BadMedia(f"That video's frames are too large ({width}x{height}).")
        size = even_size(width, height, max_side)
        first: float | None = None
        try:
            for frame in container.decode(stream):
                moment = float(frame.time) if frame.time is not None else 0.0
                first = moment if first is None else first
                if moment - first > max_seconds:
                    raise BadMedia(
                        f"That video is over {max_seconds:.0f} seconds long: record just 2 to 3."
                    )
                image = np.asarray(frame.to_ndarray(format="rgb24"), np.uint8)
                if (image.shape[1], image.shape[0]) != size:
                    image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
                yield moment - first, np.ascontiguousarray(image, dtype=np.uint8)
        except av.FFmpegError as exc:
            raise BadMedia("That video is damaged: decoding stopped part way.") from exc


_ORIENTATION_TRIES = 5  # sampled frames in which to look for the picture's upright


def upright_turns(frame: RGBImage, analyzer: Analyzer) -> int | None:
    """Quarter turns (``np.rot90``) that put a face upright in ``frame``; None when none
    shows one. Phones store portrait videos sideways with a rotation flag that not every
    path keeps: looking beats trusting it."""
    for turns in (0, 1, 3, 2):
        turned = np.ascontiguousarray(np.rot90(frame, turns)) if turns else frame
        if analyzer.detect_boxes(turned, verify=False):
            return turns
    return None


def trace_video(
    frames: Iterable[tuple[float, RGBImage]],
    analyzer: Analyzer,
    reference: Embedding,
    limits: LivenessLimits,
    *,
    expected_seconds: float = 3.0,
) -> Trace:
    """Follow the face through timed ``frames`` at up to ``limits.sample_fps``, and compare
    its identity with ``reference`` at ``limits.identity_samples`` evenly spaced frames."""
    tracker = FaceTracker(analyzer, TrackSettings(max_carry=3))
    landmarks: list[Points | None] = []
    kept: list[RGBImage] = []
    interval = 1.0 / limits.sample_fps
    due, last = 0.0, 0.0
    total = max(round(expected_seconds * limits.sample_fps), 1)
    turns: int | None = None  # quarter turns that make the picture upright
    for moment, frame in frames:
        if moment < due - 0.25 * interval:
            continue
        due = max(due + interval, moment + 0.5 * interval)
        last = moment
        if turns is None:
            turns = upright_turns(frame, analyzer)
            if turns is None and len(landmarks) >= _ORIENTATION_TRIES:
                turns = 0
        if turns:
            frame = np.ascontiguousarray(np.rot90(frame, turns))
        points, _ = tracker.step(frame) if turns is not None else (None, False)
        landmarks.append(points)
        kept.append(frame)
        progress.report(min(len(landmarks), total), total + 1)
    seen = [i for i, p in enumerate(landmarks) if p is not None]
    distances: list[float] = []
    if seen:
        picks = np.unique(np.linspace(0, len(seen) - 1, limits.identity_samples).round())
        for pick in picks.astype(int):
            index = seen[pick]
            points = landmarks[index]
            assert points is not None
            vector = analyzer.embedding(kept[index], points)
            distances.append(identity_distance(vector, reference))
    fps = (len(landmarks) - 1) / last if last > 0 else limits.sample_fps
    return Trace(landmarks, distances, fps)


# -- judging --------------------------------------------------------------------------------


def judge(trace: Trace, challenge: Challenge, limits: LivenessLimits) -> LivenessReport:
    """Pass or fail, with the reason, from what :func:`trace_video` saw."""
    frames = len(trace.landmarks)
    seen = [p for p in trace.landmarks if p is not None]
    coverage = len(seen) / frames if frames else 0.0
    base = LivenessReport(False, "", challenge, frames=frames, coverage=coverage)
    if frames < limits.min_seconds * trace.fps:
        return _fail(base, "That video is too short: record 2 to 3 seconds.")
    if not seen:
        return _fail(base, "I couldn't see a face in that video. Film your face in good light.")
    worst = max(trace.distances) if trace.distances else float("inf")
    base = _with(base, identity_distance=worst)
    if worst >= limits.identity_threshold:
        return _fail(
            base,
            "The face in that video doesn't match your saved face. Film yourself, "
            "the person in your selfie.",
        )
    if coverage < limits.min_coverage:
        return _fail(
            base,
            "I lost your face for part of the video. Keep your whole face in the picture, "
            "in good light, and turn only as far as still shows both eyes.",
        )
    visible = np.array([p is not None for p in trace.landmarks])
    yaw = _series([yaw_degrees(p) if p is not None else np.nan for p in trace.landmarks])
    openness = _series([eye_aspect_ratio(p) if p is not None else np.nan for p in trace.landmarks])
    start = float(np.nanmedian(yaw[: max(3, frames // 10)]))
    turn = yaw - start  # negative: to the person's left
    base = _with(
        base,
        turn_left=float(max(0.0, -np.nanmin(turn))),
        turn_right=float(max(0.0, np.nanmax(turn))),
    )
    # The reference for depth: the frame where the head faces where it started.
    reference_index = int(np.nanargmin(np.where(visible, np.abs(turn), np.nan)))
    reference = trace.landmarks[reference_index]
    assert reference is not None
    residuals = [planar_residual(reference, p) for p in seen]
    depth = float(np.percentile(residuals, 90))
    base = _with(base, depth=depth)

    turned = np.abs(turn) >= limits.min_turn_degrees
    if challenge == "blink-twice":
        baseline = float(np.nanpercentile(openness, 80))
        first_turn = int(np.argmax(turned)) if turned.any() else frames
        blinks = blink_count(np.nan_to_num(openness[:first_turn], nan=baseline), baseline)
        base = _with(base, blinks=blinks)
        if blinks < 2:
            seen_blinks = "no blink" if blinks == 0 else "one blink"
            return _fail(base, f"I saw {seen_blinks}: blink twice, slowly, then turn your head.")
        if not turned.any():
            return _fail(base, "After blinking, turn your head a little to one side.")
    else:
        wanted = -1.0 if challenge == "left-right" else 1.0
        first_side = _first_turn(turn, limits.min_turn_degrees)
        if first_side == 0:
            return _fail(
                base,
                f"I didn't see your head turn far enough. {_instruction(challenge)}, "
                "a little further each way (keep both eyes in view).",
            )
        if first_side != wanted:
            return _fail(
                base,
                f"You turned the other way first. {_instruction(challenge)} (your own "
                "left and right).",
            )
        after = turn[int(np.argmax(wanted * turn >= limits.min_turn_degrees)) :]
        if not (-wanted * after >= limits.min_turn_degrees).any():
            return _fail(base, f"You turned only one way. {_instruction(challenge)}.")
    if depth < limits.min_depth:
        return _fail(
            base,
            "That looks like a picture moved in front of the camera, not a live head. "
            "Film your own face, live.",
        )
    return _with(base, passed=True, reason="Verified: it's really you.")


def _instruction(challenge: Challenge) -> str:
    text = INSTRUCTIONS[challenge]
    return text[0].upper() + text[1:]


def _first_turn(turn: NDArray[np.float64], threshold: float) -> float:
    """-1 when the head first turned past ``threshold`` to the person's left, +1 right,
    0 never."""
    for value in turn:
        if not np.isnan(value) and abs(value) >= threshold:
            return float(np.sign(value))
    return 0.0


def _series(values: list[float]) -> NDArray[np.float64]:
    """Per-frame values with a 3-frame median against single-frame landmark glitches."""
    array = np.asarray(values, dtype=np.float64)
    if len(array) < 3:
        return array
    padded = np.concatenate([array[:1], array, array[-1:]])
    stacked = np.stack([padded[:-2], padded[1:-1], padded[2:]])
    with np.errstate(all="ignore"):
        smoothed = (
            np.nanmedian(stacked, axis=0) if np.isnan(stacked).any() else np.median(stacked, axis=0)
        )
    return np.where(np.isnan(array), np.nan, smoothed)


def _with(report: LivenessReport, **changes: Any) -> LivenessReport:
    return replace(report, **changes)


def _fail(report: LivenessReport, reason: str) -> LivenessReport:
    return _with(report, passed=False, reason=reason)


def check_liveness(
    video: Path,
    profile: FaceProfile,
    challenge: Challenge,
    analyzer: Analyzer,
    limits: LivenessLimits | None = None,
) -> LivenessReport:
    """Decode ``video`` (MP4, MOV, WebM, GIF...), follow the face and judge it against the
    enrolled ``profile`` and the ``challenge``."""
    limits = limits or LivenessLimits()
    started = time.monotonic()
    reference = reference_embedding(profile, analyzer)
    frames = timed_frames(
        video, max_side=limits.max_side, max_seconds=limits.max_seconds, max_bytes=limits.max_bytes
    )
    trace = trace_video(frames, analyzer, reference, limits)
    report = judge(trace, challenge, limits)
    return _with(report, seconds=time.monotonic() - started)


# -- the worker task ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LivenessOrder:
    video: bytes  # the capture as uploaded (a worker may be on another machine)
    suffix: str  # its container's usual suffix, e.g. ".webm"
    profile: bytes  # FaceProfile.to_bytes() of the face to verify
    challenge: Challenge
    limits: LivenessLimits = LivenessLimits()


_ANALYZERS: dict[str, Analyzer] = {}


def _analyzer() -> Analyzer:
    """One dlib analyzer per worker process (its models load once)."""
    if "dlib" not in _ANALYZERS:
        from core.faces.analyzer import DlibAnalyzer

        _ANALYZERS["dlib"] = DlibAnalyzer()
    return _ANALYZERS["dlib"]


def liveness_order(order: LivenessOrder) -> LivenessReport:
    """Check one capture, in a worker: the video goes to a private temporary file for the
    decoder and is deleted at once."""
    profile = FaceProfile.from_bytes(order.profile)
    suffix = order.suffix if order.suffix.isascii() and len(order.suffix) <= 6 else ".bin"
    handle, name = tempfile.mkstemp(prefix="facecast-liveness-", suffix=suffix)
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(order.video)
        return check_liveness(path, profile, order.challenge, _analyzer(), order.limits)
    finally:
        path.unlink(missing_ok=True)


__all__ = [
    "CHALLENGES",
    "INSTRUCTIONS",
    "RIGID",
    "Challenge",
    "LivenessLimits",
    "LivenessOrder",
    "LivenessReport",
    "Trace",
    "blink_count",
    "check_liveness",
    "eye_aspect_ratio",
    "judge",
    "liveness_order",
    "planar_residual",
    "reference_embedding",
    "timed_frames",
    "trace_video",
    "upright_turns",
]
