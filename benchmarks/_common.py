"""Helpers shared by the benchmark scripts: one-core pinning and the public sample faces."""

from __future__ import annotations

import importlib.util
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

OUT = Path(__file__).resolve().parent / "out"


def pin_to_one_core() -> str:
    """Run on one CPU so figures mean "per core"; returns a description of the machine."""
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import cv2

    cv2.setNumThreads(1)
    return f"{cpu_model()}, 1 core pinned, Python {platform.python_version()}"


def cpu_model() -> str:
    """The CPU's model name (timings differ twofold between the machines this runs on)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sample_dir() -> Path:
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("insightface's sample images are missing: run `make setup` first")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "images"


def timings(action: Callable[[], object], repeat: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        action()
    result = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        result.append((time.perf_counter() - started) * 1000.0)
    return result


def summary(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return statistics.median(ordered), p90


def labelled_row(cells: list[NDArray[np.uint8]], caption: str) -> NDArray[np.uint8]:
    """Pictures of equal height side by side, with a caption in the top-left corner."""
    from PIL import Image, ImageDraw, ImageFont

    row = Image.fromarray(np.hstack(cells))
    font = ImageFont.load_default(size=15)
    ImageDraw.Draw(row).text((5, 3), caption, font=font, fill=(255, 255, 0))
    return np.asarray(row)


def save_sheet(rows: list[NDArray[np.uint8]], path: Path) -> None:
    """Stack rows of different widths (left-aligned, a thin gap between) into one PNG."""
    from PIL import Image

    width = max(row.shape[1] for row in rows)
    padded = [np.pad(row, ((0, 3), (0, width - row.shape[1]), (0, 0))) for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.vstack(padded)).save(path)
