"""This deployment's marks, and checking a file for them (`facecast verify`, `/check`).

:func:`load_marks` derives the watermark key from the server's secret (HKDF, its own
purpose) and finds the C2PA signing files: the operator's (``FACECAST_C2PA_CERT``,
``FACECAST_C2PA_KEY``) or a local authority generated into the data dir on first start.

:func:`check_file` reports what a file carries: a C2PA manifest (present, valid, signed by
this deployment) and the face watermark (found, and the day it names). It looks for faces
only to read the mark; it never says who is in the picture.
"""

from __future__ import annotations

import datetime
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.config import Settings
from core.errors import BadMedia, FaceCastError
from core.faces.analyzer import Analyzer, box_iou
from core.media.images import RGBImage, load_image
from core.media.provenance import (
    ANCHOR_FILE,
    CHAIN_FILE,
    FOLDER,
    KEY_FILE,
    SIGNABLE,
    ManifestCheck,
    Marks,
    ProvenanceUnavailable,
    check_manifest,
    generate_identity,
)
from core.media.video import probe_video, read_video
from core.media.watermark import Reading, read_faces, summarise
from core.storage.crypto import Keys, private_dir

WATERMARK = "watermark"  # the HKDF purpose of the watermark key
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
VIDEO_SUFFIXES = (".mp4", ".gif", ".mov", ".webm")
SAMPLED_FRAMES = 12  # a video's frames read for the watermark, spread over it


def load_marks(settings: Settings, keys: Keys | None = None) -> Marks:
    """The marks this deployment puts on its outputs (generating the local C2PA authority
    on first start when the operator configured no certificate)."""
    keys = keys or Keys.load(settings)
    watermark_key = keys.derived(WATERMARK)[0]
    if (settings.c2pa_cert is None) != (settings.c2pa_key is None):
        raise ProvenanceUnavailable(
            "Set both FACECAST_C2PA_CERT and FACECAST_C2PA_KEY, or neither (a local "
            "certificate is then generated)."
        )
    if settings.c2pa_cert is not None and settings.c2pa_key is not None:
        cert, key = settings.c2pa_cert.expanduser(), settings.c2pa_key.expanduser()
        for path in (cert, key):
            if not path.is_file():
                raise ProvenanceUnavailable(f"The C2PA file {path} does not exist.")
        marks = Marks(watermark_key, str(cert), str(key))
        marks.check_signing()  # a certificate C2PA refuses stops the start, not each render
        return marks
    folder = private_dir(settings.resolved_data_dir / FOLDER)
    generate_identity(folder)
    return Marks(
        watermark_key, str(folder / CHAIN_FILE), str(folder / KEY_FILE), str(folder / ANCHOR_FILE)
    )


