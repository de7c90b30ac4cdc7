"""How long a /verify check takes, on one core: the synthetic head (the astronaut's face on
a turning, blinking 3D mesh) answering each challenge, and a flat photo moved in front of
the camera, as 2.6-second 384x384 videos at 15 fps.

The floor, measured in the same run, is decoding the same video and nothing else; "check"
is the whole of :func:`core.faces.liveness.check_liveness` (decode, follow the face, six
identity vectors, judge). Target: a few seconds for a 3-second capture.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import pin_to_one_core, summary

MACHINE = pin_to_one_core()
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the synthetic head lives with the tests

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from skimage import data  # noqa: E402

from core.config import Settings  # noqa: E402
from core.faces.analyzer import DlibAnalyzer  # noqa: E402
from core.faces.liveness import CHALLENGES, LivenessLimits, check_liveness, timed_frames  # noqa: E402
from core.faces.profile import enroll  # noqa: E402
from core.packs.camera import animate_still  # noqa: E402
from tests.core.faces.synthetic_head import (  # noqa: E402
    astronaut_head,
    head_picture,
    write_challenge,
    write_video,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    analyzer = DlibAnalyzer()
    astronaut = np.ascontiguousarray(data.astronaut())
    profile = enroll(astronaut, analyzer, Settings())
    mesh = astronaut_head(analyzer)
    limits = LivenessLimits()
    table = Table(title=f"/verify checks, median of {args.runs} runs — {MACHINE}")
    for column in ("video", "asked", "verdict", "decode floor", "check", "ratio"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as work:
        cases = [(write_challenge(Path(work) / f"{c}.mp4", mesh, c), c, c) for c in CHALLENGES]
        frames, _ = animate_still(head_picture(astronaut), "sway", seconds=2.6, fps=15)
        flat = write_video(Path(work) / "flat.mp4", frames, 15)
        cases.append((flat, "flat photo, sway", "left-right"))
        for video, name, asked in cases:
            floors, checks = [], []
            for _ in range(args.runs):
                started = time.perf_counter()
                for _ in timed_frames(video, max_side=480, max_seconds=8, max_bytes=1 << 30):
                    pass
                floors.append(time.perf_counter() - started)
                started = time.perf_counter()
                report = check_liveness(video, profile, asked, analyzer, limits)  # type: ignore[arg-type]
                checks.append(time.perf_counter() - started)
            floor, _ = summary(floors)
            check, _ = summary(checks)
            table.add_row(
                name,
                asked,
                "pass" if report.passed else "fail",
                f"{floor:.2f} s",
                f"{check:.2f} s",
                f"{check / floor:.0f}x",
            )
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
