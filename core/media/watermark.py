"""An invisible watermark in the face region, keyed by the deployment's secret.

The method is dither-modulated QIM (Chen & Wornell 2001) on the mean luma of face cells,
the low-frequency block coefficients that DWT-DCT marks (as in ``invisible-watermark``)
also quantise: each face is mapped by a similarity transform (least squares from its inner
51 landmarks to an average face) onto a 16 x 16 grid of cells covering it, and each cell's
mean is moved to the nearest point of a keyed lattice (step :data:`STEP`) that encodes one
bit of a keyed pseudo-random pattern, one pattern per day. The payload is the deployment
(through the key, derived from its secret) and the day. The change is drawn smoothly: at
most half a step, in luma only.

Reading needs no original: find the face (the analyzer's 68 landmarks), map it onto the same
grid, and score every cell's mean against its lattice, signed by each day's pattern; small
shifts, zooms and turns around the landmarks' placement are tried, since landmarks found on
a re-encoded picture are a pixel or so off. Because the grid follows the face, a crop or
rescale does not move it, and cells several pixels wide keep their means through H.264 at
CRF 32, JPEG at quality 70, a GIF palette or a half-size rescale. Unmarked faces score like
noise (N(0, 1) per placement and day); a score over :data:`THRESHOLD` is a find, the ~140
cells voting together being the error correction."""

from __future__ import annotations

import datetime
import functools
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.typing import NDArray

from core.media.images import RGBImage

Points = NDArray[np.float32]
"""68 face landmarks (iBUG 300-W order), ``(x, y)`` in pixels."""

EPOCH = datetime.date(2026, 12, 1)  # day 0 of the payload: no mark is older
MAX_DAYS = 1 << 14  # ~45 years of days
CELLS = 16  # the face grid is CELLS x CELLS
_CELL = 8  # grid pixels per cell
_SIDE = CELLS * _CELL
EYE_SPAN = 0.34  # eye centres this share of the grid apart...
EYE_HEIGHT = 0.36  # ...at this height
STEP = 22.0  # the lattice step of a cell's mean, in luma levels (a change: at most half)
PASSES = 2  # embedding passes: the second corrects what rounding and warping moved
THRESHOLD = 6.0  # a score above this is ours (unmarked: ~N(0, 1) per placement and day)


def _mask() -> NDArray[np.bool_]:
    """The cells inside the face: an ellipse from the brows to the chin."""
    ys, xs = np.mgrid[0:CELLS, 0:CELLS].astype(np.float64) + 0.5
    cx, cy = CELLS / 2.0, CELLS * 0.56
    return np.asarray(((xs - cx) / (CELLS * 0.40)) ** 2 + ((ys - cy) / (CELLS * 0.44)) ** 2 <= 1.0)


MASK = _mask()
N_CELLS = int(MASK.sum())


def day_number(day: datetime.date) -> int:
    return max(0, min(MAX_DAYS - 1, (day - EPOCH).days))


def day_of(number: int) -> datetime.date:
    return EPOCH + datetime.timedelta(days=number)


@dataclass(frozen=True, slots=True)
class WatermarkKey:
    """The deployment's watermark key (derived from its secret for this purpose only)."""

    key: bytes = field(repr=False)

    def dither(self) -> NDArray[np.float64]:
        """Each face cell's keyed offset of its lattice, in luma levels."""
        seed = hmac.new(self.key, b"watermark-dither", hashlib.sha256).digest()
        rng = np.random.default_rng(np.frombuffer(seed, dtype=np.uint32))
        return np.asarray(rng.uniform(0.0, STEP, N_CELLS), dtype=np.float64)

    def pattern(self, day: int) -> NDArray[np.float64]:
        """The +-1 pattern over the face cells for ``day``."""
        return np.asarray(_patterns(self.key, day, day + 1)[0], dtype=np.float64)

    def patterns(self, last_day: int) -> NDArray[np.float64]:
        """Patterns of every day from the epoch to ``last_day``, one per row."""
        return _patterns(self.key, 0, last_day + 1)


@functools.lru_cache(maxsize=8)
def _pattern_block(key: bytes, block: int) -> NDArray[np.float64]:
    """256 days of patterns from one keyed stream (cached: reading scores all days)."""
    seed = hmac.new(key, b"watermark-block:%d" % block, hashlib.sha256).digest()
    rng = np.random.default_rng(np.frombuffer(seed, dtype=np.uint32))
    return np.where(rng.random((256, N_CELLS)) < 0.5, -1.0, 1.0)


