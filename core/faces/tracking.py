"""Following one face through a video: per-frame landmarks, gap filling and smoothing.

The heavy, once-per-clip half of ZAO's trick: after this, rendering a user into the clip
needs no face detection at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.typing import NDArray

from core.faces.analyzer import Analyzer, Box, box_iou
from core.faces.landmarks import (
    Points,
    apply_similarity,
    eye_distance,
    fit_similarity,
    yaw_degrees,
)
from core.media.images import RGBImage

TrackPoints = NDArray[np.float32]
"""``(frames, 68, 2)`` landmark positions."""


@dataclass(frozen=True, slots=True)
class TrackSettings:
    face_index: int | None = None  # 1-based, left to right in the first frame with faces
    max_carry: int = 6  # frames a face may go undetected before it counts as lost
    max_gap: int = 4  # lost runs up to this long between two sightings are interpolated
    # One-Euro filter for the expression (shape): Hz of smoothing for a still face, and how
    # fast the cutoff rises with speed (per eye distance per second).
    min_cutoff: float = 1.0
    beta: float = 1.2
    # ... and for the head's placement, which must follow camera shake: much lighter.
    place_min_cutoff: float = 8.0
    place_beta: float = 9.6
    # Share of each landmark taken from where optical flow carried it from the last frame.
    flow_weight: float = 0.6
    # The head's placement follows its motion measured from the picture (see
    # :func:`head_motion`); the landmark fit only corrects its drift, over this many
    # seconds (a centred Gaussian's sigma). 0 keeps the fitted placement alone.
    place_drift_seconds: float = 0.15


@dataclass(slots=True)
class Track:
    """The target face in every frame; ``visible`` is False where it is not there."""

    landmarks: TrackPoints
    visible: NDArray[np.bool_]
    raw_jitter: float = 0.0  # frame-to-frame jitter before smoothing, share of eye distance
    jitter: float = 0.0  # the same after smoothing
    detected: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, np.bool_))

    @property
    def frames(self) -> int:
        return len(self.visible)

    @property
    def coverage(self) -> float:
        return float(self.visible.mean()) if len(self.visible) else 0.0


def _box_of(points: Points) -> Box:
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return round(float(x0)), round(float(y0)), round(float(x1)), round(float(y1))


def _shift_box(box: Box, dx: float, dy: float) -> Box:
    return round(box[0] + dx), round(box[1] + dy), round(box[2] + dx), round(box[3] + dy)


def _face_patch(frame: RGBImage, points: Points) -> NDArray[np.float32] | None:
    """The inner face, grey and 24 px square, zero-mean and unit-norm (for correlation)."""
    height, width = frame.shape[:2]
    x0, y0 = np.floor(points[17:68].min(axis=0)).astype(int)
    x1, y1 = np.ceil(points[17:68].max(axis=0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    grey = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    patch = cv2.resize(grey, (24, 24), interpolation=cv2.INTER_AREA).astype(np.float32)
    patch -= patch.mean()
    norm = float(np.linalg.norm(patch))
    return patch / norm if norm > 1e-3 else None


def _similarity_of(a: NDArray[np.float32] | None, b: NDArray[np.float32] | None) -> float:
    """Normalised cross-correlation of two patches; 0 when either is missing."""
    if a is None or b is None:
        return 0.0
    return float((a * b).sum())


class FaceTracker:
    """Tracking by detection with landmark carry-over.

    Every frame gets a fast HOG pass in a window around the target's last box (upsampled
    only when the face is small, no CNN check); the detection that overlaps the last box
    continues the track. When HOG misses a frame (motion blur, a quick turn) the landmark
    fit is carried in the last box, moved with the face, for up to ``max_carry`` frames
    while it stays plausible (no jump, no sudden change of size, and the face still
    correlates with the one last detected); after that the face counts as lost and is
    picked up again by the next overlapping detection or, failing that, a full detection.
    """

    def __init__(self, analyzer: Analyzer, settings: TrackSettings) -> None:
        self.analyzer = analyzer
        self.settings = settings
        self._box: Box | None = None
        self._points: Points | None = None
        self._patch: NDArray[np.float32] | None = None  # the face when last detected
        self._carried = 0

    def _first(self, frame: RGBImage) -> tuple[Box, Points] | None:
        faces = self.analyzer.detect(frame)
        if not faces:
            return None
        index = self.settings.face_index
        if index is None:
            face = max(faces, key=lambda f: f.quality.eye_distance)
        elif index <= len(faces):
            face = faces[index - 1]
        else:
            return None
        return face.bbox, face.landmarks

    def _detect_near(self, frame: RGBImage, box: Box) -> list[tuple[Box, float]]:
        """HOG only in a window around the last box (three box widths across): the face
        cannot have gone far in one frame, and a small window is cheap to upsample."""
        height, width = frame.shape[:2]
        size = box[2] - box[0]
        x0, y0 = max(0, box[0] - size), max(0, box[1] - size)
        x1, y1 = min(width, box[2] + size), min(height, box[3] + size)
        window = frame[y0:y1, x0:x1]
        found = self.analyzer.detect_boxes(window, upsample=size < 100, verify=False)
        return [((b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0), score) for b, score in found]

    def step(self, frame: RGBImage) -> tuple[Points | None, bool]:
        """Landmarks of the target in ``frame`` (None if not there) and whether a detector
        saw it (False for carried fits)."""
        if self._box is None:
            found = self._first(frame)
            if found is None:
                return None, False
            self._box, self._points = found
            self._carried = 0
            return self._points, True

        last = self._box
        boxes = self._detect_near(frame, last)
        best = max(boxes, key=lambda b: box_iou(b[0], last), default=None)
        if best is not None and box_iou(best[0], last) >= 0.3:
            self._box = best[0]
            self._points = self.analyzer.landmarks(frame, self._box)
            self._patch = _face_patch(frame, self._points)
            self._carried = 0
            return self._points, True
        if self._points is not None and self._carried < self.settings.max_carry:
            points = self.analyzer.landmarks(frame, self._box)
            unit = max(eye_distance(self._points), 1.0)
            moved = float(np.linalg.norm(points.mean(axis=0) - self._points.mean(axis=0)))
            resized = eye_distance(points) / unit
            looks_same = _similarity_of(self._patch, _face_patch(frame, points)) > 0.5
            if moved < 0.35 * unit and 0.85 < resized < 1.18 and looks_same:
                dx, dy = points.mean(axis=0) - self._points.mean(axis=0)
                self._box = _shift_box(self._box, float(dx), float(dy))
                self._points = points
                self._carried += 1
                return points, False
        # Lost: look for the face afresh (the same person, near where it was).
        found = self._first(frame)
        if found is not None and (self._box is None or box_iou(found[0], self._box) > 0.1):
            self._box, self._points = found
            self._patch = _face_patch(frame, self._points)
            self._carried = 0
            return self._points, True
        self._points = None
        self._carried = self.settings.max_carry
        return None, False


def fill_gaps(landmarks: TrackPoints, visible: NDArray[np.bool_], max_gap: int) -> None:
    """Interpolate short runs of lost frames between two sightings, in place."""
    index = 0
    frames = len(visible)
    while index < frames:
        if visible[index]:
            index += 1
            continue
        start = index
        while index < frames and not visible[index]:
            index += 1
        if start == 0 or index == frames or index - start > max_gap:
            continue
        before, after = landmarks[start - 1], landmarks[index]
        for k in range(start, index):
            t = (k - start + 1) / (index - start + 1)
            landmarks[k] = before + (after - before) * t
            visible[k] = True


def _one_euro(
    values: NDArray[np.float64], fps: float, min_cutoff: float, beta: float
) -> NDArray[np.float64]:
    """One-Euro filter along axis 0 (Casiez et al. 2012): a low-pass whose cutoff rises with
    speed, so a still face is steady and a fast move is followed without lag."""
    out = np.empty_like(values)
    out[0] = values[0]
    derivative = np.zeros_like(values[0])
    period = 1.0 / fps

    def smoothing(cutoff: NDArray[np.float64] | float) -> NDArray[np.float64] | float:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / period)

    derivative_alpha = smoothing(1.0)
    for index in range(1, len(values)):
        raw_derivative = (values[index] - out[index - 1]) / period
        derivative = derivative + derivative_alpha * (raw_derivative - derivative)
        alpha = smoothing(min_cutoff + beta * np.abs(derivative))
        out[index] = out[index - 1] + alpha * (values[index] - out[index - 1])
    return out


def _invert(params: NDArray[np.float64]) -> NDArray[np.float64]:
    a, b, tx, ty = params
    det = a * a + b * b
    ia, ib = a / det, -b / det
    return np.array([ia, ib, -(ia * tx - ib * ty), -(ib * tx + ia * ty)])


def _split(
    segment: TrackPoints,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """A run of frames as a reference shape, each frame's shape aligned to it, and each
    frame's placement (the similarity taking the aligned shape back onto the frame)."""
    points = segment.astype(np.float64)
    reference = points.mean(axis=0)
    placement = np.array([fit_similarity(frame, reference) for frame in points])
    shapes = np.array([apply_similarity(p, f) for p, f in zip(placement, points, strict=True)])
    return reference, shapes, np.array([_invert(p) for p in placement])


