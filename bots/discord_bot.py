"""Discord adapter (discord.py 2, app commands) over :class:`core.service.conversation.Service`.

Slash commands: ``/face`` (an attachment: enrol), ``/clip`` and ``/meme`` (with autocomplete),
``/faces``, ``/forget``, ``/verify`` (without a video: the challenge; with ``video:``
the answer), ``/optin``, ``/optout``, ``/help``; a message context menu "Meme
this" (the message's text as the caption, its author's face if they opted in). Every
command defers at once (Discord allows 3 seconds), shows progress by editing the deferred
response, and posts the result as a follow-up file in the same channel or thread, shrunk
to the interaction's upload limit (a GIF that cannot fit comes as MP4). Clips come as MP4
(a tenth of a GIF's size, and Discord plays it inline), a GIF only with ``format: gif``;
memes, short and small, come as GIFs, which Discord loops without a click. Errors are
ephemeral. A selfie sent to the bot in a DM enrols too.

Commands are synced to ``FACECAST_DISCORD_GUILD_IDS`` on start (instant, for development)
and globally only when ``FACECAST_DISCORD_SYNC_GLOBAL`` is set, not on every start.

FaceCast is a user-installable app too: every command may be installed to a server or to a
user's account (installation contexts guild and user) and used in servers, the bot's DM and
group DMs (interaction contexts guild, bot DM, private channel). Used from a user install,
the bot may not be in that server or DM at all: ``guild_id`` may be absent and the channel
unreadable, so nothing here fetches a channel or its messages; every answer goes through
the interaction's own response and follow-ups, within its upload limit. Consent is the same
everywhere: "Meme this" on someone who did not opt in uses the requester's face.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, Literal

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket

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

PLATFORM = "discord"
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp")
VIDEO_SUFFIXES = {"video/webm": ".webm", "video/quicktime": ".mov", "video/x-matroska": ".mkv"}
# Edits of a deferred response count against Discord's rate limit: at most one this often
# (the latest progress is shown once the time is up, unless the result came first).
PROGRESS_EVERY = 1.5
# Where the commands may be installed (a server, a user's account) and used (servers, the
# bot's DM, group DMs): a user install brings them to any chat the user is in.
INSTALLS = app_commands.AppInstallationType(guild=True, user=True)
CONTEXTS = app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=True)


def _choices_text(choices: Choices) -> str:
    lines = [choices.text]
    lines.extend(f"- {c.label}: `{c.command}`" for c in choices.choices)
    return "\n".join(lines)


class DiscordBot:
    """Owns the discord.py client and its command tree."""

    def __init__(self, service: Service, settings: Settings) -> None:
        if settings.discord_token is None:
            raise ValueError("FACECAST_DISCORD_TOKEN is not set")
        # discord.py reads its endpoints from class attributes; this is its only switch.
        if settings.discord_api_base:
            discord.http.Route.BASE = settings.discord_api_base.rstrip("/")
        if settings.discord_gateway_url:
            DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)
        self.service = service
        self.settings = settings
        # Slash commands need no privileged intent; DMs carry their content anyway.
        intents = discord.Intents.none()
        intents.guilds = True
        intents.dm_messages = True
        self.client = discord.Client(intents=intents)
        self.tree = app_commands.CommandTree(
            self.client, allowed_contexts=CONTEXTS, allowed_installs=INSTALLS
        )
        self._task: asyncio.Task[None] | None = None
        self._register()
        self.client.setup_hook = self._setup_hook  # type: ignore[method-assign]
        self.client.event(self.on_message)

    # -- lifecycle ---------------------------------------------------------------------------

    async def _setup_hook(self) -> None:
        for guild_id in self.settings.discord_guild_ids:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        if self.settings.discord_sync_global:
            await self.tree.sync()

    async def start(self) -> None:
        assert self.settings.discord_token is not None
        token = self.settings.discord_token.get_secret_value()
        self._task = asyncio.create_task(self.client.start(token))
        ready = asyncio.create_task(self.client.wait_until_ready())
        done, _ = await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            ready.cancel()
            self._task.result()  # login failed: raise it
        log.info("discord bot %s is running", self.client.user)

    async def stop(self) -> None:
        await self.client.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, discord.DiscordException):
                await self._task

    # -- commands ----------------------------------------------------------------------------

    def _register(self) -> None:
        tree, service = self.tree, self.service

        async def clip_names(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            found = service.clips.search(current) if current else service.clips.all()
            return [app_commands.Choice(name=c.title[:100], value=c.id) for c in found[:25]]

        async def meme_names(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            found = service.memes.search(current) if current else service.memes.all()
            return [app_commands.Choice(name=t.title[:100], value=t.id) for t in found[:25]]

        @tree.command(name="face", description="Send a selfie: I'll remember your face.")
        @app_commands.describe(image="A photo of just you, facing the camera")
        async def face(interaction: discord.Interaction, image: discord.Attachment) -> None:
            await interaction.response.defer(thinking=True)
            if await self._refused(
                interaction,
                image,
                (image.content_type or "").split(";")[0] in IMAGE_TYPES,
                "That isn't a picture.",
                service.settings.max_upload_bytes,
                "That file is too big; send a photo under {limit:.0f} MB.",
            ):
                return
            data = await image.read()
            await self._run(interaction, self._request(interaction, image=data))

        @tree.command(name="clip", description="Put your face into a clip.")
        @app_commands.describe(clip="Which clip", fmt="mp4 plays inline and is small; gif")
        @app_commands.rename(fmt="format")
        @app_commands.autocomplete(clip=clip_names)
        async def clip(
            interaction: discord.Interaction, clip: str, fmt: Literal["mp4", "gif"] = "mp4"
        ) -> None:
            await interaction.response.defer(thinking=True)
            text = f"/clip {clip} gif" if fmt == "gif" else f"/clip {clip}"
            await self._run(interaction, self._request(interaction, text))

        @tree.command(name="meme", description="Make a meme of your face.")
        @app_commands.describe(template="Which meme", top="Top text", bottom="Bottom text")
        @app_commands.autocomplete(template=meme_names)
        async def meme(
            interaction: discord.Interaction,
            template: str,
            top: app_commands.Range[str, 0, 140] = "",
            bottom: app_commands.Range[str, 0, 140] = "",
        ) -> None:
            await interaction.response.defer(thinking=True)
            text = f"/meme {template} {top} | {bottom}" if top or bottom else f"/meme {template}"
            await self._run(interaction, self._request(interaction, text))

        def simple(name: str, description: str) -> None:
            async def command(interaction: discord.Interaction) -> None:
                await interaction.response.defer(thinking=True, ephemeral=True)
                await self._run(interaction, self._request(interaction, f"/{name}"))

            tree.command(name=name, description=description)(command)

        @tree.command(name="verify", description="Prove your face is yours: a 3-second video.")
        @app_commands.describe(video="Your video answering the challenge (run /verify first)")
        async def verify(
            interaction: discord.Interaction, video: discord.Attachment | None = None
        ) -> None:
            await interaction.response.defer(thinking=True, ephemeral=True)
            if video is None:  # step one: the challenge
                await self._run(interaction, self._request(interaction, "/verify"))
                return
            kind = (video.content_type or "").split(";")[0]
            if await self._refused(
                interaction,
                video,
                kind.startswith("video/"),
                "That isn't a video.",
                service.settings.verify_max_video_bytes,
                "That video is too big; 3 seconds (under {limit:.0f} MB) do.",
            ):
                return
            answer = replace(
                self._request(interaction),
                video=await video.read(),
                video_suffix=VIDEO_SUFFIXES.get(kind, ".mp4"),
            )
            await self._run(interaction, answer)

        simple("faces", "Your saved faces.")
        simple("forget", "Delete everything I have about you, now.")
        simple("optin", "Let people in your servers meme your face.")
        simple("optout", "Stop people memeing your face.")
        simple("help", "What I can do.")

        @tree.command(name="check", description="Did this FaceCast make a picture or video?")
        @app_commands.describe(file="The picture or video to check")
        async def check(interaction: discord.Interaction, file: discord.Attachment) -> None:
            await interaction.response.defer(thinking=True)
            await self._check(interaction, [file])

        @tree.context_menu(name="Check this")
        async def check_this(interaction: discord.Interaction, message: discord.Message) -> None:
            await interaction.response.defer(thinking=True)
            await self._check(interaction, list(message.attachments))

        @tree.context_menu(name="Meme this")
        async def meme_this(interaction: discord.Interaction, message: discord.Message) -> None:
            await interaction.response.defer(thinking=True)
            quoted = Quoted(_person(message.author), message.content or "")
            await self._run(interaction, self._request(interaction, "/meme", reply_to=quoted))

    async def _check(
        self, interaction: discord.Interaction, attachments: list[discord.Attachment]
    ) -> None:
        """``/check`` on an attachment: its C2PA manifest and watermark, through the service."""
        media, name = None, ""
        if attachments:
            first = attachments[0]
            if first.size > self.service.settings.max_upload_bytes:
                too_big = Text("That file is too big for me to check.", error=True)
                await self._answer(interaction, say(too_big))
                return
            media, name = await first.read(), first.filename
        request = dataclasses.replace(
            self._request(interaction, "/check"), media=media, media_name=name
        )
        await self._run(interaction, request)

    def _request(
        self,
        interaction: discord.Interaction,
        text: str = "",
        *,
        image: bytes | None = None,
        reply_to: Quoted | None = None,
    ) -> Request:
        channel_id = str(interaction.channel_id or interaction.user.id)
        # A server, or a group DM (where a user install may bring the commands).
        is_group = interaction.guild_id is not None or bool(interaction.context.private_channel)
        return Request(
            sender=_person(interaction.user),
            chat=Chat(channel_id, is_group=is_group),
            text=text,
            image=image,
            reply_to=reply_to,
            max_bytes=interaction.filesize_limit,
        )

    async def _refused(
        self,
        interaction: discord.Interaction,
        attachment: discord.Attachment,
        right_kind: bool,
        wrong_kind: str,
        max_bytes: int,
        too_big: str,
    ) -> bool:
        """Whether ``attachment`` is refused, having said why: ``wrong_kind`` unless it is of
        the ``right_kind``, else ``too_big`` (its ``{limit}`` in MB) when over ``max_bytes``."""
        if not right_kind:
            await self._answer(interaction, say(Text(wrong_kind, error=True)))
            return True
        if attachment.size > max_bytes:
            too_big = too_big.format(limit=max_bytes / 1e6)
            await self._answer(interaction, say(Text(too_big, error=True)))
            return True
        return False

    async def _run(self, interaction: discord.Interaction, request: Request) -> None:
        await self._answer(interaction, self.service.handle(request))

    async def _answer(
        self, interaction: discord.Interaction, replies: AsyncIterator[Reply]
    ) -> None:
        """Progress edits the deferred response; results are follow-ups; errors are private."""
        try:
            replier = _InteractionReplier(interaction)
            await deliver(replies, replier, f"discord interaction {interaction.id}")
        except (discord.HTTPException, aiohttp.ClientError) as exc:
            log.warning("could not answer interaction %s: %s", interaction.id, exc)

    # -- DMs -----------------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        """A selfie sent in a DM enrols its sender; a video answers their /verify challenge."""
        if message.author.bot or message.guild is not None:
            return
        images = [
            a for a in message.attachments if (a.content_type or "").split(";")[0] in IMAGE_TYPES
        ]
        videos = [a for a in message.attachments if (a.content_type or "").startswith("video/")]
        if videos and not images:  # the answer to a /verify challenge
            kind = (videos[0].content_type or "").split(";")[0]
            if videos[0].size > self.service.settings.verify_max_video_bytes:
                await message.reply("That video is too big: 3 seconds are enough.")
                return
            request = Request(
                sender=_person(message.author),
                chat=Chat(str(message.channel.id)),
                video=await videos[0].read(),
                video_suffix=VIDEO_SUFFIXES.get(kind, ".mp4"),
            )
        elif not images:
            if message.attachments:
                await message.reply("That isn't a picture: send me a photo.")
            return
        else:
            request = Request(
                sender=_person(message.author),
                chat=Chat(str(message.channel.id)),
                image=await images[0].read(),
            )
        try:
            await deliver(
                self.service.handle(request), _DMReplier(message), f"discord DM {message.id}"
            )
        except (discord.HTTPException, aiohttp.ClientError) as exc:
            log.warning("could not answer a DM in %s: %s", message.channel.id, exc)


class _InteractionReplier(Replier):
    """Progress edits the deferred response; results are follow-ups in the same channel or
    thread; an error is shown only to the person who asked."""

    def __init__(self, interaction: discord.Interaction) -> None:
        self.interaction = interaction
        self.said_something = False
        self.closed = False
        self._edited = float("-inf")  # when progress was last shown
        self._pending: str | None = None
        self._later: asyncio.Task[None] | None = None

    async def progress(self, reply: Progress) -> None:
        if self.closed:
            return
        wait = self._edited + PROGRESS_EVERY - time.monotonic()
        if wait <= 0 and self._later is None:
            self._edited = time.monotonic()
            await self.interaction.edit_original_response(content=reply.text)
            return
        self._pending = reply.text  # shown when the time is up: the latest one wins
        if self._later is None:
            self._later = asyncio.create_task(self._show_later(max(wait, 0.0)))

    async def _show_later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        text, self._pending, self._later = self._pending, None, None
        if text is None or self.closed:
            return
        self._edited = time.monotonic()
        try:
            await self.interaction.edit_original_response(content=text)
        except (discord.HTTPException, aiohttp.ClientError) as exc:
            log.warning("could not show progress of interaction %s: %s", self.interaction.id, exc)

    def _progress_over(self) -> None:
        """A result or an error supersedes any progress still waiting to be shown."""
        if self._later is not None:
            self._later.cancel()
        self._later, self._pending = None, None

    async def media(self, reply: Media) -> None:
        self._progress_over()
        file = discord.File(reply.path, filename=reply.path.name)
        await self.interaction.followup.send(content=reply.caption, file=file)
        self.said_something = True
        with contextlib.suppress(discord.HTTPException):
            await self.interaction.edit_original_response(content="Done!")

    async def choices(self, reply: Choices) -> None:
        self._progress_over()
        await self.interaction.followup.send(content=_choices_text(reply)[:2000])
        self.said_something = True

    async def text(self, reply: Text) -> None:
        self._progress_over()
        if reply.error:
            await self.interaction.followup.send(content=reply.text[:2000], ephemeral=True)
            self.closed = True
            with contextlib.suppress(discord.HTTPException):
                await self.interaction.delete_original_response()
            return
        await self.interaction.followup.send(content=reply.text[:2000])
        self.said_something = True

    async def done(self) -> None:
        self._progress_over()
        if not self.said_something and not self.closed:
            await self.interaction.edit_original_response(content="OK.")


class _DMReplier(Replier):
    """Answers a direct message as replies to it."""

    def __init__(self, message: discord.Message) -> None:
        self.message = message

    async def media(self, reply: Media) -> None:
        await self.message.reply(reply.caption, file=discord.File(reply.path))

    async def choices(self, reply: Choices) -> None:
        await self.message.reply(_choices_text(reply)[:2000])

    async def text(self, reply: Text) -> None:
        await self.message.reply(reply.text[:2000])


def _person(user: discord.abc.User | Any) -> Person:
    return Person(PLATFORM, str(user.id), getattr(user, "display_name", "") or user.name)


__all__ = ["DiscordBot"]
