"""Write the example pictures in clips/examples/ from public-domain sources.

`astronaut.jpg` is scikit-image's copy of NASA's portrait of Eileen Collins (public domain);
`astronaut-drawn.jpg` is the same picture redrawn with OpenCV's stylization filter (ink
outlines, flat paint), the project's own work, to show that drawn faces work too.
Run by `make bundled-clips`; the outputs are committed, this script documents them.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage import data

EXAMPLES = Path(__file__).resolve().parents[1] / "clips" / "examples"


def main() -> None:
    astronaut = np.ascontiguousarray(data.astronaut())
    Image.fromarray(astronaut).save(EXAMPLES / "astronaut.jpg", quality=90)
    drawn = cv2.stylization(astronaut, sigma_s=60, sigma_r=0.5)
    Image.fromarray(np.ascontiguousarray(drawn)).save(EXAMPLES / "astronaut-drawn.jpg", quality=90)
    print(f"wrote {EXAMPLES}/astronaut.jpg and astronaut-drawn.jpg")


if __name__ == "__main__":
    main()
