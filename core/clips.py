"""Clip packs: a short video plus the face track computed once, ahead of any render.

A pack is a folder ``<id>/`` holding ``clip.toml`` (what it is, where it came from, its
licence), the media (H.264 MP4, at most ~480 px on the long side) and ``track.npz`` (the
target face's smoothed landmarks and a visibility flag per frame). Packs are read from the
bundled ``clips/`` folder and from the operator's folder; an operator pack with the same id
wins. :func:`build_clip` writes only into the operator's folder, atomically.
"""

from __future__ import annotations

import difflib
import re
import shutil
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

import numpy as np
import tomli_w
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .camera import Motion, animate_still
from .config import Settings
from .errors import BadMedia, ClipNotFound, ClipRejected, NoFaceFound
from .faces import Analyzer
from .media import RGBImage, encode, even_size, load_picture, probe_video, read_video
from .tracking import Track, TrackPoints, TrackRecorder, TrackSettings

MANIFEST = "clip.toml"
TRACK = "track.npz"
MEDIA = "clip.mp4"
_TRACK_VERSION = 1
PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")

Progress = Callable[[int, int], None]
"""``progress(done, total)``; ``total`` is an estimate for videos."""


class ClipLicence(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="e.g. 'Public domain', 'CC-BY-4.0'")
    source: str = Field(min_length=1, description="where the footage comes from")
    attribution: str = ""