def smooth(
    landmarks: TrackPoints,
    visible: NDArray[np.bool_],
    fps: float,
    settings: TrackSettings,
    motions: list[NDArray[np.float64] | None] | None = None,
) -> TrackPoints:
    """Remove landmark jitter without lagging behind the head or the camera.

    Each frame is split into the head's rigid placement (a similarity fitted to all 68
    points, which averages the per-point noise away) and its shape in a fixed frame (the
    expression). The shape, where the jitter lives, gets the full One-Euro filter. With
    ``motions`` (the head's motion from the frame before, measured from the picture: see
    :func:`head_motion`) the placement follows them and the fit only corrects their drift
    (:func:`_fused_placement`); without, it is only lightly filtered so fast moves and camera
    shake are followed. Filters run forwards and backwards and are averaged (zero phase: no
    lag, no lead).
    """
    result = landmarks.copy()
    for start, stop in _runs(visible):
        if stop - start < 3:
            continue
        reference, shapes, inverse = _split(landmarks[start:stop])
        unit = eye_distance(reference.astype(np.float32)) or 1.0
        # Placement as where the reference's corners land, in eye distances.
        flat_shape = shapes.reshape(len(shapes), -1) / unit
        shape = _zero_phase(flat_shape, fps, settings.min_cutoff, settings.beta) * unit
        drift = settings.place_drift_seconds * fps
        if motions is not None and drift > 0:
            place = _fused_placement(inverse, motions[start:stop], drift)
        else:
            flat_place = inverse / np.array([1.0, 1.0, unit, unit])
            place = _zero_phase(flat_place, fps, settings.place_min_cutoff, settings.place_beta)
            place *= np.array([1.0, 1.0, unit, unit])
        rebuilt = [apply_similarity(p, s.reshape(-1, 2)) for p, s in zip(place, shape, strict=True)]
        result[start:stop] = np.array(rebuilt, dtype=np.float32)
    return result


