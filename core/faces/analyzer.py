"""Finding faces: the :class:`Face` record, the :class:`Analyzer` protocol and the default
:class:`DlibAnalyzer`, whose weights ship inside PyPI packages (``dlib-bin`` and
``face-recognition-models``) so it works offline on a fresh machine.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np
from numpy.typing import NDArray

from core.errors import ModelUnavailable
from core.faces.landmarks import Points, eye_distance, roll_degrees, yaw_degrees
from core.media.images import RGBImage

Embedding = NDArray[np.float32]
Box = tuple[int, int, int, int]
"""x0, y0, x1, y1 in image pixels."""
_Scored = tuple[Box, float]  # a face's box and its detector's score


@dataclass(frozen=True, slots=True)
class FaceQuality:
    """What decides whether a face is good enough to learn from."""

    eye_distance: float  # px between the outer eye corners
    sharpness: float  # variance of the Laplacian at a fixed face scale
    yaw: float  # degrees, 0 = facing the camera, sign = which way
    roll: float  # degrees the eye line is tilted
    greyscale: bool  # the face region carries no colour
    cropped: bool  # some landmarks fall outside the picture


@dataclass(frozen=True, slots=True)
class Face:
    bbox: Box
    score: float  # detector confidence; higher is surer
    landmarks: Points  # (68, 2), iBUG 300-W order
    quality: FaceQuality
    embedding: Embedding | None = field(default=None, compare=False)

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.bbox
        return (x0 + x1) / 2.0, (y0 + y1) / 2.0


@runtime_checkable
class Analyzer(Protocol):
    """Detects faces and describes them: 68 landmarks and an identity embedding."""

    name: str

    def detect(self, image: RGBImage, *, embed: bool = False, smallest: float = 0.0) -> list[Face]:
        """All faces, sorted left to right, each with landmarks and quality. With
        ``smallest`` (0..1) the caller cares only for faces at least that share of the
        largest one's size, and the analyzer may skip looking for the rest (a selfie)."""
        ...

    def embedding(self, image: RGBImage, landmarks: Points) -> Embedding:
        """The identity vector of the face at ``landmarks``; same person ⇔ small distance."""
        ...

    def detect_boxes(
        self,
        image: RGBImage,
        *,
        upsample: bool | None = None,
        verify: bool = True,
        unsure: bool = False,
    ) -> list[_Scored]:
        """Face boxes and scores only: the fast path for tracking through a video.
        ``unsure`` adds, unconfirmed, the boxes scored under the threshold but not far
        (for looking for a mark, where a false face costs only a look)."""
        ...

    def landmarks(self, image: RGBImage, box: Box) -> Points:
        """The 68 landmarks of the face in ``box``."""
        ...


class _Locates(Protocol):
    def detect_boxes(self, image: RGBImage) -> list[_Scored]: ...
    def landmarks(self, image: RGBImage, box: Box) -> Points: ...
    def embedding(self, image: RGBImage, landmarks: Points) -> Any: ...


def describe_faces(
    analyzer: _Locates,
    image: RGBImage,
    *,
    embed: bool,
    boxes: list[_Scored] | None = None,
) -> list[Face]:
    """What every analyzer's ``detect`` does with its boxes (found here unless given):
    landmarks, quality and (when asked) the identity vector of each face, sorted left to
    right."""
    faces = []
    for box, score in analyzer.detect_boxes(image) if boxes is None else boxes:
        points = analyzer.landmarks(image, box)
        embedding = analyzer.embedding(image, points) if embed else None
        faces.append(Face(box, score, points, assess(image, points), embedding))
    faces.sort(key=lambda face: face.centre[0])
    return faces


def identity_distance(a: Embedding, b: Embedding) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b.astype(np.float64)))


# The weights that ship inside the face-recognition-models package (see README: licences).
_LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
_DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"
_CNN_DETECTOR = "mmod_human_face_detector.dat"


def _frontal_detector(dlib: Any) -> Any:
    """dlib's HOG face detector. Built from the definition compiled into dlib it takes
    0.3-0.6 s to parse; saved once in binary form to the user's cache folder, later
    processes load it in a millisecond (``facecast render`` pays it on every run)."""
    version = str(getattr(dlib, "__version__", "unknown"))
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facecast"
    saved = cache / f"frontal_face_detector-{version}.svm"
    try:
        return dlib.fhog_object_detector(str(saved))
    except (OSError, RuntimeError):
        pass  # not saved yet (or unreadable): build it, and try to save it for next time
    detector = dlib.get_frontal_face_detector()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        partial = saved.with_suffix(f".{os.getpid()}.tmp")
        detector.save(str(partial))
        partial.replace(saved)
    except (OSError, RuntimeError):
        pass  # a read-only home: no cache, same detector
    return detector


