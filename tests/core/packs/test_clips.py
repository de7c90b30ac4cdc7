from __future__ import annotations

import logging
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

from core.config import Settings
from core.errors import BadMedia, ClipNotFound, ClipRejected, NoFaceFound
from core.faces.analyzer import DlibAnalyzer, Face
from core.faces.landmarks import eye_distance
from core.media.images import RGBImage
from core.media.video import probe_video, read_video
from core.packs.build import ClipSource, build_clip
from core.packs.camera import animate_still, move_points
from core.packs.library import MANIFEST, ClipLibrary, load_clip

from ...conftest import REPO, make_video

BUNDLED = REPO / "clips"


@pytest.fixture
def clip_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", bundled_clips_dir=BUNDLED)


def _pan(astronaut: RGBImage, face: Face, seconds: float = 2.0) -> tuple[list[RGBImage], list]:
    focus = tuple(float(v) for v in face.landmarks.mean(axis=0))
    frames, matrices = animate_still(
        astronaut, "pan", seconds=seconds, fps=12, size=(400, 300), focus=focus
    )
    return list(frames), matrices


def _leftovers(settings: Settings) -> list[Path]:
    root = settings.resolved_clips_dir
    return sorted(root.iterdir()) if root.exists() else []


def test_build_a_pack_from_a_video_with_known_motion(
    tmp_path: Path,
    analyzer: DlibAnalyzer,
    astronaut: RGBImage,
    astronaut_face: Face,
    clip_settings: Settings,
) -> None:
    frames, matrices = _pan(astronaut, astronaut_face)
    video = make_video(tmp_path / "pan.mp4", frames)
    clip = build_clip(
        ClipSource(video, "test-pan", max_side=320, licence="CC0-1.0", attribution="tests"),
        clip_settings,
        analyzer,
    )
    assert clip.folder == clip_settings.resolved_clips_dir / "test-pan"
    m = clip.manifest
    assert (m.frames, m.width, m.height, m.fps) == (24, 320, 240, 12.0)
    assert m.coverage == 1.0
    assert m.licence.name == "CC0-1.0"
    assert m.jitter_smoothed < m.jitter_raw
    assert m.max_turn is not None
    assert m.max_turn < 15
    assert m.turned == 0.0
    track = clip.load_track()
    assert track.frames == len(list(read_video(clip.media))) == 24
    # The stored track is at the stored media's size: 320/400 of the source video.
    truth = move_points(astronaut_face.landmarks, matrices) * (320 / 400)
    unit = np.array([eye_distance(p) for p in truth])
    error = np.linalg.norm(track.landmarks - truth, axis=2).mean(axis=1) / unit
    assert error.mean() < 0.02


def test_build_a_pack_from_a_still_picture(analyzer: DlibAnalyzer, clip_settings: Settings) -> None:
    clip = build_clip(
        ClipSource(
            BUNDLED / "examples" / "astronaut.jpg",
            "still-shake",
            motion="shake",
            seconds=1.0,
            fps=12,
            max_side=240,
            licence="Public domain",
        ),
        clip_settings,
        analyzer,
    )
    assert (clip.manifest.frames, clip.manifest.width, clip.manifest.height) == (12, 240, 180)
    assert clip.manifest.coverage == 1.0


def test_low_coverage_is_refused_and_nothing_is_written(
    tmp_path: Path,
    analyzer: DlibAnalyzer,
    astronaut: RGBImage,
    astronaut_face: Face,
    clip_settings: Settings,
) -> None:
    frames, _ = _pan(astronaut, astronaut_face, seconds=1.0)  # 12 frames with the face
    blank = [np.full_like(frames[0], 90) for _ in range(18)]  # then 18 without
    video = make_video(tmp_path / "mostly-empty.mp4", frames + blank)
    with pytest.raises(ClipRejected, match=r"only 40% of the frames.*at least 60%"):
        build_clip(ClipSource(video, "empty"), clip_settings, analyzer)
    assert _leftovers(clip_settings) == []