def _compose(outer: NDArray[np.float64], inner: NDArray[np.float64]) -> NDArray[np.float64]:
    """The similarity ``outer`` after ``inner`` (both ``a, b, tx, ty``)."""
    a, b, tx, ty = outer
    c, d, ux, uy = inner
    return np.array([a * c - b * d, a * d + b * c, a * ux - b * uy + tx, b * ux + a * uy + ty])


def _fused_placement(
    placement: NDArray[np.float64],
    motions: list[NDArray[np.float64] | None],
    drift: float,
) -> NDArray[np.float64]:
    """The head's placement per frame (``a, b, tx, ty``, reference to frame) from its
    measured frame-to-frame ``motions``, anchored to the fitted ``placement``.

    A landmark fit places the head to about a pixel, differently on every frame; the
    picture's own motion (a couple of hundred corners followed by optical flow) says how it
    moved to a few hundredths, but drifts when summed. So the motions are chained into a
    path, and the gap between the path and the fitted placement, which holds the fit's
    jitter and the path's slow drift, is smoothed over ``drift`` frames and put back: the
    result moves as the picture does and stays where the fit says on average. A frame
    whose motion could not be measured steps as the fit does."""
    count = len(placement)
    path = np.empty((count, 4))
    path[0] = (1.0, 0.0, 0.0, 0.0)
    for index in range(1, count):
        motion = motions[index]
        if motion is None:
            motion = _compose(placement[index], _invert(placement[index - 1]))
        path[index] = _compose(motion, path[index - 1])
    # placement = path after gap, the gap taking the reference to the run's first frame
    gap = np.array([_compose(_invert(path[i]), placement[i]) for i in range(count)])
    gap = _gaussian(gap, drift)
    return np.array([_compose(path[i], gap[i]) for i in range(count)])


