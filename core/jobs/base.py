"""The job runner interface and its events, shared by every runner."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from core.errors import FaceCastError


class RunnerBusy(FaceCastError):
    default_message = "I'm busy with a lot of renders right now: try again in a minute."


class RenderFailed(FaceCastError):
    default_message = "Something went wrong while making that; please try again."


@dataclass(frozen=True, slots=True)
class JobEvent:
    kind: Literal["queued", "progress", "done", "failed"]
    position: int = 0  # "queued": 1 = next to start
    done: int = 0  # "progress"
    total: int = 0
    result: Any = None  # "done"
    message: str = ""  # "failed": what to tell the user


class Job:
    """One render, as its user follows it."""

    def __init__(
        self,
        job_id: str,
        user: str,
        task: Callable[..., Any],
        args: tuple[Any, ...],
        about: Iterable[str] = (),
    ):
        self.id = job_id
        self.user = user
        self.people = frozenset((user, *about))  # whose /forget cancels it
        self.task = task
        self.args = args
        self.attempts = 0
        self.cancelled = False
        self.finished = asyncio.Event()
        self.isolated = False  # after its pool broke: rerun alone, so a crash is its own
        self.submitted = time.monotonic()
        self._events: asyncio.Queue[JobEvent] = asyncio.Queue()

    def post(self, event: JobEvent) -> None:
        if event.kind in ("done", "failed"):
            if self.finished.is_set():
                return  # one ending only (a cancelled job still finishes in its worker)
            self.finished.set()
        self._events.put_nowait(event)

    async def events(self) -> AsyncIterator[JobEvent]:
        """Events until the job finishes (the last one is "done" or "failed")."""
        while True:
            event = await self._events.get()
            yield event
            if event.kind in ("done", "failed"):
                return


CANCELLED = "Cancelled: you asked me to forget you."


@dataclass(frozen=True, slots=True)
class RunnerStats:
    """What an operator watches: jobs waiting and running (all front-ends together, for a
    broker), workers alive, and the latency (submit to end, seconds) of recent jobs."""

    queue_depth: int
    running: int
    workers_alive: int
    latency_p50: float | None
    latency_p95: float | None

    @classmethod
    def of(
        cls, queue_depth: int, running: int, workers_alive: int, latencies: Iterable[float]
    ) -> RunnerStats:
        ordered = sorted(latencies)
        if not ordered:
            return cls(queue_depth, running, workers_alive, None, None)
        p50 = ordered[(len(ordered) - 1) // 2]
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        return cls(queue_depth, running, workers_alive, p50, p95)


class JobRunner(Protocol):
    async def submit(
        self, user: str, task: Callable[..., Any], *args: Any, about: Iterable[str] = ()
    ) -> Job: ...

    async def cancel(self, person: str) -> None:
        """End every queued or running job for or about ``person`` ("failed", with
        :data:`CANCELLED`); returns once none of them runs any more."""
        ...

    @property
    def queue_length(self) -> int: ...

    async def stats(self) -> RunnerStats: ...

    async def in_flight(self, user: str) -> int:
        """How many of ``user``'s jobs are queued or running (a per-user cap reads it)."""
        ...

    async def close(self) -> None: ...


__all__ = [
    "CANCELLED",
    "Job",
    "JobEvent",
    "JobRunner",
    "RenderFailed",
    "RunnerBusy",
    "RunnerStats",
]
