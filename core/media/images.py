"""Reading and writing pictures safely.

Everything a user uploads passes through :func:`load_image` first: it refuses files that are
not images, damaged files, tiny images and decompression bombs with a message that names the
problem, and it hands back plain 8-bit RGB whatever the source mode and EXIF orientation.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from core.config import Settings
from core.errors import BadMedia

AI_NOTE = "Made with FaceCast: AI-generated face swap, not a real photo."

RGBImage = NDArray[np.uint8]

_READABLE = "JPEG, PNG, WebP, GIF, BMP or TIFF"


def _read_bytes(source: bytes | Path, max_bytes: int) -> bytes:
    if isinstance(source, Path):
        try:
            size = source.stat().st_size
        except OSError as exc:
            raise BadMedia(f"I can't open {source.name}: {exc.strerror or exc}.") from exc
        if size > max_bytes:
            raise BadMedia(_too_many_bytes(size, max_bytes))
        try:
            return source.read_bytes()
        except OSError as exc:  # a directory, a permission problem
            raise BadMedia(f"I can't read {source.name}: {exc.strerror or exc}.") from exc
    if len(source) > max_bytes:
        raise BadMedia(_too_many_bytes(len(source), max_bytes))
    return source


def _too_many_bytes(size: int, limit: int) -> str:
    return f"That file is too big ({size / 1e6:.1f} MB); send an image under {limit / 1e6:.0f} MB."


def _to_rgb(image: Image.Image) -> RGBImage:
    """Any Pillow mode to 8-bit RGB; transparent parts become white like a chat background."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image).astype(np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 255.0)
        grey = np.clip(values * (255.0 / top), 0, 255).round().astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def load_image(
    source: bytes | Path,
    *,
    max_bytes: int = 20 * 1024 * 1024,
    max_pixels: int = 40_000_000,
    min_side: int = 64,
    max_side: int | None = None,
) -> RGBImage:
    """Decode an uploaded image into upright 8-bit RGB, or raise :class:`BadMedia`.

    ``max_side`` lets JPEGs decode at a reduced scale (1/2, 1/4, 1/8) while staying at
    least that large: a 12-megapixel selfie decodes several times faster, and a face needs
    no more.
    """
    data = _read_bytes(source, max_bytes)
    if not data:
        raise BadMedia("That file is empty.")
    try:
        with warnings.catch_warnings():
            # Our own pixel cap below is stricter; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise BadMedia(
            "That image is too large to open safely (hundreds of megapixels: "
            "a decompression bomb?); send a normal photo."
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise BadMedia(f"That file isn't an image I can read; send a {_READABLE}.") from exc

    width, height = image.size
    if width * height > max_pixels:
        raise BadMedia(
            f"That image is too large ({width}x{height} pixels); "
            f"the limit is {max_pixels / 1e6:.0f} megapixels."
        )
    if min(width, height) < min_side:
        raise BadMedia(
            f"That image is only {width}x{height} pixels; "
            f"send a photo at least {min_side} pixels on each side."
        )
    try:
        image.seek(0)  # animated formats: the first frame is the photo
        if max_side is not None and image.format == "JPEG" and max(width, height) > max_side:
            # draft() keeps both sides at least this big: scale the box to the aspect.
            shrink = max_side / max(width, height)
            image.draft("RGB", (round(width * shrink), round(height * shrink)))
        image.load()
        upright = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise BadMedia("That image file is damaged or incomplete; try sending it again.") from exc
    if max_side is not None and max(upright.size) > 2 * max_side:
        # PNG and WebP have no reduced-scale decoding: shrink after, so that face
        # detection (which holds the GIL) works on a selfie's size, not 36 megapixels.
        upright = ImageOps.contain(upright.convert("RGB"), (max_side, max_side))
    return _to_rgb(upright)


def image_pixels(data: bytes) -> int:
    """How many pixels ``data`` declares (width x height, read from its header without
    decoding); 0 when it is no image :func:`load_image` could open (it will say why)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            width, height = Image.open(io.BytesIO(data)).size
    except (Image.DecompressionBombError, UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return 0
    return int(width) * int(height)


def load_picture(source: bytes | Path, settings: Settings, *, selfie: bool = False) -> RGBImage:
    """:func:`load_image` with the configured limits; a ``selfie`` decodes no larger than
    ``settings.selfie_max_side``."""
    return load_image(
        source,
        max_bytes=settings.max_image_bytes,
        max_pixels=settings.max_image_pixels,
        min_side=settings.min_image_side,
        max_side=settings.selfie_max_side if selfie else None,
    )


def save_image(
    image: RGBImage,
    path: Path,
    *,
    note: str = AI_NOTE,
    sign: Callable[[Path], None] | None = None,
) -> None:
    """Write PNG or JPEG (by suffix) with a metadata note saying the picture was generated;
    ``sign`` then embeds Content Credentials (see :mod:`core.media.provenance`)."""
    picture = Image.fromarray(image)
    suffix = path.suffix.lower()
    if suffix == ".png":
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", "FaceCast")
        info.add_text("Comment", note)
        picture.save(path, pnginfo=info)
    elif suffix in (".jpg", ".jpeg", ".webp"):
        exif = Image.Exif()
        exif[0x010E] = note  # ImageDescription
        exif[0x0131] = "FaceCast"  # Software
        picture.save(path, quality=92, exif=exif)
    else:
        raise BadMedia(f"I can write .png, .jpg or .webp images, not {suffix or 'no suffix'}.")
    if sign is not None:
        sign(path)


__all__ = ["AI_NOTE", "RGBImage", "load_image", "load_picture", "save_image"]
