from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from core.errors import BadMedia
from core.media.images import AI_NOTE, RGBImage
from core.media.video import encode, gif_command, probe_video, read_video

from ...conftest import make_video


def _frames(astronaut: RGBImage, count: int = 24, size: int = 240) -> list[RGBImage]:
    import cv2

    base = cv2.resize(astronaut, (size, size), interpolation=cv2.INTER_AREA)
    return [np.ascontiguousarray(np.roll(base, 4 * i, axis=1)) for i in range(count)]


def test_mp4_is_h264_yuv420p_faststart_silent_and_labelled(
    tmp_path: Path, astronaut: RGBImage
) -> None:
    result = encode(_frames(astronaut), tmp_path / "out.mp4", fps=12)
    assert (result.frames, result.width, result.height) == (24, 240, 240)
    data = result.path.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # faststart: index first
    with av.open(str(result.path)) as container:
        assert len(container.streams.audio) == 0
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert container.metadata.get("comment") == AI_NOTE
    info = probe_video(result.path)
    assert info.frames == 24
    assert info.duration == pytest.approx(2.0, abs=0.1)
    decoded = list(read_video(result.path))
    assert len(decoded) == 24
    assert np.abs(decoded[5].astype(int) - _frames(astronaut)[5]).mean() < 6
    # the colours themselves: no shift of level or range in the RGB to YUV conversion
    shift = decoded[5].reshape(-1, 3).mean(0) - _frames(astronaut)[5].reshape(-1, 3).mean(0)
    assert np.abs(shift).max() < 2.0


def test_gif_has_all_frames_loops_and_says_it_is_generated(
    tmp_path: Path, astronaut: RGBImage
) -> None:
    result = encode(_frames(astronaut, 20), tmp_path / "out.gif", fps=10)
    with Image.open(result.path) as gif:
        assert gif.n_frames == 20
        assert gif.info.get("loop") == 0
        assert gif.info.get("comment") == AI_NOTE.encode()
        durations = []
        for index in range(gif.n_frames):
            gif.seek(index)
            durations.append(gif.info["duration"])
        assert sum(durations) == pytest.approx(2000, rel=0.05)
    assert len(list(read_video(result.path))) == 20


def test_gif_command_is_one_palette_with_ordered_dither(tmp_path: Path) -> None:
    command = gif_command((320, 240), 12.5, tmp_path / "x.gif")
    graph = command[command.index("-filter_complex") + 1]
    assert "palettegen" in graph
    assert "dither=bayer" in graph
    assert "diff_mode=rectangle" in graph
    assert command[command.index("-s") + 1] == "320x240"


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_byte_budget_shrinks_until_it_fits(
    tmp_path: Path, astronaut: RGBImage, suffix: str
) -> None:
    frames = _frames(astronaut, 24, 480)
    full = encode(frames, tmp_path / f"full{suffix}", fps=12)
    budget = full.size_bytes // 4
    small = encode(frames, tmp_path / f"small{suffix}", fps=12, max_bytes=budget)
    assert small.size_bytes <= budget
    assert small.path.stat().st_size == small.size_bytes
    assert small.width < full.width
    assert small.duration == pytest.approx(full.duration, rel=0.1)
    assert len(list(read_video(small.path))) == small.frames


def test_impossible_budget_is_refused_and_leaves_nothing(
    tmp_path: Path, astronaut: RGBImage
) -> None:
    with pytest.raises(BadMedia, match="small enough"):
        encode(_frames(astronaut, 8), tmp_path / "x.gif", fps=8, max_bytes=100)
    assert list(tmp_path.iterdir()) == []


def test_trimming_and_downscaling(tmp_path: Path, astronaut: RGBImage) -> None:
    video = make_video(tmp_path / "in.mp4", _frames(astronaut, 24, 240), fps=12)
    frames = list(read_video(video, start=0.5, end=1.5, max_side=101))
    assert len(frames) == 12
    assert frames[0].shape == (100, 100, 3)  # even sides for yuv420p


def test_gif_input_decodes(tmp_path: Path, astronaut: RGBImage) -> None:
    gif = encode(_frames(astronaut, 6), tmp_path / "in.gif", fps=6)
    assert len(list(read_video(gif.path))) == 6


def test_text_file_is_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "movie.mp4"
    path.write_text("not a movie")
    with pytest.raises(BadMedia, match="isn't a video"):
        probe_video(path)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(BadMedia, match="empty"):
        probe_video(path)


def test_video_over_the_size_limit_is_refused(tmp_path: Path, astronaut: RGBImage) -> None:
    video = make_video(tmp_path / "in.mp4", _frames(astronaut, 12))
    with pytest.raises(BadMedia, match="too big"):
        list(read_video(video, max_bytes=1000))


def test_a_gif_budget_never_drops_under_12_fps(tmp_path: Path, astronaut: RGBImage) -> None:
    frames = _frames(astronaut, 48, 360)
    full = encode(frames, tmp_path / "full.gif", fps=24, gif_bytes_per_second=None)
    assert full.fps == 24
    per_second = full.size_bytes / full.duration / 4
    small = encode(frames, tmp_path / "small.gif", fps=24, gif_bytes_per_second=per_second)
    assert small.size_bytes <= per_second * 2.0
    assert small.fps == 12  # halved once, never further: the picture shrinks instead
    assert small.width < full.width
    # At 12 fps already: the rate stays, colours and size go.
    slow = encode(frames[::2], tmp_path / "slow.gif", fps=12, gif_bytes_per_second=per_second)
    assert slow.fps == 12
    assert slow.frames == 24
