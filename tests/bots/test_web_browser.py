"""The web chat in a real browser: Debian's headless Chromium driven by Playwright."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from ..conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = REPO / "benchmarks" / "out" / "web_chat.png"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH (Debian package 'chromium'; .ci/run installs it)",
)


async def test_upload_a_selfie_pick_a_clip_and_watch_it(
    web_server: TestServer, tmp_path: Path
) -> None:
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
        finally:
            await browser.close()
