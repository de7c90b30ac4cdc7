"""Running renders off the event loop: a bounded queue in front of a process pool.

:class:`LocalJobRunner` keeps at most ``workers`` renders running in worker processes and at
most ``max_queue`` waiting; beyond that :meth:`submit` answers :class:`RunnerBusy` at once
instead of letting the queue grow. Every job streams events to its user: its place in the
queue as it moves up, progress while it renders, then the result or a friendly failure. A
render that kills its worker process takes the pool down with it, so every job of that pool
is retried once, each alone in a process of its own: a job that was merely next to the
culprit succeeds, the culprit crashes again and is reported as failed, and the runner keeps
serving on a fresh pool.

:class:`JobRunner` is the interface a distributed queue (Taskiq on Redis) can implement
later without the service noticing. :class:`UsageLimits` applies the per-user rate limit and
daily quota.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import multiprocessing
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from core import progress
from core.errors import FaceCastError
from core.jobs.base import (
    CANCELLED,
    Job,
    JobEvent,
    Latencies,
    RenderFailed,
    RunnerBusy,
    RunnerStats,
    wait_finished,
)

log = logging.getLogger(__name__)

SHUTTING_DOWN = "The server is shutting down; try again in a minute."


# -- the worker side ------------------------------------------------------------------

_progress_queue: Any = None


def _init_worker(progress: Any) -> None:
    global _progress_queue
    _progress_queue = progress
    # Progress is droppable; a worker must never wait at exit to flush it. The queue's
    # write lock is shared by every worker, and one killed while writing (a crash, or
    # close() stopping a render) never releases it: the others then waited forever at
    # exit, and so did the pool's shutdown (a test hung under xdist).
    progress.cancel_join_thread()


def _send_progress(job_id: str, done: int, total: int) -> None:
    if _progress_queue is not None:
        _progress_queue.put_nowait((job_id, done, total))


def _run(job_id: str, task: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    progress.install(functools.partial(_send_progress, job_id))
    try:
        return task(*args)
    finally:
        progress.install(None)


# -- the runner -------------------------------------------------------------------------


class LocalJobRunner:
    def __init__(self, workers: int = 2, max_queue: int = 20) -> None:
        self.workers = workers
        self.max_queue = max_queue
        self._context = multiprocessing.get_context("spawn")  # no fork of a threaded loop
        self._progress: Any = self._context.Queue()
        self._pool = self._new_pool()
        self._waiting: deque[Job] = deque()
        self._running: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._latencies = Latencies()
        self._reader = threading.Thread(target=self._read_progress, daemon=True)
        self._reader.start()

    def _new_pool(self, workers: int | None = None) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=workers or self.workers,
            mp_context=self._context,
            initializer=_init_worker,
            initargs=(self._progress,),
        )

    @property
    def queue_length(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    async def stats(self) -> RunnerStats:
        processes = (getattr(self._pool, "_processes", None) or {}).values()
        return RunnerStats(
            queued=len(self._waiting),
            running=len(self._running),
            workers=self.workers,
            workers_alive=sum(1 for process in list(processes) if process.is_alive()),
            latency_p50=self._latencies.percentile(0.5),
            latency_p95=self._latencies.percentile(0.95),
            finished=self._latencies.count,
        )

    async def submit(
        self, user: str, task: Callable[..., Any], *args: Any, about: Iterable[str] = ()
    ) -> Job:
        if self._closed:
            raise RunnerBusy(SHUTTING_DOWN)
        if len(self._waiting) >= self.max_queue and len(self._running) >= self.workers:
            raise RunnerBusy()
        job = Job(f"job-{next(self._ids)}", user, task, args, about)
        self._waiting.append(job)
        self._pump()
        if job in self._waiting:
            job.post(JobEvent("queued", position=self._waiting.index(job) + 1))
        return job

    def _pump(self) -> None:
        moved = False
        while self._waiting and len(self._running) < self.workers:
            job = self._waiting.popleft()
            self._start(job)
            moved = True
        if moved:
            for position, job in enumerate(self._waiting, start=1):
                job.post(JobEvent("queued", position=position))

    def _start(self, job: Job) -> None:
        job.attempts += 1
        self._running[job.id] = job
        job.post(JobEvent("progress", done=0, total=0))
        pool = self._new_pool(workers=1) if job.isolated else self._pool
        try:
            future = self._loop.run_in_executor(pool, _run, job.id, job.task, job.args)
        except BrokenProcessPool:  # broke a moment ago; its jobs' callbacks are on the way
            self._replace_pool()
            pool = self._pool
            future = self._loop.run_in_executor(pool, _run, job.id, job.task, job.args)
        future.add_done_callback(functools.partial(self._finished, job, pool))

    def _replace_pool(self) -> None:
        broken = self._pool
        self._pool = self._new_pool()
        broken.shutdown(wait=False, cancel_futures=True)

    def _finished(self, job: Job, pool: ProcessPoolExecutor, future: asyncio.Future[Any]) -> None:
        self._running.pop(job.id, None)
        if pool is not self._pool:  # a job run alone: its private pool is done
            pool.shutdown(wait=False)
        error = future.exception() if not future.cancelled() else RenderFailed()
        retried = isinstance(error, BrokenProcessPool) and job.attempts < 2 and not self._closed
        if job.cancelled or not retried:
            self._latencies.add(time.monotonic() - job.submitted)
        if job.cancelled:
            job.post(JobEvent("failed", message=CANCELLED))  # its output is deleted by its owner
        elif error is None:
            job.post(JobEvent("done", result=future.result()))
        elif isinstance(error, BrokenProcessPool):
            if pool is self._pool and not self._closed:
                self._replace_pool()  # every job of a broken pool lands here: replace once
            if job.attempts < 2 and not self._closed:
                # Any job of the pool may have killed it; run this one again on its own.
                log.warning("%s lost its worker; retrying it alone", job.id)
                job.isolated = True
                self._waiting.appendleft(job)
            else:
                log.error("%s crashed its worker", job.id)
                job.post(JobEvent("failed", message=RenderFailed.default_message))
        elif isinstance(error, FaceCastError):
            job.post(JobEvent("failed", message=error.message))
        else:
            log.error("%s failed", job.id, exc_info=error)
            job.post(JobEvent("failed", message=RenderFailed.default_message))
        if not self._closed:
            self._pump()

    def _read_progress(self) -> None:
        while not self._closed:
            try:
                job_id, done, total = self._progress.get(timeout=0.2)
            except queue.Empty:
                continue
            except (EOFError, OSError):
                return
            self._loop.call_soon_threadsafe(self._progress_event, job_id, done, total)

    def _progress_event(self, job_id: str, done: int, total: int) -> None:
        job = self._running.get(job_id)
        if job is not None:
            job.post(JobEvent("progress", done=done, total=total))

    async def cancel(self, person: str, wait: float = 60.0) -> None:
        """Drop ``person``'s queued jobs and mark their running ones cancelled (a worker
        process cannot be stopped mid-render safely), then wait up to ``wait`` seconds for
        those to end."""
        mine = [job for job in self._waiting if person in job.people]
        for job in mine:
            self._waiting.remove(job)
            job.post(JobEvent("failed", message=CANCELLED))
        running = [job for job in self._running.values() if person in job.people]
        for job in running:
            job.cancelled = True
        if mine:
            for position, job in enumerate(self._waiting, start=1):
                job.post(JobEvent("queued", position=position))
        if running:
            await wait_finished(running, wait)

    async def close(self, grace: float = 0.0) -> None:
        """Stop: queued jobs are told at once, running ones get ``grace`` seconds to
        finish, then the workers are stopped (what still runs is reported failed). A second
        call does nothing."""
        if self._closed:
            return
        self._closed = True
        for job in self._waiting:
            job.post(JobEvent("failed", message=SHUTTING_DOWN))
        self._waiting.clear()
        running = list(self._running.values())
        if running and grace > 0:
            await wait_finished(running, grace)
        if self._running:  # still rendering after the grace: killed, not waited for
            for job in self._running.values():
                job.post(JobEvent("failed", message=SHUTTING_DOWN))
            for process in list((getattr(self._pool, "_processes", None) or {}).values()):
                if process.is_alive():
                    process.kill()
        await asyncio.to_thread(self._pool.shutdown, True, cancel_futures=True)
        self._reader.join(timeout=1)
        self._progress.close()


__all__ = ["SHUTTING_DOWN", "LocalJobRunner"]
