"""Sound: cut on the video's clock, muxed into MP4s in sync, never into GIFs."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from core.media.audio import RATE, Sound, read_sound, write_sound
from core.media.images import RGBImage
from core.media.video import encode, read_timed_video, read_video

from ...conftest import TONE_AT, audio_of, make_video


def test_read_sound_cuts_on_the_clock_of_the_frames(sound_source: Path) -> None:
    # The frame the video shows at 0.55 s and later: the first is 7/12 s (12 fps).
    first, _ = next(iter(read_timed_video(sound_source, start=0.55)))
    assert first == pytest.approx(7 / 12)
    sound = read_sound(sound_source, start=first, end=first + 1.0)
    assert sound is not None
    assert sound.rate == RATE
    assert sound.channels == 1
    assert sound.samples.shape[1] == RATE  # exactly one second
    loud = (abs(sound.samples[0]) > 0.1).argmax() / RATE
    assert loud == pytest.approx(TONE_AT - first, abs=0.005)
    # Past the end of the track: silence, as long as asked for.
    tail = read_sound(sound_source, start=1.5, end=3.0)
    assert tail is not None
    assert tail.duration == pytest.approx(1.5)
    assert abs(tail.samples[0, RATE:]).max() == 0.0


def test_a_video_without_sound_has_none(tmp_path: Path, astronaut: RGBImage) -> None:
    silent = make_video(tmp_path / "silent.mp4", [astronaut[:240, :320]] * 6)
    assert read_sound(silent) is None


def test_mp4_carries_the_sound_in_sync_and_gif_stays_silent(
    tmp_path: Path, sound_source: Path
) -> None:
    frames = list(read_video(sound_source))
    sound = read_sound(sound_source)
    assert sound is not None
    made = encode(frames, tmp_path / "out.mp4", fps=12, sound=sound)
    assert made.has_audio
    heard = audio_of(made.path)
    assert heard is not None
    onset, duration = heard
    assert duration == pytest.approx(len(frames) / 12, abs=0.025)
    assert onset == pytest.approx(TONE_AT, abs=0.01)
    with av.open(str(made.path)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
    gif = encode(frames, tmp_path / "out.gif", fps=12, sound=sound)
    assert not gif.has_audio
    assert audio_of(gif.path) is None


def test_the_sound_is_cut_or_padded_to_the_video_also_when_shrunk(
    tmp_path: Path, sound_source: Path
) -> None:
    frames = list(read_video(sound_source))  # 2 s
    short = read_sound(sound_source, start=0.0, end=1.2)  # the tone's first 0.2 s, then nothing
    assert short is not None
    padded = encode(frames, tmp_path / "padded.mp4", fps=12, sound=short)
    heard = audio_of(padded.path)
    assert heard is not None
    assert heard[1] == pytest.approx(2.0, abs=0.025)
    # Grainy footage (big as H.264) under a budget that makes the encoder drop to half the
    # frame rate: the sound lasts as long as the video and starts where it did.
    grain = np.random.default_rng(7)
    noisy = [np.clip(f + grain.normal(0, 20, f.shape), 0, 255).astype(np.uint8) for f in frames]
    silent = encode(noisy, tmp_path / "silent.mp4", fps=12)
    sound_bytes = write_sound(short.cut(0.0, 2.0), tmp_path / "sound.m4a")
    budget = sound_bytes + silent.size_bytes // 12
    tight = encode(noisy, tmp_path / "tight.mp4", fps=12, sound=short, max_bytes=budget)
    assert tight.fps < 12
    assert tight.has_audio
    assert tight.size_bytes <= budget
    heard = audio_of(tight.path)
    assert heard is not None
    assert heard[1] == pytest.approx(tight.duration, abs=0.05)
    assert heard[0] == pytest.approx(TONE_AT, abs=0.01)
    # A budget a loud hiss alone would fill half of: the clip comes without it.
    hiss = Sound(grain.uniform(-0.5, 0.5, (1, 2 * RATE)).astype(np.float32))
    budget = encode(frames, tmp_path / "picture.mp4", fps=12).size_bytes
    assert write_sound(hiss, tmp_path / "hiss.m4a") > budget / 2
    mute = encode(frames, tmp_path / "mute.mp4", fps=12, sound=hiss, max_bytes=budget)
    assert not mute.has_audio
    assert audio_of(mute.path) is None
    assert mute.size_bytes <= budget


def test_a_sound_alone_is_a_small_m4a(tmp_path: Path, sound_source: Path) -> None:
    sound = read_sound(sound_source)
    assert sound is not None
    size = write_sound(sound, tmp_path / "audio.m4a")
    assert size < 40_000  # 2 s of mono AAC at 64 kbit/s is ~16 kB
    again = read_sound(tmp_path / "audio.m4a")
    assert again is not None
    assert again.duration == pytest.approx(sound.duration, abs=0.025)
