"""The conversation, once for every chat platform.

An adapter turns a platform update into a :class:`Request` (who, in which chat, what text,
which picture, replying to what) and turns the :class:`Reply` objects that
:meth:`Service.handle` yields back into platform messages. Everything else, from enrolment
to consent and quotas, lives here, so a behaviour that differs between platforms is a bug.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Literal

from core.config import Settings
from core.errors import ClipNotFound, FaceCastError, NotAllowed
from core.faces.analyzer import Analyzer
from core.faces.profile import FaceProfile, IdentityEmbedder, enroll
from core.jobs.base import JobRunner, RenderFailed
from core.media.images import image_pixels, load_picture
from core.metrics import Metrics
from core.packs.library import ClipLibrary
from core.render.captions import check_caption
from core.render.memes import MemeLibrary
from core.render.tasks import (
    EnrolConfig,
    EnrolOrder,
    RenderConfig,
    RenderOrder,
    RenderResult,
    enrol_order,
    render_order,
)
from core.service.messages import Choice, Choices, Media, Person, Progress, Reply, Request, Text
from core.service.policy import PixelBudget, ProtectedFaces, UsageLimits, protected_threshold
from core.storage.store import GROUP_MEMES, Store

PREVIEW_TEMPLATE = "deal-with-it"
# The commands there are; each is its own metrics label, anything else is "other" (a label
# per typed command would grow /metrics without bound, and not every string encodes).
COMMANDS = frozenset(
    ("/start", "/help", "/clip", "/meme", "/faces", "/face", "/forget", "/optin", "/optout")
)
# "/face N": N in ASCII digits ("²" and "①" are digits to str.isdigit, not to int), short.
FACE_NUMBER = re.compile(r"[0-9]{1,3}")
log = logging.getLogger(__name__)

HELP = """I put your face into film clips and meme GIFs.

