"""The neural engine: ArcFace identity (buffalo_l's w600k_r50) and inswapper_128.

Both run on onnxruntime (CUDA first when present, see :func:`core.engines.models.session`) from
model files the operator provides. Faces are aligned by five points (eye centres, nose tip,
mouth corners) taken from the same 68 landmarks the classic engine uses, so clip packs made
for one engine serve the other. The swapped 128 px face is pasted back through the inverse
alignment with a feathered mask: nothing outside the face crop changes.
"""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np
from numpy.typing import NDArray

from core.engines.base import SwapSequence, faded
from core.engines.models import ModelStore, session
from core.errors import ModelUnavailable
from core.faces.analyzer import Box, Face, describe_faces
from core.faces.landmarks import Points, eye_centres
from core.faces.profile import FaceProfile
from core.media.images import RGBImage

# InsightFace's reference positions of the five points in a 112 px ArcFace crop.
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
Embedding512 = NDArray[np.float32]


def five_points(landmarks: Points) -> Points:
    """Eye centres, nose tip and mouth corners from the 68-point layout, in ArcFace order."""
    left, right = eye_centres(landmarks)
    return np.array([left, right, landmarks[30], landmarks[48], landmarks[54]], dtype=np.float32)


def alignment(landmarks: Points, size: int) -> NDArray[np.float64]:
    """The similarity that puts the face's five points where ArcFace expects them."""
    if size % 112 == 0:
        template = ARCFACE_112 * (size / 112.0)
    else:  # 128-based crops (inswapper) keep the 112 layout with an 8 px margin
        template = ARCFACE_112 * (size / 128.0) + np.array([8.0 * size / 128.0, 0.0])
    matrix, _ = cv2.estimateAffinePartial2D(
        five_points(landmarks), template.astype(np.float32), method=cv2.LMEDS
    )
    if matrix is None:
        raise ModelUnavailable("Could not align that face for the neural engine.")
    return np.asarray(matrix, dtype=np.float64)


def _blob(crop: RGBImage, mean: float, std: float) -> NDArray[np.float32]:
    planar = (crop.astype(np.float32) - mean) / std
    return np.ascontiguousarray(planar.transpose(2, 0, 1)[None])


class ArcFaceEmbedder:
    """512-D identity vectors from the buffalo_l recognition model."""

    def __init__(self, store: ModelStore) -> None:
        self.spec = store.spec("w600k_r50")
        self.session = session(store.require("w600k_r50"))
        self.input = self.session.get_inputs()[0].name

    def embed(self, image: RGBImage, landmarks: Points) -> Embedding512:
        size = self.spec.input_size
        crop = cv2.warpAffine(image, alignment(landmarks, size), (size, size))
        blob = _blob(np.asarray(crop, np.uint8), self.spec.mean, self.spec.std)
        vector = np.asarray(self.session.run(None, {self.input: blob})[0][0], np.float32)
        return vector / max(float(np.linalg.norm(vector)), 1e-6)


