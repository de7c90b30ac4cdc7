"""Output sizes: every bundled clip rendered with the astronaut's face, as the chat bots
make them (480 px, default settings), as MP4 and as GIF; and, for comparison, the GIF at
256 colours and the clip's full frame rate (no per-second budget), as it was before.

    cd benchmarks && ../.venv/bin/python output_sizes.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.config import Settings  # noqa: E402
from core.engines.classic import ClassicSwapper  # noqa: E402
from core.faces.analyzer import DlibAnalyzer  # noqa: E402
from core.faces.profile import enroll  # noqa: E402
from core.media.images import load_picture  # noqa: E402
from core.packs.library import ClipLibrary  # noqa: E402
from core.render.tasks import clip_to_file  # noqa: E402


def main() -> None:
    settings = Settings(bundled_clips_dir=REPO / "clips")
    selfie = load_picture(REPO / "clips" / "examples" / "astronaut.jpg", settings, selfie=True)
    profile = enroll(selfie, DlibAnalyzer(), settings)
    swapper = ClassicSwapper()
    table = Table(title=f"Output sizes at 480 px (GIF budget {settings.gif_bytes_per_second} B/s)")
    for column in ("clip", "seconds", "MP4", "GIF", "GIF fps, size", "GIF before"):
        table.add_column(column, justify="left" if column == "clip" else "right", no_wrap=True)
    with tempfile.TemporaryDirectory() as work:
        for clip in ClipLibrary(settings).all():
            made = {}
            for name, suffix, budget in (("mp4", ".mp4", True), ("gif", ".gif", True),
                                         ("before", ".gif", False)):  # fmt: skip
                output = Path(work) / f"{clip.id}-{name}{suffix}"
                made[name] = clip_to_file(
                    profile, clip, swapper, output, settings, size=480, gif_budget=budget
                )
            gif = made["gif"]
            table.add_row(
                clip.id,
                f"{clip.manifest.duration:.1f}",
                f"{made['mp4'].size_bytes / 1e6:.2f} MB",
                f"{gif.size_bytes / 1e6:.2f} MB",
                f"{gif.fps:g} fps, {gif.width}x{gif.height}",
                f"{made['before'].size_bytes / 1e6:.2f} MB",
            )
    Console().print(table)


if __name__ == "__main__":
    main()