Send a selfie to start (one face, facing the camera, in good light). Then:
/clip - pick a clip; /clip ID renders you into it (/clip ID gif for a GIF file)
/meme TEMPLATE top | bottom - a meme of you
   (as a reply to someone's message: their words, and their face if they said /optin)
/faces - your saved faces; /face N - use face N
/optin, /optout - allow or stop others memeing you in groups
/forget - delete everything I have about you, now
Everything I make is labelled as AI-made."""
# Lines of HELP that only make sense in a group chat (the web chat is one person alone).
GROUP_ONLY = ("(as a reply to someone's message", "/optin, /optout")


def help_text(platform: str, templates: list[str]) -> str:
    """HELP for one platform: the web chat has no groups; every platform lists the memes."""
    lines = HELP.splitlines()
    if platform == "web":
        lines = [line for line in lines if not line.strip().startswith(GROUP_ONLY)]
    lines.insert(-1, "Memes: " + ", ".join(templates))
    return "\n".join(lines)


# -- the service ------------------------------------------------------------------------------


def _parse(text: str) -> tuple[str, str]:
    """('/meme', 'spin top | bottom') from '/meme@FaceCastBot spin top | bottom'."""
    stripped = text.strip()
    if not stripped.startswith("/"):
        return "", stripped
    head, _, rest = stripped.partition(" ")
    return head.split("@", 1)[0].lower(), rest.strip()


class Service:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        runner: JobRunner,
        analyzer: Analyzer,
        *,
        protected: ProtectedFaces | None = None,
        metrics: Metrics | None = None,
        identity: IdentityEmbedder | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.runner = runner
        self.analyzer = analyzer
        self.identity = identity
        self.protected = protected or ProtectedFaces(threshold=protected_threshold(settings))
        self.metrics = metrics or Metrics()
        self.limits = UsageLimits(store, settings.renders_per_minute, settings.daily_quota)
        self.pixels = PixelBudget(settings.decode_pixels_per_second, settings.max_image_pixels)
        self.clips = ClipLibrary(settings)
        self.memes = MemeLibrary(settings)
        self.metrics.watch_queue(lambda: runner.queue_length)
        self.render_config = RenderConfig.of(settings)

    async def housekeeping(self, every: float = 600.0) -> None:
        """Delete expired faces, outputs and usage now and then, while the service runs."""
        while True:
            await self.purge()
            await asyncio.sleep(every)

    async def purge(self) -> None:
        """One round of housekeeping."""
        purged = await self.store.purge_expired()
        if purged:
            log.info("deleted %d expired face(s)", purged)
        outputs = await self.store.purge_outputs()
        if outputs:
            log.info("deleted %d expired output(s)", outputs)

    async def handle(self, request: Request) -> AsyncIterator[Reply]:
        """Everything the bot says in answer to one request, in order."""
        command, args = _parse(request.text)
        if request.image is not None:
            label = "photo"
        elif command:
            label = command if command in COMMANDS else "other"
        else:
            label = "text"
        self.metrics.messages.labels(label).inc()
        try:
            if request.image is not None:
                async for reply in self._enrol(request):
                    yield reply
            elif command in ("/start", "/help"):
                templates = [t.id for t in self.memes.all()]
                yield Text(help_text(request.sender.platform, templates))
            elif command == "/clip":
                async for reply in self._clip(request, args):
                    yield reply
            elif command == "/meme":
                async for reply in self._meme(request, args):
                    yield reply
            elif command == "/faces":
                yield await self._faces(request)
            elif command == "/face":
                yield await self._choose_face(request, args)
            elif command == "/forget":
                yield await self._forget(request)
            elif command in ("/optin", "/optout"):
                yield await self._consent(request, command == "/optin")
            elif command:
                shown = command if len(command) <= 32 and command.isprintable() else "that command"
                yield Text(f"I don't know {shown}. Send /help to see what I can do.")
            elif not request.chat.is_group:
                yield Text("Send me a selfie, or /help to see what I can do.")
        except FaceCastError as exc:
            self.metrics.errors.labels(type(exc).__name__).inc()
            yield Text(exc.message, error=True)

    # -- enrolment ------------------------------------------------------------------------

    async def _enrol(self, request: Request) -> AsyncIterator[Reply]:
        assert request.image is not None
        if len(request.image) > self.settings.max_upload_bytes:
            limit = self.settings.max_upload_bytes / 1e6
            raise FaceCastError(f"That file is too big; send a photo under {limit:.0f} MB.")
        # Decoding happens off the event loop (a 6000x6000 PNG takes a second), and no
        # user may make the server decode more than their share of pixels a second.
        image = request.image
        who = f"{request.sender.platform}:{request.sender.id}"
        self.pixels.take(who, await asyncio.to_thread(image_pixels, image))
        try:
            profile = await self._analyse(image)
        except FaceCastError:
            self.metrics.enrolments.labels("refused").inc()
            raise
        if self.protected.matches(profile.embedding):
            self.metrics.enrolments.labels("protected").inc()
            raise NotAllowed(
                "I can't use that photo. Please send a selfie of yourself, not of someone else."
            )
        user_id = await self.store.user(request.sender.platform, request.sender.id)
        entry, dropped = await self.store.add_face(user_id, profile)
        self.metrics.enrolments.labels("enrolled").inc()
        lines = [f"Got your face (face {entry.number}). Here's a first taste:"]
        if dropped:
            lines.append(
                f"You can keep {self.settings.max_faces_per_user} faces, so I dropped your oldest."
            )
        lines.extend(profile.notes)
        yield Text("\n".join(lines))
        async for reply in self._render(request, user_id, profile, "meme", PREVIEW_TEMPLATE):
            yield reply
        yield self._clip_menu("Now try yourself in a clip:")

    async def _analyse(self, image: bytes) -> FaceProfile:
        """Decode, detect and embed: on the render workers when the runner is remote (a
        broker), else in a thread of this process."""
        if not getattr(self.runner, "remote", False):
            return await asyncio.to_thread(self._decode_and_enrol, image)
        order = EnrolOrder(image, EnrolConfig.of(self.settings))
        job = await self.runner.submit(f"enrol-{uuid.uuid4().hex}", enrol_order, order)
        async for event in job.events():
            if event.kind == "failed":
                raise FaceCastError(event.message)
            if event.kind == "done":
                return FaceProfile.from_bytes(event.result)
        raise FaceCastError(RenderFailed.default_message)

    def _decode_and_enrol(self, image: bytes) -> FaceProfile:
        picture = load_picture(image, self.settings, selfie=True)
        return enroll(picture, self.analyzer, self.settings, identity=self.identity)

    # -- renders --------------------------------------------------------------------------------

    def _clip_menu(self, text: str) -> Choices:
        return Choices(
            text, tuple(Choice(clip.title, f"/clip {clip.id}") for clip in self.clips.all())
        )

    async def _profile_of(self, request: Request) -> tuple[int, FaceProfile]:
        user_id = await self.store.find_user(request.sender.platform, request.sender.id)
        profile = await self.store.active_profile(user_id) if user_id is not None else None
        if user_id is None or profile is None:
            raise FaceCastError("I don't have your face yet (or it expired): send me a selfie.")
        return user_id, profile

    async def _clip(self, request: Request, args: str) -> AsyncIterator[Reply]:
        if not args:
            yield self._clip_menu("Pick a clip:")
            return
        words = args.split()
        clip = self.clips.get(words[0])
        if words[-1].lower() == "gif":  # "/clip ID gif": a GIF file instead of a video
            request = replace(request, prefer="gif")
        user_id, profile = await self._profile_of(request)
        async for reply in self._render(request, user_id, profile, "clip", clip.id):
            yield reply

    async def _meme(self, request: Request, args: str) -> AsyncIterator[Reply]:
        if not args and request.reply_to is None:
            yield Choices(
                "Pick a meme (add your own text: /meme ID top | bottom):",
                tuple(Choice(t.title, f"/meme {t.id}") for t in self.memes.all()),
            )
            return
        name, _, captions = args.partition(" ")
        try:
            template = self.memes.get(name) if name else self.memes.get(PREVIEW_TEMPLATE)
        except ClipNotFound as exc:
            if request.reply_to is None:
                known = ", ".join(t.id for t in self.memes.all())
                raise ClipNotFound(f"{exc.message} The memes are: {known}.") from exc
            # "/meme when it works" as a reply: all of it is caption.
            template, captions = self.memes.get(PREVIEW_TEMPLATE), args
        top: str | None = None
        bottom: str | None = None
        if captions:
            first, bar, second = captions.partition("|")
            top, bottom = first.strip(), (second.strip() if bar else "")
        elif request.reply_to is not None and request.reply_to.text.strip():
            top, bottom = "", request.reply_to.text.strip()
        for caption in (top, bottom):
            if caption:
                check_caption(caption)
        quoted = request.reply_to
        theirs = None
        if quoted is not None and quoted.author.id != request.sender.id:
            theirs = await self._consenting_profile(quoted.author)
            if theirs is None:
                who = quoted.author.name or "They"
                yield Text(f"{who} hasn't opted in to being memed (/optin), so here's you instead.")
        if theirs is not None:
            user_id = await self.store.user(request.sender.platform, request.sender.id)
            subject, profile = theirs
        else:
            user_id, profile = await self._profile_of(request)
            subject = user_id
        async for reply in self._render(
            request, user_id, profile, "meme", template.id, top=top, bottom=bottom, subject=subject
        ):
            yield reply

    async def _consenting_profile(self, person: Person) -> tuple[int, FaceProfile] | None:
        their_id = await self.store.find_user(person.platform, person.id)
        if their_id is None or not await self.store.has_consent(their_id, GROUP_MEMES):
            return None
        profile = await self.store.active_profile(their_id)
        return (their_id, profile) if profile is not None else None

    async def _render(
        self,
        request: Request,
        user_id: int,
        profile: FaceProfile,
        kind: Literal["clip", "meme"],
        target: str,
        *,
        top: str | None = None,
        bottom: str | None = None,
        subject: int | None = None,
    ) -> AsyncIterator[Reply]:
        """Render for ``user_id`` with ``profile``, the face of ``subject`` (default: the
        user's own)."""
        await self.limits.check(user_id)
        fmt = request.prefer or ("mp4" if kind == "clip" else "gif")
        account = await self.store.account_of(user_id)
        subject = user_id if subject is None else subject
        about = [await self.store.account_of(subject)] if subject != user_id else []
        output = self.store.user_folder(account) / f"{kind}-{target}-{uuid.uuid4().hex[:12]}.{fmt}"
        order = RenderOrder(
            kind=kind,
            target=target,
            profile=profile.to_bytes(),
            output=str(output),
            config=self.render_config,
            top=top,
            bottom=bottom,
            max_bytes=min(self.settings.output_max_bytes, request.max_bytes or 1 << 62),
        )
        started = time.monotonic()
        await self.store.record_output(user_id, subject, output)
        job = await self.runner.submit(account, render_order, order, about=about)
        await self.limits.record(user_id)
        async for event in job.events():
            if event.kind == "queued":
                yield Progress(job.id, f"You're number {event.position} in the queue…")
            elif event.kind == "progress":
                share = f" {100 * event.done // event.total}%" if event.total else ""
                yield Progress(job.id, f"Rendering{share}…", event.done, event.total)
            elif event.kind == "failed":
                self.metrics.renders.labels(kind, "failed").inc()
                for made_file in (output, output.with_suffix(".mp4")):  # cancelled after all
                    made_file.unlink(missing_ok=True)
                yield Text(event.message, error=True)
            else:
                result: RenderResult = event.result
                self.metrics.renders.labels(kind, "done").inc()
                self.metrics.render_seconds.labels(kind).observe(time.monotonic() - started)
                title = (
                    self.clips.get(target).title if kind == "clip" else self.memes.get(target).title
                )
                path = Path(result.path)  # a GIF that could not fit comes back as MP4
                made: Literal["mp4", "gif"] = "gif" if path.suffix == ".gif" else "mp4"
                yield Media(path, made, f"{title} (AI-made)", result.width, result.height)

    # -- faces, consent, forgetting ------------------------------------------------------------

    async def _faces(self, request: Request) -> Reply:
        user_id = await self.store.find_user(request.sender.platform, request.sender.id)
        entries = await self.store.faces(user_id) if user_id is not None else []
        if not entries:
            return Text("You have no saved faces: send me a selfie.")
        lines = [f"Your faces ({len(entries)} of {self.settings.max_faces_per_user}):"]
        for entry in entries:
            mark = " (in use)" if entry.active else ""
            lines.append(
                f"{entry.number}. saved {entry.created_at:%Y-%m-%d}, "
                f"kept until {entry.expires_at:%Y-%m-%d}{mark}"
            )
        return Choices(
            "\n".join(lines),
            tuple(Choice(f"Use face {e.number}", f"/face {e.number}") for e in entries),
        )

    async def _choose_face(self, request: Request, args: str) -> Reply:
        number = args.strip()
        if not FACE_NUMBER.fullmatch(number):
            return Text("Which face? Send /face N, with N from /faces.")
        user_id = await self.store.find_user(request.sender.platform, request.sender.id)
        if user_id is None:
            return Text("You have no saved faces: send me a selfie.")
        entry = await self.store.activate(user_id, int(number))
        return Text(f"Using face {entry.number} from now on.")

    async def _forget(self, request: Request) -> Reply:
        user_id = await self.store.find_user(request.sender.platform, request.sender.id)
        if user_id is not None:
            # Renders for or of them stop first: none may appear after "Done".
            await self.runner.cancel(await self.store.account_of(user_id))
            await self.store.forget(user_id)
        return Text(
            "Done: I've deleted your faces, your settings and everything I made for you. "
            "Send a selfie any time to start again."
        )

    async def _consent(self, request: Request, granted: bool) -> Reply:
        user_id = await self.store.user(request.sender.platform, request.sender.id)
        await self.store.set_consent(user_id, GROUP_MEMES, granted)
        if granted:
            return Text(
                "OK: people in your groups can now put your face into memes. /optout stops it."
            )
        return Text("OK: nobody else can meme your face any more.")


__all__ = ["HELP", "Service", "help_text"]
