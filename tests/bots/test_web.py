"""The web chat over real HTTP and WebSocket connections."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bots.web import COOKIE

from ..conftest import REPO

SELFIE = REPO / "clips" / "examples" / "astronaut.jpg"


def _jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)  # keep cookies of 127.0.0.1, as browsers do


async def test_page_health_and_metrics(web_server: TestServer) -> None:
    async with aiohttp.ClientSession(cookie_jar=_jar()) as client:
        async with client.get(web_server.make_url("/")) as page:
            assert page.status == 200
            html = await page.text()
            assert 'type="file"' in html
            assert COOKIE in page.cookies
        async with client.get(web_server.make_url("/healthz")) as health:
            assert (await health.json())["status"] == "ok"
        async with client.get(web_server.make_url("/api/clips")) as clips:
            ids = [c["id"] for c in (await clips.json())["clips"]]
            assert "astronaut-pan" in ids
        async with client.post(web_server.make_url("/api/message"), json={"text": "/help"}):
            pass
        async with client.get(web_server.make_url("/metrics")) as metrics:
            body = await metrics.text()
            assert 'facecast_messages_total{command="/help"} 1.0' in body
            assert "facecast_queue_length" in body


async def test_upload_render_and_only_its_browser_can_fetch_it(web_server: TestServer) -> None:
    async with aiohttp.ClientSession(cookie_jar=_jar()) as client:
        form = aiohttp.FormData()
        form.add_field("image", SELFIE.read_bytes(), filename="me.jpg", content_type="image/jpeg")
        async with client.post(web_server.make_url("/api/message"), data=form) as response:
            replies = (await response.json())["replies"]
        kinds = [r["type"] for r in replies]
        assert kinds[0] == "text"
        assert "progress" in kinds
        assert kinds[-1] == "choices"
        media = next(r for r in replies if r["type"] == "media")
        async with client.get(web_server.make_url(media["url"])) as gif:
            assert gif.status == 200
            assert (await gif.read())[:6] == b"GIF89a"
    async with (
        aiohttp.ClientSession(cookie_jar=_jar()) as stranger,
        stranger.get(web_server.make_url(media["url"])) as denied,
    ):
        assert denied.status == 404


async def test_websocket_conversation(web_server: TestServer) -> None:
    async with (
        aiohttp.ClientSession(cookie_jar=_jar()) as client,
        client.ws_connect(web_server.make_url("/api/ws")) as socket,
    ):
        await socket.send_json({"text": "/help"})
        helped = await socket.receive_json(timeout=10)
        assert helped["type"] == "text"
        assert "/forget" in helped["text"]
        encoded = base64.b64encode(SELFIE.read_bytes()).decode()
        await socket.send_json({"image": "data:image/jpeg;base64," + encoded})
        seen = []
        while not seen or seen[-1]["type"] != "choices":
            seen.append(await socket.receive_json(timeout=60))
        assert any(m["type"] == "media" and m["kind"] == "gif" for m in seen)
        clip = next(c for c in seen[-1]["choices"] if c["command"].endswith("astronaut-pan"))
        await socket.send_json({"text": clip["command"]})
        while True:
            message = await socket.receive_json(timeout=60)
            if message["type"] == "media":
                break
        assert message["kind"] == "mp4"
        async with client.get(web_server.make_url(message["url"])) as video:
            assert video.status == 200
            assert b"ftyp" in (await video.read())[:32]


async def test_bad_input_gets_friendly_answers(web_server: TestServer, tmp_path: Path) -> None:
    async with aiohttp.ClientSession(cookie_jar=_jar()) as client:
        async with client.ws_connect(web_server.make_url("/api/ws")) as socket:
            await socket.send_str("{not json")
            assert (await socket.receive_json(timeout=10))["error"]
            await socket.send_json({"image": "%%% not base64 %%%"})
            assert "damaged" in (await socket.receive_json(timeout=10))["text"]
            await socket.send_json({"image": base64.b64encode(b"hello").decode()})
            answer = await socket.receive_json(timeout=10)
            assert answer["error"]
            assert "isn't an image" in answer["text"]
        async with client.post(
            web_server.make_url("/api/message"),
            data=b"{oops",
            headers={"Content-Type": "application/json"},
        ) as bad:
            assert bad.status == 400
    # A forged cookie is ignored: the browser gets a fresh session instead.
    jar = aiohttp.CookieJar(unsafe=True)
    jar.update_cookies({COOKIE: "someone-else.0000"})
    async with (
        aiohttp.ClientSession(cookie_jar=jar) as forger,
        forger.get(web_server.make_url("/")) as page,
    ):
        assert page.cookies[COOKIE].value.split(".")[0] != "someone-else"


# -- what a fuzz of the web chat found: each answered 500 or logged a traceback -------------


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]


async def _say(client: aiohttp.ClientSession, server: TestServer, text: str) -> list[Any]:
    async with client.post(server.make_url("/api/message"), json={"text": text}) as response:
        assert response.status == 200
        return list((await response.json())["replies"])


async def test_metrics_label_only_known_commands(
    web_server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with aiohttp.ClientSession(cookie_jar=_jar()) as client:
        # A lone surrogate, as the JSON escape a browser may send: not encodable as UTF-8.
        async with client.post(
            web_server.make_url("/api/message"),
            data=b'{"text": "/\\ud800"}',
            headers={"Content-Type": "application/json"},
        ) as response:
            assert response.status == 200
            (reply,) = (await response.json())["replies"]
            assert "/help" in reply["text"]
        for n in range(30):
            (reply,) = await _say(client, web_server, f"/made-up-{n}" + "x" * 500)
            assert len(reply["text"]) < 100  # the command is not echoed back at length
        await _say(client, web_server, "/help")
        async with client.get(web_server.make_url("/metrics")) as metrics:
            assert metrics.status == 200
            body = await metrics.text()
    assert 'facecast_messages_total{command="other"} 31.0' in body
    assert 'facecast_messages_total{command="/help"} 1.0' in body
    assert "made-up" not in body
    _no_tracebacks(caplog)


async def test_face_number_is_ascii_digits(
    web_server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with aiohttp.ClientSession(cookie_jar=_jar()) as client:
        form = aiohttp.FormData()
        form.add_field("image", SELFIE.read_bytes(), filename="me.jpg", content_type="image/jpeg")
        async with client.post(web_server.make_url("/api/message"), data=form) as response:
            assert "Got your face" in (await response.json())["replies"][0]["text"]
        for number in ("\u00b2", "\u2460", "\u0663", "1" * 5000, "-1", "1.0"):
            (reply,) = await _say(client, web_server, f"/face {number}")
            assert reply["text"] == "Which face? Send /face N, with N from /faces.", number[:10]
        (reply,) = await _say(client, web_server, "/face 7")
        assert reply["error"]
        assert "pick a number from 1 to 1" in reply["text"]
        (reply,) = await _say(client, web_server, "/face 1")
        assert reply["text"] == "Using face 1 from now on."
    _no_tracebacks(caplog)
