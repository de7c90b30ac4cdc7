"""Reading and writing media safely.

Everything a user uploads passes through :func:`load_image` first: it refuses files that are
not images, damaged files, tiny images and decompression bombs with a message that names the
problem, and it hands back plain 8-bit RGB whatever the source mode and EXIF orientation.

Videos are decoded as a stream of RGB frames by PyAV (:func:`read_video`) and written by
:func:`encode`: MP4 is H.264 yuv420p with faststart and no audio, what Telegram's
sendAnimation and Discord play inline; GIF goes through ffmpeg's palettegen/paletteuse (one
palette for the whole clip, ordered dithering that does not crawl between frames, and only
the changed rectangle stored per frame). ``max_bytes`` shrinks the picture, then the frame
rate, until the file fits.
"""

from __future__ import annotations

import functools
import io
import math
import subprocess
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont, ImageOps, PngImagePlugin, UnidentifiedImageError

from .config import Settings
from .errors import BadMedia

RGBImage = NDArray[np.uint8]
"""An ``(height, width, 3)`` uint8 array in RGB order."""

AI_NOTE = "Made with FaceCast: AI-generated face swap, not a real photo."

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
    return _to_rgb(upright)


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


@dataclass(frozen=True, slots=True)
class Overlay:
    """A picture drawn once (an RGBA patch and where it goes) and blended onto many frames."""

    x: int
    y: int
    rgba: NDArray[np.float32]  # (h, w, 4) in 0..1

    @classmethod
    def from_rgba(cls, layer: NDArray[np.uint8]) -> Overlay | None:
        """Crop a frame-sized RGBA layer to what it draws; None if it draws nothing."""
        ys, xs = np.nonzero(layer[:, :, 3])
        if len(xs) == 0:
            return None
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        return cls(int(x0), int(y0), layer[y0:y1, x0:x1].astype(np.float32) / 255.0)

    def apply(self, image: RGBImage) -> RGBImage:
        """A copy of ``image`` with the overlay blended in (clipped to the image)."""
        result = image.copy()
        height, width = image.shape[:2]
        patch = self.rgba[: max(0, height - self.y), : max(0, width - self.x)]
        if self.x < 0 or self.y < 0 or patch.size == 0:
            return result
        box_h, box_w = patch.shape[:2]
        region = result[self.y : self.y + box_h, self.x : self.x + box_w].astype(np.float32)
        alpha = patch[:, :, 3:]
        blended = region * (1.0 - alpha) + patch[:, :, :3] * 255.0 * alpha
        result[self.y : self.y + box_h, self.x : self.x + box_w] = np.clip(
            blended + 0.5, 0, 255
        ).astype(np.uint8)
        return result


