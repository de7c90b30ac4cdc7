"""Telegram adapter (python-telegram-bot v22) over :class:`core.service.conversation.Service`.

A photo (or an image sent as a file) enrols its sender: always in a private chat, and in a
group only when its caption carries a command or mentions the bot, so a group's photos are
never harvested. Commands are the service's; ``/clip`` answers with an inline keyboard whose
buttons render. Every answer goes to the same chat, as a reply to the triggering message,
in the same forum topic. While a render runs, one status message shows the queue position
and progress (edited, not repeated) and "sending video" stays visible; the result replaces
the status message as an MP4 animation, which Telegram loops like a GIF (a clip with sound
as a video, which Telegram plays with its sound).

Inline mode (``@Bot`` in any chat; BotFather's /setinline): an empty query lists the
user's recent renders, ``@Bot TEMPLATE top | bottom`` renders that meme once the user stops
typing for a moment (a newer query from the same user supersedes an older one) and offers
it first. Results are file ids: a render is uploaded once, to
``FACECAST_TELEGRAM_CACHE_CHAT`` or the user's own DM (the message deleted at once), and
its file id kept per user, template, caption and face; renders sent in chats are kept too.
A user without a face gets a "Send me a selfie first" button that opens the bot's DM. A
chosen result (BotFather's /setinlinefeedback) counts against the daily quota.

Long polling by default; a webhook on FaceCast's own aiohttp server when
``FACECAST_TELEGRAM_WEBHOOK_URL`` is set. The same update delivered twice is handled once.
Telegram's flood limits are respected through PTB's rate limiter, which waits out 429s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from aiohttp import web
from telegram import (
    Bot,
    BotCommand,
    ChosenInlineResult,
    Document,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQuery,
    InlineQueryResult,
    InlineQueryResultCachedDocument,
    InlineQueryResultCachedMpeg4Gif,
    InlineQueryResultCachedVideo,
    InlineQueryResultsButton,
    Message,
    PhotoSize,
    ReplyParameters,
    Update,
    Video,
    VideoNote,
)
from telegram.constants import ChatAction, ChatType
from telegram.error import Forbidden, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ChosenInlineResultHandler,
    ContextTypes,
    InlineQueryHandler,
    MessageHandler,
    filters,
)

from bots.base import Replier, deliver, say
from core.config import Settings
from core.errors import FaceCastError
from core.service.conversation import Service
from core.service.inline import InlineMeme, InlineMemes, NoFaceYet
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
from core.service.state import StateUnavailable
from core.storage.store import SentFile

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
    ("verify", "Prove it's you with a 3-second video"),
    ("optin", "Let people in groups meme you"),
    ("optout", "Stop people memeing you"),
    ("forget", "Delete everything about you"),
    ("check", "Reply to a picture or video: did I make it?"),
]
_UPDATE_TTL = 24 * 3600.0  # Telegram keeps an unconfirmed update for 24 hours
UPDATES = ["message", "callback_query", "inline_query", "chosen_inline_result"]
# Inline mode: wait this long for the user's next keystroke before rendering; answer within
# this long of the query (Telegram drops answers to queries older than about 10 s), with
# what there is if the render is not done (it goes on, and the same query finds it next
# time); let Telegram's clients reuse an answer this long (they are personal and change).
INLINE_DEBOUNCE = 0.6
INLINE_DEADLINE = 7.0
INLINE_CACHE_SECONDS = 5
UPLOAD_LIMIT = 50 * 1024 * 1024  # what a bot may upload


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
        self.application.add_handler(InlineQueryHandler(self._on_inline_query))
        self.application.add_handler(ChosenInlineResultHandler(self._on_chosen))
        self.inline = InlineMemes(service)
        self._typing: dict[int, asyncio.Task[None]] = {}  # user id: their latest inline query
        # user id: the key of the meme being rendered for their inline query, and its task
        self._rendering: dict[int, tuple[str, asyncio.Task[SentFile]]] = {}
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
                allowed_updates=UPDATES,
            )
        else:
            assert app.updater is not None
            await app.updater.start_polling(
                timeout=int(self.settings.telegram_poll_timeout),
                allowed_updates=UPDATES,
            )
        log.info("telegram bot @%s is running", app.bot.username)

    async def stop(self) -> None:
        for task in [*self._typing.values(), *(t for _, t in self._rendering.values())]:
            task.cancel()
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

    async def _first_time(self, update: Update) -> bool:
        """False for an update already handled, here or by another front-end sharing the
        service's state (Telegram may deliver one twice, or to a second front-end)."""
        key = f"telegram:update:{self.application.bot.id}:{update.update_id}"
        try:
            return await self.service.state.first_time(key, _UPDATE_TTL)
        except StateUnavailable:  # answering twice beats not answering (logged where it failed)
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
        if message is None or message.from_user is None or not await self._first_time(update):
            return
        if _is_check(message.text or message.caption or ""):
            await self._check(message)  # before videos: a video captioned /check is checked
            return
        video_file = _video_of(message)
        if video_file is not None:
            # Videos in groups are people's own; a /verify answer comes in a private chat.
            if message.chat.type == ChatType.PRIVATE:
                await self._on_video(message, video_file)
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

    async def _on_video(self, message: Message, video: VideoNote | Video | Document) -> None:
        """A round video message or a short video: the answer to a /verify challenge."""
        assert message.from_user is not None
        if (video.file_size or 0) > DOWNLOAD_LIMIT:
            too_big = Text("That video is too big for me to download (over 20 MB).", error=True)
            await self._send(message, say(too_big))
            return
        downloaded = await video.get_file()
        data = bytes(await downloaded.download_as_bytearray())
        mime = getattr(video, "mime_type", None) or "video/mp4"
        request = Request(
            sender=_person(message.from_user),
            chat=Chat(str(message.chat.id)),
            video=data,
            video_suffix=".webm" if "webm" in mime else ".mov" if "quicktime" in mime else ".mp4",
        )
        await self._send(message, self.service.handle(request))

    async def _on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None or not await self._first_time(update):
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

    # -- inline mode -----------------------------------------------------------------------

    async def _on_inline_query(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.inline_query
        if query is None or not await self._first_time(update):
            return
        user = query.from_user.id
        stale = self._typing.get(user)
        if stale is not None:
            stale.cancel()  # the user typed on: that answer is no longer wanted
        task = asyncio.create_task(self._answer_inline(query, time.monotonic()))
        self._typing[user] = task
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are stopping, not superseded
        except TelegramError as exc:
            log.warning("could not answer inline query %s: %s", query.id, exc)
        finally:
            if self._typing.get(user) is task:
                del self._typing[user]

    async def _answer_inline(self, query: InlineQuery, started: float) -> None:
        person = _person(query.from_user)
        text = query.query.strip()
        button: InlineQueryResultsButton | None = None
        results: list[InlineQueryResult] = []
        try:
            if text:
                await asyncio.sleep(INLINE_DEBOUNCE)  # cancelled if the user types on
            recent = await self.inline.recent(person)
            if text:
                try:
                    meme = await self.inline.ask(person, text)
                    remaining = INLINE_DEADLINE - (time.monotonic() - started)
                    fresh = await self._fresh(meme, person, remaining)
                except FaceCastError as exc:
                    fresh = None
                    button = InlineQueryResultsButton(
                        text=_button_text(exc.message), start_parameter="help"
                    )
                if fresh is not None:
                    recent = [fresh, *(r for r in recent if r.id != fresh.id)]
                elif button is None:
                    button = InlineQueryResultsButton(
                        text="Still rendering: type on, or try again", start_parameter="help"
                    )
            results = [_inline_result(file) for file in recent]
        except NoFaceYet:
            results = []
            button = InlineQueryResultsButton(
                text="Send me a selfie first", start_parameter="selfie"
            )
        except FaceCastError as exc:
            button = InlineQueryResultsButton(
                text=_button_text(exc.message), start_parameter="help"
            )
        await self.application.bot.answer_inline_query(
            query.id,
            results[:50],  # Telegram's maximum per answer
            cache_time=INLINE_CACHE_SECONDS,
            is_personal=True,
            button=button,
        )

    async def _fresh(self, meme: InlineMeme, person: Person, within: float) -> SentFile | None:
        """The meme's file as the platform holds it: kept, or rendered and uploaded now;
        None if that takes longer than ``within`` seconds (it goes on, for next time)."""
        kept = await self.inline.cached(meme)
        if kept is not None:
            return kept
        user = int(person.id)
        running = self._rendering.get(user)
        if running is not None and running[0] != meme.key:
            running[1].cancel()  # a query the user has typed past
            running = None
        if running is None:
            task = asyncio.create_task(self._render_and_upload(meme, person))
            running = self._rendering[user] = (meme.key, task)

            def finished(done: asyncio.Task[SentFile]) -> None:
                if self._rendering.get(user, (None, None))[1] is done:
                    del self._rendering[user]
                if not done.cancelled() and done.exception() is not None:
                    log.warning("an inline render failed: %s", done.exception())

            task.add_done_callback(finished)
        try:
            # Shielded: a slow render goes on and is kept for the query's next asking.
            return await asyncio.wait_for(asyncio.shield(running[1]), max(within, 0.1))
        except TimeoutError:
            return None

    async def _render_and_upload(self, meme: InlineMeme, person: Person) -> SentFile:
        media = await self.inline.render(meme, UPLOAD_LIMIT)
        kind, file_id = await self._upload(media, person)
        return await self.inline.keep(meme, kind, file_id)

    async def _upload(
        self, media: Media, person: Person
    ) -> tuple[Literal["animation", "video", "document"], str]:
        """Upload a render where it gets a file id: the operator's cache chat, or the user's
        DM; the message is deleted at once (the file id outlives it), so no chat keeps a
        copy that /forget could not reach."""
        bot = self.application.bot
        target: int | str = self.settings.telegram_cache_chat or int(person.id)
        try:
            with media.path.open("rb") as video:
                shape: dict[str, Any] = {
                    "chat_id": target,
                    "caption": media.caption,
                    "width": media.width or None,
                    "height": media.height or None,
                    "filename": media.path.name,
                    "disable_notification": True,
                }
                if media.has_audio:  # a meme with its sound: a video, as in chats
                    sent = await bot.send_video(video=video, supports_streaming=True, **shape)
                else:
                    sent = await bot.send_animation(animation=video, **shape)
        except Forbidden as exc:
            raise FaceCastError("Open a chat with me first (press Start there)") from exc
        except TelegramError as exc:
            log.warning("could not upload an inline render: %s", exc)
            raise FaceCastError("I couldn't upload that just now: try again") from exc
        held = _held_file(sent)
        if held is None:
            raise FaceCastError()
        with contextlib.suppress(TelegramError):
            await sent.delete()
        return held

    async def _on_chosen(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chosen: ChosenInlineResult | None = update.chosen_inline_result
        if chosen is None or not await self._first_time(update):
            return
        result_id = chosen.result_id
        if not (result_id.startswith("f") and result_id[1:].isdigit()):
            return
        counted = await self.inline.chosen(_person(chosen.from_user), int(result_id[1:]))
        log.info("inline result %s chosen%s", result_id, "" if counted else " (not counted)")

    def _keeper(self, trigger: Message) -> Keeper | None:
        """Keeps the file ids of renders sent to ``trigger``'s sender, for inline mode."""
        if trigger.from_user is None:
            return None
        person = _person(trigger.from_user)

        async def keep(reply: Media, sent: Message) -> None:
            held = _held_file(sent)
            if held is not None:
                try:
                    await self.inline.keep_sent(person, reply, *held)
                except Exception:  # the render was delivered: this is only a convenience
                    log.exception("could not keep the file id of a render")

        return keep

    # -- replies -------------------------------------------------------------------------------

    async def _send(self, trigger: Message, replies: AsyncIterator[Reply]) -> None:
        """Post the service's replies as answers to ``trigger`` in its chat and topic."""
        try:
            replier = _ChatReplier(self.application.bot, trigger, self._keeper(trigger))
            await deliver(replies, replier, f"chat {trigger.chat.id}")
        except TelegramError:
            log.exception("could not answer in chat %s", trigger.chat.id)


Keeper = Callable[[Media, Message], Awaitable[None]]


class _ChatReplier(Replier):
    """Replies to one message, in its chat and forum topic; one status message shows
    progress (edited in place, "sending video" kept visible) and gives way to the result."""

    def __init__(self, bot: Bot, trigger: Message, keep: Keeper | None = None) -> None:
        self.bot = bot
        self.keep = keep
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
                sent = await self.bot.send_document(  # turn an animation into MP4
                    document=video, caption=reply.caption, **self.where
                )
            elif reply.has_audio:  # an animation would be played muted, its sound dropped
                sent = await self.bot.send_video(
                    video=video,
                    caption=reply.caption,
                    width=reply.width or None,
                    height=reply.height or None,
                    supports_streaming=True,
                    filename=reply.path.name,
                    **self.where,
                )
            else:
                sent = await self.bot.send_animation(
                    animation=video,
                    caption=reply.caption,
                    width=reply.width or None,
                    height=reply.height or None,
                    filename=reply.path.name,
                    **self.where,
                )
        if self.keep is not None:
            await self.keep(reply, sent)

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


def _video_of(message: Message) -> VideoNote | Video | Document | None:
    """The video a message carries: a round video note, a video, or one sent as a file."""
    if message.video_note:
        return message.video_note
    if message.video:
        return message.video
    if message.document and (message.document.mime_type or "").startswith("video/"):
        return message.document
    return None


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


def _held_file(
    message: Message,
) -> tuple[Literal["animation", "video", "document"], str] | None:
    """How Telegram holds the file a message carries, and its file id."""
    if message.animation is not None:
        return "animation", message.animation.file_id
    if message.video is not None:
        return "video", message.video.file_id
    if message.document is not None:
        return "document", message.document.file_id
    return None


def _inline_result(file: SentFile) -> InlineQueryResult:
    """A render the user may send anywhere, as the file Telegram holds, labelled as in chats."""
    result_id = f"f{file.id}"
    title = f"{file.title}: {file.words}" if file.words else file.title
    if file.media == "video":
        return InlineQueryResultCachedVideo(
            result_id, file.file_id, title[:200], caption=file.caption
        )
    if file.media == "document":
        return InlineQueryResultCachedDocument(
            result_id, title[:200], file.file_id, caption=file.caption
        )
    return InlineQueryResultCachedMpeg4Gif(
        result_id, file.file_id, title=title[:200], caption=file.caption
    )


def _button_text(message: str) -> str:
    """A refusal, short enough for the button above inline results."""
    first = message.split(": ")[0].split(". ")[0].rstrip(".!")
    return first if len(first) <= 60 else first[:59] + "…"


def _keyboard(choices: Choices) -> InlineKeyboardMarkup:
    buttons = [
        InlineKeyboardButton(choice.label, callback_data=choice.command[:64])
        for choice in choices.choices
    ]
    return InlineKeyboardMarkup([buttons[i : i + 2] for i in range(0, len(buttons), 2)])


__all__ = ["COMMANDS", "WEBHOOK_PATH", "TelegramBot"]
