"""Render source | target | result rows to look at swaps with your own eyes.

Writes ``benchmarks/out/contact_sheet.png`` (never committed). The default pairs use only
public sample faces: a greyscale source (Tom Hanks' sample), an open-mouth target (the
astronaut's smile) and people of the group photo. ``--photos DIR`` adds a ring of pairs from
your own folder of portraits.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from _common import OUT, labelled_row, sample_dir, save_sheet
from skimage import data

from core.engines.classic import ClassicSwapper
from core.faces.analyzer import DlibAnalyzer, Face
from core.faces.profile import build_profile
from core.media.images import RGBImage, load_image

ROW_HEIGHT = 256


def _crop_around(image: RGBImage, face: Face, margin: float = 0.9) -> RGBImage:
    x0, y0, x1, y1 = face.bbox
    grow = int((x1 - x0) * margin)
    height, width = image.shape[:2]
    return image[
        max(0, y0 - grow) : min(height, y1 + grow), max(0, x0 - grow) : min(width, x1 + grow)
    ]


def _fit(image: RGBImage) -> RGBImage:
    scale = ROW_HEIGHT / image.shape[0]
    size = (max(1, round(image.shape[1] * scale)), ROW_HEIGHT)
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)


def _biggest(analyzer: DlibAnalyzer, image: RGBImage) -> Face:
    faces = analyzer.detect(image)
    if not faces:
        raise SystemExit("no face found in one of the pictures")
    return max(faces, key=lambda f: f.quality.eye_distance)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=Path, help="a folder of portraits to add pairs from")
    parser.add_argument("-o", "--output", type=Path, default=OUT / "contact_sheet.png")
    args = parser.parse_args()

    analyzer = DlibAnalyzer()
    swapper = ClassicSwapper()
    samples = sample_dir()
    astronaut = np.ascontiguousarray(data.astronaut())
    group = load_image(samples / "t1.jpg")
    people = analyzer.detect(group)
    person = {n: _crop_around(group, people[n - 1], 1.2) for n in (1, 3, 4, 6)}
    pictures: list[tuple[str, RGBImage, str, RGBImage]] = [
        ("Hanks (greyscale)", load_image(samples / "Tom_Hanks_54745.png"), "astronaut", astronaut),
        ("astronaut", astronaut, "group #3 (open mouth)", person[3]),
        ("group #1", person[1], "astronaut", astronaut),
        ("group #6", person[6], "group #4", person[4]),
        ("astronaut", astronaut, "group #1", person[1]),
    ]
    if args.photos:
        own = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in {".jpg", ".png"})
        loaded = [(p.stem, load_image(p)) for p in own]
        for (name_a, a), (name_b, b) in zip(loaded, loaded[1:] + loaded[:1], strict=True):
            pictures.append((name_a, a, name_b, b))

    rows = []
    for source_name, source, target_name, target in pictures:
        profile = build_profile(source, _biggest(analyzer, source))
        face = _biggest(analyzer, target)
        result = swapper.swap(profile, target, face.landmarks)
        cells = [
            _fit(profile.texture),
            _fit(_crop_around(target, face)),
            _fit(_crop_around(result, face)),
        ]
        rows.append(labelled_row(cells, f"{source_name} -> {target_name}"))
    save_sheet(rows, args.output)
    print(f"wrote {args.output} ({len(rows)} pairs: source texture | target | result)")


if __name__ == "__main__":
    main()
