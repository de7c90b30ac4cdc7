from __future__ import annotations

import numpy as np
import pytest

from core.faces.analyzer import DlibAnalyzer, Face
from core.faces.landmarks import eye_distance
from core.faces.tracking import TrackSettings, fill_gaps, jitter, smooth, steady, track_video
from core.media.images import RGBImage
from core.packs.camera import animate_still, move_points


def _error(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean landmark error per frame as a share of the true eye distance."""
    unit = np.array([eye_distance(points) for points in truth])
    return np.asarray(np.linalg.norm(found - truth, axis=2).mean(axis=1) / unit)


def _camera_move(astronaut: RGBImage, face: Face, motion: str) -> tuple[list[RGBImage], np.ndarray]:
    """Two seconds of a camera ``motion`` over the astronaut (12 fps, 320x240), and where her
    landmarks truly are in each frame."""
    focus = tuple(float(v) for v in face.landmarks.mean(axis=0))
    frames, matrices = animate_still(
        astronaut,
        motion,
        seconds=2.0,
        fps=12,
        size=(320, 240),
        focus=focus,  # type: ignore[arg-type]
    )
    return list(frames), move_points(face.landmarks, matrices)


@pytest.mark.parametrize("motion", ["push-in", "pan", "shake"])
def test_tracks_known_camera_motion_within_two_percent(
    analyzer: DlibAnalyzer, astronaut: RGBImage, astronaut_face: Face, motion: str
) -> None:
    frames, truth = _camera_move(astronaut, astronaut_face, motion)
    track = track_video(frames, analyzer, 12.0)
    assert track.coverage == 1.0
    errors = _error(track.landmarks, truth)
    assert errors.mean() < 0.02, errors
    assert np.percentile(errors, 90) < 0.03


@pytest.mark.parametrize("motion", ["shake", "pan"])
def test_the_face_moves_with_the_picture_not_with_the_landmark_fits_wobble(
    analyzer: DlibAnalyzer, astronaut: RGBImage, astronaut_face: Face, motion: str
) -> None:
    """A selfie warped onto a track shimmers wherever the track wobbles and the filmed face
    does not: the head's placement follows the motion measured from the picture."""
    frames, truth = _camera_move(astronaut, astronaut_face, motion)
    unit = float(np.mean([eye_distance(points) for points in truth]))

    def wobble(settings: TrackSettings) -> tuple[float, float]:
        track = track_video(frames, analyzer, 12.0, settings)
        off = (track.landmarks - truth).mean(axis=1)  # where the whole face is off, per frame
        steps = np.linalg.norm(np.diff(off, axis=0), axis=1).mean() / unit
        return float(steps), float(_error(track.landmarks, truth).mean())

    fitted_wobble, fitted_error = wobble(TrackSettings(place_drift_seconds=0.0))
    fused_wobble, fused_error = wobble(TrackSettings())
    assert fused_wobble < 0.3 * fitted_wobble, (fused_wobble, fitted_wobble)
    assert fused_wobble < 0.001  # a tenth of a pixel on a 100-px face
    assert fused_error <= fitted_error * 1.05  # and no further from the face on average


def test_smoothing_removes_jitter_and_moves_towards_the_truth(astronaut_face: Face) -> None:
    # Truth: a face drifting right and growing; measurements: truth + 1.5% jitter.
    frames = 48
    base = astronaut_face.landmarks.astype(np.float64)
    centre = base.mean(axis=0)
    truth = np.stack(
        [(base - centre) * (1 + 0.004 * i) + centre + [2.0 * i, 0.5 * i] for i in range(frames)]
    ).astype(np.float32)
    unit = eye_distance(astronaut_face.landmarks)
    rng = np.random.default_rng(3)
    noisy = (truth + rng.normal(0.0, 0.015 * unit, truth.shape)).astype(np.float32)
    visible = np.ones(frames, dtype=bool)
    smoothed = smooth(noisy, visible, 24.0, TrackSettings())
    assert jitter(smoothed, visible) < jitter(noisy, visible) / 2.5
    assert _error(smoothed, truth).mean() < _error(noisy, truth).mean() * 0.7
    # No lag: halfway through a steady move the smoothed face is where the true one is.
    middle = frames // 2
    lag = np.linalg.norm(smoothed[middle].mean(axis=0) - truth[middle].mean(axis=0))
    assert lag < 0.01 * unit


def test_short_gaps_are_filled_long_ones_are_not() -> None:
    landmarks = np.zeros((12, 68, 2), np.float32)
    landmarks[:, :, 0] = np.arange(12, dtype=np.float32)[:, None]
    visible = np.ones(12, dtype=bool)
    visible[[3, 4]] = False  # 2-frame gap
    visible[7:11] = False  # 4-frame gap, longer than max_gap=3
    landmarks[~visible] = 0
    fill_gaps(landmarks, visible, max_gap=3)
    assert visible[3]
    assert visible[4]
    assert landmarks[3, 0, 0] == pytest.approx(3.0)
    assert landmarks[4, 0, 0] == pytest.approx(4.0)
    assert not visible[7:11].any()


def test_a_face_that_leaves_is_not_hallucinated(
    analyzer: DlibAnalyzer, astronaut: RGBImage, astronaut_face: Face
) -> None:
    focus = tuple(float(v) for v in astronaut_face.landmarks.mean(axis=0))
    frames, _ = animate_still(astronaut, "pan", seconds=1.0, fps=12, size=(320, 240), focus=focus)
    shown = list(frames)
    blank = [np.full_like(shown[0], 128) for _ in range(12)]
    track = track_video(shown + blank, analyzer, 12.0)
    assert track.visible[:12].all()
    assert not track.visible[12:].any()


def test_steady_landmarks_follow_a_move_without_lag_and_calm_the_noise(
    astronaut_face: Face,
) -> None:
    """A render's extra smoothing: a head moving steadily is followed exactly (no lag),
    while per-frame noise of a landmark fit is cut down."""
    frames = 60
    base = astronaut_face.landmarks.astype(np.float32)
    shift = np.linspace(0, 90, frames, dtype=np.float32)[:, None, None] * np.array(
        [1.0, 0.4], np.float32
    )
    truth = base[None] + shift
    rng = np.random.default_rng(7)
    noisy = truth + rng.normal(0, 1.0, truth.shape).astype(np.float32)
    visible = np.ones(frames, bool)
    calm = steady(noisy, visible)
    inner = slice(5, frames - 5)  # away from the ends, where padding repeats the edge
    before = np.abs(noisy[inner] - truth[inner]).mean()
    after = np.abs(calm[inner] - truth[inner]).mean()
    assert after < before * 0.6
    assert np.abs(steady(truth, visible)[inner] - truth[inner]).max() < 0.05
