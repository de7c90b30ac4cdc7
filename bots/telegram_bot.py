"""Telegram adapter (python-telegram-bot v22) over :class:`core.service.conversation.Service`.

A photo (or an image sent as a file) enrols its sender: always in a private chat, and in a
group only when its caption carries a command or mentions the bot, so a group's photos are
never harvested. Commands are the service's; ``/clip`` answers with an inline keyboard whose
buttons render. Every answer goes to the same chat, as a reply to the triggering message,
in the same forum topic. While a render runs, one status message shows the queue position
and progress (edited, not repeated) and "sending video" stays visible; the result replaces
the status message as an MP4 animation, which Telegram loops like a GIF.

Long polling by default; a webhook on FaceCast's own aiohttp server when
``FACECAST_TELEGRAM_WEBHOOK_URL`` is set. The same update delivered twice is handled once.
Telegram's flood limits are respected through PTB's rate limiter, which waits out 429s.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from telegram import (
    Bot,
    BotCommand,
    Document,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    PhotoSize,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatAction, ChatType
from telegram.error import TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bots.base import Replier, deliver, say
from core.config import Settings
from core.service.conversation import Service
from core.service.messages import (
    Chat,
    Choices,
    Media,
    Person,
    Progress,
    Quoted,
    Reply,
    Request,
    Text,
)

log = logging.getLogger(__name__)

PLATFORM = "telegram"
DOWNLOAD_LIMIT = 20 * 1024 * 1024  # getFile serves files up to 20 MB
WEBHOOK_PATH = "/telegram/webhook"
COMMANDS = [
    ("start", "What I do"),
    ("help", "What I do"),
    ("clip", "Put your face into a clip"),
    ("meme", "Make a meme: /meme ID top | bottom"),
    ("faces", "Your saved faces"),
    ("face", "Use face N: /face 2"),
    ("optin", "Let people in groups meme you"),
    ("optout", "Stop people memeing you"),
    ("forget", "Delete everything about you"),
    ("check", "Reply to a picture or video: did I make it?"),
]
_SEEN_UPDATES = 10_000


class TelegramBot:
    """Owns the PTB :class:`Application` and translates between it and the service."""

    def __init__(self, service: Service, settings: Settings) -> None:
        if settings.telegram_token is None:
            raise ValueError("FACECAST_TELEGRAM_TOKEN is not set")
        builder = (
            ApplicationBuilder()
            .token(settings.telegram_token.get_secret_value())
            .rate_limiter(AIORateLimiter(max_retries=3))
            .concurrent_updates(True)
            # On stop, PTB asks getUpdates once more while the long poll may still hold the
            # only connection of its pool: a second one avoids a PoolTimeout traceback.
            .get_updates_connection_pool_size(2)
        )
        if settings.telegram_webhook_url:
            builder = builder.updater(None)  # updates arrive on our own web server
        if settings.telegram_base_url:
            builder = builder.base_url(settings.telegram_base_url)
        if settings.telegram_base_file_url:
            builder = builder.base_file_url(settings.telegram_base_file_url)
        self.service = service
        self.settings = settings
        self.application: Application[Any, Any, Any, Any, Any, Any] = builder.build()
        self.application.add_handler(
            MessageHandler(filters.ALL & ~filters.UpdateType.EDITED, self._on_message)
        )
        self.application.add_handler(CallbackQueryHandler(self._on_button))
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._webhook_secret = secrets.token_urlsafe(24)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        app = self.application
        await app.initialize()
        await app.bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS])
        await app.start()
        if self.settings.telegram_webhook_url:
            await app.bot.set_webhook(
                self.settings.telegram_webhook_url.rstrip("/") + WEBHOOK_PATH,
                secret_token=self._webhook_secret,
                allowed_updates=["message", "callback_query"],
            )
        else:
            assert app.updater is not None
            await app.updater.start_polling(
                timeout=int(self.settings.telegram_poll_timeout),
                allowed_updates=["message", "callback_query"],
            )
        log.info("telegram bot @%s is running", app.bot.username)

    async def stop(self) -> None:
        app = self.application
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await app.shutdown()

    async def webhook(self, request: web.Request) -> web.Response:
        """The webhook endpoint, mounted on FaceCast's aiohttp server."""
        token = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        # compare_digest refuses (TypeError) a str that is not ASCII: that is not ours either
        if not token.isascii() or not secrets.compare_digest(token, self._webhook_secret):
            raise web.HTTPForbidden()
        try:
            payload = json.loads(await request.read())
            if not isinstance(payload, dict):
                raise TypeError("an update is a JSON object")
            update = Update.de_json(payload, self.application.bot)
        except (
            Exception
        ) as exc:  # JSON, nesting, or whatever de_json trips on (it validates little)
            log.warning("refused a webhook body that is not an update: %r", exc)
            raise web.HTTPBadRequest(text="not a Telegram update") from None
        await self.application.update_queue.put(update)
        return web.Response(text="ok")

    # -- updates ---------------------------------------------------------------------------

    def _first_time(self, update: Update) -> bool:
        """False for an update already handled (Telegram may deliver one twice)."""
        if update.update_id in self._seen:
            return False
        self._seen[update.update_id] = None
        while len(self._seen) > _SEEN_UPDATES:
            self._seen.popitem(last=False)
        return True

    def _addressed(self, message: Message) -> bool:
        """In a group, a message is for the bot only with a command or a mention."""
        if message.chat.type == ChatType.PRIVATE:
            return True
        words = (message.text or message.caption or "").split()
        username = f"@{self.application.bot.username}".lower()
        return any(w.startswith("/") or w.lower().startswith(username) for w in words)

    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        if message is None or message.from_user is None or not self._first_time(update):
            return
        if _is_check(message.text or message.caption or ""):
            await self._check(message)
            return
        image_file: PhotoSize | Document | None = None
        if message.photo:
            image_file = message.photo[-1]  # the largest size Telegram made
        elif message.document and (message.document.mime_type or "").startswith("image/"):
            image_file = message.document
        text = message.text or message.caption or ""
        if image_file is not None and not self._addressed(message):
            return  # somebody's photo in a group, not meant for us
        if image_file is None and not text:
            if message.document and message.chat.type == ChatType.PRIVATE:
                await self._send(message, say(Text("That isn't a picture: send me a photo.")))
            return
        image = None
        if image_file is not None:
            if (image_file.file_size or 0) > DOWNLOAD_LIMIT:
                too_big = Text("That file is too big for me to download (over 20 MB).", error=True)
                await self._send(message, say(too_big))
                return
            downloaded = await image_file.get_file()
            image = bytes(await downloaded.download_as_bytearray())
        request = Request(
            sender=_person(message.from_user),
            chat=Chat(str(message.chat.id), is_group=message.chat.type != ChatType.PRIVATE),
            text=text if image is None else "",
            image=image,
            reply_to=_quoted(message.reply_to_message),
            prefer=None if text.split()[-1:] == ["gif"] else "mp4",
        )
        await self._send(message, self.service.handle(request))

    async def _check(self, message: Message) -> None:
        """``/check`` with a picture or video attached, or as a reply to one."""
        media, name = None, ""
        for source in (message, message.reply_to_message):
            found = _attachment(source) if source is not None else None
            if found is None:
                continue
            attachment, name = found
            if (attachment.file_size or 0) > DOWNLOAD_LIMIT:
                too_big = Text("That file is too big for me to download (over 20 MB).", error=True)
                await self._send(message, say(too_big))
                return
            downloaded = await attachment.get_file()
            media = bytes(await downloaded.download_as_bytearray())
            break
        assert message.from_user is not None
        request = Request(
            sender=_person(message.from_user),
            chat=Chat(str(message.chat.id), is_group=message.chat.type != ChatType.PRIVATE),
            text="/check",
            media=media,
            media_name=name,
        )
        await self._send(message, self.service.handle(request))

    async def _on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None or not self._first_time(update):
            return
        await query.answer()
        origin = query.message
        if not isinstance(origin, Message) or not query.data:
            return
        request = Request(
            sender=_person(query.from_user),
            chat=Chat(str(origin.chat.id), is_group=origin.chat.type != ChatType.PRIVATE),
            text=query.data,
            prefer="mp4",
        )
        await self._send(origin, self.service.handle(request))

    # -- replies -------------------------------------------------------------------------------

    async def _send(self, trigger: Message, replies: AsyncIterator[Reply]) -> None:
        """Post the service's replies as answers to ``trigger`` in its chat and topic."""
        try:
            await deliver(
                replies, _ChatReplier(self.application.bot, trigger), f"chat {trigger.chat.id}"
            )
        except TelegramError:
            log.exception("could not answer in chat %s", trigger.chat.id)


