"""Median time to make each bundled meme as a GIF, on one core.

Each template is rendered from an enrolled profile (effects run at their own 2-ish seconds
and 360 px; clip templates swap the face into their clip first) and encoded to GIF through
the same encoder as clips. Target: each under 1.5 s for a 2-second 360-px GIF.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import pin_to_one_core, sample_dir, summary

MACHINE = pin_to_one_core()

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from core.config import Settings  # noqa: E402
from core.engines.classic import ClassicSwapper  # noqa: E402
from core.faces.analyzer import DlibAnalyzer  # noqa: E402
from core.faces.profile import enroll  # noqa: E402
from core.media.images import load_image  # noqa: E402
from core.render.memes import MemeLibrary, meme_timing, render_meme_to_file  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    settings = Settings(bundled_clips_dir=REPO / "clips")
    group = load_image(sample_dir() / "t1.jpg")
    profile = enroll(group[200:520, 380:650].copy(), DlibAnalyzer(), settings)
    swapper = ClassicSwapper()
    table = Table(title=f"Meme GIFs, median of {args.runs} runs — {MACHINE}")
    for column in ("template", "kind", "frames", "seconds of meme", "size", "median", "p90"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as work:
        for template in MemeLibrary(settings).all():
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                result = render_meme_to_file(
                    profile, template, settings, swapper, Path(work) / "meme.gif"
                )
                times.append(time.perf_counter() - started)
            median, p90 = summary(times)
            count, fps = meme_timing(template, settings)
            m = template.manifest
            table.add_row(
                m.id,
                f"effect {m.effect}" if m.effect else f"clip {m.clip}",
                str(count),
                f"{count / fps:.1f}s",
                f"{result.width}x{result.height}, {result.size_bytes / 1e6:.2f} MB",
                f"{median:.2f} s",
                f"{p90:.2f} s",
            )
    Console().print(table)
    Console().print("target: each under 1.5 s (2-second 360-px GIF, one core)")


if __name__ == "__main__":
    main()
