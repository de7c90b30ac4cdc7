"""Contact sheet of every meme template: 6 frames each, for two faces.

Writes ``benchmarks/out/meme_sheet.png`` (never committed); ``--selfie`` adds your own.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from _common import OUT, labelled_row, sample_dir, save_sheet

from core.config import Settings
from core.engines.classic import ClassicSwapper
from core.faces.analyzer import DlibAnalyzer
from core.faces.profile import build_profile
from core.media.images import load_image
from core.render.memes import MemeLibrary, render_meme

REPO = Path(__file__).resolve().parents[1]
CELL = 180


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--selfie", type=Path, action="append", default=[])
    parser.add_argument("-o", "--output", type=Path, default=OUT / "meme_sheet.png")
    args = parser.parse_args()
    analyzer = DlibAnalyzer()
    settings = Settings(bundled_clips_dir=REPO / "clips")
    from skimage import data

    pictures = [
        ("astronaut", np.ascontiguousarray(data.astronaut())),
        ("Tom Hanks sample", load_image(sample_dir() / "Tom_Hanks_54745.png")),
    ] + [(path.stem, load_image(path)) for path in args.selfie]
    profiles = []
    for name, picture in pictures:
        face = max(analyzer.detect(picture), key=lambda f: f.quality.eye_distance)
        profiles.append((name, build_profile(picture, face)))
    rows = []
    for template in MemeLibrary(settings).all():
        for name, profile in profiles:
            frames = list(render_meme(profile, template, settings, ClassicSwapper()))
            picks = np.linspace(0, len(frames) - 1, 6).round().astype(int)
            cells = []
            for index in picks:
                frame = frames[index]
                width = round(frame.shape[1] * CELL / frame.shape[0])
                cells.append(cv2.resize(frame, (width, CELL), interpolation=cv2.INTER_AREA))
            rows.append(labelled_row(cells, f"{template.id} <- {name}"))
    save_sheet(rows, args.output)
    print(f"wrote {args.output}: {len(rows)} rows of 6 frames")


if __name__ == "__main__":
    main()
