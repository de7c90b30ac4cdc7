"""Memes offered where the bot is not a member: a chat platform's inline mode.

A user types ``@Bot deal-with-it when the build | finally passes`` in any chat; the adapter
asks :meth:`InlineMemes.ask` what that means, offers a render the platform already holds
(:meth:`cached`) or has one made (:meth:`render`), uploads it, and keeps the file id the
platform gave it (:meth:`keep`) per user, template, caption and face. Renders sent in a
chat are kept the same way (:meth:`keep_sent`), so an empty query lists the user's recent
memes and clips (:meth:`recent`). Only renders of the user's own face are offered: a
friend's consent covers their groups, not every chat the user is in.

Previews made while the user types have their own budget (and take a job slot like any
render); a result the user picks (:meth:`chosen`) counts against the daily quota like any
render.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from core.errors import ClipNotFound, FaceCastError, QuotaExceeded
from core.jobs.base import RunnerBusy
from core.render.captions import check_caption
from core.render.tasks import RenderOrder, RenderResult, render_order
from core.service.conversation import PREVIEW_TEMPLATE, Service
from core.service.messages import Media, Person
from core.service.policy import Gate, Ticket, UsageLimits
from core.storage.store import SentFile

PREVIEW = "preview"  # the usage kind of renders made while typing
RECENT = 12  # renders an inline answer lists besides a fresh one


class PreviewLimits(UsageLimits):
    """The previews' own budget: their uses are counted apart from renders."""

    async def reserve(self, user_id: int, kind: str = PREVIEW) -> Ticket:
        return await super().reserve(user_id, kind)


class NoFaceYet(FaceCastError):
    default_message = "Send me a selfie first"


@dataclass(frozen=True, slots=True)
class InlineMeme:
    """A meme an inline query asks for: the template, its captions, whose face."""

    user_id: int
    template: str
    title: str
    top: str | None
    bottom: str | None
    key: str  # keyed hash of template, captions and the face in use

    @property
    def words(self) -> str:
        """The captions as the user typed them ("top | bottom")."""
        if not self.top and not self.bottom:
            return ""
        return f"{self.top} | {self.bottom}" if self.bottom else self.top or ""


def _render_name(path: Path) -> tuple[str, str] | None:
    """("meme", "deal-with-it") from ``meme-deal-with-it-0123456789ab.gif`` (as
    :meth:`Service._render` names its files)."""
    kind, _, rest = path.stem.partition("-")
    target, _, tag = rest.rpartition("-")
    if kind not in ("clip", "meme") or not target or len(tag) != 12:
        return None
    return kind, target


