"""Geometry of the 68-point (iBUG 300-W) landmark layout that the whole core shares.

Pure numpy/OpenCV helpers: named index ranges, eye centres, head pose, the extrapolated
forehead points that let a swap cover the whole face, and the similarity alignment used for
face textures.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

Points = NDArray[np.float32]
"""An ``(n, 2)`` float32 array of ``(x, y)`` pixel positions."""

JAW = slice(0, 17)
BROWS = slice(17, 27)
NOSE = slice(27, 36)
NOSTRILS = slice(31, 36)  # the nose's lower edge
RIGHT_EYE = slice(36, 42)  # the subject's right eye: on the left of the picture
LEFT_EYE = slice(42, 48)
OUTER_LIPS = slice(48, 60)
INNER_LIPS = slice(60, 68)
OUTER_EYE_CORNERS = (36, 45)

# How far above each brow point (17..26) the forehead reaches, as a share of the
# eyes-to-chin distance: an arc, lower at the temples than above the nose.
FOREHEAD_RISE = np.array(
    [0.16, 0.24, 0.29, 0.32, 0.33, 0.33, 0.32, 0.29, 0.24, 0.16], dtype=np.float32
)
N_EXTENDED = 68 + len(FOREHEAD_RISE)


def eye_centres(points: Points) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Centres of the eye on the left and the eye on the right of the picture."""
    return points[RIGHT_EYE].mean(axis=0), points[LEFT_EYE].mean(axis=0)


def eye_distance(points: Points) -> float:
    """Distance between the outer eye corners, the scale unit of every face threshold."""
    a, b = OUTER_EYE_CORNERS
    return float(np.linalg.norm(points[a] - points[b]))


def extend_points(points: Points, reach: NDArray[np.float32] | None = None) -> Points:
    """The 68 landmarks plus forehead points extrapolated up the face's own vertical axis.

    ``reach`` (10 values in 0..1) shortens each forehead point's rise, e.g. to stop below a
    selfie's fringe.
    """
    left_eye, right_eye = eye_centres(points)
    eyes_mid = (left_eye + right_eye) / 2.0
    up = eyes_mid - points[8]
    length = float(np.linalg.norm(up))
    up = up / max(length, 1e-6)
    rise = FOREHEAD_RISE if reach is None else FOREHEAD_RISE * reach
    forehead = points[BROWS] + np.outer(rise * length, up)
    return np.vstack([points, forehead]).astype(np.float32)


def roll_degrees(points: Points) -> float:
    """In-plane tilt of the eye line, in degrees."""
    left, right = eye_centres(points)
    return math.degrees(math.atan2(float(right[1] - left[1]), float(right[0] - left[0])))


def yaw_degrees(points: Points) -> float:
    """Head turn from how far the nose tip sits off the middle of the jaw, in degrees.

    A 2D estimate: steadier than solvePnP with a generic head, which was off by 10-20°
    on frontal portraits here.
    """
    left_eye, right_eye = eye_centres(points)
    axis = right_eye - left_eye
    axis = axis / max(float(np.linalg.norm(axis)), 1e-6)
    to_left = float(np.dot(points[30] - points[0], axis))
    to_right = float(np.dot(points[16] - points[30], axis))
    total = max(to_left + to_right, 1e-6)
    return math.degrees(math.asin(float(np.clip((to_right - to_left) / total, -1.0, 1.0))))


def similarity_to_template(
    points: Points, size: int, eye_span: float, eye_height: float
) -> NDArray[np.float64]:
    """The 2x3 similarity transform that puts the eye centres level, ``eye_span * size`` apart,
    centred horizontally at ``eye_height * size`` in a ``size`` square."""
    left, right = eye_centres(points)
    src = np.array([left, right], dtype=np.float64)
    half = eye_span * size / 2.0
    dst = np.array(
        [[size / 2.0 - half, eye_height * size], [size / 2.0 + half, eye_height * size]],
        dtype=np.float64,
    )
    # Closed form for a similarity from two point pairs, as a complex multiplication.
    src_c = complex(*(src[1] - src[0]))
    dst_c = complex(*(dst[1] - dst[0]))
    k = dst_c / src_c
    a, b = k.real, k.imag
    tx = dst[0, 0] - (a * src[0, 0] - b * src[0, 1])
    ty = dst[0, 1] - (b * src[0, 0] + a * src[0, 1])
    return np.array([[a, -b, tx], [b, a, ty]], dtype=np.float64)


def fit_similarity(
    points: NDArray[np.float64], reference: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Least-squares similarity (a, b, tx, ty) taking ``points`` onto ``reference``:
    x' = a x - b y + tx, y' = b x + a y + ty (Umeyama, without reflection)."""
    mu_p, mu_r = points.mean(axis=0), reference.mean(axis=0)
    p, r = points - mu_p, reference - mu_r
    norm = float((p * p).sum()) or 1.0
    a = float((p * r).sum()) / norm
    b = float((p[:, 0] * r[:, 1] - p[:, 1] * r[:, 0]).sum()) / norm
    tx = mu_r[0] - (a * mu_p[0] - b * mu_p[1])
    ty = mu_r[1] - (b * mu_p[0] + a * mu_p[1])
    return np.array([a, b, tx, ty])


def apply_similarity(
    params: NDArray[np.float64], points: NDArray[np.float64]
) -> NDArray[np.float64]:
    """``points`` moved by the similarity ``params`` (a, b, tx, ty) of :func:`fit_similarity`."""
    a, b, tx, ty = params
    x, y = points[:, 0], points[:, 1]
    return np.stack([a * x - b * y + tx, b * x + a * y + ty], axis=1)


def transform_points(points: Points, matrix: NDArray[np.float64]) -> Points:
    ones = np.ones((len(points), 1), dtype=np.float64)
    return (np.hstack([points.astype(np.float64), ones]) @ matrix.T).astype(np.float32)


__all__ = [
    "BROWS",
    "FOREHEAD_RISE",
    "INNER_LIPS",
    "JAW",
    "LEFT_EYE",
    "NOSE",
    "NOSTRILS",
    "N_EXTENDED",
    "OUTER_LIPS",
    "RIGHT_EYE",
    "Points",
    "apply_similarity",
    "extend_points",
    "eye_centres",
    "eye_distance",
    "fit_similarity",
    "roll_degrees",
    "similarity_to_template",
    "transform_points",
    "yaw_degrees",
]
