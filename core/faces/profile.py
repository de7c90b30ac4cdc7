"""Enrolment: one selfie in, a reusable :class:`FaceProfile` out, or a clear refusal.

A profile is the face resampled into a fixed, level frame (the *texture*), its landmarks in
that frame (68 plus extrapolated forehead points), a triangulation of those points, and the
identity embedding. Swapping later needs nothing else from the original photo.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, cast

import cv2
import numpy as np
from numpy.typing import NDArray

from core.config import Settings
from core.errors import (
    BadMedia,
    FaceCropped,
    FaceTooBlurry,
    FaceTooSmall,
    FaceTurnedAway,
    NoFaceFound,
    TooManyFaces,
)
from core.faces.analyzer import Analyzer, Embedding, Face, FaceQuality, is_greyscale
from core.faces.landmarks import (
    BROWS,
    FOREHEAD_RISE,
    Points,
    extend_points,
    eye_distance,
    similarity_to_template,
    transform_points,
)
from core.faces.skin import colour_stats, skin_likeness, skin_mask, to_lab
from core.media.images import RGBImage

TEXTURE_SIZE = 384
_EYE_SPAN = 0.24  # eye-centre distance as a share of the texture side
_EYE_HEIGHT = 0.40  # eye line height as a share of the texture side
_FORMAT_VERSION = 1

Triangles = NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class FaceProfile:
    texture: RGBImage  # (TEXTURE_SIZE, TEXTURE_SIZE, 3), the face level and centred
    points: Points  # (N_EXTENDED, 2) landmark + forehead positions in the texture
    triangles: Triangles  # (T, 3) indices into ``points``
    reach: NDArray[np.float32]  # (10,) share of the standard forehead rise that is skin
    embedding: Embedding | None
    quality: FaceQuality
    notes: tuple[str, ...] = field(default=())  # friendly remarks for the user
    arcface: NDArray[np.float32] | None = None  # 512-D identity for the neural engine

    def to_bytes(self) -> bytes:
        """A compact, pickle-free serialisation (numpy ``.npz``) for the store."""
        buffer = io.BytesIO()
        q = self.quality
        np.savez_compressed(
            buffer,
            version=np.int32(_FORMAT_VERSION),
            texture=self.texture,
            points=self.points,
            triangles=self.triangles,
            reach=self.reach,
            embedding=(self.embedding if self.embedding is not None else np.zeros(0, np.float32)),
            quality=np.array(
                [q.eye_distance, q.sharpness, q.yaw, q.roll, q.greyscale, q.cropped], np.float64
            ),
            notes=np.array(self.notes, dtype=np.str_),
            arcface=self.arcface if self.arcface is not None else np.zeros(0, np.float32),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> FaceProfile:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                if int(archive["version"]) != _FORMAT_VERSION:
                    raise BadMedia("That saved face was made by another FaceCast version.")
                values = archive["quality"]
                embedding = archive["embedding"].astype(np.float32)
                return cls(
                    texture=archive["texture"].astype(np.uint8),
                    points=archive["points"].astype(np.float32),
                    triangles=archive["triangles"].astype(np.int32),
                    reach=archive["reach"].astype(np.float32),
                    embedding=embedding if embedding.size else None,
                    quality=FaceQuality(
                        eye_distance=float(values[0]),
                        sharpness=float(values[1]),
                        yaw=float(values[2]),
                        roll=float(values[3]),
                        greyscale=bool(values[4]),
                        cropped=bool(values[5]),
                    ),
                    notes=tuple(str(note) for note in archive["notes"]),
                    arcface=_optional(archive, "arcface"),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise BadMedia("That saved face is damaged; send a new selfie.") from exc


def _optional(archive: Any, key: str) -> NDArray[np.float32] | None:
    if key not in archive.files:
        return None
    values = np.asarray(archive[key], dtype=np.float32)
    return values if values.size else None


def triangulate(points: Points) -> Triangles:
    """Delaunay triangles over the extended points, as index triples (OpenCV's Subdiv2D:
    the same triangulation SciPy's qhull gives, without importing SciPy in every worker)."""
    pts = np.asarray(points, dtype=np.float64)
    # A wide rectangle: Subdiv2D's helper vertices sit outside it, and far away they no
    # longer steal the thin triangles along the hull.
    span = float(np.ptp(pts, axis=0).max()) + 1
    low = np.floor(pts.min(axis=0)) - 50 * span
    high = np.ceil(pts.max(axis=0)) + 50 * span
    subdiv = cv2.Subdiv2D((int(low[0]), int(low[1]), int(high[0] - low[0]), int(high[1] - low[1])))
    vertex_of: dict[int, int] = {}
    for index, (x, y) in enumerate(pts):
        vertex_of.setdefault(subdiv.insert((float(x), float(y))), index)
    triangles = []
    for corners in np.asarray(subdiv.getTriangleList()).reshape(-1, 3, 2):
        found = []
        for x, y in corners:
            vertex, _ = subdiv.findNearest((float(x), float(y)))
            if vertex not in vertex_of:
                break  # one of Subdiv2D's outer helper vertices
            found.append(vertex_of[vertex])
        if len(found) == 3 and len(set(found)) == 3:
            triangles.append(found)
    return np.asarray(triangles, dtype=np.int32).reshape(-1, 3)


def skin_reach(texture: RGBImage, points: Points, *, minimum: float = 0.3) -> NDArray[np.float32]:
    """How far up each forehead point the selfie shows skin before hair (a fringe) starts.

    Walks from each brow point towards its full-rise forehead point in the texture and stops
    where the colour leaves the skin's (measured on cheeks and nose), so a swap never pastes
    the selfie's fringe onto someone's forehead. At least ``minimum`` of the rise is kept,
    which keeps the triangulation sound.
    """
    lab = to_lab(texture)
    unit = eye_distance(points[:68])
    stats = colour_stats(lab, skin_mask(points, lab.shape[:2], unit))
    grey = is_greyscale(texture, points[:68])
    softened = np.asarray(cv2.GaussianBlur(lab, (0, 0), 1.5), np.float32)
    likeness = skin_likeness(softened, stats, use_chroma=not grey)
    height, width = likeness.shape
    reach = np.ones(len(FOREHEAD_RISE), dtype=np.float32)
    brows, tops = points[BROWS], points[68:]
    steps = np.linspace(0.0, 1.0, 25)
    for index, (brow, top) in enumerate(zip(brows, tops, strict=True)):
        samples = brow[None, :] + steps[:, None] * (top - brow)[None, :]
        xs = np.clip(samples[:, 0].round().astype(int), 0, width - 1)
        ys = np.clip(samples[:, 1].round().astype(int), 0, height - 1)
        skin = likeness[ys, xs] >= 0.5
        # Skip the brow itself (the first fifth), then stop at the first non-skin sample.
        start = 5
        misses = np.nonzero(~skin[start:])[0]
        if len(misses):
            reach[index] = steps[start + misses[0]] * 0.9
    # Neighbouring points should agree: a hairline is smooth.
    smoothed = np.convolve(np.pad(reach, 1, mode="edge"), np.ones(3) / 3.0, mode="valid")
    return np.asarray(np.clip(np.minimum(reach, smoothed), minimum, 1.0), dtype=np.float32)


def build_profile(
    image: RGBImage, face: Face, *, embedding: Embedding | None = None, notes: tuple[str, ...] = ()
) -> FaceProfile:
    """Resample ``face`` into the level texture frame. No quality checks: see :func:`enroll`."""
    matrix = similarity_to_template(face.landmarks, TEXTURE_SIZE, _EYE_SPAN, _EYE_HEIGHT)
    texture = np.ascontiguousarray(
        cv2.warpAffine(
            image,
            matrix,
            (TEXTURE_SIZE, TEXTURE_SIZE),
            flags=cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REPLICATE,  # a forehead at the photo's edge still gets pixels
        ),
        dtype=np.uint8,
    )
    full = transform_points(extend_points(face.landmarks), matrix)
    reach = skin_reach(texture, full)
    points = transform_points(extend_points(face.landmarks, reach), matrix)
    return FaceProfile(
        texture=texture,
        points=points,
        triangles=triangulate(points),
        reach=reach,
        embedding=embedding if embedding is not None else face.embedding,
        quality=face.quality,
        notes=notes,
    )


def _position_word(face: Face, width: int) -> str:
    x = face.centre[0] / max(width, 1)
    return "on the left" if x < 0.4 else "on the right" if x > 0.6 else "in the middle"


def choose_selfie_face(faces: list[Face], image_width: int, settings: Settings) -> Face:
    """The one face a selfie is about, or a refusal that says which faces were seen."""
    if not faces:
        raise NoFaceFound()
    by_size = sorted(faces, key=lambda f: f.quality.eye_distance, reverse=True)
    main = by_size[0]
    rivals = [
        f
        for f in by_size[1:]
        if f.quality.eye_distance >= settings.rival_face_ratio * main.quality.eye_distance
    ]
    if rivals:
        where = ", ".join(_position_word(f, image_width) for f in [main, *rivals])
        raise TooManyFaces(
            f"I see {len(rivals) + 1} faces of similar size ({where}). "
            "Crop the photo to just yours and send it again."
        )
    return main


def check_quality(quality: FaceQuality, settings: Settings) -> tuple[str, ...]:
    """Refuse faces that would give a poor swap; return remarks for acceptable flaws."""
    if quality.eye_distance < settings.min_eye_distance:
        raise FaceTooSmall(
            f"Your face is too small in that photo ({quality.eye_distance:.0f} px between the "
            f"eyes, I need {settings.min_eye_distance:.0f}). Take a closer selfie."
        )
    if quality.cropped:
        raise FaceCropped(
            "Part of your face is cut off at the edge of the photo. "
            "Make sure your whole face, chin included, is in the picture."
        )
    if abs(quality.yaw) > settings.max_yaw_degrees:
        raise FaceTurnedAway(
            f"Your head is turned too far (about {abs(quality.yaw):.0f}°). "
            "Look straight at the camera."
        )
    if quality.sharpness < settings.min_sharpness:
        raise FaceTooBlurry()
    notes = []
    if quality.eye_distance < settings.good_eye_distance:
        notes.append("Your face is quite small in that photo; a closer selfie will look sharper.")
    if quality.greyscale:
        notes.append(
            "That's a black-and-white photo: I'll borrow skin colour from each scene. "
            "A colour selfie looks more natural."
        )
    return tuple(notes)


def expression_notes(landmarks: Points, yaw: float) -> tuple[str, ...]:
    """Remarks on what a selfie's expression and pose will do in clips.

    The clip keeps its own eyes and mouth, but a strong expression's creases (a grimace,
    a squint, a wide-eyed stare) and a turned head's proportions come from the selfie into
    every frame: worth a word, not a refusal.
    """
    unit = max(float(eye_distance(landmarks)), 1.0)
    mouth = np.mean([np.linalg.norm(landmarks[a] - landmarks[b]) for a, b in _LIP_PAIRS]) / unit

    def eye_opening(eye: Points) -> float:
        height = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
        return float(height / (2 * max(float(np.linalg.norm(eye[0] - eye[3])), 1e-3)))

    eyes = (eye_opening(landmarks[36:42]) + eye_opening(landmarks[42:48])) / 2
    notes = []
    if mouth > _MOUTH_WIDE_OPEN:
        notes.append(
            "Your mouth is wide open in that selfie; its creases will show in every frame. "
            "A relaxed, closed-mouth selfie looks most natural (the clip does the talking)."
        )
    if eyes < _EYES_SQUINT:
        notes.append("Your eyes look half-closed; a relaxed, open-eyed selfie works best.")
    elif eyes > _EYES_STARE:
        notes.append("Your eyes are opened very wide; a relaxed expression works best.")
    if abs(yaw) > _YAW_NOTE:
        notes.append(
            f"Your head is turned a little (about {abs(yaw):.0f}°); clips where the face "
            "turns the other way may look stretched. A straight-on selfie fits every clip."
        )
    return tuple(notes)


_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
_MOUTH_WIDE_OPEN = 0.25  # inner-lip gap per eye distance; toothy smiles are 0.1-0.16
_EYES_SQUINT = 0.15  # eye aspect ratio; relaxed open eyes are 0.22-0.34
_EYES_STARE = 0.42
_YAW_NOTE = 20.0  # degrees


class IdentityEmbedder(Protocol):
    """Computes an engine's own identity vector (ArcFace for the neural engine)."""

    def embed(self, image: RGBImage, landmarks: Points) -> NDArray[np.float32]: ...


def enroll(
    image: RGBImage,
    analyzer: Analyzer,
    settings: Settings,
    *,
    identity: IdentityEmbedder | None = None,
) -> FaceProfile:
    """Turn a selfie into a profile, or raise the :class:`FaceCastError` that says why not.
    ``identity`` adds the neural engine's identity vector."""
    # faces much smaller than the largest are neither the selfie nor a rival to it
    faces = analyzer.detect(image, smallest=settings.rival_face_ratio)
    face = choose_selfie_face(faces, image.shape[1], settings)
    notes = check_quality(face.quality, settings)
    notes += expression_notes(face.landmarks, face.quality.yaw)
    embedding = analyzer.embedding(image, face.landmarks)
    profile = build_profile(image, face, embedding=embedding, notes=notes)
    if identity is None:
        return profile
    # When the analyzer is the identity embedder (the neural engine), its vector is it.
    reuse = cast(object, identity) is analyzer
    arcface = embedding if reuse else identity.embed(image, face.landmarks)
    return replace(profile, arcface=arcface)


__all__ = [
    "TEXTURE_SIZE",
    "FaceProfile",
    "IdentityEmbedder",
    "build_profile",
    "check_quality",
    "choose_selfie_face",
    "enroll",
    "expression_notes",
    "skin_reach",
    "triangulate",
]
