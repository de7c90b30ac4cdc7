"""Render work as it runs inside a job runner's worker process.

Everything a task needs travels in a picklable :class:`RenderOrder` (the profile as bytes,
and a :class:`RenderConfig`: only the settings a render reads, never a token or key), so the
same function can run in a local process pool or, later, on a distributed worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core import progress
from core.config import Settings
from core.engines.base import Swapper
from core.errors import BadMedia
from core.faces.analyzer import Analyzer
from core.faces.profile import FaceProfile, IdentityEmbedder, enroll
from core.kinds import EngineName
from core.media.images import load_picture
from core.media.provenance import Marks
from core.media.video import EncodedVideo
from core.packs.library import Clip, ClipLibrary
from core.render.clip import Progress, render_to_file
from core.render.memes import MemeLibrary, render_meme_to_file


@dataclass(frozen=True, slots=True)
class RenderConfig:
    """What of the settings a render needs: the engine and its models, and where clips are.
    Nothing secret (tokens, the secret key, the database URL) goes to a worker."""

    engine: EngineName
    data_dir: str
    models_dir: str
    models_registry: str | None
    clips_dir: str
    bundled_clips_dir: str
    gif_bytes_per_second: int
    max_yaw_degrees: float  # past it a clip's face keeps its own (see render_clip)
    # The watermark key (derived for this purpose only) and the C2PA signing files' paths.
    marks: Marks | None = None

    @classmethod
    def of(cls, settings: Settings, marks: Marks | None = None) -> RenderConfig:
        registry = settings.models_registry
        return cls(
            engine=settings.engine,
            data_dir=str(settings.resolved_data_dir),
            models_dir=str(settings.resolved_models_dir),
            models_registry=str(registry) if registry is not None else None,
            clips_dir=str(settings.resolved_clips_dir),
            bundled_clips_dir=str(settings.bundled_clips_dir),
            gif_bytes_per_second=settings.gif_bytes_per_second,
            max_yaw_degrees=settings.max_yaw_degrees,
            marks=marks,
        )

    def settings(self) -> Settings:
        """Settings for the render code, from these fields and defaults only (nothing read
        from the worker's environment)."""
        registry = Path(self.models_registry) if self.models_registry else None
        return Settings.model_construct(
            engine=self.engine,
            data_dir=Path(self.data_dir),
            models_dir=Path(self.models_dir),
            models_registry=registry,
            clips_dir=Path(self.clips_dir),
            bundled_clips_dir=Path(self.bundled_clips_dir),
            gif_bytes_per_second=self.gif_bytes_per_second,
            max_yaw_degrees=self.max_yaw_degrees,
        )


@dataclass(frozen=True, slots=True)
class RenderOrder:
    kind: Literal["clip", "meme"]
    target: str  # clip id or meme template id
    profile: bytes  # FaceProfile.to_bytes()
    output: str  # where to write (.mp4 or .gif)
    config: RenderConfig
    top: str | None = None
    bottom: str | None = None
    max_bytes: int | None = None
    # (pack id, sha256 of its files) of every pack the render reads: a worker on another
    # machine renders exactly these (core.packs.sync); empty for the local pool.
    packs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class RenderResult:
    path: str
    frames: int
    width: int
    height: int
    size_bytes: int
    fps: float
    has_audio: bool = False

    @classmethod
    def of(cls, encoded: EncodedVideo) -> RenderResult:
        return cls(
            str(encoded.path),
            encoded.frames,
            encoded.width,
            encoded.height,
            encoded.size_bytes,
            encoded.fps,
            encoded.has_audio,
        )


_SWAPPERS: dict[tuple[str, str, str], Swapper] = {}


def _swapper(settings: Settings) -> Swapper:
    """One swapper per engine and model set per worker process (models load once)."""
    from core.engines.registry import make_swapper

    key = (settings.engine, str(settings.resolved_models_dir), str(settings.models_registry))
    if key not in _SWAPPERS:
        _SWAPPERS[key] = make_swapper(settings)
    return _SWAPPERS[key]


def render_order(order: RenderOrder) -> RenderResult:
    """Render a clip or a meme for one user; reports progress to the job's user.

    A GIF that cannot be squeezed under ``max_bytes`` is made as an MP4 instead (same
    place, .mp4 suffix): chat platforms play both, and MP4 is far smaller.
    """
    output = Path(order.output)
    try:
        return _render(order, output)
    except BadMedia:
        if output.suffix != ".gif" or order.max_bytes is None:
            raise
        return _render(order, output.with_suffix(".mp4"))


def clip_to_file(
    profile: FaceProfile,
    clip: Clip,
    swapper: Swapper,
    output: Path,
    settings: Settings,
    *,
    size: int | None = None,
    max_bytes: int | None = None,
    progress: Progress | None = None,
    gif_budget: bool = True,
    marks: Marks | None = None,
) -> EncodedVideo:
    """Render a clip and encode it (.mp4 or .gif) within ``max_bytes``; a GIF also aims at
    ``settings.gif_bytes_per_second`` unless ``gif_budget`` is false. An MP4 carries the
    clip's sound; ``marks`` watermarks the faces and signs the file."""
    return render_to_file(
        profile,
        clip,
        swapper,
        output,
        size=size,
        max_bytes=max_bytes,
        progress=progress,
        marks=marks,
        turn_limit=settings.max_yaw_degrees,
        gif_bytes_per_second=settings.gif_bytes_per_second or None if gif_budget else None,
    )


def _render(order: RenderOrder, output: Path) -> RenderResult:
    settings = order.config.settings()
    profile = FaceProfile.from_bytes(order.profile)
    output.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # private, like its parent
    swapper = _swapper(settings)
    if order.kind == "clip":
        clip = ClipLibrary(settings).get(order.target)
        encoded = clip_to_file(
            profile,
            clip,
            swapper,
            output,
            settings,
            size=480,
            max_bytes=order.max_bytes,
            progress=progress.report,
            marks=order.config.marks,
        )
    else:
        template = MemeLibrary(settings).get(order.target)
        encoded = render_meme_to_file(
            profile,
            template,
            settings,
            swapper,
            output,
            top=order.top,
            bottom=order.bottom,
            max_bytes=order.max_bytes,
            progress=progress.report,
            marks=order.config.marks,
        )
    encoded.path.chmod(0o600)  # someone's face: readable by this server only
    return RenderResult.of(encoded)


def pack_folders(kind: Literal["clip", "meme"], target: str, settings: Settings) -> list[Path]:
    """The pack folders a render of ``target`` reads: the clip, or the meme template and
    the clip it swaps into."""
    if kind == "clip":
        return [ClipLibrary(settings).get(target).folder]
    template = MemeLibrary(settings).get(target)
    folders = [template.folder]
    if template.manifest.clip is not None:
        folders.append(ClipLibrary(settings).get(template.manifest.clip).folder)
    return folders


# -- enrolment analysis, the other task a worker runs ------------------------------------------


@dataclass(frozen=True, slots=True)
class EnrolConfig:
    """What of the settings enrolment reads: the engine, the image caps and the selfie
    thresholds. Nothing secret."""

    engine: EngineName
    models_dir: str
    models_registry: str | None
    max_image_bytes: int
    max_image_pixels: int
    min_image_side: int
    selfie_max_side: int
    min_eye_distance: float
    good_eye_distance: float
    min_sharpness: float
    max_yaw_degrees: float
    rival_face_ratio: float

    @classmethod
    def of(cls, settings: Settings) -> EnrolConfig:
        registry = settings.models_registry
        return cls(
            engine=settings.engine,
            models_dir=str(settings.resolved_models_dir),
            models_registry=str(registry) if registry is not None else None,
            max_image_bytes=settings.max_image_bytes,
            max_image_pixels=settings.max_image_pixels,
            min_image_side=settings.min_image_side,
            selfie_max_side=settings.selfie_max_side,
            min_eye_distance=settings.min_eye_distance,
            good_eye_distance=settings.good_eye_distance,
            min_sharpness=settings.min_sharpness,
            max_yaw_degrees=settings.max_yaw_degrees,
            rival_face_ratio=settings.rival_face_ratio,
        )

    def settings(self) -> Settings:
        fields = {name: getattr(self, name) for name in self.__slots__}
        registry = fields.pop("models_registry")
        fields["models_dir"] = Path(fields["models_dir"])
        return Settings.model_construct(
            models_registry=Path(registry) if registry else None, **fields
        )


@dataclass(frozen=True, slots=True)
class EnrolOrder:
    image: bytes  # the selfie as sent
    config: EnrolConfig


_ANALYSERS: dict[tuple[str, str, str], tuple[Analyzer, IdentityEmbedder | None]] = {}


def enrol_order(order: EnrolOrder) -> bytes:
    """Decode a selfie, find and check its face, and return the profile
    (:meth:`FaceProfile.to_bytes`); raises a friendly error for a photo that won't do."""
    from core.engines.registry import make_analyzer, make_identity

    settings = order.config.settings()
    key = (settings.engine, str(settings.resolved_models_dir), str(settings.models_registry))
    if key not in _ANALYSERS:
        analyzer = make_analyzer(settings)
        _ANALYSERS[key] = (analyzer, make_identity(settings, analyzer))
    analyzer, identity = _ANALYSERS[key]
    picture = load_picture(order.image, settings, selfie=True)
    return enroll(picture, analyzer, settings, identity=identity).to_bytes()


__all__ = [
    "EnrolConfig",
    "EnrolOrder",
    "RenderConfig",
    "RenderOrder",
    "RenderResult",
    "clip_to_file",
    "enrol_order",
    "pack_folders",
    "render_order",
]
