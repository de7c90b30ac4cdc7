"""The job runner interface and its events, shared by every runner."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
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

    def __init__(self, job_id: str, user: str, task: Callable[..., Any], args: tuple[Any, ...]):
        self.id = job_id
        self.user = user
        self.task = task
        self.args = args
        self.attempts = 0
        self.isolated = False  # after its pool broke: rerun alone, so a crash is its own
        self.submitted = time.monotonic()
        self._events: asyncio.Queue[JobEvent] = asyncio.Queue()

    def post(self, event: JobEvent) -> None:
        self._events.put_nowait(event)

    async def events(self) -> AsyncIterator[JobEvent]:
        """Events until the job finishes (the last one is "done" or "failed")."""
        while True:
            event = await self._events.get()
            yield event
            if event.kind in ("done", "failed"):
                return


class JobRunner(Protocol):
    async def submit(self, user: str, task: Callable[..., Any], *args: Any) -> Job: ...

    @property
    def queue_length(self) -> int: ...

    async def close(self) -> None: ...


__all__ = ["Job", "JobEvent", "JobRunner", "RenderFailed", "RunnerBusy"]