@functools.lru_cache(maxsize=16)
def ai_label(width: int, height: int, text: str = "AI") -> Overlay:
    """The small "AI" badge for pictures of this size (bottom-right), drawn once."""
    size = max(10, round(min(width, height) * 0.045))
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGBA", (1, 1))).textbbox(
        (0, 0), text, font=font
    )
    pad = max(2, size // 4)
    box_w, box_h = round(right - left) + 2 * pad, round(bottom - top) + 2 * pad
    patch = Image.new("RGBA", (box_w, box_h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(patch)
    draw.rounded_rectangle((0, 0, box_w - 1, box_h - 1), radius=pad, fill=(0, 0, 0, 150))
    draw.text((pad - left, pad - top), text, font=font, fill=(255, 255, 255, 235))
    rgba = np.asarray(patch, dtype=np.float32) / 255.0
    return Overlay(width - pad - box_w, height - pad - box_h, rgba)


def add_ai_label(image: RGBImage, text: str = "AI") -> RGBImage:
    """A copy of ``image`` with a small, legible "AI" badge in the bottom-right corner."""
    height, width = image.shape[:2]
    return ai_label(width, height, text).apply(image)


def save_image(image: RGBImage, path: Path, *, note: str = AI_NOTE) -> None:
    """Write PNG or JPEG (by suffix) with a metadata note saying the picture was generated."""
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


# ---------------------------------------------------------------------------------- video

VIDEO_SUFFIXES = (".mp4", ".gif")
_MIN_SHRINK_SIDE = 96  # below this a shrink lowers the frame rate instead


@dataclass(frozen=True, slots=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int  # as the container declares it; 0 when it does not say
    duration: float  # seconds


@dataclass(frozen=True, slots=True)
class EncodedVideo:
    path: Path
    size_bytes: int
    width: int
    height: int
    fps: float
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.fps else 0.0


def _open_video(path: Path, max_bytes: int) -> Any:
    import av

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BadMedia(f"I can't open {path.name}: {exc.strerror or exc}.") from exc
    if size == 0:
        raise BadMedia(f"{path.name} is empty: it has no video in it.")
    if size > max_bytes:
        raise BadMedia(
            f"That video is too big ({size / 1e6:.1f} MB); the limit is {max_bytes / 1e6:.0f} MB."
        )
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise BadMedia(f"{path.name} isn't a video I can read (MP4, MOV, WebM or GIF).") from exc
    if not container.streams.video:
        container.close()
        raise BadMedia(f"{path.name} has no video track.")
    return container


def probe_video(path: Path, *, max_bytes: int = 200 * 1024 * 1024) -> VideoInfo:
    """Size, frame rate and length of a video, or :class:`BadMedia`."""
    container = _open_video(path, max_bytes)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or 25
        duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
        if not duration and container.duration:
            duration = container.duration / 1_000_000
        return VideoInfo(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(rate),
            frames=int(stream.frames or 0),
            duration=duration,
        )
    finally:
        container.close()


def even_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Scale to fit ``max_side`` (never up) with even sides, as yuv420p requires."""
    scale = 1.0 if max_side is None else min(1.0, max_side / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def read_video(
    path: Path,
    *,
    start: float = 0.0,
    end: float | None = None,
    max_side: int | None = None,
    max_bytes: int = 200 * 1024 * 1024,
    max_pixels: int = 4096 * 4096,
) -> Iterator[RGBImage]:
    """Decode frames one at a time (never the whole video), trimmed to ``[start, end)``
    seconds and scaled so the long side is at most ``max_side``, with even sides."""
    import av

    container = _open_video(path, max_bytes)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > max_pixels:
            raise BadMedia(f"That video's frames are too large ({width}x{height}).")
        size = even_size(width, height, max_side)
        try:
            for frame in container.decode(stream):
                moment = frame.time if frame.time is not None else 0.0
                if moment < start - 1e-6:
                    continue
                if end is not None and moment >= end - 1e-6:
                    break
                image = frame.to_ndarray(format="rgb24")
                if (image.shape[1], image.shape[0]) != size:
                    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                yield np.ascontiguousarray(image, dtype=np.uint8)
        except av.FFmpegError as exc:
            raise BadMedia(f"{path.name} is damaged: decoding stopped part way.") from exc
    finally:
        container.close()


class _FrameSpool:
    """Frames kept in a temporary file, so a shrinking re-encode can read them again
    without holding a whole clip in memory."""

    def __init__(self, directory: Path) -> None:
        self._path = directory / "frames.raw"
        self._file = self._path.open("wb")
        self.shape: tuple[int, int, int] | None = None
        self.count = 0

    def add(self, frame: RGBImage) -> None:
        if self.shape is None:
            self.shape = (frame.shape[0], frame.shape[1], 3)
        elif frame.shape != self.shape:
            raise ValueError(f"frame {self.count} is {frame.shape}, expected {self.shape}")
        self._file.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
        self.count += 1

    def close(self) -> None:
        self._file.close()

    def frames(self, step: int = 1) -> Iterator[RGBImage]:
        assert self.shape is not None
        frame_bytes = math.prod(self.shape)
        with self._path.open("rb") as source:
            for index in range(0, self.count, step):
                source.seek(index * frame_bytes)
                data = source.read(frame_bytes)
                yield np.frombuffer(data, np.uint8).reshape(self.shape)


def _fit_frame(frame: RGBImage, size: tuple[int, int]) -> RGBImage:
    if (frame.shape[1], frame.shape[0]) != size:
        frame = np.asarray(cv2.resize(frame, size, interpolation=cv2.INTER_AREA), np.uint8)
    return np.ascontiguousarray(frame)


def _write_mp4(
    frames: Iterable[RGBImage], path: Path, size: tuple[int, int], fps: float, note: str
) -> int:
    import av

    count = 0
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        out.metadata["comment"] = note
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast", "threads": "1"}
        for frame in frames:
            picture = av.VideoFrame.from_ndarray(_fit_frame(frame, size), format="rgb24")
            out.mux(stream.encode(picture))
            count += 1
        out.mux(stream.encode(None))
    return count


def ffmpeg_exe() -> str:
    """The ffmpeg binary that ships inside the imageio-ffmpeg wheel."""
    import imageio_ffmpeg  # type: ignore[import-untyped]

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def gif_command(
    size: tuple[int, int], fps: float, output: Path, *, dither: str = "bayer"
) -> list[str]:
    """ffmpeg arguments that read raw RGB frames on stdin and write a palette-optimised GIF.

    (ffmpeg's GIF muxer drops metadata: the AI note is added afterwards.)
    """
    width, height = size
    use = "paletteuse=dither=bayer:bayer_scale=4" if dither == "bayer" else f"paletteuse={dither}"
    graph = (
        "[0:v]split[a][b];[a]palettegen=max_colors=256:stats_mode=full[p];"
        f"[b][p]{use}:diff_mode=rectangle"
    )
    return [
        ffmpeg_exe(),
        *("-hide_banner", "-loglevel", "error", "-nostdin", "-y"),
        *("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}"),
        *("-r", f"{fps:.6g}", "-i", "pipe:0"),
        *("-filter_complex", graph, "-loop", "0"),
        *("-f", "gif", str(output)),
    ]


def _add_gif_comment(path: Path, note: str) -> None:
    """Insert a GIF89a comment extension with ``note`` before the first frame (ffmpeg's GIF
    muxer writes none)."""
    data = path.read_bytes()
    if data[:6] != b"GIF89a" or len(data) < 13:
        raise RuntimeError("ffmpeg did not write a GIF89a file")
    packed = data[10]
    header_end = 13 + (3 * (2 ** ((packed & 0x07) + 1)) if packed & 0x80 else 0)
    text = note.encode("utf-8")
    blocks = b"".join(
        bytes([len(text[i : i + 255])]) + text[i : i + 255] for i in range(0, len(text), 255)
    )
    path.write_bytes(data[:header_end] + b"\x21\xfe" + blocks + b"\x00" + data[header_end:])


def _write_gif(
    frames: Iterable[RGBImage], path: Path, size: tuple[int, int], fps: float, note: str
) -> int:
    command = gif_command(size, fps, path)
    count = 0
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    ) as process:
        assert process.stdin is not None
        try:
            for frame in frames:
                process.stdin.write(_fit_frame(frame, size).tobytes())
                count += 1
        except BrokenPipeError:
            pass
        process.stdin.close()
        assert process.stderr is not None
        errors = process.stderr.read().decode(errors="replace").strip()
        if process.wait() != 0:
            raise RuntimeError(f"ffmpeg could not write the GIF: {errors}")
    _add_gif_comment(path, note)
    return count


def encode(
    frames: Iterable[RGBImage],
    path: Path,
    *,
    fps: float,
    max_bytes: int | None = None,
    note: str = AI_NOTE,
    max_attempts: int = 6,
) -> EncodedVideo:
    """Write ``frames`` as MP4 or GIF (by suffix), shrinking until it fits ``max_bytes``.

    The first attempt keeps size and frame rate; each further one scales the picture by the
    square root of the overshoot (bytes grow with area), and once the short side would drop
    below 96 px it halves the frame rate instead. The output is written next to ``path`` and
    moved into place only when it fits, so a failure leaves nothing half-written.
    """
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise BadMedia(f"I can write {' or '.join(VIDEO_SUFFIXES)} videos, not {suffix!r}.")
    if fps <= 0:
        raise ValueError("fps must be positive")
    write = _write_mp4 if suffix == ".mp4" else _write_gif
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="facecast-encode-", dir=path.parent) as work:
        spool = _FrameSpool(Path(work))
        try:
            for frame in frames:
                spool.add(frame)
        finally:
            spool.close()
        if spool.shape is None:
            raise BadMedia("There are no frames to encode.")
        height, width = spool.shape[:2]
        scale, step = 1.0, 1
        attempt = Path(work) / f"attempt{suffix}"
        written = 0
        for _ in range(max_attempts):
            size = even_size(round(width * scale), round(height * scale), None)
            rate = fps / step
            count = write(spool.frames(step), attempt, size, rate, note)
            written = attempt.stat().st_size
            if max_bytes is None or written <= max_bytes:
                attempt.replace(path)
                return EncodedVideo(path, written, size[0], size[1], rate, count)
            if max_bytes <= 0:
                break
            shrink = math.sqrt(max_bytes / written) * 0.92
            if min(size) * shrink < _MIN_SHRINK_SIDE:
                step *= 2  # fewer frames instead of a picture too small to see
                scale = max(scale * shrink, _MIN_SHRINK_SIDE / min(width, height))
            else:
                scale *= shrink
        limit = max_bytes or 0
        raise BadMedia(
            f"I couldn't make that {suffix[1:].upper()} small enough "
            f"({written / 1e6:.1f} MB, the limit is {limit / 1e6:.1f} MB)."
        )


__all__ = [
    "AI_NOTE",
    "VIDEO_SUFFIXES",
    "EncodedVideo",
    "Overlay",
    "RGBImage",
    "VideoInfo",
    "add_ai_label",
    "ai_label",
    "encode",
    "even_size",
    "gif_command",
    "load_image",
    "load_picture",
    "probe_video",
    "read_video",
    "save_image",
]
