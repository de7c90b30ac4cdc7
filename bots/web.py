"""The built-in web chat: FaceCast's embedded default adapter (aiohttp).

``/`` is a single-page chat (selfie upload by drag-and-drop or file picker, a command box,
clip choices as buttons, live progress, the result playing inline with a download link).
``/api/ws`` carries the conversation as JSON over a WebSocket, ``/api/message`` is the same
as one JSON request/response, ``/api/clips`` and ``/api/memes`` list what there is,
``/healthz`` and ``/metrics`` (Prometheus) are for operators. A browser is one user,
identified by a signed cookie; it can fetch only its own renders.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import BodyPartReader, WSMessage, WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError

from bots.base import safe
from core.config import Settings
from core.jobs.base import runner_stats
from core.service.conversation import Service
from core.service.messages import (
    Chat,
    Choices,
    Person,
    Progress,
    Reply,
    Request,
    Text,
    VerifyChallenge,
)
from core.service.policy import BUSY_REFUSALS
from core.service.state import StateUnavailable
from core.storage.crypto import Keys

log = logging.getLogger(__name__)

COOKIE = "facecast_session"
STATIC = Path(__file__).resolve().parent / "static"
SERVICE: web.AppKey[Service] = web.AppKey("service", Service)
SECRETS: web.AppKey[list[bytes]] = web.AppKey("secrets", list)
SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("sockets", set)
# Answers being worked out right now (a render's replies may still be on their way).
BUSY: web.AppKey[list[int]] = web.AppKey("busy", list)
PLATFORM = "web"
USER: web.RequestKey[str] = web.RequestKey("user", str)
FRESH: web.RequestKey[bool] = web.RequestKey("fresh", bool)
# What a request to /api/message may look like, said to whoever sent something else.
BAD_BODY = 'Send JSON like {"text": "/help"}, or a form with "image" and "text" fields.'
# A file name longer than any render's (the file system refuses names over 255 bytes).
MAX_NAME = 200
T = TypeVar("T")


def session_secrets(settings: Settings, keys: Keys) -> list[bytes]:
    """Cookie signing keys, derived from the server's keys: the first signs, all verify.
    A ``web-session.key`` of an older server still verifies the cookies it signed."""
    found = list(keys.web)
    legacy = settings.resolved_data_dir / "web-session.key"
    if legacy.is_file():
        found.append(legacy.read_bytes())
    return found


def _sign(secret: bytes, user: str) -> str:
    return hmac.new(secret, user.encode(), hashlib.sha256).hexdigest()[:32]


def _user_of(request: web.Request) -> str | None:
    value = request.cookies.get(COOKIE, "")
    if not value.isascii():  # bytes that are not UTF-8 arrive as surrogates: no cookie of ours
        return None
    user, _, signature = value.partition(".")
    if user and any(
        hmac.compare_digest(signature, _sign(key, user)) for key in request.app[SECRETS]
    ):
        return user
    return None


# Paths that talk to the service: only with a session the page issued.
API = frozenset(("/api/message", "/api/ws"))
NO_SESSION = "Open the chat page first: it starts your session (cookies must be allowed)."
TOO_MANY_SESSIONS = "Too many new chats from your address; try again in an hour."


class NewSessions:
    """How many sessions each address started in the last hour (in this process)."""

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._started: dict[str, deque[float]] = {}

    def allow(self, address: str) -> bool:
        now = time.monotonic()
        if len(self._started) > 10_000:  # forget addresses quiet for an hour
            for key in [k for k, v in self._started.items() if v[-1] < now - 3600]:
                del self._started[key]
        started = self._started.setdefault(address, deque())
        while started and started[0] < now - 3600:
            started.popleft()
        if len(started) >= self.per_hour:
            return False
        started.append(now)
        return True


NEW_SESSIONS: web.AppKey[NewSessions] = web.AppKey("new_sessions", NewSessions)


@web.middleware
async def sessions(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The page (GET /) gives a new browser a signed, HTTP-only session cookie, a limited
    number per address an hour; the API answers 401 to a request without one, so a
    script cannot be a new user (with fresh quotas) on every request."""
    user = _user_of(request)
    request[FRESH] = False
    if user is None and request.path in API:
        return web.json_response({"error": NO_SESSION, "replies": [_oops(NO_SESSION)]}, status=401)
    if user is None and request.method == "GET" and request.path == "/":
        if not request.app[NEW_SESSIONS].allow(request.remote or ""):
            return web.Response(status=429, text=TOO_MANY_SESSIONS)
        request[FRESH] = True
        user = secrets.token_hex(12)
    request[USER] = user or ""
    response = await handler(request)
    if not response.prepared:
        remember(request, response)
    return response


