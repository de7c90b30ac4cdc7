"""Who may do what: protected identities and per-user usage limits."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from core.config import Settings
from core.errors import FaceCastError, QuotaExceeded
from core.faces.analyzer import Analyzer, Embedding, identity_distance
from core.jobs.base import RunnerBusy
from core.kinds import EngineName
from core.media.images import load_picture
from core.service.state import SharedState, Window

# -- protected identities -----------------------------------------------------------------------

# Euclidean distance under which two identity vectors are one person, per engine: dlib's
# 128-D descriptors (its own rule: 0.6, stricter here) and ArcFace's unit vectors, where
# distance d means cosine similarity 1 - d^2/2 (1.0: cosine 0.5).
PROTECTED_THRESHOLDS: dict[EngineName, float] = {"classic": 0.5, "insightface": 1.0}


def protected_threshold(settings: Settings) -> float:
    """``FACECAST_PROTECTED_THRESHOLD``, or the engine's own."""
    if settings.protected_threshold is not None:
        return settings.protected_threshold
    return PROTECTED_THRESHOLDS[settings.engine]


@dataclass(slots=True)
class ProtectedFaces:
    """Reference embeddings of people who may not be enrolled (public figures, say)."""

    embeddings: list[Embedding] = field(default_factory=list)
    threshold: float = 0.5

    @classmethod
    def load(cls, settings: Settings, analyzer: Analyzer) -> ProtectedFaces:
        found: list[Embedding] = []
        folder = settings.protected_dir
        if folder is not None and folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() not in (".jpg", ".jpeg", ".png", ".webp"):
                    continue
                try:
                    picture = load_picture(path, settings)
                except FaceCastError:
                    continue
                faces = analyzer.detect(picture)
                if faces:
                    face = max(faces, key=lambda f: f.quality.eye_distance)
                    found.append(analyzer.embedding(picture, face.landmarks))
        return cls(found, protected_threshold(settings))

    def matches(self, embedding: Embedding | None) -> bool:
        if embedding is None:
            return False
        return any(
            identity_distance(embedding, known) < self.threshold for known in self.embeddings
        )


# -- limits ------------------------------------------------------------------------------


class PixelBudget:
    """Per-user cap on decoded pixels a second (a token bucket in this process): one
    image as large as allowed goes through at once, a stream of them is slowed down."""

    def __init__(self, per_second: float, burst: float) -> None:
        self.per_second = per_second
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # who: (pixels left, when)

    def take(self, who: str, pixels: int) -> None:
        now = time.monotonic()
        left, then = self._buckets.get(who, (self.burst, now))
        left = min(self.burst, left + (now - then) * self.per_second)
        if pixels > left:
            self._buckets[who] = (left, now)
            wait = max(1, math.ceil((pixels - left) / self.per_second))
            raise QuotaExceeded(
                f"That's a lot of pixels in a short time: try again in {wait} seconds."
            )
        self._buckets[who] = (left - pixels, now)
        if len(self._buckets) > 10_000:  # forget the full ones
            full = [k for k, (v, t) in self._buckets.items() if v >= self.burst]
            for key in full:
                del self._buckets[key]


class UsageLog(Protocol):
    async def record_usage(self, user_id: int, kind: str) -> None: ...

    async def usage_count(self, user_id: int, kind: str, since: datetime) -> int: ...


DAY = 24 * 3600.0
OVER_DAILY_QUOTA = "You've made {} things today, the daily limit. Come back tomorrow!"
OVER_RATE = "Slow down a little: try again in a minute."


@dataclass(slots=True)
class Ticket:
    """One use reserved by :meth:`UsageLimits.reserve`: confirmed once the job is queued,
    refunded if it never was."""

    user_id: int
    kind: str
    token: str
    settled: bool = False


class UsageLimits:
    """Per-user rate limit (renders a minute) and daily quota, reserved in one atomic step:
    fifteen concurrent requests against a limit of six get six places, never more.

    With shared state (Redis) the windows live there, for every front-end. Without it they
    are counted in the store (so they hold across restarts), and a per-user lock makes the
    count and the reservation one step in this process; a reservation is held in memory until
    the job is queued, then recorded in the store."""

    def __init__(
        self, log_: UsageLog, per_minute: int, per_day: int, state: SharedState | None = None
    ) -> None:
        self.log = log_
        self.per_minute = per_minute
        self.per_day = per_day
        self.state = state if state is not None and state.shared else None
        # One lock per user while anyone holds it (weak: no bookkeeping to forget users).
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()
        self._pending: dict[int, set[str]] = {}  # user -> tokens reserved, not yet recorded

    def _windows(self) -> tuple[Window, Window]:
        return Window(DAY, self.per_day), Window(60.0, self.per_minute)

    async def reserve(self, user_id: int, kind: str = "render") -> Ticket:
        """Take one use now, or raise :class:`QuotaExceeded` and take nothing."""
        ticket = Ticket(user_id, kind, uuid.uuid4().hex)
        if self.state is not None:
            full = await self.state.take(f"usage:{kind}:{user_id}", ticket.token, self._windows())
            if full is not None:
                raise QuotaExceeded(
                    OVER_DAILY_QUOTA.format(self.per_day) if full.seconds == DAY else OVER_RATE
                )
            return ticket
        async with self._lock(user_id):
            pending = self._pending.setdefault(user_id, set())
            await self._check(user_id, kind, len(pending))
            pending.add(ticket.token)
        return ticket

    def _lock(self, user_id: int) -> asyncio.Lock:
        lock = self._locks.get(user_id)
        if lock is None:
            lock = self._locks[user_id] = asyncio.Lock()
        return lock

    async def confirm(self, ticket: Ticket) -> None:
        """The job was queued: the use counts for good."""
        if ticket.settled:
            return
        ticket.settled = True
        if self.state is None:
            # Recorded and no longer pending in one step for a concurrent reserve: between
            # the two it counted twice, and a user one short of the quota was refused (three
            # inline results chosen at once: the third was not counted).
            async with self._lock(ticket.user_id):
                await self.log.record_usage(ticket.user_id, ticket.kind)
                self._forget_pending(ticket)

    async def refund(self, ticket: Ticket) -> None:
        """The job was never queued (busy, say): the use does not count."""
        if ticket.settled:
            return
        ticket.settled = True
        if self.state is not None:
            await self.state.give_back(f"usage:{ticket.kind}:{ticket.user_id}", ticket.token)
        else:
            self._forget_pending(ticket)

    def _forget_pending(self, ticket: Ticket) -> None:
        pending = self._pending.get(ticket.user_id)
        if pending is not None:
            pending.discard(ticket.token)
            if not pending:
                del self._pending[ticket.user_id]

    async def _check(self, user_id: int, kind: str, pending: int) -> None:
        now = datetime.now(UTC)
        day = await self.log.usage_count(user_id, kind, now - timedelta(days=1))
        if day + pending >= self.per_day:
            raise QuotaExceeded(OVER_DAILY_QUOTA.format(self.per_day))
        minute = await self.log.usage_count(user_id, kind, now - timedelta(minutes=1))
        if minute + pending >= self.per_minute:
            raise QuotaExceeded(OVER_RATE)


