from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import BadMedia
from core.media.images import AI_NOTE, RGBImage, load_image, save_image
from core.media.overlay import add_ai_label


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming a huge size, with one tiny IDAT."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_decodes_jpeg_to_rgb(astronaut: RGBImage) -> None:
    image = load_image(_encode(Image.fromarray(astronaut), "JPEG", quality=95))
    assert image.shape == astronaut.shape
    assert image.dtype == np.uint8
    assert np.abs(image.astype(int) - astronaut).mean() < 3


def test_text_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n")
    with pytest.raises(BadMedia, match="isn't an image"):
        load_image(path)


def test_truncated_jpeg_is_refused(astronaut: RGBImage) -> None:
    whole = _encode(Image.fromarray(astronaut), "JPEG", quality=90)
    with pytest.raises(BadMedia, match="damaged or incomplete"):
        load_image(whole[: len(whole) // 2])


def test_one_pixel_image_is_refused() -> None:
    with pytest.raises(BadMedia, match="only 1x1 pixels"):
        load_image(_encode(Image.new("RGB", (1, 1)), "PNG"))


def test_decompression_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(BadMedia, match=r"too large.*decompression bomb"):
        load_image(_png_header_only(20000, 20000))


def test_image_over_our_pixel_cap_names_its_size() -> None:
    with pytest.raises(BadMedia, match="too large \\(9000x9000 pixels\\)"):
        load_image(_png_header_only(9000, 9000), max_pixels=40_000_000)


def test_file_over_the_byte_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(b"\0" * 2048)
    with pytest.raises(BadMedia, match="too big"):
        load_image(path, max_bytes=1024)


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(BadMedia, match=r"missing\.jpg"):
        load_image(tmp_path / "missing.jpg")


def test_exif_orientation_is_applied(astronaut: RGBImage) -> None:
    wide = np.ascontiguousarray(astronaut[:300])  # 300 high, 512 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90° clockwise to view
    image = load_image(_encode(Image.fromarray(wide), "JPEG", exif=exif, quality=95))
    assert image.shape[:2] == (512, 300)
    # The top-left of the upright picture is the stored picture's bottom-left.
    assert np.abs(image[5, 5].astype(int) - wide[-6, 5]).max() < 40


def test_rgba_is_composited_on_white() -> None:
    rgba = np.zeros((80, 80, 4), np.uint8)
    rgba[:, :40] = (255, 0, 0, 255)  # opaque red left half, transparent right half
    image = load_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert tuple(image[40, 10]) == (255, 0, 0)
    assert tuple(image[40, 70]) == (255, 255, 255)


def test_cmyk_jpeg_becomes_rgb(astronaut: RGBImage) -> None:
    cmyk = Image.fromarray(astronaut).convert("CMYK")
    image = load_image(_encode(cmyk, "JPEG", quality=95))
    assert image.shape == astronaut.shape
    assert np.abs(image.astype(int) - astronaut).mean() < 8


def test_sixteen_bit_greyscale_is_scaled_to_eight_bits() -> None:
    ramp = np.tile(np.linspace(0, 65535, 128).astype(np.uint16), (96, 1))
    image = load_image(_encode(Image.fromarray(ramp), "PNG"))
    assert image.shape == (96, 128, 3)
    assert image[0, 0, 0] == 0
    assert image[0, -1, 0] == 255
    assert (image[:, :, 0] == image[:, :, 2]).all()


def test_greyscale_and_palette_images_become_rgb(astronaut: RGBImage) -> None:
    grey = load_image(_encode(Image.fromarray(astronaut).convert("L"), "PNG"))
    assert grey.shape == astronaut.shape
    palette = load_image(_encode(Image.fromarray(astronaut).convert("P"), "GIF"))
    assert palette.shape == astronaut.shape


def test_ai_label_marks_only_the_corner(astronaut: RGBImage) -> None:
    labelled = add_ai_label(astronaut)
    changed = np.argwhere((labelled != astronaut).any(axis=2))
    assert len(changed) > 100
    assert changed[:, 0].min() > astronaut.shape[0] * 0.85
    assert changed[:, 1].min() > astronaut.shape[1] * 0.85


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_saved_images_say_they_are_generated(
    tmp_path: Path, astronaut: RGBImage, suffix: str
) -> None:
    path = tmp_path / f"out{suffix}"
    save_image(astronaut, path)
    with Image.open(path) as saved:
        if suffix == ".png":
            assert saved.text["Comment"] == AI_NOTE
        else:
            assert saved.getexif()[0x010E] == AI_NOTE


def test_unknown_output_format_is_refused(tmp_path: Path, astronaut: RGBImage) -> None:
    with pytest.raises(BadMedia, match=r"\.bmp"):
        save_image(astronaut, tmp_path / "out.bmp")
