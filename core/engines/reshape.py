"""Giving the clip's face the selfie's proportions before the selfie's skin goes on.

A texture warped onto the clip's own landmarks keeps the clip's geometry: where its eyes sit
and how far apart, the length of its nose, the width of its mouth, the line of its jaw. That
geometry is much of what makes a face look like somebody (the swap measured a median
identity gain of 0.09 with it kept). Here the clip's face is *reshaped*: each feature (a
brow, an eye, the nose, the mouth) moves and scales to where the selfie has it, and the jaw
line moves part of the way to the selfie's, while every expression move of the clip (a
blink, a word, a raised brow) is kept on top, because the change is measured against the
clip's resting shape, not against each frame.

The clip's frame itself is bent to the new shape with a smooth thin-plate spline that fades
to nothing at the crop's edge, so the clip's own eyes, mouth and brows (which the swap
keeps) move with the new outline and the background near the jaw follows smoothly.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from core.faces.landmarks import (
    JAW,
    Points,
    apply_similarity,
    eye_distance,
    fit_similarity,
    yaw_degrees,
)

Matrix = NDArray[np.float64]

# A brow turns towards the selfie's by this many degrees at most: a brow's tilt is mostly
# expression (raised inner ends look worried, lowered ones angry), and a smiling selfie's
# arched brows, turned up to 15 degrees, froze that look into every frame.
_BROW_TURN = 4.0
_ANY_TURN = 180.0
# Features moved and scaled as a whole (an affine each): their proportions carry identity,
# their finer shape in the selfie carries the selfie's expression (a smile's curve), which
# must not freeze into the clip. Each: its points, its largest change of size (a share),
# its largest turn (degrees).
_FEATURES = (
    (slice(17, 22), 0.10, _BROW_TURN),  # a brow
    (slice(22, 27), 0.10, _BROW_TURN),
    (slice(27, 36), 0.12, _ANY_TURN),  # the nose
    (slice(36, 42), 0.15, _ANY_TURN),  # an eye
    (slice(42, 48), 0.15, _ANY_TURN),
    (slice(48, 68), 0.12, _ANY_TURN),  # the mouth: a smile widens it, so its change is capped
)
# The gap between the brows' inner ends shrinks to no less than this share of the clip's:
# the clip's brow hair reaches past its landmarks' ends, and brought as close as a selfie
# with close-set brows has them, the two met over the nose (a unibrow).
_BROW_GAP = 0.8
# Where the whole face is placed: the points that an expression hardly moves.
_STEADY = np.r_[0:17, 27:36, 36:48]


def _apply(matrix: Matrix, points: NDArray[np.float64]) -> NDArray[np.float64]:
    """``points`` moved by a 2x3 affine ``matrix``."""
    return np.asarray(points @ matrix[:, :2].T + matrix[:, 2], np.float64)


def _bounded_affine(
    source: NDArray[np.float64], target: NDArray[np.float64], cap: float, turn: float = _ANY_TURN
) -> Matrix:
    """The affine taking ``source`` onto ``target`` about its centre, its stretches held
    within ``1 +- cap``, no shear beyond what those allow and its rotation within ``turn``
    degrees."""
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    s, t = source - mu_s, target - mu_t
    linear, *_ = np.linalg.lstsq(s, t, rcond=None)  # s @ linear = t
    u, sigma, vt = np.linalg.svd(linear.T)
    rotation = u @ vt  # linear = rotation @ stretch (a polar decomposition)
    if np.linalg.det(rotation) < 0:  # a mirror is never a change of proportion
        return np.hstack([np.eye(2), (mu_t - mu_s)[:, None]])
    angle = float(np.arctan2(rotation[1, 0], rotation[0, 0]))
    limit = np.radians(turn)
    if abs(angle) > limit:
        held = float(np.clip(angle, -limit, limit))
        rotation = np.array([[np.cos(held), -np.sin(held)], [np.sin(held), np.cos(held)]])
    linear = rotation @ vt.T @ np.diag(np.clip(sigma, 1.0 - cap, 1.0 + cap)) @ vt
    return np.hstack([linear, (mu_t - linear @ mu_s)[:, None]])


@dataclass(frozen=True, slots=True)
class ShapeChange:
    """How far each of the 68 points of a clip's resting face moves to take the selfie's
    proportions, in the resting face's own frame (``rest``)."""

    rest: NDArray[np.float64]  # (68, 2) the clip's resting face
    offsets: NDArray[np.float64]  # (68, 2) in the same frame

    @classmethod
    def between(
        cls,
        selfie: Points,
        rest: Points,
        *,
        features: float = 0.85,
        jaw: float = 0.6,
        jaw_seen: bool = True,
    ) -> ShapeChange:
        """The change from the clip's resting face ``rest`` to the selfie's proportions:
        ``features`` and ``jaw`` say how much of the way (0..1); ``jaw_seen`` False (a
        selfie cropped at the chin) leaves the jaw line alone.

        Proportions are compared in 2D, so a turned head (the selfie's or the clip's) would
        read as a narrower face: the change fades out between 20 and 35 degrees of turn
        (the two faces' turns added; at 20 a face looks 6 % narrower, within the caps)."""
        turn = abs(yaw_degrees(selfie[:68])) + abs(yaw_degrees(rest[:68]))
        trust = float(np.clip((35.0 - turn) / 15.0, 0.0, 1.0))
        features *= trust
        jaw *= trust if jaw_seen else 0.0
        rest64 = np.asarray(rest[:68], np.float64)
        selfie64 = np.asarray(selfie[:68], np.float64)
        placed = apply_similarity(fit_similarity(selfie64[_STEADY], rest64[_STEADY]), selfie64)
        offsets = np.zeros_like(rest64)
        for part, cap, turn in _FEATURES:
            matrix = _bounded_affine(rest64[part], placed[part], cap, turn)
            offsets[part] = (_apply(matrix, rest64[part]) - rest64[part]) * features
        _hold_brow_gap(rest64, offsets)
        unit = max(eye_distance(rest64.astype(np.float32)), 1.0)
        moved = (placed[JAW] - rest64[JAW]) * jaw
        length = np.linalg.norm(moved, axis=1, keepdims=True)
        limit = 0.12 * unit  # a selfie's jaw line is often misread (hair, beard, a collar)
        offsets[JAW] = moved * np.minimum(1.0, limit / np.maximum(length, 1e-6))
        return cls(rest64, offsets)

    @property
    def moves(self) -> bool:
        """Whether the change moves any point by a visible amount (a twentieth of a pixel)."""
        return float(np.abs(self.offsets).max(initial=0.0)) > 0.05

    def apply(self, target: Points) -> Points:
        """The clip frame's 68 points ``target`` with the change applied (its expression
        kept: the offsets are turned and scaled with the head)."""
        target64 = np.asarray(target[:68], np.float64)
        a, b, _, _ = fit_similarity(self.rest[_STEADY], target64[_STEADY])
        moved = target64 + self.offsets @ np.array([[a, -b], [b, a]]).T
        return np.asarray(moved, np.float32)


