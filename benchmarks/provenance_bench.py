"""What provenance costs: render_bench.py's "total MP4" (enrol a 12 MP selfie, render the
bundled 3-second ``astronaut-pan``, encode) without and with the marks every output now
carries (the face watermark in each frame and the signed C2PA manifest), interleaved on
one pinned core; then each part alone, and what `facecast verify` takes. Target: the
marks add at most 15 % to the MP4 total. Times are the process's CPU time (all of this runs
in one thread of this process), so that other work on a shared machine does not count.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

from _common import pin_to_one_core
from render_bench import REPO, twelve_megapixel_selfie

MACHINE = pin_to_one_core()

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from core.config import Settings  # noqa: E402
from core.engines.classic import ClassicSwapper  # noqa: E402
from core.faces.analyzer import DlibAnalyzer  # noqa: E402
from core.faces.profile import enroll  # noqa: E402
from core.faces.tracking import steady  # noqa: E402
from core.media.images import load_picture, save_image  # noqa: E402
from core.media.video import read_video  # noqa: E402
from core.packs.library import ClipLibrary  # noqa: E402
from core.render.clip import render_to_file  # noqa: E402
from core.service.provenance import check_file, load_marks  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    console = Console()
    analyzer = DlibAnalyzer()
    swapper = ClassicSwapper()
    selfie = twelve_megapixel_selfie()
    times: dict[str, list[float]] = {}

    def timed(name: str, action: object) -> object:
        started = time.process_time()
        result = action()  # type: ignore[operator]
        times.setdefault(name, []).append(time.process_time() - started)
        return result

    with tempfile.TemporaryDirectory() as work:
        out = Path(work)
        settings = Settings(bundled_clips_dir=REPO / "clips", data_dir=out / "data")
        marks = load_marks(settings)
        clip = ClipLibrary(settings).get("astronaut-pan")

        def total(with_marks: bool) -> object:
            profile = enroll(load_picture(selfie, settings, selfie=True), analyzer, settings)
            return render_to_file(
                profile, clip, swapper, out / "b.mp4", marks=marks if with_marks else None
            )

        total(True)  # warm-up: models, caches, the signer
        for _ in range(args.runs):
            timed("total MP4, before (no marks)", lambda: total(False))
            timed("total MP4, after (watermark + C2PA)", lambda: total(True))

        track = clip.load_track()
        landmarks = steady(track.landmarks, track.visible)
        frames = list(read_video(clip.media))
        watermark = marks.watermarker()
        for _ in range(args.runs):
            started = time.process_time()
            for frame, points in zip(frames, landmarks, strict=False):
                watermark.embed(frame, points)
            times.setdefault("watermark, 72 frames", []).append(time.process_time() - started)
        plain = out / "plain.mp4"
        render_to_file(
            enroll(load_picture(selfie, settings, selfie=True), analyzer, settings),
            clip,
            swapper,
            plain,
        )
        for _ in range(args.runs):
            copy = out / "copy.mp4"
            copy.write_bytes(plain.read_bytes())
            timed("C2PA sign, the MP4", partial(marks.sign, copy))
            still = out / "still.png"
            save_image(frames[0], still)
            timed("C2PA sign, a PNG", partial(marks.sign, still))
        for _ in range(max(1, args.runs // 2)):
            timed(
                "facecast verify, the MP4 (12 frames)",
                lambda: check_file(out / "b.mp4", marks, analyzer),
            )

    table = Table(title=f"Provenance cost, CPU seconds ({MACHINE})")
    table.add_column("stage")
    table.add_column("median", justify="right")
    table.add_column("min", justify="right")
    for name, values in times.items():
        table.add_row(name, f"{statistics.median(values):.3f} s", f"{min(values):.3f} s")
    console.print(table)
    plain, marked = (
        times["total MP4, before (no marks)"],
        times["total MP4, after (watermark + C2PA)"],
    )
    # On a shared machine the fastest runs are the least disturbed: both ratios are shown.
    for what, pick in (("medians", statistics.median), ("fastest runs", min)):
        before, after = pick(plain), pick(marked)
        verdict = "within" if after <= before * 1.15 else "OVER"
        console.print(
            f"{what}: marks add {100 * (after / before - 1):+.1f} % to the MP4 total "
            f"(ratio {after / before:.3f}; target <= 1.15: {verdict})"
        )


if __name__ == "__main__":
    main()
