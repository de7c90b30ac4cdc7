"""The job runner interface and its events, shared by every runner."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

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


async def wait_finished(jobs: Iterable[Job], seconds: float) -> None:
    """Wait until every one of ``jobs`` has ended, or ``seconds`` have passed."""
    ends = [asyncio.create_task(job.finished.wait()) for job in jobs]
    if not ends:
        return
    _, late = await asyncio.wait(ends, timeout=seconds)
    for end in late:
        end.cancel()


CANCELLED = "Cancelled: you asked me to forget you."


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

    async def close(self) -> None: ...


# -- what a runner tells operators (/healthz, /metrics) ------------------------------------


@dataclass(frozen=True, slots=True)
class RunnerStats:
    """A runner's state for operators. A runner fills in what it knows; None: unknown."""

    queued: int  # jobs waiting for a worker (a broker: its queue depth)
    running: int  # jobs a worker is on now
    workers: int | None = None  # how many there should be (local: the pool size)
    workers_alive: int | None = None  # how many answer now (local: live processes)
    latency_p50: float | None = None  # seconds from submit to end, recent jobs
    latency_p95: float | None = None
    finished: int = 0  # jobs ended (done or failed) since the runner started (a broker:
    # every front-end's, as its Redis has counted them)


class Latencies:
    """Submit-to-end times of the last ``keep`` jobs, for percentiles."""

    def __init__(self, keep: int = 500) -> None:
        self._seconds: deque[float] = deque(maxlen=keep)
        self.count = 0

    def add(self, seconds: float) -> None:
        self._seconds.append(seconds)
        self.count += 1

    @classmethod
    def of(cls, seconds: Iterable[float], keep: int = 500) -> Latencies:
        """Times measured elsewhere (a broker keeps its recent jobs' in Redis)."""
        made = cls(keep)
        for each in seconds:
            made.add(each)
        return made

    def percentile(self, share: float) -> float | None:
        """The ``share`` (0..1) percentile, nearest rank; None before any job ended."""
        if not self._seconds:
            return None
        ordered = sorted(self._seconds)
        return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


@runtime_checkable
class ReportsStats(Protocol):
    """The optional part of :class:`JobRunner`: a runner that can say more than its queue
    length (the local pool and the Taskiq runner do)."""

    async def stats(self) -> RunnerStats: ...


async def runner_stats(runner: JobRunner) -> RunnerStats:
    """What ``runner`` reports, or at least its queue length."""
    if isinstance(runner, ReportsStats):
        return await runner.stats()
    return RunnerStats(queued=runner.queue_length, running=0)


__all__ = [
    "CANCELLED",
    "Job",
    "JobEvent",
    "JobRunner",
    "Latencies",
    "RenderFailed",
    "ReportsStats",
    "RunnerBusy",
    "RunnerStats",
    "runner_stats",
    "wait_finished",
]
