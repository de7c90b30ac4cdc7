"""Meme captions: memegen-style text boxes, the largest font that fits, balanced wrapping.

A :class:`CaptionBox` is relative geometry (a share of the frame's width and height), so the
same template works at any output size. :func:`render_caption` lays the text out in 1 to 3
lines (balanced: the longest line as short as possible), picks the largest font size at
which it fits, draws it white with a black outline scaled to the size, upper case by
default, and returns an RGBA overlay. Latin and Cyrillic use the Oswald Bold font FaceCast
carries; CJK and emoji use system fonts when present and are otherwise replaced by a
visible ``?`` and logged, never drawn as empty boxes.
"""

from __future__ import annotations

import functools
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel, ConfigDict, Field

from core.errors import CaptionTooLong

log = logging.getLogger(__name__)

MAX_CAPTION_CHARS = 140
MAX_LINES = 3
FONT_DIR = Path(__file__).resolve().parent / "fonts"
MAIN_FONT = FONT_DIR / "Oswald-Bold.woff"
# Where Debian/Ubuntu (and the Docker image) put fonts that cover CJK and emoji.
CJK_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)
EMOJI_FONTS = ("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",)
_EMOJI_BITMAP_SIZE = 109  # Noto Color Emoji has bitmaps at this size only
_REFERENCE = 100  # font size at which text is measured; widths scale linearly
_LINE_GAP = 0.08  # extra space between lines, share of the font size

FontKind = Literal["main", "cjk", "emoji"]
RGBA = NDArray[np.uint8]


