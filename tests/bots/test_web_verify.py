"""/verify over the web chat's HTTP API: the challenge as JSON the page can act on, and a
recorded video (base64, as the page sends it) checked against it."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from bots.web import COOKIE, SERVICE
from core.faces.analyzer import DlibAnalyzer
from core.faces.liveness import CHALLENGES
from core.faces.profile import enroll
from core.media.images import RGBImage

from ..core.faces.synthetic_head import astronaut_head, write_challenge


async def post(client: aiohttp.ClientSession, server: TestServer, body: dict[str, Any]) -> Any:
    async with client.post(server.make_url("/api/message"), json=body) as response:
        assert response.status == 200
        return (await response.json())["replies"]


async def test_verify_through_the_http_api(
    web_server: TestServer, analyzer: DlibAnalyzer, astronaut: RGBImage, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        async with client.get(web_server.make_url("/")) as page:
            assert 'id="verify"' in await page.text()  # the page's "Verify it's you" button
        (no_face,) = await post(client, web_server, {"text": "/verify"})
        assert no_face["error"]
        assert "selfie" in no_face["text"]

        # Enrolled (straight into the store: the preview render is not what this is about).
        (cookie,) = [c for c in client.cookie_jar if c.key == COOKIE]
        service = web_server.app[SERVICE]
        user = await service.store.user("web", cookie.value.split(".")[0])
        await service.store.add_face(user, enroll(astronaut, analyzer, service.settings))

        (asked,) = await post(client, web_server, {"text": "/verify"})
        assert asked["type"] == "verify"
        assert asked["challenge"] in CHALLENGES
        assert asked["instruction"] in asked["text"]
        assert asked["seconds"] == 3.0
        assert 170 < asked["expires_in"] <= 180

        (damaged,) = await post(client, web_server, {"video": "%%% not base64", "nonce": "x"})
        assert damaged == {"type": "text", "text": "That upload was damaged.", "error": True}

        video = write_challenge(
            tmp_path / "answer.webm", astronaut_head(analyzer), asked["challenge"]
        )
        encoded = "data:video/webm;base64," + base64.b64encode(video.read_bytes()).decode()
        replies = await post(
            client, web_server, {"video": encoded, "nonce": asked["nonce"], "suffix": ".webm"}
        )
        assert replies[-1]["text"].startswith("Verified"), replies
        face = await service.store.active_face(user)
        assert face is not None
        assert face.verified