def head_motion(
    previous: NDArray[np.uint8], grey: NDArray[np.uint8], points: Points
) -> NDArray[np.float64] | None:
    """How the head moved from ``previous`` to ``grey`` (grey frames), as a similarity
    ``a, b, tx, ty``; ``points``: its landmarks in ``previous``. None when too little of it
    could be followed.

    Corners on the rigid part of the face (brows, nose, upper cheeks and forehead edge; not
    the eyes, which blink, nor the jaw and mouth, which speak) are followed by pyramidal
    Lucas-Kanade both ways; those that come back to within a third of a pixel vote, and a
    RANSAC similarity fit ignores the few that moved on their own."""
    unit = max(eye_distance(points), 1.0)
    if unit < 12:
        return None
    upper = np.vstack([points[0:3], points[17:27], points[14:17], points[27:36]])
    mask = np.zeros(grey.shape, np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(upper).astype(np.int32)), 255)
    for eye in (points[36:42], points[42:48]):
        hull = cv2.convexHull(np.round(eye).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 0)
        cv2.polylines(mask, [hull], True, 0, max(2, round(unit * 0.15)))
    corners = cv2.goodFeaturesToTrack(
        previous, 200, 0.01, max(3.0, unit * 0.05), mask=mask, blockSize=5
    )
    if corners is None or len(corners) < 8:
        return None
    corners = np.asarray(corners, np.float32)
    window = (21, 21)
    ahead, found, _ = cv2.calcOpticalFlowPyrLK(previous, grey, corners, None, winSize=window)
    back, returned, _ = cv2.calcOpticalFlowPyrLK(grey, previous, ahead, None, winSize=window)
    error = np.linalg.norm((back - corners).reshape(-1, 2), axis=1)
    good = (found.reshape(-1) == 1) & (returned.reshape(-1) == 1) & (error < 0.3)
    if good.sum() < 8:
        return None
    matrix, inliers = cv2.estimateAffinePartial2D(
        corners[good], ahead[good], method=cv2.RANSAC, ransacReprojThreshold=0.7
    )
    if matrix is None or inliers is None or int(inliers.sum()) < 8:
        return None
    return np.array([matrix[0, 0], matrix[1, 0], matrix[0, 2], matrix[1, 2]], np.float64)


def steady(
    landmarks: TrackPoints,
    visible: NDArray[np.bool_],
    *,
    shape_frames: float = 2.0,
    place_frames: float = 0.7,
) -> TrackPoints:
    """Landmarks made steadier for a render, which knows the whole clip in advance.

    The pack's track follows every twitch of the face closely enough for analysis, but a
    selfie warped onto it shimmers where the real face does not (a render's flicker was 1.5x
    the clip's on real talking heads). Like :func:`smooth`, the head's rigid placement and
    its shape are separated; each is filtered with a centred Gaussian (no lag), the shape
    over ``shape_frames`` frames (the clip's own eyes and mouth stay in the output, so the
    selfie's shape need not follow their fastest moves) and the placement over
    ``place_frames``.
    """
    result = landmarks.copy()
    for start, stop in _runs(visible):
        if stop - start < 3:
            continue
        _, shapes, inverse = _split(landmarks[start:stop])
        shapes = _gaussian(shapes, shape_frames)
        inverse = _gaussian(inverse, place_frames)
        rebuilt = [apply_similarity(p, f) for p, f in zip(inverse, shapes, strict=True)]
        result[start:stop] = np.array(rebuilt, dtype=np.float32)
    return result