class CaptionBox(BaseModel):
    """Where a caption goes, as shares of the frame (memegen's geometry)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    anchor_x: float = Field(default=0.03, ge=0, le=1)
    anchor_y: float = Field(default=0.03, ge=0, le=1)
    scale_x: float = Field(default=0.94, gt=0, le=1)
    scale_y: float = Field(default=0.22, gt=0, le=1)
    align: Literal["left", "center", "right"] = "center"
    valign: Literal["top", "middle", "bottom"] = "middle"
    style: Literal["upper", "none"] = "upper"
    color: tuple[int, int, int] = (255, 255, 255)
    outline: tuple[int, int, int] = (0, 0, 0)
    start: float = Field(default=0.0, ge=0, le=1)  # shown from this share of the duration
    stop: float = Field(default=1.0, ge=0, le=1)  # ... until this one

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        x0, y0 = round(self.anchor_x * width), round(self.anchor_y * height)
        x1 = min(width, x0 + round(self.scale_x * width))
        y1 = min(height, y0 + round(self.scale_y * height))
        return x0, y0, x1, y1


TOP = CaptionBox(anchor_y=0.03, valign="top")
BOTTOM = CaptionBox(anchor_y=0.75, valign="bottom")


class FontSet:
    """The carried font plus whatever system fonts cover CJK and emoji. Fonts and their
    character maps are opened on first use and kept (one FontSet serves the process)."""

    def __init__(self, main: Path, cjk: Path | None, emoji: Path | None) -> None:
        self.paths: dict[FontKind, Path] = {"main": main}
        if cjk is not None:
            self.paths["cjk"] = cjk
        if emoji is not None:
            self.paths["emoji"] = emoji
        self._coverage: dict[FontKind, frozenset[int]] = {}
        self._fonts: dict[tuple[FontKind, int], ImageFont.FreeTypeFont] = {}

    def covers(self, kind: FontKind, code: int) -> bool:
        if kind not in self.paths:
            return False
        if kind not in self._coverage:
            from fontTools.ttLib import TTFont

            with TTFont(str(self.paths[kind]), lazy=True, fontNumber=0) as font:
                self._coverage[kind] = frozenset(font.getBestCmap())
        return code in self._coverage[kind]

    def kind_of(self, character: str) -> FontKind | None:
        kinds: tuple[FontKind, ...] = ("main", "cjk", "emoji")
        return next((k for k in kinds if self.covers(k, ord(character))), None)

    def font(self, kind: FontKind, size: int) -> ImageFont.FreeTypeFont:
        # Colour emoji exist as bitmaps of one size only: drawn at that, then scaled.
        key = (kind, _EMOJI_BITMAP_SIZE if kind == "emoji" else max(1, size))
        if key not in self._fonts:
            self._fonts[key] = ImageFont.truetype(str(self.paths[kind]), key[1])
        return self._fonts[key]


def _first_existing(paths: tuple[str, ...]) -> Path | None:
    return next((Path(p) for p in paths if Path(p).is_file()), None)


@functools.lru_cache(maxsize=1)
def default_fonts() -> FontSet:
    return FontSet(MAIN_FONT, _first_existing(CJK_FONTS), _first_existing(EMOJI_FONTS))


@dataclass(frozen=True, slots=True)
class Run:
    text: str
    kind: FontKind


def check_caption(text: str) -> str:
    """The caption with its whitespace tidied, or :class:`CaptionTooLong`."""
    cleaned = " ".join(text.split())
    if len(cleaned) > MAX_CAPTION_CHARS:
        raise CaptionTooLong(
            f"That caption is {len(cleaned)} characters long; "
            f"a meme caption can have at most {MAX_CAPTION_CHARS}."
        )
    return cleaned


def prepare(text: str, box: CaptionBox, fonts: FontSet) -> list[Run]:
    """Clean the caption, apply the box's case, and split it into runs by covering font;
    characters no font has become a visible '?' (and a warning)."""
    cleaned = check_caption(text)
    if box.style == "upper":
        cleaned = cleaned.upper()
    runs: list[Run] = []
    missing: list[str] = []
    for character in cleaned:
        kind = "main" if character == " " else fonts.kind_of(character)
        if kind is None:
            missing.append(character)
            character, kind = "?", "main"
        if runs and runs[-1].kind == kind:
            runs[-1] = Run(runs[-1].text + character, kind)
        else:
            runs.append(Run(character, kind))
    if missing:
        log.warning(
            "no installed font covers %s; drawn as '?'",
            ", ".join(f"U+{ord(c):04X}" for c in dict.fromkeys(missing)),
        )
    return runs


@functools.lru_cache(maxsize=4096)
def _advance(fonts: FontSet, character: str, kind: FontKind) -> float:
    """Width of one character at the reference size."""
    font = fonts.font(kind, _REFERENCE)
    width = float(font.getlength(character))
    if kind == "emoji":
        width *= _REFERENCE / _EMOJI_BITMAP_SIZE
    return width


@dataclass(frozen=True, slots=True)
class Layout:
    lines: tuple[tuple[Run, ...], ...]
    size: int  # font size in pixels
    widths: tuple[float, ...]  # of each line, in pixels at ``size``


def _line_height(fonts: FontSet, size: float) -> float:
    ascent, descent = fonts.font("main", _REFERENCE).getmetrics()
    return (ascent + descent) * size / _REFERENCE


def _split_runs(runs: list[Run], start: int, stop: int) -> tuple[Run, ...]:
    """The runs covering characters [start, stop) of the joined text."""
    out: list[Run] = []
    position = 0
    for run in runs:
        end = position + len(run.text)
        lo, hi = max(start, position), min(stop, end)
        if lo < hi:
            out.append(Run(run.text[lo - position : hi - position], run.kind))
        position = end
    return tuple(out)


def layout(
    runs: list[Run], width: float, height: float, fonts: FontSet, *, min_size: int = 10
) -> Layout:
    """The biggest font size, over 1-3 balanced lines, at which the text fits the box.

    Lines break at spaces. Only when that leaves the text unreadably small (a single very
    long word) may a line break inside a word.
    """
    text = "".join(run.text for run in runs)
    kinds = [run.kind for run in runs for _ in run.text]
    advances = [_advance(fonts, c, k) for c, k in zip(text, kinds, strict=True)]
    prefix = [0.0, *itertools.accumulate(advances)]
    line_unit = _line_height(fonts, _REFERENCE)

    def span(start: int, stop: int) -> tuple[int, int, float]:
        while start < stop and text[start] == " ":
            start += 1
        while stop > start and text[stop - 1] == " ":
            stop -= 1
        return start, stop, prefix[stop] - prefix[start]

    def best(breaks: list[int]) -> tuple[float, list[tuple[int, int, float]]]:
        # The largest size wins; among layouts within 2% of it, the most even lines do
        # (two short lines and one long one read worse than three alike).
        scored: list[tuple[float, float, list[tuple[int, int, float]]]] = []
        for count in range(1, MAX_LINES + 1):
            for cut in itertools.combinations(breaks, count - 1):
                edges = [0, *cut, len(text)]
                lines = [span(a, b) for a, b in itertools.pairwise(edges)]
                if any(a == b for a, b, _ in lines):
                    continue
                widths = [w for _, _, w in lines]
                tall = count * line_unit + (count - 1) * _LINE_GAP * _REFERENCE
                size = _REFERENCE * min(width / max(max(widths), 1e-6), height / tall)
                scored.append((size, max(widths) - min(widths), lines))
        if not scored:
            return 0.0, []
        top = max(size for size, _, _ in scored)
        near = [entry for entry in scored if entry[0] >= 0.98 * top]
        size, _, lines = min(near, key=lambda entry: (len(entry[2]), entry[1]))
        return size, lines

    spaces = [i for i, c in enumerate(text) if c == " "]
    size, lines = best(spaces)
    if size < min_size and len(text) > 1:
        size, lines = best(list(range(1, len(text))))
    scale = int(size) / _REFERENCE
    return Layout(
        lines=tuple(_split_runs(runs, a, b) for a, b, _ in lines),
        size=max(1, int(size)),
        widths=tuple(w * scale for _, _, w in lines),
    )


def _stroke(size: int) -> int:
    return max(1, round(size / 14))


def _emoji(fonts: FontSet, character: str, size: int) -> Image.Image:
    font = fonts.font("emoji", size)
    box = font.getbbox(character)
    glyph = Image.new("RGBA", (round(box[2]) + 2, round(box[3]) + 2), (0, 0, 0, 0))
    ImageDraw.Draw(glyph).text((0, 0), character, font=font, embedded_color=True)
    advance = float(font.getlength(character))
    side = max(1, round(advance * size / _EMOJI_BITMAP_SIZE))
    return glyph.resize(
        (side, round(glyph.height * side / max(glyph.width, 1))), Image.Resampling.LANCZOS
    )


Ink = tuple[float, float, float, float]


def _line_ink(line: tuple[Run, ...], size: int, fonts: FontSet) -> tuple[Ink, list[float]]:
    """Where a line's drawn pixels (outline included) reach, relative to its pen start at
    the ascender line, and the x at which each run starts."""
    stroke = _stroke(size)
    lefts, tops, rights, bottoms, starts = [], [], [], [], []
    x = 0.0
    emoji_top = _line_height(fonts, size) * 0.1
    for run in line:
        starts.append(x)
        if run.kind == "emoji":
            width = sum(_advance(fonts, c, "emoji") for c in run.text) * size / _REFERENCE
            lefts.append(x)
            tops.append(emoji_top)
            rights.append(x + width)
            bottoms.append(emoji_top + size)
            x += width
            continue
        font = fonts.font(run.kind, size)
        left, top, right, bottom = font.getbbox(run.text, stroke_width=stroke, anchor="la")
        lefts.append(x + left)
        tops.append(top)
        rights.append(x + right)
        bottoms.append(bottom)
        x += float(font.getlength(run.text))
    return (min(lefts), min(tops), max(rights), max(bottoms)), starts


def render_caption(
    text: str,
    box: CaptionBox,
    frame_size: tuple[int, int],
    fonts: FontSet | None = None,
) -> RGBA:
    """An RGBA overlay the size of the frame with ``text`` laid out in ``box``.

    The layout's size comes from advance widths; the drawn ink (accents above capitals,
    descenders, the outline) is then measured exactly and the size reduced until every
    pixel lies inside the box.
    """
    fonts = fonts or default_fonts()
    width, height = frame_size
    overlay = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    runs = prepare(text, box, fonts)
    if not runs:
        return np.asarray(overlay)
    x0, y0, x1, y1 = box.pixels(width, height)
    box_w, box_h = x1 - x0, y1 - y0
    fit = layout(runs, box_w, box_h, fonts)
    size = fit.size
    for _ in range(12):
        pitch = _line_height(fonts, size) + _LINE_GAP * size
        measured = [_line_ink(line, size, fonts) for line in fit.lines]
        ink_top = min(n * pitch + ink[1] for n, (ink, _) in enumerate(measured))
        ink_bottom = max(n * pitch + ink[3] for n, (ink, _) in enumerate(measured))
        widest = max(ink[2] - ink[0] for ink, _ in measured)
        tall = ink_bottom - ink_top
        if (widest <= box_w and tall <= box_h) or size <= 1:
            break
        size = max(1, int(size * min(box_w / widest, box_h / tall) * 0.98))
    offset_y = {
        "top": y0 - ink_top,
        "middle": (y0 + y1) / 2 - (ink_top + ink_bottom) / 2,
        "bottom": y1 - ink_bottom,
    }[box.valign]
    stroke = _stroke(size)
    draw = ImageDraw.Draw(overlay)
    for number, (line, ((left, _, right, _), starts)) in enumerate(
        zip(fit.lines, measured, strict=True)
    ):
        offset_x = {
            "left": x0 - left,
            "center": (x0 + x1) / 2 - (left + right) / 2,
            "right": x1 - right,
        }[box.align]
        y = offset_y + number * pitch
        for run, start in zip(line, starts, strict=True):
            x = offset_x + start
            if run.kind == "emoji":
                for character in run.text:
                    glyph = _emoji(fonts, character, size)
                    top = round(y + _line_height(fonts, size) * 0.1)
                    overlay.alpha_composite(glyph, (max(0, round(x)), max(0, top)))
                    x += glyph.width
                continue
            draw.text(
                (x, y),
                run.text,
                font=fonts.font(run.kind, size),
                fill=(*box.color, 255),
                stroke_width=stroke,
                stroke_fill=(*box.outline, 255),
            )
    return np.asarray(overlay)


__all__ = [
    "BOTTOM",
    "MAX_CAPTION_CHARS",
    "TOP",
    "CaptionBox",
    "FontSet",
    "Layout",
    "Run",
    "check_caption",
    "default_fonts",
    "layout",
    "prepare",
    "render_caption",
]
