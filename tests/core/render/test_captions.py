from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from core.errors import CaptionTooLong
from core.render.captions import (
    BOTTOM,
    MAIN_FONT,
    MAX_CAPTION_CHARS,
    TOP,
    CaptionBox,
    FontSet,
    default_fonts,
    layout,
    prepare,
    render_caption,
)

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
FRAME = (480, 360)
UPDATE = os.environ.get("FACECAST_UPDATE_GOLDENS") == "1"


def _on_grey(layer: np.ndarray) -> np.ndarray:
    """Composite a caption layer on mid-grey, as a viewer would see it."""
    alpha = layer[:, :, 3:].astype(np.float32) / 255.0
    return (layer[:, :, :3] * alpha + 128 * (1 - alpha)).round().astype(np.uint8)


def _assert_matches_golden(name: str, picture: np.ndarray) -> None:
    path = GOLDEN / f"{name}.png"
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"no golden image {path.name}: run with FACECAST_UPDATE_GOLDENS=1")
        Image.fromarray(picture).save(path)
    golden = np.asarray(Image.open(path).convert("RGB")).astype(int)
    difference = np.abs(golden - picture.astype(int)).max(axis=2)
    # Tolerance for anti-aliasing differences between FreeType builds.
    assert difference.mean() < 1.5, difference.mean()
    assert (difference > 80).mean() < 0.003


CASES = {
    "short": ("One does not simply", TOP),
    "three-lines": (
        "When you finally fix the bug and then find out the real bug was in production "
        "all along and nobody noticed for three weeks",
        TOP,
    ),
    "long-word": ("Supercalifragilisticexpialidociousnessification", BOTTOM),
    "cyrillic": ("Съешь же ещё этих мягких булок", BOTTOM),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_caption_layout_matches_golden(name: str) -> None:
    text, box = CASES[name]
    _assert_matches_golden(f"caption-{name}", _on_grey(render_caption(text, box, FRAME)))


def _lines(text: str, box: CaptionBox, fonts: FontSet | None = None) -> list[str]:
    fonts = fonts or default_fonts()
    x0, y0, x1, y1 = box.pixels(*FRAME)
    fit = layout(prepare(text, box, fonts), x1 - x0, y1 - y0, fonts)
    return ["".join(run.text for run in line) for line in fit.lines]


def test_wrapping_is_balanced_into_at_most_three_lines() -> None:
    lines = _lines(CASES["three-lines"][0], TOP)
    assert len(lines) == 3
    lengths = [len(line) for line in lines]
    assert max(lengths) - min(lengths) < 12  # balanced, not "short, long, long"
    assert lines == [line.upper() for line in lines]  # upper case by default


def test_short_text_stays_on_one_big_line() -> None:
    assert _lines("Hello", TOP) == ["HELLO"]
    fonts = default_fonts()
    runs = prepare("Hello", TOP, fonts)
    x0, y0, x1, y1 = TOP.pixels(*FRAME)
    assert layout(runs, x1 - x0, y1 - y0, fonts).size > 50


def test_a_single_long_word_shrinks_to_fit_on_one_line() -> None:
    assert _lines(CASES["long-word"][0], BOTTOM) == [CASES["long-word"][0].upper()]


def test_style_none_keeps_the_case() -> None:
    assert _lines("MiXeD", CaptionBox(style="none")) == ["MiXeD"]


def test_too_long_a_caption_is_refused() -> None:
    with pytest.raises(CaptionTooLong, match=f"at most {MAX_CAPTION_CHARS}"):
        render_caption("x" * (MAX_CAPTION_CHARS + 1), TOP, FRAME)


def test_characters_no_font_covers_are_replaced_visibly_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    latin_only = FontSet(MAIN_FONT, None, None)
    with caplog.at_level(logging.WARNING, logger="core.render.captions"):
        lines = _lines("hi 日本", TOP, latin_only)
    assert lines == ["HI ??"]
    assert "U+65E5" in caplog.text


cjk_font = pytest.mark.skipif(
    "cjk" not in default_fonts().paths, reason="no CJK system font installed"
)
emoji_font = pytest.mark.skipif(
    "emoji" not in default_fonts().paths, reason="no colour emoji system font installed"
)


@cjk_font
def test_cjk_caption_matches_golden() -> None:
    picture = _on_grey(render_caption("日本語のキャプション", TOP, FRAME))
    _assert_matches_golden("caption-cjk", picture)


@emoji_font
def test_emoji_are_drawn_in_colour() -> None:
    layer = render_caption("🔥 FIRE 🔥", BOTTOM, FRAME)
    picture = _on_grey(layer).astype(int)
    # Flame emoji are orange/red: strongly saturated pixels where plain text has none.
    saturation = picture.max(axis=2) - picture.min(axis=2)
    assert (saturation > 120).sum() > 200
    _assert_matches_golden("caption-emoji", _on_grey(layer))


alphabet = st.characters(categories=("Lu", "Ll", "Nd"), max_codepoint=0x4FF)
words = st.text(alphabet=alphabet, min_size=1, max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.lists(words, min_size=1, max_size=12)
    .map(" ".join)
    .filter(lambda t: len(t) <= MAX_CAPTION_CHARS),
    anchor_y=st.floats(0.0, 0.7),
    scale_x=st.floats(0.4, 0.95),
    scale_y=st.floats(0.1, 0.3),
)
def test_text_never_leaves_its_box(
    text: str, anchor_y: float, scale_x: float, scale_y: float
) -> None:
    box = CaptionBox(anchor_x=0.02, anchor_y=anchor_y, scale_x=scale_x, scale_y=scale_y)
    layer = render_caption(text, box, FRAME)
    x0, y0, x1, y1 = box.pixels(*FRAME)
    inside = np.zeros(layer.shape[:2], bool)
    inside[y0:y1, x0:x1] = True
    assert layer[:, :, 3][~inside].max(initial=0) == 0
    assert layer[:, :, 3][inside].max() > 0  # and it is drawn
