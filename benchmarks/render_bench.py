"""Speed of the ZAO path: enrol one selfie, render it into a pre-processed clip, encode.

Renders the bundled 3-second, 24 fps, 480x360 clip ``astronaut-pan`` and prints the median
of 5 runs on one pinned core for each stage (the MP4 also with 3 s of sound, as a clip
with sound has), the clip pre-processing speed, and a comparison of GIF encoders (time,
size, fidelity). Beside each time, its ratio to a floor measured in the same run: a plain
libx264 encode of the clip's frames. Targets on one core: MP4 total <= 1.0 s, GIF total
<= 2.0 s, pre-processing faster than real time at 480 px.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path

from _common import pin_to_one_core, sample_dir, summary

MACHINE = pin_to_one_core()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from core.config import Settings  # noqa: E402
from core.engines.base import SwapSequence  # noqa: E402
from core.engines.classic import ClassicSwapper  # noqa: E402
from core.faces.analyzer import DlibAnalyzer  # noqa: E402
from core.faces.profile import enroll  # noqa: E402
from core.faces.tracking import rest_shape  # noqa: E402
from core.media.audio import RATE, Sound, write_sound  # noqa: E402
from core.media.images import load_image, load_picture  # noqa: E402
from core.media.video import encode, read_video  # noqa: E402
from core.packs.build import ClipSource, build_clip  # noqa: E402
from core.packs.library import MANIFEST, SOUND, Clip, ClipLibrary, load_clip  # noqa: E402
from core.render.clip import render_to_file  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FLOOR = "floor: plain libx264 encode of the clip's frames"


def twelve_megapixel_selfie() -> bytes:
    """A 4000x3000 JPEG with one face filling about a third of the frame."""
    group = load_image(sample_dir() / "t1.jpg")
    face = np.ascontiguousarray(group[200:520, 380:650])
    big = cv2.resize(face, (2700, 3200), interpolation=cv2.INTER_CUBIC)[100:3100]
    canvas = np.full((3000, 4000, 3), 200, np.uint8)
    canvas[:, 650:3350] = big
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def pillow_gif(frames: list[np.ndarray], path: Path, fps: float) -> None:
    """The alternative: Pillow with one palette from a sample of frames, no dithering."""
    step = max(1, len(frames) // 8)
    sample = np.vstack([cv2.resize(f, (f.shape[1] // 2, f.shape[0] // 2)) for f in frames[::step]])
    palette = Image.fromarray(sample).quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    images = [
        Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames
    ]
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
    )


def plain_encode(frames: list[np.ndarray], path: Path, fps: float) -> None:
    """The floor: the same frames through libx264 as plainly as PyAV allows (its own RGB to
    YUV conversion, the same preset, one thread), nothing of FaceCast's encoder."""
    import av

    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=round(fps))
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast", "threads": "1"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def with_sound(clip: Clip, folder: Path) -> Clip:
    """A copy of ``clip`` with a stereo sound as long as it (a chord and some hiss: about
    what AAC spends on speech or music)."""
    shutil.copytree(clip.folder, folder)
    t = np.arange(round(clip.manifest.duration * RATE)) / RATE
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 6
    hiss = np.random.default_rng(1).normal(0, 0.05, (2, t.size))
    write_sound(Sound((chord + hiss).astype(np.float32)), folder / SOUND)
    manifest = (folder / MANIFEST).read_text(encoding="utf-8")
    (folder / MANIFEST).write_text(f'audio = "{SOUND}"\n' + manifest, encoding="utf-8")
    return load_clip(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--video", type=Path, action="append", default=[],
                        help="also time `clips add` on these videos")  # fmt: skip
    args = parser.parse_args()
    console = Console(width=110)

    analyzer = DlibAnalyzer()
    settings = Settings(bundled_clips_dir=REPO / "clips")
    clip = ClipLibrary(settings).get("astronaut-pan")
    selfie = twelve_megapixel_selfie()
    swapper = ClassicSwapper()
    originals = list(read_video(clip.media))
    track = clip.load_track()

    times: dict[str, list[float]] = {}

    def timed(name: str, action: object) -> object:
        started = time.perf_counter()
        result = action()  # type: ignore[operator]
        times.setdefault(name, []).append(time.perf_counter() - started)
        return result

    with tempfile.TemporaryDirectory() as work:
        out = Path(work)
        sounding = with_sound(clip, out / clip.id)
        sound = sounding.load_sound()
        for _ in range(args.runs):
            timed(
                FLOOR,
                partial(plain_encode, originals, out / "floor.mp4", clip.manifest.fps),
            )
            profile = timed(
                "enrol a 12 MP selfie (decode+detect+embed)",
                lambda: enroll(load_picture(selfie, settings, selfie=True), analyzer, settings),
            )
            # as a render sets it up: the clip's resting face known, for the reshape
            sequence = SwapSequence(rest=rest_shape(track.landmarks, track.visible))
            frames = []
            for index, frame in enumerate(originals):
                started = time.perf_counter()
                frames.append(
                    swapper.swap(profile, frame, track.landmarks[index], sequence=sequence)
                )
                times.setdefault("swap, per frame", []).append(time.perf_counter() - started)
            fps = clip.manifest.fps
            timed("MP4 encode (72 frames)", partial(encode, frames, out / "a.mp4", fps=fps))
            timed(
                "MP4 encode with 3 s of sound",
                partial(encode, frames, out / "s.mp4", fps=fps, sound=sound),
            )
            timed("GIF encode (72 frames)", partial(encode, frames, out / "a.gif", fps=fps))
            timed(
                "total MP4: enrol + render + encode",
                lambda: render_to_file(
                    enroll(load_picture(selfie, settings, selfie=True), analyzer, settings),
                    clip,
                    swapper,
                    out / "b.mp4",
                ),
            )
            timed(
                "total MP4 with sound: enrol + render + encode",
                lambda: render_to_file(
                    enroll(load_picture(selfie, settings, selfie=True), analyzer, settings),
                    sounding,
                    swapper,
                    out / "s.mp4",
                ),
            )
            timed(
                "total GIF: enrol + render + encode",
                lambda: render_to_file(
                    enroll(load_picture(selfie, settings, selfie=True), analyzer, settings),
                    clip,
                    swapper,
                    out / "b.gif",
                ),
            )

        table = Table(title=f"Render {clip.id} (72 frames, 480x360, 24 fps) — {MACHINE}")
        table.add_column("stage")
        table.add_column("median", justify="right")
        table.add_column("p90", justify="right")
        table.add_column("x floor", justify="right")
        table.add_column("target", justify="right")
        targets = {"total MP4": "<= 1.0 s", "total GIF": "<= 2.0 s", "swap, per frame": "< 10 ms"}
        floor = summary(times[FLOOR])[0]
        for name, values in times.items():
            median, p90 = summary(values)
            unit, factor = ("ms", 1000.0) if "per frame" in name else ("s", 1.0)
            target = next((t for key, t in targets.items() if name.startswith(key)), "")
            fmt = ".1f" if unit == "ms" else ".2f"
            # a per-frame time against the floor's share of one frame
            share = floor / len(originals) if "per frame" in name else floor
            table.add_row(
                name,
                f"{median * factor:{fmt}} {unit}",
                f"{p90 * factor:{fmt}} {unit}",
                f"{median / share:.2f}",
                target,
            )
        console.print(table)
        silent = summary(times["total MP4: enrol + render + encode"])[0]
        sounded = summary(times["total MP4 with sound: enrol + render + encode"])[0]
        console.print(f"A clip with sound renders to MP4 in {sounded / silent:.2f}x the time.")

        # Pre-processing speed: `clips add` on the bundled clip's own media (480 px) and on
        # any videos given.
        videos = [("astronaut-pan media (480x360)", clip.media)]
        videos += [(path.name, path) for path in args.video]
        prep = Table(title="Clip pre-processing (facecast clips add), one core")
        for column in (
            "video",
            "frames",
            "seconds",
            "frames/s",
            "coverage",
            "jitter raw -> smoothed",
        ):
            prep.add_column(column, justify="right")
        for index, (name, path) in enumerate(videos):
            build_settings = Settings(data_dir=out / f"data{index}")
            started = time.perf_counter()
            built = build_clip(ClipSource(path, f"bench{index}"), build_settings, analyzer)
            elapsed = time.perf_counter() - started
            m = built.manifest
            prep.add_row(
                name, str(m.frames), f"{elapsed:.2f}", f"{m.frames / elapsed:.0f}",
                f"{m.coverage:.0%}", f"{m.jitter_raw:.2%} -> {m.jitter_smoothed:.2%}",
            )  # fmt: skip
        console.print(prep)

        # GIF encoders on the same rendered frames.
        gifs = Table(title="GIF encoders on the rendered clip (72 frames, 480x360)")
        for column in ("encoder", "seconds", "size", "PSNR vs frames"):
            gifs.add_column(column, justify="right")
        for name, write in (
            (
                "ffmpeg palettegen+paletteuse (bayer)",
                lambda p: encode(frames, p, fps=24, gif_bytes_per_second=None),
            ),
            ("Pillow, one shared palette, no dither", lambda p: pillow_gif(frames, p, 24)),
        ):
            path = out / f"{name[:6]}.gif"
            durations = []
            for _ in range(3):
                started = time.perf_counter()
                write(path)
                durations.append(time.perf_counter() - started)
            decoded = list(read_video(path))
            quality = np.mean([psnr(a, b) for a, b in zip(decoded, frames, strict=False)])
            gifs.add_row(
                name, f"{summary(durations)[0]:.2f}", f"{path.stat().st_size / 1e6:.2f} MB",
                f"{quality:.1f} dB",
            )  # fmt: skip
        console.print(gifs)


if __name__ == "__main__":
    main()
