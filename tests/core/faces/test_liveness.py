"""The liveness check on real video files: a synthetic 3D head (the astronaut's face on a
turning, blinking mesh) answers challenges; flat pictures, another person and the wrong
order are refused, each with its reason."""

from __future__ import annotations

import math
import pickle
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.config import Settings
from core.faces.analyzer import DlibAnalyzer
from core.faces.liveness import (
    CHALLENGES,
    Challenge,
    LivenessLimits,
    LivenessOrder,
    check_liveness,
    liveness_order,
)
from core.faces.profile import FaceProfile, enroll
from core.media.images import RGBImage
from core.packs.camera import animate_still

from ...conftest import REPO
from .synthetic_head import (
    HeadMesh,
    challenge_motion,
    head_frames,
    head_picture,
    write_challenge,
    write_video,
)

FPS = 15.0


@pytest.fixture(scope="module")
def profile(analyzer: DlibAnalyzer, astronaut: RGBImage) -> FaceProfile:
    return enroll(astronaut, analyzer, Settings())


@pytest.fixture(scope="module")
def mesh(analyzer: DlibAnalyzer, astronaut: RGBImage) -> HeadMesh:
    picture = head_picture(astronaut)
    return HeadMesh(picture, analyzer.detect(picture)[0].landmarks)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("liveness")


@pytest.fixture(scope="module")
def answer(mesh: HeadMesh, videos: Path) -> Callable[[Challenge], Path]:
    """The synthetic head's video answering a challenge (made once per module)."""
    made: dict[Challenge, Path] = {}

    def video(challenge: Challenge) -> Path:
        if challenge not in made:
            made[challenge] = write_challenge(videos / f"{challenge}.mp4", mesh, challenge, fps=FPS)
        return made[challenge]

    return video


@pytest.mark.parametrize("challenge", CHALLENGES)
def test_a_live_head_answering_the_challenge_passes(
    challenge: Challenge,
    answer: Callable[[Challenge], Path],
    profile: FaceProfile,
    analyzer: DlibAnalyzer,
) -> None:
    report = check_liveness(answer(challenge), profile, challenge, analyzer)
    assert report.passed, report
    assert report.identity_distance < 0.5
    assert report.depth > LivenessLimits().min_depth
    if challenge == "blink-twice":
        assert report.blinks == 2
    else:
        assert min(report.turn_left, report.turn_right) > 20
    assert report.coverage == 1.0


def test_the_wrong_order_fails(
    answer: Callable[[Challenge], Path], profile: FaceProfile, analyzer: DlibAnalyzer
) -> None:
    report = check_liveness(answer("left-right"), profile, "right-left", analyzer)
    assert not report.passed
    assert "other way first" in report.reason
    # Nothing else was wrong with it: the same person, and a 3D head.
    assert report.identity_distance < 0.5
    assert report.depth > LivenessLimits().min_depth


def test_a_turn_does_not_answer_blink_twice_nor_blinks_a_turn(
    answer: Callable[[Challenge], Path], profile: FaceProfile, analyzer: DlibAnalyzer
) -> None:
    report = check_liveness(answer("right-left"), profile, "blink-twice", analyzer)
    assert not report.passed
    assert "no blink" in report.reason
    report = check_liveness(answer("blink-twice"), profile, "left-right", analyzer)
    assert not report.passed
    assert "only one way" in report.reason


# The clips FaceCast ships are exactly this: the astronaut photo under camera moves.
BUNDLED_MOVES = ["astronaut-pan", "astronaut-push-in", "astronaut-shake"]


@pytest.mark.parametrize("move", [*BUNDLED_MOVES, "sway"])
def test_a_flat_picture_moved_in_front_of_the_camera_fails(
    move: str,
    astronaut: RGBImage,
    profile: FaceProfile,
    analyzer: DlibAnalyzer,
    videos: Path,
) -> None:
    if move in BUNDLED_MOVES:
        video = REPO / "clips" / move / "clip.mp4"
    else:  # a tilt back and forth, close up, as a hand holds a print
        frames, _ = animate_still(head_picture(astronaut), "sway", seconds=2.6, fps=FPS)
        video = write_video(videos / "flat-sway.mp4", frames, FPS)
    report = check_liveness(video, profile, "left-right", analyzer)
    assert not report.passed
    assert report.identity_distance < 0.5  # it is her face, just not her live head
    assert "turn" in report.reason
    # Both lines of defence hold on their own: no yaw, and no depth.
    assert max(report.turn_left, report.turn_right) < 5
    assert report.depth < LivenessLimits().min_depth / 2