def _patterns(key: bytes, start: int, stop: int) -> NDArray[np.float64]:
    blocks = [_pattern_block(key, b) for b in range(start // 256, (stop - 1) // 256 + 1)]
    joined = np.concatenate(blocks, axis=0)
    offset = (start // 256) * 256
    return joined[start - offset : stop - offset]


def luma(image: RGBImage) -> NDArray[np.float32]:
    return np.asarray(
        cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY), dtype=np.float32
    )


# The inner 51 of the 68 landmarks (brows, nose, eyes, mouth) of an average frontal face,
# eye centres at (-0.5, 0) and (0.5, 0): the grid is fitted to all of them, not only to the
# eyes, so that one landmark found a pixel off moves it little.
_MEAN_FACE = np.array(
    [
        [-0.907, -0.155], [-0.779, -0.295], [-0.585, -0.333], [-0.394, -0.303],
        [-0.211, -0.225], [0.24, -0.222], [0.417, -0.294], [0.606, -0.315], [0.792, -0.286],
        [0.921, -0.145], [0.017, -0.013], [0.019, 0.183], [0.024, 0.369], [0.031, 0.566],
        [-0.216, 0.668], [-0.102, 0.696], [0.019, 0.731], [0.139, 0.692], [0.249, 0.663],
        [-0.693, -0.0], [-0.575, -0.08], [-0.423, -0.073], [-0.289, 0.041], [-0.435, 0.06],
        [-0.585, 0.052], [0.293, 0.041], [0.422, -0.075], [0.569, -0.081], [0.699, 0.002],
        [0.582, 0.056], [0.435, 0.057], [-0.528, 0.868], [-0.329, 0.86], [-0.127, 0.856],
        [0.01, 0.88], [0.146, 0.853], [0.328, 0.847], [0.52, 0.857], [0.341, 1.102],
        [0.149, 1.204], [-0.001, 1.226], [-0.15, 1.21], [-0.349, 1.103], [-0.461, 0.894],
        [-0.13, 0.939], [0.006, 0.957], [0.145, 0.939], [0.451, 0.885], [0.146, 1.085],
        [0.004, 1.105], [-0.14, 1.089],
    ]
)  # fmt: skip


def _to_grid(points: Points) -> NDArray[np.float64]:
    """The 2x3 similarity from frame pixels to the grid (``_SIDE`` square) that best fits
    the landmarks to the average face, its eye centres ``EYE_SPAN`` of the side apart at
    ``EYE_HEIGHT``, level (least squares, as complex numbers)."""
    source = points[17:68].astype(np.float64)
    target = _MEAN_FACE * (EYE_SPAN * _SIDE) + np.array([_SIDE / 2.0, EYE_HEIGHT * _SIDE])
    p = source[:, 0] + 1j * source[:, 1]
    q = target[:, 0] + 1j * target[:, 1]
    p_mean, q_mean = p.mean(), q.mean()
    k = np.sum(np.conj(p - p_mean) * (q - q_mean)) / np.sum(np.abs(p - p_mean) ** 2)
    t = q_mean - k * p_mean
    return np.array([[k.real, -k.imag, t.real], [k.imag, k.real, t.imag]], dtype=np.float64)


def _source(grey: NDArray[np.float32], matrix: NDArray[np.float64]) -> NDArray[np.float32]:
    """The luma to sample the grid from: smoothed first where the face is much bigger than
    the grid, against aliasing."""
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))  # canonical px per frame px
    if scale >= 0.7:
        return grey
    return np.asarray(cv2.GaussianBlur(grey, (0, 0), 0.5 / scale), dtype=np.float32)