def test_video_without_a_face_is_refused(
    tmp_path: Path, analyzer: DlibAnalyzer, clip_settings: Settings
) -> None:
    from skimage import data

    coffee = np.ascontiguousarray(data.coffee()[:300, :400])
    video = make_video(tmp_path / "coffee.mp4", [np.roll(coffee, i, axis=1) for i in range(12)])
    with pytest.raises(NoFaceFound, match=r"coffee\.mp4"):
        build_clip(ClipSource(video, "coffee"), clip_settings, analyzer)
    assert _leftovers(clip_settings) == []


def test_bad_videos_are_refused(
    tmp_path: Path,
    analyzer: DlibAnalyzer,
    astronaut: RGBImage,
    astronaut_face: Face,
    clip_settings: Settings,
) -> None:
    import av

    text = tmp_path / "notes.mp4"
    text.write_text("hello")
    with pytest.raises(BadMedia, match="isn't a video"):
        build_clip(ClipSource(text, "text"), clip_settings, analyzer)

    empty = tmp_path / "zero.mp4"  # a real MP4 written with no frames at all
    with av.open(str(empty), mode="w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height = 64, 64
        container.start_encoding()
    assert empty.stat().st_size > 0
    with pytest.raises(BadMedia, match=r"no video track|no frames"):
        build_clip(ClipSource(empty, "zero"), clip_settings, analyzer)

    frames, _ = _pan(astronaut, astronaut_face, seconds=1.0)
    video = make_video(tmp_path / "ok.mp4", frames)
    with pytest.raises(ClipRejected, match="past the end"):
        build_clip(ClipSource(video, "late", start=5.0), clip_settings, analyzer)

    small_limit = Settings(data_dir=clip_settings.data_dir, max_video_bytes=1000)
    with pytest.raises(BadMedia, match="too big"):
        build_clip(ClipSource(video, "big"), small_limit, analyzer)
    with pytest.raises(ClipRejected, match="can't be a clip id"):
        build_clip(ClipSource(video, "Bad Id!"), clip_settings, analyzer)
    assert _leftovers(clip_settings) == []


def test_an_existing_id_needs_replace(analyzer: DlibAnalyzer, clip_settings: Settings) -> None:
    source = ClipSource(
        BUNDLED / "examples" / "astronaut.jpg", "twice", motion="pan", seconds=0.5, fps=8
    )
    build_clip(source, clip_settings, analyzer)
    with pytest.raises(ClipRejected, match="exists already"):
        build_clip(source, clip_settings, analyzer)
    again = build_clip(source, clip_settings, analyzer, replace=True)
    assert again.manifest.frames == 4


def test_operator_pack_wins_over_a_bundled_one(clip_settings: Settings) -> None:
    library = ClipLibrary(clip_settings)
    bundled = library.get("astronaut-pan")
    assert bundled.bundled
    copy = clip_settings.resolved_clips_dir / "astronaut-pan"
    shutil.copytree(bundled.folder, copy)
    manifest = (
        (copy / MANIFEST)
        .read_text()
        .replace('title = "Astronaut: pan across"', 'title = "My own pan"')
    )
    (copy / MANIFEST).write_text(manifest)
    mine = ClipLibrary(clip_settings).get("astronaut-pan")
    assert not mine.bundled
    assert mine.title == "My own pan"
    assert len(ClipLibrary(clip_settings).all()) == len(library.all())


def test_unknown_clip_suggests_close_ids(clip_settings: Settings) -> None:
    with pytest.raises(ClipNotFound, match="astronaut-pan"):
        ClipLibrary(clip_settings).get("astronaut-pam")


def test_search_by_words_in_title_and_tags(clip_settings: Settings) -> None:
    found = [clip.id for clip in ClipLibrary(clip_settings).search("astronaut shake")]
    assert found == ["astronaut-shake"]
    assert "drawn-astronaut-sway" in [c.id for c in ClipLibrary(clip_settings).search("cartoon")]


def test_invalid_manifest_names_the_problem(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / MANIFEST).write_text('id = "broken"\ntitle = "x"\n')
    with pytest.raises(ClipNotFound, match=r"licence: Field required"):
        load_clip(folder)


BUNDLED_PACKS = sorted(
    path.parent.name
    for path in BUNDLED.glob(f"*/{MANIFEST}")
    if tomllib.loads(path.read_text()).get("kind", "clip") == "clip"
)


def test_at_least_three_bundled_packs_one_drawn() -> None:
    assert len(BUNDLED_PACKS) >= 3
    assert any("drawn" in name for name in BUNDLED_PACKS)


@pytest.mark.parametrize("clip_id", BUNDLED_PACKS)
def test_bundled_pack_is_consistent_and_licence_clean(clip_id: str) -> None:
    clip = load_clip(BUNDLED / clip_id, bundled=True)
    m = clip.manifest
    assert m.licence.name.strip()
    assert m.licence.name.lower() != "unknown"
    assert m.licence.source.strip()
    assert clip.media.stat().st_size < 2 * 1024 * 1024
    info = probe_video(clip.media)
    frames = list(read_video(clip.media))
    track = clip.load_track()
    assert len(frames) == m.frames == track.frames
    assert (info.width, info.height) == (m.width, m.height)
    assert frames[0].shape == (m.height, m.width, 3)
    assert m.coverage >= 0.6
    assert track.visible.mean() == pytest.approx(m.coverage, abs=1e-3)
    assert max(m.width, m.height) <= 480
    visible = track.landmarks[track.visible]
    assert (visible[..., 0] >= -5).all()
    assert (visible[..., 0] <= m.width + 5).all()


def test_a_broken_operator_pack_is_skipped_and_the_library_rereads_only_changes(
    clip_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    operator = clip_settings.resolved_clips_dir
    operator.mkdir(parents=True)
    mine = operator / "my-pan"
    shutil.copytree(BUNDLED / "astronaut-pan", mine)
    manifest = (mine / MANIFEST).read_text().replace('id = "astronaut-pan"', 'id = "my-pan"')
    (mine / MANIFEST).write_text(manifest)
    broken = operator / "broken"
    broken.mkdir()
    (broken / MANIFEST).write_text('id = "broken"\ntitle = "no licence, no media"\n')
    library = ClipLibrary(clip_settings)
    with caplog.at_level(logging.WARNING, logger="core.packs.library"):
        ids = [clip.id for clip in library.all()]
    assert "my-pan" in ids
    assert "astronaut-pan" in ids
    assert "broken" not in ids
    assert str(broken / MANIFEST) in caplog.text
    # unchanged manifests are not parsed again; a changed one is
    first = library.get("my-pan")
    assert library.get("my-pan") is first
    (mine / MANIFEST).write_text(manifest.replace('title = "', 'title = "Mine: ', 1))
    assert library.get("my-pan").title.startswith("Mine: ")
    shutil.rmtree(mine)
    assert "my-pan" not in [clip.id for clip in library.all()]


def test_a_clip_whose_face_is_turned_away_is_refused(
    samples: Path, analyzer: DlibAnalyzer, clip_settings: Settings
) -> None:
    # The group photo's second face is seen at about 55°: one frontal selfie cannot cover
    # its far side, and a still animated into a clip keeps it turned in every frame.
    source = ClipSource(samples / "t1.jpg", "turned", face=2, seconds=1.0, max_side=480)
    with pytest.raises(ClipRejected, match=r"turned more than 40° from the camera in \d+%"):
        build_clip(source, clip_settings, analyzer)
    assert _leftovers(clip_settings) == []
    # An operator who accepts such clips gets one whose manifest says so.
    lenient = clip_settings.model_copy(update={"max_turned_share": 1.0})
    clip = build_clip(source, lenient, analyzer)
    assert clip.manifest.turned is not None
    assert clip.manifest.turned > 0.5
    assert clip.manifest.max_turn is not None
    assert clip.manifest.max_turn > 45