class InSwapper:
    """inswapper_128 behind the :class:`core.engines.base.Swapper` interface."""

    name: ClassVar[str] = "insightface"

    def __init__(self, store: ModelStore) -> None:
        import onnx
        from onnx import numpy_helper

        path = store.require("inswapper_128")
        self.spec = store.spec("inswapper_128")
        self.session = session(path)
        inputs = {i.name: i for i in self.session.get_inputs()}
        names = list(inputs)
        self.target_input = "target" if "target" in names else names[0]
        self.source_input = "source" if "source" in names else names[1]
        # A symbolic batch dimension lets a whole run of clip frames go through at once.
        batch = inputs[self.target_input].shape[0]
        self.batch = 8 if not isinstance(batch, int) else max(1, batch)
        # The model maps an ArcFace identity into its latent space with a matrix it keeps
        # as its last initialiser.
        graph = onnx.load(str(path), load_external_data=False).graph
        self.emap = np.asarray(numpy_helper.to_array(graph.initializer[-1]), np.float32)

    def latent(self, identity: Embedding512) -> NDArray[np.float32]:
        code = identity.reshape(1, -1) @ self.emap
        return np.asarray(code / max(float(np.linalg.norm(code)), 1e-6), np.float32)

    def swap(
        self,
        profile: FaceProfile,
        frame: RGBImage,
        target: Points,
        *,
        sequence: SwapSequence | None = None,
    ) -> RGBImage:
        swapped = self.swap_batch(profile, [frame], [target])[0]
        return faded(swapped, frame, 1.0 if sequence is None else float(sequence.fade))

    def swap_batch(
        self, profile: FaceProfile, frames: list[RGBImage], targets: list[Points]
    ) -> list[RGBImage]:
        """Swap several frames; as many as the model takes go through in one run."""
        if profile.arcface is None:
            raise ModelUnavailable(
                "That face was saved without the neural engine: send your selfie again."
            )
        size = self.spec.input_size
        latent = self.latent(profile.arcface)
        matrices = [alignment(target, size) for target in targets]
        blobs = [
            _blob(
                np.asarray(
                    cv2.warpAffine(frame, m, (size, size), borderMode=cv2.BORDER_REPLICATE),
                    np.uint8,
                ),
                self.spec.mean,
                self.spec.std,
            )
            for frame, m in zip(frames, matrices, strict=True)
        ]
        faces: list[RGBImage] = []
        for start in range(0, len(blobs), self.batch):
            chunk = np.concatenate(blobs[start : start + self.batch])
            outputs = self.session.run(None, {self.target_input: chunk, self.source_input: latent})[
                0
            ]
            for output in outputs:
                faces.append(np.clip(output.transpose(1, 2, 0) * 255.0, 0, 255).astype(np.uint8))
        return [
            paste_back(frame, face, m)
            for frame, face, m in zip(frames, faces, matrices, strict=True)
        ]


