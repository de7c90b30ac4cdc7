"""Renders of a clip with sound: an MP4 carries it in sync with the picture, a GIF is silent,
and memes made from the clip (or with a sound of their own) sound too."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.config import Settings
from core.engines.classic import ClassicSwapper
from core.errors import ClipNotFound
from core.faces.profile import FaceProfile
from core.media.audio import read_sound, write_sound
from core.media.video import probe_video
from core.packs.library import MANIFEST, ClipLibrary
from core.render.memes import MemeLibrary, load_template, render_meme_to_file
from core.render.tasks import clip_to_file

from ...conftest import CLIP_TONE_AT, REPO, TONE_AT, audio_of, flash_at


@pytest.fixture
def settings(tmp_path: Path, sound_clip_folder: Path) -> Settings:
    """An installation whose operator added the clip ``tone`` (with sound)."""
    settings = Settings(data_dir=tmp_path / "data", bundled_clips_dir=REPO / "clips")
    shutil.copytree(sound_clip_folder, settings.resolved_clips_dir / "tone")
    return settings


def _meme(settings: Settings, template_id: str, body: str) -> None:
    folder = settings.resolved_clips_dir / template_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).write_text(
        f'id = "{template_id}"\nkind = "meme"\ntitle = "Test"\n{body}\n'
        '[licence]\nname = "CC0-1.0"\nsource = "tests"\n'
    )


def test_an_mp4_render_carries_the_sound_in_sync(
    tmp_path: Path, settings: Settings, selfie_profile: FaceProfile
) -> None:
    clip = ClipLibrary(settings).get("tone")
    made = clip_to_file(selfie_profile, clip, ClassicSwapper(), tmp_path / "me.mp4", settings)
    assert made.has_audio
    heard = audio_of(made.path)
    assert heard is not None
    onset, duration = heard
    assert duration == pytest.approx(probe_video(made.path).duration, abs=0.03)
    assert duration == pytest.approx(made.frames / made.fps, abs=0.03)
    # The tone starts with the clip's start as the source had it, and with the picture's
    # white bar: sound and picture agree within half a frame.
    assert onset == pytest.approx(CLIP_TONE_AT, abs=0.01)
    assert flash_at(made.path) == pytest.approx(onset, abs=0.5 / made.fps)


def test_a_gif_render_is_silent(
    tmp_path: Path, settings: Settings, selfie_profile: FaceProfile
) -> None:
    clip = ClipLibrary(settings).get("tone")
    made = clip_to_file(selfie_profile, clip, ClassicSwapper(), tmp_path / "me.gif", settings)
    assert not made.has_audio
    assert made.path.read_bytes()[:6] == b"GIF89a"
    assert audio_of(made.path) is None


def test_a_meme_of_the_clip_has_its_sound_at_the_meme_frame_rate(
    tmp_path: Path, settings: Settings, selfie_profile: FaceProfile
) -> None:
    _meme(settings, "tone-meme", 'clip = "tone"\nfps = 6\ntop = "Wait for it"')
    template = MemeLibrary(settings).get("tone-meme")
    swapper = ClassicSwapper()
    made = render_meme_to_file(selfie_profile, template, settings, swapper, tmp_path / "m.mp4")
    assert made.fps == 6  # every other frame of the 12 fps clip
    heard = audio_of(made.path)
    assert heard is not None
    assert heard[0] == pytest.approx(CLIP_TONE_AT, abs=0.01)
    assert heard[1] == pytest.approx(made.frames / made.fps, abs=0.03)
    gif = render_meme_to_file(selfie_profile, template, settings, swapper, tmp_path / "m.gif")
    assert audio_of(gif.path) is None


def test_an_effect_meme_can_carry_its_own_sound(
    tmp_path: Path, settings: Settings, selfie_profile: FaceProfile, sound_source: Path
) -> None:
    _meme(settings, "loud-spin", 'effect = "spin"\nduration = 1.5\nsound = "boom.m4a"')
    sound = read_sound(sound_source, start=TONE_AT - 0.25)  # the tone from 0.25 s
    assert sound is not None
    write_sound(sound, settings.resolved_clips_dir / "loud-spin" / "boom.m4a")
    template = MemeLibrary(settings).get("loud-spin")
    made = render_meme_to_file(
        selfie_profile, template, settings, ClassicSwapper(), tmp_path / "spin.mp4"
    )
    heard = audio_of(made.path)
    assert heard is not None
    assert heard[0] == pytest.approx(0.25, abs=0.01)
    assert heard[1] == pytest.approx(1.5, abs=0.03)  # 1.25 s of sound, padded to 1.5 s
    # Without a sound, an effect meme is silent.
    silent = render_meme_to_file(
        selfie_profile,
        MemeLibrary(settings).get("spin"),
        settings,
        ClassicSwapper(),
        tmp_path / "quiet.mp4",
    )
    assert not silent.has_audio


def test_a_sound_outside_the_template_folder_is_refused(settings: Settings) -> None:
    _meme(settings, "sneaky", 'effect = "spin"\nsound = "../tone/audio.m4a"')
    assert "sneaky" not in [t.id for t in MemeLibrary(settings).all()]  # skipped, logged
    with pytest.raises(ClipNotFound, match="sound"):
        load_template(settings.resolved_clips_dir / "sneaky")