class _ChatReplier(Replier):
    """Replies to one message, in its chat and forum topic; one status message shows
    progress (edited in place, "sending video" kept visible) and gives way to the result."""

    def __init__(self, bot: Bot, trigger: Message) -> None:
        self.bot = bot
        self.chat_id = trigger.chat.id
        self.where: dict[str, Any] = {
            "chat_id": trigger.chat.id,
            "reply_parameters": ReplyParameters(
                message_id=trigger.message_id, allow_sending_without_reply=True
            ),
        }
        if trigger.is_topic_message and trigger.message_thread_id:
            self.where["message_thread_id"] = trigger.message_thread_id
        self.status: Message | None = None
        self.status_text = ""
        self.last_action = 0.0

    async def progress(self, reply: Progress) -> None:
        if time.monotonic() - self.last_action > 4:
            self.last_action = time.monotonic()
            await self.bot.send_chat_action(
                self.chat_id,
                ChatAction.UPLOAD_VIDEO,
                message_thread_id=self.where.get("message_thread_id"),
            )
        if self.status is None:
            self.status = await self.bot.send_message(text=reply.text, **self.where)
            self.status_text = reply.text
        elif reply.text != self.status_text:
            self.status_text = reply.text
            await self.status.edit_text(reply.text)

    async def media(self, reply: Media) -> None:
        if self.status is not None:
            status, self.status = self.status, None
            try:
                await status.delete()
            except TelegramError as exc:  # already gone: the result matters, not the status
                log.warning("could not delete a status message: %s", exc)
        with reply.path.open("rb") as video:
            if reply.kind == "gif":  # asked for as a file: Telegram would
                await self.bot.send_document(  # turn an animation into MP4
                    document=video, caption=reply.caption, **self.where
                )
            else:
                await self.bot.send_animation(
                    animation=video,
                    caption=reply.caption,
                    width=reply.width or None,
                    height=reply.height or None,
                    filename=reply.path.name,
                    **self.where,
                )

    async def choices(self, reply: Choices) -> None:
        await self.bot.send_message(text=reply.text, reply_markup=_keyboard(reply), **self.where)

    async def text(self, reply: Text) -> None:
        if self.status is not None and reply.error:
            status, self.status = self.status, None
            try:
                await status.edit_text(reply.text)
                return
            except TelegramError as exc:
                log.warning("could not edit a status message: %s", exc)
        await self.bot.send_message(text=reply.text, **self.where)


