from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.config import Settings
from core.engines.classic import ClassicSwapper
from core.errors import CaptionTooLong, ClipNotFound
from core.faces.analyzer import DlibAnalyzer
from core.faces.landmarks import eye_distance
from core.faces.profile import FaceProfile, build_profile
from core.media.images import AI_NOTE, RGBImage
from core.media.overlay import ai_label
from core.media.video import read_video
from core.packs.library import MANIFEST
from core.render.effects import Scene, deal_with_it, deep_fried, sunglasses_pose
from core.render.memes import (
    MemeLibrary,
    load_template,
    meme_timing,
    render_meme,
    render_meme_to_file,
)

from ...conftest import REPO

SETTINGS = Settings(bundled_clips_dir=REPO / "clips", clips_dir=REPO / "clips" / "_none")
TEMPLATES = [template.id for template in MemeLibrary(SETTINGS).all()]


@pytest.fixture(scope="module")
def faces(analyzer: DlibAnalyzer, astronaut: RGBImage, hanks: RGBImage) -> dict[str, FaceProfile]:
    # Hanks' sample is a chin-cropped greyscale crop that enrolment refuses; effects must
    # still work on whatever face a profile holds.
    return {
        "astronaut": build_profile(astronaut, analyzer.detect(astronaut)[0]),
        "hanks": build_profile(hanks, analyzer.detect(hanks)[0]),
    }


def test_at_least_six_templates_of_both_kinds() -> None:
    templates = MemeLibrary(SETTINGS).all()
    assert len(templates) >= 6
    effects = {t.manifest.effect for t in templates if t.manifest.effect}
    clips = {t.manifest.clip for t in templates if t.manifest.clip}
    assert len(effects) >= 5
    assert clips


@pytest.mark.parametrize("face", ["astronaut", "hanks"])
@pytest.mark.parametrize("template_id", TEMPLATES)
def test_every_template_renders(faces: dict[str, FaceProfile], template_id: str, face: str) -> None:
    template = MemeLibrary(SETTINGS).get(template_id)
    frames = list(render_meme(faces[face], template, SETTINGS, ClassicSwapper(), label=False))
    count, fps = meme_timing(template, SETTINGS)
    assert len(frames) == count
    assert 8 <= fps <= 30
    assert max(frames[0].shape[:2]) == template.manifest.size
    # It moves.
    changes = [np.abs(a.astype(int) - b).mean() for a, b in itertools.pairwise(frames)]
    assert max(changes) > 2
    # Its default caption is drawn: white ink with a dark outline in the caption box.
    m = template.manifest
    caption, box = (m.top, m.top_box) if m.top else (m.bottom, m.bottom_box)
    x0, y0, x1, y1 = box.pixels(frames[-1].shape[1], frames[-1].shape[0])
    region = frames[-1][y0:y1, x0:x1].astype(int)
    assert caption
    assert (region.min(axis=2) > 235).mean() > 0.01


