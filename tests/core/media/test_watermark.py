"""The face watermark survives what chats do to pictures, and is never found where it
was not put. Frames are sampled to keep this quick; benchmarks/provenance_bench.py times it."""

from __future__ import annotations

import datetime
import io
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from core.config import Settings
from core.engines.classic import ClassicSwapper
from core.faces.analyzer import DlibAnalyzer
from core.faces.profile import FaceProfile
from core.media.images import RGBImage
from core.media.video import encode, read_video
from core.media.watermark import (
    THRESHOLD,
    Reading,
    Watermarker,
    WatermarkKey,
    day_number,
    read_faces,
)
from core.packs.library import ClipLibrary
from core.render.clip import render_clip
from core.render.memes import MemeLibrary, render_meme

from ...conftest import REPO

KEY = WatermarkKey(b"this deployment's watermark key!")
CLIPS = ("astronaut-pan", "astronaut-push-in", "astronaut-shake", "drawn-astronaut-sway")
# Memes that swap the user into a clip, and effects that recolour the whole face (the mark
# is drawn after the effect, where it put the face). How well the other effects read back
# is measured in the README, not promised here: the analyzer loses faces that spin or hide
# behind pixel sunglasses.
MEMES = ("earthquake", "to-the-moon", "triggered", "deep-fried")
PER_SOURCE = 6  # frames sampled from each render (3 made the 95 % bar hang on one frame)
TODAY = datetime.datetime.now(datetime.UTC).date()
# The marks are made for TODAY explicitly: a run that crossed midnight between import and
# the renders marked tomorrow and read up to today, and found nothing
# (test_a_mark_carries_the_day_it_was_made checks the default day).

Sequence = tuple[list[RGBImage], float]  # frames, frame rate


@pytest.fixture(scope="module")
def renders(selfie_profile: FaceProfile) -> dict[str, Sequence]:
    """Marked renders of every bundled clip and of the memes above."""
    settings = Settings(bundled_clips_dir=REPO / "clips")
    swapper = ClassicSwapper()
    made: dict[str, Sequence] = {}
    for clip_id in CLIPS:
        clip = ClipLibrary(settings).get(clip_id)
        frames = list(render_clip(selfie_profile, clip, swapper, watermark=Watermarker(KEY, TODAY)))
        made[clip_id] = frames, clip.manifest.fps
    for meme_id in MEMES:
        template = MemeLibrary(settings).get(meme_id)
        frames = list(
            render_meme(
                selfie_profile, template, settings, swapper, watermark=Watermarker(KEY, TODAY)
            )
        )
        made[meme_id] = frames, template.manifest.fps
    return made


def _jpeg(frame: RGBImage) -> RGBImage:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=70)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _half(frame: RGBImage) -> RGBImage:
    height, width = frame.shape[:2]
    return np.asarray(cv2.resize(frame, (width // 2, height // 2), interpolation=cv2.INTER_AREA))


def _crop(frame: RGBImage) -> RGBImage:
    """10 % off: 5 % from every side."""
    height, width = frame.shape[:2]
    dy, dx = height // 20, width // 20
    return np.ascontiguousarray(frame[dy : height - dy, dx : width - dx])


def _h264(crf: int) -> Callable[[list[RGBImage], float, Path], list[RGBImage]]:
    """Re-encoded the way a chat app does: x264's default preset at this CRF."""

    def run(frames: list[RGBImage], fps: float, work: Path) -> list[RGBImage]:
        path = work / f"crf{crf}.mp4"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=round(fps))
            stream.height, stream.width = frames[0].shape[:2]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf)}
            for frame in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            out.mux(stream.encode(None))
        return list(read_video(path))

    return run


def _gif(frames: list[RGBImage], fps: float, work: Path) -> list[RGBImage]:
    """Through FaceCast's own GIF encoder: one palette, ordered dithering, its size budget."""
    return list(read_video(encode(frames, work / "out.gif", fps=fps).path))


FRAME_CHANGES: dict[str, Callable[[RGBImage], RGBImage]] = {
    "unchanged": lambda frame: frame,
    "jpeg-70": _jpeg,
    "half-size": _half,
    "crop-10%": _crop,
}
VIDEO_CHANGES = {"h264-crf28": _h264(28), "h264-crf32": _h264(32), "gif": _gif}


def _sample(frames: list[RGBImage]) -> list[RGBImage]:
    step = max(1, len(frames) // PER_SOURCE)
    return frames[step // 2 :: step][:PER_SOURCE]


def _read(analyzer: DlibAnalyzer, frame: RGBImage) -> Reading | None:
    faces = [face.landmarks[:68] for face in analyzer.detect(frame)]
    return read_faces(frame, faces, KEY, today=TODAY)


@pytest.mark.parametrize("change", [*FRAME_CHANGES, *VIDEO_CHANGES])
def test_the_watermark_survives(
    change: str, renders: dict[str, Sequence], analyzer: DlibAnalyzer, tmp_path: Path
) -> None:
    readings: dict[str, list[Reading | None]] = {}
    for name, (frames, fps) in renders.items():
        if change in FRAME_CHANGES:
            changed = [FRAME_CHANGES[change](frame) for frame in _sample(frames)]
        else:
            changed = _sample(VIDEO_CHANGES[change](frames, fps, tmp_path))
        readings[name] = [_read(analyzer, frame) for frame in changed]
    with_face = [r for rs in readings.values() for r in rs if r is not None]
    found = [r for r in with_face if r.found]
    missed = {n: [round(r.score, 1) for r in rs if r and not r.found] for n, rs in readings.items()}
    # The faces are still there to be found (to-the-moon starts before the face arrives).
    assert len(with_face) >= 0.8 * PER_SOURCE * len(renders)
    assert len(found) >= 0.95 * len(with_face), str(missed)
    assert {r.date for r in found} == {TODAY}


def test_a_mark_carries_the_day_it_was_made() -> None:
    before = datetime.datetime.now(datetime.UTC).date()
    marker = Watermarker(KEY)
    after = datetime.datetime.now(datetime.UTC).date()
    assert marker.day in {day_number(before), day_number(after)}


def test_unmarked_faces_are_never_taken_for_marked() -> None:
    """200 frames of the same clips, never marked, read where their faces are (the clips'
    own tracked landmarks, as the analyzer finds them): no false find, none close."""
    settings = Settings(bundled_clips_dir=REPO / "clips")
    scores: list[float] = []
    for clip_id in CLIPS:
        clip = ClipLibrary(settings).get(clip_id)
        landmarks = clip.load_track().landmarks
        for frame, points in list(zip(read_video(clip.media), landmarks, strict=False))[:50]:
            reading = read_faces(frame, [points[:68]], KEY, today=TODAY)
            assert reading is not None
            scores.append(reading.score)
    assert len(scores) == 200
    assert max(scores) < THRESHOLD - 0.5


def test_another_deployments_key_finds_nothing(
    renders: dict[str, Sequence], analyzer: DlibAnalyzer
) -> None:
    other = WatermarkKey(b"another deployment's key........")
    frames, _ = renders["astronaut-pan"]
    for frame in _sample(frames):
        faces = [face.landmarks[:68] for face in analyzer.detect(frame)]
        reading = read_faces(frame, faces, other, today=TODAY)
        assert reading is not None
        assert not reading.found
