"""The web chat over real HTTP and WebSocket connections."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import logging
import shutil
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bots.web import COOKIE, PLATFORM, SERVICE
from core.config import Settings
from core.faces.analyzer import DlibAnalyzer

from ..conftest import CLIP_TONE_AT, REPO, audio_of
from .conftest import serving

SELFIE = REPO / "clips" / "examples" / "astronaut.jpg"


def _jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)  # keep cookies of 127.0.0.1, as browsers do


@contextlib.asynccontextmanager
async def _browser(server: TestServer) -> AsyncIterator[aiohttp.ClientSession]:
    """A client that opened the chat page first, as a browser does: it has a session."""
    async with aiohttp.ClientSession(cookie_jar=_jar()) as client:
        async with client.get(server.make_url("/")) as page:
            assert page.status == 200
            assert COOKIE in page.cookies
        yield client


def _cookie_header(client: aiohttp.ClientSession) -> bytes:
    (cookie,) = [c for c in client.cookie_jar if c.key == COOKIE]
    return f"Cookie: {COOKIE}={cookie.value}\r\n".encode()


async def test_page_health_and_metrics(web_server: TestServer) -> None:
    async with aiohttp.ClientSession(cookie_jar=_jar()) as client:
        async with client.get(web_server.make_url("/")) as page:
            assert page.status == 200
            html = await page.text()
            assert 'type="file"' in html
            assert COOKIE in page.cookies
        async with client.get(web_server.make_url("/healthz")) as health:
            assert (await health.json())["status"] == "ok"
        # The page names its icon, and /favicon.ico (asked for anyway) is no 404.
        assert 'rel="icon" href="/static/favicon.svg"' in html
        for icon in ("/static/favicon.svg", "/favicon.ico"):
            async with client.get(web_server.make_url(icon)) as response:
                assert response.status == 200
                assert response.content_type == "image/svg+xml"
                assert (await response.text()).startswith("<svg")
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
    async with _browser(web_server) as client:
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
        _browser(web_server) as stranger,
        stranger.get(web_server.make_url(media["url"])) as denied,
    ):
        assert denied.status == 404


async def test_websocket_conversation(web_server: TestServer) -> None:
    async with (
        _browser(web_server) as client,
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


async def test_a_clip_with_sound_plays_with_sound_on_request(
    tmp_path: Path, analyzer: DlibAnalyzer, sound_clip_folder: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", bundled_clips_dir=REPO / "clips")
    shutil.copytree(sound_clip_folder, settings.resolved_clips_dir / "tone")
    async with serving(settings, analyzer) as server, _browser(server) as client:
        async with client.get(server.make_url("/")) as page:
            html = await page.text()
        # Videos start muted (browsers autoplay only those); a button turns the sound on.
        assert "muted: true" in html
        assert "addSoundButton" in html
        assert "player.muted = false" in html
        form = aiohttp.FormData()
        form.add_field("image", SELFIE.read_bytes(), filename="me.jpg", content_type="image/jpeg")
        async with client.post(server.make_url("/api/message"), data=form) as response:
            replies = (await response.json())["replies"]
        preview = next(r for r in replies if r["type"] == "media")
        assert preview["kind"] == "gif"
        assert preview["audio"] is False
        async with client.post(server.make_url("/api/message"), json={"text": "/clip tone"}) as r:
            (media,) = [m for m in (await r.json())["replies"] if m["type"] == "media"]
        assert media["kind"] == "mp4"
        assert media["audio"] is True
        async with client.get(server.make_url(media["url"])) as video:
            assert video.status == 200
            received = tmp_path / "tone.mp4"
            received.write_bytes(await video.read())
        heard = audio_of(received)
        assert heard is not None
        assert heard[0] == pytest.approx(CLIP_TONE_AT, abs=0.01)


async def test_bad_input_gets_friendly_answers(web_server: TestServer, tmp_path: Path) -> None:
    async with _browser(web_server) as client:
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

BAD_BODY_WORDS = 'Send JSON like {"text": "/help"}'


@pytest.fixture
async def strict_server(tmp_path: Path, analyzer: DlibAnalyzer) -> AsyncIterator[TestServer]:
    """The real web app with small limits: 300 kB uploads, a body may stall for 1 s."""
    settings = Settings(
        data_dir=tmp_path / "data",
        bundled_clips_dir=REPO / "clips",
        max_upload_bytes=300_000,
        body_idle_seconds=1.0,
    )
    async with serving(settings, analyzer, workers=1) as server:
        yield server


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]


async def _raw(server: TestServer, request: bytes, timeout: float = 10) -> bytes:
    """Send bytes as they are (no client library would send them) and read to the end."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