def test_sunglasses_land_on_the_eyes(faces: dict[str, FaceProfile]) -> None:
    for profile in faces.values():
        scene = Scene.from_profile(profile, 360)
        before = scene.image.astype(int)
        after = deal_with_it(scene, 0.99).astype(int)
        # The glasses: every pixel the effect changed; they are mostly near-black.
        drawn = np.abs(after - before).max(axis=2) > 0
        ys, xs = np.nonzero(drawn)
        assert len(xs) > 200
        assert (after[drawn].max(axis=1) < 20).mean() > 0.7
        found = np.array([(xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2])
        eyes = scene.eyes_mid
        unit = eye_distance(scene.landmarks)
        assert np.linalg.norm(found - eyes) < 0.1 * unit
        # ...and they fell from above to get there.
        start, _, _ = sunglasses_pose(scene, 0.0)
        assert start[1] < 0


def test_laser_eyes_shine_from_the_eyes(faces: dict[str, FaceProfile]) -> None:
    scene = Scene.from_profile(faces["astronaut"], 360)
    frame = deep_fried(scene, 0.0).astype(int)
    # The effect zooms a little about the face; eyes stay within a few pixels.
    for x, y in scene.eyes:
        patch = frame[
            round(float(y)) - 3 : round(float(y)) + 4, round(float(x)) - 3 : round(float(x)) + 4
        ]
        red, green = patch[:, :, 0].mean(), patch[:, :, 1].mean()
        assert red > 200
        assert red - green > 100


def test_captions_can_be_replaced_or_removed(faces: dict[str, FaceProfile]) -> None:
    template = MemeLibrary(SETTINGS).get("deal-with-it")
    profile = faces["astronaut"]
    default = list(render_meme(profile, template, SETTINGS, ClassicSwapper(), label=False))
    mine = list(
        render_meme(profile, template, SETTINGS, ClassicSwapper(), bottom="Привет", label=False)
    )
    none = list(render_meme(profile, template, SETTINGS, ClassicSwapper(), bottom="", label=False))
    x0, y0, x1, y1 = template.manifest.bottom_box.pixels(360, 360)
    region = np.s_[y0:y1, x0:x1]
    assert not np.array_equal(default[-1][region], mine[-1][region])
    assert (none[-1][region].min(axis=2) > 235).mean() < 0.005  # no white caption ink left
    with pytest.raises(CaptionTooLong):
        list(render_meme(profile, template, SETTINGS, ClassicSwapper(), top="x" * 200))


def test_timed_caption_appears_late(faces: dict[str, FaceProfile]) -> None:
    template = MemeLibrary(SETTINGS).get("to-the-moon")  # bottom caption from 60% on
    profile = faces["astronaut"]
    with_it = list(render_meme(profile, template, SETTINGS, ClassicSwapper(), label=False))
    without = list(
        render_meme(profile, template, SETTINGS, ClassicSwapper(), bottom="", label=False)
    )
    x0, y0, x1, y1 = template.manifest.bottom_box.pixels(with_it[0].shape[1], with_it[0].shape[0])
    region = np.s_[y0:y1, x0:x1]
    shown = [
        not np.array_equal(a[region], b[region]) for a, b in zip(with_it, without, strict=True)
    ]
    first = shown.index(True)
    assert 0.55 <= first / len(shown) <= 0.65
    assert all(shown[first:])


@pytest.mark.parametrize(
    ("template_id", "bottom", "collided"),
    [
        ("deal-with-it", "the bass drops", True),  # its last letter ran under the badge
        ("deal-with-it", "and that is why we never deploy on fridays", False),
        ("earthquake", "the bass drops", False),
    ],
)
def test_the_ai_badge_keeps_clear_of_caption_ink(
    faces: dict[str, FaceProfile], template_id: str, bottom: str, collided: bool
) -> None:
    template = MemeLibrary(SETTINGS).get(template_id)

    def first(**kwargs: Any) -> RGBImage:
        frames = render_meme(faces["astronaut"], template, SETTINGS, ClassicSwapper(), **kwargs)
        return next(iter(frames)).astype(np.int16)

    plain = first(top="", bottom="", label=False)
    captioned = first(top="top text", bottom=bottom, label=False)
    labelled = first(top="top text", bottom=bottom)
    badge = np.abs(labelled - captioned).max(axis=2) > 0
    ink = np.abs(captioned - plain).max(axis=2) > 0
    height, width = ink.shape
    assert badge.sum() > 50  # the badge is there
    assert not (badge & ink).any()
    corner = ai_label(width, height)  # where the badge goes when nothing is in the way
    patch = ink[
        corner.y : corner.y + corner.rgba.shape[0], corner.x : corner.x + corner.rgba.shape[1]
    ]
    assert patch.any() == collided
    # ... and the badge stays on the right, below the middle, not lost somewhere.
    ys, xs = np.nonzero(badge)
    assert xs.min() > width * 0.8
    assert ys.min() > height * 0.5


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_meme_file_is_labelled_and_fits_a_budget(
    tmp_path: Path, faces: dict[str, FaceProfile], suffix: str
) -> None:
    template = MemeLibrary(SETTINGS).get("spin")
    out = tmp_path / f"meme{suffix}"
    result = render_meme_to_file(
        faces["astronaut"], template, SETTINGS, ClassicSwapper(), out, max_bytes=600_000
    )
    assert result.size_bytes <= 600_000
    frames = list(read_video(out))
    assert len(frames) == result.frames
    height, width = frames[0].shape[:2]
    badge = frames[len(frames) // 2][int(height * 0.9) :, int(width * 0.9) :]
    assert (badge.max(axis=2) > 200).any()  # the white "AI" of the badge
    if suffix == ".gif":
        with Image.open(out) as gif:
            assert gif.info.get("comment") == AI_NOTE.encode()


def test_broken_templates_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "both"
    folder.mkdir()
    (folder / MANIFEST).write_text(
        'id = "both"\nkind = "meme"\ntitle = "x"\neffect = "spin"\nclip = "astronaut-pan"\n'
        '[licence]\nname = "CC0-1.0"\nsource = "tests"\n'
    )
    with pytest.raises(ClipNotFound, match="exactly one of 'effect' or 'clip'"):
        load_template(folder)
    (folder / MANIFEST).write_text(
        'id = "both"\nkind = "meme"\ntitle = "x"\neffect = "moonwalk"\n'
        '[licence]\nname = "CC0-1.0"\nsource = "tests"\n'
    )
    with pytest.raises(ClipNotFound, match="unknown effect 'moonwalk'"):
        load_template(folder)


@pytest.mark.parametrize("template_id", TEMPLATES)
def test_bundled_templates_are_licence_clean(template_id: str) -> None:
    licence = MemeLibrary(SETTINGS).get(template_id).manifest.licence
    assert licence.name.strip()
    assert licence.name.lower() != "unknown"
    assert licence.source.strip()