# Degrees past the limit over which a turned face's swap fades out (see turn_strength).
TURN_FADE = 10.0


def turns(landmarks: TrackPoints, visible: NDArray[np.bool_]) -> NDArray[np.float32]:
    """How far the face is turned from the camera in each frame (degrees, either way; 0
    where it is not seen)."""
    turned = np.zeros(len(visible), np.float32)
    for index in np.flatnonzero(visible):
        turned[index] = abs(yaw_degrees(landmarks[index]))
    return turned


def turn_strength(
    landmarks: TrackPoints, visible: NDArray[np.bool_], limit: float, fade: float = TURN_FADE
) -> NDArray[np.float32]:
    """How much of the swap each frame shows (0..1): all of it while the face is turned
    up to ``limit`` degrees, fading to none ``fade`` degrees further (0 where the face is
    not seen). One frontal selfie shows a face's far side only up to about the turn a
    selfie itself may have; warped over a face turned further, it stretched the far cheek
    across the nose, so there the clip keeps its own face. Use steadied landmarks (see
    :func:`steady`): the turn is read from them frame by frame."""
    strength = np.clip((limit + fade - turns(landmarks, visible)) / fade, 0.0, 1.0)
    return np.where(visible, strength, 0.0).astype(np.float32)


def rest_shape(landmarks: TrackPoints, visible: NDArray[np.bool_]) -> Points | None:
    """The clip face's resting shape: the per-point median of every visible frame's shape,
    aligned to their mean (an open mouth or a blink in a few frames does not count)."""
    shown = landmarks[visible]
    if len(shown) == 0:
        return None
    _, shapes, _ = _split(shown)
    return np.median(shapes, axis=0).astype(np.float32)


def _gaussian(values: NDArray[np.float64], sigma: float) -> NDArray[np.float64]:
    """A centred Gaussian along axis 0, edges padded with their own values."""
    if sigma <= 0:
        return values
    reach = int(3 * sigma) + 1
    taps = np.exp(-(np.arange(-reach, reach + 1) ** 2) / (2 * sigma * sigma))
    taps /= taps.sum()
    padded = np.concatenate(
        [np.repeat(values[:1], reach, 0), values, np.repeat(values[-1:], reach, 0)]
    )
    return np.asarray(
        sum(w * padded[i : i + len(values)] for i, w in enumerate(taps)), dtype=np.float64
    )


def _zero_phase(
    values: NDArray[np.float64], fps: float, min_cutoff: float, beta: float
) -> NDArray[np.float64]:
    forward = _one_euro(values, fps, min_cutoff, beta)
    backward = _one_euro(values[::-1], fps, min_cutoff, beta)[::-1]
    return (forward + backward) / 2.0


def _runs(visible: NDArray[np.bool_]) -> Iterator[tuple[int, int]]:
    index, frames = 0, len(visible)
    while index < frames:
        if not visible[index]:
            index += 1
            continue
        start = index
        while index < frames and visible[index]:
            index += 1
        yield start, index


def jitter(landmarks: TrackPoints, visible: NDArray[np.bool_]) -> float:
    """Mean frame-to-frame wobble: the second difference of each landmark (which ignores
    steady motion), as a share of the eye distance."""
    values = []
    for start, stop in _runs(visible):
        if stop - start < 3:
            continue
        segment = landmarks[start:stop].astype(np.float64)
        unit = float(np.median([eye_distance(p) for p in segment])) or 1.0
        second = segment[2:] - 2.0 * segment[1:-1] + segment[:-2]
        values.append(np.linalg.norm(second, axis=2).mean() / unit)
    return float(np.mean(values)) if values else 0.0


