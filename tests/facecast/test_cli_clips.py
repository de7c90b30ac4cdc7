"""`facecast clips ...` and `facecast render` as an operator and a user run them."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.media.video import probe_video, read_video

from ..conftest import (
    CLIP_TONE_AT,
    REPO,
    assert_user_error,
    audio_of,
    invoke_facecast,
    run_facecast,
)


@pytest.fixture
def selfie(tmp_path: Path, samples: Path) -> Path:
    from PIL import Image

    group = Image.open(samples / "t1.jpg").convert("RGB")
    path = tmp_path / "selfie.jpg"
    group.crop((380, 200, 650, 520)).save(path, quality=95)
    return path


def test_add_list_show_and_render(tmp_path: Path, selfie: Path) -> None:
    data = tmp_path / "data"
    run = run_facecast(
        data,
        "clips",
        "add",
        REPO / "clips" / "examples" / "astronaut.jpg",
        "--id",
        "my-zoom",
        "--motion",
        "push-in",
        "--seconds",
        "1",
        "--fps",
        "12",
        "--license",
        "Public domain",
    )
    assert run.returncode == 0, run.stderr
    assert "face visible in 100% of frames" in run.stdout
    assert (data / "clips" / "my-zoom" / "clip.toml").is_file()

    listing = run_facecast(data, "clips", "list")
    assert listing.returncode == 0, listing.stderr
    for clip_id in ("my-zoom", "astronaut-pan", "drawn-astronaut-sway"):
        assert clip_id in listing.stdout

    shown = run_facecast(data, "clips", "show", "my-zoom")
    assert shown.returncode == 0
    assert "Public domain" in shown.stdout
    assert "12 frames" in shown.stdout

    out = tmp_path / "me.mp4"
    rendered = run_facecast(data, "render", "--face", selfie, "--clip", "my-zoom", "-o", out)
    assert rendered.returncode == 0, rendered.stderr
    assert "Rendered 'my-zoom'" in rendered.stdout
    assert probe_video(out).frames == 12
    assert len(list(read_video(out))) == 12


def test_render_a_bundled_clip_as_a_small_gif(tmp_path: Path, selfie: Path) -> None:
    out = tmp_path / "me.gif"
    run = run_facecast(
        tmp_path / "data",
        "render", "-f", selfie, "-c", "astronaut-shake", "-o", out, "--size", "240",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    info = probe_video(out)
    assert (info.width, info.height) == (240, 180)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("clips", "show", "astronaut-pam"), ("astronaut-pan",)),
        (("clips", "add", "README.md", "--id", "readme"), ("isn't a video",)),
        (("clips", "add", "clips/examples/astronaut.jpg", "--id", "Nope!"), ("clip id",)),
        (("render", "-f", "README.md", "-c", "astronaut-pan", "-o", "x.mp4"), ("isn't an image",)),
        (("render", "-f", "clips/examples/astronaut.jpg", "-c", "x", "-o", "x.avi"), (".mp4",)),
    ],
)
def test_mistakes_exit_2_with_one_line(
    tmp_path: Path, args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    run = invoke_facecast(tmp_path / "data", *args)
    assert_user_error(run, *words)
    assert not (tmp_path / "data" / "clips" / "readme").exists()


def test_memes_list_and_a_meme(tmp_path: Path, selfie: Path) -> None:
    listing = run_facecast(tmp_path / "data", "memes", "list")
    assert listing.returncode == 0, listing.stderr
    for template in ("deal-with-it", "earthquake", "speed-lines"):
        assert template in listing.stdout
    out = tmp_path / "dwi.gif"
    run = run_facecast(
        tmp_path / "data",
        "meme", "--face", selfie, "--template", "deal-with-it", "--top", "Мой код", "-o", out,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Made 'deal-with-it' meme" in run.stdout
    assert len(list(read_video(out))) == 30


def test_meme_mistakes_exit_2(tmp_path: Path, selfie: Path) -> None:
    long = "x" * 200
    run = invoke_facecast(
        tmp_path / "data", "meme", "-f", selfie, "-t", "spin", "--top", long, "-o", "x.gif"
    )
    assert_user_error(run, "at most 140")
    run = invoke_facecast(tmp_path / "data", "meme", "-f", selfie, "-t", "spinn", "-o", "x.gif")
    assert_user_error(run, "meme template", "spin")


@pytest.mark.parametrize("family", ["clips", "memes"])
def test_lists_keep_titles_on_one_line_in_a_narrow_terminal(tmp_path: Path, family: str) -> None:
    from typer.testing import CliRunner

    from facecast import cli

    width = cli.out.width
    cli.out.width = 80  # as COLUMNS=80 does for a real process
    try:
        result = CliRunner().invoke(
            cli.app,
            [family, "list"],
            env={"FACECAST_DATA_DIR": str(tmp_path), "FACECAST_CLIPS_DIR": None},
            catch_exceptions=False,
        )
    finally:
        cli.out.width = width
    assert result.exit_code == 0, result.stderr
    titles = ["Astronaut: slow push-in", "Drawn astronaut: sway"]
    if family == "memes":
        titles = ["Deep fried, laser eyes", "To the moon (astronaut push-in)"]
    for title in titles:
        assert title in result.stdout, result.stdout


def test_clips_add_keeps_the_sound_unless_no_audio(
    tmp_path: Path, selfie: Path, sound_source: Path
) -> None:
    data = tmp_path / "data"
    common = ("--start", "0.55", "--max-side", "240")
    loud = invoke_facecast(data, "clips", "add", sound_source, "--id", "loud", *common)
    assert loud.returncode == 0, loud.stderr
    assert "with sound" in loud.stdout
    shown = invoke_facecast(data, "clips", "show", "loud")
    assert "audio.m4a (AAC)" in shown.stdout
    quiet = invoke_facecast(
        data, "clips", "add", sound_source, "--id", "quiet", *common, "--no-audio"
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "silent" in quiet.stdout
    assert not (data / "clips" / "quiet" / "audio.m4a").exists()
    for clip_id, sound in (("loud", True), ("quiet", False)):
        out = tmp_path / f"{clip_id}.mp4"
        made = invoke_facecast(data, "render", "--face", selfie, "--clip", clip_id, "-o", out)
        assert made.returncode == 0, made.stderr
        heard = audio_of(out)
        assert (heard is not None) == sound
        if heard is not None:
            assert heard[0] == pytest.approx(CLIP_TONE_AT, abs=0.01)


def test_a_clip_of_a_face_turned_away_is_refused_in_one_line(tmp_path: Path, samples: Path) -> None:
    # the group photo's second face is seen at about 55°, further than a selfie covers
    run = invoke_facecast(
        tmp_path / "data",
        "clips", "add", samples / "t1.jpg", "--id", "turned", "--face", "2", "--seconds", "1",
    )  # fmt: skip
    assert_user_error(run, "turned more than 40° from the camera", "--start/--end")
