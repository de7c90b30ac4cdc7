""" "Verify it's you" in a real browser: Chromium's fake camera plays a synthetic head
answering the challenge the page shows, the page records it and the face is verified."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from bots.web import SERVICE
from core.faces.analyzer import DlibAnalyzer
from core.faces.liveness import CHALLENGES

from ..conftest import REPO
from ..core.faces.synthetic_head import astronaut_head, challenge_motion, head_frames, write_video
from .test_web_browser import CHROMIUM, send

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH (Debian package 'chromium'; .ci/run installs it)",
)
FPS = 15.0


@contextlib.asynccontextmanager
async def chromium(*extra: str) -> AsyncIterator[Any]:
    playwright_api = pytest.importorskip("playwright.async_api")
    assert CHROMIUM is not None
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", *extra],
        )
        try:
            yield browser
        finally:
            await browser.close()


def camera_file(path: Path, analyzer: DlibAnalyzer, challenge: str) -> Path:
    """What the fake camera plays (and loops): the head still while the page counts down,
    answering the challenge while it records, then still again."""
    mesh = astronaut_head(analyzer)
    yaw, closed = challenge_motion(challenge, fps=FPS, seconds=2.4)
    still = round(1.3 * FPS)
    yaw = [0.0] * still + yaw + [0.0] * 2 * still
    closed = [0.0] * still + closed + [0.0] * 2 * still
    return write_video(path, head_frames(mesh, yaw, closed), FPS)


async def test_the_page_records_the_challenge_and_the_face_is_verified(
    web_server: TestServer, analyzer: DlibAnalyzer, tmp_path: Path
) -> None:
    page_url = str(web_server.make_url("/"))
    # First visit: a selfie, and /verify (the challenge is random: read it off the page).
    async with chromium() as browser:
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(page_url)
        await page.set_input_files("#file", str(REPO / "clips" / "examples" / "astronaut.jpg"))
        await page.wait_for_selector(".media img", timeout=60_000)
        await page.click("#verify")
        card = page.locator(".verify").last
        await card.wait_for(timeout=10_000)
        challenge = await card.get_attribute("data-challenge")
        cookies = await context.cookies()
    assert challenge in CHALLENGES

    # The same browser profile again, now with a camera that answers it.
    y4m = camera_file(tmp_path / "camera.y4m", analyzer, challenge)
    fake_camera = (
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={y4m}",
    )
    async with chromium(*fake_camera) as browser:
        context = await browser.new_context()
        await context.add_cookies(cookies)
        page = await context.new_page()
        await page.goto(page_url)
        await send(page, "/verify")
        card = page.locator(".verify").last
        await card.wait_for(timeout=10_000)
        assert await card.get_attribute("data-challenge") == challenge  # not re-rolled
        await card.locator("button.record").click()
        await page.wait_for_selector(".camera video", timeout=10_000)
        verdict = page.locator(".msg.bot", has_text="erified").last
        await verdict.wait_for(timeout=60_000)
        text = await verdict.inner_text()
        assert text.startswith("Verified"), text

    service = web_server.app[SERVICE]
    user = await service.store.find_user("web", cookies[0]["value"].split(".")[0])
    assert user is not None
    face = await service.store.active_face(user)
    assert face is not None
    assert face.verified
    assert np.isfinite(service.metrics.verifications.labels("passed")._value.get())
