"""How a swapped clip looks: identity, sharpness, seams, colour, expression, flicker.

Renders every selfie of a development set (``--devset``: ``photos/*.jpg``, ``clips/*.mp4``)
into every clip with the classic engine and compares, on sampled frames (``--every``), the
original clip frame with the output frame at the same index:

- identity gain: dlib 128-D descriptor distance to the selfie, original minus output;
- sharpness: 10-90 % edge rise width at each image's own strongest edges (Canny) inside
  the jaw/brow hull, original width / output width (1.0 = as sharp, < 1 softer);
- seams: mean gradient magnitude in a thin band along the blend outline and along the inner
  lip line, output / original; and a thin vertical line through the lips (the largest
  rise, original to output, of a lip column's luminance over its neighbours'), grey levels;
- face vs neck: CIEDE2000 between mean Lab of the cheeks and of a patch below the chin,
  output minus original;
- expression following: mouth opening, eye opening and brow height from landmarks
  detected on the output and on the original: Pearson r and std ratio (output / original);
- flicker: mean absolute frame-to-frame change inside the face, output / original (and
  the same after undoing the head's rigid motion);
- render wall time (the AI badge is left off so it does not enter the measures).

Clip packs are built once (``clips add``, trimmed to ``--max-seconds``) under
``benchmarks/out/quality/packs``; contact sheets (original | output | 2x face crops) go to
``benchmarks/out/quality/sheets``. ``--stills`` also swaps each photo into each other photo.
Never commit anything from ``benchmarks/out``: the development set may not be published.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from _common import OUT, labelled_row, pin_to_one_core, save_sheet

MACHINE = pin_to_one_core()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from numpy.typing import NDArray  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from skimage.color import deltaE_ciede2000, rgb2lab  # noqa: E402

from core.config import Settings  # noqa: E402
from core.engines.classic import ClassicSwapper  # noqa: E402
from core.errors import ClipNotFound, FaceCastError  # noqa: E402
from core.faces.analyzer import DlibAnalyzer, box_iou, identity_distance  # noqa: E402
from core.faces.landmarks import (  # noqa: E402
    BROWS,
    INNER_LIPS,
    JAW,
    LEFT_EYE,
    RIGHT_EYE,
    Points,
    extend_points,
    eye_centres,
    eye_distance,
)
from core.faces.profile import FaceProfile, build_profile, enroll  # noqa: E402
from core.media.images import RGBImage, load_picture  # noqa: E402
from core.media.video import read_video  # noqa: E402
from core.packs.build import ClipSource, build_clip  # noqa: E402
from core.packs.library import Clip, load_clip  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUALITY = OUT / "quality"
Mask = NDArray[np.bool_]
SWAPPER_OPTIONS: dict[str, float | bool] = {}  # --set: engine options under trial
Grey = NDArray[np.float32]


# --------------------------------------------------------------------------- geometry


def _polygon_mask(shape: tuple[int, int], polygon: Points, *, hull: bool = False) -> Mask:
    mask = np.zeros(shape, np.uint8)
    points = np.asarray(polygon, np.float32)
    if hull:
        points = np.asarray(cv2.convexHull(points), np.float32).reshape(-1, 2)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask > 0


def face_mask(shape: tuple[int, int], points: Points) -> Mask:
    """Inside the hull of the jaw and brow landmarks."""
    return _polygon_mask(shape, np.vstack([points[JAW], points[BROWS]]), hull=True)


def outline_band(shape: tuple[int, int], points: Points, reach: NDArray[np.float32]) -> Mask:
    """Where the swap's alpha ramps: up to 0.2 eye distances inside the blend outline (jaw
    and forehead arc, as the classic engine draws it) and 0.05 outside."""
    unit = eye_distance(points)
    extended = extend_points(points, reach)
    outline = np.vstack([extended[JAW], extended[68:][::-1]])
    inside = _polygon_mask(shape, outline).astype(np.uint8)
    into = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
    out_of = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3)
    return ((inside > 0) & (into <= 0.2 * unit)) | ((inside == 0) & (out_of <= 0.05 * unit))


def lip_band(shape: tuple[int, int], points: Points) -> Mask:
    """A thin band along the inner lip contour (60-67): the line between the lips."""
    mask = np.zeros(shape, np.uint8)
    thickness = max(2, round(0.05 * eye_distance(points)))
    pts = np.round(points[INNER_LIPS]).astype(np.int32)
    cv2.polylines(mask, [pts], True, 1, thickness=thickness)
    return mask > 0


def _down(points: Points) -> NDArray[np.float32]:
    eyes = np.mean(eye_centres(points), axis=0)
    down = points[8] - eyes
    return np.asarray(down / max(float(np.linalg.norm(down)), 1e-6), np.float32)


def cheek_mask(shape: tuple[int, int], points: Points) -> Mask:
    """Two discs on the cheeks, between jaw, nose, eye and mouth corner."""
    unit = eye_distance(points)
    mask = np.zeros(shape, np.uint8)
    for corners in ([2, 31, 41, 48], [14, 35, 46, 54]):
        centre = points[corners].mean(axis=0)
        cv2.circle(mask, (round(centre[0]), round(centre[1])), max(2, round(0.1 * unit)), 1, -1)
    return mask > 0


def neck_mask(shape: tuple[int, int], points: Points) -> Mask | None:
    """A patch below the chin (0.1-0.4 eye distances down the face axis, 60 % as wide as
    jaw points 6-10); None when less than 40 % of it is inside the frame."""
    unit = eye_distance(points)
    down = _down(points)
    side = np.array([-down[1], down[0]], np.float32)
    half = 0.3 * float(np.linalg.norm(points[10] - points[6]))
    near, far = points[8] + down * 0.1 * unit, points[8] + down * 0.4 * unit
    quad = np.array([near - side * half, near + side * half, far + side * half, far - side * half])
    mask = _polygon_mask(shape, quad)
    whole = 0.6 * unit * half  # the patch's area
    return mask if mask.sum() >= 0.4 * whole else None


# --------------------------------------------------------------------------- measures


def grey_of(image: RGBImage) -> Grey:
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), np.float32)


def gradient(grey: Grey) -> Grey:
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return np.asarray(np.hypot(gx, gy), np.float32)


_RADIUS, _STEP = 8.0, 0.25  # edge profiles: half length and spacing, pixels


def edge_widths(grey: Grey, mask: Mask, *, limit: int = 600, min_contrast: float = 20.0) -> Grey:
    """10-90 % rise widths (px) across the strongest edges inside ``mask``.

    Edges: Canny with thresholds at this image's own 90th/70th gradient percentiles in the
    mask. At each edge pixel the intensity profile is sampled along the gradient, extended
    both ways to the nearest local extrema (Marziliano's edge width), and the 10 % and
    90 % crossings between them are interpolated.
    """
    magnitude = gradient(grey)
    inside = magnitude[mask]
    if inside.size < 50:
        return np.zeros(0, np.float32)
    high, low = np.percentile(inside, 90), np.percentile(inside, 70)
    grey8 = np.clip(grey, 0, 255).astype(np.uint8)
    edges = cv2.Canny(grey8, float(low) * 2, float(high) * 2, L2gradient=True) > 0
    # Canny's thresholds are on its own Sobel scale (x2 of the normalised one above, close
    # enough for choosing "strong"); keep edge pixels away from the mask border.
    ys, xs = np.nonzero(edges & cv2.erode(mask.astype(np.uint8), np.ones((5, 5))).astype(bool))
    if len(xs) == 0:
        return np.zeros(0, np.float32)
    if len(xs) > limit:
        pick = np.random.default_rng(0).choice(len(xs), limit, replace=False)
        ys, xs = ys[pick], xs[pick]
    smooth = cv2.GaussianBlur(grey, (0, 0), 1.0)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)[ys, xs]
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)[ys, xs]
    norm = np.maximum(np.hypot(gx, gy), 1e-6)
    nx, ny = gx / norm, gy / norm
    t = np.arange(-_RADIUS, _RADIUS + _STEP / 2, _STEP, dtype=np.float32)
    map_x = (xs[:, None] + nx[:, None] * t[None, :]).astype(np.float32)
    map_y = (ys[:, None] + ny[:, None] * t[None, :]).astype(np.float32)
    p = cv2.remap(grey, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    p = np.asarray(p, np.float32)  # rises along t by construction (t follows the gradient)
    count, samples = p.shape
    centre = samples // 2
    d = np.diff(p, axis=1)
    tol = 0.5
    right = d[:, centre:] < -tol
    hi = np.where(right.any(axis=1), centre + right.argmax(axis=1), samples - 1)
    left = d[:, :centre][:, ::-1] < -tol
    lo = np.where(left.any(axis=1), centre - left.argmax(axis=1), 0)
    rows = np.arange(count)
    lo_v, hi_v = p[rows, lo], p[rows, hi]
    contrast = hi_v - lo_v
    index = np.arange(samples)[None, :]
    span = (index >= lo[:, None]) & (index <= hi[:, None])

    def crossing(level: NDArray[np.float32]) -> NDArray[np.float32]:
        above = (p >= level[:, None]) & span
        k = np.maximum(above.argmax(axis=1), 1)
        a, b = p[rows, k - 1], p[rows, k]
        frac = np.clip((level - a) / np.maximum(b - a, 1e-6), 0.0, 1.0)
        return np.asarray(np.where(k > lo, k - 1 + frac, k), np.float32)

    t10 = crossing(lo_v + 0.1 * contrast)
    t90 = crossing(lo_v + 0.9 * contrast)
    widths = (t90 - t10) * _STEP
    keep = (contrast >= min_contrast) & (widths > 0)
    return np.asarray(widths[keep], np.float32)


def _lips(points: Points) -> tuple[Points, Points]:
    """The upper and the lower lip (outer contour there and back along the inner one)."""
    upper = np.vstack([points[48:55], points[[64, 63, 62, 61, 60]]])
    lower = np.vstack([points[[48, 59, 58, 57, 56, 55, 54]], points[[64, 65, 66, 67, 60]]])
    return upper, lower


def _column_detail(grey: Grey, mask: Mask) -> NDArray[np.float64]:
    """Per column of ``mask``: the mean over its pixels of the luminance minus the median of
    its 7 horizontal neighbours (a 1-3 px vertical line stands out; lip shading does not).
    Columns with fewer than 3 pixels are 0."""
    padded = np.pad(grey, ((0, 0), (3, 3)), mode="edge")
    width = grey.shape[1]
    local = np.median(np.stack([padded[:, i : i + width] for i in range(7)]), axis=0)
    counts = mask.sum(axis=0)
    sums = ((grey - local) * mask).sum(axis=0)
    return np.where(counts >= 3, sums / np.maximum(counts, 1), 0.0)


def vertical_line(original: Grey, output: Grey, points: Points, moved: Points) -> float:
    """A thin vertical line through a lip that the original has not: the largest rise, over
    the columns of each lip, of the column detail (:func:`_column_detail`) from original
    (lips at ``points``) to output (lips at ``moved``; the swap may move and widen the
    mouth, so the output's columns are resampled onto the original's), in grey levels
    (about 0 when the swap adds no line; teeth gaps, kept from the original's mouth,
    cancel)."""
    worst = 0.0
    for lip_orig, lip_out in zip(_lips(points), _lips(moved), strict=True):
        mask_orig = _polygon_mask(original.shape, lip_orig)
        mask_out = _polygon_mask(original.shape, lip_out)
        cols_orig = np.nonzero(mask_orig.sum(axis=0) >= 3)[0]
        cols_out = np.nonzero(mask_out.sum(axis=0) >= 3)[0]
        if min(len(cols_orig), len(cols_out)) < 9:
            continue
        detail_orig = np.abs(_column_detail(original, mask_orig))[cols_orig]
        detail_out = np.abs(_column_detail(output, mask_out))[cols_out]
        # a one-column line must survive the resampling: the largest of the output
        # columns that fall on each original column
        spots = np.linspace(0, len(cols_out) - 1, len(cols_orig))
        low = np.floor(spots).astype(int)
        high = np.minimum(np.ceil(spots).astype(int), len(cols_out) - 1)
        resampled = np.maximum(detail_out[low], detail_out[high])
        worst = max(worst, float((resampled - detail_orig)[2:-2].max()))
    return worst


def mean_lab(image: RGBImage, mask: Mask) -> NDArray[np.float64]:
    return np.asarray(rgb2lab(image[mask][None, :, :].astype(np.float64) / 255.0)[0].mean(axis=0))


def face_neck_delta(
    original: RGBImage, output: RGBImage, points: Points
) -> tuple[float, float] | None:
    """CIEDE2000 between the mean Lab of the cheeks and of the neck, in the original and in
    the output. Neck pixels are those of the patch below the chin whose colour in the
    original is near its cheeks' (a collar, a beard or a black border is left out); the same
    pixels are used in the output."""
    shape = original.shape[:2]
    neck = neck_mask(shape, points)
    if neck is None:
        return None
    cheeks = cheek_mask(shape, points)
    cheek_lab = mean_lab(original, cheeks)
    ys, xs = np.nonzero(neck)
    lab = rgb2lab(original[ys, xs][None, :, :].astype(np.float64) / 255.0)[0]
    near = (np.abs(lab[:, 1:] - cheek_lab[1:]).max(axis=1) < 12.0) & (
        np.abs(lab[:, 0] - cheek_lab[0]) < 35.0
    )
    if near.sum() < 15:
        return None
    skin = np.zeros(shape, bool)
    skin[ys[near], xs[near]] = True
    return tuple(  # type: ignore[return-value]
        float(deltaE_ciede2000(mean_lab(image, cheeks), mean_lab(image, skin)))
        for image in (original, output)
    )


def expression(points: Points) -> tuple[float, float, float]:
    """Mouth opening (inner-lip height / eye distance), eye aspect ratio, brow height."""
    unit = max(eye_distance(points), 1e-6)
    mouth = np.mean(
        [np.linalg.norm(points[a] - points[b]) for a, b in ((61, 67), (62, 66), (63, 65))]
    )

    def ear(eye: slice) -> float:
        p = points[eye]
        vertical = np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])
        return float(vertical / max(2.0 * np.linalg.norm(p[0] - p[3]), 1e-6))

    right, left = eye_centres(points)
    brows = np.concatenate(
        [
            np.linalg.norm(points[17:22] - right, axis=1),
            np.linalg.norm(points[22:27] - left, axis=1),
        ]
    )
    return float(mouth / unit), (ear(RIGHT_EYE) + ear(LEFT_EYE)) / 2.0, float(brows.mean() / unit)


def pearson(a: list[float], b: list[float]) -> float:
    if len(a) < 3 or np.std(a) < 1e-9 or np.std(b) < 1e-9:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def std_ratio(out: list[float], orig: list[float]) -> float:
    if len(out) < 3 or np.std(orig) < 1e-9:
        return math.nan
    return float(np.std(out) / np.std(orig))


def _ratio(a: float, b: float) -> float:
    return a / b if b > 1e-9 else math.nan


def _median(values: list[float]) -> float:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


# --------------------------------------------------------------------------- faces


@dataclass(slots=True)
class Found:
    """Landmarks for one frame, and whether dlib's detector found the face (or they were
    fitted in a fallback box)."""

    landmarks: Points
    detected: bool
    embedding: NDArray[np.float32]


def _box_of(points: Points) -> tuple[int, int, int, int]:
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return round(x0), round(y0), round(x1), round(y1)


def locate(analyzer: DlibAnalyzer, image: RGBImage, hint: Points) -> Found:
    """The face nearest ``hint`` (landmarks where it should be): detect, landmark, embed."""
    image = np.ascontiguousarray(image)
    hint_box = _box_of(hint)
    boxes = analyzer.detect_boxes(image, upsample=max(image.shape[:2]) < 400, verify=False)
    best = max(boxes, key=lambda b: box_iou(b[0], hint_box), default=None)
    detected = best is not None and box_iou(best[0], hint_box) > 0.2
    if detected and best is not None:
        box = best[0]
    else:
        # dlib's boxes are about the inner face: jaw sides, brows to chin.
        x0, y0, x1, y1 = hint_box
        box = (x0, y0 + (y1 - y0) // 8, x1, y1)
    points = analyzer.landmarks(image, box)
    return Found(points, detected, analyzer.embedding(image, points))


# --------------------------------------------------------------------------- results


@dataclass(slots=True)
class Render:
    selfie: str
    target: str  # clip id, or the photo a still was swapped into
    still: bool = False
    frames: int = 0  # frames measured
    detected: int = 0  # of which the output face was found by the detector
    identity_gain: list[float] = field(default_factory=list)
    identity_out: list[float] = field(default_factory=list)
    sharp_orig: list[float] = field(default_factory=list)  # median edge width per frame
    sharp_out: list[float] = field(default_factory=list)
    seam_hull: list[float] = field(default_factory=list)
    seam_lips: list[float] = field(default_factory=list)
    vline: list[float] = field(default_factory=list)  # new line through the lips, grey levels
    delta_e: list[float] = field(default_factory=list)  # output minus original
    delta_e_orig: list[float] = field(default_factory=list)
    expr_orig: list[tuple[float, float, float]] = field(default_factory=list)
    expr_out: list[tuple[float, float, float]] = field(default_factory=list)
    flicker_orig: float = math.nan
    flicker_out: float = math.nan
    aligned_flicker: float = math.nan  # output / original, head motion undone
    seconds: float = math.nan
    rendered_frames: int = 0

    @property
    def sharpness(self) -> float:
        return _ratio(_median(self.sharp_orig), _median(self.sharp_out))

    @property
    def flicker(self) -> float:
        return _ratio(self.flicker_out, self.flicker_orig)

    def follow(self, which: int) -> tuple[float, float]:
        out = [e[which] for e in self.expr_out]
        orig = [e[which] for e in self.expr_orig]
        return pearson(out, orig), std_ratio(out, orig)


def measure_pair(
    render: Render,
    analyzer: DlibAnalyzer,
    selfie: FaceProfile,
    original: RGBImage,
    output: RGBImage,
    geometry: Points,
    found_orig: Found,
) -> None:
    """Everything but the temporal measures, for one original/output pair. ``geometry``:
    the landmarks the swap used (the clip track, or those detected on the still)."""
    shape = original.shape[:2]
    found_out = locate(analyzer, output, found_orig.landmarks)
    render.frames += 1
    render.detected += found_out.detected
    if selfie.embedding is not None:
        d_orig = identity_distance(found_orig.embedding, selfie.embedding)
        d_out = identity_distance(found_out.embedding, selfie.embedding)
        render.identity_gain.append(d_orig - d_out)
        render.identity_out.append(d_out)
    g_orig, g_out = grey_of(original), grey_of(output)
    face = face_mask(shape, geometry)
    w_orig, w_out = edge_widths(g_orig, face), edge_widths(g_out, face)
    if len(w_orig) >= 10 and len(w_out) >= 10:
        render.sharp_orig.append(float(np.median(w_orig)))
        render.sharp_out.append(float(np.median(w_out)))
    m_orig, m_out = gradient(g_orig), gradient(g_out)
    # Seams are looked for where each picture has its own outline and lips: the swap may
    # move the face's features (it gives the clip the selfie's proportions), and a band
    # drawn at the clip's old lip line would miss the output's.
    moved = found_out.landmarks if found_out.detected else geometry
    hull_orig = outline_band(shape, geometry, selfie.reach)
    hull_out = outline_band(shape, moved, selfie.reach)
    lips_orig, lips_out = lip_band(shape, geometry), lip_band(shape, moved)
    render.seam_hull.append(_ratio(float(m_out[hull_out].mean()), float(m_orig[hull_orig].mean())))
    render.seam_lips.append(_ratio(float(m_out[lips_out].mean()), float(m_orig[lips_orig].mean())))
    render.vline.append(vertical_line(g_orig, g_out, geometry, moved))
    colour = face_neck_delta(original, output, geometry)
    if colour is not None:
        de_orig, de_out = colour
        render.delta_e.append(de_out - de_orig)
        render.delta_e_orig.append(de_orig)
    render.expr_orig.append(expression(found_orig.landmarks))
    render.expr_out.append(expression(found_out.landmarks))


# --------------------------------------------------------------------------- sheets


def _face_crop(image: RGBImage, points: Points, side: int) -> RGBImage:
    cx, cy = (points.min(axis=0) + points.max(axis=0)) / 2.0
    height, width = image.shape[:2]
    x0 = int(np.clip(round(cx - side / 2), 0, max(0, width - side)))
    y0 = int(np.clip(round(cy - side / 2), 0, max(0, height - side)))
    return np.ascontiguousarray(image[y0 : y0 + side, x0 : x0 + side])


def sheet_row(original: RGBImage, output: RGBImage, points: Points, caption: str) -> RGBImage:
    """original | output | face crop of each at 2x (nearest neighbour: no added blur).

    The crop is the inner face (brows to mouth, plus a margin); the row is twice its side
    tall, capped at 480 px, so a big face in a still is zoomed less than 2x.
    """
    inner = points[17:68]
    side = round(float(np.ptp(inner, axis=0).max()) * 1.3)
    side = max(32, min(side, *original.shape[:2]))
    row = min(2 * side, 480)
    scale = row / original.shape[0]
    size = (round(original.shape[1] * scale), row)
    cells = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in (original, output)]
    for image in (original, output):
        crop = _face_crop(image, inner, side)
        cells.append(cv2.resize(crop, (row, row), interpolation=cv2.INTER_NEAREST))
    return labelled_row(cells, f"{caption}   original | output | crops x{row / side:.1f}")


# --------------------------------------------------------------------------- inputs


def load_selfie(
    path: Path, analyzer: DlibAnalyzer, settings: Settings, refusals: dict[str, str]
) -> tuple[FaceProfile, RGBImage, Points]:
    """Strict enrolment, or (recording the refusal) the largest face as `--lenient` takes it."""
    image = load_picture(path, settings, selfie=True)
    try:
        profile = enroll(image, analyzer, settings)
    except FaceCastError as exc:
        refusals[path.stem] = exc.message
        faces = analyzer.detect(image, embed=True)
        if not faces:
            raise
        best = max(faces, key=lambda f: f.quality.eye_distance)
        profile = build_profile(image, best)
    face = max(analyzer.detect(image), key=lambda f: f.quality.eye_distance)
    return profile, image, face.landmarks


def pack_for(
    video: Path, max_seconds: float, settings: Settings, analyzer: DlibAnalyzer
) -> tuple[Clip, str]:
    """The clip pack for ``video``, built once and cached; and how long building took."""
    clip_id = f"{video.stem.lower()}-{max_seconds:g}s".replace(".", "p")
    folder = settings.resolved_clips_dir / clip_id
    if folder.exists():
        try:
            return load_clip(folder), "cached"
        except (ClipNotFound, OSError, ValueError):
            pass
    started = time.perf_counter()
    clip = build_clip(ClipSource(video, clip_id, end=max_seconds), settings, analyzer, replace=True)
    elapsed = time.perf_counter() - started
    return clip, f"{elapsed:.1f} s, {clip.manifest.frames / elapsed:.0f} frames/s"


def frame_change(
    now: RGBImage, before: RGBImage, mask: Mask, matrix: NDArray[np.float64] | None = None
) -> float:
    """Mean absolute grey-level change inside ``mask``; ``matrix`` first moves ``before``
    with the head."""
    if matrix is not None:
        height, width = now.shape[:2]
        before = cv2.warpAffine(before, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)
    return float(np.abs(grey_of(now) - grey_of(before))[mask].mean())


def timed_frames(frames: Iterator[RGBImage], clock: list[float]) -> Iterator[RGBImage]:
    """Pass frames through, adding the time spent producing them to ``clock[0]``."""
    while True:
        started = time.perf_counter()
        try:
            frame = next(frames)
        except StopIteration:
            return
        finally:
            clock[0] += time.perf_counter() - started
        yield frame


# --------------------------------------------------------------------------- runs


def render_clip_measured(
    selfie_name: str,
    profile: FaceProfile,
    clip: Clip,
    name: str,
    analyzer: DlibAnalyzer,
    originals: dict[int, Found],
    every: int,
    sheet_path: Path,
) -> Render:
    from core.render.clip import render_clip

    render = Render(selfie_name, name)
    track = clip.load_track()
    shown = [i for i in range(0, track.frames, every) if track.visible[i]]
    sheet_frames = set(shown[:: max(1, len(shown) // 4)][:4]) if shown else set()
    clock = [0.0]
    outputs = timed_frames(
        render_clip(profile, clip, ClassicSwapper(**SWAPPER_OPTIONS), label=False), clock
    )
    changes: dict[str, list[float]] = {"orig": [], "out": [], "orig_aligned": [], "out_aligned": []}
    previous: tuple[RGBImage, RGBImage] | None = None
    rows = []
    for index, (original, output) in enumerate(zip(read_video(clip.media), outputs, strict=False)):
        render.rendered_frames += 1
        points = track.landmarks[index]
        if previous is not None and track.visible[index] and track.visible[index - 1]:
            mask = face_mask(original.shape[:2], points)
            # The same change after undoing the head's rigid motion (a similarity fitted to
            # the track), so moving texture counts less than changing texture.
            matrix = cv2.estimateAffinePartial2D(track.landmarks[index - 1], points)[0]
            for key, now, before in (("orig", original, previous[0]), ("out", output, previous[1])):
                changes[key].append(frame_change(now, before, mask))
                changes[f"{key}_aligned"].append(frame_change(now, before, mask, matrix))
        previous = (original, output)
        if index not in shown:
            continue
        if index not in originals:
            originals[index] = locate(analyzer, original, points)
        measure_pair(render, analyzer, profile, original, output, points, originals[index])
        if index in sheet_frames:
            rows.append(sheet_row(original, output, points, f"{selfie_name} -> {name} #{index}"))
    render.seconds = clock[0]
    mean = {key: float(np.mean(v)) if v else math.nan for key, v in changes.items()}
    render.flicker_orig, render.flicker_out = mean["orig"], mean["out"]
    render.aligned_flicker = _ratio(mean["out_aligned"], mean["orig_aligned"])
    if rows:
        save_sheet(rows, sheet_path)
    return render


def render_still(
    selfie_name: str,
    profile: FaceProfile,
    target_name: str,
    picture: RGBImage,
    target: Points,
    analyzer: DlibAnalyzer,
    sheet_path: Path,
) -> Render:
    render = Render(selfie_name, target_name, still=True)
    started = time.perf_counter()
    output = ClassicSwapper(**SWAPPER_OPTIONS).swap(profile, picture, target, sequence=None)
    render.seconds = time.perf_counter() - started
    render.rendered_frames = 1
    found_orig = Found(target, True, analyzer.embedding(picture, target))
    measure_pair(render, analyzer, profile, picture, output, target, found_orig)
    save_sheet([sheet_row(picture, output, target, f"{selfie_name} -> {target_name}")], sheet_path)
    return render


# --------------------------------------------------------------------------- report


def _fmt(value: float, spec: str = ".2f") -> str:
    return "-" if value is None or math.isnan(value) else f"{value:{spec}}"


def _pair(pair: tuple[float, float]) -> str:
    return f"{_fmt(pair[0])} / {_fmt(pair[1])}"


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    value: Callable[[Render], float]  # one figure per render
    passes: Callable[[float], bool]  # a render's figure meets the target
    rule: str
    aggregate: Callable[[list[float], list[bool]], bool]  # the whole set meets it


def _share(passed: list[bool]) -> float:
    return sum(passed) / len(passed) if passed else math.nan


def targets(stills: bool) -> list[Target]:
    def median_in(low: float, high: float) -> Callable[[list[float], list[bool]], bool]:
        return lambda values, _: low <= _median(values) <= high

    result = [
        Target(
            "identity gain",
            lambda r: _median(r.identity_gain),
            lambda v: v >= 0.10,
            "median >= 0.15 and >= 0.10 on >= 90 % of renders",
            lambda values, passed: _median(values) >= 0.15 and _share(passed) >= 0.9,
        ),
        Target(
            "sharpness ratio",
            lambda r: r.sharpness,
            lambda v: 0.85 <= v <= 1.15,
            "0.85-1.15 (median)",
            median_in(0.85, 1.15),
        ),
        Target(
            "face-neck dE, out - orig",
            lambda r: _median(r.delta_e),
            lambda v: v <= 3.0,
            "<= original + 3 (median)",
            median_in(-math.inf, 3.0),
        ),
        Target(
            "lip-line seam ratio",
            lambda r: _median(r.seam_lips),
            lambda v: 0.9 <= v <= 1.1,
            "within 10 % of original (median)",
            median_in(0.9, 1.1),
        ),
    ]
    if not stills:
        result += [
            Target(
                "mouth opening r",
                lambda r: r.follow(0)[0],
                lambda v: v >= 0.9,
                ">= 0.9 (median)",
                median_in(0.9, math.inf),
            ),
            Target(
                "eye opening r",
                lambda r: r.follow(1)[0],
                lambda v: v >= 0.9,
                ">= 0.9 (median)",
                median_in(0.9, math.inf),
            ),
            Target(
                "brow height r",
                lambda r: r.follow(2)[0],
                lambda v: v >= 0.8,
                ">= 0.8 (median)",
                median_in(0.8, math.inf),
            ),
            Target(
                "flicker ratio",
                lambda r: r.flicker,
                lambda v: v <= 1.1,
                "<= 1.1 x original (median)",
                median_in(-math.inf, 1.1),
            ),
        ]
    return result


def report(console: Console, renders: list[Render], title: str, stills: bool) -> None:
    table = Table(title=title)
    columns = ["selfie", "into", "n", "det", "id gain", "id out", "edge px", "sharp", "seam hull"]
    columns += ["seam lips", "vline", "dE neck", "dE out-orig"]
    if not stills:
        columns += ["mouth r / sd", "eye r / sd", "brow r / sd", "flicker", "aligned", "render"]
    else:
        columns += ["swap"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("selfie", "into") else "right")
    for r in renders:
        row = [
            r.selfie,
            r.target,
            str(r.frames),
            f"{r.detected / max(r.frames, 1):.0%}",
            _fmt(_median(r.identity_gain)),
            _fmt(_median(r.identity_out)),
            f"{_fmt(_median(r.sharp_orig))}>{_fmt(_median(r.sharp_out))}",
            _fmt(r.sharpness),
            _fmt(_median(r.seam_hull)),
            _fmt(_median(r.seam_lips)),
            _fmt(_median(r.vline), ".1f"),
            _fmt(_median(r.delta_e_orig), ".1f"),
            _fmt(_median(r.delta_e), "+.1f"),
        ]
        if not stills:
            row += [_pair(r.follow(i)) for i in range(3)]
            row += [
                _fmt(r.flicker),
                _fmt(r.aligned_flicker),
                f"{r.seconds:.2f} s ({r.rendered_frames / r.seconds:.0f}/s)",
            ]
        else:
            row += [f"{r.seconds * 1000:.0f} ms"]
        table.add_row(*row)
    console.print(table)

    aggregate = Table(title=f"{title}: aggregate over {len(renders)} renders")
    for column in ("measure", "median", "passing", "target", "met"):
        aggregate.add_column(column, justify="left" if column in ("measure", "target") else "right")
    extra: list[tuple[str, Callable[[Render], float]]] = [
        ("seam hull ratio", lambda r: _median(r.seam_hull)),
        ("lip vertical line (grey levels)", lambda r: _median(r.vline)),
        ("output face detected", lambda r: r.detected / max(r.frames, 1)),
    ]
    if not stills:
        extra += [
            ("mouth opening sd ratio", lambda r: r.follow(0)[1]),
            ("eye opening sd ratio", lambda r: r.follow(1)[1]),
            ("brow height sd ratio", lambda r: r.follow(2)[1]),
            ("flicker ratio, head motion undone", lambda r: r.aligned_flicker),
            ("render frames/s", lambda r: r.rendered_frames / r.seconds),
        ]
    for target in targets(stills):
        values = [target.value(r) for r in renders]
        valid = [v for v in values if not math.isnan(v)]
        passed = [target.passes(v) for v in valid]
        met = target.aggregate(valid, passed) if valid else False
        aggregate.add_row(
            target.name,
            _fmt(_median(valid), ".3f"),
            f"{_share(passed):.0%}" if passed else "-",
            target.rule,
            "[green]yes[/]" if met else "[red]NO[/]",
        )
    for name, value in extra:
        aggregate.add_row(name, _fmt(_median([value(r) for r in renders]), ".3f"), "", "", "")
    console.print(aggregate)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devset", type=Path, default=REPO.parent / "shared" / "devset")
    parser.add_argument("--photos", nargs="*", default=[], help="only photos whose name has these")
    parser.add_argument("--clips", nargs="*", default=[], help="only clips whose name has these")
    parser.add_argument("--max-seconds", type=float, default=6.0, help="trim long clips")
    parser.add_argument("--every", type=int, default=3, help="measure every n-th frame")
    parser.add_argument("--stills", action="store_true", help="also photo-to-photo stills")
    parser.add_argument("--no-clips", action="store_true", help="stills only")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="classic engine options to try, e.g. --set reshape=0 creases=0.5",
    )
    parser.add_argument("--tag", default="", help="contact sheets under sheets-TAG")
    parser.add_argument(
        "--steady",
        nargs=2,
        type=float,
        metavar=("SHAPE", "PLACE"),
        help="try other landmark smoothing for renders (frames, see core.faces.tracking.steady)",
    )
    args = parser.parse_args()
    if args.steady:
        import functools

        import core.render.clip

        core.render.clip.steady = functools.partial(  # type: ignore[assignment]
            core.render.clip.steady, shape_frames=args.steady[0], place_frames=args.steady[1]
        )
    global SWAPPER_OPTIONS
    SWAPPER_OPTIONS = {
        key: (value.lower() == "true" if value.lower() in ("true", "false") else float(value))
        for key, value in (item.split("=", 1) for item in args.set)
    }
    console = Console(width=260)
    console.print(f"CPU: {MACHINE}")

    def chosen(paths: list[Path], wanted: list[str]) -> list[Path]:
        return [p for p in paths if not wanted or any(w in p.name for w in wanted)]

    photos = chosen(sorted((args.devset / "photos").glob("*.jpg")), args.photos)
    videos = chosen(sorted((args.devset / "clips").glob("*.mp4")), args.clips)
    if not photos:
        raise SystemExit(f"no photos under {args.devset / 'photos'}")
    settings = Settings(data_dir=QUALITY, clips_dir=QUALITY / "packs")
    analyzer = DlibAnalyzer()
    sheets = QUALITY / (f"sheets-{args.tag}" if args.tag else "sheets")

    refusals: dict[str, str] = {}
    selfies = {p.stem: load_selfie(p, analyzer, settings, refusals) for p in photos}
    for name, reason in refusals.items():
        console.print(f"[yellow]strict enrolment refused {name}:[/] {reason} (enrolled leniently)")

    if videos and not args.no_clips:
        renders = []
        for video in videos:
            clip, built = pack_for(video, args.max_seconds, settings, analyzer)
            m = clip.manifest
            console.print(
                f"pack {clip.id}: {m.frames} frames {m.width}x{m.height} @ {m.fps:g} fps, "
                f"coverage {m.coverage:.0%}; clips add: {built}"
            )
            originals: dict[int, Found] = {}
            for name, (profile, _, _) in selfies.items():
                renders.append(
                    render_clip_measured(
                        name,
                        profile,
                        clip,
                        video.stem,
                        analyzer,
                        originals,
                        args.every,
                        sheets / f"{name}__{clip.id}.png",
                    )
                )
                console.print(f"  rendered {name} -> {clip.id}", style="dim")
        title = f"Clips (first {args.max_seconds:g} s), 1 frame in {args.every} measured"
        report(console, renders, title, stills=False)

    if args.stills:
        stills = []
        for name, (profile, _, _) in selfies.items():
            for other, (_, picture, landmarks) in selfies.items():
                if other == name:
                    continue
                stills.append(
                    render_still(
                        name,
                        profile,
                        other,
                        picture,
                        landmarks,
                        analyzer,
                        sheets / f"still__{name}__{other}.png",
                    )
                )
        if stills:
            report(console, stills, "Stills, photo into photo", stills=True)
    console.print(f"contact sheets: {sheets}")


if __name__ == "__main__":
    main()
