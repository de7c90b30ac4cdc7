from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.faces.analyzer import DlibAnalyzer, identity_distance
from core.media.images import RGBImage


def test_finds_all_six_faces_of_the_group_photo_left_to_right(
    analyzer: DlibAnalyzer, group_photo: RGBImage
) -> None:
    faces = analyzer.detect(group_photo)
    assert len(faces) == 6
    centres = [face.centre[0] for face in faces]
    assert centres == sorted(centres)
    for face in faces:
        x0, y0, x1, y1 = face.bbox
        # The landmarks describe the detected face, not something elsewhere.
        cx, cy = face.landmarks.mean(axis=0)
        assert x0 <= cx <= x1
        assert y0 <= cy <= y1
        assert face.landmarks.shape == (68, 2)


@pytest.mark.parametrize("side", [512, 900, 1024])
def test_one_face_and_no_false_positive_on_the_mission_patch(
    analyzer: DlibAnalyzer, astronaut: RGBImage, side: int
) -> None:
    # HOG scores the mission patch as a weak face at some scales; the CNN check drops it.
    scaled = cv2.resize(astronaut, (side, side), interpolation=cv2.INTER_CUBIC)
    faces = analyzer.detect(scaled, embed=True)
    assert len(faces) == 1
    face = faces[0]
    x0, y0, x1, y1 = (v * 512 / side for v in face.bbox)
    assert 150 < (x0 + x1) / 2 < 300
    assert 80 < (y0 + y1) / 2 < 180
    assert face.embedding is not None
    assert face.embedding.shape == (128,)


def test_no_face_in_a_picture_without_one(analyzer: DlibAnalyzer) -> None:
    from skimage import data

    assert analyzer.detect(np.ascontiguousarray(data.coffee())) == []


def test_small_faces_are_found_by_the_upsampled_pass(
    analyzer: DlibAnalyzer, astronaut: RGBImage
) -> None:
    small = cv2.resize(astronaut, (280, 280), interpolation=cv2.INTER_AREA)
    faces = analyzer.detect(small)
    assert len(faces) == 1
    assert faces[0].quality.eye_distance < 40


def test_embedding_tells_people_apart(
    analyzer: DlibAnalyzer, astronaut: RGBImage, group_photo: RGBImage
) -> None:
    same = analyzer.detect(astronaut, embed=True)[0].embedding
    ok, jpeg = cv2.imencode(
        ".jpg", cv2.resize(astronaut, (400, 400)), [cv2.IMWRITE_JPEG_QUALITY, 70]
    )
    assert ok
    recompressed = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    again = analyzer.detect(recompressed, embed=True)[0].embedding
    others = [f.embedding for f in analyzer.detect(group_photo, embed=True)]
    assert same is not None
    assert again is not None
    assert identity_distance(same, again) < 0.3
    for other in others:
        assert other is not None
        assert identity_distance(same, other) > 0.6


def test_quality_tells_sharp_from_blurry_and_colour_from_grey(
    analyzer: DlibAnalyzer, astronaut: RGBImage, hanks: RGBImage
) -> None:
    sharp = analyzer.detect(astronaut)[0].quality
    blurry = analyzer.detect(cv2.GaussianBlur(astronaut, (0, 0), 2.5))[0].quality
    assert blurry.sharpness < sharp.sharpness / 4
    assert not sharp.greyscale
    assert analyzer.detect(hanks)[0].quality.greyscale


def test_yaw_flips_sign_with_the_picture_and_flags_turned_heads(
    analyzer: DlibAnalyzer, group_photo: RGBImage
) -> None:
    faces = analyzer.detect(group_photo)
    mirrored = analyzer.detect(np.ascontiguousarray(group_photo[:, ::-1]))[::-1]
    for face, mirror in zip(faces, mirrored, strict=True):
        # The 68-point fit is not mirror-exact, less so on strongly turned heads.
        assert abs(face.quality.yaw + mirror.quality.yaw) < 5 + 0.25 * abs(face.quality.yaw)
    turned = [n for n, face in enumerate(faces, start=1) if abs(face.quality.yaw) > 40]
    assert turned == [2, 5]  # the two people looking sideways
    assert abs(faces[0].quality.yaw) < 10


def test_cropped_chin_is_noticed(analyzer: DlibAnalyzer, hanks: RGBImage) -> None:
    assert analyzer.detect(hanks)[0].quality.cropped


def test_crops_that_are_views_work_everywhere(
    analyzer: DlibAnalyzer, group_photo: RGBImage
) -> None:
    view = group_photo[180:480, 0:260]  # a slice, not a contiguous copy
    assert not view.flags.c_contiguous
    faces = analyzer.detect(view, embed=True)
    assert len(faces) == 1
    assert faces[0].embedding is not None
    assert analyzer.landmarks(view, faces[0].bbox).shape == (68, 2)


@pytest.mark.parametrize("cover", ["eyes", "mouth"])
def test_a_clear_face_that_hog_cannot_score_is_still_found(
    analyzer: DlibAnalyzer, astronaut: RGBImage, cover: str
) -> None:
    """Dark glasses or a hand over the mouth drop HOG's score below any threshold; the CNN
    pass before "no face" still finds the face, in the right place."""
    points = analyzer.detect(astronaut)[0].landmarks
    covered = astronaut.copy()
    if cover == "eyes":
        y = int(points[36:48, 1].mean())
        covered[y - 10 : y + 10, int(points[17, 0]) - 5 : int(points[26, 0]) + 5] = 15
    else:
        y0, y1 = int(points[30, 1]), int(points[8, 1]) + 5
        covered[y0:y1, int(points[3, 0]) : int(points[13, 0])] = (200, 200, 210)
    centre = points[27:36].mean(axis=0)

    def on_the_face(box: tuple[int, int, int, int]) -> bool:
        return box[0] < centre[0] < box[2] and box[1] < centre[1] < box[3]

    hog_alone = DlibAnalyzer(doubtful=0.0)
    assert not [b for b, _ in hog_alone.detect_boxes(covered, verify=False) if on_the_face(b)]
    faces = analyzer.detect(covered)
    assert len(faces) == 1
    assert on_the_face(faces[0].bbox)


def test_the_saved_detector_loads_fast_and_finds_the_same_faces(
    group_photo: RGBImage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HOG detector is saved in binary form on first use; later processes load that."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = DlibAnalyzer()  # builds the detector and saves it
    saved = list((tmp_path / "facecast").glob("frontal_face_detector-*.svm"))
    assert len(saved) == 1
    started = time.perf_counter()
    second = DlibAnalyzer()  # loads it
    assert time.perf_counter() - started < 5
    assert second.detect_boxes(group_photo) == first.detect_boxes(group_photo)
    saved[0].write_bytes(b"not a detector")  # a damaged cache is rebuilt, not trusted
    third = DlibAnalyzer()
    assert third.detect_boxes(group_photo) == first.detect_boxes(group_photo)