class TrackRecorder:
    """Feed frames one by one (while they are also being written elsewhere), then
    :meth:`finish` fills gaps and smooths."""

    def __init__(self, analyzer: Analyzer, settings: TrackSettings | None = None) -> None:
        self.settings = settings or TrackSettings()
        self._tracker = FaceTracker(analyzer, self.settings)
        self._points: list[Points] = []
        self._seen: list[bool] = []
        self._detected: list[bool] = []
        self._last: tuple[NDArray[np.uint8], Points | None] | None = None
        self._motions: list[NDArray[np.float64] | None] = []

    @property
    def frames(self) -> int:
        return len(self._seen)

    def add(self, frame: RGBImage) -> None:
        found, by_detector = self._tracker.step(frame)
        grey = np.asarray(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
        motion = None
        if found is not None:
            last = self._last
            if last is not None and last[1] is not None and last[0].shape == grey.shape:
                motion = head_motion(last[0], grey, last[1])
            found = self._follow_flow(grey, found)
        self._motions.append(motion)
        self._last = (grey, found)
        self._seen.append(found is not None)
        self._detected.append(by_detector)
        self._points.append(found if found is not None else np.zeros((68, 2), np.float32))

    def _follow_flow(self, grey: NDArray[np.uint8], found: Points) -> Points:
        """Blend the landmark fit with where optical flow carries the last frame's points.

        A landmark model re-fitted on every frame wobbles by about a pixel even on a still
        face; the image itself says where each point moved, to a fraction of a pixel. Flow
        drifts, the fit does not, so each frame mixes the two (flow ``flow_weight``), and a
        point whose flow is lost or disagrees with the fit by over a tenth of the eye
        distance (a blink, a fast turn) takes the fit.
        """
        weight = self.settings.flow_weight
        if self._last is None or weight <= 0:
            return found
        previous_grey, previous = self._last
        if previous is None or previous_grey.shape != grey.shape:
            return found
        start = np.ascontiguousarray(previous.reshape(-1, 1, 2), dtype=np.float32)
        moved, status, _ = cv2.calcOpticalFlowPyrLK(
            previous_grey,
            grey,
            start,
            start.copy(),
            winSize=(15, 15),
            maxLevel=2,
            criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03),
        )
        flowed = moved.reshape(-1, 2)
        ok = status.reshape(-1).astype(bool)
        near = np.linalg.norm(flowed - found, axis=1) < 0.1 * max(eye_distance(found), 1.0)
        mix = np.where(ok & near, weight, 0.0)[:, None]
        return np.asarray(mix * flowed + (1.0 - mix) * found, dtype=np.float32)

    def finish(self, fps: float) -> Track:
        landmarks = np.array(self._points, dtype=np.float32).reshape(-1, 68, 2)
        visible = np.array(self._seen, dtype=np.bool_)
        fill_gaps(landmarks, visible, self.settings.max_gap)
        smoothed = smooth(landmarks, visible, fps, self.settings, self._motions)
        return Track(
            landmarks=smoothed,
            visible=visible,
            raw_jitter=jitter(landmarks, visible),
            jitter=jitter(smoothed, visible),
            detected=np.array(self._detected, dtype=np.bool_),
        )


def track_video(
    frames: Iterable[RGBImage],
    analyzer: Analyzer,
    fps: float,
    settings: TrackSettings | None = None,
) -> Track:
    """Follow the target face through ``frames``."""
    recorder = TrackRecorder(analyzer, settings)
    for frame in frames:
        recorder.add(frame)
    return recorder.finish(fps)


__all__ = [
    "TURN_FADE",
    "FaceTracker",
    "Track",
    "TrackPoints",
    "TrackRecorder",
    "TrackSettings",
    "fill_gaps",
    "head_motion",
    "jitter",
    "rest_shape",
    "smooth",
    "steady",
    "track_video",
    "turn_strength",
    "turns",
]
