"""Sound for clips: decode a video's audio track, cut it to a clip, encode it as AAC.

A clip's sound is held as plain samples (:class:`Sound`: float32, channels x samples, at a
fixed rate) whose first sample plays with the clip's first frame. :func:`read_sound` decodes
the first audio track of any file FFmpeg reads, on the same clock as the video's frame times
(so a cut made at a frame's time is in sync with that frame); :func:`mux_sound` encodes one
into an open PyAV output container as AAC, interleaved with the video by the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.errors import BadMedia

RATE = 48_000  # every sound is resampled to this: one AAC profile for every clip
_BIT_RATE = {1: 64_000, 2: 96_000}  # per layout: a 30 s stereo clip is ~0.36 MB
_FRAME = 1024  # samples per AAC frame


@dataclass(frozen=True, slots=True)
class Sound:
    """Audio samples: ``(channels, n)`` float32 in [-1, 1] at ``rate`` Hz; t=0 is sample 0."""

    samples: NDArray[np.float32]
    rate: int = RATE

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        return int(self.samples.shape[1]) / self.rate

    def cut(self, start: float, length: float) -> Sound:
        """``length`` seconds from ``start``; silence where the sound does not reach."""
        first, count = round(start * self.rate), max(0, round(length * self.rate))
        out = np.zeros((self.channels, count), np.float32)
        lo, hi = max(first, 0), min(first + count, self.samples.shape[1])
        if hi > lo:
            out[:, lo - first : hi - first] = self.samples[:, lo:hi]
        return Sound(out, self.rate)


def read_sound(path: Path, *, start: float = 0.0, end: float | None = None) -> Sound | None:
    """The first audio track of ``path`` from ``start`` to ``end`` seconds (the container's
    clock, as video frame times are), resampled to 48 kHz mono or stereo; ``None`` when
    the file has no audio track. A damaged track is :class:`BadMedia`."""
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise BadMedia(f"{path.name} isn't a file I can read sound from.") from exc
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        layout = "mono" if stream.codec_context.channels == 1 else "stereo"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=RATE)
        chunks: list[NDArray[np.float32]] = []
        origin: float | None = None  # the time of the first sample decoded
        kept = 0  # samples decoded so far (from ``origin``)
        try:
            for packet_frame in container.decode(stream):
                if origin is None:
                    origin = float(packet_frame.time or 0.0)
                for frame in resampler.resample(packet_frame):
                    kept += _keep(chunks, frame.to_ndarray(), origin, kept, start, end)
                if end is not None and origin + kept / RATE >= end:
                    break
            for frame in resampler.resample(None):
                kept += _keep(chunks, frame.to_ndarray(), origin or 0.0, kept, start, end)
        except av.FFmpegError as exc:
            raise BadMedia(
                f"{path.name}'s sound track is damaged (--no-audio leaves it out)."
            ) from exc
    channels = 1 if layout == "mono" else 2
    joined = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
    decoded = Sound(np.ascontiguousarray(joined, np.float32))
    # ``decoded`` starts at the first sample at or after ``start`` (or at ``origin`` when the
    # sound starts later): line it up so that its sample 0 is exactly ``start``.
    first = max(start, origin or 0.0)
    offset = (first - start) if origin is not None else 0.0
    length = (end - start) if end is not None else offset + decoded.duration
    return decoded.cut(-offset, length)


def _keep(
    chunks: list[NDArray[np.float32]],
    block: NDArray[Any],
    origin: float,
    before: int,
    start: float,
    end: float | None,
) -> int:
    """Keep the part of ``block`` (samples ``before``.. after ``origin``) inside
    [start, end); returns how many samples the block had."""
    count = int(block.shape[1])
    lo = max(0, round((start - origin) * RATE) - before)
    hi = count if end is None else min(count, round((end - origin) * RATE) - before)
    if hi > lo:
        chunks.append(np.asarray(block[:, lo:hi], np.float32))
    return count


def _frames(sound: Sound) -> Iterator[tuple[int, NDArray[np.float32]]]:
    for first in range(0, sound.samples.shape[1], _FRAME):
        yield first, np.ascontiguousarray(sound.samples[:, first : first + _FRAME])


def mux_sound(container: Any, sound: Sound, *, fast: bool = True) -> list[Any]:
    """Add an AAC stream to the PyAV output ``container`` and encode ``sound`` into it;
    returns the packets, for the caller to mux between its video packets (by ``pts``
    in the audio stream's 1/rate time base). ``fast`` uses FFmpeg's fast AAC coder (3x
    quicker, for renders); the default one is for the pack, made once."""
    import av

    layout = "mono" if sound.channels == 1 else "stereo"
    stream = container.add_stream("aac", rate=sound.rate, layout=layout)
    stream.bit_rate = _BIT_RATE[sound.channels]
    if fast:
        stream.options = {"aac_coder": "fast"}
    packets: list[Any] = []
    for first, block in _frames(sound):
        frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
        frame.sample_rate = sound.rate
        frame.pts = first
        packets.extend(stream.encode(frame))
    packets.extend(stream.encode(None))
    return packets


def write_sound(sound: Sound, path: Path) -> int:
    """Write ``sound`` alone as an AAC ``.m4a`` file; returns its size in bytes."""
    import av

    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        for packet in mux_sound(out, sound, fast=False):
            out.mux(packet)
    return path.stat().st_size


__all__ = ["RATE", "Sound", "mux_sound", "read_sound", "write_sound"]
