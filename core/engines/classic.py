"""Putting a profile's face onto a face in a picture.

:class:`ClassicSwapper` is the default CPU engine (see :mod:`core.engines.base` for the
interface and :mod:`core.engines.registry` for the table of engines): the clip's face given the
selfie's proportions (:mod:`core.engines.reshape`), the profile texture warped onto it by a
thin-plate spline through the landmarks, the clip's own eyes, lids, brows and mouth kept,
the colour and light moved to the clip's skin and a feathered blend. It is deterministic
and takes a few milliseconds per face.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import cv2
import numpy as np
from numpy.typing import NDArray

from core.engines.base import BatchSwapper, Swapper, SwapSequence
from core.engines.reshape import ShapeChange, bend, spline_map
from core.faces.landmarks import (
    BROWS,
    INNER_LIPS,
    JAW,
    LEFT_EYE,
    N_EXTENDED,
    NOSTRILS,
    OUTER_LIPS,
    RIGHT_EYE,
    Points,
    extend_points,
    eye_distance,
)
from core.faces.profile import FaceProfile
from core.faces.skin import (
    ColourStats,
    FloatImage,
    blur,
    clear_skin,
    colour_stats,
    disc,
    fill,
    from_lab,
    grown_hull,
    skin_likeness,
    skin_mask,
    smooth_over,
    to_lab,
    unit_scale,
)
from core.media.images import RGBImage


def _outline(points: Points) -> Points:
    """Jaw line then forehead arc: the outer boundary of the extended points, in order."""
    return np.vstack([points[JAW], points[68:][::-1]])


# The landmarks a smooth warp follows: all but the lower lids and inner lips, which meet
# the upper ones when the clip blinks or closes its mouth (and the selfie's need not).
_SPLINE_POINTS = np.array(
    [i for i in range(N_EXTENDED) if i not in (40, 41, 46, 47, *range(60, 68))]
)

_ANALYSIS_EYE_DISTANCE = 40.0  # colour and lighting are measured at this face scale
_RIM_BINS = 8
_RIM_SECTORS = 8
_DARK_BROWS = -12.0  # brows at least this much darker than the skin (CIELAB L) are dark


@dataclass(frozen=True, slots=True)
class _ColourTransfer:
    """Move the source's skin colour onto the target's.

    Lightness: Reinhard's mean/std transfer. Chroma (skin is warm: a, b > 0): towards a
    warmer target each of a and b is shifted, less in dark pixels whose gamut is small;
    towards a cooler target it is *scaled* down by the ratio of the means. Reinhard's plain
    shift pushed near-neutral pixels (a shine on the nose, the whites of the eyes) past grey
    into the opposite hue, which showed as blue-grey patches; scaling keeps neutral
    neutral. Scaling up instead of shifting would amplify blotches and redden lips.
    """

    src: ColourStats
    dst: ColourStats
    gain: NDArray[np.float32]

    def apply(self, lab: FloatImage) -> FloatImage:
        out = np.empty_like(lab)
        light = lab[:, :, 0]
        out[:, :, 0] = (light - self.src.mean[0]) * self.gain[0] + self.dst.mean[0]
        shade = np.clip(light / max(float(self.src.mean[0]), 1.0), 0.0, 1.0)
        for channel in (1, 2):
            source_mean = float(self.src.mean[channel])
            target_mean = float(self.dst.mean[channel])
            if target_mean < source_mean and source_mean > 3.0:
                ratio = max(target_mean, 0.0) / source_mean
                out[:, :, channel] = lab[:, :, channel] * ratio
            else:
                out[:, :, channel] = lab[:, :, channel] + (target_mean - source_mean) * shade
        return out


class ClassicSwapper:
    """Triangulated warp + LAB colour transfer + lighting match + feathered blend, on the CPU.

    Colour: Reinhard's mean/std transfer in CIELAB measured on skin only, the gain capped so
    a flat source cannot blow up; a greyscale source takes the target's own (smoothed)
    chroma, so it comes out in the scene's colours rather than grey. The target's
    large-scale shading then replaces the source's. Outside eyes, nose and mouth only skin
    replaces skin, so a fringe, a beard or glasses' arms stay. Colour and lighting are
    measured on a copy scaled to a fixed face size, which keeps big faces fast.
    """

    name: ClassVar[str] = "classic"

    def __init__(
        self,
        *,
        feather: float = 0.07,
        max_gain: float = 1.6,
        max_boost: float = 1.15,
        shading: float = 0.45,
        tint: float = 0.15,
        keep_brows: bool = True,
        dense_brows: float = 0.2,
        lip_tint: float = 0.5,
        brow_tint: float = 0.7,
        creases: float = 1.0,
        keep_lines: bool = True,
        crease_scale: float = 0.25,
        skin_detail: float = 0.0,
        reshape: float = 0.85,
        reshape_jaw: float = 0.6,
        unglasses: bool = True,
        eye_lids: float = 0.06,
        texture_blur: float = 1.3,
        crease_colour: bool = True,
        close_hair: float = 0.06,
        lip_hue_reach: float = 6.0,
        frown_lines: float = 1.0,
        rim: float = 1.0,
        rim_reach: float = 0.25,
        skin_tint: float = 1.0,
        brow_hair: float = 10.0,
        grain: float = 1.0,
        grain_px: float = 1.0,
        warm_lips: bool = True,
    ) -> None:
        self.feather = feather  # blend ramp width, as a share of the eye distance
        self.max_gain = max_gain  # cap on the colour contrast change
        # ...and on raising it: a clip lit from one side has a wide spread of skin
        # lightness, which is its large-scale shading (matched on its own below), not finer
        # contrast; the selfie's pores and shading raised 1.6x to it came out as dark,
        # mottled patches (a frontally lit studio portrait into a side-lit speech).
        self.max_boost = max_boost
        self.shading = shading  # scale of the lightness that is matched, same unit
        self.tint = tint  # scale of the chroma that is matched, same unit
        # The clip's brows move with its expression (a raise, a frown) and sit right on its
        # face; the selfie's, pasted, doubled with them. Kept, they take the selfie's tint.
        self.keep_brows = keep_brows
        # ...but a selfie's dense, dark brows are pasted
        self.dense_brows = dense_brows
        self.lip_tint = lip_tint  # how far kept lips / brows move to the selfie's colour
        self.brow_tint = brow_tint
        # Where the clip's brows are kept, they (darker than its skin, by
        # ``brow_hair`` CIELAB L for all of it) stay whole, at full resolution: the skin
        # likeness, measured on a small copy and blurred, passed a thin or sparse brown brow
        # for half skin, and the selfie's skin laid half over it made a washed-out grey brow.
        self.brow_hair = brow_hair
        # Over the skin both faces show, the clip's detail finer than ``grain_px`` (a
        # Gaussian of that many output pixels) replaces the selfie's: the clip's grain,
        # pores and focus. The selfie's finest detail is gone anyway (``texture_blur``), and
        # without the clip's the face was softer than the frame around it (edge-width ratio
        # on the sharpest devset clip 0.75 and 0.81 -> 0.84 and 0.86; identity unchanged; at
        # 1.5 pixels identity fell by up to 0.03). ``grain`` is how much (0-1).
        self.grain = grain
        self.grain_px = grain_px
        # The kept lips' hue turns no cooler (towards blue) than the clip's own: a dark-
        # skinned selfie's lips, less yellow than his skin, carried as that difference onto
        # a pale clip's pink lips made them lavender. Their lightness and chroma still move.
        self.warm_lips = warm_lips
        # Where a smile, a squint or raised brows fold the skin (nose to mouth corners, crow's
        # feet, under the eyes, the forehead), the detail finer than ``crease_scale`` (same
        # unit) is the clip's: the selfie's smile lines and forehead wrinkles do not freeze
        # into every frame, the clip's come and go with its expression. ``creases`` is how
        # much (0 keeps the selfie's; 1 the clip's). At a quarter of the eye distance a
        # smiling selfie's deep nose-to-mouth folds and an old man's forehead lines go too
        # (at 0.15 they stayed, softened); identity gain median 0.171 -> 0.165.
        self.creases = creases
        # Thin lines around the clip's eyes stay in front: glasses' frames (light metal ones
        # pass for skin at the colour analysis' scale, and were painted over).
        self.keep_lines = keep_lines
        self.crease_scale = crease_scale
        # The same for the rest of the skin (cheeks, chin, nose, temples): the clip's pores
        # and grain, not the selfie's stubble, speckle or wrinkles, moving with the clip.
        self.skin_detail = skin_detail
        # The clip's face takes the selfie's proportions (see core.engines.reshape): how
        # much of the way its features (eyes, brows, nose, mouth) and its jaw line go.
        self.reshape = reshape
        self.reshape_jaw = reshape_jaw
        # The selfie's glasses are painted out of its texture (see _without_glasses).
        self.unglasses = unglasses
        # How far around the clip's eyes its own lids and skin stay (share of the eye
        # distance; 0 keeps only the eyes themselves, the selfie's lids around them). The
        # clip's lids follow its blinks and squints (a selfie's squint no longer freezes
        # into every frame; eye-opening correlation 0.88 -> 0.92 on the devset); the eyes'
        # size and place are still the selfie's (see core.engines.reshape).
        self.eye_lids = eye_lids
        # The selfie's texture is blurred by this much (pixels of the output) before it is
        # warped (see _texture): flicker on the devset's near-still talking heads 1.23 ->
        # 1.10 x the clip's (with the tracker's picture-led placement), identity and edge
        # width unchanged (the clip's own edges are no sharper).
        self.texture_blur = texture_blur
        # The clip's fine detail in the crease zones includes its colour, not only its
        # lightness (see _match_colour).
        self.crease_colour = crease_colour
        # Below the nose, the skin-coloured gaps of the selfie's beard or moustache (sparse,
        # grey or white hair, skin between the hairs) count as hair too (see _beard):
        # pasted and relit they made a mottled orange patch on the clip's chin. The scale
        # (share of the eye distance) at which a mostly-hair neighbourhood is all hair;
        # 0 pastes the gaps.
        self.close_hair = close_hair
        # How far the kept lips' hue moves towards the selfie's at most (CIELAB a, b).
        self.lip_hue_reach = lip_hue_reach
        # The selfie's frown lines (see _frown_lines) take the clip's fine detail, like the
        # crease zones: an old man's, between the clip's brows moved close to his, read as
        # one dark brow across the nose. Only the lines: the rest of the selfie's detail
        # there (its brow ridge's and nose bridge's shading) carries who it is.
        self.frown_lines = frown_lines
        # Near the outline (within ``rim_reach`` eye distances) the light is matched again,
        # finely across the outline and coarsely along it (see _rim_light): a selfie's own
        # shading at its face's edge (the cheek turning away from the flash, a fringe's
        # shadow) is narrower than ``shading`` and, pasted inside the clip's wider or
        # differently lit face, made a dark band down one cheek. ``rim`` is how much (0-1).
        # A quarter of the eye distance deep: at 0.4 it also evened out the selfie's
        # cheekbone shading, which carries who it is (a still's identity gain 0.086 ->
        # 0.035; 0.083 at 0.25; devset median 0.145 -> 0.150).
        self.rim = rim
        self.rim_reach = rim_reach
        # Over all of the clip's skin, the colour (CIELAB a, b) finer than ``tint`` is the
        # clip's: a selfie's nose or chin more orange or red than its cheeks (a flush, mottled
        # older skin, a warm studio light), relit under a warm room light, came out as an
        # orange nose and a mottled chin. Its skin tone, the larger scales, stays the
        # selfie's; ``skin_tint`` is how much (0-1).
        self.skin_tint = skin_tint

    def swap(
        self,
        profile: FaceProfile,
        frame: RGBImage,
        target: Points,
        *,
        sequence: SwapSequence | None = None,
    ) -> RGBImage:
        result = frame.copy()
        unit = eye_distance(target)
        if unit < 4:
            return result
        before = extend_points(target, profile.reach)
        reshaped = self.reshaped(profile, target, sequence)
        points = before if reshaped is None else extend_points(reshaped, profile.reach)
        height, width = frame.shape[:2]
        pad = int(unit * (0.2 if reshaped is None else 0.3)) + 2
        corners = np.vstack([before, points])
        x0, y0 = np.floor(corners.min(axis=0)).astype(int) - pad
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + pad
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, width), min(y1, height)
        if x1 - x0 < 8 or y1 - y0 < 8:
            return result
        origin = np.array([x0, y0], dtype=np.float32)
        local = points - origin
        shape = (y1 - y0, x1 - x0)

        texture = self._texture(profile, sequence, unit)
        warped, covered, marks = self._warp(
            profile, texture, local, shape, self._marks(profile, sequence)
        )
        warped, painted = np.ascontiguousarray(warped[:, :, :3]), warped[:, :, 3]  # CIELAB
        region = frame[y0:y1, x0:x1]
        if reshaped is not None:
            # a ring a little outside the face holds the background still
            outline = _outline(before) - origin
            middle = outline.mean(axis=0)
            away = outline - middle
            away *= (1.0 + 0.2 * unit / np.maximum(np.linalg.norm(away, axis=1), 1.0))[:, None]
            region = bend(region, before - origin, local, unit, still=middle + away)
        parts = self._parts(profile, sequence, texture[:, :, 3])
        brows = parts.contrasts[1]
        light_brows = brows is not None and float(brows[0]) > _DARK_BROWS
        keep_brows = self.keep_brows and not self._pastes_brows(
            profile, sequence, unit, light_brows, parts.brow_cover
        )
        corrected, source_like, target_like, stats, target_lab = self._match_colour(
            profile, warped, region, local, unit, covered, sequence, painted, marks, keep_brows
        )
        alpha = self._alpha(
            local, shape, unit, covered, source_like, target_like, light_brows, keep_brows
        )
        if self.keep_lines:
            lines = _thin_lines(target_lab[:, :, 0], local, unit)
            if not keep_brows:  # (not over the selfie's own brow hair)
                lines *= source_like
            alpha *= 1.0 - lines
        if keep_brows and self.brow_hair > 0:
            skin_light = float(stats[1].mean[0])
            alpha *= 1.0 - _brow_hair(target_lab[:, :, 0], local, unit, skin_light, self.brow_hair)
        if sequence is not None and sequence.fade < 1.0:
            alpha *= np.float32(sequence.fade)
        # (three channels merged: faster than numpy's broadcast over a last axis of three)
        alpha = np.asarray(cv2.merge([alpha, alpha, alpha]), np.float32)
        clip_face = self._tint_kept(
            parts.contrasts, region, target_lab, local, stats[1], target_like, keep_brows
        )
        blended = clip_face
        blended += (corrected - clip_face) * alpha
        blended += 0.5
        result[y0:y1, x0:x1] = np.clip(blended, 0, 255, out=blended).astype(np.uint8)
        return result

    def reshaped(
        self, profile: FaceProfile, target: Points, sequence: SwapSequence | None
    ) -> Points | None:
        """The target's 68 points moved to the selfie's proportions, or None to keep them."""
        if self.reshape <= 0 and self.reshape_jaw <= 0:
            return None
        rest = None if sequence is None else sequence.rest

        def measure() -> ShapeChange:
            return ShapeChange.between(
                profile.points,
                target if rest is None else rest,  # a single picture is its own rest
                features=self.reshape,
                jaw=self.reshape_jaw,
                jaw_seen=not profile.quality.cropped,
            )

        # with the clip's resting face the change is the same for every frame
        change = (
            measure()
            if sequence is None or rest is None
            else sequence.remember("shape", profile, measure)
        )
        if not change.moves:
            return None
        moved = change.apply(target)
        if sequence is not None and sequence.fade < 1.0:  # (see SwapSequence.fade)
            moved = target[:68] + (moved - target[:68]) * np.float32(sequence.fade)
        return moved

    def _texture(
        self, profile: FaceProfile, sequence: SwapSequence | None, unit: float
    ) -> FloatImage:
        """The selfie's texture as the swap paints it (its glasses taken off, band-limited
        for a face ``unit`` pixels between the eyes) in CIELAB, with a fourth channel saying
        where something was painted over (0..255). In CIELAB once a clip rather than every
        frame after the warp (a third of a millisecond a frame); bilinear sampling of the
        band-limited texture differs from sampling its RGB by under a level."""

        def clean() -> FloatImage:
            painted, where = self._unglassed(profile, sequence)
            # Band-limited before it is resampled: a selfie's finest detail (pores, stubble,
            # a sharp phone photo's edges), sampled at a moving sub-pixel phase, shimmered as
            # the head moved (bilinear sampling blurs it more or less from frame to frame);
            # the clip's own skin, filmed, has none finer than its lens passed.
            sigma = self.texture_blur * eye_distance(profile.points) / max(unit, 1.0)
            if sigma >= 0.2:
                painted = np.asarray(cv2.GaussianBlur(painted, (0, 0), sigma), np.uint8)
            return np.dstack([to_lab(painted), np.round(where * np.float32(255.0))])

        if sequence is None:
            return clean()
        if sequence.rest is not None:  # the clip's resting face: one size for the clip
            unit = eye_distance(sequence.rest)
        return sequence.remember("texture", profile, clean)

    def _unglassed(
        self, profile: FaceProfile, sequence: SwapSequence | None
    ) -> tuple[RGBImage, FloatImage]:
        """The selfie's texture with its glasses painted out when ``unglasses`` (see
        :func:`_without_glasses`), and where they were (0..1); once a clip."""

        def paint() -> tuple[RGBImage, FloatImage]:
            if not self.unglasses:
                return profile.texture, np.zeros(profile.texture.shape[:2], np.float32)
            return _without_glasses(profile.texture, profile.points)

        return paint() if sequence is None else sequence.remember("unglassed", profile, paint)

    def _marks(
        self, profile: FaceProfile, sequence: SwapSequence | None
    ) -> NDArray[np.uint8] | None:
        """Where the selfie's beard or moustache (see :func:`_beard`) and its frown lines
        (see :func:`_frown_lines`) are, the first two of four channels, once a clip; None
        when neither is looked for or found."""
        if self.close_hair <= 0 and self.frown_lines <= 0:
            return None

        def measure() -> NDArray[np.uint8] | None:
            texture = self._unglassed(profile, sequence)[0]  # a painted frame is no hair
            # two channels used, four stored: OpenCV's remap of four channels is vectorised
            # and three times faster than of two
            marks = np.zeros((*texture.shape[:2], 4), np.uint8)
            if self.close_hair > 0:
                marks[:, :, 0] = _beard(texture, profile.points, self.close_hair)
            if self.frown_lines > 0:
                marks[:, :, 1] = _frown_lines(texture, profile.points)
            return marks if marks.any() else None

        return measure() if sequence is None else sequence.remember("marks", profile, measure)

    def _warp(
        self,
        profile: FaceProfile,
        texture: FloatImage,
        local: Points,
        shape: tuple[int, int],
        marks: NDArray[np.uint8] | None = None,
    ) -> tuple[FloatImage, NDArray[np.bool_], NDArray[np.uint8] | None]:
        """The texture warped onto ``local`` by a thin-plate spline through the landmarks,
        and where it covers. Smooth where a triangle-by-triangle warp bent at every edge,
        and a third of its time (the spline is solved once and evaluated on a coarse grid).
        The points that meet when the clip blinks or closes its mouth (lower lids, inner
        lips) are left out: there the clip's own eyes and lips show. ``marks`` (see
        :meth:`_marks`) are warped the same way."""
        keep = _SPLINE_POINTS[len(local) > _SPLINE_POINTS]
        unit = float(eye_distance(local))
        maps = spline_map(local[keep], profile.points[keep], shape, unit)
        warped = cv2.remap(
            texture, maps[:, :, 0], maps[:, :, 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        covered = fill(shape, _hull(local)) > 127
        if marks is not None:
            marks = np.asarray(
                cv2.remap(marks, maps[:, :, 0], maps[:, :, 1], cv2.INTER_LINEAR), np.uint8
            )
        return np.asarray(warped, dtype=np.float32), covered, marks

    def _match_colour(
        self,
        profile: FaceProfile,
        source_lab: FloatImage,
        region: RGBImage,
        local: Points,
        unit: float,
        covered: NDArray[np.bool_],
        sequence: SwapSequence | None,
        painted: FloatImage,
        marks: NDArray[np.uint8] | None = None,
        keep_brows: bool = True,
    ) -> tuple[FloatImage, FloatImage, FloatImage, tuple[ColourStats, ColourStats], FloatImage]:
        """The warped face (``source_lab``, CIELAB) recoloured and relit like the target,
        where the source and the target look like skin, and both skins' colour statistics."""
        height, width = covered.shape
        scale = min(1.0, _ANALYSIS_EYE_DISTANCE / unit)
        small = (max(8, round(width * scale)), max(8, round(height * scale)))

        def shrink(image: FloatImage) -> FloatImage:
            if scale == 1.0:
                return image
            return np.asarray(cv2.resize(image, small, interpolation=cv2.INTER_AREA))

        def grow(image: FloatImage) -> FloatImage:
            if scale == 1.0:
                return image
            return np.asarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR))

        target_lab = to_lab(region)
        source_small, target_small = shrink(source_lab), shrink(target_lab)
        covered_small = shrink(covered.astype(np.float32)) > 0.5
        unit_small = unit * small[0] / width

        def measure() -> tuple[ColourStats, ColourStats]:
            skin = clear_skin(local * (small[0] / width), covered_small.shape, unit_small)
            skin &= covered_small
            return colour_stats(source_small, skin), colour_stats(target_small, skin)

        src, dst = measure() if sequence is None else sequence.measured(measure)
        gain = np.clip(dst.std / np.maximum(src.std, 1e-3), 1.0 / self.max_gain, self.max_boost)
        transfer = _ColourTransfer(src, dst, gain.astype(np.float32))
        grey = profile.quality.greyscale or float(src.std[1:].max()) < 1.5

        out = transfer.apply(source_lab)
        out_small = transfer.apply(source_small)
        target_like = skin_likeness(target_small, dst)
        skin = target_like * covered_small  # the target's skin, in the face
        if grey:
            # No chroma to transfer: colour the face with the target's own skin's, smoothed
            # over its skin (a coloured wall or collar beside the face is no skin colour).
            out[:, :, 1:] = grow(
                smooth_over(target_small[:, :, 1:], skin, max(1.0, unit_small * 0.12))
            )
        source_like = skin_likeness(source_small, src, use_chroma=not grey)
        not_beard, frowns = None, None
        if marks is not None:  # (see _marks)
            if self.close_hair > 0 and marks[:, :, 0].any():
                not_beard = 1.0 - shrink(unit_scale(marks[:, :, 0]))
                source_like *= not_beard
            if self.frown_lines > 0 and marks[:, :, 1].any():
                frowns = np.ascontiguousarray(marks[:, :, 1])
        # Match the light too: the target's large-scale shading and tint (a key light from
        # one side, a darker jaw, a warm lamp) replace the source's, measured over the
        # target's skin (the selfie's own blown-out or shadowed patches must count,
        # they are what needs correcting). The selfie keeps its finer detail.
        # Chroma carries little identity, so it follows the target at a finer scale than
        # lightness does: a selfie with a blown-out nose and an orange rim comes out evenly
        # skin-coloured, while keeping its finer colour detail (lips, blush).
        weight = skin
        if not_beard is not None:
            # the selfie's beard is not pasted, so its dark hairs must not lift (and
            # redden) the skin around it either: it was an orange patch under the lip
            weight = weight * not_beard
        channels = (0,) if grey else (0, 1, 2)  # a grey selfie's chroma is the target's
        # (one blur of the weighted difference per scale: the blur is linear)
        gap = target_small - out_small
        light = np.zeros_like(gap)  # the change, measured small, grown once
        for part, reach, limit in (
            (slice(0, 1), self.shading, 20.0),
            (slice(1, 3), self.tint, 25.0),
        ):
            if part.start not in channels:
                continue
            spread = smooth_over(gap[:, :, part], weight, max(1.0, unit_small * reach))
            light[:, :, part] = np.clip(spread, -limit, limit)
        out += grow(light)
        if self.rim > 0:
            residual = target_small[:, :, 0] - out_small[:, :, 0] - light[:, :, 0]
            rim = _rim_light(
                residual,
                weight * source_like,
                local * (small[0] / width),
                unit_small,
                self.rim_reach,
                None if sequence is None else partial(sequence.averaged, "rim"),
            )
            out[:, :, 0] += grow(rim * np.float32(self.rim))

        both = target_like * source_like  # where both faces are skin

        def finer(channel: int, sigma: float) -> FloatImage:
            """The clip's ``channel`` less the relit selfie's, finer than ``sigma`` (of the
            small copy): the clip's detail less the selfie's (a blur is linear), its smooth
            part measured small like the rest, over the skin both faces show."""
            apart = np.ascontiguousarray(target_lab[:, :, channel] - out[:, :, channel])
            return apart - grow(smooth_over(shrink(apart), both, sigma))

        if self.creases > 0:  # where the target is skin (not a hand or glasses' frame)
            ratio = small[0] / width
            zones = self._crease_zones(
                local * ratio, (small[1], small[0]), unit_small, shrink(painted)
            )
            weight = grow(zones * target_like * np.float32(self.creases))
            if frowns is not None:  # (see _frown_lines)
                lines = frowns.astype(np.float32) * np.float32(self.frown_lines / 255.0)
                weight = np.maximum(weight, lines * grow(target_like))
            out[:, :, 0] += finer(0, max(0.6, unit_small * self.crease_scale)) * weight
            if self.crease_colour:
                # Colour too: with lightness alone, a selfie's stubble or shadow (dark and
                # nearly grey) lifted to the clip's skin lightness kept its greyness, blue-grey
                # patches on the cheeks. The chroma there is the clip's, all of it: its
                # larger scales were matched already (``tint``), so only the fine part moves.
                for channel in (1, 2):  # (one at a time: a two-channel view is slow)
                    chroma = out[:, :, channel]
                    chroma += (target_lab[:, :, channel] - chroma) * weight
        if self.grain > 0:  # (at full size: it is finer than the small copy)
            apart = np.ascontiguousarray(target_lab[:, :, 0] - out[:, :, 0])
            fine = apart - np.asarray(cv2.GaussianBlur(apart, (0, 0), self.grain_px))
            out[:, :, 0] += fine * (grow(both) * np.float32(self.grain))
        if self.skin_tint > 0 and not grey:
            share = grow(target_like) * np.float32(self.skin_tint)
            if not keep_brows:  # the selfie's pasted brows take no skin's colour
                share *= grow(source_like)
            for channel in (1, 2):
                out[:, :, channel] += finer(channel, max(0.6, unit_small * self.tint)) * share
        out[:, :, 0] = np.clip(out[:, :, 0], 0.0, 100.0)
        soften = max(0.5, unit_small * self.feather * 0.5)
        return (
            from_lab(out),
            # a thin dark line (glasses' frames) must not fade into the skin around it
            grow(blur(_widen_dark(source_like, local * (small[0] / width), unit_small), soften)),
            grow(blur(target_like, soften)),
            (src, dst),
            target_lab,
        )

    def _crease_zones(
        self, local: Points, shape: tuple[int, int], unit: float, painted: FloatImage
    ) -> FloatImage:
        """Where the clip's fine detail replaces the selfie's (0..1): the zones where
        expressions crease the skin (eyes and lips themselves excluded), and whatever was
        painted over on the selfie (``painted``, 0..255), which has no detail of its own.
        Smooth, so worked out on the small analysis copy."""
        zone = np.asarray(painted, np.float32) / 255.0
        polygons = []
        # nose wing, mouth corner, down the jaw and out over the cheek: the smile folds
        for wing, corner, *jaw in ((31, 48, 5, 3, 1), (35, 54, 11, 13, 15)):
            polygons.append(local[[wing, corner, *jaw]])
        for eye, outer, side in ((RIGHT_EYE, 0, -1.0), (LEFT_EYE, 3, 1.0)):
            lids = local[eye]
            lower = lids[[0, 5, 4, 3]] + np.array([0.0, 0.05 * unit], np.float32)
            polygons.append(
                np.vstack([lower, lower[::-1] + np.array([0.0, 0.3 * unit], np.float32)])
            )
            corner = lids[outer]
            box = [[0.08, -0.2], [0.35, -0.2], [0.35, 0.25], [0.08, 0.25]]
            polygons.append(
                corner + unit * np.array(box, np.float32) * np.array([side, 1.0], np.float32)
            )  # crow's feet
        if len(local) >= 78:  # the forehead, above the brows: where raised brows fold it
            above = local[BROWS] - np.array([0.0, 0.12 * unit], np.float32)
            polygons.append(np.vstack([above, local[68:78][::-1]]))
        drawn = np.zeros(shape, np.uint8)
        for polygon in polygons:
            np.maximum(drawn, fill(shape, polygon), out=drawn)
        zone = np.maximum(zone, unit_scale(drawn))
        if self.skin_detail > 0:
            zone = np.maximum(zone, unit_scale(fill(shape, _outline(local))) * self.skin_detail)
        own = np.maximum(
            grown_hull(shape, _hull(local[OUTER_LIPS]), max(1, round(unit * 0.03))),
            np.maximum(fill(shape, _hull(local[RIGHT_EYE])), fill(shape, _hull(local[LEFT_EYE]))),
        )
        if self.skin_detail > 0:  # the nose's wings and tip carry who it is
            own = np.maximum(own, _grown_parts(local, shape, unit, ((NOSTRILS, 0.04),)))
        weight = blur(zone.astype(np.float32), max(0.5, unit * 0.08))
        return np.asarray(weight * (1.0 - blur(own, max(0.5, unit * 0.03))), np.float32)

    def _alpha(
        self,
        local: Points,
        shape: tuple[int, int],
        unit: float,
        covered: NDArray[np.bool_],
        source_like: FloatImage,
        target_like: FloatImage,
        light_brows: bool,
        keep_brows: bool,
    ) -> FloatImage:
        """Where the selfie's face goes (0..1): not where the target's own eyes and mouth are
        kept on purpose (so their opening, gaze and speech follow the clip exactly)."""
        ramp = max(1.0, unit * self.feather * 2.4)
        face = fill(shape, _outline(local))
        # A ramp by distance from the outline, ending on the jaw line, never on background.
        inside = cv2.distanceTransform((face > 127).astype(np.uint8), cv2.DIST_L2, 3)
        t = np.clip(inside / ramp, 0.0, 1.0)
        alpha = (t * t * (3.0 - 2.0 * t)).astype(np.float32)
        sigma = unit * self.feather
        # Only skin replaces skin: the selfie's beard, fringe, glasses or teeth are not
        # pasted, and whatever in the clip is not skin (a microphone, a pen, glasses'
        # frames, a fringe, a beard) stays in front. Brows are the exception: they carry
        # identity and are hair on both faces.
        if keep_brows:
            # the clip's brows stay; the selfie's skin around them still comes
            alpha *= source_like * target_like
        else:
            brows = blur(grown_hull(shape, _hull(local[BROWS]), max(1, round(unit * 0.06))), sigma)
            alpha *= brows + (1.0 - brows) * source_like * target_like
        if keep_brows and light_brows:
            # ...but not a selfie's light or grey brow hair: it passes for skin and, pasted
            # beside the clip's dark brows, made a grey smudge. Along the brows the clip
            # shows (its brows take the selfie's tint in _tint_kept). Dark brows, clearly
            # not skin, are left out pixel by pixel already; what passes around them is
            # skin, and carries much of who it is (identity gain 0.03 -> 0.08 on a still).
            band = _brow_band(local, shape, unit).astype(np.uint8) * 255
            grown = np.asarray(cv2.dilate(band, disc(max(1, round(unit * 0.03)))), np.uint8)
            alpha *= 1.0 - blur(grown, max(0.5, unit * 0.03))
        # The target's eyes (inside the lids) and mouth (lips and all) stay its own: a blink,
        # a glance or a word in the clip happens in the output, and the selfie's teeth never
        # fight the clip's open mouth. The lips take the selfie's colour (see _tint_kept).
        # The eyes' outline (lids, their shape) stays the selfie's: it carries identity.
        # (worked out in a window around the eyes and mouth, wide enough for the growing
        # and both blurs to fade out inside it)
        reach = unit * (max(self.eye_lids, 0.04) * 3.0 + 0.15) + 4.0
        x0, y0, x1, y1 = _box_around(local[36:68], reach, shape)
        if x1 > x0 and y1 > y0:
            near = local - np.array([x0, y0], np.float32)
            window = (int(y1 - y0), int(x1 - x0))
            eyes = np.maximum(fill(window, near[RIGHT_EYE]), fill(window, near[LEFT_EYE]))
            if self.eye_lids > 0:
                lids = np.asarray(
                    cv2.dilate(eyes, disc(max(1, round(unit * self.eye_lids)))), np.uint8
                )
                eyes = np.asarray(blur(lids, unit * self.eye_lids * 0.5) * 255, np.uint8)
            else:
                eyes = np.asarray(cv2.erode(eyes, disc(max(1, round(unit * 0.03)))), np.uint8)
            lips = cv2.dilate(fill(window, near[OUTER_LIPS]), disc(max(1, round(unit * 0.04))))
            parts = np.asarray(np.maximum(eyes, lips), np.uint8)
            alpha[y0:y1, x0:x1] *= 1.0 - blur(parts, max(0.5, unit * 0.03))
        alpha[~covered] = 0.0
        return np.asarray(alpha, dtype=np.float32)

    def _parts(
        self, profile: FaceProfile, sequence: SwapSequence | None, painted: FloatImage
    ) -> _Parts:
        """The selfie's lips and brows against its skin (see _part_contrasts), once a clip;
        ``painted``: where the selfie's glasses were (its texture's fourth channel)."""

        def measure() -> _Parts:
            glasses = painted > 127
            if not self.unglasses:  # not painted out, but still no brow
                glasses = _without_glasses(profile.texture, profile.points)[1] > 0.5
            return _part_contrasts(profile, glasses)

        return measure() if sequence is None else sequence.remember("parts", profile, measure)

    def _pastes_brows(
        self,
        profile: FaceProfile,
        sequence: SwapSequence | None,
        unit: float,
        light_brows: bool,
        brow_cover: float,
    ) -> bool:
        """Whether the selfie's own brows are pasted rather than the clip's kept: when they
        are dark and dense (``dense_brows`` of the brow band is hair) and its photo shows
        the face at least about as large as the clip does (an enlarged photo's brow hair
        is a blur, pasted over the clip's sharp brows a smudge)."""
        if self.dense_brows <= 0 or light_brows:
            return False
        if sequence is not None and sequence.rest is not None:
            unit = eye_distance(sequence.rest)  # one answer for the whole clip
        if unit > 1.2 * profile.quality.eye_distance:
            return False
        return brow_cover >= self.dense_brows

    def _tint_kept(
        self,
        source_parts: list[NDArray[np.float32] | None],
        region: RGBImage,
        target_lab: FloatImage,
        local: Points,
        dst: ColourStats,
        target_like: FloatImage,
        keep_brows: bool,
    ) -> FloatImage:
        """The target's region with the parts it keeps (lips; brows when ``keep_brows``)
        tinted like the selfie's: the same part-versus-skin contrast as on the selfie, in
        the target's light."""
        unit = float(eye_distance(local))
        shape = region.shape[:2]
        parts = [(OUTER_LIPS, self.lip_tint, False)]
        if keep_brows:
            parts.append((BROWS, self.brow_tint, True))
        out = region.astype(np.float32)
        pad = max(2, round(unit * 0.05))
        for source_part, (where, strength, brow) in zip(source_parts, parts, strict=False):
            if source_part is None or strength <= 0:
                continue
            # each part is worked on in a window around its landmarks (and the brow band's
            # width), not over the whole face
            reach = pad + (max(2, round(unit * 0.12)) if brow else 0) + 1
            x0, y0, x1, y1 = _box_around(local[where], reach, shape)
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            near = local - np.array([x0, y0], np.float32)
            size = (int(y1 - y0), int(x1 - x0))
            if brow:
                target_mask = _brow_band(near, size, unit) & (target_like[y0:y1, x0:x1] < 0.5)
            else:
                target_mask = _lip_mask(near, size)
            if target_mask.sum() < 8:
                continue
            lab = target_lab[y0:y1, x0:x1]
            seen = lab[target_mask].mean(axis=0)  # the clip's own part
            target_part = seen - dst.mean
            shift = (source_part - target_part) * strength
            shift[0] *= 0.6  # lightness carries the clip's light; follow the selfie partly
            if brow:
                # a dark brow lightened towards a selfie's grey or blond one kept its hair's
                # texture at a lower contrast: a grey-blue smudge. Lighten it a little; and
                # a redhead's hue on the clip's dark brows read as orange paint: half of it.
                shift[0] = min(float(shift[0]), 5.0)
                shift[1:] *= 0.5
            else:
                # a selfie's lipstick red moved onto a clip's pale lips read as paint
                hue = float(np.hypot(shift[1], shift[2]))
                if hue > self.lip_hue_reach:
                    shift[1:] *= self.lip_hue_reach / max(hue, 1e-6)
                if self.warm_lips:  # (the same chroma, at the clip's own hue)
                    own = math.atan2(float(seen[2]), float(seen[1]))
                    a, b = float(seen[1] + shift[1]), float(seen[2] + shift[2])
                    if math.atan2(b, a) < own:
                        chroma = math.hypot(a, b)
                        shift[1] = chroma * math.cos(own) - float(seen[1])
                        shift[2] = chroma * math.sin(own) - float(seen[2])
            crop = lab + shift.astype(np.float32)
            crop[:, :, 0] = np.clip(crop[:, :, 0], 0.0, 100.0)
            weight = blur(target_mask.astype(np.float32), max(0.5, unit * 0.015))
            window = out[y0:y1, x0:x1]
            window += (from_lab(crop) - window) * weight[:, :, None]
        return out