def paste_back(frame: RGBImage, face: RGBImage, matrix: NDArray[np.float64]) -> RGBImage:
    """Blend an aligned face crop back into the frame through the inverse alignment, with a
    feathered edge; pixels outside the crop's footprint are left exactly as they were."""
    height, width = frame.shape[:2]
    size = face.shape[0]
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
    mapped = corners @ inverse.T
    x0, y0 = np.floor(mapped.min(axis=0)).astype(int)
    x1, y1 = np.ceil(mapped.max(axis=0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    result = frame.copy()
    if x1 <= x0 or y1 <= y0:
        return result
    shifted = inverse.copy()
    shifted[:, 2] -= (x0, y0)
    box = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(face, shifted, box, flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.full((size, size), 255, np.uint8), shifted, box)
    scale = float(np.sqrt(abs(np.linalg.det(inverse[:, :2]))))
    edge = max(1, round(size * scale * 0.06))
    # Erode by twice what the blur spreads (3 sigma = 1.5 edge): the feather stays inside.
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=2 * edge)
    alpha = cv2.GaussianBlur(mask, (0, 0), edge / 2).astype(np.float32)[:, :, None] / 255
    region = result[y0:y1, x0:x1].astype(np.float32)
    blended = warped.astype(np.float32) * alpha + region * (1 - alpha)
    result[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return result


_STRIDES = (8, 16, 32)
_ANCHORS = 2  # SCRFD places two anchors on every cell


class InsightFaceAnalyzer:
    """Faces found by buffalo_l's SCRFD detector (det_10g), 68 landmarks from its 1k3d68
    model (the same iBUG layout as dlib's, so everything downstream is shared) and ArcFace
    identity, all on onnxruntime."""

    name = "insightface"

    def __init__(self, store: ModelStore, *, threshold: float = 0.5, overlap: float = 0.4):
        self.detector_spec = store.spec("det_10g")
        self.detector = session(store.require("det_10g"))
        self.detector_input = self.detector.get_inputs()[0].name
        self.marker_spec = store.spec("1k3d68")
        self.marker = session(store.require("1k3d68"))
        self.marker_input = self.marker.get_inputs()[0].name
        self.identity = ArcFaceEmbedder(store)
        self.threshold = threshold
        self.overlap = overlap

    def detect_boxes(
        self,
        image: RGBImage,
        *,
        upsample: bool | None = None,
        verify: bool = True,
        unsure: bool = False,
    ) -> list[tuple[Box, float]]:
        """SCRFD boxes and scores (``upsample``, ``verify`` and ``unsure`` are dlib's;
        ignored)."""
        del upsample, verify, unsure
        size = self.detector_spec.input_size
        height, width = image.shape[:2]
        scale = size / max(height, width)
        resized = cv2.resize(image, (round(width * scale), round(height * scale)))
        canvas = np.zeros((size, size, 3), np.uint8)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        blob = _blob(canvas, self.detector_spec.mean, self.detector_spec.std)
        outputs = self.detector.run(None, {self.detector_input: blob})
        boxes, scores = [], []
        for level, stride in enumerate(_STRIDES):
            score = np.asarray(outputs[level]).reshape(-1)
            distance = np.asarray(outputs[level + len(_STRIDES)]).reshape(-1, 4) * stride
            cells = size // stride
            ys, xs = np.mgrid[0:cells, 0:cells]
            centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
            centres = np.repeat(centres, _ANCHORS, axis=0)
            keep = score >= self.threshold
            found = np.concatenate(
                [centres[keep] - distance[keep, :2], centres[keep] + distance[keep, 2:]], axis=1
            )
            boxes.append(found / scale)
            scores.append(score[keep])
        all_boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
        all_scores = np.concatenate(scores) if scores else np.zeros(0)
        if not len(all_scores):
            return []
        rects = [
            [float(x0), float(y0), float(x1 - x0), float(y1 - y0)] for x0, y0, x1, y1 in all_boxes
        ]
        chosen = cv2.dnn.NMSBoxes(rects, all_scores.tolist(), self.threshold, self.overlap)
        result = []
        for index in np.asarray(chosen).reshape(-1):
            x0, y0, x1, y1 = all_boxes[index]
            box = (round(float(x0)), round(float(y0)), round(float(x1)), round(float(y1)))
            result.append((box, float(all_scores[index])))
        return result

    def landmarks(self, image: RGBImage, box: Box) -> Points:
        """68 points from 1k3d68 on a square crop 1.5 times the box, as InsightFace does."""
        size = self.marker_spec.input_size
        x0, y0, x1, y1 = box
        scale = size / (max(x1 - x0, y1 - y0) * 1.5)
        centre = ((x0 + x1) / 2.0, (y0 + y1) / 2.0)
        matrix = np.array(
            [[scale, 0.0, size / 2 - centre[0] * scale], [0.0, scale, size / 2 - centre[1] * scale]]
        )
        crop = cv2.warpAffine(image, matrix, (size, size))
        blob = _blob(np.asarray(crop, np.uint8), self.marker_spec.mean, self.marker_spec.std)
        prediction = np.asarray(self.marker.run(None, {self.marker_input: blob})[0][0])
        points = prediction.reshape(-1, 3)[-68:, :2]
        points = (points + 1.0) * (size // 2)  # from [-1, 1] to crop pixels
        inverse = cv2.invertAffineTransform(matrix)
        return np.asarray(np.hstack([points, np.ones((68, 1))]) @ inverse.T, dtype=np.float32)

    def detect(self, image: RGBImage, *, embed: bool = False, smallest: float = 0.0) -> list[Face]:
        # (SCRFD looks at one 640 px copy whatever the faces' size: ``smallest`` saves nothing)
        return describe_faces(self, image, embed=embed)

    def embedding(self, image: RGBImage, landmarks: Points) -> Embedding512:
        return self.identity.embed(image, landmarks)

    embed = embedding  # it is its own identity embedder (see core.engines.registry)


__all__ = [
    "ARCFACE_112",
    "ArcFaceEmbedder",
    "InSwapper",
    "InsightFaceAnalyzer",
    "alignment",
    "five_points",
    "paste_back",
]
