"""Contact sheet of rendered clips: 6 frames of each clip, once per selfie.

Writes ``benchmarks/out/clip_sheet.png`` (never committed). Selfies default to two people
of insightface's public group photo (the bundled clips are all the astronaut, so she is
only added with ``--astronaut``); ``--selfie`` adds your own, ``--clip`` limits the clips,
``--raw`` adds the untouched clip as a first row.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from _common import OUT, labelled_row, sample_dir, save_sheet
from skimage import data

from core.config import Settings
from core.engines.classic import ClassicSwapper
from core.faces.analyzer import DlibAnalyzer
from core.faces.profile import FaceProfile, build_profile
from core.media.images import RGBImage, load_image
from core.media.video import read_video
from core.packs.library import ClipLibrary
from core.render.clip import render_clip

CELL = 180


def _profile(analyzer: DlibAnalyzer, image: RGBImage) -> FaceProfile:
    face = max(analyzer.detect(image), key=lambda f: f.quality.eye_distance)
    return build_profile(image, face, embedding=analyzer.embedding(image, face.landmarks))


def _pick(frames: list[RGBImage], count: int = 6) -> list[RGBImage]:
    indices = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[i] for i in indices]


def _row(frames: list[RGBImage], caption: str) -> RGBImage:
    cells = []
    for frame in _pick(frames):
        scale = CELL / frame.shape[0]
        cells.append(cv2.resize(frame, (round(frame.shape[1] * scale), CELL)))
    return labelled_row(cells, caption)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--selfie", type=Path, action="append", default=[])
    parser.add_argument("--clip", action="append", default=[])
    parser.add_argument("--raw", action="store_true")
    parser.add_argument("--astronaut", action="store_true", help="add the astronaut selfie")
    parser.add_argument("-o", "--output", type=Path, default=OUT / "clip_sheet.png")
    args = parser.parse_args()

    analyzer = DlibAnalyzer()
    group = load_image(sample_dir() / "t1.jpg")
    selfies = [("group #3", group[200:520, 380:650]), ("group #6", group[180:480, 1020:1280])]
    if args.astronaut:
        selfies.append(("astronaut", np.ascontiguousarray(data.astronaut())))
    selfies += [(path.stem, load_image(path)) for path in args.selfie]
    profiles = [(name, _profile(analyzer, image)) for name, image in selfies]
    library = ClipLibrary(Settings())
    clips = [library.get(c) for c in args.clip] if args.clip else library.all()
    rows = []
    for clip in clips:
        if args.raw:
            rows.append(_row(list(read_video(clip.media)), f"{clip.id} (original)"))
        for name, profile in profiles:
            frames = list(render_clip(profile, clip, ClassicSwapper()))
            rows.append(_row(frames, f"{clip.id} <- {name}"))
    save_sheet(rows, args.output)
    print(f"wrote {args.output}: {len(rows)} rows of 6 frames")


if __name__ == "__main__":
    main()
