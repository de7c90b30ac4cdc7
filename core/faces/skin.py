"""Skin: where it is in a face, what colour it is, and how much a pixel looks like it.

Shared by enrolment (finding where a selfie's forehead turns into fringe) and by the swap
(colour transfer and skin-only blending).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from core.faces.landmarks import BROWS, JAW, LEFT_EYE, OUTER_LIPS, RIGHT_EYE, Points
from core.media.images import RGBImage

FloatImage = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class ColourStats:
    """Mean and standard deviation of the skin in CIELAB (L 0-100, a/b about 0)."""

    mean: NDArray[np.float32]
    std: NDArray[np.float32]


def fill(shape: tuple[int, int], polygon: Points, *, convex: bool = False) -> NDArray[np.uint8]:
    mask = np.zeros(shape, dtype=np.uint8)
    pts = np.round(polygon * 16).astype(np.int32)  # 4 bits of sub-pixel precision
    if convex:
        cv2.fillConvexPoly(mask, pts, 255, lineType=cv2.LINE_AA, shift=4)
    else:
        cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_AA, shift=4)
    return mask


# 0..255 to 0..1 as a table: exactly ``value / 255`` in single precision, and ten times
# faster than numpy's division
_UNIT = (np.arange(256, dtype=np.float32) / np.float32(255.0)).reshape(1, 256)


def unit_scale(image: NDArray[np.uint8]) -> FloatImage:
    """An 8-bit picture or mask (any channels) as float32 in 0..1."""
    return np.asarray(cv2.LUT(np.ascontiguousarray(image), _UNIT), np.float32)


def blur(mask: NDArray[np.uint8] | FloatImage, sigma: float) -> FloatImage:
    """Gaussian blur; wide ones run on a smaller copy (same look, a fraction of the time)."""
    if mask.dtype == np.uint8:
        values = unit_scale(np.asarray(mask, np.uint8))
    else:  # (read only below: no copy)
        values = np.asarray(mask, np.float32)
    if sigma < 0.3:
        return values.copy() if values is mask else values
    factor = int(sigma // 3)
    height, width = values.shape[:2]
    if factor < 2 or min(height, width) < 8 * factor:
        return np.asarray(cv2.GaussianBlur(values, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT))
    small = cv2.resize(
        values, (max(1, width // factor), max(1, height // factor)), interpolation=cv2.INTER_AREA
    )
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor, borderType=cv2.BORDER_CONSTANT)
    return np.asarray(cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR))


def smooth_over(values: FloatImage, weight: FloatImage, sigma: float) -> FloatImage:
    """``values`` (with or without channels) averaged around each pixel over ``weight``
    with a Gaussian of ``sigma``: a blur that counts only where ``weight`` is (the skin,
    say), so what lies beside it (hair, a wall) does not bleed in."""
    weight = np.asarray(weight, np.float32)
    weighted = values * (weight[:, :, None] if values.ndim == 3 else weight)
    spread = blur(np.ascontiguousarray(weighted, np.float32), sigma).reshape(values.shape)
    norm = np.maximum(blur(weight, sigma), np.float32(1e-3))
    return np.asarray(spread / (norm[:, :, None] if values.ndim == 3 else norm), np.float32)


def grown_hull(shape: tuple[int, int], hull: Points, radius: int) -> NDArray[np.uint8]:
    """255 over the convex polygon ``hull`` grown by ``radius`` pixels: what dilating its fill
    with a :func:`disc` gives (the same area within a percent), drawn directly as the fill
    and a round-capped outline (a dilation with a round kernel cost up to 15x more)."""
    mask = np.zeros(shape, dtype=np.uint8)
    pts = np.round(hull * 16).astype(np.int32)
    cv2.fillConvexPoly(mask, pts, 255, lineType=cv2.LINE_AA, shift=4)
    if radius > 0:
        cv2.polylines(mask, [pts], True, 255, thickness=2 * radius, lineType=cv2.LINE_AA, shift=4)
    return mask


def disc(radius: int) -> NDArray[np.uint8]:
    size = 2 * max(1, radius) + 1
    return np.asarray(cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))


def inner_outline(points: Points) -> Points:
    """Jaw line then brows: the outline of the 68 landmarks alone, without the forehead."""
    return np.vstack([points[JAW], points[BROWS][::-1]])


def features(points: Points, shape: tuple[int, int]) -> NDArray[np.uint8]:
    """Eyes, brows, nose and mouth: the part of the face that carries identity."""
    hull = np.asarray(cv2.convexHull(points[17:68]), np.float32).reshape(-1, 2)
    return fill(shape, hull, convex=True)


def skin_mask(points: Points, shape: tuple[int, int], unit: float) -> NDArray[np.bool_]:
    """Cheeks, nose and chin (below the brows, so no fringe of hair): where skin colour is
    measured, with eyes, brows and mouth cut out."""
    radius = max(1, round(unit * 0.05))
    skin = cv2.erode(fill(shape, inner_outline(points)), disc(radius)) > 0
    for part in (RIGHT_EYE, LEFT_EYE, OUTER_LIPS, BROWS):
        hull = np.asarray(cv2.convexHull(points[part]), np.float32).reshape(-1, 2)
        skin &= grown_hull(shape, hull, 2 * radius) == 0
    return np.asarray(skin, dtype=np.bool_)


def clear_skin(points: Points, shape: tuple[int, int], unit: float) -> NDArray[np.bool_]:
    """The part of :func:`skin_mask` beside the nose, below the eyes and above the nose tip:
    where neither glasses nor a beard or moustache usually are, so the skin's colour and
    spread are measured on skin alone (a beard in the sample widened the spread until dark
    glasses' frames passed for skin)."""
    skin = skin_mask(points, shape, unit)
    rows = np.arange(shape[0])[:, None]
    eyes_bottom = float(max(points[RIGHT_EYE][:, 1].max(), points[LEFT_EYE][:, 1].max()))
    band = (rows > eyes_bottom + 0.1 * unit) & (rows < float(points[33, 1]))
    clear = skin & band
    return clear if clear.sum() >= 32 else skin


def colour_stats(lab: FloatImage, mask: NDArray[np.bool_]) -> ColourStats:
    """Skin colour statistics, ignoring the darkest and brightest tenth (shadows, shine)."""
    where = np.flatnonzero(mask)
    if len(where) < 16:
        where = np.arange(mask.size)
    if len(where) > 1536:  # a regular sample: the statistics do not need every pixel
        where = where[:: len(where) // 1536 + 1]
    pixels = lab.reshape(-1, 3)[where]
    low, high = np.percentile(pixels[:, 0], [10, 90])
    # Dark frames of glasses or a shadowed beard can fill more than a tenth: keep lightness
    # within a robust spread (median absolute deviation) of the median too.
    median = float(np.median(pixels[:, 0]))
    deviation = 1.4826 * float(np.median(np.abs(pixels[:, 0] - median)))
    low = max(low, median - 2.5 * max(deviation, 3.0))
    high = min(high, median + 2.5 * max(deviation, 3.0))
    # Whatever is not skin inside the mask (a microphone, a pen, a bar across the face)
    # differs in hue: drop pixels far from the median chroma before measuring.
    chroma = pixels[:, 1:] - np.median(pixels[:, 1:], axis=0)
    spread = np.sqrt((chroma * chroma).sum(axis=1))
    near = spread <= max(6.0, 2.5 * float(np.median(spread)))
    trimmed = pixels[(pixels[:, 0] >= low) & (pixels[:, 0] <= high) & near]
    if len(trimmed) >= 16:
        pixels = trimmed
    return ColourStats(
        mean=pixels.mean(axis=0).astype(np.float32), std=pixels.std(axis=0).astype(np.float32)
    )


def skin_likeness(lab: FloatImage, stats: ColourStats, *, use_chroma: bool = True) -> FloatImage:
    """1 where a pixel looks like the face's skin, falling to 0 for hair, glasses, beard.

    Tolerant of light and shade (the spread floors are wide: real faces have highlights
    and shadows 15-20 L apart) but not of hair, which differs in lightness and hue at once.
    """
    floor = np.array([9.0, 4.0, 4.0], dtype=np.float32)
    spread = np.maximum(stats.std, floor)
    if use_chroma:
        # channel by channel: numpy's sum over a last axis of three is several times slower
        squared = np.zeros(lab.shape[:2], np.float32)
        for channel in range(3):
            z = (lab[:, :, channel] - stats.mean[channel]) / spread[channel]
            squared += z * z
        distance = np.sqrt(squared)
    else:
        distance = np.abs(lab[:, :, 0] - stats.mean[0]) * (1.4 / spread[0])
    return np.clip((4.5 - distance) / 1.5, 0.0, 1.0).astype(np.float32)


def to_lab(image: RGBImage) -> FloatImage:
    """CIELAB with L in 0..100 (OpenCV's float convention)."""
    return np.asarray(cv2.cvtColor(unit_scale(image), cv2.COLOR_RGB2LAB))


def from_lab(lab: FloatImage) -> FloatImage:
    """RGB in 0..255 floats from OpenCV's float CIELAB."""
    return np.asarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)) * 255.0


__all__ = [
    "ColourStats",
    "FloatImage",
    "blur",
    "clear_skin",
    "colour_stats",
    "disc",
    "features",
    "fill",
    "from_lab",
    "grown_hull",
    "inner_outline",
    "skin_likeness",
    "skin_mask",
    "smooth_over",
    "to_lab",
    "unit_scale",
]
