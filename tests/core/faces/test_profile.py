from __future__ import annotations

import cv2
import numpy as np
import pytest

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
from core.faces.analyzer import DlibAnalyzer, identity_distance
from core.faces.profile import TEXTURE_SIZE, FaceProfile, enroll, expression_notes
from core.media.images import RGBImage


def test_selfie_becomes_a_level_profile(
    analyzer: DlibAnalyzer, astronaut: RGBImage, settings: Settings
) -> None:
    profile = enroll(astronaut, analyzer, settings)
    assert profile.texture.shape == (TEXTURE_SIZE, TEXTURE_SIZE, 3)
    left = profile.points[36:42].mean(axis=0)
    right = profile.points[42:48].mean(axis=0)
    assert abs(left[1] - right[1]) < 1.0  # eyes level
    assert profile.points.min() >= 0
    assert profile.points.max() < TEXTURE_SIZE
    assert profile.embedding is not None
    # The texture still is the astronaut: re-detected, same identity.
    again = analyzer.detect(profile.texture, embed=True)
    assert len(again) == 1
    assert again[0].embedding is not None
    assert identity_distance(again[0].embedding, profile.embedding) < 0.35
    assert any("small" in note for note in profile.notes)  # 60 px between the eyes


def test_profile_survives_serialisation(
    analyzer: DlibAnalyzer, astronaut: RGBImage, settings: Settings
) -> None:
    profile = enroll(astronaut, analyzer, settings)
    copy = FaceProfile.from_bytes(profile.to_bytes())
    assert np.array_equal(copy.texture, profile.texture)
    assert np.array_equal(copy.points, profile.points)
    assert np.array_equal(copy.triangles, profile.triangles)
    assert copy.embedding is not None
    assert profile.embedding is not None
    assert np.array_equal(copy.embedding, profile.embedding)
    assert copy.quality == profile.quality
    assert copy.notes == profile.notes


def test_damaged_profile_bytes_are_refused() -> None:
    with pytest.raises(BadMedia, match="damaged"):
        FaceProfile.from_bytes(b"not a profile")


def test_group_photo_is_refused_with_positions(
    analyzer: DlibAnalyzer, group_photo: RGBImage, settings: Settings
) -> None:
    with pytest.raises(TooManyFaces, match=r"I see \d faces of similar size.*on the left"):
        enroll(group_photo, analyzer, settings)


def test_one_big_face_among_tiny_ones_is_accepted(
    analyzer: DlibAnalyzer, astronaut: RGBImage, group_photo: RGBImage, settings: Settings
) -> None:
    # A selfie with a small face in the background is still about the big face.
    canvas = cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    canvas[820:1000, 40:220] = cv2.resize(group_photo[250:420, 40:210], (180, 180))
    assert len(analyzer.detect(canvas)) == 2
    profile = enroll(canvas, analyzer, settings)
    assert profile.quality.eye_distance > 100


def _two_large_faces(astronaut: RGBImage) -> RGBImage:
    """The astronaut's face twice, side by side, each ~640 px across a 2200 px photo."""
    face = cv2.resize(astronaut[50:210, 150:300], (1050, 1120), interpolation=cv2.INTER_CUBIC)
    photo = np.full((1300, 2200, 3), 200, np.uint8)
    photo[90:1210, 20:1070] = face
    photo[90:1210, 1130:2180] = face
    return photo


def test_a_large_photos_large_faces_are_found_by_the_quick_look(
    analyzer: DlibAnalyzer, astronaut: RGBImage, settings: Settings
) -> None:
    # A selfie only needs the faces that could be it or its rivals: a search on a small
    # copy finds these two (for the user the same as the full search) ...
    photo = _two_large_faces(astronaut)
    full, quick = analyzer.detect(photo), analyzer.detect(photo, smallest=0.6)
    assert len(full) == len(quick) == 2
    for a, b in zip(full, quick, strict=True):
        assert np.abs(a.landmarks - b.landmarks).mean() < 0.02 * a.quality.eye_distance
    # ... and the rival is still seen when enrolling.
    with pytest.raises(TooManyFaces, match=r"I see 2 faces of similar size"):
        enroll(photo, analyzer, settings)


def test_a_small_face_in_a_large_photo_is_still_found(
    analyzer: DlibAnalyzer, astronaut: RGBImage, settings: Settings
) -> None:
    # Too small for the quick look (42 px on its copy), found by the full search.
    photo = np.full((3000, 4000, 3), 200, np.uint8)
    photo[700:2236, 1200:2736] = cv2.resize(astronaut, (1536, 1536), interpolation=cv2.INTER_CUBIC)
    assert len(analyzer.detect(photo, smallest=0.6)) == 1
    profile = enroll(photo, analyzer, settings)
    assert 150 < profile.quality.eye_distance < 210


def test_picture_without_a_face_is_refused(analyzer: DlibAnalyzer, settings: Settings) -> None:
    from skimage import data

    with pytest.raises(NoFaceFound, match="couldn't find a face"):
        enroll(np.ascontiguousarray(data.coffee()), analyzer, settings)


def test_tiny_face_is_refused(
    analyzer: DlibAnalyzer, astronaut: RGBImage, settings: Settings
) -> None:
    small = cv2.resize(astronaut, (280, 280), interpolation=cv2.INTER_AREA)
    with pytest.raises(FaceTooSmall, match="too small"):
        enroll(small, analyzer, settings)


def test_blurry_face_is_refused(
    analyzer: DlibAnalyzer, astronaut: RGBImage, settings: Settings
) -> None:
    with pytest.raises(FaceTooBlurry, match="blurry"):
        enroll(cv2.GaussianBlur(astronaut, (0, 0), 2.5), analyzer, settings)


def test_turned_head_is_refused(
    analyzer: DlibAnalyzer, group_photo: RGBImage, settings: Settings
) -> None:
    # The second person from the left looks sideways.
    with pytest.raises(FaceTurnedAway, match="turned too far"):
        enroll(np.ascontiguousarray(group_photo[100:360, 200:440]), analyzer, settings)


def test_chin_cut_off_is_refused(
    analyzer: DlibAnalyzer, hanks: RGBImage, settings: Settings
) -> None:
    with pytest.raises(FaceCropped, match="cut off"):
        enroll(hanks, analyzer, settings)


def test_a_relaxed_selfie_gets_no_expression_note(
    analyzer: DlibAnalyzer, astronaut: RGBImage, settings: Settings
) -> None:
    profile = enroll(astronaut, analyzer, settings)
    assert not [n for n in profile.notes if "mouth" in n or "eyes" in n or "turned" in n]


def test_a_wide_open_mouth_a_squint_and_a_turned_head_are_remarked_on(
    analyzer: DlibAnalyzer, astronaut: RGBImage
) -> None:
    points = analyzer.detect(astronaut)[0].landmarks.copy()
    assert expression_notes(points, 0.0) == ()
    unit = float(np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0)))
    shouting = points.copy()
    shouting[65:68, 1] += unit * 0.4  # the lower inner lip drops: a shout, a grimace
    assert any("mouth is wide open" in n for n in expression_notes(shouting, 0.0))
    squint = points.copy()
    for eye in (slice(36, 42), slice(42, 48)):
        centre = squint[eye, 1].mean()
        squint[eye, 1] = centre + (squint[eye, 1] - centre) * 0.3
    assert any("half-closed" in n for n in expression_notes(squint, 0.0))
    assert any("turned" in n for n in expression_notes(points, 28.0))
