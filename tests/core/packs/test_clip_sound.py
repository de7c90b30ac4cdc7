"""`clips add` keeps the source's sound, cut with the clip; `--no-audio` leaves it out."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.config import Settings
from core.errors import ClipNotFound
from core.faces.analyzer import DlibAnalyzer
from core.packs.build import ClipSource, build_clip
from core.packs.library import SOUND, load_clip

from ...conftest import CLIP_START, CLIP_TONE_AT, REPO, audio_of, flash_at


def test_the_pack_keeps_the_sound_cut_and_in_sync(sound_clip_folder: Path) -> None:
    clip = load_clip(sound_clip_folder)
    assert clip.manifest.audio == SOUND
    heard = audio_of(clip.folder / SOUND)
    assert heard is not None
    onset, duration = heard
    # As long as the clip's frames, and the tone where it was in the source, counted from
    # the first frame kept (7/12 s, not --start's 0.55 s).
    assert duration == pytest.approx(clip.manifest.frames / clip.manifest.fps, abs=0.025)
    assert onset == pytest.approx(CLIP_TONE_AT, abs=0.01)
    # The picture agrees: the white bar shows up with the tone.
    assert flash_at(clip.media) == pytest.approx(onset, abs=0.5 / clip.manifest.fps)
    sound = clip.load_sound()
    assert sound is not None
    assert sound.duration == pytest.approx(duration, abs=0.025)
    packed = sum(f.stat().st_size for f in clip.folder.iterdir())
    assert packed < 2_000_000


def test_no_audio_makes_a_silent_pack(
    tmp_path: Path, analyzer: DlibAnalyzer, sound_source: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", bundled_clips_dir=REPO / "clips")
    clip = build_clip(
        ClipSource(sound_source, "quiet", start=CLIP_START, max_side=240, audio=False),
        settings,
        analyzer,
    )
    assert clip.manifest.audio is None
    assert not (clip.folder / SOUND).exists()
    assert clip.load_sound() is None
    assert audio_of(clip.media) is None


def test_a_still_picture_makes_a_silent_pack(analyzer: DlibAnalyzer, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", bundled_clips_dir=REPO / "clips")
    clip = build_clip(
        ClipSource(
            REPO / "clips" / "examples" / "astronaut.jpg",
            "still",
            motion="pan",
            seconds=0.5,
            fps=12,
            max_side=160,
        ),
        settings,
        analyzer,
    )
    assert clip.manifest.audio is None
    assert clip.load_sound() is None


def test_a_damaged_or_missing_sound_is_a_clear_error(
    tmp_path: Path, sound_clip_folder: Path
) -> None:
    folder = tmp_path / "tone"
    shutil.copytree(sound_clip_folder, folder)
    (folder / SOUND).write_bytes(b"not AAC at all" * 10)
    with pytest.raises(ClipNotFound, match=r"The clip 'tone' is damaged \(its sound\)"):
        load_clip(folder).load_sound()
    (folder / SOUND).unlink()
    with pytest.raises(ClipNotFound, match="its sound"):
        load_clip(folder).load_sound()
