"""Camera moves over a still picture: turns any photo into a short clip.

Used by ``facecast clips add PHOTO --motion ...`` (a Ken Burns push-in, a pan, a handheld
shake, a slow sway), to make the bundled demo clips from public-domain pictures, and by the
tests, which know the exact motion and so the true landmark positions in every frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import cv2
import numpy as np
from numpy.typing import NDArray

from core.faces.landmarks import Points, transform_points
from core.kinds import MOTIONS, Motion
from core.media.images import RGBImage

Affine = NDArray[np.float64]


def _ease(t: float) -> float:
    return t * t * (3.0 - 2.0 * t)


def _smooth_noise(frames: int, seed: int, period: int = 3) -> NDArray[np.float64]:
    """Noise in [-1, 1] that changes a little every frame (handheld, not white noise)."""
    rng = np.random.default_rng(seed)
    knots = rng.uniform(-1.0, 1.0, size=frames // period + 3)
    positions = np.arange(frames) / period
    return np.interp(positions, np.arange(len(knots)), knots)


def camera_path(
    motion: Motion,
    frames: int,
    source_size: tuple[int, int],
    output_size: tuple[int, int],
    focus: tuple[float, float] | None = None,
    seed: int = 7,
) -> list[Affine]:
    """One 2x3 matrix per frame mapping picture coordinates to frame coordinates.

    ``focus`` is the point the camera moves towards or around (a face's centre, say);
    sizes are (width, height).
    """
    width, height = source_size
    out_w, out_h = output_size
    fx, fy = focus if focus is not None else (width / 2.0, height / 2.0)
    cover = max(out_w / width, out_h / height)  # zoom 1 fills the frame
    dx = _smooth_noise(frames, seed)
    dy = _smooth_noise(frames, seed + 1)
    dr = _smooth_noise(frames, seed + 2)
    matrices = []
    for index in range(frames):
        t = index / max(frames - 1, 1)
        angle = 0.0
        if motion == "push-in":
            zoom = 1.0 + 0.6 * _ease(t)
            cx = width / 2.0 + (fx - width / 2.0) * _ease(t)
            cy = height / 2.0 + (fy - height / 2.0) * _ease(t)
        elif motion == "pan":
            zoom = 1.35
            cx = fx + (t - 0.5) * 0.35 * width
            cy = fy
        elif motion == "shake":
            zoom = 1.3
            cx = fx + dx[index] * 0.025 * width
            cy = fy + dy[index] * 0.025 * height
            angle = dr[index] * 3.0
        else:  # sway
            zoom = 1.3 + 0.05 * math.sin(2 * math.pi * t)
            cx, cy = fx, fy
            angle = 6.0 * math.sin(2 * math.pi * t)
        scale = cover * zoom
        # Keep the whole frame inside the picture: no mirrored edges in view.
        turn = math.radians(angle)
        half_w = (out_w * abs(math.cos(turn)) + out_h * abs(math.sin(turn))) / (2 * scale)
        half_h = (out_w * abs(math.sin(turn)) + out_h * abs(math.cos(turn))) / (2 * scale)
        cx = min(max(cx, half_w), width - half_w) if 2 * half_w < width else width / 2.0
        cy = min(max(cy, half_h), height - half_h) if 2 * half_h < height else height / 2.0
        rotation = cv2.getRotationMatrix2D((0.0, 0.0), angle, scale)
        matrix = np.asarray(rotation, dtype=np.float64)
        # Put the picture point (cx, cy) at the frame's centre.
        matrix[:, 2] = np.array([out_w / 2.0, out_h / 2.0]) - matrix[:, :2] @ np.array([cx, cy])
        matrices.append(matrix)
    return matrices


def animate_still(
    image: RGBImage,
    motion: Motion,
    *,
    seconds: float = 3.0,
    fps: float = 24.0,
    size: tuple[int, int] = (480, 360),
    focus: tuple[float, float] | None = None,
    seed: int = 7,
) -> tuple[Iterator[RGBImage], list[Affine]]:
    """The frames of a camera ``motion`` over ``image`` (streamed) and the per-frame
    matrices (to map anything known in the picture, such as landmarks, into each frame)."""
    frames = max(1, round(seconds * fps))
    matrices = camera_path(motion, frames, (image.shape[1], image.shape[0]), size, focus, seed)

    def render() -> Iterator[RGBImage]:
        for matrix in matrices:
            frame = cv2.warpAffine(
                image, matrix, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101
            )
            yield np.ascontiguousarray(frame, dtype=np.uint8)

    return render(), matrices


def move_points(points: Points, matrices: list[Affine]) -> NDArray[np.float32]:
    """Where ``points`` of the still picture land in every frame: (frames, n, 2)."""
    return np.stack([transform_points(points, matrix) for matrix in matrices]).astype(np.float32)


__all__ = ["MOTIONS", "Motion", "animate_still", "camera_path", "move_points"]
