"""Reading and writing media safely.

Everything a user uploads passes through :func:`load_image` first: it refuses files that are
not images, damaged files, tiny images and decompression bombs with a message that names the
problem, and it hands back plain 8-bit RGB whatever the source mode and EXIF orientation.

Videos are decoded as a stream of RGB frames by PyAV (:func:`read_video`) and written by
:func:`encode`: MP4 is H.264 yuv420p with faststart, silent (what Telegram's
sendAnimation and Discord play inline) or with the clip's sound as AAC; GIF goes through
ffmpeg's palettegen/paletteuse (one palette for the whole clip, ordered dithering that does
not crawl between frames, and only the changed rectangle stored per frame). ``max_bytes``
shrinks the picture, then the frame rate, until the file fits; a GIF also aims at a budget
per second of animation, reached with fewer colours, still pixels held, a lower frame rate
(never under 12 fps) and only then a smaller picture.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from core.errors import BadMedia
from core.media.audio import Sound, mux_sound
from core.media.images import AI_NOTE, RGBImage

"""An ``(height, width, 3)`` uint8 array in RGB order."""


# ---------------------------------------------------------------------------------- video

VIDEO_SUFFIXES = (".mp4", ".gif")
_MIN_SHRINK_SIDE = 96  # below this a shrink lowers the frame rate instead
# A GIF's default budget, per second of animation: 3 MB for a 3-second clip (at 256 colours
# and 24 fps a 480 px one is 5-7 MB). FACECAST_GIF_BYTES_PER_SECOND overrides it.
GIF_BYTES_PER_SECOND = 1_000_000
MIN_GIF_FPS = 12.0  # a GIF's frame rate is never lowered below this
# Kept free in a byte budget for the C2PA manifest a signed output carries.
SIGNATURE_ROOM = 16 * 1024


@dataclass(frozen=True, slots=True)
class _GifLevel:
    """One rung of the GIF shrinking ladder, tried before the picture gets smaller."""

    colors: int
    halve_fps: bool
    hold: int  # see _hold_still_pixels
    gain: float  # its size relative to the first rung, measured on the bundled clips


_GIF_PROBE_FRAMES = 12  # clips shorter than three times this are not probed

_GIF_LEVELS = (
    _GifLevel(256, False, 0, 1.0),
    _GifLevel(128, False, 4, 0.72),
    _GifLevel(64, False, 6, 0.55),
    _GifLevel(128, True, 4, 0.37),
    _GifLevel(64, True, 6, 0.29),
)


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
    has_audio: bool = False  # an MP4 with the clip's sound

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
    for _, image in read_timed_video(
        path, start=start, end=end, max_side=max_side, max_bytes=max_bytes, max_pixels=max_pixels
    ):
        yield image


def read_timed_video(
    path: Path,
    *,
    start: float = 0.0,
    end: float | None = None,
    max_side: int | None = None,
    max_bytes: int = 200 * 1024 * 1024,
    max_pixels: int = 4096 * 4096,
) -> Iterator[tuple[float, RGBImage]]:
    """:func:`read_video`'s frames with the time each is shown (on the container's clock,
    the one :func:`core.media.audio.read_sound` cuts by)."""
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
                yield moment, np.ascontiguousarray(image, dtype=np.uint8)
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
        return self.frames_at(range(0, self.count, step))

    def frames_at(self, indices: Iterable[int]) -> Iterator[RGBImage]:
        """The frames at ``indices`` (ascending), read from the spool and nothing else."""
        assert self.shape is not None
        frame_bytes = math.prod(self.shape)
        with self._path.open("rb") as source:
            for index in indices:
                source.seek(index * frame_bytes)
                data = source.read(frame_bytes)
                yield np.frombuffer(data, np.uint8).reshape(self.shape)


def _fit_frame(frame: RGBImage, size: tuple[int, int]) -> RGBImage:
    if (frame.shape[1], frame.shape[0]) != size:
        frame = np.asarray(cv2.resize(frame, size, interpolation=cv2.INTER_AREA), np.uint8)
    return np.ascontiguousarray(frame)


def _write_mp4(
    frames: Iterable[RGBImage],
    path: Path,
    size: tuple[int, int],
    fps: float,
    note: str,
    sound: Sound | None = None,
) -> tuple[int, int]:
    """Write the MP4; returns how many frames it has and how many bytes its sound takes."""
    import av

    count = 0
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        out.metadata["comment"] = note
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast", "threads": "1"}
        audio = _AudioQueue(out, sound)
        for frame in frames:
            # OpenCV's BT.601 conversion to the encoder's yuv420p (even sides, see
            # even_size): the same colours as the encoder's own conversion in a seventh of
            # the time (0.13 against 0.92 ms for a 480x360 frame)
            planes = np.asarray(
                cv2.cvtColor(_fit_frame(frame, size), cv2.COLOR_RGB2YUV_I420), np.uint8
            )
            picture = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            audio.mux_video(stream.encode(picture))
            count += 1
        audio.mux_video(stream.encode(None))
        audio.mux_until(math.inf)
    return count, audio.bytes


class _AudioQueue:
    """A clip's sound, encoded up front and muxed in step with the video's packets (so
    the file is interleaved however long the clip is)."""

    def __init__(self, out: Any, sound: Sound | None) -> None:
        self.out = out
        self.packets = mux_sound(out, sound) if sound is not None else []
        self.bytes = sum(packet.size for packet in self.packets)
        self.next = 0

    def mux_until(self, seconds: float) -> None:
        while self.next < len(self.packets):
            packet = self.packets[self.next]
            if packet.pts is not None and float(packet.pts * packet.time_base) > seconds:
                break
            self.out.mux(packet)
            self.next += 1

    def mux_video(self, packets: list[Any]) -> None:
        for packet in packets:
            if self.packets and packet.pts is not None:
                self.mux_until(float(packet.pts * packet.time_base))
            self.out.mux(packet)


def ffmpeg_exe() -> str:
    """The ffmpeg binary that ships inside the imageio-ffmpeg wheel."""
    import imageio_ffmpeg  # type: ignore[import-untyped]

    return str(imageio_ffmpeg.get_ffmpeg_exe())


_PALETTE_EVERY = 4  # GIF palettes are counted on every n-th frame


def gif_command(
    size: tuple[int, int], fps: float, output: Path, *, dither: str = "bayer", colors: int = 256
) -> list[str]:
    """ffmpeg arguments that read raw RGB frames on stdin and write a palette-optimised GIF.

    (ffmpeg's GIF muxer drops metadata: the AI note is added afterwards.)
    """
    width, height = size
    use = "paletteuse=dither=bayer:bayer_scale=4" if dither == "bayer" else f"paletteuse={dither}"
    # The palette is counted on every _PALETTE_EVERY-th frame: neighbouring frames share
    # their colours (at 4, the same PSNR to the frames within 0.05 dB on the bundled and
    # devset clips), and counting every frame was a quarter of the GIF's encoding time.
    graph = (
        f"[0:v]split[a][b];[a]select='not(mod(n\\,{_PALETTE_EVERY}))',"
        f"palettegen=max_colors={colors}:stats_mode=full[p];"
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


def _hold_still_pixels(frames: Iterable[RGBImage], threshold: int) -> Iterator[RGBImage]:
    """Pixels that changed by at most ``threshold`` (per channel) since the last frame shown
    keep that frame's value. Ordered dithering maps them to the same palette index, so the
    GIF muxer stores them as transparent "unchanged" pixels, which compress to almost nothing.
    The error never grows past ``threshold``: it is measured against what is shown."""
    held: NDArray[np.int16] | None = None
    for frame in frames:
        current = frame.astype(np.int16)
        if held is not None and threshold > 0:
            still = np.abs(current - held).max(axis=2, keepdims=True) <= threshold
            current = np.where(still, held, current)
        held = current
        yield current.astype(np.uint8)


def _write_gif(
    frames: Iterable[RGBImage],
    path: Path,
    size: tuple[int, int],
    fps: float,
    note: str,
    *,
    colors: int = 256,
    hold: int = 0,
) -> int:
    command = gif_command(size, fps, path, colors=colors)
    count = 0
    fitted = (_fit_frame(frame, size) for frame in frames)
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    ) as process:
        assert process.stdin is not None
        try:
            for frame in _hold_still_pixels(fitted, hold) if hold else fitted:
                process.stdin.write(np.ascontiguousarray(frame).tobytes())
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


def _encode_gif(
    spool: _FrameSpool,
    attempt: Path,
    fps: float,
    note: str,
    max_bytes: int | None,
    soft_bytes: float | None,
    max_attempts: int,
) -> EncodedVideo:
    """Climb :data:`_GIF_LEVELS` (skipping rungs the overshoot says cannot be enough), then
    shrink the picture, until the GIF fits ``min(max_bytes, soft_bytes)``. Past the last
    attempt the smallest GIF made is kept if it fits ``max_bytes``; otherwise BadMedia."""
    assert spool.shape is not None
    height, width = spool.shape[:2]
    levels = [lv for lv in _GIF_LEVELS if not lv.halve_fps or fps / 2 >= MIN_GIF_FPS]
    budgets = [b for b in (max_bytes, soft_bytes) if b is not None]
    target = min(budgets) if budgets else None
    index, scale = 0, 1.0
    written, made = 0, None
    if target is not None and target > 0 and spool.count >= 3 * _GIF_PROBE_FRAMES:
        # Guess the first rung's size from a third of the clip (bytes grow with frames),
        # taken as three runs from its beginning, middle and end (a pan may start still),
        # and start on the rung that guess says is needed: a clip far over budget is then
        # encoded about 1.3 times instead of twice.
        run = spool.count // 9
        starts = (0, (spool.count - run) // 2, spool.count - run)
        wanted = sorted({start + k for start in starts for k in range(run)})
        probed = _write_gif(
            spool.frames_at(wanted),
            attempt,
            (width, height),
            fps,
            note,
            colors=levels[0].colors,
            hold=levels[0].hold,
        )
        at_full = attempt.stat().st_size * spool.count / max(probed, 1)
        aim = target * 0.95
        fitting = [i for i in range(len(levels)) if at_full * levels[i].gain <= aim]
        index = fitting[0] if fitting else len(levels) - 1
        if not fitting:
            smallest = _MIN_SHRINK_SIDE / min(width, height)
            scale = max(math.sqrt(aim / (at_full * levels[index].gain)), smallest)
    for _ in range(max_attempts):
        level = levels[index]
        size = even_size(round(width * scale), round(height * scale), None)
        step = 2 if level.halve_fps else 1
        count = _write_gif(
            spool.frames(step),
            attempt,
            size,
            fps / step,
            note,
            colors=level.colors,
            hold=level.hold,
        )
        written = attempt.stat().st_size
        made = EncodedVideo(attempt, written, size[0], size[1], fps / step, count)
        if target is None or written <= target:
            return made
        if target <= 0:
            break
        aim = target * 0.95
        at_full = written / level.gain  # what the first rung would weigh at this size
        better = [i for i in range(index + 1, len(levels)) if at_full * levels[i].gain <= aim]
        if better:
            index = better[0]
            continue
        index = len(levels) - 1
        shrink = math.sqrt(aim / (at_full * levels[index].gain))
        smallest = _MIN_SHRINK_SIDE / min(width, height)
        if scale <= smallest:
            break
        scale = max(scale * shrink, smallest)
    if made is not None and (max_bytes is None or written <= max_bytes):
        return made  # the soft budget was out of reach: the smallest GIF made
    limit = max_bytes or 0
    raise BadMedia(
        f"I couldn't make that GIF small enough "
        f"({written / 1e6:.1f} MB, the limit is {limit / 1e6:.1f} MB)."
    )


def encode(
    frames: Iterable[RGBImage],
    path: Path,
    *,
    fps: float,
    max_bytes: int | None = None,
    note: str = AI_NOTE,
    max_attempts: int = 6,
    gif_bytes_per_second: float | None = GIF_BYTES_PER_SECOND,
    sign: Callable[[Path], None] | None = None,
    sound: Sound | None = None,
) -> EncodedVideo:
    """Write ``frames`` as MP4 or GIF (by suffix), shrinking until it fits ``max_bytes``.

    The first attempt keeps size and frame rate. An MP4 then scales the picture by the
    square root of the overshoot (bytes grow with area), and once the short side would drop
    below 96 px halves the frame rate instead. A GIF also aims at ``gif_bytes_per_second``
    (a soft budget: the best it reaches is kept) and first climbs a ladder of fewer colours,
    still pixels held and half the frame rate (never under 12 fps), then shrinks the picture
    (see :func:`_encode_gif`). The output is written next to ``path`` and moved into place
    only when it fits, so a failure leaves nothing half-written.

    An MP4 carries ``sound`` (its sample 0 with the first frame), cut or padded with
    silence to the frames' duration (a lower frame rate keeps it); only the picture shrinks,
    and a sound that takes half of ``max_bytes`` is left out. A GIF is always silent.
    ``sign`` embeds Content Credentials before the move (:data:`SIGNATURE_ROOM` is kept
    free for them).
    """
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise BadMedia(f"I can write {' or '.join(VIDEO_SUFFIXES)} videos, not {suffix!r}.")
    if fps <= 0:
        raise ValueError("fps must be positive")
    if sign is not None and max_bytes is not None:
        max_bytes = max(1, max_bytes - SIGNATURE_ROOM)
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
        attempt = Path(work) / f"attempt{suffix}"
        if suffix == ".gif":
            soft = (gif_bytes_per_second or 0) * spool.count / fps or None
            made = _encode_gif(spool, attempt, fps, note, max_bytes, soft, max_attempts)
            if sign is not None:
                sign(attempt)
            attempt.replace(path)
            return replace(made, path=path, size_bytes=path.stat().st_size)
        scale, step = 1.0, 1
        written = 0
        # Fewer frames at a lower rate last as long: the sound is cut once, to that length.
        fitted = sound.cut(0.0, spool.count / fps) if sound is not None else None
        for _ in range(max_attempts):
            size = even_size(round(width * scale), round(height * scale), None)
            rate = fps / step
            count, sound_bytes = _write_mp4(spool.frames(step), attempt, size, rate, note, fitted)
            written = attempt.stat().st_size
            if max_bytes is None or written <= max_bytes:
                if sign is not None:
                    sign(attempt)
                    written = attempt.stat().st_size
                attempt.replace(path)
                return EncodedVideo(
                    path, written, size[0], size[1], rate, count, has_audio=fitted is not None
                )
            if max_bytes <= 0:
                break
            if sound_bytes >= max_bytes * 0.5:
                fitted = None  # the sound alone takes half the budget: the picture matters more
                continue
            # Only the picture shrinks: the sound's bytes stay what they are.
            shrink = math.sqrt((max_bytes - sound_bytes) / (written - sound_bytes)) * 0.92
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
    "GIF_BYTES_PER_SECOND",
    "MIN_GIF_FPS",
    "SIGNATURE_ROOM",
    "VIDEO_SUFFIXES",
    "EncodedVideo",
    "VideoInfo",
    "encode",
    "even_size",
    "gif_command",
    "probe_video",
    "read_timed_video",
    "read_video",
]