def remember(request: web.Request, response: web.StreamResponse) -> None:
    """Set the session cookie on a new browser's first response."""
    if request.get(FRESH):
        user = request[USER]
        response.set_cookie(
            COOKIE,
            f"{user}.{_sign(request.app[SECRETS][0], user)}",
            httponly=True,
            samesite="Strict",
            max_age=60 * 60 * 24 * 365,
        )
        request[FRESH] = False


def reply_json(reply: Reply) -> dict[str, Any]:
    if isinstance(reply, VerifyChallenge):  # the page opens the camera and records
        return {
            "type": "verify",
            "text": reply.text,
            "challenge": reply.challenge,
            "instruction": reply.instruction,
            "nonce": reply.nonce,
            "seconds": reply.seconds,
            "expires_in": reply.expires_in,
        }
    if isinstance(reply, Text):
        return {"type": "text", "text": reply.text, "error": reply.error}
    if isinstance(reply, Choices):
        return {
            "type": "choices",
            "text": reply.text,
            "choices": [{"label": c.label, "command": c.command} for c in reply.choices],
        }
    if isinstance(reply, Progress):
        return {
            "type": "progress",
            "job": reply.job,
            "text": reply.text,
            "done": reply.done,
            "total": reply.total,
        }
    return {
        "type": "media",
        "url": f"/media/{reply.path.parent.name}/{reply.path.name}",
        "kind": reply.kind,
        "audio": reply.has_audio,
        "caption": reply.caption,
        "width": reply.width,
        "height": reply.height,
    }


def _request(user: str, text: str = "", image: bytes | None = None) -> Request:
    if image is not None and text.strip().split(" ")[0].lower() == "/check":
        # A file sent with /check is to be checked (did we make it?), not enrolled.
        return Request(Person(PLATFORM, user), Chat(user), text="/check", media=image)
    return Request(Person(PLATFORM, user), Chat(user), text=text, image=image)


# Containers a browser's MediaRecorder writes (Chromium and Firefox: WebM, Safari: MP4).
VIDEO_SUFFIXES = frozenset((".webm", ".mp4", ".mov", ".mkv"))


def _video_request(user: str, payload: dict[str, Any]) -> Request | None:
    """A /verify answer: {"video": "<base64>", "nonce": ..., "suffix": ".webm"}; None when
    the video does not decode from base64."""
    video = _decode_image(str(payload["video"]))
    if not video:
        return None
    suffix = str(payload.get("suffix", ".webm")).lower()
    nonce = payload.get("nonce")
    return Request(
        Person(PLATFORM, user),
        Chat(user),
        video=video,
        video_suffix=suffix if suffix in VIDEO_SUFFIXES else ".webm",
        nonce=str(nonce)[:64] if nonce else None,
    )


async def _answer(app: web.Application, request: Request) -> AsyncIterator[dict[str, Any]]:
    """The service's replies as JSON, one at a time; never a traceback."""
    app[BUSY][0] += 1
    try:
        async for reply in safe(app[SERVICE].handle(request), f"web user {request.sender.id[:8]}"):
            yield reply_json(reply)
    finally:
        app[BUSY][0] -= 1


async def close_sockets(app: web.Application, wait: float = 5.0) -> None:
    """On shutdown, once the answers under way are out (up to ``wait`` seconds), close
    every WebSocket: an open one would hold the server's shutdown for a minute."""
    deadline = asyncio.get_running_loop().time() + wait
    while app[BUSY][0] and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    sockets: set[web.WebSocketResponse] = app[SOCKETS]
    for socket in list(sockets):
        await socket.close(code=1001, message=b"server shutting down")


def _decode_image(data: str) -> bytes:
    try:
        return base64.b64decode(data.split(",", 1)[-1], validate=True)
    except (binascii.Error, ValueError):
        return b""


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def favicon(request: web.Request) -> web.StreamResponse:
    """Browsers ask for /favicon.ico whatever the page says: answer with the SVG."""
    return web.FileResponse(STATIC / "favicon.svg", headers={"Content-Type": "image/svg+xml"})


async def _operator_figures(service: Service) -> dict[str, Any]:
    """The runner's figures (queue depth, workers alive, job latency) and the shared
    state's (jobs in flight and busy answers on every front-end)."""
    stats = await runner_stats(service.runner)
    figures: dict[str, Any] = {
        "status": "ok",
        "queue": stats.queued,
        "running": stats.running,
        "workers": stats.workers,
        "workers_alive": stats.workers_alive,
        "latency_p50": stats.latency_p50,
        "latency_p95": stats.latency_p95,
        "jobs_finished": stats.finished,
        "shared_state": "redis" if service.state.shared else "local",
    }
    try:
        figures["in_flight"] = await service.gate.in_flight()
        figures["busy_refusals"] = await service.state.count(BUSY_REFUSALS)
    except StateUnavailable:  # Redis down: say so (logged where it failed), no traceback
        figures.update(status="degraded", shared_state="unreachable")
    return figures


