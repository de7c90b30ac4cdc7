"""Animated meme effects on a user's own face, driven by its landmarks.

Each effect is a pure function ``(scene, t) -> frame`` for t in [0, 1): the scene is the
enrolled face texture (the only picture of the user FaceCast keeps) with its landmarks, so a
"deal with it" pair of sunglasses lands on the eyes, a zoom dives into them and laser eyes
shine from the pupils, whoever the user is. :data:`EFFECTS` maps names to functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from core.faces.landmarks import Points, extend_points, eye_centres, eye_distance, transform_points
from core.faces.profile import FaceProfile
from core.media.images import RGBImage

Affine = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Scene:
    """The user's face, square, ``size`` pixels, with its 68 landmarks."""

    image: RGBImage
    landmarks: Points

    @classmethod
    def from_profile(cls, profile: FaceProfile, size: int) -> Scene:
        scale = size / profile.texture.shape[0]
        image = cv2.resize(profile.texture, (size, size), interpolation=cv2.INTER_AREA)
        return cls(np.ascontiguousarray(image), profile.points[:68] * np.float32(scale))

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    @property
    def eyes(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        return eye_centres(self.landmarks)

    @property
    def eyes_mid(self) -> NDArray[np.float32]:
        left, right = self.eyes
        return np.asarray((left + right) / 2.0, dtype=np.float32)

    def warp(self, matrix: Affine) -> RGBImage:
        return np.ascontiguousarray(
            cv2.warpAffine(
                self.image,
                matrix,
                (self.size, self.size),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REFLECT101,
            )
        )


def _ease_out(t: float) -> float:
    return 1.0 - (1.0 - t) ** 3


def zoom_about(centre: NDArray[np.float32], zoom: float, size: int, angle: float = 0.0) -> Affine:
    """Scale (and turn) the picture about ``centre`` and put that point mid-frame."""
    matrix = np.asarray(cv2.getRotationMatrix2D((0.0, 0.0), angle, zoom), dtype=np.float64)
    matrix[:, 2] = np.array([size / 2.0, size / 2.0]) - matrix[:, :2] @ centre.astype(np.float64)
    return matrix


def _shake(t: float, amplitude: float, seed: int) -> tuple[float, float, float]:
    """Deterministic jitter: x, y offsets in pixels and an angle in degrees."""
    rng = np.random.default_rng(seed + int(t * 1000))
    dx, dy, da = rng.uniform(-1.0, 1.0, size=3)
    return dx * amplitude, dy * amplitude, da * 3.0


# -- effects ---------------------------------------------------------------------------


def _zoom_eyes_motion(scene: Scene, t: float) -> Affine:
    steps = (1.0, 1.7, 2.8)
    step = min(int(t * 3.2), 2)
    local = min(1.0, (t * 3.2 - step) * 4.0)  # each step snaps in over a quarter of its time
    previous = steps[max(step - 1, 0)]
    zoom = previous + (steps[step] - previous) * _ease_out(local)
    # Start framed on the whole face, end centred on the eyes.
    face_centre = scene.landmarks.mean(axis=0)
    centre = face_centre + (scene.eyes_mid - face_centre) * min(1.0, t * 1.5)
    dx, dy, _ = _shake(t, scene.size * 0.006 * step, seed=11)
    matrix = zoom_about(np.asarray(centre, np.float32), zoom, scene.size)
    matrix[:, 2] += (dx, dy)
    return matrix


def zoom_eyes(scene: Scene, t: float) -> RGBImage:
    """The dramatic zoom: three quick steps into the eyes, then a tremble and a vignette."""
    step = min(int(t * 3.2), 2)
    frame = scene.warp(_zoom_eyes_motion(scene, t)).astype(np.float32)
    yy, xx = np.mgrid[0 : scene.size, 0 : scene.size].astype(np.float32)
    radius = np.hypot(xx - scene.size / 2, yy - scene.size / 2) / (scene.size * 0.7)
    frame *= (1.0 - np.clip(radius, 0, 1) ** 2 * 0.6 * (step / 2))[:, :, None]
    return np.clip(frame, 0, 255).astype(np.uint8)


def _triggered_motion(scene: Scene, t: float) -> Affine:
    dx, dy, angle = _shake(t, scene.size * 0.035, seed=5)
    matrix = zoom_about(scene.landmarks.mean(axis=0), 1.18, scene.size, angle)
    matrix[:, 2] += (dx, dy)
    return matrix


def triggered(scene: Scene, t: float) -> RGBImage:
    """Vibrate: a new small jolt every frame and a pulsing red tint."""
    matrix = _triggered_motion(scene, t)
    pulse = 0.25 + 0.15 * math.sin(t * 2 * math.pi * 6)
    tinted = scene.warp(matrix) * (1 - pulse) + np.array([255.0, 30.0, 20.0]) * pulse
    return np.asarray(np.clip(tinted, 0, 255), dtype=np.uint8)


# "Deal with it" pixel sunglasses: 1 = black lens/frame, 2 = white glint, 0 = clear.
_SUNGLASSES = [
    "111111111111111111111111",
    "111111111111111111111111",
    "001111111110011111111100",
    "001221111110011221111100",
    "001112211110011112211100",
    "000111111000000111111000",
    "000011110000000011110000",
]


def sunglasses_pose(scene: Scene, t: float) -> tuple[NDArray[np.float64], float, float]:
    """Where the sunglasses' centre is at time t, their width and tilt (degrees): they drop
    from above the frame and land on the eyes at 60% of the clip."""
    left, right = scene.eyes
    centre = (left + right).astype(np.float64) / 2.0
    width = 2.05 * eye_distance(scene.landmarks)
    tilt = math.degrees(math.atan2(float(right[1] - left[1]), float(right[0] - left[0])))
    fall = _ease_out(min(1.0, t / 0.6))
    start_y = -width * 0.3
    y = start_y + (float(centre[1]) - start_y) * fall
    return np.array([centre[0], y]), width, tilt


def deal_with_it(scene: Scene, t: float) -> RGBImage:
    centre, width, tilt = sunglasses_pose(scene, t)
    rows, cols = len(_SUNGLASSES), len(_SUNGLASSES[0])
    cell = width / cols
    art = np.array([[int(c) for c in row] for row in _SUNGLASSES], np.uint8)
    # Nearest-neighbour scaling keeps the pixel-art look.
    mask = cv2.resize(art, (cols * 16, rows * 16), interpolation=cv2.INTER_NEAREST)
    scale = cell / 16.0
    matrix = np.asarray(cv2.getRotationMatrix2D((cols * 8.0, rows * 8.0), -tilt, scale))
    matrix[:, 2] += centre - np.array([cols * 8.0, rows * 8.0])
    placed = cv2.warpAffine(
        mask, matrix, (scene.size, scene.size), flags=cv2.INTER_NEAREST, borderValue=0
    )
    frame = scene.image.copy()
    frame[placed == 1] = (8, 8, 8)
    frame[placed == 2] = (250, 250, 250)
    return frame


def _spin_motion(scene: Scene, t: float) -> Affine:
    angle = 360.0 * (t * t * (3 - 2 * t))
    zoom = 1.0 - 0.35 * math.sin(math.pi * t)
    return zoom_about(scene.landmarks.mean(axis=0), zoom, scene.size, angle)


def spin(scene: Scene, t: float) -> RGBImage:
    """One full turn about the face, zooming out and back in."""
    return scene.warp(_spin_motion(scene, t))


def _deep_fried_motion(scene: Scene, t: float) -> Affine:
    zoom = 1.05 + 0.05 * math.sin(t * 2 * math.pi * 2)
    return zoom_about(scene.landmarks.mean(axis=0), zoom, scene.size)


def deep_fried(scene: Scene, t: float) -> RGBImage:
    """Over-saturated, over-sharpened, crushed, with laser eyes pulsing from the pupils."""
    zoom = 1.05 + 0.05 * math.sin(t * 2 * math.pi * 2)
    frame = scene.warp(_deep_fried_motion(scene, t))
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] * 2.2 + 30, 0, 255)
    hsv[:, :, 2] = np.clip((hsv[:, :, 2] - 128) * 1.4 + 140, 0, 255)
    fried = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    fried = cv2.addWeighted(fried, 2.0, cv2.GaussianBlur(fried, (0, 0), 2), -1.0, 0)
    ok, crushed = cv2.imencode(".jpg", fried, [cv2.IMWRITE_JPEG_QUALITY, 12])
    if ok:
        fried = np.asarray(cv2.imdecode(crushed, cv2.IMREAD_UNCHANGED), dtype=np.uint8)
    # Laser eyes: glowing red flares where the pupils are in this (zoomed) frame.
    matrix = zoom_about(scene.landmarks.mean(axis=0), zoom, scene.size)
    eyes = transform_points(np.array(scene.eyes, dtype=np.float32), matrix)
    glow = np.zeros((scene.size, scene.size), np.float32)
    unit = eye_distance(scene.landmarks) * zoom
    strength = 0.75 + 0.25 * math.sin(t * 2 * math.pi * 3)
    for x, y in eyes:
        cv2.circle(glow, (round(float(x)), round(float(y))), max(2, round(unit * 0.09)), 1.0, -1)
        cv2.line(glow, (0, round(float(y))), (scene.size, round(float(y))), 0.55, 2)
    glow = cv2.GaussianBlur(glow, (0, 0), max(1.0, unit * 0.08)) * 2.2 * strength
    glow = np.clip(glow, 0, 1)[:, :, None]
    laser = fried.astype(np.float32) * (1 - glow) + np.array([255.0, 40.0, 20.0]) * glow
    return np.asarray(np.clip(laser, 0, 255), dtype=np.uint8)