def _person(user: Any) -> Person:
    return Person(PLATFORM, str(user.id), user.first_name or "")


def _quoted(message: Message | None) -> Quoted | None:
    if message is None or message.from_user is None:
        return None
    return Quoted(_person(message.from_user), message.text or message.caption or "")


def _is_check(text: str) -> bool:
    words = text.split()
    return bool(words) and words[0].split("@", 1)[0].lower() == "/check"


def _attachment(message: Message) -> tuple[Any, str] | None:
    """The picture or video a message carries, and a file name that tells its format."""
    if message.photo:
        return message.photo[-1], "photo.jpg"
    for media, default in (
        (message.document, "file"),
        (message.animation, "animation.mp4"),
        (message.video, "video.mp4"),
        (message.video_note, "video.mp4"),
    ):
        if media is not None:
            return media, getattr(media, "file_name", None) or default
    return None


def _keyboard(choices: Choices) -> InlineKeyboardMarkup:
    buttons = [
        InlineKeyboardButton(choice.label, callback_data=choice.command[:64])
        for choice in choices.choices
    ]
    return InlineKeyboardMarkup([buttons[i : i + 2] for i in range(0, len(buttons), 2)])


__all__ = ["COMMANDS", "WEBHOOK_PATH", "TelegramBot"]
