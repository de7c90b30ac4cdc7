"""Meme templates and meme rendering.

A meme template is a pack folder like a clip (``clips/<id>/clip.toml``) with ``kind =
"meme"``: either an animated ``effect`` on the user's own face (see :mod:`core.render.effects`) or
a bundled ``clip`` the user is swapped into, plus default top and bottom captions, the
caption boxes, duration, frame rate and size. Data, not code: operators add their own
templates to their clips folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.config import Settings
from core.engines.base import Swapper
from core.errors import ClipNotFound
from core.faces.landmarks import transform_points
from core.faces.profile import FaceProfile
from core.media.audio import Sound
from core.media.images import RGBImage
from core.media.overlay import Box, Overlay, add_ai_label
from core.media.provenance import Marks
from core.media.video import EncodedVideo, encode
from core.media.watermark import Watermarker
from core.packs.library import (
    FILE_NAME,
    ID_PATTERN,
    Clip,
    ClipLibrary,
    ClipLicence,
    PackInfo,
    PackLibrary,
    pack_sound,
    read_manifest,
)
from core.render.captions import BOTTOM, TOP, CaptionBox, FontSet, check_caption, render_caption
from core.render.clip import Progress, clip_sound, render_clip
from core.render.effects import EFFECTS, FACE_MOTION, Scene


class MemeManifest(BaseModel):
    """The schema of a meme template's ``clip.toml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=ID_PATTERN.pattern)
    kind: Literal["meme"] = "meme"
    title: str = Field(min_length=1, max_length=80)
    tags: tuple[str, ...] = ()
    effect: str | None = None  # an animated effect on the user's own face...
    clip: str | None = None  # ...or a clip the user's face is swapped into
    # a sound file in the folder, for MP4s (a clip template has the clip's otherwise)
    sound: str | None = Field(default=None, pattern=FILE_NAME)
    duration: float = Field(default=2.0, gt=0, le=10)  # for effects; clips keep their own
    fps: float = Field(default=12.0, gt=0, le=30)
    size: int = Field(default=360, ge=64, le=720)  # long side of the output
    top: str = ""  # default captions; the user's text replaces them
    bottom: str = ""
    top_box: CaptionBox = TOP
    bottom_box: CaptionBox = BOTTOM
    licence: ClipLicence

    @model_validator(mode="after")
    def _one_source(self) -> MemeManifest:
        if (self.effect is None) == (self.clip is None):
            raise ValueError("a meme template needs exactly one of 'effect' or 'clip'")
        if self.effect is not None and self.effect not in EFFECTS:
            raise ValueError(f"unknown effect {self.effect!r}; known: {', '.join(EFFECTS)}")
        return self


@dataclass(frozen=True, slots=True)
class MemeTemplate(PackInfo):
    manifest: MemeManifest
    folder: Path
    bundled: bool


def load_template(
    folder: Path, *, bundled: bool = False, data: dict[str, Any] | None = None
) -> MemeTemplate:
    return MemeTemplate(read_manifest(folder, MemeManifest, data), folder, bundled)


def meme_sound(template: MemeTemplate, settings: Settings, output: Path) -> Sound | None:
    """What an ``output`` of ``template`` sounds like: the template's own sound or its
    clip's, in an MP4; a GIF is silent."""
    if output.suffix.lower() != ".mp4":
        return None
    if template.manifest.sound is not None:
        what = f"The meme template {template.id!r}"
        return pack_sound(template.folder, template.manifest.sound, what)
    if template.manifest.clip is not None:
        return clip_sound(_template_clip(template, settings), output)
    return None


class MemeLibrary(PackLibrary[MemeTemplate]):
    kind = "meme"
    noun = "meme template"

    def load(self, folder: Path, bundled: bool, data: dict[str, Any]) -> MemeTemplate:
        return load_template(folder, bundled=bundled, data=data)


def _effect_frames(
    template: MemeTemplate, profile: FaceProfile, watermark: Watermarker | None = None
) -> Iterator[RGBImage]:
    m = template.manifest
    assert m.effect is not None
    scene = Scene.from_profile(profile, m.size)
    count = max(1, round(m.duration * m.fps))
    effect, motion = EFFECTS[m.effect], FACE_MOTION[m.effect]
    for index in range(count):
        frame = effect(scene, index / count)
        if watermark is not None:  # drawn after the effect, where it put the face
            face = transform_points(scene.landmarks, motion(scene, index / count))
            frame = watermark.embed(frame, face)
        yield frame