class ClipManifest(BaseModel):
    """The schema of ``clip.toml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=ID_PATTERN.pattern)
    kind: Literal["clip"] = "clip"
    title: str = Field(min_length=1, max_length=80)
    tags: tuple[str, ...] = ()
    media: str = MEDIA
    fps: float = Field(gt=0, le=120)
    frames: int = Field(gt=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    duration: float = Field(gt=0)
    coverage: float = Field(ge=0, le=1)
    target_face: int | None = Field(default=None, ge=1)
    jitter_raw: float = 0.0
    jitter_smoothed: float = 0.0
    licence: ClipLicence


@dataclass(frozen=True, slots=True)
class ClipTrack:
    landmarks: TrackPoints  # (frames, 68, 2) at the media's resolution
    visible: NDArray[np.bool_]  # (frames,)

    @property
    def frames(self) -> int:
        return len(self.visible)


class PackInfo:
    """What every pack (a clip, a meme template) shows of its manifest."""

    __slots__ = ()
    manifest: ClipManifest | Any

    @property
    def id(self) -> str:
        return str(self.manifest.id)

    @property
    def title(self) -> str:
        return str(self.manifest.title)

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self.manifest.tags)


@dataclass(frozen=True, slots=True)
class Clip(PackInfo):
    manifest: ClipManifest
    folder: Path
    bundled: bool

    @property
    def media(self) -> Path:
        return self.folder / self.manifest.media

    def load_track(self) -> ClipTrack:
        try:
            with np.load(self.folder / TRACK, allow_pickle=False) as archive:
                version = int(archive["version"])
                landmarks = archive["landmarks"].astype(np.float32)
                visible = archive["visible"].astype(np.bool_)
        except (OSError, KeyError, ValueError) as exc:
            raise ClipNotFound(f"The clip {self.id!r} is damaged (its face track).") from exc
        if version != _TRACK_VERSION or landmarks.shape != (len(visible), 68, 2):
            raise ClipNotFound(f"The clip {self.id!r} has a face track I can't use.")
        return ClipTrack(landmarks, visible)


def _write_track(folder: Path, track: Track) -> None:
    np.savez_compressed(
        folder / TRACK,
        version=np.int32(_TRACK_VERSION),
        landmarks=track.landmarks.astype(np.float32),
        visible=track.visible,
    )


ManifestT = TypeVar("ManifestT", bound=BaseModel)


def _read_toml(folder: Path) -> dict[str, Any]:
    try:
        return tomllib.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ClipNotFound(f"{folder.name}: no readable {MANIFEST} ({exc}).") from exc


def read_manifest(
    folder: Path, model: type[ManifestT], data: dict[str, Any] | None = None
) -> ManifestT:
    """Validate ``folder/clip.toml`` (read here unless ``data`` is it) as ``model``; the
    folder must be its id."""
    try:
        manifest = model.model_validate(_read_toml(folder) if data is None else data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise ClipNotFound(f"{folder.name}/{MANIFEST} is invalid: {problems}.") from exc
    if getattr(manifest, "id", None) != folder.name:
        raise ClipNotFound(f"{folder.name}/{MANIFEST} says its id is not {folder.name!r}.")
    return manifest


def load_clip(folder: Path, *, bundled: bool = False, data: dict[str, Any] | None = None) -> Clip:
    """Read and validate one pack folder."""
    return Clip(read_manifest(folder, ClipManifest, data), folder, bundled)


class Pack(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def tags(self) -> tuple[str, ...]: ...


PackT = TypeVar("PackT", bound=Pack)


class PackLibrary(Generic[PackT]):
    """Every pack of one kind an installation can use: the bundled folder first, the
    operator's on top (same id: the operator's wins)."""

    kind: ClassVar[str]
    noun: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.roots = [(settings.bundled_clips_dir, True), (settings.resolved_clips_dir, False)]

    def load(self, folder: Path, bundled: bool, data: dict[str, Any]) -> PackT:
        """Validate one pack of this kind from its already-parsed manifest."""
        raise NotImplementedError

    def all(self) -> list[PackT]:
        found: dict[str, PackT] = {}
        for root, bundled in self.roots:
            if not root.is_dir():
                continue
            for folder in sorted(root.iterdir()):
                if not (folder.is_dir() and (folder / MANIFEST).is_file()):
                    continue
                data = _read_toml(folder)  # once: it says the kind and is the manifest
                if data.get("kind", "clip") == self.kind:
                    pack = self.load(folder, bundled, data)
                    found[pack.id] = pack
        return sorted(found.values(), key=lambda pack: pack.id)

    def get(self, pack_id: str) -> PackT:
        packs = {pack.id: pack for pack in self.all()}
        if pack_id in packs:
            return packs[pack_id]
        close = difflib.get_close_matches(pack_id, list(packs), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ClipNotFound(f"I don't know a {self.noun} called {pack_id!r}.{hint}")

    def search(self, query: str) -> list[PackT]:
        words = query.lower().split()
        return [
            pack
            for pack in self.all()
            if all(w in pack.id or w in pack.title.lower() or w in pack.tags for w in words)
        ]


class ClipLibrary(PackLibrary[Clip]):
    kind = "clip"
    noun = "clip"

    def load(self, folder: Path, bundled: bool, data: dict[str, Any]) -> Clip:
        return load_clip(folder, bundled=bundled, data=data)


@dataclass(frozen=True, slots=True)
class ClipSource:
    """What the operator asked for in `facecast clips add`."""

    video: Path
    clip_id: str
    title: str | None = None
    tags: tuple[str, ...] = ()
    start: float = 0.0
    end: float | None = None
    face: int | None = None
    max_side: int = 480
    motion: Motion | None = None  # for a still picture: the camera move that animates it
    seconds: float = 3.0  # length of a clip made from a still picture
    fps: float = 24.0  # its frame rate
    licence: str = "unknown"
    source: str | None = None
    attribution: str = ""


def _is_picture(path: Path) -> bool:
    return path.suffix.lower() in PICTURE_SUFFIXES


def _source_frames(
    request: ClipSource, settings: Settings, analyzer: Analyzer
) -> tuple[Iterator[RGBImage], float, float]:
    """The frames to track and store, their rate, and the clip's length in seconds."""
    if _is_picture(request.video):
        picture = load_picture(request.video, settings)
        faces = analyzer.detect(picture)
        if not faces:
            raise NoFaceFound(f"I couldn't find a face in {request.video.name}.")
        index = request.face or 0
        if index > len(faces):
            raise ClipRejected(f"{request.video.name} has {len(faces)} face(s), not {index}.")
        face = faces[index - 1] if index else max(faces, key=lambda f: f.quality.eye_distance)
        cx, cy = face.landmarks.mean(axis=0)
        width, height = even_size(request.max_side, round(request.max_side * 0.75), None)
        if request.seconds > settings.max_clip_seconds:
            raise ClipRejected(f"Clips are at most {settings.max_clip_seconds:g}s long.")
        frames, _ = animate_still(
            picture,
            request.motion or "push-in",
            seconds=request.seconds,
            fps=request.fps,
            size=(width, height),
            focus=(float(cx), float(cy)),
        )
        return frames, request.fps, request.seconds
    if request.motion is not None:
        raise ClipRejected("--motion animates a still picture; this is a video.")
    info = probe_video(request.video, max_bytes=settings.max_video_bytes)
    if info.duration and request.start >= info.duration:
        raise ClipRejected(
            f"--start {request.start:g}s is past the end of the video ({info.duration:.1f}s)."
        )
    end = min(request.end, info.duration) if request.end and info.duration else request.end
    length = (end or info.duration) - request.start
    if length > settings.max_clip_seconds:
        raise ClipRejected(
            f"That's {length:.1f}s of video; clips are at most {settings.max_clip_seconds:g}s. "
            "Pick a part with --start and --end."
        )
    frames = read_video(
        request.video,
        start=request.start,
        end=request.end,
        max_side=request.max_side,
        max_bytes=settings.max_video_bytes,
    )
    return frames, info.fps, length


