"""A synthetic live head for liveness tests: one still face, texture-mapped onto a 3D mesh
that turns and blinks like a person answering a challenge, written as a real video.

The mesh is the 68 landmarks plus extrapolated forehead points, a ring around the head and
the still picture's border, each with a generic depth (an ellipsoid head, a nose that sticks
out, eyes set in); Delaunay triangles are rotated in yaw about the head's vertical axis,
projected with a mild perspective and drawn far-to-near, each warped from the picture with
OpenCV. A blink moves the upper lid points onto the lower lid, so the lid's skin covers
the eye. The turn is the user's: a positive angle turns the head to the person's left,
which in an unmirrored camera picture moves the nose to the right.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from core.faces.analyzer import Analyzer
from core.faces.landmarks import Points, extend_points
from core.faces.profile import triangulate
from core.media.images import RGBImage
from core.media.video import encode, ffmpeg_exe

# Extra depth of the nose (27-35), eyes (36-47) and lips (48-67), in half face widths.
_NOSE = {27: 0.10, 28: 0.18, 29: 0.26, 30: 0.38, 31: 0.12, 32: 0.18, 33: 0.22, 34: 0.18, 35: 0.12}
_UPPER_TO_LOWER_LID = {37: 41, 38: 40, 43: 47, 44: 46}


class HeadMesh:
    """A face picture with a 3D mesh under it, ready to be posed."""

    def __init__(self, image: RGBImage, landmarks: Points) -> None:
        self.image = np.ascontiguousarray(image)
        height, width = image.shape[:2]
        face = extend_points(landmarks)
        centre = np.array(
            [(landmarks[0, 0] + landmarks[16, 0]) / 2, (landmarks[27, 1] + landmarks[8, 1]) / 2]
        )
        half = float(np.linalg.norm(landmarks[16] - landmarks[0])) / 2
        angles = np.linspace(0, 2 * math.pi, 16, endpoint=False)
        ring = np.stack([np.cos(angles), np.sin(angles) * 1.25], axis=1)
        head = centre + ring * half * 1.35  # hair and ears: turn with the face
        around = centre + ring * half * 2.3  # the background: still
        border = np.array(
            [[x, y] for x in (0, width / 2, width - 1) for y in (0, height / 2, height - 1)]
        )
        border = border[~((border[:, 0] == width / 2) & (border[:, 1] == height / 2))]
        points = np.vstack([face, head, around, border]).astype(np.float64)
        points[:, 0] = points[:, 0].clip(0, width - 1)
        points[:, 1] = points[:, 1].clip(0, height - 1)
        self.points = points
        self.triangles = triangulate(points.astype(np.float32))
        u = (points[:, 0] - centre[0]) / half
        depth = 0.9 * np.sqrt(np.clip(1 - (u / 1.15) ** 2, 0.05, None))
        for index, extra in _NOSE.items():
            depth[index] += extra
        depth[36:48] -= 0.08
        depth[48:68] += 0.06
        moving = np.ones(len(points))
        moving[len(face) : len(face) + len(head)] = 0.8
        depth[len(face) : len(face) + len(head)] = 0.25
        still = len(face) + len(head)
        moving[still:] = 0.0
        depth[still:] = 0.0
        self.depth = depth * half
        self.moving = moving
        self.centre = centre
        self.focal = 8.0 * half

    def pose(self, yaw_degrees: float, closed: float = 0.0) -> RGBImage:
        """The picture with the head turned by ``yaw_degrees`` (positive: to the person's
        left) and the eyes ``closed`` (0 open .. 1 shut)."""
        points = self.points.copy()
        for upper, lower in _UPPER_TO_LOWER_LID.items():
            points[upper] += closed * 0.9 * (self.points[lower] - self.points[upper])
        turn = np.radians(yaw_degrees) * self.moving
        dx = points[:, 0] - self.centre[0]
        dy = points[:, 1] - self.centre[1]
        x = dx * np.cos(turn) + self.depth * np.sin(turn)
        z = -dx * np.sin(turn) + self.depth * np.cos(turn)
        # Perspective relative to the picture plane (depth 0 stays put).
        scale = self.focal / (self.focal - z * self.moving)
        target = np.stack([self.centre[0] + x * scale, self.centre[1] + dy * scale], axis=1)
        frame = self.image.copy()
        order = np.argsort(z[self.triangles].mean(axis=1))  # far first
        for index in order:
            self._draw(frame, self.triangles[index], target)
        return frame

    def _draw(
        self, frame: RGBImage, triangle: NDArray[np.int32], target: NDArray[np.float64]
    ) -> None:
        src = self.points[triangle].astype(np.float32)
        dst = target[triangle].astype(np.float32)
        area = abs(
            (dst[1, 0] - dst[0, 0]) * (dst[2, 1] - dst[0, 1])
            - (dst[2, 0] - dst[0, 0]) * (dst[1, 1] - dst[0, 1])
        )
        if area < 0.5:
            return
        height, width = frame.shape[:2]
        x0, y0 = np.floor(dst.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(dst.max(axis=0)).astype(int) + 2
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if x1 <= x0 or y1 <= y0:
            return
        local = dst - np.array([x0, y0], np.float32)
        matrix = cv2.getAffineTransform(src, local)
        patch = cv2.warpAffine(
            self.image,
            matrix,
            (x1 - x0, y1 - y0),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT101,
        )
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        corners = np.round(local).astype(np.int32)
        cv2.fillConvexPoly(mask, corners, 1)
        cv2.polylines(mask, [corners], True, 1)  # no cracks between neighbours
        region = frame[y0:y1, x0:x1]
        region[mask > 0] = patch[mask > 0]


def challenge_motion(
    challenge: str, *, fps: float = 15.0, seconds: float = 2.6, amplitude: float = 30.0
) -> tuple[list[float], list[float]]:
    """Per-frame yaw (degrees, positive: the person's left) and eye closure for a person
    answering ``challenge`` ("left-right", "right-left" or "blink-twice")."""
    count = round(fps * seconds)
    t = np.linspace(0.0, 1.0, count)
    yaw = np.zeros(count)
    closed = np.zeros(count)
    if challenge in ("left-right", "right-left"):
        first = 1.0 if challenge == "left-right" else -1.0
        # straight, turn one way, back through the middle to the other way, straight again
        yaw = first * amplitude * np.sin(2 * math.pi * np.clip((t - 0.08) / 0.84, 0, 1))
    elif challenge == "blink-twice":
        for middle in (0.2, 0.45):
            closed = np.maximum(closed, np.clip(1 - np.abs(t - middle) / 0.07, 0, 1) * 1.6)
        closed = closed.clip(0, 1)
        turn = np.clip((t - 0.6) / 0.3, 0, 1)
        yaw = amplitude * 0.8 * np.sin(math.pi / 2 * turn)
    else:
        raise ValueError(challenge)
    return [float(v) for v in yaw], [float(c) for c in closed]


def head_frames(
    mesh: HeadMesh, yaw: Sequence[float], closed: Sequence[float]
) -> Iterator[RGBImage]:
    for angle, shut in zip(yaw, closed, strict=True):
        yield mesh.pose(angle, shut)


def write_video(path: Path, frames: Iterator[RGBImage], fps: float = 15.0) -> Path:
    """MP4 through FaceCast's encoder, or WebM / Y4M (what a browser records and what
    Chromium's fake camera plays) through ffmpeg."""
    if path.suffix == ".mp4":
        encode(frames, path, fps=fps)
        return path
    first = next(frames)
    height, width = first.shape[:2]
    codec = ["-pix_fmt", "yuv420p"]
    if path.suffix == ".webm":  # as a browser records it: VP8, fast
        codec = ["-c:v", "libvpx", "-b:v", "1M", "-deadline", "realtime", "-cpu-used", "8"]
    process = subprocess.Popen(
        [
            ffmpeg_exe(),
            "-loglevel",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            f"{width}x{height}",
            "-r",
            f"{fps:g}",
            "-i",
            "-",
            *codec,
            str(path),
        ],
        stdin=subprocess.PIPE,
    )
    assert process.stdin is not None
    process.stdin.write(first.tobytes())
    for frame in frames:
        process.stdin.write(np.ascontiguousarray(frame).tobytes())
    process.stdin.close()
    assert process.wait(timeout=120) == 0
    return path


def write_challenge(
    path: Path, mesh: HeadMesh, challenge: str, *, fps: float = 15.0, seconds: float = 2.6
) -> Path:
    """A video of the synthetic head answering ``challenge``."""
    yaw, closed = challenge_motion(challenge, fps=fps, seconds=seconds)
    return write_video(path, head_frames(mesh, yaw, closed), fps)


def head_picture(astronaut: RGBImage) -> RGBImage:
    """The astronaut's head and shoulders, framed as a front camera frames a selfie video."""
    crop = astronaut[0:256, 80:336]
    return np.ascontiguousarray(cv2.resize(crop, (384, 384), interpolation=cv2.INTER_CUBIC))


def astronaut_head(analyzer: Analyzer) -> HeadMesh:
    """The public-domain astronaut portrait as a live head."""
    from skimage import data

    picture = head_picture(np.ascontiguousarray(data.astronaut()))
    return HeadMesh(picture, analyzer.detect(picture)[0].landmarks)
