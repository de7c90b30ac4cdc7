"""A seeded, bounded fuzz of the web chat: bad input of every kind a fuzz once found, through
real HTTP and a real WebSocket, to one app instance. Nothing may answer 5xx, nothing may go
unanswered, nothing may log a traceback, and a good selfie still enrols afterwards."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from bots.web import COOKIE, PLATFORM, SERVICE
from core.config import Settings
from core.faces.analyzer import DlibAnalyzer
from core.media.images import RGBImage
from core.service.conversation import COMMANDS

from ..conftest import REPO, jpeg
from .conftest import serving

SEED = 20261128
UPLOAD = 300_000  # max_upload_bytes here: a body may be twice this
ODD_DIGITS = "²³¹①⑳٣۴߂०௧໒႑០᠓０𝟘𝟙⅓Ⅻ"
SHAPES = ("[", '{"a":', '{"text":[')


@pytest.fixture
async def server(tmp_path: Path, analyzer: DlibAnalyzer) -> AsyncIterator[TestServer]:
    settings = Settings(
        data_dir=tmp_path / "data",
        bundled_clips_dir=REPO / "clips",
        max_upload_bytes=UPLOAD,
        body_idle_seconds=1.0,
    )
    async with serving(settings, analyzer, workers=1) as app:
        yield app


# -- what to send ---------------------------------------------------------------------------


def odd_char(rng: random.Random) -> str:
    """Any code point, lone surrogates included, or a digit that is not ASCII."""
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(ODD_DIGITS)
    if roll < 0.5:
        return chr(rng.randint(0xD800, 0xDFFF))
    if roll < 0.7:
        return chr(rng.randint(0, 0x7F))
    return chr(rng.randint(0, 0x10FFFF))


def chat_text(rng: random.Random) -> str:
    """A message a fuzzer would type: odd commands, odd face numbers, long and empty ones."""
    odd = "".join(odd_char(rng) for _ in range(rng.randint(1, 12)))
    kind = rng.randrange(7)
    if kind == 0:
        return "/" + odd
    if kind == 1:
        return "/face " + rng.choice([odd, "9" * rng.randint(4, 6000), "-1", "1.5", "0x1", ""])
    if kind == 2:
        return "/" + rng.choice("abcxyz") * rng.randint(40, 5000)
    if kind == 3:
        return rng.choice(sorted(COMMANDS)) + rng.choice(["", " ", " " + odd, "@bot " + odd])
    if kind == 4:
        return rng.choice(["/clip", "/meme"]) + " " + odd + rng.choice(["", " gif", " a | b"])
    if kind == 5:
        return rng.choice(["", " ", "\x00", "hello", odd])
    return odd * rng.randint(1, 50)


def json_body(rng: random.Random) -> tuple[bytes, str]:
    """A body for /api/message with its Content-Type."""
    kind = rng.randrange(8)
    plain = "application/json"
    if kind == 0:
        value = rng.choice([[], "x", 1, None, True, 2.5, [1, {"text": "/help"}], ""])
        return json.dumps(value).encode(), plain
    if kind == 1:
        opener = rng.choice(SHAPES)
        return (opener * rng.randint(200, 60_000)).encode(), plain
    if kind == 2:
        return rng.randbytes(rng.randint(0, 300)), plain
    if kind == 3:
        charset = rng.choice(["bogus", "utf-7", "x" * 60, "utf-16", "latin-1", "", "ébc"])
        return json.dumps({"text": "/help"}).encode(), f"{plain}; charset={charset}"
    if kind == 4:
        image = rng.choice(["%%%", "data:,", rng.randbytes(30).hex(), "A" * 7, "=" * 5])
        return json.dumps({"image": image, "text": chat_text(rng)}).encode(), plain
    if kind == 5:
        value = rng.choice([[1, 2], {"a": None}, 3.5, None, False])
        return json.dumps({"text": value}).encode(), plain
    if kind == 6:  # a lone surrogate as the JSON escape a browser may send
        return b'{"text": "/\\ud' + bytes([rng.choice(b"89ab")]) + b'00x"}', plain
    return json.dumps({"text": chat_text(rng)}).encode(), plain


def multipart_body(rng: random.Random) -> tuple[bytes, str]:
    """A broken (or odd but fine) multipart form for /api/message."""
    boundary = "b" + rng.randbytes(6).hex()
    name = rng.choice(['name="text"', 'name="image"; filename="a.jpg"', "", 'name=""', "name"])
    headers = [f"Content-Disposition: form-data; {name}".encode()]
    if rng.random() < 0.4:
        encoding = rng.choice(["bogus", "base64", "quoted-printable", "7bit", "gzip"])
        headers.append(f"Content-Transfer-Encoding: {encoding}".encode())
    if rng.random() < 0.4:
        headers.append(
            f"Content-Type: text/plain; charset={rng.choice(['bogus', 'utf-8'])}".encode()
        )
    payload = rng.choice([rng.randbytes(rng.randint(0, 200)), b"\xff\xfe\xfd", b"!!!", b"hi"])
    body = b"--" + boundary.encode() + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + payload
    if rng.random() < 0.8:
        body += b"\r\n--" + boundary.encode() + b"--\r\n"
    content_type = rng.choice(
        [
            f"multipart/form-data; boundary={boundary}",
            "multipart/form-data",
            "multipart/form-data; boundary=",
            f"multipart/mixed; boundary={boundary}",
            f'multipart/form-data; boundary="{boundary}"; charset=bogus',
        ]
    )
    return body, content_type


def media_path(rng: random.Random, account: str) -> str:
    """/media/<folder>/<name>, percent-encoded as sent."""
    folder = account if rng.random() < 0.8 else rng.choice(["x", "..", "%2e%2e", account[:-1]])
    name = rng.choice(
        [
            "a" * rng.randint(200, 4000),
            "".join(f"%{b:02x}" for b in rng.randbytes(rng.randint(1, 120))),
            "%ED%A0%80",
            "a%00b",
            ".hidden",
            "..%2f..%2fetc%2fpasswd",
            "meme-x-" + rng.randbytes(6).hex() + ".gif",
        ]
    )
    return f"/media/{folder}/{name}"


def raw_request(rng: random.Random) -> bytes:
    """A request no client library would send: a cookie that is not UTF-8, or junk."""
    if rng.random() < 0.8:
        path = rng.choice([b"/healthz", b"/", b"/metrics", b"/api/clips", b"/api/memes"])
        value = bytes(rng.choice([*range(0x21, 0x3B), *range(0x3C, 0x7F), *range(0x80, 0x100)])
                      for _ in range(rng.randint(1, 80)))  # fmt: skip
        if rng.random() < 0.5:
            value += b"." + rng.randbytes(4).hex().encode()
        cookie = COOKIE.encode() + b"=" + value
        return b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nCookie: " + cookie + b"\r\n\r\n"
    junk = bytes(b for b in rng.randbytes(rng.randint(1, 200)) if b not in b"\r\n")
    start = rng.choice([b"", b"GET /", b"POST /api/message HTTP/1.1\r\nX: "])
    return start + junk + b"\r\n\r\n"  # complete, so there is something to answer


def ws_message(rng: random.Random) -> str | bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return json.dumps(rng.choice([[], "x", 1, None, [{"text": "/help"}], True]))
    if kind == 1:
        return rng.randbytes(rng.randint(1, 200))
    if kind == 2:
        return rng.choice(SHAPES) * rng.randint(200, 60_000)
    if kind == 3:
        image = rng.choice(["%%%", base64.b64encode(rng.randbytes(40)).decode(), "data:,"])
        return json.dumps({"image": image})
    if kind == 4:
        return rng.choice(["{not json", "", " ", "\x00", "{" * 3])
    return json.dumps({"text": chat_text(rng)})


# -- the fuzz ---------------------------------------------------------------------------------


async def _raw(server: TestServer, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_fuzzed_input_never_breaks_the_web_chat(
    server: TestServer, caplog: pytest.LogCaptureFixture, astronaut: RGBImage
) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()
    statuses: list[int] = []
    answered = 0
    url: Callable[[str], URL] = server.make_url
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        async with client.get(url("/")) as first:
            user = first.cookies[COOKIE].value.split(".")[0]
        account = server.app[SERVICE].store.account(PLATFORM, user)

        async def post(body: bytes, content_type: str) -> None:
            async with client.post(
                url("/api/message"), data=body, headers={"Content-Type": content_type}
            ) as response:
                await response.read()
                statuses.append(response.status)

        for _ in range(220):
            await post(*json_body(rng))
        for _ in range(80):
            await post(*multipart_body(rng))
        for _ in range(60):
            async with client.get(
                URL(str(url("/")) + media_path(rng, account)[1:], encoded=True)
            ) as r:
                statuses.append(r.status)
        for _ in range(50):
            head = await _raw(server, raw_request(rng))
            assert head.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), head[:60]
            statuses.append(int(head[9:12]))
        # Bodies declared too big, or that stop coming: answered and dropped in seconds.
        for declared in (30_000_000, 2 * UPLOAD + 1, 10**12):
            head = await _raw(
                server,
                b"POST /api/message HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(declared).encode() + b"\r\n\r\n{",
            )
            statuses.append(int(head[9:12]))
        head = await _raw(
            server,
            b"POST /api/message HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 5000\r\n\r\n{"text": "/he',
        )
        statuses.append(int(head[9:12]))

        async with client.ws_connect(url("/api/ws")) as socket:
            messages = [ws_message(rng) for _ in range(120)]
            messages += ["x" * rng.randint(2 * UPLOAD + 1, 4 * UPLOAD - 100) for _ in range(3)]
            rng.shuffle(messages)
            for message in messages:
                if isinstance(message, bytes):
                    await socket.send_bytes(message)
                else:
                    await socket.send_str(message)
                reply = await socket.receive_json(timeout=15)
                assert reply["type"] in ("text", "choices"), reply
                answered += 1
            await socket.send_json({"text": "/help"})
            while "/forget" not in (await socket.receive_json(timeout=15)).get("text", ""):
                pass
        async with client.get(url("/metrics")) as metrics:
            assert metrics.status == 200
            assert len(await metrics.read()) < 20_000  # one label per known command, no more

        # A good selfie still enrols, over the same session.
        form = aiohttp.FormData()
        form.add_field("image", jpeg(astronaut), filename="me.jpg", content_type="image/jpeg")
        async with client.post(url("/api/message"), data=form) as response:
            assert response.status == 200
            replies = (await response.json())["replies"]
        assert "Got your face" in replies[0]["text"], replies
        assert any(r["type"] == "media" for r in replies)

    assert len(statuses) + answered >= 500
    assert not [s for s in statuses if s >= 500], sorted(set(statuses))
    assert time.monotonic() - started < 60
    assert "Traceback" not in caplog.text, caplog.text[-3000:]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors[:5]