def _speed_lines_motion(scene: Scene, t: float) -> Affine:
    zoom = 1.0 + 0.08 * abs(math.sin(t * 2 * math.pi * 2))
    return zoom_about(scene.landmarks.mean(axis=0), zoom, scene.size)


def _still(scene: Scene, t: float) -> Affine:
    return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def speed_lines(scene: Scene, t: float) -> RGBImage:
    """Anime speed lines burst behind the face, which pulses forward."""
    size = scene.size
    centre = scene.landmarks.mean(axis=0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = np.arctan2(yy - centre[1], xx - centre[0])
    rng = np.random.default_rng(int(t * 1000) // 83)  # new lines every frame or so
    rays = rng.uniform(0.0, 1.0, size=96)
    ray = rays[((angle + np.pi) / (2 * np.pi) * len(rays)).astype(int) % len(rays)]
    background = np.where(ray > 0.55, 255, 20).astype(np.uint8)
    hue = (t * 180 * 2) % 180
    swatch = np.array([[[hue, 200, 255]]], dtype=np.uint8)
    tint = np.asarray(cv2.cvtColor(swatch, cv2.COLOR_HSV2RGB))[0, 0]
    background_rgb = (background[:, :, None] / 255.0 * tint).astype(np.uint8)
    matrix = _speed_lines_motion(scene, t)
    face = scene.warp(matrix)
    outline = transform_points(extend_points(scene.landmarks), matrix)
    hull = cv2.convexHull(np.round(outline).astype(np.int32))
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, hull, 255)
    alpha = cv2.GaussianBlur(mask, (0, 0), max(1.0, size * 0.01)).astype(np.float32) / 255
    alpha = alpha[:, :, None]
    frame = face.astype(np.float32) * alpha + background_rgb * (1 - alpha)
    return np.asarray(np.clip(frame, 0, 255), dtype=np.uint8)


Effect = Callable[[Scene, float], RGBImage]
Motion = Callable[[Scene, float], Affine]
EFFECTS: dict[str, Effect] = {
    "zoom-eyes": zoom_eyes,
    "triggered": triggered,
    "deal-with-it": deal_with_it,
    "spin": spin,
    "deep-fried": deep_fried,
    "speed-lines": speed_lines,
}
# Where each effect puts the face at time t (scene pixels -> frame pixels): what the face
# watermark is drawn at, after the effect, so that recolouring effects keep it.
FACE_MOTION: dict[str, Motion] = {
    "zoom-eyes": _zoom_eyes_motion,
    "triggered": _triggered_motion,
    "deal-with-it": _still,
    "spin": _spin_motion,
    "deep-fried": _deep_fried_motion,
    "speed-lines": _speed_lines_motion,
}

__all__ = ["EFFECTS", "FACE_MOTION", "Effect", "Motion", "Scene", "sunglasses_pose", "zoom_about"]
