"""A local stand-in for Discord's REST API, gateway and CDN, for driving the real discord.py.

REST: login (``users/@me``, ``oauth2/applications/@me``), command sync (bulk overwrite,
guild and global), interaction callbacks (defer, autocomplete), the webhook routes behind
``edit_original_response``, ``delete_original_response`` and follow-ups (multipart with
files), and channel messages (DM replies). Gateway: HELLO, IDENTIFY -> READY and
GUILD_CREATE, heartbeat ACKs, and ``dispatch`` for tests to send events such as
INTERACTION_CREATE and MESSAGE_CREATE. CDN: attachments added with ``add_attachment``.
Every REST call is recorded in ``calls``; synced commands (with their ``integration_types``
and ``contexts``) in ``commands``.

A user install (``user_app_interaction``): the interaction comes from a server the bot is
not in (``guild_id`` of a guild READY never announced), the bot's DM or a group DM (no
``guild_id``), with ``authorizing_integration_owners`` naming the user and ``context`` set.
As on Discord, the bot may not read that channel (REST calls to it answer 403 Missing
Access) and may make at most five follow-ups for the interaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

APP_ID = "700000000000000001"
BOT = {
    "id": APP_ID,
    "username": "FaceCast",
    "discriminator": "0",
    "global_name": "FaceCast",
    "avatar": None,
    "bot": True,
}
GUILD_ID = "800000000000000001"
CHANNEL_ID = "800000000000000002"
# A server FaceCast's bot is not in, where someone uses FaceCast installed to their account.
ELSEWHERE_GUILD_ID = "880000000000000001"
ELSEWHERE_CHANNEL_ID = "880000000000000002"
GROUP_DM_ID = "880000000000000003"
USER_APP_FOLLOWUPS = 5  # Discord's cap on follow-ups for a user-installed app's interaction
# Interaction contexts and installation types, as Discord numbers them.
GUILD_CONTEXT, BOT_DM_CONTEXT, PRIVATE_CHANNEL_CONTEXT = 0, 1, 2
GUILD_INSTALL, USER_INSTALL = 0, 1
NOW = "2026-11-27T12:00:00.000000+00:00"


def _json(data: Any, status: int = 200) -> web.Response:
    # discord.py parses a body as JSON only when the content type is exactly this.
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


def _text_channel(channel_id: str, guild_id: str, name: str) -> dict[str, Any]:
    """A guild text channel as an interaction carries it."""
    return {
        "id": channel_id,
        "type": 0,
        "guild_id": guild_id,
        "name": name,
        "position": 0,
        "permissions": "2147483647",
    }


def _member(user: dict[str, Any]) -> dict[str, Any]:
    """``user`` as a guild member in an interaction (every permission)."""
    return {
        "user": user,
        "roles": [],
        "joined_at": NOW,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "permissions": "2147483647",
    }


@dataclass
class Call:
    method: str
    path: str
    json: dict[str, Any] | list[Any] | None
    files: dict[str, bytes] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)


class FakeDiscord:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.attachments: dict[str, bytes] = {}
        self.commands: dict[str, list[dict[str, Any]]] = {}  # scope -> synced commands
        self.port = 0
        self._ids = itertools.count(900000000000000001)
        self._sequence = itertools.count(1)
        self._sockets: list[web.WebSocketResponse] = []
        self.heartbeats = 0
        self.failing_edits: set[str] = set()  # interaction tokens whose response can't be edited
        self.unreadable: set[str] = set()  # channels the bot may not touch (user installs)
        self.user_app_tokens: set[str] = set()  # interactions of a user install
        self.heartbeat_interval_ms = 1500  # short, so a test run sees the client's heartbeats
        self.identified = asyncio.Event()
        self._new_call = asyncio.Event()
        self.app = web.Application(client_max_size=100 * 1024 * 1024)
        self.app.router.add_get("/gateway", self._gateway)
        self.app.router.add_get("/attachments/{name}", self._attachment)
        self.app.router.add_route("*", "/api/v10/{path:.+}", self._rest)

    # -- what tests do ----------------------------------------------------------------------

    def snowflake(self) -> str:
        return str(next(self._ids))

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add_attachment(self, data: bytes, filename: str, content_type: str) -> dict[str, Any]:
        attachment_id = self.snowflake()
        name = f"{attachment_id}-{filename}"
        self.attachments[name] = data
        return {
            "id": attachment_id,
            "filename": filename,
            "size": len(data),
            "url": self.url(f"/attachments/{name}"),
            "proxy_url": self.url(f"/attachments/{name}"),
            "content_type": content_type,
        }

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        payload = {"op": 0, "t": event, "s": next(self._sequence), "d": data}
        for socket in self._sockets:
            if not socket.closed:
                await socket.send_str(json.dumps(payload))

    def interaction(
        self,
        user: dict[str, Any],
        data: dict[str, Any],
        *,
        kind: int = 2,
        size_limit: int = 10 * 1024 * 1024,
        guild: bool = True,
    ) -> dict[str, Any]:
        interaction_id = self.snowflake()
        payload: dict[str, Any] = {
            "id": interaction_id,
            "application_id": APP_ID,
            "type": kind,
            "token": f"token-{interaction_id}",
            "version": 1,
            "data": data,
            "app_permissions": "2147483647",
            "locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": GUILD_ID},
            "context": 0 if guild else 1,
            "attachment_size_limit": size_limit,
            "channel_id": CHANNEL_ID,
        }
        if guild:
            payload["guild_id"] = GUILD_ID
            payload["guild_locale"] = "en-US"
            payload["channel"] = _text_channel(CHANNEL_ID, GUILD_ID, "general")
            payload["member"] = _member(user)
        else:
            payload["user"] = user
        return payload

    def user_app_interaction(
        self,
        user: dict[str, Any],
        data: dict[str, Any],
        *,
        where: str = "guild",  # "guild" (a server without the bot), "dm" or "group"
        kind: int = 2,
        size_limit: int = 10 * 1024 * 1024,
    ) -> dict[str, Any]:
        """An interaction with FaceCast installed to ``user``'s account, used where the bot
        is not: a server it was never added to, its DM, or a group DM."""
        interaction_id = self.snowflake()
        payload: dict[str, Any] = {
            "id": interaction_id,
            "application_id": APP_ID,
            "type": kind,
            "token": f"token-{interaction_id}",
            "version": 1,
            "data": data,
            # What a user install may do there: send messages, embed links, attach files.
            "app_permissions": str((1 << 11) | (1 << 14) | (1 << 15)),
            "locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {str(USER_INSTALL): user["id"]},
            "attachment_size_limit": size_limit,
        }
        if where == "guild":
            channel = ELSEWHERE_CHANNEL_ID
            payload["context"] = GUILD_CONTEXT
            payload["guild_id"] = ELSEWHERE_GUILD_ID
            payload["guild_locale"] = "en-US"
            payload["guild"] = {"id": ELSEWHERE_GUILD_ID, "locale": "en-US", "features": []}
            payload["channel"] = _text_channel(channel, ELSEWHERE_GUILD_ID, "off-topic")
            payload["member"] = _member(user)
        elif where == "dm":
            channel = self.snowflake()
            payload["context"] = BOT_DM_CONTEXT
            payload["channel"] = {"id": channel, "type": 1, "recipients": [user]}
            payload["user"] = user
        else:
            channel = GROUP_DM_ID
            payload["context"] = PRIVATE_CHANNEL_CONTEXT
            payload["channel"] = {
                "id": channel,
                "type": 3,
                "name": None,
                "icon": None,
                "owner_id": user["id"],
                "recipients": [user],
            }
            payload["user"] = user
        payload["channel_id"] = channel
        self.unreadable.add(channel)
        self.user_app_tokens.add(payload["token"])
        return payload

    def slash(
        self,
        user: dict[str, Any],
        name: str,
        options: dict[str, str],
        *,
        focused: str | None = None,
        size_limit: int = 10 * 1024 * 1024,
        user_app: str | None = None,
    ) -> dict[str, Any]:
        """A slash command with string options; ``focused`` makes it an autocomplete;
        ``user_app`` ("guild", "dm", "group") sends it from a user install there."""
        data = {
            "id": "2",
            "name": name,
            "type": 1,
            "options": [
                {
                    "name": key,
                    "type": 3,
                    "value": value,
                    **({"focused": True} if key == focused else {}),
                }
                for key, value in options.items()
            ],
        }
        kind = 4 if focused else 2
        if user_app is not None:
            return self.user_app_interaction(
                user, data, where=user_app, kind=kind, size_limit=size_limit
            )
        return self.interaction(user, data, kind=kind, size_limit=size_limit)

    def message(self, author: dict[str, Any], content: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": self.snowflake(),
            "channel_id": extra.pop("channel_id", CHANNEL_ID),
            "author": author,
            "content": content,
            "timestamp": NOW,
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": extra.pop("attachments", []),
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            **extra,
        }

    def command(self, scope: str, name: str) -> dict[str, Any]:
        """A synced command as Discord holds it (``scope``: the bulk overwrite's path)."""
        return next(c for c in self.commands[scope] if c["name"] == name)

    def calls_to(self, method: str, fragment: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and fragment in c.path]

    async def wait_for(self, predicate: Any, timeout: float = 60.0, what: str = "a call") -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.calls):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [f"{c.method} {c.path}" for c in self.calls[-12:]]
                raise AssertionError(f"timed out waiting for {what}; last calls: {seen}")
            self._new_call.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_call.wait(), min(remaining, 1.0))

    # -- gateway ---------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_json({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        async for frame in socket:
            if frame.type != WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            if message["op"] == 1:  # heartbeat
                self.heartbeats += 1
                await socket.send_json({"op": 11})
            elif message["op"] == 2:  # identify
                await self._ready(socket)
        return socket

    async def _ready(self, socket: web.WebSocketResponse) -> None:
        ready = {
            "v": 10,
            "user": BOT,
            "guilds": [{"id": GUILD_ID, "unavailable": True}],
            "session_id": "session-1",
            "resume_gateway_url": self.url("/gateway"),
            "application": {"id": APP_ID, "flags": 0},
            "shard": [0, 1],
        }
        await socket.send_json({"op": 0, "t": "READY", "s": next(self._sequence), "d": ready})
        guild = {
            "id": GUILD_ID,
            "name": "Meme club",
            "icon": None,
            "owner_id": "1",
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [
                {
                    "id": GUILD_ID,
                    "name": "@everyone",
                    "color": 0,
                    "hoist": False,
                    "position": 0,
                    "permissions": "2147483647",
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "emojis": [],
            "features": [],
            "mfa_level": 0,
            "system_channel_flags": 0,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "stickers": [],
            "member_count": 3,
            "large": False,
            "joined_at": NOW,
            "channels": [
                {
                    "id": CHANNEL_ID,
                    "type": 0,
                    "name": "general",
                    "position": 0,
                    "permission_overwrites": [],
                    "guild_id": GUILD_ID,
                    "nsfw": False,
                }
            ],
            "threads": [],
            "members": [],
            "voice_states": [],
            "presences": [],
            "unavailable": False,
        }
        await socket.send_json(
            {"op": 0, "t": "GUILD_CREATE", "s": next(self._sequence), "d": guild}
        )
        self.identified.set()

    async def _attachment(self, request: web.Request) -> web.Response:
        data = self.attachments.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data)

    # -- REST -----------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        body: dict[str, Any] | list[Any] | None = None
        files: dict[str, bytes] = {}
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if part.name == "payload_json":
                    body = json.loads(await part.text())  # type: ignore[union-attr]
                elif part.name:
                    files[part.name] = bytes(await part.read())  # type: ignore[union-attr]
        elif request.can_read_body:
            with contextlib.suppress(json.JSONDecodeError):
                body = await request.json()
        call = Call(request.method, path, body, files, dict(request.query))
        self.calls.append(call)
        self._new_call.set()
        return self._answer(call)

    def _answer(self, call: Call) -> web.StreamResponse:
        method, path = call.method, call.path
        editing = method == "PATCH" and path.endswith("/messages/@original")
        if editing and any(token in path for token in self.failing_edits):
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        if path.startswith("/channels/") and path.split("/")[2] in self.unreadable:
            return _json({"message": "Missing Access", "code": 50001}, status=403)
        if method == "POST" and path.startswith("/webhooks/"):
            token = path.split("/")[3]
            if token in self.user_app_tokens:
                sent = self.calls_to("POST", f"/webhooks/{APP_ID}/{token}")
                if len(sent) > USER_APP_FOLLOWUPS:
                    return _json({"message": "Too many follow-up messages", "code": 0}, 400)
        if path == "/users/@me":
            return _json(BOT)
        if path == "/oauth2/applications/@me":
            return _json(
                {
                    "id": APP_ID,
                    "name": "FaceCast",
                    "description": "",
                    "icon": None,
                    "bot_public": True,
                    "bot_require_code_grant": False,
                    "owner": {"id": "1", "username": "owner", "discriminator": "0", "avatar": None},
                    "verify_key": "0" * 64,
                    "flags": 0,
                }
            )
        if method == "PUT" and path.endswith("/commands"):
            synced = []
            for command in call.json or []:
                assert isinstance(command, dict)
                # Discord answers with every field filled in, "" for a context menu's text;
                # a command that names no installs or contexts gets the defaults.
                defaults = {
                    "description": "",
                    "options": [],
                    "nsfw": False,
                    "version": "1",
                    "integration_types": [GUILD_INSTALL],
                    "contexts": None,
                }
                synced.append(
                    {**defaults, **command, "id": self.snowflake(), "application_id": APP_ID}
                )
            self.commands[path] = synced
            return _json(synced)
        if path.startswith("/interactions/") and path.endswith("/callback"):
            interaction_id = path.split("/")[2]
            kind = (call.json or {}).get("type") if isinstance(call.json, dict) else None
            flags = (
                ((call.json or {}).get("data") or {}).get("flags", 0)
                if isinstance(call.json, dict)
                else 0
            )
            return _json(
                {
                    "interaction": {
                        "id": interaction_id,
                        "type": 2,
                        "response_message_loading": kind == 5,
                        "response_message_ephemeral": bool(flags & 64),
                    },
                    "resource": {"type": kind},
                }
            )
        if method == "DELETE":
            return web.Response(status=204)
        if path.startswith("/webhooks/") or path.startswith("/channels/"):
            content = call.json.get("content", "") if isinstance(call.json, dict) else ""
            attachments = [
                {
                    "id": self.snowflake(),
                    "filename": name,
                    "size": len(data),
                    "url": "",
                    "proxy_url": "",
                }
                for name, data in call.files.items()
            ]
            return _json(self.message(BOT, content or "", attachments=attachments))
        return _json({"message": "404: Not Found", "code": 0}, status=404)
