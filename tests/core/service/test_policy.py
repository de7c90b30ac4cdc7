"""Protected identities: a threshold per engine, for that engine's identity vectors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import Settings, load_settings
from core.faces.analyzer import DlibAnalyzer, Embedding
from core.media.images import RGBImage
from core.service.policy import PROTECTED_THRESHOLDS, ProtectedFaces, protected_threshold


def _largest_face_embedding(analyzer: DlibAnalyzer, image: RGBImage) -> Embedding:
    face = max(analyzer.detect(image), key=lambda f: f.quality.eye_distance)
    return analyzer.embedding(image, face.landmarks)


def _another_photo_of(image: RGBImage) -> RGBImage:
    """The same person as a different picture: mirrored, smaller, recompressed."""
    picture = Image.fromarray(image).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    picture = picture.resize((picture.width * 4 // 5, picture.height * 4 // 5))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=70)
    return np.asarray(Image.open(buffer).convert("RGB"))


def test_classic_threshold_tells_dlib_vectors_apart(
    analyzer: DlibAnalyzer,
    hanks: RGBImage,
    astronaut: RGBImage,
    group_photo: RGBImage,
    tmp_path: Path,
) -> None:
    protected = tmp_path / "protected"
    protected.mkdir()
    Image.fromarray(hanks).save(protected / "hanks.png")
    settings = Settings(data_dir=tmp_path, protected_dir=protected)
    faces = ProtectedFaces.load(settings, analyzer)
    assert faces.threshold == PROTECTED_THRESHOLDS["classic"] == 0.5
    assert faces.matches(_largest_face_embedding(analyzer, _another_photo_of(hanks)))
    others = [_largest_face_embedding(analyzer, astronaut)]
    others += [analyzer.embedding(group_photo, f.landmarks) for f in analyzer.detect(group_photo)]
    assert len(others) >= 5
    assert not any(faces.matches(other) for other in others)
    # ArcFace's threshold on dlib's vectors would refuse every one of these strangers.
    loose = ProtectedFaces(faces.embeddings, PROTECTED_THRESHOLDS["insightface"])
    assert all(loose.matches(other) for other in others)


def _unit_with_cosine(reference: Embedding, cosine: float, seed: int) -> Embedding:
    """A unit vector at exactly ``cosine`` similarity to the unit ``reference``."""
    noise = np.random.default_rng(seed).normal(size=reference.shape)
    noise -= noise.dot(reference) * reference
    noise /= np.linalg.norm(noise)
    vector: Embedding = (cosine * reference + np.sqrt(1 - cosine**2) * noise).astype(np.float32)
    return vector


@pytest.mark.parametrize(
    ("cosine", "same_person"),
    [(0.75, True), (0.55, True), (0.35, False), (0.1, False), (-0.2, False)],
)
def test_insightface_threshold_on_arcface_unit_vectors(cosine: float, same_person: bool) -> None:
    reference = np.random.default_rng(0).normal(size=512)
    reference /= np.linalg.norm(reference)
    faces = ProtectedFaces(
        [reference.astype(np.float32)], protected_threshold(Settings(engine="insightface"))
    )
    assert faces.threshold == 1.0
    assert faces.matches(_unit_with_cosine(reference, cosine, seed=1)) is same_person
    if same_person:  # dlib's 0.5 would have let this known face through
        assert not ProtectedFaces(faces.embeddings, 0.5).matches(
            _unit_with_cosine(reference, cosine, seed=2)
        )


def test_the_threshold_setting_overrides_the_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACECAST_PROTECTED_THRESHOLD", "0.8")
    for engine in ("classic", "insightface"):
        assert protected_threshold(load_settings(engine=engine)) == 0.8
    monkeypatch.delenv("FACECAST_PROTECTED_THRESHOLD")
    assert protected_threshold(load_settings(engine="insightface")) == 1.0
