"""Speed of the neural engine (FACECAST_ENGINE=insightface) on whatever onnxruntime provider
is present: CUDA with the `gpu` extra and a GPU, the CPU otherwise.

Times each stage per 512x512 frame (SCRFD detection, 1k3d68 landmarks, ArcFace, an inswapper_128
swap) and the swap per batch (a clip's frames go through the model several at once), and
prints a table of median and 90th-percentile milliseconds with each figure's ratio to a floor
measured in the same run (the swap's own warp and paste-back without the model, on the CPU).

Models come from the operator's folder (FACECAST_MODELS_DIR or --models), never from the
network: without them the script says so in one line and exits with code 2.

    .venv/bin/python benchmarks/gpu_bench.py [--models DIR] [--repeat 20] [--batch 8]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from _common import cpu_model, summary, timings

# The four files the engine runs on (`facecast models` lists all six).
NEEDED = ("det_10g", "1k3d68", "w600k_r50", "inswapper_128")


def gpu_name() -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    found = subprocess.run(
        [smi, "--query-gpu=name", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
        timeout=20,
    )
    return found.stdout.strip().splitlines()[0] if found.returncode == 0 and found.stdout else None


def absent_models(folder: Path, registry: Path | None) -> list[str]:
    """The needed model files that are missing or not the expected file (sha256)."""
    from core.engines.models import ModelStore, load_registry

    store = ModelStore(folder, load_registry(registry) if registry else None)
    states = [store.state(name) for name in NEEDED]
    return [f"{s.spec.file} ({s.status})" for s in states if s.status != "present"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, help="model folder (default: the setting's)")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8, help="frames per batched swap")
    args = parser.parse_args()

    from core.config import load_settings

    settings = load_settings(engine="insightface")
    if args.models is not None:
        settings = settings.model_copy(update={"models_dir": args.models})
    folder = settings.resolved_models_dir
    try:
        import onnxruntime as ort
    except ImportError:
        print("gpu_bench: onnxruntime is not installed: pip install 'facecast[neural]' (or [gpu]).")
        return 2
    absent = absent_models(folder, settings.models_registry)
    if absent:
        print(
            f"gpu_bench: model files absent in {folder}: {', '.join(absent)}; nothing timed "
            "(see `facecast models`)."
        )
        return 2

    import cv2
    import numpy as np
    from rich.console import Console
    from rich.table import Table
    from skimage import data

    from core.engines.models import providers
    from core.engines.neural import alignment, paste_back
    from core.engines.registry import ENGINES
    from core.faces.profile import enroll

    engine = ENGINES["insightface"]
    analyzer = engine.analyzer(settings)
    identity = engine.identity(settings, analyzer)
    swapper = engine.swapper(settings)
    swap_batch = getattr(swapper, "swap_batch", None)

    frame = np.ascontiguousarray(data.astronaut())  # 512x512, public domain
    profile = enroll(frame, analyzer, settings, identity=identity)
    faces = analyzer.detect(frame)
    if not faces:
        print("gpu_bench: the detector found no face in the test picture; nothing timed.")
        return 2
    face = max(faces, key=lambda f: f.quality.eye_distance)
    box, points = face.bbox, face.landmarks

    def floor() -> None:  # the swap without its model: warp in, paste back
        matrix = alignment(points, 128)
        crop = cv2.warpAffine(frame, matrix, (128, 128), borderMode=cv2.BORDER_REPLICATE)
        paste_back(frame, np.asarray(crop, np.uint8), matrix)

    stages: list[tuple[str, object, int]] = [  # name, action, frames it covers
        ("floor: warp + paste back (CPU)", floor, 1),
        ("detect (SCRFD det_10g)", lambda: analyzer.detect_boxes(frame), 1),  # type: ignore[attr-defined]
        ("landmarks (1k3d68)", lambda: analyzer.landmarks(frame, box), 1),  # type: ignore[attr-defined]
        ("identity (ArcFace w600k_r50)", lambda: analyzer.embedding(frame, points), 1),
        ("swap, 1 frame (inswapper_128)", lambda: swapper.swap(profile, frame, points), 1),
    ]
    if swap_batch is not None:
        frames, targets = [frame] * args.batch, [points] * args.batch
        batched = (lambda: swap_batch(profile, frames, targets), args.batch)
        stages.append((f"swap, batch of {args.batch}", *batched))
    used = providers()
    table = Table(
        title=(
            f"Neural engine on {used[0]} (onnxruntime {ort.__version__}); "
            f"CPU {cpu_model()}; GPU {gpu_name() or 'none'}"
        )
    )
    for column in ("stage", "median ms", "p90 ms", "ms per frame", "x floor"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    floor_ms = 0.0
    for name, action, covered in stages:
        median, p90 = summary(timings(action, args.repeat))  # type: ignore[arg-type]
        floor_ms = floor_ms or median
        table.add_row(
            name,
            f"{median:.1f}",
            f"{p90:.1f}",
            f"{median / covered:.1f}",
            f"{median / covered / floor_ms:.2f}",
        )
    Console(width=120).print(table)
    print(f"providers: {', '.join(used)}; frames per second (batched swap): ", end="")
    batched = [row for row in stages if row[2] > 1]
    if batched:
        name, action, covered = batched[0]
        median, _ = summary(timings(action, max(3, args.repeat // 4)))  # type: ignore[arg-type]
        print(f"{1000.0 * covered / median:.0f}")
    else:
        print("n/a (this swapper has no batch entry)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