@dataclass(frozen=True, slots=True)
class _Parts:
    """The selfie's lips and brow hair against its skin."""

    contrasts: list[NDArray[np.float32] | None]  # lips, brows: CIELAB less the skin's
    brow_cover: float  # how much of its brow band is hair (0..1)


def _part_contrasts(profile: FaceProfile, glasses: NDArray[np.bool_]) -> _Parts:
    """How the selfie's lips and brow hair differ from its skin, in CIELAB, and how dense
    its brows are: measured once on the texture, applied to the clip's own lips and brows."""
    shape = profile.texture.shape[:2]
    unit = float(eye_distance(profile.points))
    lab = to_lab(profile.texture)
    skin = colour_stats(lab, skin_mask(profile.points, shape, unit))
    hair = skin_likeness(lab, skin) < 0.5
    hair &= ~glasses  # a frame is no brow
    band = _brow_band(profile.points, shape, unit)
    masks = [_lip_mask(profile.points, shape), band & hair]
    contrasts = [
        (lab[mask].mean(axis=0) - skin.mean).astype(np.float32) if mask.sum() >= 8 else None
        for mask in masks
    ]
    return _Parts(contrasts, float(masks[1].sum()) / max(float(band.sum()), 1.0))


def _frown_lines(texture: RGBImage, points: Points) -> NDArray[np.uint8]:
    """Where the selfie has frown lines (0..255): lines clearly darker than the skin beside
    them (a black-hat a quarter of the eye distance wide: an old man's frown is a dark
    furrow, not only a hairline), between the brows' inner ends and down to the top of the
    nose. Broader shading there (a brow ridge's, the nose bridge's) is not found."""
    unit = float(eye_distance(points))
    shape = texture.shape[:2]
    inward = np.array([0.03 * unit, 0.0], np.float32)
    up, down = np.array([0.0, 0.15 * unit], np.float32), np.array([0.0, 0.1 * unit], np.float32)
    between = [points[21] + inward - up, points[22] - inward - up, points[22] - inward + down]
    zone = fill(shape, np.vstack([*between, points[28], points[21] + inward + down]))
    size = max(3, 2 * round(unit * 0.12) + 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    found = np.zeros(shape, np.uint8)
    # (in a window around the zone, a kernel wide: the black-hat over the whole texture
    # was most of the time)
    x0, y0, x1, y1 = _box_around(np.vstack([*between, points[28]]), size + 4.0, shape)
    if x1 - x0 <= size or y1 - y0 <= size:
        return found
    lightness = np.ascontiguousarray(to_lab(texture[y0:y1, x0:x1])[:, :, 0])
    dark = cv2.morphologyEx(lightness, cv2.MORPH_BLACKHAT, kernel)
    inside = unit_scale(zone[y0:y1, x0:x1])
    lines = np.clip((dark - 5.0) / 6.0, 0.0, 1.0) * inside
    lines = np.asarray(cv2.dilate(lines, np.ones((3, 3), np.uint8)), np.float32)
    # soft-edged: the clip's detail laid over a hard-edged patch showed as one (a paler
    # square where a selfie's sparse glabella hair passed for a furrow)
    soft = blur(lines, max(1.0, unit * 0.04))
    found[y0:y1, x0:x1] = np.round(np.clip(soft * 1.5, 0.0, 1.0) * 255).astype(np.uint8)
    return found


def _brow_hair(
    lightness: FloatImage, points: Points, unit: float, skin: float, depth: float
) -> FloatImage:
    """Where the clip's brows are (0..1), at full resolution: in a band around their
    landmark lines, a little wider than :func:`_brow_band`'s, what is darker than its skin
    (``skin``, CIELAB L) by ``depth`` for all of it. The darkness is taken over a brow's
    width (a blur of 0.04 eye distances), not hair by hair: held hair by hair, a light
    brow's few darkest hairs stood out of the selfie's skin as a pencilled outline."""
    shape = lightness.shape[:2]
    hair = np.zeros(shape, np.float32)
    x0, y0, x1, y1 = _box_around(points[BROWS], unit * 0.2 + 3.0, shape)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return hair
    near = points - np.array([x0, y0], np.float32)
    drawn = _brow_band(near, (y1 - y0, x1 - x0), unit * 1.5).astype(np.uint8) * np.uint8(255)
    band = blur(drawn, max(0.5, unit * 0.03))
    light = blur(np.ascontiguousarray(lightness[y0:y1, x0:x1]), max(0.5, unit * 0.04))
    dark = skin - 4.0 - light  # (a few levels of shading are skin)
    found = np.clip(dark * np.float32(1.0 / max(depth, 1.0)), 0.0, 1.0) * band
    hair[y0:y1, x0:x1] = blur(found, max(0.5, unit * 0.02))
    return hair


def _brow_band(points: Points, shape: tuple[int, int], unit: float) -> NDArray[np.bool_]:
    """Around each brow's landmark line: where brow hair is."""
    mask = np.zeros(shape, np.uint8)
    thickness = max(2, round(unit * 0.12))
    for brow in (points[17:22], points[22:27]):
        cv2.polylines(mask, [np.round(brow).astype(np.int32)], False, 255, thickness)
    return np.asarray(mask > 0, dtype=np.bool_)


def _rim_light(
    residual: FloatImage,
    weight: FloatImage,
    points: Points,
    unit: float,
    reach: float,
    steady: Callable[[NDArray[np.float32]], NDArray[np.float32]] | None = None,
) -> FloatImage:
    """How much lighter (+) or darker (-) the face should be near its outline: the mean of
    ``residual`` (the clip's lightness less the relit selfie's, weighted by ``weight``: where
    both are skin) in bands of depth from the outline (an eighth of ``reach`` wide, inside
    ``reach`` eye distances) and in eight sectors around the nose tip, each pixel
    interpolated between its bands and sectors, fading from half ``reach`` to nothing at
    it. One number per band and sector: the edge's falloff and shadows are matched, the selfie's
    features (which vary within a sector) are not. In a clip the numbers are averaged over
    the frames (``steady``, see :meth:`SwapSequence.averaged`): measured on each frame
    alone they wobbled with its noise and the skin in view (devset flicker 1.095, averaged
    1.085; 1.080 without the rim light; 0.4 eye distances deep)."""
    shape = residual.shape
    face = fill(shape, _outline(points)) > 127
    inside = cv2.distanceTransform(face.astype(np.uint8), cv2.DIST_L2, 3)
    depth = np.asarray(inside, np.float32) / np.float32(unit * reach)  # 1 at ``reach``
    ys, xs = np.nonzero(face & (depth < 1.0))
    change = np.zeros(shape, np.float32)
    if len(ys) == 0:
        return change
    bins, sectors = _RIM_BINS, _RIM_SECTORS
    centre = points[30]
    angle = np.arctan2(ys - float(centre[1]), xs - float(centre[0])).astype(np.float32)
    # each pixel between two sectors (their centres 360/sectors degrees apart) and between
    # two bands' centres: weights for both
    turn = (angle * np.float32(sectors / (2.0 * np.pi))) % sectors
    sector = turn.astype(np.int32)
    along = turn - sector
    sector = np.stack([sector, (sector + 1) % sectors])
    along = np.stack([1.0 - along, along])
    deep = depth[ys, xs]
    band = np.minimum(deep * bins, bins - 1).astype(np.int32)
    cells = sector * bins + band  # the pixel's band in both of its sectors
    w = (weight[ys, xs] * along).ravel()
    total = np.bincount(
        cells.ravel(), weights=w * np.tile(residual[ys, xs], 2), minlength=bins * sectors
    )
    count = np.bincount(cells.ravel(), weights=w, minlength=bins * sectors)
    table = np.where(count >= 8.0, total / np.maximum(count, 1e-3), 0.0).astype(np.float32)
    table = table.reshape(sectors, bins)
    if steady is not None:
        table = steady(table)
    # between the bands' centres, linearly (the first and last band held to the ends)
    level = np.clip(deep * bins - 0.5, 0.0, bins - 1.0)
    lower = np.minimum(level.astype(np.int32), bins - 2)
    up = level - lower
    value = (table[sector, lower] * (1.0 - up) + table[sector, lower + 1] * up) * along
    t = np.clip(2.0 * (1.0 - deep), 0.0, 1.0)  # full strength to half the reach
    change[ys, xs] = np.clip(value.sum(axis=0) * (t * t * (3.0 - 2.0 * t)), -20.0, 20.0)
    return change


def _widen_dark(likeness: FloatImage, points: Points, unit: float) -> FloatImage:
    """``likeness`` with thin dark lines (glasses' frames, a pen) widened by a few percent
    of the eye distance, so they do not fade into the skin around them; broad shading and
    the lines around the eyes, nostrils and mouth, which are the face's own, stay as they
    are."""
    dark = 1.0 - likeness
    broad = cv2.morphologyEx(dark, cv2.MORPH_OPEN, disc(max(1, round(unit * 0.05))))
    thin = np.clip((dark - broad - 0.5) * 2.0, 0.0, 1.0)  # only what is clearly not skin
    size = max(3, 2 * round(unit * 0.03) + 1)
    thin = np.asarray(cv2.dilate(thin, np.ones((size, size), np.uint8)), np.float32)
    own = _grown_parts(
        points,
        likeness.shape[:2],
        unit,
        ((RIGHT_EYE, 0.1), (LEFT_EYE, 0.1), (NOSTRILS, 0.05), (OUTER_LIPS, 0.05)),
    )
    widened = np.minimum(likeness, 1.0 - thin)
    return np.where(own > 127, likeness, widened).astype(np.float32)


def _beard(texture: RGBImage, points: Points, scale: float) -> NDArray[np.uint8]:
    """Where the selfie has a beard or moustache (0..255): below the nose, the
    neighbourhoods (``scale`` eye distances wide) where most pixels are not skin.

    Worked out once on the texture at its full size, where the hairs are resolved: at the
    colour analysis' scale a sparse or grey beard averages into a skin-like colour, and a
    selfie lit from one side has skin so varied in lightness that a brown beard's mixed
    pixels pass for shadowed skin. So hair is also what is rough (fine detail several times
    the cheeks') or pale and hardly red (grey and white hair), and so is the thin beard
    between the lips and the rest of it. The lips and nostrils are the face's own and left
    out."""
    shape = texture.shape[:2]
    unit = float(eye_distance(points))
    zone = np.zeros(shape, np.uint8)
    top = max(0, int(float(points[33, 1]) - 0.1 * unit))  # from just above the nose tip
    if top >= shape[0]:
        return zone
    lab = to_lab(texture)
    cheeks = clear_skin(points, shape, unit)
    stats = colour_stats(lab, cheeks)
    light = np.ascontiguousarray(lab[:, :, 0])
    fine = np.abs(light - cv2.GaussianBlur(light, (0, 0), max(0.7, unit * 0.012)))
    rough = cv2.GaussianBlur(fine, (0, 0), max(0.7, unit * 0.02))
    smooth = float(np.median(rough[cheeks])) + 0.5
    lab, rough = lab[top:], rough[top:]
    hairy = np.clip((rough / smooth - 2.0) / 2.0, 0.0, 1.0)
    if float(stats.mean[1]) > 4.0:
        pale = np.clip((0.5 - lab[:, :, 1] / float(stats.mean[1])) / 0.2, 0.0, 1.0)
        pale[lab[:, :, 0] < float(stats.mean[0] - 0.5 * stats.std[0])] = 0.0
        hairy = np.maximum(hairy, pale)
    likeness = np.minimum(skin_likeness(lab, stats), 1.0 - hairy)
    density = blur(1.0 - likeness, max(0.7, unit * scale))
    hair = np.clip((density - 0.35) / 0.25, 0.0, 1.0)
    near = points - np.array([0.0, top], np.float32)
    # Between a beard and the lower lip (and under a moustache) the hair thins out and its
    # skin passes for skin: enclosed by the beard and the lips, it is beard too (a closing
    # over hair and lips, a quarter of the eye distance across). Pasted, it was a brownish
    # patch under the clip's lip.
    # (inside the jaw, where the background around a face is no part of it, and only
    # where hair encloses it clearly: a smile's faint folds beside the lips are not hair)
    lips = _grown_parts(near, lab.shape[:2], unit, ((OUTER_LIPS, 0.03),))
    closed = cv2.morphologyEx(
        np.maximum(hair, unit_scale(lips)),
        cv2.MORPH_CLOSE,
        disc(max(1, round(unit * 0.12))),
    )
    enclosed = (fill(lab.shape[:2], _hull(near[JAW])) > 127) & (closed > 0.75)
    hair = np.where(enclosed, np.maximum(hair, closed), hair).astype(np.float32)
    hair[(lips > 127) | (_grown_parts(near, lab.shape[:2], unit, ((NOSTRILS, 0.05),)) > 127)] = 0
    zone[top:] = np.round(hair * 255).astype(np.uint8)
    return zone


def _thin_lines(lightness: FloatImage, points: Points, unit: float) -> FloatImage:
    """Thin bright or dark lines around the eyes (glasses' frames, light metal ones too),
    1 where there is one: kept in front of the new face. Not the eyes' own, nor the
    nostrils'."""
    shape = lightness.shape[:2]
    size = max(3, 2 * round(unit * 0.03) + 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    eyes_y = float(points[36:48, 1].mean())
    top = float(points[17:27, 1].min()) - 0.1 * unit
    lines = np.zeros(shape, np.float32)
    # only the band from the brows to below the eyes is looked at (with a kernel's margin)
    first = min(max(0, int(top) - size), shape[0])
    last = min(shape[0], max(first, int(eyes_y + 0.6 * unit) + size + 1))
    if last - first < size:
        return lines
    band = np.ascontiguousarray(lightness[first:last])
    bright = cv2.morphologyEx(band, cv2.MORPH_TOPHAT, kernel)
    dark = cv2.morphologyEx(band, cv2.MORPH_BLACKHAT, kernel)
    # above the skin's own fine detail (pores, freckles: a few L units at this scale)
    found = np.clip((np.maximum(bright, dark) - 9.0) / 6.0, 0.0, 1.0)
    rows = np.arange(first, last, dtype=np.float32)[:, None]
    zone = (rows > top) & (rows < eyes_y + 0.6 * unit)
    near = points - np.array([0.0, first], np.float32)  # the band's own coordinates
    size_band = (last - first, shape[1])
    # the eyes' and the nose's lower edge's own lines are no frames (a face looking down
    # brings its nostrils up into the band: kept, they lay in front of the selfie's nose
    # as a dark line across it)
    own = _grown_parts(
        near, size_band, unit, ((RIGHT_EYE, 0.08), (LEFT_EYE, 0.08), (NOSTRILS, 0.12))
    )
    kept = zone & (own < 128) & ~_brow_band(near, size_band, unit)
    found = np.where(kept, found, 0.0).astype(np.float32)
    # the line's whole width, anti-aliased edges included (the zone is a kernel inside
    # the band, so nothing reaches past it)
    widened = np.asarray(cv2.dilate(found, np.ones((3, 3), np.uint8)), np.float32)
    lines[first:last] = blur(widened, 0.5)
    return lines


def _without_glasses(texture: RGBImage, points: Points) -> tuple[RGBImage, FloatImage]:
    """The selfie's texture with its glasses' frames painted over from the skin around
    them, and where that was (0..1). Left in, the frames were cut out of the new face (they
    are not skin) and the clip's own skin showed through in their shape: a ghost of the
    selfie's glasses on every frame.

    The frames (see :func:`_glasses_frames`) are filled with the skin around them: an
    average of the nearby pixels that look like skin, over the smallest neighbourhood that
    has enough of them (a twentieth of the eye distance, then twice that, ...). Inpainting
    from the hole's border (Telea's method, used before) dragged the frames' own dark edge
    pixels and the lashes into a thick frame's hole: a dark smear around both eyes and a
    pale band under the lenses. The eyes themselves are never painted."""
    unit = float(eye_distance(points))
    shape = texture.shape[:2]
    lab = to_lab(texture)
    frames = _glasses_frames(lab[:, :, 0], points, unit)
    if frames is None:
        return texture, np.zeros(shape, np.float32)
    eyes = np.maximum(fill(shape, points[RIGHT_EYE]), fill(shape, points[LEFT_EYE]))
    hole = np.asarray(cv2.dilate(frames, disc(max(1, round(unit * 0.03)))), np.uint8)
    hole[eyes > 127] = 0
    around = hole == 0
    weight = skin_likeness(lab, colour_stats(lab, skin_mask(points, shape, unit) & around))
    weight[~around] = 0.0
    colour = texture.astype(np.float32)
    filled = np.zeros_like(colour)
    found = np.zeros(shape, np.float32)
    sigma = max(1.0, unit * 0.05)
    for _ in range(4):  # each pixel from the smallest neighbourhood with enough skin in it
        support = blur(weight, sigma)
        share = np.clip(support / 0.2, 0.0, 1.0) * (1.0 - found)
        for channel in range(3):
            mean = blur(np.ascontiguousarray(colour[:, :, channel] * weight), sigma)
            filled[:, :, channel] += mean / np.maximum(support, 1e-4) * share
        found += share
        sigma *= 2.0
    filled /= np.maximum(found, 1e-4)[:, :, None]
    where = blur(hole, max(0.5, unit * 0.01))
    colour += (filled - colour) * where[:, :, None]
    painted = np.clip(colour + 0.5, 0, 255).astype(np.uint8)
    return painted, np.asarray(where, np.float32)


def _glasses_frames(lightness: FloatImage, points: Points, unit: float) -> NDArray[np.uint8] | None:
    """The selfie's glasses' frames (255), or None: lines clearly darker, or clearly
    brighter, than the skin around them (a black-hat or top-hat a seventh of the eye
    distance wide, a quarter for thick frames) in strokes that span the nose between the
    eyes (the bridge) from one lens to the other, crossing it; brows, lids, wrinkles and a
    turned nose's edge never do. One polarity: the one whose bridge stroke stands out most.
    Both at once (used before) also took the skin inside a dark frame's lenses, which is
    brighter than the rims around it."""
    shape = lightness.shape[:2]
    rows = np.arange(shape[0], dtype=np.float32)[:, None]
    top = float(points[17:27, 1].min()) - 0.05 * unit
    bottom = float(points[36:48, 1].mean()) + 0.55 * unit
    zone = (rows > top) & (rows < bottom) & (fill(shape, _outline(points)) > 127)
    zone &= _grown_parts(points, shape, unit, ((RIGHT_EYE, 0.04), (LEFT_EYE, 0.04))) < 128
    # Only the zone's strokes count: the morphology runs on a crop around it, wide enough
    # (twice the largest kernel) that inside the zone it gives what the whole texture does
    # (the devset's textures: _without_glasses 18-37 ms on the whole texture, 10-23 ms).
    sizes = [max(3, 2 * round(unit * width / 2) + 1) for width in (0.14, 0.25)]  # odd
    margin = 2 * (max(sizes) // 2 + 1)
    ys, xs = np.nonzero(zone)
    if len(ys) == 0:
        return None
    c0, r0 = max(int(xs.min()) - margin, 0), max(int(ys.min()) - margin, 0)
    c1, r1 = min(int(xs.max()) + margin + 1, shape[1]), min(int(ys.max()) + margin + 1, shape[0])
    crop = np.ascontiguousarray(lightness[r0:r1, c0:c1])
    zone = zone[r0:r1, c0:c1]
    x0, x1 = sorted((float(points[39, 0]) - c0, float(points[42, 0]) - c0))
    y0 = float(points[[21, 22], 1].mean()) - r0
    y1 = float(points[[39, 42], 1].mean()) + 0.05 * unit - r0
    for size in sizes:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        best, strongest = None, 0.0
        for operation in (cv2.MORPH_BLACKHAT, cv2.MORPH_TOPHAT):
            contrast = cv2.morphologyEx(crop, operation, kernel)
            strong = ((contrast > 18.0) & zone).astype(np.uint8)
            _, labels, stats, _ = cv2.connectedComponentsWithStats(strong, connectivity=8)
            left, wide = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_WIDTH]
            high, tall = stats[:, cv2.CC_STAT_TOP], stats[:, cv2.CC_STAT_HEIGHT]
            bridge = (
                (np.maximum(wide, tall) >= 0.3 * unit)
                & (left <= x0)
                & (left + wide >= x1)
                & (high <= y1)
                & (high + tall >= y0)
            )
            bridge[0] = False  # the background
            # ...and crosses it: in nearly every column between the eyes' inner corners,
            # between the brows and the eyes (a nose's shadow joined to a lid has the span
            # but not the crossing)
            window = labels[max(0, int(y0)) : int(np.ceil(y1)) + 1, int(np.ceil(x0)) : int(x1) + 1]
            for index in np.flatnonzero(bridge):
                if window.size == 0 or float((window == index).any(axis=0).mean()) < 0.8:
                    bridge[index] = False
            if not bridge.any():
                continue
            frames = bridge[labels]
            stands_out = float(contrast[frames].mean())
            if stands_out > strongest:
                best, strongest = frames, stands_out
        if best is not None:
            frames = np.zeros(shape, np.uint8)
            frames[r0:r1, c0:c1] = np.asarray(best, np.uint8) * np.uint8(255)
            return frames
    return None


def _grown_parts(
    points: Points, shape: tuple[int, int], unit: float, parts: Sequence[tuple[slice, float]]
) -> NDArray[np.uint8]:
    """255 over each landmark group's hull, grown by its share of the eye distance."""
    mask = np.zeros(shape, np.uint8)
    for part, grow in parts:
        mask = np.maximum(mask, grown_hull(shape, _hull(points[part]), max(1, round(unit * grow))))
    return mask


def _box_around(points: Points, reach: float, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """``x0, y0, x1, y1``: the pixels within ``reach`` of ``points``' bounding box, inside a
    ``shape`` picture (empty when they miss it)."""
    x0, y0 = np.floor(points.min(axis=0) - reach).astype(int)
    x1, y1 = np.ceil(points.max(axis=0) + reach).astype(int) + 1
    return max(int(x0), 0), max(int(y0), 0), min(int(x1), shape[1]), min(int(y1), shape[0])


def _hull(points: Points) -> Points:
    return np.asarray(cv2.convexHull(points), np.float32).reshape(-1, 2)


def _lip_mask(points: Points, shape: tuple[int, int]) -> NDArray[np.bool_]:
    """The lips themselves: the outer lip outline less the mouth opening."""
    return np.asarray(
        (fill(shape, points[OUTER_LIPS]) > 127) & (fill(shape, points[INNER_LIPS]) < 128),
        dtype=np.bool_,
    )


__all__ = [
    "BatchSwapper",
    "ClassicSwapper",
    "SwapSequence",
    "Swapper",
]