@dataclass(frozen=True, slots=True)
class FileCheck:
    manifest: ManifestCheck
    frames: int  # frames looked at
    faces: int  # of those, frames with a face to read
    marked: int  # of those, frames carrying this deployment's watermark
    day: datetime.date | None  # the day the watermark names

    @property
    def watermarked(self) -> bool:
        # One frame is enough for a picture; a video needs a quarter of its faces, so that
        # a stray frame cannot decide.
        return self.marked >= max(1, (self.faces + 3) // 4) if self.faces else False

    @property
    def ours(self) -> bool:
        return self.manifest.ours or self.watermarked

    def describe(self) -> str:
        """The answer in words, for a chat or a terminal."""
        m = self.manifest
        if not m.present:
            c2pa = "Content Credentials (C2PA): none in this file."
        elif m.valid:
            who = "signed by this FaceCast deployment" if m.ours else "not signed by us"
            kind = ", declared AI-generated" if m.synthetic else ""
            c2pa = f"Content Credentials (C2PA): present and valid, {who}{kind}."
        else:
            c2pa = f"Content Credentials (C2PA): present but NOT valid ({m.problem or 'altered'})."
        if not self.faces:
            mark = "Watermark: no face found to read it from."
        elif self.watermarked:
            mark = f"Watermark: found ({self.marked} of {self.faces} frames with a face)."
        else:
            mark = f"Watermark: not found ({self.faces} frames with a face looked at)."
        if self.ours:
            when = self.day.isoformat() if self.day else (m.signed_at[:10] or "an unknown day")
            verdict = f"Made by this FaceCast deployment on {when}: AI-generated."
        else:
            verdict = "Not made by this FaceCast deployment (or its marks were removed)."
        return "\n".join([verdict, c2pa, mark])


def _frames(path: Path, max_bytes: int) -> Iterator[RGBImage]:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        yield load_image(path, max_bytes=max_bytes, min_side=16)
        return
    if suffix not in VIDEO_SUFFIXES:
        raise BadMedia(
            f"I can check pictures ({', '.join(IMAGE_SUFFIXES)}) and videos "
            f"({', '.join(VIDEO_SUFFIXES)}), not {suffix or 'a file without a suffix'}."
        )
    info = probe_video(path, max_bytes=max_bytes)
    total = info.frames or round(info.duration * info.fps) or SAMPLED_FRAMES
    every = max(1, total // SAMPLED_FRAMES)
    for index, frame in enumerate(read_video(path, max_bytes=max_bytes)):
        if index % every == 0:
            yield frame


def check_file(
    path: Path,
    marks: Marks,
    analyzer: Analyzer,
    *,
    max_bytes: int = 200 * 1024 * 1024,
) -> FileCheck:
    """What ``path`` carries of this deployment's marks (see :class:`FileCheck`)."""
    if path.suffix.lower() in SIGNABLE:
        manifest = check_manifest(path, marks.trust_anchor())
    else:
        manifest = ManifestCheck(present=False)
    readings: list[Reading | None] = []
    for frame in _frames(path, max_bytes):
        faces = analyzer.detect(frame)
        reading = read_faces(frame, [face.landmarks[:68] for face in faces], marks.watermark)
        if reading is None or not reading.found:
            # A swapped face can score just under the detector's threshold (a small face,
            # smoothed): the doubtful boxes are looked at too (an unmarked one reads as
            # unmarked whatever it is).
            others = [
                box
                for box, _ in analyzer.detect_boxes(frame, verify=False, unsure=True)
                if not any(box_iou(box, face.bbox) >= 0.3 for face in faces)
            ]
            extra = read_faces(
                frame, [analyzer.landmarks(frame, box)[:68] for box in others], marks.watermark
            )
            if extra is not None and extra.found:
                reading = extra
        readings.append(reading)
    with_face, marked, day = summarise(readings)
    return FileCheck(manifest, len(readings), with_face, marked, day)


def check_bytes(
    data: bytes, name: str, marks: Marks, analyzer: Analyzer, *, max_bytes: int
) -> FileCheck:
    """:func:`check_file` for an upload (its ``name`` says the format)."""
    suffix = Path(name).suffix.lower() or _sniff(data)
    if len(data) > max_bytes:
        raise BadMedia(f"That file is too big to check ({len(data) / 1e6:.1f} MB).")
    with tempfile.TemporaryDirectory(prefix="facecast-check-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            return check_file(path, marks, analyzer, max_bytes=max_bytes)
        except FaceCastError:
            raise
        except (OSError, ValueError) as exc:
            raise BadMedia("I couldn't read that file to check it.") from exc


def _sniff(data: bytes) -> str:
    """A suffix from the first bytes, for uploads that came without a file name."""
    if data.startswith(b"\x89PNG"):
        return ".png"
    if data.startswith(b"\xff\xd8"):
        return ".jpg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return ".gif"
    if data[4:8] == b"ftyp":
        return ".mp4"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return ".webp"
    return ""


__all__ = ["FileCheck", "check_bytes", "check_file", "load_marks"]