class InlineMemes:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.store = service.store
        settings = service.settings
        self.previews = PreviewLimits(
            service.store,
            settings.inline_previews_per_minute,
            settings.inline_previews_per_day,
            service.state,
        )
        # The same queue and per-user job slots as chat renders, the previews' own budget.
        self.gate = Gate(
            service.state,
            self.previews,
            lambda: service.runner.queue_length,
            settings.max_queue,
            settings.max_jobs_per_user,
            capacity=max(1, settings.max_queue) + settings.workers,
        )
        self._background: set[asyncio.Task[None]] = set()

    async def _user_with_face(self, person: Person) -> tuple[int, int]:
        """The user's id and the id of the face in use; :class:`NoFaceYet` without one."""
        user_id = await self.store.find_user(person.platform, person.id)
        entries = await self.store.faces(user_id) if user_id is not None else []
        if user_id is None or not entries:
            raise NoFaceYet()
        return user_id, next((e for e in entries if e.active), entries[-1]).id

    async def recent(self, person: Person, limit: int = RECENT) -> list[SentFile]:
        """The user's renders the platform holds, newest first. Raises :class:`NoFaceYet`,
        or the quota's refusal when the user may send nothing more (a choice counts)."""
        user_id, _ = await self._user_with_face(person)
        limits = self.service.limits
        await limits.refund(await limits.reserve(user_id))  # a look, not a use
        return await self.store.recent_sent_files(user_id, limit)

    async def ask(self, person: Person, query: str) -> InlineMeme:
        """What ``query`` asks for: ``TEMPLATE top | bottom``, or a caption alone for the
        default template. Raises :class:`NoFaceYet`, or a caption's refusal."""
        user_id, face = await self._user_with_face(person)
        name, _, rest = query.strip().partition(" ")
        try:
            template = self.service.memes.get(name.lower())
            captions = rest.strip()
        except ClipNotFound:
            template = self.service.memes.get(PREVIEW_TEMPLATE)
            captions = query.strip()
        top: str | None = None
        bottom: str | None = None
        if captions:
            first, bar, second = captions.partition("|")
            top = check_caption(first)
            bottom = check_caption(second) if bar else ""
        key = self.store.keyed("inline", template.id, top or "", bottom or "", str(face))
        return InlineMeme(user_id, template.id, template.title, top, bottom, key)

    async def cached(self, meme: InlineMeme) -> SentFile | None:
        return await self.store.sent_file(meme.user_id, key=meme.key)

    async def render(self, meme: InlineMeme, max_bytes: int | None = None) -> Media:
        """Render ``meme`` as an MP4 now (counted as a preview, not as a render)."""
        service, store = self.service, self.store
        admission = await self.gate.admit(meme.user_id)
        try:
            profile = await store.active_profile(meme.user_id)
            if profile is None:
                raise NoFaceYet()
            account = await store.account_of(meme.user_id)
            name = f"meme-{meme.template}-{uuid.uuid4().hex[:12]}.mp4"
            output = store.user_folder(account) / name
            order = RenderOrder(
                kind="meme",
                target=meme.template,
                profile=await asyncio.to_thread(profile.to_bytes),  # compression: off the loop
                output=str(output),
                config=service.render_config,
                top=meme.top,
                bottom=meme.bottom,
                max_bytes=min(service.settings.output_max_bytes, max_bytes or 1 << 62),
            )
            started = time.monotonic()
            await store.record_output(meme.user_id, meme.user_id, output)
            try:
                job = await service.runner.submit(account, render_order, order)
            except RunnerBusy:
                await self.gate.refused_busy()
                raise
            await admission.confirm()
            try:
                async for event in job.events():
                    if event.kind == "failed":
                        service.metrics.renders.labels("meme", "failed").inc()
                        output.unlink(missing_ok=True)
                        raise FaceCastError(event.message)
                    if event.kind == "done":
                        result: RenderResult = event.result
                        service.metrics.renders.labels("meme", "done").inc()
                        service.metrics.render_seconds.labels("meme").observe(
                            time.monotonic() - started
                        )
                        return Media(
                            Path(result.path),
                            "mp4",
                            f"{meme.title} (AI-made)",
                            result.width,
                            result.height,
                            has_audio=result.has_audio,
                        )
            except asyncio.CancelledError:
                # A newer query superseded this one: its render still ends in a worker.
                self._later(self._discard(job.finished, output))
                raise
            raise FaceCastError()  # a job always ends with "done" or "failed"
        finally:
            await admission.release()

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _discard(finished: asyncio.Event, output: Path) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(finished.wait(), 300)
        output.unlink(missing_ok=True)

    async def keep(
        self, meme: InlineMeme, media: Literal["animation", "video", "document"], file_id: str
    ) -> SentFile:
        """Remember the file id the platform gave ``meme``'s render."""
        return await self.store.keep_sent_file(
            meme.user_id,
            meme.key,
            media=media,
            file_id=file_id,
            title=meme.title,
            caption=f"{meme.title} (AI-made)",
            words=meme.words,
        )

    async def keep_sent(self, person: Person, reply: Media, media: str, file_id: str) -> None:
        """Remember a render sent in a chat, if it shows the user's own face."""
        user_id = await self.store.find_user(person.platform, person.id)
        named = _render_name(reply.path)
        if user_id is None or named is None:
            return
        if await self.store.output_people(reply.path) != (user_id, user_id):
            return  # someone else's render, or a friend's face
        kind, target = named
        try:
            library = self.service.clips if kind == "clip" else self.service.memes
            title = library.get(target).title
        except ClipNotFound:
            return
        await self.store.keep_sent_file(
            user_id,
            self.store.keyed("sent", str(reply.path.name)),
            media=media,
            file_id=file_id,
            title=title,
            caption=reply.caption,
        )

    async def chosen(self, person: Person, file: int) -> bool:
        """The user sent one of their renders somewhere: it counts as a render. False when
        the file is not theirs (or forgotten meanwhile)."""
        user_id = await self.store.find_user(person.platform, person.id)
        if user_id is None or not await self.store.touch_sent_file(user_id, file):
            return False
        limits = self.service.limits
        # Sent all the same (Telegram does not ask): at the limit, there is nothing to add.
        with contextlib.suppress(QuotaExceeded):
            await limits.confirm(await limits.reserve(user_id))
        self.service.metrics.messages.labels("inline").inc()
        return True


__all__ = ["PREVIEW", "RECENT", "InlineMeme", "InlineMemes", "NoFaceYet"]
