"""The visible AI label: a badge drawn once and blended onto frames."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from core.media.images import RGBImage


@dataclass(frozen=True, slots=True)
class Overlay:
    """A picture drawn once (an RGBA patch and where it goes) and blended onto many frames."""

    x: int
    y: int
    rgba: NDArray[np.float32]  # (h, w, 4) in 0..1

    @classmethod
    def from_rgba(cls, layer: NDArray[np.uint8]) -> Overlay | None:
        """Crop a frame-sized RGBA layer to what it draws; None if it draws nothing."""
        ys, xs = np.nonzero(layer[:, :, 3])
        if len(xs) == 0:
            return None
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        return cls(int(x0), int(y0), layer[y0:y1, x0:x1].astype(np.float32) / 255.0)

    def apply(self, image: RGBImage) -> RGBImage:
        """A copy of ``image`` with the overlay blended in (clipped to the image)."""
        result = image.copy()
        height, width = image.shape[:2]
        patch = self.rgba[: max(0, height - self.y), : max(0, width - self.x)]
        if self.x < 0 or self.y < 0 or patch.size == 0:
            return result
        box_h, box_w = patch.shape[:2]
        region = result[self.y : self.y + box_h, self.x : self.x + box_w].astype(np.float32)
        alpha = patch[:, :, 3:]
        blended = region * (1.0 - alpha) + patch[:, :, :3] * 255.0 * alpha
        result[self.y : self.y + box_h, self.x : self.x + box_w] = np.clip(
            blended + 0.5, 0, 255
        ).astype(np.uint8)
        return result


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, end-exclusive


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@functools.lru_cache(maxsize=16)
def ai_label(width: int, height: int, text: str = "AI", avoid: tuple[Box, ...] = ()) -> Overlay:
    """The small "AI" badge for pictures of this size, drawn once: bottom-right, or, when
    that would touch one of the ``avoid`` boxes (caption ink), moved up the right edge to
    just above them; the corner again if nothing on that edge is clear."""
    size = max(10, round(min(width, height) * 0.045))
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGBA", (1, 1))).textbbox(
        (0, 0), text, font=font
    )
    pad = max(2, size // 4)
    box_w, box_h = round(right - left) + 2 * pad, round(bottom - top) + 2 * pad
    patch = Image.new("RGBA", (box_w, box_h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(patch)
    draw.rounded_rectangle((0, 0, box_w - 1, box_h - 1), radius=pad, fill=(0, 0, 0, 150))
    draw.text((pad - left, pad - top), text, font=font, fill=(255, 255, 255, 235))
    rgba = np.asarray(patch, dtype=np.float32) / 255.0
    x, y = width - pad - box_w, height - pad - box_h
    while y >= 0:
        badge = (x - pad, y - pad, x + box_w + pad, y + box_h + pad)  # a margin of clear air
        hits = [box for box in avoid if _overlaps(badge, box)]
        if not hits:
            return Overlay(x, y, rgba)
        y = min(box[1] for box in hits) - pad - box_h
    return Overlay(width - pad - box_w, height - pad - box_h, rgba)


def add_ai_label(image: RGBImage, text: str = "AI", avoid: tuple[Box, ...] = ()) -> RGBImage:
    """A copy of ``image`` with a small, legible "AI" badge, bottom-right unless that would
    cover one of the ``avoid`` boxes (see :func:`ai_label`)."""
    height, width = image.shape[:2]
    return ai_label(width, height, text, avoid).apply(image)


__all__ = ["Box", "Overlay", "add_ai_label", "ai_label"]