# -- admission: the cheap checks a render passes before any heavy work -----------------------

# A job slot lapses after this long even if its front-end died without giving it back.
SLOT_TTL = 15 * 60.0
ALL_JOBS = "jobs"
BUSY_REFUSALS = "busy_refusals"


class TooManyRenders(FaceCastError):
    """The user already has as many renders in flight as one person may."""


@dataclass(slots=True)
class Admission:
    """A render's place: its user's job slot and one reserved use, until :meth:`release`."""

    gate: Gate
    user_id: int
    token: str
    ticket: Ticket
    released: bool = False

    async def confirm(self) -> None:
        """The job is queued: the use counts."""
        await self.gate.limits.confirm(self.ticket)

    async def release(self) -> None:
        """The job ended (or never started): free the slot, refund an unconfirmed use. Safe
        to call twice."""
        if self.released:
            return
        self.released = True
        await self.gate.limits.refund(self.ticket)
        await self.gate.state.leave(f"{ALL_JOBS}:{self.user_id}", self.token)
        await self.gate.state.leave(ALL_JOBS, self.token)


class Gate:
    """Who may start a render now: the queue is not full, the user has fewer than
    ``per_user`` jobs in flight (so one burst cannot starve everyone else), and is within
    the rate limit and daily quota. Each check is cheap (no face is read), so a refusal
    comes at once; the slot and the use are taken atomically, in shared state when there
    is one."""

    def __init__(
        self,
        state: SharedState,
        limits: UsageLimits,
        queue_length: Callable[[], int],
        max_queue: int,
        per_user: int,
        capacity: int | None = None,
    ) -> None:
        self.state = state
        self.limits = limits
        self.queue_length = queue_length
        self.max_queue = max_queue
        self.per_user = per_user
        # Jobs admitted and not yet ended, all front-ends together: the queue fills only when
        # a job is submitted, after its face is read, so a burst arriving at once would all
        # pass the queue check and wait for that read before hearing "busy".
        self.capacity = capacity if capacity is not None else 1 << 30

    async def refuse_if_full(self) -> None:
        """:class:`RunnerBusy` if the queue is full: the first check, needing nothing else."""
        # A waiting job means every worker is busy; max_queue 0 still lets idle workers work.
        # Jobs admitted but still being prepared count too (see ``capacity``).
        if self.queue_length() >= max(1, self.max_queue) or (
            self.capacity < 1 << 30 and await self.state.held(ALL_JOBS) >= self.capacity
        ):
            await self.refused_busy()
            raise RunnerBusy()

    async def admit(self, user: int | Callable[[], Awaitable[int]]) -> Admission:
        """A place for one render of ``user`` (an id, or how to look it up: looked up only
        once a place is held, so a burst hears "busy" without a query each)."""
        await self.refuse_if_full()
        token = uuid.uuid4().hex
        if await self.state.enter(ALL_JOBS, token, self.capacity, SLOT_TTL) >= self.capacity:
            await self.refused_busy()
            raise RunnerBusy()
        user_id = user if isinstance(user, int) else -1
        try:
            if not isinstance(user, int):
                user_id = await user()
            held = await self.state.enter(f"{ALL_JOBS}:{user_id}", token, self.per_user, SLOT_TTL)
            if held >= self.per_user:
                renders = "render" if held == 1 else "renders"
                raise TooManyRenders(
                    f"You already have {held} {renders} on the way: I'll take another one as "
                    "soon as one of them is done."
                )
            ticket = await self.limits.reserve(user_id)
        except BaseException:
            await self.state.leave(f"{ALL_JOBS}:{user_id}", token)
            await self.state.leave(ALL_JOBS, token)
            raise
        return Admission(self, user_id, token, ticket)

    async def refused_busy(self) -> None:
        """Count a "busy" answer (in shared state: all front-ends' refusals together)."""
        await self.state.add(BUSY_REFUSALS)

    async def in_flight(self) -> int:
        """Jobs admitted and not yet ended, on every front-end that shares the state."""
        return await self.state.held(ALL_JOBS)


__all__ = [
    "PROTECTED_THRESHOLDS",
    "Admission",
    "Gate",
    "PixelBudget",
    "ProtectedFaces",
    "Ticket",
    "TooManyRenders",
    "UsageLimits",
    "protected_threshold",
]
