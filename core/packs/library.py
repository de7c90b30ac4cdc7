"""Clip packs: a short video plus the face track computed once, ahead of any render.

A pack is a folder ``<id>/`` holding ``clip.toml`` (what it is, where it came from, its
licence), the media (H.264 MP4, at most ~480 px on the long side), ``track.npz`` (the
target face's smoothed landmarks and a visibility flag per frame) and, when the clip has
sound, ``audio.m4a`` (AAC, cut to the clip: its first sample plays with frame 0). Packs
are read from the bundled ``clips/`` folder and from the operator's folder; an operator
pack with the same id wins. :func:`build_clip` writes only into the operator's folder,
atomically.
"""

from __future__ import annotations

import difflib
import logging
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.config import Settings
from core.errors import BadMedia, ClipNotFound
from core.faces.tracking import TrackPoints
from core.media.audio import Sound, read_sound

log = logging.getLogger(__name__)

MANIFEST = "clip.toml"
TRACK = "track.npz"
MEDIA = "clip.mp4"
SOUND = "audio.m4a"  # the clip's sound, cut with it (AAC); absent for a silent clip
_TRACK_VERSION = 1
PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
FILE_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"  # a file in the pack's own folder

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
    audio: str | None = Field(default=None, pattern=FILE_NAME)  # SOUND when it has sound
    fps: float = Field(gt=0, le=120)
    frames: int = Field(gt=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    duration: float = Field(gt=0)
    coverage: float = Field(ge=0, le=1)
    target_face: int | None = Field(default=None, ge=1)
    jitter_raw: float = 0.0
    jitter_smoothed: float = 0.0
    # How far the face turns from the camera: the most (degrees) and the share of the
    # frames where it is seen that are past the limit a selfie covers (the swap fades out);
    # None in packs made before it was measured
    max_turn: float | None = Field(default=None, ge=0, le=90)
    turned: float | None = Field(default=None, ge=0, le=1)
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

    def load_sound(self) -> Sound | None:
        """The clip's sound, sample 0 with frame 0; ``None`` for a silent clip."""
        return pack_sound(self.folder, self.manifest.audio, f"The clip {self.id!r}")


def pack_sound(folder: Path, name: str | None, what: str) -> Sound | None:
    """The sound file ``name`` of the pack in ``folder`` (``None``: silent); a missing or
    broken one is :class:`ClipNotFound`, saying ``what`` is damaged."""
    if name is None:
        return None
    try:
        return read_sound(folder / name)
    except (OSError, BadMedia) as exc:
        raise ClipNotFound(f"{what} is damaged (its sound).") from exc


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
        # folder -> (the manifest's mtime and size, the pack or None if not of this kind or
        # broken): each clip.toml is parsed once, and again only when it changes
        self._cache: dict[Path, tuple[tuple[int, int], PackT | None]] = {}

    def load(self, folder: Path, bundled: bool, data: dict[str, Any]) -> PackT:
        """Validate one pack of this kind from its already-parsed manifest."""
        raise NotImplementedError

    def all(self) -> list[PackT]:
        """Every valid pack; a broken one is skipped with a warning naming its file, so one
        operator's typo never takes every clip away."""
        found: dict[str, PackT] = {}
        seen: set[Path] = set()
        for root, bundled in self.roots:
            if not root.is_dir():
                continue
            for folder in sorted(root.iterdir()):
                manifest = folder / MANIFEST
                try:
                    stat = manifest.stat()
                except OSError:
                    continue  # not a pack folder
                seen.add(folder)
                stamp = (stat.st_mtime_ns, stat.st_size)
                cached = self._cache.get(folder)
                if cached is None or cached[0] != stamp:
                    cached = (stamp, self._read(folder, bundled))
                    self._cache[folder] = cached
                if cached[1] is not None:
                    found[cached[1].id] = cached[1]
        for gone in set(self._cache) - seen:
            del self._cache[gone]
        return sorted(found.values(), key=lambda pack: pack.id)

    def _read(self, folder: Path, bundled: bool) -> PackT | None:
        try:
            data = _read_toml(folder)  # once: it says the kind and is the manifest
            if data.get("kind", "clip") != self.kind:
                return None
            return self.load(folder, bundled, data)
        except ClipNotFound as exc:
            log.warning("skipping the %s pack in %s: %s", self.noun, folder / MANIFEST, exc)
            return None

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


__all__ = [
    "FILE_NAME",
    "ID_PATTERN",
    "MANIFEST",
    "SOUND",
    "Clip",
    "ClipLibrary",
    "ClipLicence",
    "ClipManifest",
    "ClipTrack",
    "PackInfo",
    "PackLibrary",
    "load_clip",
    "pack_sound",
    "read_manifest",
]