async def healthz(request: web.Request) -> web.Response:
    figures = await _operator_figures(request.app[SERVICE])
    return web.json_response(figures, status=200 if figures["status"] == "ok" else 503)


async def metrics(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    figures = await _operator_figures(service)
    service.metrics.show_runner(
        figures["running"],
        figures["workers_alive"],
        {"0.5": figures["latency_p50"], "0.95": figures["latency_p95"]},
        figures.get("in_flight", 0),
        figures.get("busy_refusals", 0),
    )
    body = service.metrics.exposition()
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


async def list_clips(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    clips = [
        {"id": c.id, "title": c.title, "duration": c.manifest.duration} for c in service.clips.all()
    ]
    return web.json_response({"clips": clips})


async def list_memes(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    memes = [
        {"id": t.id, "title": t.title, "top": t.manifest.top, "bottom": t.manifest.bottom}
        for t in service.memes.all()
    ]
    return web.json_response({"memes": memes})


async def _within_idle(request: web.Request, reading: Awaitable[T]) -> T:
    """``reading`` (of the request's body), given up with 408 once no byte came for the
    configured idle time: a body that is declared but never sent does not hold a connection."""
    idle = request.app[SERVICE].settings.body_idle_seconds
    task = asyncio.ensure_future(reading)
    seen, quiet = request.content.total_bytes, 0.0
    step = min(1.0, idle / 4)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=step)
            if done:
                return task.result()
            if request.content.total_bytes != seen:
                seen, quiet = request.content.total_bytes, 0.0
                continue
            quiet += step
            if quiet >= idle:
                raise _Stalled()
    finally:
        if not task.done():  # stalled, or this handler was cancelled: stop reading too
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _Stalled(Exception):
    """A request's body stopped arriving."""


async def _refuse(request: web.Request, status: int, text: str) -> web.StreamResponse:
    """Answer now and hang up: the rest of the body is never read (aiohttp would otherwise
    linger, reading and ignoring it, for ten seconds)."""
    response = web.Response(status=status, text=text)
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    if request.transport is not None:
        request.transport.close()  # after the answer is flushed
    return response


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await _within_idle(request, request.read())
    try:
        body = json.loads(raw.decode(request.charset or "utf-8"))
    except (LookupError, ValueError, RecursionError):  # charset, UTF-8, JSON, nesting
        raise web.HTTPBadRequest(text=BAD_BODY) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=BAD_BODY)
    return body


async def _read_form(request: web.Request) -> tuple[str, bytes | None]:
    """The "text" and "image" fields of a multipart form, read into memory: unlike
    ``request.post()`` this leaves no temporary file behind when a part is malformed."""
    limit = request.app[SERVICE].settings.max_upload_bytes * 2
    reader = await request.multipart()
    text, image = "", None
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise ValueError("a nested multipart")
        if part.name is None:
            raise ValueError("a field without a name")
        raw = bytearray()
        while chunk := await part.read_chunk():
            if request.content.total_bytes > limit:
                raise web.HTTPRequestEntityTooLarge(limit, request.content.total_bytes)
            raw.extend(chunk)
        value = bytearray()
        async for decoded in part.decode_iter(raw):  # Content-Transfer-Encoding
            value.extend(decoded)
        if part.name == "image":
            image = bytes(value)
        elif part.name == "text":
            text = value.decode(part.get_charset(default="utf-8"))
    return text, image


async def _form_body(request: web.Request) -> tuple[str, bytes | None]:
    try:
        return await _within_idle(request, _read_form(request))
    except (LookupError, ValueError, RuntimeError, AssertionError, Warning):
        # no boundary, a field without a name, text that is not UTF-8, an unknown
        # Content-Transfer-Encoding or charset: aiohttp's multipart reader raises all these
        # (and warns of a bad Content-Disposition, an error where warnings are errors)
        raise web.HTTPBadRequest(text=BAD_BODY) from None


async def message(request: web.Request) -> web.Response:
    """One request, all replies: JSON {"text"} or multipart with "image" and "text"."""
    text, image = "", None
    if request.content_type.startswith("multipart/"):
        text, image = await _form_body(request)
    else:
        body = await _json_body(request)
        if body.get("video"):
            answer = _video_request(request[USER], body)
            if answer is None:
                return web.json_response({"replies": [_oops("That upload was damaged.")]})
            replies = [r async for r in _answer(request.app, answer)]
            return web.json_response({"replies": replies})
        text = str(body.get("text", ""))
        if body.get("image"):
            image = _decode_image(str(body["image"]))
    replies = [r async for r in _answer(request.app, _request(request[USER], text, image))]
    return web.json_response({"replies": replies})


def _too_big(settings: Settings) -> str:
    return f"That's too big; send a photo under {settings.max_upload_bytes / 1e6:.3g} MB."


def _oops(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "error": True}


def _ws_request(frame: WSMessage, user: str, settings: Settings) -> Request | dict[str, Any]:
    """The request one WebSocket message makes, or the error to answer it with."""
    if frame.type == WSMsgType.BINARY:
        return _oops('Send JSON text messages, like {"text": "/help"}.')
    if len(frame.data) > settings.max_upload_bytes * 2:
        return _oops(_too_big(settings))
    try:
        payload = json.loads(frame.data)
    except (ValueError, RecursionError):
        payload = None
    if not isinstance(payload, dict):
        return _oops("I didn't understand that.")
    if payload.get("video"):
        return _video_request(user, payload) or _oops("That upload was damaged.")
    image = _decode_image(str(payload["image"])) if payload.get("image") else None
    if payload.get("image") and not image:
        return _oops("That upload was damaged.")
    return _request(user, str(payload.get("text", "")), image)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    settings = request.app[SERVICE].settings
    # Messages up to twice the limit _ws_request enforces are read and refused with a reply,
    # keeping the socket; beyond that aiohttp closes it with 1009 (message too big) unread.
    socket = web.WebSocketResponse(heartbeat=30, max_msg_size=settings.max_upload_bytes * 4)
    await socket.prepare(request)
    user = request[USER]
    request.app[SOCKETS].add(socket)
    try:
        async for frame in socket:
            if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            outgoing = _ws_request(frame, user, settings)
            if isinstance(outgoing, dict):
                await socket.send_json(outgoing)
                continue
            async for reply in _answer(request.app, outgoing):
                if socket.closed:
                    break
                await socket.send_json(reply)
    finally:
        request.app[SOCKETS].discard(socket)
    return socket


async def media(request: web.Request) -> web.StreamResponse:
    """A render, only for the browser it was made for."""
    service = request.app[SERVICE]
    if not request[USER]:  # no session: nothing of anyone's
        raise web.HTTPNotFound()
    account = service.store.account(PLATFORM, request[USER])
    if request.match_info["account"] != account:
        raise web.HTTPNotFound()
    name = request.match_info["name"]
    if len(name) > MAX_NAME or "/" in name or name.startswith("."):
        raise web.HTTPNotFound()
    path = service.store.user_folder(account) / name
    try:
        found = path.is_file()
    except (OSError, ValueError):  # a name the file system refuses
        found = False
    if not found:
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})


