"""Rendering a face profile into a clip pack: the fast, per-request half of the work.

With the face track computed ahead, each frame is only warp + blend; frames where the face
was lost, or is turned too far from the camera, pass through untouched. Frames stream
from decoder to encoder, never all in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from core.config import MAX_YAW_DEGREES
from core.engines.base import BatchSwapper, Reshaping, Swapper, SwapSequence, faded
from core.errors import ClipNotFound
from core.faces.landmarks import Points
from core.faces.profile import FaceProfile
from core.faces.tracking import rest_shape, steady, turn_strength
from core.media.audio import Sound
from core.media.images import RGBImage
from core.media.overlay import add_ai_label
from core.media.provenance import Marks
from core.media.video import EncodedVideo, encode, read_video
from core.media.watermark import Watermarker
from core.packs.library import Clip

Progress = Callable[[int, int], None]
"""``progress(frames_done, frames_total)``."""


def render_clip(
    profile: FaceProfile,
    clip: Clip,
    swapper: Swapper,
    *,
    size: int | None = None,
    label: bool = True,
    step: int = 1,
    progress: Progress | None = None,
    watermark: Watermarker | None = None,
    turn_limit: float = MAX_YAW_DEGREES,
) -> Iterator[RGBImage]:
    """Yield the clip's frames with ``profile``'s face swapped in.

    ``size`` caps the long side in pixels (the clip is never upscaled); ``label`` stamps
    the visible "AI" badge on every frame; ``step`` keeps only every n-th frame (the
    others are decoded but never swapped); ``watermark`` marks each swapped face. Where
    the clip's face turns past ``turn_limit`` degrees the swap fades out (see
    :func:`~core.faces.tracking.turn_strength`).
    """
    track = clip.load_track()
    landmarks = steady(track.landmarks, track.visible)
    strength = turn_strength(landmarks, track.visible, turn_limit)
    total = track.frames
    sequence = SwapSequence(rest=rest_shape(landmarks, track.visible))
    batching = swapper if isinstance(swapper, BatchSwapper) else None
    run = 8 if batching else 1  # frames swapped together
    pending: list[tuple[int, RGBImage]] = []

    def placed(points: Points) -> Points:
        """Where the swapped face's landmarks are (an engine may move its features)."""
        if isinstance(swapper, Reshaping):
            moved = swapper.reshaped(profile, points, sequence)
            if moved is not None:
                return moved
        return points

    def flush() -> Iterator[RGBImage]:
        scale = np.float32(pending[0][1].shape[1] / clip.manifest.width)
        shown = [(i, f, landmarks[i] * scale) for i, f in pending if strength[i] > 0]
        if batching is not None:
            faces = batching.swap_batch(profile, [f for _, f, _ in shown], [t for *_, t in shown])
            # turning away: part of the way back to the clip's face
            faces = [
                faded(face, frame, float(strength[index]))
                for (index, frame, _), face in zip(shown, faces, strict=True)
            ]
        else:
            faces = []
            for index, frame, target in shown:
                sequence.fade = float(strength[index])  # the engine fades its own change
                faces.append(swapper.swap(profile, frame, target, sequence=sequence))
        swapped = {i: face for (i, _, _), face in zip(shown, faces, strict=True)}
        for index, frame in pending:
            result = swapped.get(index, frame)  # lost face: the frame passes through
            if watermark is not None and index in swapped:
                result = watermark.embed(result, placed(landmarks[index] * scale))
            if label:
                result = add_ai_label(result)
            if progress is not None:
                progress(index + 1, total)
            yield result
        pending.clear()

    index = -1
    for index, frame in enumerate(read_video(clip.media, max_side=size)):
        if index >= total:
            break
        if index % step == 0:
            pending.append((index, frame))
        if len(pending) >= run:
            yield from flush()
    if pending:
        yield from flush()
    if index + 1 < total:
        raise ClipNotFound(
            f"The clip {clip.id!r} is damaged: its video has {index + 1} frames, "
            f"its face track {total}."
        )


def render_to_file(
    profile: FaceProfile,
    clip: Clip,
    swapper: Swapper,
    output: Path,
    *,
    size: int | None = None,
    max_bytes: int | None = None,
    progress: Progress | None = None,
    marks: Marks | None = None,
    turn_limit: float = MAX_YAW_DEGREES,
    gif_bytes_per_second: int | None = None,
) -> EncodedVideo:
    """Render and encode to ``output`` (.mp4 or .gif) within ``max_bytes`` (a GIF also
    aiming at ``gif_bytes_per_second``); an MP4 carries the clip's sound. ``marks``
    watermarks the faces and signs the file; ``turn_limit``: see :func:`render_clip`."""
    watermark = marks.watermarker() if marks is not None else None
    frames = render_clip(
        profile,
        clip,
        swapper,
        size=size,
        progress=progress,
        watermark=watermark,
        turn_limit=turn_limit,
    )
    return encode(
        frames,
        output,
        fps=clip.manifest.fps,
        max_bytes=max_bytes,
        gif_bytes_per_second=gif_bytes_per_second,
        sound=clip_sound(clip, output),
        sign=marks.sign if marks is not None else None,
    )


def clip_sound(clip: Clip, output: Path) -> Sound | None:
    """The sound an ``output`` of ``clip`` carries: the clip's, in an MP4; a GIF is silent."""
    return clip.load_sound() if output.suffix.lower() == ".mp4" else None


__all__ = ["Progress", "clip_sound", "render_clip", "render_to_file"]