def _bundled_model(filename: str) -> str:
    """Path of a model file inside face-recognition-models, found without importing the
    package (its ``__init__`` needs the deprecated ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            "The default face engine needs the package face-recognition-models; reinstall FaceCast."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / filename
    if not path.is_file():
        raise ModelUnavailable(f"The face model {filename} is missing; reinstall FaceCast.")
    return str(path)


_SHARPNESS_EYE_DISTANCE = 48.0
_CNN_MAX_SIDE = 640  # the whole-picture CNN pass: faces from ~80 px of that
# A first look for large faces only (see DlibAnalyzer.detect's ``smallest``): HOG on a copy
# this size, trusted when every face the caller cares for is at least _COARSE_LEAST pixels
# there (its window is 80 px; a face at the edge of its range may be missed).
_COARSE_SIDE = 640
_COARSE_LEAST = 100
_VERIFY_SIDE = 160


def measure_sharpness(image: RGBImage, landmarks: Points) -> float:
    """Laplacian variance of the inner face resampled to a fixed eye distance, so a big
    blurry face and a small sharp one are told apart whatever their resolution."""
    scale = _SHARPNESS_EYE_DISTANCE / max(eye_distance(landmarks), 1.0)
    inner = landmarks[17:68]
    x0, y0 = np.floor(inner.min(axis=0)).astype(int)
    x1, y1 = np.ceil(inner.max(axis=0)).astype(int)
    height, width = image.shape[:2]
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, width), min(y1, height)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return 0.0
    grey = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
    size = (max(4, round((x1 - x0) * scale)), max(4, round((y1 - y0) * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    grey = cv2.resize(grey, size, interpolation=interpolation)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def is_greyscale(image: RGBImage, landmarks: Points) -> bool:
    """True when the face region has (almost) no chroma: a black-and-white photo."""
    height, width = image.shape[:2]
    x0, y0 = np.clip(landmarks.min(axis=0).astype(int), 0, [width - 1, height - 1])
    x1, y1 = np.clip(landmarks.max(axis=0).astype(int) + 1, 1, [width, height])
    step = max(1, (y1 - y0) // 200)  # a mean: every pixel of a large face is not needed
    region = image[y0:y1:step, x0:x1:step].astype(np.int16)
    if region.size == 0:
        return False
    spread = np.abs(region - region.mean(axis=2, keepdims=True)).mean()
    return bool(spread < 2.0)


def assess(image: RGBImage, landmarks: Points) -> FaceQuality:
    height, width = image.shape[:2]
    margin = 0.02 * eye_distance(landmarks)
    cropped = bool(
        (landmarks[:, 0] < -margin).any()
        or (landmarks[:, 1] < -margin).any()
        or (landmarks[:, 0] > width - 1 + margin).any()
        or (landmarks[:, 1] > height - 1 + margin).any()
    )
    return FaceQuality(
        eye_distance=eye_distance(landmarks),
        sharpness=measure_sharpness(image, landmarks),
        yaw=yaw_degrees(landmarks),
        roll=roll_degrees(landmarks),
        greyscale=is_greyscale(image, landmarks),
        cropped=cropped,
    )


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _scale_to(image: RGBImage, max_side: int) -> float:
    """The scale that brings ``image`` down to at most ``max_side`` pixels (never up)."""
    return min(1.0, max_side / float(max(image.shape[:2])))


def _shrunk(image: RGBImage, max_side: int) -> tuple[RGBImage, float]:
    """``image`` scaled down to at most ``max_side`` pixels, and the scale used."""
    height, width = image.shape[:2]
    scale = _scale_to(image, max_side)
    if scale == 1.0:
        return image, scale
    size = (round(width * scale), round(height * scale))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8), scale


def _unscaled(rect: Any, scale: float) -> Box:
    """A dlib rectangle found at ``scale``, as a box in the full picture."""
    return (
        round(rect.left() / scale),
        round(rect.top() / scale),
        round(rect.right() / scale),
        round(rect.bottom() / scale),
    )


class DlibAnalyzer:
    """HOG detector, 68-point shape predictor and the 128-D ResNet face descriptor.

    Detection runs on a copy scaled to at most ``detect_max_side`` pixels; images whose long
    side is at most ``upsample_below`` get a second, upsampled pass that finds faces down to
    ~40 px. HOG alone mistakes badges and patterns for faces at low scores (the astronaut's
    mission patch scores 0.1 while a real face turned sideways scores 0.2), so candidates
    scoring under ``verify_below`` are confirmed by dlib's CNN face detector on a small crop
    (~80 ms each), and kept only if it agrees.
    """

    name = "dlib"

    def __init__(
        self,
        *,
        threshold: float = 0.0,
        doubtful: float = -0.6,
        verify_below: float = 0.5,
        detect_max_side: int = 1280,
        upsample_below: int = 800,
        max_verifications: int = 12,
    ) -> None:
        try:
            import dlib
        except ImportError as exc:  # pragma: no cover - a hard dependency
            raise ModelUnavailable(
                "The default face engine needs the package dlib-bin; reinstall FaceCast."
            ) from exc
        self._dlib: Any = dlib
        self._detector = _frontal_detector(dlib)
        self._predictor = dlib.shape_predictor(_bundled_model(_LANDMARKS_68))
        self._encoder = dlib.face_recognition_model_v1(_bundled_model(_DESCRIPTOR))
        self._verifier = dlib.cnn_face_detection_model_v1(_bundled_model(_CNN_DETECTOR))
        self.threshold = threshold
        self.doubtful = doubtful
        self.verify_below = verify_below
        self.max_verifications = max_verifications
        self.detect_max_side = detect_max_side
        self.upsample_below = upsample_below
        # dlib's objects are not documented as thread-safe; one analyzer may serve threads.
        self._lock = threading.Lock()

    def detect_boxes(
        self,
        image: RGBImage,
        *,
        upsample: bool | None = None,
        verify: bool = True,
        unsure: bool = False,
    ) -> list[_Scored]:
        """Boxes and HOG scores. ``upsample`` None means: only for small pictures;
        ``verify=False`` skips the CNN check (for tracking a face already known);
        ``unsure`` adds the doubtful boxes (down to ``doubtful``) unconfirmed, after the
        others."""
        image = np.ascontiguousarray(image)  # dlib refuses views such as crops
        small, scale = _shrunk(image, self.detect_max_side)
        if upsample is None:
            upsample = max(small.shape[:2]) <= self.upsample_below
        passes = [0, 1] if upsample else [0]
        found, below, refused, verified = self._hog(
            image, small, scale, passes, verify=verify, unsure=unsure
        )
        if verify and not found:
            # Nothing sure: the doubtful boxes (best first), confirmed by the CNN, then
            # the CNN over the whole picture. A clear selfie never pays for this.
            for box, score in sorted(below, key=lambda b: -b[1]):
                if any(box_iou(box, kept) >= 0.3 for kept, _ in found):
                    continue
                verified += 1
                if verified <= self.max_verifications and self._confirm(image, box):
                    found.append((box, score))
        if verify and not found:
            found = self._cnn_boxes(image)
        if unsure:
            for box, score in sorted([*below, *refused], key=lambda b: -b[1]):
                if not any(box_iou(box, kept) >= 0.3 for kept, _ in found):
                    found.append((box, score))
        return found

    def _hog(
        self,
        image: RGBImage,
        small: RGBImage,
        scale: float,
        passes: list[int],
        *,
        verify: bool,
        unsure: bool,
    ) -> tuple[list[_Scored], list[_Scored], list[_Scored], int]:
        """HOG on ``small`` (``image`` at ``scale``), once per upsampling in ``passes``: the
        sure boxes (scored over the threshold, doubtful ones confirmed by the CNN), the
        doubtful ones below the threshold, those the CNN refused, and how many it was asked
        about."""
        found: list[_Scored] = []
        below: list[_Scored] = []  # doubtful scores, looked at only if need be
        refused: list[_Scored] = []
        verified = 0
        for pass_upsample in passes:
            with self._lock:
                # When the CNN can confirm, keep doubtful HOG scores too: a clear frontal
                # face behind round glasses or with a pout can score below zero.
                floor = min(self.threshold, self.doubtful) if verify or unsure else self.threshold
                rects, scores, _ = self._detector.run(small, pass_upsample, floor)
            for rect, score in sorted(zip(rects, scores, strict=True), key=lambda r: -r[1]):
                box = _unscaled(rect, scale)
                if score < self.threshold:
                    below.append((box, float(score)))
                    continue
                if any(box_iou(box, kept) >= 0.3 for kept, _ in [*found, *refused]):
                    continue  # already kept, or already refused by the CNN in another pass
                if verify and score < self.verify_below:
                    verified += 1
                    if verified > self.max_verifications or not self._confirm(image, box):
                        refused.append((box, float(score)))
                        continue
                found.append((box, float(score)))
        return found, below, refused, verified

    def _cnn_boxes(self, image: RGBImage) -> list[_Scored]:
        """The CNN detector over the whole picture (scaled down): the last try before
        saying "no face", for faces HOG cannot score at all. Its boxes count as doubtful."""
        small, scale = _shrunk(image, _CNN_MAX_SIDE)
        with self._lock:
            detections = self._verifier(np.ascontiguousarray(small), 0)
        boxes: list[_Scored] = []
        for detection in sorted(detections, key=lambda d: -d.confidence):
            box = _unscaled(detection.rect, scale)
            if any(box_iou(box, kept) >= 0.3 for kept, _ in boxes):
                continue
            boxes.append((box, 0.0))
        return boxes

    def _confirm(self, image: RGBImage, box: Box) -> bool:
        """Ask the CNN detector whether a doubtful HOG box really holds a face."""
        x0, y0, x1, y1 = box
        pad = (x1 - x0) // 2
        height, width = image.shape[:2]
        crop = image[
            max(0, y0 - pad) : min(height, y1 + pad), max(0, x0 - pad) : min(width, x1 + pad)
        ]
        if crop.size == 0:
            return False
        # The CNN finds faces from ~80 px: a 160 px crop of a box padded by half fits that.
        scale = _VERIFY_SIDE / max(crop.shape[:2])
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=interpolation)
        with self._lock:
            return len(self._verifier(np.ascontiguousarray(resized), 0)) > 0

    def _shape(self, image: RGBImage, box: Box) -> Any:
        return self._predictor(image, self._dlib.rectangle(*box))

    def landmarks(self, image: RGBImage, box: Box) -> Points:
        image = np.ascontiguousarray(image)
        with self._lock:
            shape = self._shape(image, box)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def detect(self, image: RGBImage, *, embed: bool = False, smallest: float = 0.0) -> list[Face]:
        image = np.ascontiguousarray(image)
        boxes = self._large_faces(image, smallest) if smallest > 0 else None
        return describe_faces(self, image, embed=embed, boxes=boxes)

    def _large_faces(self, image: RGBImage, smallest: float) -> list[_Scored] | None:
        """The sure faces HOG finds on a small copy of a large picture, when the largest is
        big enough there that any face ``smallest`` times its size would have been found
        too; None when the full search is needed. A 12 MP selfie: 25 ms instead of 90."""
        if _scale_to(image, _COARSE_SIDE) >= _scale_to(image, self.detect_max_side) * 0.75:
            return None  # not much smaller than the full search's copy: no saving
        coarse, scale = _shrunk(image, _COARSE_SIDE)
        found = self._hog(image, coarse, scale, [0], verify=True, unsure=False)[0]
        if not found:
            return None
        largest = max(min(x1 - x0, y1 - y0) for (x0, y0, x1, y1), _ in found) * scale
        return found if largest * smallest >= _COARSE_LEAST else None

    def embedding(self, image: RGBImage, landmarks: Points) -> Embedding:
        x0, y0 = landmarks.min(axis=0)
        x1, y1 = landmarks.max(axis=0)
        dlib = self._dlib
        rect = dlib.rectangle(round(x0), round(y0), round(x1), round(y1))
        parts = [dlib.point(round(float(x)), round(float(y))) for x, y in landmarks]
        shape = dlib.full_object_detection(rect, parts)
        with self._lock:
            vector = self._encoder.compute_face_descriptor(np.ascontiguousarray(image), shape)
        return np.asarray(vector, dtype=np.float32)


__all__ = [
    "Analyzer",
    "Box",
    "DlibAnalyzer",
    "Embedding",
    "Face",
    "FaceQuality",
    "assess",
    "box_iou",
    "describe_faces",
    "identity_distance",
    "is_greyscale",
    "measure_sharpness",
]