async def _say(client: aiohttp.ClientSession, server: TestServer, text: str) -> list[Any]:
    async with client.post(server.make_url("/api/message"), json={"text": text}) as response:
        assert response.status == 200
        return list((await response.json())["replies"])


async def test_metrics_label_only_known_commands(
    web_server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with _browser(web_server) as client:
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


async def test_unreadable_cookie_is_no_cookie(
    web_server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    for path in (b"/healthz", b"/", b"/api/clips"):
        answer = await _raw(
            web_server,
            b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Cookie: " + COOKIE.encode() + b"=\xff.0\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
        # The page starts a fresh session instead; nothing else hands out sessions.
        assert (b"Set-Cookie: " + COOKIE.encode() in answer) == (path == b"/")
    _no_tracebacks(caplog)


MULTIPART = "multipart/form-data; boundary=x"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"[]", "application/json"),
        (b'"x"', "application/json"),
        (b"1", "application/json"),
        (b"null", "application/json"),
        (b"[" * 100_000, "application/json"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "application/json"),
        (b'{"text": "/help"}', "application/json; charset=bogus"),
        (b"\xff\xfe{}", "application/json"),
        (b"--x\r\n\r\nhi\r\n--x--\r\n", "multipart/form-data"),
        (b"--x\r\nContent-Disposition: form-data\r\n\r\nhi\r\n--x--\r\n", MULTIPART),
        (
            b'--x\r\nContent-Disposition: form-data; name="text"\r\n\r\n\xff\xfe\r\n--x--\r\n',
            MULTIPART,
        ),
        (
            b'--x\r\nContent-Disposition: form-data; name="text"\r\n'
            b"Content-Transfer-Encoding: bogus\r\n\r\nhi\r\n--x--\r\n",
            MULTIPART,
        ),
        (
            b'--x\r\nContent-Disposition: form-data; name="text"\r\n'
            b"Content-Type: text/plain; charset=bogus\r\n\r\nhi\r\n--x--\r\n",
            MULTIPART,
        ),
    ],
    ids=[
        "list",
        "string",
        "number",
        "null",
        "deep-list",
        "deep-object",
        "bogus-charset",
        "not-utf8",
        "no-boundary",
        "no-name",
        "field-not-utf8",
        "unknown-transfer-encoding",
        "field-bogus-charset",
    ],
)
async def test_malformed_bodies_get_400(
    web_server: TestServer, caplog: pytest.LogCaptureFixture, body: bytes, content_type: str
) -> None:
    async with (
        _browser(web_server) as client,
        client.post(
            web_server.make_url("/api/message"), data=body, headers={"Content-Type": content_type}
        ) as response,
    ):
        assert response.status == 400
        assert BAD_BODY_WORDS in await response.text()
    _no_tracebacks(caplog)


async def test_websocket_survives_bad_messages(
    strict_server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        _browser(strict_server) as client,
        client.ws_connect(strict_server.make_url("/api/ws")) as socket,
    ):
        bad: list[str | bytes] = ["[]", '"x"', "1", "null", "[" * 100_000, b"\x00binary"]
        bad.append(json.dumps({"text": "a" * 600_001}))  # over twice the 300 kB upload limit
        for message in bad:
            if isinstance(message, bytes):
                await socket.send_bytes(message)
            else:
                await socket.send_str(message)
            await socket.send_json({"text": "/help"})
            answer = await socket.receive_json(timeout=10)
            assert answer["error"], message[:20]
            assert answer["text"]
            helped = await socket.receive_json(timeout=10)
            assert "/forget" in helped["text"], message[:20]
    _no_tracebacks(caplog)