def _swung(picture: RGBImage, degrees: float = 35.0) -> Iterator[RGBImage]:
    """A printed photo swung about its vertical axis, left then right, in perspective."""
    height, width = picture.shape[:2]
    corners = np.float32([(0, 0), (width, 0), (width, height), (0, height)])
    focal = 1.2 * width
    for t in np.linspace(0.0, 1.0, round(2.6 * FPS)):
        angle = math.radians(degrees * math.sin(2 * math.pi * t))
        moved = []
        for x, y in corners:
            across = (x - width / 2) * math.cos(angle)
            scale = focal / (focal + (x - width / 2) * math.sin(angle))
            moved.append([width / 2 + across * scale, height / 2 + (y - height / 2) * scale])
        matrix = cv2.getPerspectiveTransform(corners, np.float32(moved))
        yield np.asarray(
            cv2.warpPerspective(picture, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE),
            np.uint8,
        )


def test_a_photo_swung_in_perspective_is_caught_by_depth_alone(
    astronaut: RGBImage, profile: FaceProfile, analyzer: DlibAnalyzer, videos: Path
) -> None:
    video = write_video(videos / "swung.mp4", _swung(head_picture(astronaut)), FPS)
    report = check_liveness(video, profile, "left-right", analyzer)
    assert not report.passed
    # Perspective fakes a few degrees of yaw; with a lax turn threshold that would do...
    lax = LivenessLimits(min_turn_degrees=0.6 * min(report.turn_left, report.turn_right))
    report = check_liveness(video, profile, "left-right", analyzer, lax)
    assert not report.passed
    assert "picture" in report.reason  # ...but a plane stays a plane
    assert report.depth < LivenessLimits().min_depth


def test_the_right_motion_by_another_person_fails(
    hanks: RGBImage, profile: FaceProfile, analyzer: DlibAnalyzer, videos: Path
) -> None:
    picture = np.ascontiguousarray(cv2.resize(hanks, (336, 336), interpolation=cv2.INTER_CUBIC))
    other = HeadMesh(picture, analyzer.detect(picture)[0].landmarks)
    video = write_challenge(videos / "someone-else.mp4", other, "left-right", fps=FPS)
    report = check_liveness(video, profile, "left-right", analyzer)
    assert not report.passed
    assert "doesn't match" in report.reason
    assert report.identity_distance > 0.6


def test_a_sideways_phone_video_is_turned_upright(
    mesh: HeadMesh, profile: FaceProfile, analyzer: DlibAnalyzer, videos: Path
) -> None:
    yaw, closed = challenge_motion("left-right", fps=FPS, seconds=2.6)
    sideways = (np.rot90(frame, -1) for frame in head_frames(mesh, yaw, closed))
    video = write_video(videos / "portrait.mp4", sideways, FPS)
    report = check_liveness(video, profile, "left-right", analyzer)
    assert report.passed, report


def test_the_worker_task_checks_a_webm_from_bytes(
    mesh: HeadMesh,
    profile: FaceProfile,
    videos: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    video = write_challenge(videos / "answer.webm", mesh, "right-left", fps=FPS)
    order = LivenessOrder(video.read_bytes(), ".webm", profile.to_bytes(), "right-left")
    # a temp folder of its own: other tests' checks run beside it under xdist
    own = tmp_path / "temp"
    own.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(own))
    report = liveness_order(pickle.loads(pickle.dumps(order)))  # as a worker receives it
    assert report.passed, report
    assert not list(own.glob("facecast-liveness-*"))  # not kept


def test_not_a_video_and_too_long_are_friendly_errors(
    mesh: HeadMesh, profile: FaceProfile, analyzer: DlibAnalyzer, videos: Path
) -> None:
    from core.errors import BadMedia

    junk = videos / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(BadMedia, match="isn't a video"):
        check_liveness(junk, profile, "left-right", analyzer)
    still = write_video(videos / "long.mp4", iter([mesh.image] * 100), 10.0)
    with pytest.raises(BadMedia, match="over 8 seconds long"):
        check_liveness(still, profile, "left-right", analyzer)