def _hold_brow_gap(rest: NDArray[np.float64], offsets: NDArray[np.float64]) -> None:
    """Move the brows apart (``offsets`` in place) where the change would bring their inner
    ends closer than ``_BROW_GAP`` of the clip's own gap, along the line of the eyes."""
    axis = rest[42:48].mean(axis=0) - rest[36:42].mean(axis=0)
    axis /= max(float(np.linalg.norm(axis)), 1e-6)
    gap = float((rest[22] - rest[21]) @ axis)
    moved = gap + float((offsets[22] - offsets[21]) @ axis)
    short = _BROW_GAP * gap - moved
    if gap > 0 and short > 0:
        offsets[17:22] -= axis * (short / 2.0)
        offsets[22:27] += axis * (short / 2.0)


def _kernel(squared: NDArray[np.float64]) -> NDArray[np.float64]:
    """The thin-plate spline's radial function r^2 log r, from r^2."""
    return np.asarray(0.5 * squared * np.log(np.maximum(squared, 1e-12)), np.float64)


def spline_map(at: Points, to: Points, shape: tuple[int, int], unit: float) -> NDArray[np.float32]:
    """For every pixel of a ``shape`` picture, the position a smooth thin-plate spline takes
    it to: ``to[i]`` at ``at[i]`` (up to a slight smoothing that keeps close points from
    fighting), ``(height, width, 2)``, ready for ``cv2.remap``.

    The spline is worked out on a coarse grid (its field is smooth) and resized to every
    pixel; the grid cells are placed where ``cv2.resize`` expects their centres, so the
    resize adds no shift."""
    height, width = shape
    controls = np.asarray(at, np.float64) / unit
    values = np.asarray(to, np.float64) - np.asarray(at, np.float64)
    count = len(controls)
    norms = (controls * controls).sum(1)
    gaps = np.maximum(norms[:, None] + norms[None, :] - 2.0 * controls @ controls.T, 0.0)
    system = np.zeros((count + 3, count + 3))
    system[:count, :count] = _kernel(gaps) + np.eye(count) * 1e-4
    system[:count, count] = 1.0
    system[:count, count + 1 :] = controls
    system[count, :count] = 1.0
    system[count + 1 :, :count] = controls.T
    right = np.zeros((count + 3, 2))
    right[:count] = values
    weights = np.linalg.solve(system, right)
    cell = max(4, round(unit / 8))
    columns, rows = max(2, -(-width // cell)), max(2, -(-height // cell))
    grid_x = (np.arange(columns) + 0.5) * (width / columns) - 0.5
    grid_y = (np.arange(rows) + 0.5) * (height / rows) - 0.5
    gx, gy = np.meshgrid(grid_x, grid_y)
    # the grid is evaluated in single precision (a thousandth of a pixel at most: the
    # weights are solved in double), which halves the time of its logarithms
    samples = (np.stack([gx.ravel(), gy.ravel()], 1) / unit).astype(np.float32)
    near = controls.astype(np.float32)
    distances = (samples * samples).sum(1)[:, None] + (near * near).sum(1)[None, :]
    distances -= 2.0 * samples @ near.T
    np.maximum(distances, np.float32(1e-12), out=distances)
    kernel = distances * np.log(distances)  # r^2 log r, from r^2 (halved below)
    field = kernel @ (0.5 * weights[:count]).astype(np.float32)
    field += (weights[count] + samples @ weights[count + 1 :]).astype(np.float32)
    shift = field.reshape(rows, columns, 2).astype(np.float32)
    shift = np.asarray(cv2.resize(shift, (width, height), interpolation=cv2.INTER_LINEAR))
    shift[:, :, 0] += np.arange(width, dtype=np.float32)[None, :]
    shift[:, :, 1] += np.arange(height, dtype=np.float32)[:, None]
    return shift


def bend(
    region: NDArray[np.uint8],
    before: Points,
    after: Points,
    unit: float,
    *,
    still: Points | None = None,
) -> NDArray[np.uint8]:
    """``region`` bent so that what was at ``before`` (its own points) is at ``after``, the
    crop's edge and the points ``still`` staying where they are; the rest follows a smooth
    thin-plate spline."""
    height, width = region.shape[:2]
    change = np.asarray(before, np.float64) - np.asarray(after, np.float64)
    if float(np.abs(change).max(initial=0.0)) < 0.05:
        return region
    # the crop's edge holds still: anchors every ~half eye distance along it
    step = max(8.0, unit * 0.5)
    xs = np.linspace(0, width - 1, max(2, round(width / step) + 1))
    ys = np.linspace(0, height - 1, max(2, round(height / step) + 1))
    edge = np.vstack(
        [
            np.stack([xs, np.zeros_like(xs)], 1),
            np.stack([xs, np.full_like(xs, height - 1)], 1),
            np.stack([np.zeros_like(ys[1:-1]), ys[1:-1]], 1),
            np.stack([np.full_like(ys[1:-1], width - 1), ys[1:-1]], 1),
        ]
    )
    if still is not None:
        edge = np.vstack([edge, np.asarray(still, np.float64)])
    at = np.vstack([np.asarray(after, np.float64), edge]).astype(np.float32)
    to = np.vstack([np.asarray(before, np.float64), edge]).astype(np.float32)
    maps = spline_map(at, to, (height, width), unit)
    bent = cv2.remap(
        region, maps[:, :, 0], maps[:, :, 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    return np.asarray(bent, np.uint8)


__all__ = ["ShapeChange", "bend", "spline_map"]