def _cells(source: NDArray[np.float32], matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    """The mean luma of each face cell (``CELLS`` x ``CELLS``), read through ``matrix``."""
    canonical = cv2.warpAffine(
        source, matrix, (_SIDE, _SIDE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    return np.asarray(
        cv2.resize(canonical, (CELLS, CELLS), interpolation=cv2.INTER_AREA), dtype=np.float64
    )


@functools.lru_cache(maxsize=1)
def _undraw() -> NDArray[np.float64]:
    """The 1-D operator that undoes :func:`_draw` followed by cell means, so that a wanted
    change of each cell's mean becomes the grid to draw (separable: rows, then columns)."""
    basis = np.eye(CELLS, dtype=np.float32)
    drawn = cv2.resize(basis, (_SIDE, CELLS), interpolation=cv2.INTER_LINEAR)
    seen = cv2.resize(drawn, (CELLS, CELLS), interpolation=cv2.INTER_AREA).astype(np.float64)
    return np.asarray(np.linalg.inv(seen.T), dtype=np.float64)


def _draw(grid: NDArray[np.float64]) -> NDArray[np.float32]:
    """A cell grid as a smooth canonical picture."""
    return np.asarray(
        cv2.resize(grid.astype(np.float32), (_SIDE, _SIDE), interpolation=cv2.INTER_LINEAR),
        dtype=np.float32,
    )


class Watermarker:
    """Embeds one day's pattern into faces, frame after frame."""

    def __init__(self, key: WatermarkKey, day: datetime.date | None = None) -> None:
        self.day = day_number(day or datetime.datetime.now(datetime.UTC).date())
        self._dither = key.dither()
        self._half = np.where(key.pattern(self.day) < 0, STEP / 2.0, 0.0)

    def embed(self, frame: RGBImage, points: Points | None) -> RGBImage:
        """``frame`` with the mark in the face at ``points`` (68 landmarks, frame pixels);
        unchanged when there is no face or it is too small to carry the mark."""
        if points is None or len(points) < 68:
            return frame
        matrix = _to_grid(points)
        scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
        if not np.isfinite(scale) or scale <= 0 or _SIDE / scale < 32:
            return frame  # a face under ~32 px: nothing survives at that size anyway
        box = _box(matrix, frame.shape[0], frame.shape[1])
        if box is None:
            return frame
        x0, y0, x1, y1 = box
        local = matrix.copy()  # the face's box pixels -> grid
        local[:, 2] += matrix[:, :2] @ np.array([x0, y0], np.float64)
        region = frame[y0:y1, x0:x1]
        for _ in range(PASSES):  # the second pass corrects what rounding and warping moved
            region = self._pass(region, local)
        result = frame.copy()
        result[y0:y1, x0:x1] = region
        return result

    def _pass(self, region: RGBImage, matrix: NDArray[np.float64]) -> RGBImage:
        cells = _cells(_source(luma(region), matrix), matrix)
        # Quantisation index modulation: move each cell's mean to the nearest point of its
        # keyed lattice for its bit (Chen & Wornell 2001), blind to the face underneath.
        offset = self._dither + self._half
        values = cells[MASK]
        wanted = np.round((values - offset) / STEP) * STEP + offset
        wanted = np.clip(wanted, STEP / 2, 255 - STEP / 2)  # no lattice point past black/white
        change = np.zeros((CELLS, CELLS))
        change[MASK] = wanted - values
        undraw = _undraw()
        # Drawn smoothly into the face, luma only: the same change in R, G and B.
        delta = cv2.warpAffine(
            _draw(undraw @ change @ undraw.T),
            matrix,
            (region.shape[1], region.shape[0]),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        )
        marked = region.astype(np.float32) + delta[:, :, None] + np.float32(0.5)
        return np.asarray(np.clip(marked, 0, 255), dtype=np.uint8)


def _box(matrix: NDArray[np.float64], height: int, width: int) -> tuple[int, int, int, int] | None:
    """The part of the frame the grid covers (x0, y0, x1, y1), or None when it is outside."""
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [_SIDE, 0, 1], [0, _SIDE, 1], [_SIDE, _SIDE, 1]], np.float64)
    placed = corners @ inverse.T
    x0 = max(0, int(np.floor(placed[:, 0].min())))
    y0 = max(0, int(np.floor(placed[:, 1].min())))
    x1 = min(width, int(np.ceil(placed[:, 0].max())) + 1)
    y1 = min(height, int(np.ceil(placed[:, 1].max())) + 1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


@dataclass(frozen=True, slots=True)
class Reading:
    """What one face said: its best score and the day that scored it."""

    score: float
    day: int

    @property
    def found(self) -> bool:
        return self.score >= THRESHOLD

    @property
    def date(self) -> datetime.date:
        return day_of(self.day)


def _placed(
    base: NDArray[np.float64], move: tuple[float, float, float, float]
) -> NDArray[np.float64]:
    """``base`` (frame -> grid) followed by a small shift, zoom and turn about the grid's
    centre."""
    dx, dy, zoom, degrees = move
    turn = np.asarray(
        cv2.getRotationMatrix2D((_SIDE / 2.0, _SIDE / 2.0), degrees, zoom), dtype=np.float64
    )
    turn[:, 2] += np.array([dx, dy])
    return np.asarray(turn @ np.vstack([base, [0.0, 0.0, 1.0]]), dtype=np.float64)


_REACH = 4  # grid pixels of shift searched each way (half a cell)
_ZOOMS = (0.98, 1.0, 1.02)
_TURNS = (-1.0, 0.0, 1.0)  # degrees
_FINE = (-0.5, -0.25, 0.0, 0.25, 0.5)  # grid pixels


def _shifted_cells(source: NDArray[np.float32], matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    """The face cells' means for every whole-pixel shift of ``matrix`` up to ``_REACH``
    each way, all at once (one warp with a margin, one box filter): ``(shifts, cells)``."""
    margin = _REACH
    padded = matrix.copy()
    padded[:, 2] += margin
    side = _SIDE + 2 * margin
    canvas = cv2.warpAffine(
        source, padded, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    means = cv2.blur(canvas, (_CELL, _CELL), anchor=(0, 0), borderType=cv2.BORDER_REFLECT)
    rows, cols = np.nonzero(MASK)
    offsets = np.arange(-_REACH, _REACH + 1)
    ys = margin + offsets[:, None, None] + _CELL * rows[None, None, :]
    xs = margin + offsets[None, :, None] + _CELL * cols[None, None, :]
    return np.asarray(means[ys, xs], dtype=np.float64).reshape(-1, N_CELLS)


def _best(
    cells: NDArray[np.float64], dither: NDArray[np.float64], patterns: NDArray[np.float64]
) -> tuple[float, int, int]:
    """The best score over placements (rows of ``cells``) and days: score, day, row."""
    phases = np.cos(2 * np.pi * (cells - dither) / STEP)
    # Each cell's phase, signed by that day's bit. Unmarked, the signs are a coin toss
    # whatever the phases: the sum over sqrt(sum of squares) is ~N(0, 1) for every day.
    norms = np.sqrt(np.sum(phases**2, axis=1, keepdims=True))
    scores = phases @ patterns.T / np.maximum(norms, 1e-9)
    row, day = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return float(scores[row, day]), int(day), int(row)


def read_face(
    frame: RGBImage, points: Points, key: WatermarkKey, *, today: datetime.date | None = None
) -> Reading:
    """Score one face (68 landmarks) against every day's pattern up to ``today``.

    Landmarks found again on a re-encoded or rescaled picture are a pixel or so off, which
    on a small face is a good part of a cell, and a cell's mean moves with the shading
    under it: so placements around the landmarks' are tried (shifts up to half a cell, 2 %
    zoom, a degree of turn, then quarter pixels around the best) and the best score kept.
    :data:`THRESHOLD` allows for that many tries."""
    last = day_number(today or datetime.datetime.now(datetime.UTC).date())
    dither, patterns, base = key.dither(), key.patterns(last), _to_grid(points)
    source = _source(luma(frame), base)
    best = Reading(-np.inf, 0)
    placement = base
    offsets = [(dx, dy) for dy in range(-_REACH, _REACH + 1) for dx in range(-_REACH, _REACH + 1)]
    for zoom in _ZOOMS:
        for turn in _TURNS:
            moved = _placed(base, (0.0, 0.0, zoom, turn))
            score, day, row = _best(_shifted_cells(source, moved), dither, patterns)
            if score > best.score:
                dx, dy = offsets[row]
                best, placement = Reading(score, day), _placed(moved, (-dx, -dy, 1.0, 0.0))
    fine = [_placed(placement, (dx, dy, 1.0, 0.0)) for dx in _FINE for dy in _FINE]
    cells = np.stack([_cells(source, matrix)[MASK] for matrix in fine])
    score, day, _ = _best(cells, dither, patterns)
    return best if best.score >= score else Reading(score, day)


def read_faces(
    frame: RGBImage,
    faces: Iterable[Points],
    key: WatermarkKey,
    *,
    today: datetime.date | None = None,
) -> Reading | None:
    """The best reading among ``faces``, or None when there are none."""
    readings = [read_face(frame, points, key, today=today) for points in faces]
    return max(readings, key=lambda r: r.score) if readings else None


def summarise(readings: Sequence[Reading | None]) -> tuple[int, int, datetime.date | None]:
    """Over a file's frames: how many had a face, how many carried the mark, and the day
    most of those named."""
    faces = [r for r in readings if r is not None]
    found = [r for r in faces if r.found]
    if not found:
        return len(faces), 0, None
    days, counts = np.unique([r.day for r in found], return_counts=True)
    return len(faces), len(found), day_of(int(days[int(np.argmax(counts))]))


__all__ = [
    "EPOCH",
    "THRESHOLD",
    "Reading",
    "WatermarkKey",
    "Watermarker",
    "day_number",
    "day_of",
    "read_face",
    "read_faces",
    "summarise",
]