def build_clip(
    request: ClipSource,
    settings: Settings,
    analyzer: Analyzer,
    *,
    replace: bool = False,
    progress: Progress | None = None,
) -> Clip:
    """Turn a video (or a still picture and a camera move) into a pack in the operator's
    folder, or raise with the reason.

    Decoding, tracking and writing the trimmed media happen in one pass; everything is
    written into a temporary folder next to the destination and renamed into place at the
    end, so a refusal or a crash leaves nothing half-written.
    """
    if not ID_PATTERN.match(request.clip_id):
        raise ClipRejected(
            f"{request.clip_id!r} can't be a clip id: use lower-case letters, digits, - and _."
        )
    root = settings.resolved_clips_dir
    destination = root / request.clip_id
    if destination.exists() and not replace:
        raise ClipRejected(f"A clip called {request.clip_id!r} exists already (use --replace).")
    decoded, fps, length = _source_frames(request, settings, analyzer)
    root.mkdir(parents=True, exist_ok=True)
    expected = max(1, round(length * fps))

    with tempfile.TemporaryDirectory(prefix=f".{request.clip_id}-", dir=root) as work:
        folder = Path(work) / request.clip_id
        folder.mkdir()
        recorder = TrackRecorder(analyzer, TrackSettings(face_index=request.face))

        def tracked() -> Iterator[RGBImage]:
            # One decoding pass feeds both the tracker and the pack's media encoder.
            for frame in decoded:
                recorder.add(frame)
                if progress is not None:
                    progress(recorder.frames, max(expected, recorder.frames))
                yield frame

        try:
            encoded = encode(tracked(), folder / MEDIA, fps=fps)
        except BadMedia:
            if recorder.frames == 0:
                raise BadMedia(
                    f"{request.video.name} has no frames in the part you picked."
                ) from None
            raise
        track = recorder.finish(fps)
        if not track.visible.any():
            raise NoFaceFound(f"I couldn't find a face in {request.video.name}.")
        if track.coverage < settings.min_coverage:
            raise ClipRejected(
                f"The face is visible in only {track.coverage:.0%} of the frames; a clip needs "
                f"at least {settings.min_coverage:.0%}. Trim it to where the face is on screen "
                "with --start/--end, or pick another face with --face."
            )
        _write_track(folder, track)
        manifest = ClipManifest(
            id=request.clip_id,
            title=request.title or request.clip_id.replace("-", " ").replace("_", " ").title(),
            tags=request.tags,
            fps=round(fps, 6),
            frames=track.frames,
            width=encoded.width,
            height=encoded.height,
            duration=round(track.frames / fps, 4),
            coverage=round(track.coverage, 4),
            target_face=request.face,
            jitter_raw=round(track.raw_jitter, 5),
            jitter_smoothed=round(track.jitter, 5),
            licence=ClipLicence(
                name=request.licence,
                source=request.source or request.video.name,
                attribution=request.attribution,
            ),
        )
        (folder / MANIFEST).write_text(
            tomli_w.dumps(manifest.model_dump(mode="json", exclude_none=True)), encoding="utf-8"
        )
        if destination.exists():
            shutil.rmtree(destination)
        folder.rename(destination)
    return load_clip(destination)


__all__ = [
    "ID_PATTERN",
    "MANIFEST",
    "Clip",
    "ClipLibrary",
    "ClipLicence",
    "ClipManifest",
    "ClipSource",
    "ClipTrack",
    "PackInfo",
    "PackLibrary",
    "build_clip",
    "load_clip",
    "read_manifest",
]