async def test_face_number_is_ascii_digits(
    web_server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with _browser(web_server) as client:
        form = aiohttp.FormData()
        form.add_field("image", SELFIE.read_bytes(), filename="me.jpg", content_type="image/jpeg")
        async with client.post(web_server.make_url("/api/message"), data=form) as response:
            assert "Got your face" in (await response.json())["replies"][0]["text"]
        for number in ("\u00b2", "\u2460", "\u0663", "1" * 5000, "-1", "1.0"):
            (reply,) = await _say(client, web_server, f"/face {number}")
            assert reply["text"] == "Which face? Send /face N, with N from /faces.", number[:10]
        (reply,) = await _say(client, web_server, "/face 7")
        assert reply["error"]
        assert reply["text"].startswith("You have one saved face, face 1")
        (reply,) = await _say(client, web_server, "/face 1")
        assert reply["text"] == "Using face 1 from now on."
    _no_tracebacks(caplog)


async def test_media_with_an_overlong_name_is_404(
    web_server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with _browser(web_server) as client:
        user = _cookie_header(client).decode().split("=", 1)[1].split(".")[0]
        account = web_server.app[SERVICE].store.account(PLATFORM, user)
        for name in ("a" * 300, "a" * 5000, "%ED%A0%80", "a%00b"):
            async with client.get(web_server.make_url(f"/media/{account}/{name}")) as response:
                assert response.status == 404, name[:10]
    _no_tracebacks(caplog)


async def test_stalled_or_oversize_bodies_are_dropped_in_seconds(
    strict_server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with _browser(strict_server) as client:
        cookie = _cookie_header(client)
    head = b"POST /api/message HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += cookie
    started = time.monotonic()
    # Declared over the limit (twice the 300 kB uploads): refused before any body is read.
    answer = await _raw(strict_server, head + b"Content-Length: 30000000\r\n\r\n{", timeout=5)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert time.monotonic() - started < 3
    # Declared within the limit, then nothing more: 408 once it stalled for 1 s, and closed.
    started = time.monotonic()
    answer = await _raw(strict_server, head + b'Content-Length: 100000\r\n\r\n{"te', timeout=10)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert time.monotonic() - started < 5
    # Too big without a declared length (chunked): 413 from aiohttp's own limit.
    async with (
        _browser(strict_server) as client,
        client.post(
            strict_server.make_url("/api/message"),
            data=_chunks(b"x" * 100_000, 7),
            headers={"Content-Type": "application/json"},
        ) as response,
    ):
        assert response.status == 413
    _no_tracebacks(caplog)


async def _chunks(chunk: bytes, count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield chunk


async def test_broken_form_leaves_no_temporary_file(web_server: TestServer) -> None:
    """An upload followed by a part aiohttp cannot decode: nothing of it stays open."""
    body = (
        b'--x\r\nContent-Disposition: form-data; name="image"; filename="me.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + SELFIE.read_bytes() + b"\r\n"
        b'--x\r\nContent-Disposition: form-data; name="text"\r\n'
        b"Content-Transfer-Encoding: bogus\r\n\r\nhi\r\n--x--\r\n"
    )
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        async with (
            _browser(web_server) as client,
            client.post(
                web_server.make_url("/api/message"), data=body, headers={"Content-Type": MULTIPART}
            ) as response,
        ):
            assert response.status == 400
        gc.collect()
    assert not [w for w in seen if issubclass(w.category, ResourceWarning)], seen


async def test_unparsable_request_is_one_line_in_the_log(
    web_server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    for junk in (b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", b"GET / HTTP/1.1\r\nX: \x7f\r\n\r\n"):
        answer = await _raw(web_server, junk)
        assert answer.startswith(b"HTTP/1.0 400"), answer[:60]
    assert "Traceback" not in caplog.text
    assert "Error handling request" in caplog.text  # still said, in one line
    _no_tracebacks(caplog)


async def test_the_api_needs_a_session_the_page_issued(web_server: TestServer) -> None:
    """A script without the page's cookie is refused, so it cannot be a new user with
    fresh quotas on every request; a forged cookie is no session either."""
    service = web_server.app[SERVICE]
    forged = _jar()
    forged.update_cookies({COOKIE: "someone-else.0000"})
    for jar in (_jar(), forged):
        async with aiohttp.ClientSession(cookie_jar=jar) as script:
            async with script.post(
                web_server.make_url("/api/message"), json={"text": "/help"}
            ) as refused:
                assert refused.status == 401
                answer = await refused.json()
                assert "chat page" in answer["error"]
                assert answer["replies"][0]["text"] == answer["error"]
            with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
                await script.ws_connect(web_server.make_url("/api/ws"))
            assert handshake.value.status == 401
    assert "facecast_messages_total{" not in service.metrics.exposition().decode()
    async with _browser(web_server) as browser:
        assert "/forget" in (await _say(browser, web_server, "/help"))[0]["text"]


async def test_new_sessions_per_address_are_limited(tmp_path: Path, analyzer: DlibAnalyzer) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", bundled_clips_dir=REPO / "clips", web_sessions_per_ip_hour=3
    )
    async with serving(settings, analyzer, workers=1, max_queue=2) as server:
        browsers = [aiohttp.ClientSession(cookie_jar=_jar()) for _ in range(4)]
        statuses = []
        for browser in browsers:
            async with browser.get(server.make_url("/")) as page:
                statuses.append((page.status, COOKIE in page.cookies))
        assert statuses == [(200, True)] * 3 + [(429, False)]
        # A browser that has its session keeps it: the page and the API still answer.
        async with browsers[0].get(server.make_url("/")) as again:
            assert again.status == 200
        assert await _say(browsers[0], server, "/help")
        for browser in browsers:
            await browser.close()


async def test_check_the_last_result_or_an_uploaded_file(web_server: TestServer) -> None:
    """/check alone checks your newest result; with a file, that file (not an enrolment)."""
    async with _browser(web_server) as client:
        form = aiohttp.FormData()
        form.add_field("image", SELFIE.read_bytes(), filename="me.jpg", content_type="image/jpeg")
        async with client.post(web_server.make_url("/api/message"), data=form) as response:
            replies = (await response.json())["replies"]
        media = next(r for r in replies if r["type"] == "media")
        async with client.get(web_server.make_url(media["url"])) as gif:
            made = await gif.read()
        async with client.post(web_server.make_url("/api/message"), json={"text": "/check"}) as r:
            (latest,) = (await r.json())["replies"]
        assert latest["text"].startswith("Your latest result (GIF):\nMade by this FaceCast")
        upload = aiohttp.FormData()
        upload.add_field("text", "/check")
        upload.add_field("image", made, filename="meme.gif", content_type="image/gif")
        async with client.post(web_server.make_url("/api/message"), data=upload) as r:
            (checked,) = (await r.json())["replies"]
        assert checked["text"].startswith("Made by this FaceCast deployment on")
        assert "signed by this FaceCast deployment" in checked["text"]
        plain = aiohttp.FormData()
        plain.add_field("text", "/check")
        plain.add_field("image", SELFIE.read_bytes(), filename="me.jpg", content_type="image/jpeg")
        async with client.post(web_server.make_url("/api/message"), data=plain) as r:
            (other,) = (await r.json())["replies"]
        assert other["text"].startswith("Not made by this FaceCast deployment")
    async with (
        _browser(web_server) as stranger,
        stranger.post(web_server.make_url("/api/message"), json={"text": "/check"}) as r,
    ):
        (hint,) = (await r.json())["replies"]
    assert "Reply /check to a picture or video" in hint["text"]