@web.middleware
async def body_limit(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Refuse a declared body over the limit at once, and drop one that stops arriving."""
    settings = request.app[SERVICE].settings
    if (
        request.content_length is not None
        and request.content_length > settings.max_upload_bytes * 2
    ):
        return await _refuse(request, 413, _too_big(settings))
    try:
        return await handler(request)
    except _Stalled:
        return await _refuse(request, 408, "The upload stalled; send it again.")


class QuietBadRequests(logging.Filter):
    """aiohttp logs every request it cannot even parse (and answers 400) at ERROR, with a
    traceback: one line at INFO is enough for what any stranger can send."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and 400 <= error.code < 500:
            what = (error.message.strip().splitlines() or [""])[0]
            record.msg = f"{record.getMessage()}: {error.code} {what}"
            record.args, record.exc_info, record.exc_text = None, None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


QUIET_BAD_REQUESTS = QuietBadRequests()


def create_app(service: Service) -> web.Application:
    settings = service.settings
    logging.getLogger("aiohttp.server").addFilter(QUIET_BAD_REQUESTS)  # once: same instance
    app = web.Application(
        middlewares=[body_limit, sessions], client_max_size=settings.max_upload_bytes * 2
    )
    app[SERVICE] = service
    app[SECRETS] = session_secrets(settings, service.store.keys)
    app[SOCKETS] = set()
    app[NEW_SESSIONS] = NewSessions(settings.web_sessions_per_ip_hour)
    app[BUSY] = [0]
    app.add_routes(
        [
            web.get("/", index),
            web.get("/favicon.ico", favicon),
            web.get("/healthz", healthz),
            web.get("/metrics", metrics),
            web.get("/api/clips", list_clips),
            web.get("/api/memes", list_memes),
            web.post("/api/message", message),
            web.get("/api/ws", websocket),
            web.get("/media/{account}/{name}", media),
            web.static("/static", STATIC),
        ]
    )
    return app


__all__ = ["close_sockets", "create_app", "reply_json", "session_secrets"]
