"""A local stand-in for Telegram's Bot API, for driving the real python-telegram-bot.

It implements the methods FaceCast uses (getMe, deleteWebhook, getUpdates with long polling
and offsets, getFile and file downloads of photos, documents, videos and round video notes,
sendMessage, editMessageText, deleteMessage, sendChatAction, sendAnimation/sendVideo/
sendDocument as multipart, answerCallbackQuery, answerInlineQuery, setMyCommands), records
every call with what it answered, and can answer any method with a 429 and a
``retry_after`` on request. Tests queue updates (``push``: messages, callback queries,
inline queries and chosen inline results, made with :meth:`FakeTelegram.message`,
:meth:`inline_query` and :meth:`chosen_inline_result`) and assert on ``calls``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_USER = {
    "id": 4242,
    "is_bot": True,
    "first_name": "FaceCast",
    "username": "FaceCastTestBot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": True,
}


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    result: Any = None  # what the fake answered


def _value(raw: str) -> Any:
    """PTB sends form values JSON-encoded, except plain strings."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


class FakeTelegram:
    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.updates: list[dict[str, Any]] = []
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id -> (path, data)
        self.too_many: dict[str, int] = {}  # method -> answer 429 this many times
        self.failing: dict[str, int] = {}  # method -> answer 400 this many times
        self.blocked: set[int] = set()  # users who blocked the bot (or never pressed Start)
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._file_ids = itertools.count(1)
        self._inline_ids = itertools.count(1)
        self._new_update = asyncio.Event()
        self._new_call = asyncio.Event()
        self.app = web.Application(client_max_size=100 * 1024 * 1024)
        self.app.router.add_post(f"/bot{token}/{{method}}", self._method)
        self.app.router.add_get(f"/file/bot{token}/{{path:.+}}", self._download)

    # -- what tests do ----------------------------------------------------------------------

    def add_file(self, data: bytes, name: str = "photo.jpg") -> str:
        file_id = f"file-{next(self._file_ids)}"
        self.files[file_id] = (f"photos/{file_id}-{name}", data)
        return file_id

    def push(self, update: dict[str, Any], update_id: int | None = None) -> int:
        """Queue an update (a fresh update_id unless one is given, to send a duplicate)."""
        number = update_id if update_id is not None else next(self._update_ids)
        self.updates.append({"update_id": number, **update})
        self._new_update.set()
        return number

    def message(
        self,
        chat: dict[str, Any],
        sender: dict[str, Any],
        *,
        text: str | None = None,
        photo: bytes | None = None,
        document: tuple[bytes, str, str] | None = None,  # data, file name, mime type
        caption: str | None = None,
        reply_to: dict[str, Any] | None = None,
        thread: int | None = None,
        file_size: int | None = None,
        video_note: bytes | None = None,  # a round video message (square MP4)
        video: bytes | None = None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat,
            "from": sender,
        }
        if text is not None:
            message["text"] = text
            if text.startswith("/"):
                command = text.split()[0]
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        if caption is not None:
            message["caption"] = caption
        if photo is not None:
            file_id = self.add_file(photo)
            message["photo"] = [
                {
                    "file_id": file_id,
                    "file_unique_id": file_id + "u",
                    "width": 512,
                    "height": 512,
                    "file_size": file_size or len(photo),
                }
            ]
        if document is not None:
            data, name, mime = document
            file_id = self.add_file(data, name)
            message["document"] = {
                "file_id": file_id,
                "file_unique_id": file_id + "u",
                "file_name": name,
                "mime_type": mime,
                "file_size": file_size or len(data),
            }
        if video_note is not None:
            file_id = self.add_file(video_note, "note.mp4")
            message["video_note"] = {
                "file_id": file_id,
                "file_unique_id": file_id + "u",
                "length": 384,
                "duration": 3,
                "file_size": file_size or len(video_note),
            }
        if video is not None:
            file_id = self.add_file(video, "video.mp4")
            message["video"] = {
                "file_id": file_id,
                "file_unique_id": file_id + "u",
                "width": 384,
                "height": 384,
                "duration": 3,
                "mime_type": "video/mp4",
                "file_size": file_size or len(video),
            }
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        if thread is not None:
            message["message_thread_id"] = thread
            message["is_topic_message"] = True
        return message

    def inline_query(
        self, sender: dict[str, Any], query: str, chat_type: str = "sender"
    ) -> dict[str, Any]:
        """An inline query (``@Bot query`` typed in any chat), ready to ``push``."""
        return {
            "inline_query": {
                "id": f"iq-{next(self._inline_ids)}",
                "from": sender,
                "query": query,
                "offset": "",
                "chat_type": chat_type,
            }
        }

    def chosen_inline_result(
        self, sender: dict[str, Any], result_id: str, query: str = ""
    ) -> dict[str, Any]:
        """The user picked an inline result (sent when inline feedback is on), ready to
        ``push``."""
        return {
            "chosen_inline_result": {
                "result_id": result_id,
                "from": sender,
                "query": query,
                "inline_message_id": f"im-{next(self._inline_ids)}",
            }
        }

    def answers_to(self, update: dict[str, Any]) -> list[Call]:
        """The answerInlineQuery calls for an inline query update."""
        query_id = update["inline_query"]["id"]
        return [
            c
            for c in self.calls
            if c.method == "answerInlineQuery" and c.params.get("inline_query_id") == query_id
        ]

    def sent(self, *methods: str) -> list[Call]:
        return [call for call in self.calls if call.method in methods]

    async def wait_for(
        self, predicate: Any, timeout: float = 60.0, what: str = "a call"
    ) -> list[Call]:
        """Wait until ``predicate(calls)`` is true; returns the calls then."""
        deadline = time.monotonic() + timeout
        while not predicate(self.calls):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [c.method for c in self.calls[-15:]]
                raise AssertionError(f"timed out waiting for {what}; last calls: {seen}")
            self._new_call.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_call.wait(), min(remaining, 1.0))
        return self.calls

    # -- the Bot API ----------------------------------------------------------------------------

    async def _method(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        if request.content_type == "multipart/form-data" or request.can_read_body:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = value.file.read()
                else:
                    params[key] = _value(str(value))
        if self.too_many.get(method):
            self.too_many[method] -= 1
            self._record(Call(method + ":429", params, files))
            return web.json_response(
                {
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests: retry after 1",
                    "parameters": {"retry_after": 1},
                },
                status=429,
            )
        if self.failing.get(method):
            self.failing[method] -= 1
            self._record(Call(method + ":400", params, files))
            return web.json_response(
                {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: message to edit not found",
                },
                status=400,
            )
        if method == "getUpdates":
            return await self._get_updates(params)
        if method.startswith("send") and params.get("chat_id") in self.blocked:
            self._record(Call(method + ":403", params, files))
            return web.json_response(
                {
                    "ok": False,
                    "error_code": 403,
                    "description": "Forbidden: bot was blocked by the user",
                },
                status=403,
            )
        call = Call(method, params, files)
        handler = getattr(self, f"_{method}", None)
        call.result = handler(params, files) if handler else True
        self._record(call)
        return web.json_response({"ok": True, "result": call.result})

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        self._new_call.set()

    async def _get_updates(self, params: dict[str, Any]) -> web.Response:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        self.updates = [u for u in self.updates if u["update_id"] >= offset]
        if not self.updates and timeout:
            self._new_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), min(timeout, 2.0))
        ready = [u for u in self.updates if u["update_id"] >= offset]
        return web.json_response({"ok": True, "result": ready})

    async def _download(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        for stored_path, data in self.files.values():
            if stored_path == path:
                return web.Response(body=data)
        raise web.HTTPNotFound()

    def _getMe(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:  # noqa: N802
        return BOT_USER

    def _getFile(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:  # noqa: N802
        path, data = self.files[params["file_id"]]
        return {
            "file_id": params["file_id"],
            "file_unique_id": params["file_id"] + "u",
            "file_size": len(data),
            "file_path": path,
        }

    def _sent_message(self, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
        chat: dict[str, Any]
        if str(params["chat_id"]).startswith("@"):  # a public channel by its username
            chat = {"id": -1009000000001, "type": "channel", "username": params["chat_id"][1:]}
        else:
            chat_id = int(params["chat_id"])
            chat = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"}
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat,
            "from": BOT_USER,
            **extra,
        }
        if params.get("message_thread_id"):
            message["message_thread_id"] = int(params["message_thread_id"])
            message["is_topic_message"] = True
        return message

    def _sendMessage(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:  # noqa: N802
        return self._sent_message(params, text=str(params.get("text", "")))

    def _editMessageText(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:  # noqa: N802
        return self._sent_message(params, text=str(params.get("text", "")))

    def _sent_media(self, params: dict[str, Any], field: str) -> dict[str, Any]:
        media = {
            "file_id": f"{field}-{next(self._file_ids)}",
            "file_unique_id": field,
            "width": int(params.get("width") or 0),
            "height": int(params.get("height") or 0),
            "duration": 3,
        }
        return self._sent_message(params, **{field: media})

    def _sendAnimation(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:  # noqa: N802
        return self._sent_media(params, "animation")

    def _sendVideo(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:  # noqa: N802
        return self._sent_media(params, "video")

    _sendDocument = _sendAnimation  # noqa: N815
