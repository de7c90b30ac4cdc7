"""The conversation, once for every chat platform.

An adapter turns a platform update into a :class:`Request` (who, in which chat, what text,
which picture, replying to what) and turns the :class:`Reply` objects that
:meth:`Service.handle` yields back into platform messages. Everything else, from enrolment
to consent and quotas, lives here, so a behaviour that differs between platforms is a bug.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, cast

from core.config import Settings
from core.errors import ClipNotFound, FaceCastError, NotAllowed
from core.faces.analyzer import Analyzer
from core.faces.liveness import (
    CHALLENGES,
    INSTRUCTIONS,
    Challenge,
    LivenessLimits,
    LivenessOrder,
    LivenessReport,
    liveness_order,
)
from core.faces.profile import FaceProfile, IdentityEmbedder, enroll
from core.jobs.base import JobRunner, RenderFailed, RunnerBusy
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
from core.service.messages import (
    Choice,
    Choices,
    Media,
    Person,
    Progress,
    Reply,
    Request,
    Text,
    VerifyChallenge,
)
from core.service.policy import (
    Admission,
    Gate,
    PixelBudget,
    ProtectedFaces,
    UsageLimits,
    protected_threshold,
)
from core.service.provenance import check_bytes, check_file, load_marks
from core.service.state import LocalState, SharedState
from core.storage.store import GROUP_MEMES, PendingChallenge, Store

PREVIEW_TEMPLATE = "deal-with-it"
# The commands there are; each is its own metrics label, anything else is "other" (a label
# per typed command would grow /metrics without bound, and not every string encodes).
COMMANDS = frozenset(
    (
        "/start",
        "/help",
        "/clip",
        "/meme",
        "/faces",
        "/face",
        "/forget",
        "/optin",
        "/optout",
        "/verify",
        "/check",
    )
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
/verify - prove it's you with a 3-second video
/optin, /optout - allow or stop others memeing you in groups
/forget - delete everything I have about you, now
/check - as a reply to a picture or video: did this FaceCast make it?
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


NO_FACE_YET = "I don't have your face yet (or it expired): send me a selfie."

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
        state: SharedState | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.runner = runner
        self.analyzer = analyzer
        self.identity = identity
        self.protected = protected or ProtectedFaces(threshold=protected_threshold(settings))
        self.metrics = metrics or Metrics()
        # Limits, job slots and counters several front-ends share (Redis), or this process's.
        self.state = state if state is not None else LocalState()
        self.limits = UsageLimits(
            store, settings.renders_per_minute, settings.daily_quota, self.state
        )
        self.gate = Gate(
            self.state,
            self.limits,
            lambda: runner.queue_length,
            settings.max_queue,
            settings.max_jobs_per_user,
            capacity=max(1, settings.max_queue) + settings.workers,
        )
        self.pixels = PixelBudget(settings.decode_pixels_per_second, settings.max_image_pixels)
        self.clips = ClipLibrary(settings)
        self.memes = MemeLibrary(settings)
        self.metrics.watch_queue(lambda: runner.queue_length)
        self.marks = load_marks(settings)
        # Workers on other machines watermark; the signing key stays here (see _render).
        self.remote = bool(getattr(runner, "remote", False))
        worker_marks = self.marks.unsigned() if self.remote and self.marks else self.marks
        self.render_config = RenderConfig.of(settings, marks=worker_marks)

    async def housekeeping(self, stop: asyncio.Event, every: float = 600.0) -> None:
        """Delete expired faces, outputs and usage now and then, until ``stop`` is set. A
        round under way finishes first: cancelled inside a query, its database connection
        was left checked out, and the pool logged a traceback when it was collected."""
        while not stop.is_set():
            await self.purge()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

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
        elif request.video is not None:
            label = "video"
        elif command:
            label = command if command in COMMANDS else "other"
        else:
            label = "text"
        self.metrics.messages.labels(label).inc()
        try:
            if request.video is not None:
                async for reply in self._check_video(request):
                    yield reply
            elif request.image is not None:
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
            elif command == "/verify":
                yield await self._verify(request)
            elif command in ("/optin", "/optout"):
                yield await self._consent(request, command == "/optin")
            elif command == "/check":
                yield await self._check(request)
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
        admission = await self.gate.admit(user_id)
        try:
            async for reply in self._render(
                request, user_id, profile, "meme", PREVIEW_TEMPLATE, admission=admission
            ):
                yield reply
        finally:
            await admission.release()
        yield self._clip_menu("Now try yourself in a clip:")

    async def _analyse(self, image: bytes) -> FaceProfile:
        """Decode, detect and embed: on the render workers when the runner is remote (a
        broker), else in a thread of this process."""
        if not self.remote:
            return await asyncio.to_thread(self._decode_and_enrol, image)
        order = EnrolOrder(image, EnrolConfig.of(self.settings))
        try:
            job = await self.runner.submit(f"enrol-{uuid.uuid4().hex}", enrol_order, order)
        except RunnerBusy:
            await self.gate.refused_busy()  # counted with the renders' busy answers
            raise
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

    async def _user_id(self, request: Request) -> int:
        """The sender's user id, without reading their face (cheap)."""
        user_id = await self.store.find_user(request.sender.platform, request.sender.id)
        if user_id is None:
            raise FaceCastError(NO_FACE_YET)
        return user_id

    async def _profile_of(self, request: Request) -> tuple[int, FaceProfile]:
        user_id = await self.store.find_user(request.sender.platform, request.sender.id)
        profile = await self.store.active_profile(user_id) if user_id is not None else None
        if user_id is None or profile is None:
            raise FaceCastError(NO_FACE_YET)
        return user_id, profile

    async def _clip(self, request: Request, args: str) -> AsyncIterator[Reply]:
        if not args:
            yield self._clip_menu("Pick a clip:")
            return
        # The cheap checks (queue, jobs in flight, limits) before anything is looked up: a
        # burst hears "busy" at once (the clip library checks its folders' times).
        await self.gate.refuse_if_full()
        words = args.split()
        clip = self.clips.get(words[0])
        if words[-1].lower() == "gif":  # "/clip ID gif": a GIF file instead of a video
            request = replace(request, prefer="gif")
        admission = await self.gate.admit(lambda: self._user_id(request))
        try:
            user_id, profile = await self._profile_of(request)
            async for reply in self._render(
                request, user_id, profile, "clip", clip.id, admission=admission
            ):
                yield reply
        finally:
            await admission.release()

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
        theirs_wanted = quoted is not None and quoted.author.id != request.sender.id
        # The cheap checks (queue, jobs in flight, limits) before any face is read.
        await self.gate.refuse_if_full()

        async def requester_id() -> int:
            if theirs_wanted:  # memeing someone else: the sender needs no face of their own
                return await self.store.user(request.sender.platform, request.sender.id)
            return await self._user_id(request)

        admission = await self.gate.admit(requester_id)
        requester = admission.user_id
        try:
            theirs = None
            if quoted is not None and theirs_wanted:
                theirs = await self._consenting_profile(quoted.author)
                if theirs is None:
                    who = quoted.author.name or "They"
                    yield Text(
                        f"{who} hasn't opted in to being memed (/optin), so here's you instead."
                    )
            if theirs is not None:
                user_id = requester
                subject, profile = theirs
            else:
                user_id, profile = await self._profile_of(request)
                subject = user_id
            async for reply in self._render(
                request,
                user_id,
                profile,
                "meme",
                template.id,
                top=top,
                bottom=bottom,
                subject=subject,
                admission=admission,
            ):
                yield reply
        finally:
            await admission.release()

    async def _consenting_profile(self, person: Person) -> tuple[int, FaceProfile] | None:
        their_id = await self.store.find_user(person.platform, person.id)
        if their_id is None or not await self.store.has_consent(their_id, GROUP_MEMES):
            return None
        face = await self.store.active_face(their_id)
        if face is None or not face.verified:  # a newer face, not proved theirs yet
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
        admission: Admission,
    ) -> AsyncIterator[Reply]:
        """Render for ``user_id`` with ``profile``, the face of ``subject`` (default: the
        user's own), in the place ``admission`` holds (the caller releases it)."""
        fmt = request.prefer or ("mp4" if kind == "clip" else "gif")
        account = await self.store.account_of(user_id)
        subject = user_id if subject is None else subject
        about = [await self.store.account_of(subject)] if subject != user_id else []
        output = self.store.user_folder(account) / f"{kind}-{target}-{uuid.uuid4().hex[:12]}.{fmt}"
        order = RenderOrder(
            kind=kind,
            target=target,
            profile=await asyncio.to_thread(profile.to_bytes),  # compression: off the loop
            output=str(output),
            config=self.render_config,
            top=top,
            bottom=bottom,
            max_bytes=min(self.settings.output_max_bytes, request.max_bytes or 1 << 62),
        )
        started = time.monotonic()
        await self.store.record_output(user_id, subject, output)
        try:
            job = await self.runner.submit(account, render_order, order, about=about)
        except RunnerBusy:
            await self.gate.refused_busy()
            raise
        await admission.confirm()
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
                if self.remote and self.marks is not None:
                    await asyncio.to_thread(self.marks.sign, path)
                made: Literal["mp4", "gif"] = "gif" if path.suffix == ".gif" else "mp4"
                yield Media(
                    path,
                    made,
                    f"{title} (AI-made)",
                    result.width,
                    result.height,
                    has_audio=result.has_audio,
                )

    # -- provenance ------------------------------------------------------------------------

    async def _check(self, request: Request) -> Reply:
        """Whether this deployment made the picture or video in ``request.media``; without
        one, the newest result made for the sender (the web chat's "the last media")."""
        if request.media is None:
            latest = await self._latest_output(request)
            if latest is None:
                return Text(
                    "Reply /check to a picture or video (or send one with /check as its "
                    "caption) and I'll tell you whether this FaceCast made it."
                )
            report = await asyncio.to_thread(check_file, latest, self.marks, self.analyzer)
            return Text(f"Your latest result ({latest.suffix[1:].upper()}):\n{report.describe()}")
        report = await asyncio.to_thread(
            check_bytes,
            request.media,
            request.media_name,
            self.marks,
            self.analyzer,
            max_bytes=self.settings.max_upload_bytes,
        )
        return Text(report.describe())

    async def _latest_output(self, request: Request) -> Path | None:
        user_id = await self.store.find_user(request.sender.platform, request.sender.id)
        if user_id is None:
            return None
        folder = self.store.user_folder(await self.store.account_of(user_id))
        made = [p for p in folder.glob("*") if p.suffix in (".mp4", ".gif") and p.is_file()]
        return max(made, key=lambda p: p.stat().st_mtime, default=None)

    # -- faces, consent, forgetting ------------------------------------------------------------

    async def _faces(self, request: Request) -> Reply:
        user_id = await self.store.find_user(request.sender.platform, request.sender.id)
        entries = await self.store.faces(user_id) if user_id is not None else []
        if not entries:
            return Text("You have no saved faces: send me a selfie.")
        lines = [f"Your faces ({len(entries)} of {self.settings.max_faces_per_user}):"]
        for entry in entries:
            mark = (" (verified)" if entry.verified else "") + (" (in use)" if entry.active else "")
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
        if granted:
            user_id, _ = await self._profile_of(request)
            face = await self.store.active_face(user_id)
            if face is None or not face.verified:
                return Text(
                    "Before others can put your face into memes, prove it's really you: "
                    "send /verify and answer with a 3-second video of yourself.",
                    error=True,
                )
        user_id = await self.store.user(request.sender.platform, request.sender.id)
        await self.store.set_consent(user_id, GROUP_MEMES, granted)
        if granted:
            return Text(
                "OK: people in your groups can now put your face into memes. /optout stops it."
            )
        return Text("OK: nobody else can meme your face any more.")

    # -- verify it's you ---------------------------------------------------------------------

    async def _verify(self, request: Request) -> Reply:
        """Give the user a random liveness challenge for their active face (the same one
        again while it is open, so asking twice does not re-roll it)."""
        user_id, _ = await self._profile_of(request)
        face = await self.store.active_face(user_id)
        assert face is not None
        if face.verified:
            return Text(f"Your face {face.number} is already verified. /optin lets groups meme it.")
        now = datetime.now(UTC)
        pending = await self.store.take_challenge(user_id, keep=True)
        if pending is None or pending.face_id != face.id or pending.expires_at < now + _MARGIN:
            kind = secrets.choice(CHALLENGES)
            expires = now + timedelta(seconds=self.settings.verify_challenge_seconds)
            pending = PendingChallenge(face.id, kind, secrets.token_urlsafe(12), expires)
            await self.store.open_challenge(user_id, face.id, kind, pending.nonce, expires)
        kind = cast(Challenge, pending.kind)
        minutes = max(1, round((pending.expires_at - now).total_seconds() / 60))
        how = VERIFY_HOW.get(request.sender.platform, VERIFY_HOW["web"])
        return VerifyChallenge(
            f"Verify it's you: film your face for 3 seconds and {INSTRUCTIONS[kind]}. "
            f"{how} within {minutes} minute{'s' if minutes > 1 else ''}. The video is "
            "checked and deleted, never kept.",
            challenge=kind,
            instruction=INSTRUCTIONS[kind],
            nonce=pending.nonce,
            seconds=VERIFY_SECONDS,
            expires_in=(pending.expires_at - now).total_seconds(),
        )

    async def _check_video(self, request: Request) -> AsyncIterator[Reply]:
        """Check a video answering the user's open challenge, in a worker; a pass marks
        the face verified."""
        assert request.video is not None
        limit = self.settings.verify_max_video_bytes
        if len(request.video) > limit:
            raise FaceCastError(
                f"That video is too big; 3 seconds (under {limit / 1e6:.0f} MB) do."
            )
        user_id = await self.store.find_user(request.sender.platform, request.sender.id)
        pending = await self.store.take_challenge(user_id) if user_id is not None else None
        if user_id is None or pending is None:
            raise FaceCastError(
                "Send /verify first: I'll tell you what to do in the video."
                if user_id is not None
                else "I don't have your face yet: send me a selfie, then /verify."
            )
        if request.nonce is not None and not hmac.compare_digest(request.nonce, pending.nonce):
            raise FaceCastError("That video answers an older challenge: send /verify again.")
        if pending.expires_at < datetime.now(UTC):
            raise FaceCastError("That challenge expired: send /verify for a new one.")
        profile = await self.store.face_profile(user_id, pending.face_id)
        if profile is None:
            raise FaceCastError("That face is gone: send a selfie, then /verify.")
        await self.limits.confirm(await self.limits.reserve(user_id, "verify"))
        order = LivenessOrder(
            video=request.video,
            suffix=request.video_suffix,
            profile=profile.to_bytes(),
            challenge=cast(Challenge, pending.kind),
            limits=LivenessLimits(
                identity_threshold=self.settings.verify_identity_threshold,
                min_turn_degrees=self.settings.verify_turn_degrees,
                max_bytes=limit,
            ),
        )
        account = await self.store.account_of(user_id)
        job = await self.runner.submit(account, liveness_order, order)
        async for event in job.events():
            if event.kind == "queued":
                yield Progress(job.id, f"You're number {event.position} in the queue…")
            elif event.kind == "progress":
                yield Progress(job.id, "Checking your video…", event.done, event.total)
            elif event.kind == "failed":
                self.metrics.verifications.labels("error").inc()
                yield Text(event.message, error=True)
            else:
                report: LivenessReport = event.result
                log.info(
                    "liveness %s: %s (identity %.2f, turns %.0f/%.0f, blinks %d, depth %.3f, "
                    "%.1f s)",
                    report.challenge,
                    "passed" if report.passed else "failed",
                    report.identity_distance,
                    report.turn_left,
                    report.turn_right,
                    report.blinks,
                    report.depth,
                    report.seconds,
                )
                if report.passed and await self.store.mark_verified(pending.face_id):
                    self.metrics.verifications.labels("passed").inc()
                    yield Text(
                        "Verified: it's really you. Your face is marked as verified; "
                        "/optin now lets people in your groups meme it."
                    )
                else:
                    self.metrics.verifications.labels("failed").inc()
                    yield Text(
                        f"Not verified: {report.reason} Send /verify to try again.", error=True
                    )


# How each platform's user answers a challenge (the web page records by itself).
VERIFY_HOW = {
    "web": "Press Record and follow the camera",
    "telegram": "Answer in a private chat with me: a round video message (or a short video)",
    "discord": "Send it with /verify video: (attach the video)",
}
VERIFY_SECONDS = 3.0
_MARGIN = timedelta(seconds=30)  # a challenge about to expire is not handed out again


__all__ = ["HELP", "VERIFY_HOW", "Service", "help_text"]
