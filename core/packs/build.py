"""Building a clip pack (``facecast clips add``): decode, track, write."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tomli_w

from core.config import Settings
from core.errors import BadMedia, ClipRejected, NoFaceFound
from core.faces.analyzer import Analyzer
from core.faces.tracking import Track, TrackRecorder, TrackSettings, steady, turns
from core.kinds import Motion
from core.media.audio import read_sound, write_sound
from core.media.images import RGBImage, load_picture
from core.media.video import encode, even_size, probe_video, read_timed_video
from core.packs.camera import animate_still
from core.packs.library import (
    _TRACK_VERSION,
    ID_PATTERN,
    MANIFEST,
    MEDIA,
    PICTURE_SUFFIXES,
    SOUND,
    TRACK,
    Clip,
    ClipLicence,
    ClipManifest,
    Progress,
    load_clip,
)


def _write_track(folder: Path, track: Track) -> None:
    np.savez_compressed(
        folder / TRACK,
        version=np.int32(_TRACK_VERSION),
        landmarks=track.landmarks.astype(np.float32),
        visible=track.visible,
    )


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
    audio: bool = True  # keep the video's sound (``--no-audio``: a silent clip)


def _is_picture(path: Path) -> bool:
    return path.suffix.lower() in PICTURE_SUFFIXES


def _source_frames(
    request: ClipSource, settings: Settings, analyzer: Analyzer
) -> tuple[Iterator[tuple[float, RGBImage]], float, float]:
    """The frames to track and store (each with its time in the source), their rate, and
    the clip's length in seconds."""
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
        return ((i / request.fps, f) for i, f in enumerate(frames)), request.fps, request.seconds
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
    timed = read_timed_video(
        request.video,
        start=request.start,
        end=request.end,
        max_side=request.max_side,
        max_bytes=settings.max_video_bytes,
    )
    return timed, info.fps, length


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
        first: list[float] = []  # when the first frame kept is shown in the source

        def tracked() -> Iterator[RGBImage]:
            # One decoding pass feeds both the tracker and the pack's media encoder.
            for moment, frame in decoded:
                if not first:
                    first.append(moment)
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
        seen = turns(steady(track.landmarks, track.visible), track.visible)[track.visible]
        turned = float((seen > settings.max_yaw_degrees).mean())
        if turned > settings.max_turned_share:
            raise ClipRejected(
                f"The face is turned more than {settings.max_yaw_degrees:g}° from the camera "
                f"in {turned:.0%} of the frames (up to {float(seen.max()):.0f}°). One frontal "
                "selfie can't cover that: those frames would keep the original face. Trim "
                "the clip to where the face looks at the camera with --start/--end."
            )
        _write_track(folder, track)
        audio = None
        if request.audio and first and not _is_picture(request.video):
            # Cut on the clock the frames were picked by: sample 0 plays with frame 0.
            sound = read_sound(request.video, start=first[0], end=first[0] + track.frames / fps)
            if sound is not None:
                write_sound(sound, folder / SOUND)
                audio = SOUND
        manifest = ClipManifest(
            id=request.clip_id,
            title=request.title or request.clip_id.replace("-", " ").replace("_", " ").title(),
            tags=request.tags,
            audio=audio,
            fps=round(fps, 6),
            frames=track.frames,
            width=encoded.width,
            height=encoded.height,
            duration=round(track.frames / fps, 4),
            coverage=round(track.coverage, 4),
            target_face=request.face,
            jitter_raw=round(track.raw_jitter, 5),
            jitter_smoothed=round(track.jitter, 5),
            max_turn=round(float(seen.max()), 1),
            turned=round(turned, 4),
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


__all__ = ["ClipSource", "build_clip"]
