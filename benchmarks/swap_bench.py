"""Per-stage speed of the default (dlib + classic) engine at 640x480 on one core.

Prints a table of median and 90th-percentile milliseconds. Target: a swap given landmarks
under 10 ms. Run with ``make bench`` or ``.venv/bin/python benchmarks/swap_bench.py``.
"""

from __future__ import annotations

import argparse

from _common import pin_to_one_core, sample_dir, summary, timings

MACHINE = pin_to_one_core()

import cv2  # noqa: E402  (imported after pinning threads)
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from skimage import data  # noqa: E402

from core.engines.classic import ClassicSwapper  # noqa: E402
from core.faces.analyzer import DlibAnalyzer  # noqa: E402
from core.faces.profile import build_profile  # noqa: E402
from core.media.images import load_image  # noqa: E402


def frame_640x480() -> np.ndarray:
    """The astronaut's head and shoulders, framed 4:3 and scaled to 640x480."""
    astronaut = np.ascontiguousarray(data.astronaut())
    return np.ascontiguousarray(
        cv2.resize(astronaut[0:384, 32:544], (640, 480), interpolation=cv2.INTER_AREA)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    analyzer = DlibAnalyzer()
    frame = frame_640x480()
    hanks = load_image(sample_dir() / "Tom_Hanks_54745.png")
    source_face = analyzer.detect(hanks)[0]
    profile = build_profile(hanks, source_face)
    target = analyzer.detect(frame)[0]
    swapper = ClassicSwapper()
    detector = analyzer._detector  # the raw HOG pass, to show what upsampling costs

    rows = [
        ("HOG detection, no upsampling", lambda: detector.run(frame, 0, 0.0), args.repeat),
        ("HOG detection, 1 upsampling", lambda: detector.run(frame, 1, 0.0), args.repeat // 2),
        ("detect() as used (passes+quality)", lambda: analyzer.detect(frame), args.repeat // 2),
        ("68 landmarks, one face", lambda: analyzer.landmarks(frame, target.bbox), args.repeat),
        ("128-D embedding, one face", lambda: analyzer.embedding(frame, target.landmarks), 10),
        ("enrol texture (build_profile)", lambda: build_profile(hanks, source_face), args.repeat),
        ("swap given landmarks", lambda: swapper.swap(profile, frame, target.landmarks), 100),
    ]
    table = Table(title=f"FaceCast swap stages at 640x480 — {MACHINE}")
    table.add_column("stage")
    table.add_column("median ms", justify="right")
    table.add_column("p90 ms", justify="right")
    table.add_column("runs", justify="right")
    for name, action, repeat in rows:
        median, p90 = summary(timings(action, max(3, repeat)))
        table.add_row(name, f"{median:.1f}", f"{p90:.1f}", str(max(3, repeat)))
    Console().print(table)
    Console().print(
        f"target face: {target.quality.eye_distance:.0f} px between the outer eye corners; "
        "swap target: under 10 ms"
    )


if __name__ == "__main__":
    main()
