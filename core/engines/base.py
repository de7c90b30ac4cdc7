"""What every swap engine implements, and the state one clip carries between frames."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol, TypeVar, cast, runtime_checkable

import cv2
import numpy as np
from numpy.typing import NDArray

from core.faces.landmarks import Points
from core.faces.profile import FaceProfile
from core.faces.skin import (
    ColourStats,
)
from core.media.images import RGBImage

T = TypeVar("T")


@runtime_checkable
class Swapper(Protocol):
    """Replaces the face at ``target`` (68 landmarks in ``frame``) with ``profile``'s face."""

    name: ClassVar[str]

    def swap(
        self,
        profile: FaceProfile,
        frame: RGBImage,
        target: Points,
        *,
        sequence: SwapSequence | None = None,
    ) -> RGBImage:
        """A copy of ``frame`` with the face replaced; ``sequence`` carries state between
        consecutive frames of one clip, and how much of the new face this frame shows
        (:attr:`SwapSequence.fade`)."""
        ...


def faded(swapped: RGBImage, frame: RGBImage, share: float) -> RGBImage:
    """``share`` (0..1) of the way from ``frame`` to ``swapped``: a swap that moves none of
    the face's features, faded (see :attr:`SwapSequence.fade`)."""
    if share >= 1.0:
        return swapped
    return np.asarray(cv2.addWeighted(swapped, share, frame, 1.0 - share, 0.0), np.uint8)


@runtime_checkable
class BatchSwapper(Protocol):
    """A swapper that can take several frames of one clip in one go (a neural network)."""

    def swap_batch(
        self, profile: FaceProfile, frames: list[RGBImage], targets: list[Points]
    ) -> list[RGBImage]: ...


@runtime_checkable
class Reshaping(Protocol):
    """A swapper that moves the face's features (gives the clip the selfie's proportions):
    it says where the landmarks end up, so a watermark fitted to them lands on the face."""

    def reshaped(
        self, profile: FaceProfile, target: Points, sequence: SwapSequence | None
    ) -> Points | None:
        """The 68 landmarks of the swapped face in the frame, or None where unchanged."""
        ...


def _blend_stats(old: ColourStats, new: ColourStats, weight: float) -> ColourStats:
    return ColourStats(
        mean=(old.mean * (1.0 - weight) + new.mean * weight).astype(np.float32),
        std=(old.std * (1.0 - weight) + new.std * weight).astype(np.float32),
    )


class SwapSequence:
    """What an engine remembers between the frames of one clip.

    Colour statistics measured per frame wobble with compression noise and with the
    skin area in view; an exponential moving average over ~5 frames keeps the face's colour
    steady without missing a real change of light for long.
    """

    def __init__(self, response: float = 0.2, rest: Points | None = None) -> None:
        self.response = response
        # the clip face's resting shape (68 points), which a reshaping engine measures
        # the selfie's proportions against; None for a single picture
        self.rest = rest
        self._colour: tuple[ColourStats, ColourStats] | None = None
        self._frames = 0
        self._memo: dict[str, tuple[object, object]] = {}
        self._averages: dict[str, NDArray[np.float32]] = {}
        # How much of the swap the next frame shows (0..1), set by the render: less where
        # the clip's face turns away (see core.faces.tracking.turn_strength). An engine
        # that moves the face's features moves them that share of the way too, so the new
        # face fades in place, with no ghost of the moved features.
        self.fade = 1.0

    def remember(self, key: str, owner: object, make: Callable[[], T]) -> T:
        """``make()``, computed once per clip for ``owner`` (a profile's texture, say)."""
        hit = self._memo.get(key)
        if hit is None or hit[0] is not owner:
            hit = (owner, make())
            self._memo[key] = hit
        return cast(T, hit[1])

    def averaged(self, key: str, value: NDArray[np.float32]) -> NDArray[np.float32]:
        """The moving average of ``value`` over the clip's frames so far (each new frame
        counts ``response``), kept under ``key``."""
        old = self._averages.get(key)
        if old is not None and old.shape == value.shape:
            value = (old + (value - old) * np.float32(self.response)).astype(np.float32)
        self._averages[key] = value
        return value

    def measured(
        self, measure: Callable[[], tuple[ColourStats, ColourStats]], every: int = 3
    ) -> tuple[ColourStats, ColourStats]:
        """:meth:`steady` of ``measure()``, measured on every ``every``-th frame only: the
        light on a face changes slowly and the moving average smooths it anyway, so the
        frames between keep the average (measuring was a tenth of the classic swap's time;
        every 3rd frame instead of every 2nd changed no devset measure by over 0.01)."""
        self._frames += 1
        if self._colour is not None and self._frames % every:
            return self._colour
        return self.steady(*measure())

    def steady(self, source: ColourStats, target: ColourStats) -> tuple[ColourStats, ColourStats]:
        if self._colour is None:
            self._colour = (source, target)
        else:
            old_source, old_target = self._colour
            self._colour = (
                _blend_stats(old_source, source, self.response),
                _blend_stats(old_target, target, self.response),
            )
        return self._colour


__all__ = ["BatchSwapper", "Reshaping", "SwapSequence", "Swapper", "faded"]
