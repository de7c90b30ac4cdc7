"""The installed ``facecast`` command, run as a user would: a real process, real files."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.media.images import AI_NOTE, RGBImage, load_image

from ..conftest import assert_user_error, invoke_facecast, run_facecast

Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def facecast(tmp_path: Path) -> Runner:
    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return invoke_facecast(tmp_path / "data", *args)

    return run


def test_swap_into_every_face_of_the_group_photo(
    tmp_path: Path, astronaut_file: Path, samples: Path
) -> None:
    """The swap family's smoke test runs the installed command in a real process."""
    out = tmp_path / "nested" / "swap.png"
    run = run_facecast(
        tmp_path / "data",
        "swap",
        "--face",
        astronaut_file,
        "--target",
        samples / "t1.jpg",
        "-o",
        out,
    )
    assert run.returncode == 0, run.stderr
    # faces 2 and 5 are seen nearly in profile (55 and 54 degrees, as `faces` says):
    # turned further than a selfie may be, they are left as they are, and the user told
    assert "Swapped 4 face(s)" in run.stdout
    assert "2 face(s) turned too far from the camera (55°, 54°)" in run.stdout
    assert "--target-face" in run.stdout
    result = load_image(out).astype(int)
    original = load_image(samples / "t1.jpg").astype(int)
    assert result.shape == original.shape
    change = np.abs(result - original).max(axis=2)
    for x0, y0, x1, y1 in ((65, 284, 169, 388), (452, 300, 577, 424)):  # faces 1 and 3
        assert (change[y0:y1, x0:x1] > 12).mean() > 0.05
    for x0, y0, x1, y1 in ((275, 179, 362, 266), (883, 89, 987, 192)):  # faces 2 and 5
        assert change[y0:y1, x0:x1].max() == 0  # not a pixel touched
    with Image.open(out) as saved:
        assert saved.text["Comment"] == AI_NOTE


def test_swap_only_the_chosen_face(
    facecast: Runner, tmp_path: Path, astronaut_file: Path, samples: Path
) -> None:
    out = tmp_path / "one.jpg"
    run = facecast(
        "swap", "-f", astronaut_file, "-t", samples / "t1.jpg", "--target-face", "3", "-o", out
    )
    assert run.returncode == 0, run.stderr
    assert "Swapped 1 face(s)" in run.stdout
    original = load_image(samples / "t1.jpg").astype(int)
    changed = np.abs(load_image(out).astype(int) - original).max(axis=2) > 40
    columns = np.nonzero(changed[:800].any(axis=0))[0]  # ignore the AI badge at the bottom
    # Face 3 (left to right) spans x 452..577; JPEG noise aside, nothing else changed.
    assert columns.min() > 400
    assert columns.max() < 640


def test_a_face_turned_too_far_is_swapped_when_chosen(
    facecast: Runner, tmp_path: Path, astronaut_file: Path, samples: Path
) -> None:
    out = tmp_path / "turned.png"
    run = facecast("swap", "-f", astronaut_file, "-t", samples / "t1.jpg", "-n", "2", "-o", out)
    assert run.returncode == 0, run.stderr
    assert "Swapped 1 face(s)" in run.stdout
    assert "turned too far" not in run.stdout
    changed = np.abs(load_image(out).astype(int) - load_image(samples / "t1.jpg").astype(int))
    assert (changed.max(axis=2) > 12)[179:266, 275:362].mean() > 0.05  # face 2's box


def test_target_face_out_of_range(
    facecast: Runner, tmp_path: Path, astronaut_file: Path, samples: Path
) -> None:
    run = facecast(
        "swap", "-f", astronaut_file, "-t", samples / "t1.jpg", "-n", "7", "-o", tmp_path / "x.png"
    )
    assert_user_error(run, "6 face(s)", "1 to 6")


def test_faces_lists_boxes_and_quality(tmp_path: Path, samples: Path) -> None:
    """The faces command's smoke test, in a real process."""
    run = run_facecast(tmp_path / "data", "faces", samples / "t1.jpg")
    assert run.returncode == 0, run.stderr
    assert "6 face(s) in t1.jpg" in run.stdout
    assert run.stdout.count("turned too far") == 2


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _bomb_png() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def _jpeg(image: RGBImage) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "make", "words"),
    [
        ("notes.txt", lambda a: b"hello, I am text\n", ("isn't an image",)),
        ("cut.jpg", lambda a: _jpeg(a)[:6000], ("damaged or incomplete",)),
        ("dot.png", lambda a: _png_bytes(np.zeros((1, 1, 3), np.uint8)), ("1x1",)),
        ("bomb.png", lambda a: _bomb_png(), ("too large", "decompression bomb")),
        ("coffee.png", lambda a: _png_bytes(_coffee()), ("couldn't find a face",)),
    ],
)
def test_bad_selfies_exit_2_with_a_message_naming_the_problem(
    facecast: Runner,
    tmp_path: Path,
    astronaut: RGBImage,
    astronaut_file: Path,
    name: str,
    make: object,
    words: tuple[str, ...],
) -> None:
    assert callable(make)
    bad = _write(tmp_path / name, make(astronaut))
    run = facecast("swap", "--face", bad, "--target", astronaut_file, "-o", tmp_path / "o.png")
    assert_user_error(run, *words)
    assert not (tmp_path / "o.png").exists()


def test_missing_file_and_bad_output_suffix(
    facecast: Runner, tmp_path: Path, astronaut_file: Path
) -> None:
    run = facecast("swap", "-f", tmp_path / "nope.jpg", "-t", astronaut_file, "-o", "x.png")
    assert_user_error(run, "nope.jpg")
    run = facecast("swap", "-f", astronaut_file, "-t", astronaut_file, "-o", tmp_path / "x.gif")
    assert_user_error(run, ".png")


def test_help_reads_well(facecast: Runner) -> None:
    run = facecast("swap", "--help")
    assert run.returncode == 0
    for option in ("--face", "--target", "--output", "--target-face", "left to right"):
        assert option in run.stdout


def _png_bytes(image: RGBImage) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _coffee() -> RGBImage:
    from skimage import data

    return np.ascontiguousarray(data.coffee())


@pytest.mark.parametrize(
    ("command", "variable", "value", "words"),
    [
        (("clips", "list"), "FACECAST_MAX_QUEUE", "-1", ("a whole number at least 0",)),
        (
            ("memes", "list"),
            "FACECAST_MIN_COVERAGE",
            "lots",
            ("a number at least 0 and at most 1",),
        ),
        (("models",), "FACECAST_DISCORD_SYNC_GLOBAL", "maybe", ("true or false",)),
    ],
)
def test_every_command_reports_a_bad_setting_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: tuple[str, ...],
    variable: str,
    value: str,
    words: tuple[str, ...],
) -> None:
    monkeypatch.setenv(variable, value)
    run = invoke_facecast(tmp_path / "data", *command)
    assert_user_error(run, f"{variable}={value!r}", *words)


def test_worker_without_a_broker_says_what_to_set(tmp_path: Path) -> None:
    run = invoke_facecast(tmp_path / "data", "worker")
    assert_user_error(run, "FACECAST_BROKER_URL=redis://")


def test_worker_says_when_the_broker_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("taskiq_redis", reason="the scale extra is not installed")
    monkeypatch.setenv("FACECAST_BROKER_URL", "redis://:hunter2-secret@127.0.0.1:9/0")
    run = invoke_facecast(tmp_path / "data", "worker")
    assert_user_error(run, "no Redis answers at 127.0.0.1:9")
    assert "hunter2-secret" not in run.stderr