def _clip_step(template: MemeTemplate, clip: Clip) -> int:
    """Keep every n-th frame of the clip so the meme plays near the template's rate."""
    return max(1, round(clip.manifest.fps / template.manifest.fps))


def _template_clip(template: MemeTemplate, settings: Settings) -> Clip:
    assert template.manifest.clip is not None
    try:
        return ClipLibrary(settings).get(template.manifest.clip)
    except ClipNotFound as exc:
        raise ClipNotFound(
            f"The meme template {template.id!r} needs the clip "
            f"{template.manifest.clip!r}, which is missing."
        ) from exc


def meme_timing(template: MemeTemplate, settings: Settings) -> tuple[int, float]:
    """How many frames the meme has and the rate they play at."""
    m = template.manifest
    if m.clip is None:
        return max(1, round(m.duration * m.fps)), m.fps
    clip = _template_clip(template, settings)
    step = _clip_step(template, clip)
    return -(-clip.manifest.frames // step), clip.manifest.fps / step


def render_meme(
    profile: FaceProfile,
    template: MemeTemplate,
    settings: Settings,
    swapper: Swapper,
    *,
    top: str | None = None,
    bottom: str | None = None,
    fonts: FontSet | None = None,
    label: bool = True,
    progress: Progress | None = None,
    watermark: Watermarker | None = None,
) -> Iterator[RGBImage]:
    """The meme's frames: the effect or the face-swapped clip, captioned and labelled.

    ``top``/``bottom`` replace the template's captions (an empty string removes one).
    Captions are laid out once and blended into each frame in their time window.
    """
    m = template.manifest
    for text in (top, bottom):
        if text is not None:
            check_caption(text)
    total, _ = meme_timing(template, settings)
    if m.clip is not None:
        clip = _template_clip(template, settings)
        step = _clip_step(template, clip)
        frames: Iterator[RGBImage] = render_clip(
            profile,
            clip,
            swapper,
            size=m.size,
            label=False,
            step=step,
            watermark=watermark,
            turn_limit=settings.max_yaw_degrees,
        )
    else:
        frames = _effect_frames(template, profile, watermark)
    texts = [
        (m.top if top is None else top, m.top_box),
        (m.bottom if bottom is None else bottom, m.bottom_box),
    ]
    overlays: list[tuple[Overlay, CaptionBox]] | None = None
    ink: tuple[Box, ...] = ()  # where the captions draw: the AI badge keeps clear of it
    for index, frame in enumerate(frames):
        if overlays is None:
            size = (frame.shape[1], frame.shape[0])
            overlays = []
            for text, box in texts:
                layer = Overlay.from_rgba(render_caption(text, box, size, fonts)) if text else None
                if layer is not None:
                    overlays.append((layer, box))
            ink = tuple(
                (o.x, o.y, o.x + o.rgba.shape[1], o.y + o.rgba.shape[0]) for o, _ in overlays
            )
        t = index / total
        for overlay, box in overlays:
            if box.start <= t < box.stop or (box.stop == 1.0 and t >= box.start):
                frame = overlay.apply(frame)
        if progress is not None:
            progress(index + 1, total)
        yield add_ai_label(frame, avoid=ink) if label else frame


def render_meme_to_file(
    profile: FaceProfile,
    template: MemeTemplate,
    settings: Settings,
    swapper: Swapper,
    output: Path,
    *,
    top: str | None = None,
    bottom: str | None = None,
    max_bytes: int | None = None,
    progress: Progress | None = None,
    gif_budget: bool = True,
    marks: Marks | None = None,
) -> EncodedVideo:
    """Render and encode; a GIF also aims at ``settings.gif_bytes_per_second`` unless
    ``gif_budget`` is false (an explicit ``max_bytes`` is then the only limit). ``marks``
    watermarks the face and signs the file."""
    watermark = marks.watermarker() if marks is not None else None
    frames = render_meme(
        profile,
        template,
        settings,
        swapper,
        top=top,
        bottom=bottom,
        progress=progress,
        watermark=watermark,
    )
    _, fps = meme_timing(template, settings)
    per_second = settings.gif_bytes_per_second or None if gif_budget else None
    sign = marks.sign if marks is not None else None
    return encode(
        frames,
        output,
        fps=fps,
        max_bytes=max_bytes,
        gif_bytes_per_second=per_second,
        sign=sign,
        sound=meme_sound(template, settings, output),
    )


__all__ = [
    "MemeLibrary",
    "MemeManifest",
    "MemeTemplate",
    "load_template",
    "meme_sound",
    "meme_timing",
    "render_meme",
    "render_meme_to_file",
]
