"""The web chat in a real browser: Debian's headless Chromium driven by Playwright."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from core.config import Settings
from core.faces.analyzer import DlibAnalyzer

from ..conftest import REPO
from .conftest import serving

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = REPO / "benchmarks" / "out" / "web_chat.png"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH (Debian package 'chromium'; .ci/run installs it)",
)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """Debian's headless Chromium under Playwright (no browser download)."""
    playwright_api = pytest.importorskip("playwright.async_api")
    assert CHROMIUM is not None
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield browser
        finally:
            await browser.close()


async def test_upload_a_selfie_pick_a_clip_and_watch_it(
    web_server: TestServer, tmp_path: Path
) -> None:
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 900, "height": 1100})
        await page.goto(str(web_server.make_url("/")))
        await page.set_input_files("#file", str(REPO / "clips" / "examples" / "astronaut.jpg"))
        # The preview meme arrives, then the clip buttons.
        await page.wait_for_selector(".media img", timeout=60_000)
        button = page.locator('button[data-command="/clip astronaut-pan"]')
        await button.wait_for(timeout=30_000)
        await button.click()
        video = page.locator(".media video")
        await video.wait_for(timeout=60_000)
        # It really plays: it has frames, a duration and time advances.
        await page.wait_for_function(
            "() => { const v = document.querySelector('.media video');"
            " return v && v.readyState >= 2 && v.currentTime > 0.2; }",
            timeout=30_000,
        )
        duration = await video.evaluate("v => v.duration")
        assert 2.5 < duration < 3.5
        assert await video.evaluate("v => v.videoWidth") == 480
        link = page.locator(".media a").last
        assert (await link.get_attribute("href") or "").endswith(".mp4")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOT), full_page=True)


LAST_MEDIA_LOADED = """() => {
  const players = document.querySelectorAll('.media img, .media video');
  if (players.length < %d) return false;
  const last = players[players.length - 1];
  return last.tagName === 'IMG' ? last.complete && last.naturalHeight > 0 : last.readyState >= 2;
}"""
LAST_MEDIA_IN_VIEW = """() => {
  const log = document.getElementById('log').getBoundingClientRect();
  const nodes = document.querySelectorAll('.media');
  const last = nodes[nodes.length - 1].getBoundingClientRect();
  return last.height > 100 && last.top >= log.top - 1 && last.bottom <= log.bottom + 1;
}"""


async def send(page: Any, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")


async def test_results_scroll_into_view_and_forget_greys_them_out(
    web_server: TestServer,
) -> None:
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 900, "height": 700})
        await page.goto(str(web_server.make_url("/")))
        await page.set_input_files("#file", str(REPO / "clips" / "examples" / "astronaut.jpg"))
        await page.wait_for_function(LAST_MEDIA_LOADED % 1, timeout=60_000)
        # Three results in a row: each scrolls into view, and again once its GIF has loaded
        # (an image grows from nothing when it loads: scrolling only on arrival left it cut).
        for template in ("spin", "triggered", "deal-with-it"):
            await send(page, f"/meme {template}")
        await page.wait_for_function(LAST_MEDIA_LOADED % 4, timeout=90_000)
        await page.wait_for_function(LAST_MEDIA_IN_VIEW, timeout=5_000)
        assert await page.evaluate("() => document.querySelectorAll('.media').length") == 4

        # Someone who scrolled up to read stays where they are while a result arrives.
        await send(page, "/meme spin")
        await page.wait_for_selector(".progress", timeout=30_000)
        await page.evaluate("() => { document.getElementById('log').scrollTop = 0; }")
        await page.wait_for_function(LAST_MEDIA_LOADED % 5, timeout=60_000)
        await page.wait_for_timeout(300)
        assert await page.evaluate("() => document.getElementById('log').scrollTop") == 0

        # /forget: the pictures already shown stay, greyed out, without dead download links.
        await send(page, "/forget")
        await page.wait_for_function(
            "() => document.querySelectorAll('.media.gone').length === 5", timeout=30_000
        )
        assert await page.locator(".media a").count() == 0
        notes = await page.locator(".media .gone-note").all_inner_texts()
        assert notes == ["Deleted with /forget: this file is gone."] * 5
        opacity = await page.evaluate(
            "() => getComputedStyle(document.querySelector('.media.gone img')).opacity"
        )
        assert float(opacity) < 0.5


async def test_a_clip_with_sound_starts_muted_and_unmutes_on_a_click(
    tmp_path: Path, analyzer: DlibAnalyzer, sound_clip_folder: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", bundled_clips_dir=REPO / "clips")
    shutil.copytree(sound_clip_folder, settings.resolved_clips_dir / "tone")
    async with serving(settings, analyzer) as server, chromium() as browser:
        page = await browser.new_page(viewport={"width": 900, "height": 1100})
        await page.goto(str(server.make_url("/")))
        await page.set_input_files("#file", str(REPO / "clips" / "examples" / "astronaut.jpg"))
        await page.wait_for_function(LAST_MEDIA_LOADED % 1, timeout=60_000)
        assert await page.locator(".media .sound").count() == 0  # the GIF preview is silent
        await send(page, "/clip tone")
        video = page.locator(".media video")
        await video.wait_for(timeout=60_000)
        await page.wait_for_function(LAST_MEDIA_LOADED % 2, timeout=30_000)
        # It plays by itself, muted, as browsers allow; the button asks for the sound.
        assert await video.evaluate("v => v.muted && !v.paused")
        button = page.locator(".media .sound")
        assert "Tap for sound" in await button.inner_text()
        await button.click()
        await page.wait_for_function(
            "() => { const v = document.querySelector('.media video');"
            " return !v.muted && !v.paused && v.currentTime > 0; }",
            timeout=10_000,
        )
        assert "Sound on" in await button.inner_text()
        # The video really has a sound track for the unmuted player to play.
        assert await video.evaluate("v => v.duration") > 1.0
        assert await page.evaluate(
            "() => fetch(document.querySelector('.media video').src)"
            ".then(r => r.arrayBuffer()).then(b => new TextDecoder('latin1').decode(b)"
            ".includes('mp4a'))"
        )
