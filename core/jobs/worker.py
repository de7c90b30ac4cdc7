"""`facecast worker`: a Taskiq worker that runs FaceCast's registered tasks.

Each worker process runs one job at a time. A job's life on a worker:

1. already delivered (a redelivery after a crash between reply and acknowledgement), or
   cancelled by ``/forget`` while queued: reply "cancelled" (once) and stop;
2. the third attempt of a job that killed its worker twice: reply "failed";
3. otherwise run it in a thread under ``FACECAST_JOB_TIMEOUT``: a render gets this worker's
   own folders, the packs it names fetched by digest into the worker's cache, and its output
   goes to the blob store; progress goes out over pub/sub;
4. reply once (``SET NX`` on the job id), unless it was cancelled meanwhile: then its
   output is thrown away.

A job that overruns its timeout is reported as failed, and its worker process exits (the
stuck thread with it); Taskiq's process manager starts a fresh one. An unexpected error is
retried once on any worker; a friendly :class:`FaceCastError` goes to the user as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import progress
from core.config import Settings
from core.errors import FaceCastError
from core.jobs import wire
from core.jobs.base import CANCELLED, RenderFailed
from core.jobs.registry import REMOTE_TASKS, import_task_modules
from core.jobs.taskiq_runner import (
    HEARTBEAT_SECONDS,
    KEY_TTL,
    TIMED_OUT,
    Blobs,
    Keys,
    job_blob,
    make_broker,
    pack_blob,
    redis_now,
    refresh_claims,
)
from core.packs.sync import unpack_archive
from core.render.tasks import EnrolOrder, RenderOrder, RenderResult

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from taskiq import AsyncBroker

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2
LATENCIES_KEPT = 500


@dataclass
class Outcome:
    kind: str  # "done" or "failed"
    message: str = ""
    result: Any = None
    files: dict[str, Path] | None = None  # front-end path -> the file made here


class Worker:
    """The state one worker process shares between its jobs."""

    def __init__(self, settings: Settings, redis: Redis, blobs: Blobs) -> None:
        if settings.broker_url is None:
            raise FaceCastError("facecast worker needs FACECAST_BROKER_URL=redis://host:6379/0.")
        self.settings = settings
        self.redis = redis
        self.blobs = blobs
        self.keys = Keys(settings.broker_prefix)
        self.consumer = f"worker-{uuid.uuid4().hex[:12]}"
        self.broker: AsyncBroker = make_broker(
            settings.broker_url.get_secret_value(),
            self.keys,
            settings.reclaim_seconds,
            self.consumer,
        )
        self.data = settings.resolved_data_dir
        self.cache = self.data / "pack-cache"
        self.ttl = settings.output_ttl_hours * 3600
        self._heartbeat: asyncio.Task[None] | None = None
        for name in REMOTE_TASKS:
            self.broker.register_task(self._handler(name), f"facecast.{name}")
        from taskiq import TaskiqEvents

        self.broker.on_event(TaskiqEvents.WORKER_STARTUP)(self._started)
        self.broker.on_event(TaskiqEvents.WORKER_SHUTDOWN)(self._stopped)

    def _handler(self, name: str) -> Callable[[str], Awaitable[None]]:
        async def run(message: str) -> None:
            await self.handle(name, message)

        run.__name__ = f"facecast_{name}"
        return run

    async def _started(self, _: Any) -> None:
        # Each process (forked from the command's process) is a consumer of its own.
        self.consumer = f"worker-{uuid.uuid4().hex[:12]}"
        self.broker.consumer_name = self.consumer  # type: ignore[attr-defined]
        self._heartbeat = asyncio.create_task(self._beat())
        log.info("worker %s ready", self.consumer)

    async def _stopped(self, _: Any) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        with contextlib.suppress(Exception):
            await self.redis.zrem(self.keys.workers, self.consumer)

    async def _beat(self) -> None:
        """Say this worker is alive, and keep its running job from being taken over."""
        while True:
            try:
                now = await redis_now(self.redis)
                await self.redis.zadd(self.keys.workers, {self.consumer: now})
                await self.redis.zremrangebyscore(self.keys.workers, "-inf", now - KEY_TTL)
                await refresh_claims(self.redis, self.broker, self.keys, self.consumer)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("could not reach Redis for a heartbeat", exc_info=True)
            await asyncio.sleep(min(HEARTBEAT_SECONDS, self.settings.reclaim_seconds / 4))

    # -- one job -----------------------------------------------------------------------------

    async def handle(self, name: str, message: str) -> None:
        order = json.loads(message)
        job = str(order["job"])
        if await self.redis.exists(self.keys.delivered(job)):
            return  # ended already; this is a copy redelivered after a crash
        if await self._cancelled(job):
            await self._deliver(order, Outcome("failed", CANCELLED))
            return
        attempt = int(await self.redis.incr(self.keys.attempts(job)))
        await self.redis.expire(self.keys.attempts(job), KEY_TTL)
        if attempt > MAX_ATTEMPTS:
            log.error("%s ended its worker %d times; giving up", job, attempt - 1)
            await self._deliver(order, Outcome("failed", RenderFailed.default_message))
            await self.redis.zrem(self.keys.running, job)
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self.keys.waiting, job)
            pipe.zadd(self.keys.running, {job: await redis_now(self.redis)})
            await pipe.execute()
        await self.report_progress(order, 0, 0)
        work = Path(tempfile.mkdtemp(prefix="job-", dir=self._work_root()))
        exit_after = False
        try:
            outcome = await self._run(name, order, work)
        except TimeoutError:
            log.error("%s ran past its timeout; stopping it", job)
            outcome, exit_after = Outcome("failed", TIMED_OUT), True
        except FaceCastError as exc:
            outcome = Outcome("failed", exc.message)
        except Exception as exc:
            if attempt < MAX_ATTEMPTS and not isinstance(exc, wire.WireError):
                log.warning("%s failed (%s); trying again", job, exc)
                await _kick(self.broker, name, message)
                await self.redis.zrem(self.keys.running, job)
                shutil.rmtree(work, ignore_errors=True)
                return
            log.error("%s failed", job, exc_info=exc)
            outcome = Outcome("failed", RenderFailed.default_message)
        try:
            if await self._cancelled(job):
                outcome = Outcome("failed", CANCELLED)  # its output is thrown away
            await self._deliver(order, outcome)
        finally:
            await self.redis.zrem(self.keys.running, job)
            shutil.rmtree(work, ignore_errors=True)
        if exit_after:
            # The stuck thread cannot be stopped: this process goes, after the ack, and
            # Taskiq's process manager starts a fresh one.
            asyncio.get_running_loop().call_later(0.5, os._exit, 70)

    def _work_root(self) -> Path:
        root = self.data / "work"
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return root

    async def _cancelled(self, job: str) -> bool:
        return bool(await self.redis.exists(self.keys.cancelled(job)))

    async def _run(self, name: str, order: dict[str, Any], work: Path) -> Outcome:
        job = str(order["job"])
        text = str(order["args"])
        blobs: dict[str, bytes] = {}
        for blob in wire.blob_names(text):
            data = await self.blobs.get(job_blob(job, f"in-{blob}"))
            if data is None:
                raise wire.WireError("the job's input expired")
            blobs[blob] = data
        args = wire.loads(text, blobs)
        if not isinstance(args, tuple):
            raise wire.WireError("a job's arguments are a list")
        files: dict[str, Path] = {}
        local_args = [await self._localise(arg, work, files) for arg in args]
        task = REMOTE_TASKS[name]
        loop = asyncio.get_running_loop()
        sink = functools.partial(_report_threadsafe, loop, self, order)
        runner = functools.partial(_run_with_progress, sink, task, *local_args)
        timeout = min(
            float(order.get("timeout") or self.settings.job_timeout), self.settings.job_timeout
        )
        result = await asyncio.wait_for(asyncio.to_thread(runner), timeout)
        if isinstance(result, RenderResult):
            made = Path(result.path)
            wanted = Path(next(iter(files))).with_suffix(made.suffix)
            files = {str(wanted): made}
            result = replace(result, path=str(wanted))
        return Outcome("done", result=result, files=files)

    async def _localise(self, arg: Any, work: Path, files: dict[str, Path]) -> Any:
        """An order as this worker runs it: its own folders, the exact packs it names."""
        if isinstance(arg, RenderOrder):
            clips = work / "clips"
            clips.mkdir()
            for pack_id, digest in arg.packs:
                folder = await self._pack(pack_id, digest)
                (clips / pack_id).symlink_to(folder, target_is_directory=True)
            empty = work / "bundled"
            empty.mkdir()
            files[arg.output] = work / "out" / Path(arg.output).name
            config = replace(
                arg.config,
                data_dir=str(self.data),
                models_dir=str(self.settings.resolved_models_dir),
                models_registry=_text(self.settings.models_registry),
                clips_dir=str(clips) if arg.packs else str(self.settings.resolved_clips_dir),
                bundled_clips_dir=str(empty) if arg.packs else str(self.settings.bundled_clips_dir),
            )
            return replace(arg, output=str(files[arg.output]), config=config)
        if isinstance(arg, EnrolOrder):
            enrol = replace(
                arg.config,
                models_dir=str(self.settings.resolved_models_dir),
                models_registry=_text(self.settings.models_registry),
            )
            return replace(arg, config=enrol)
        return arg

    async def _pack(self, pack_id: str, digest: str) -> Path:
        """The pack with this digest from this worker's cache, fetched on first use."""
        cached = self.cache / digest / pack_id
        if cached.is_dir():
            return cached
        data = await self.blobs.get(pack_blob(digest))
        if data is None:
            raise FaceCastError(f"The clip {pack_id!r} is not available to the render workers.")
        return await asyncio.to_thread(unpack_archive, data, pack_id, digest, self.cache)

    # -- replies ---------------------------------------------------------------------------------

    async def report_progress(self, order: dict[str, Any], done: int, total: int) -> None:
        event = json.dumps({"job": order["job"], "done": done, "total": total})
        with contextlib.suppress(Exception):
            await self.redis.publish(self.keys.progress(str(order["reply"])), event)

    async def _deliver(self, order: dict[str, Any], outcome: Outcome) -> None:
        job = str(order["job"])
        if not await self.redis.set(self.keys.delivered(job), self.consumer, nx=True, ex=KEY_TTL):
            return  # another worker delivered this job already
        reply: dict[str, Any] = {"job": job, "kind": outcome.kind, "message": outcome.message}
        if outcome.kind == "done":
            text, blobs = wire.dumps(outcome.result)
            names = {}
            for blob, data in blobs.items():
                names[blob] = job_blob(job, f"out-{blob}")
                await self.blobs.put(names[blob], data, self.ttl)
            files = {}
            for index, (wanted, made) in enumerate((outcome.files or {}).items()):
                key = job_blob(job, f"file-{index}")
                await self.blobs.put(key, await asyncio.to_thread(made.read_bytes), self.ttl)
                files[wanted] = key
            reply.update(result=text, blobs=names, files=files)
        latency = await redis_now(self.redis) - float(order["submitted"])
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.rpush(self.keys.replies(str(order["reply"])), json.dumps(reply))
            pipe.expire(self.keys.replies(str(order["reply"])), KEY_TTL)
            pipe.lpush(self.keys.latency, latency)
            pipe.ltrim(self.keys.latency, 0, LATENCIES_KEPT - 1)
            pipe.incr(self.keys.finished)
            await pipe.execute()
        await self.blobs.delete(
            *(job_blob(job, f"in-{name}") for name in wire.blob_names(str(order["args"])))
        )


def _text(path: Path | None) -> str | None:
    return str(path) if path is not None else None


async def _kick(broker: AsyncBroker, name: str, message: str) -> None:
    """The same job once more, as a fresh message any worker may take (the retry)."""
    from taskiq.kicker import AsyncKicker

    kicker: AsyncKicker[[str], None] = AsyncKicker(f"facecast.{name}", broker, {})
    await kicker.kiq(message)


def _report_threadsafe(
    loop: asyncio.AbstractEventLoop, worker: Worker, order: dict[str, Any], done: int, total: int
) -> None:
    coroutine = worker.report_progress(order, done, total)
    asyncio.run_coroutine_threadsafe(coroutine, loop)


def _run_with_progress(sink: progress.Sink, task: Any, *args: Any) -> Any:
    progress.install(sink)
    try:
        return task(*args)
    finally:
        progress.install(None)


def run_worker(settings: Settings, redis: Redis, blobs: Blobs, processes: int) -> int:
    """Run ``processes`` worker processes until SIGINT/SIGTERM (Taskiq's process manager
    restarts one that dies)."""
    from taskiq.acks import AcknowledgeType
    from taskiq.cli.worker.args import WorkerArgs
    from taskiq.cli.worker.run import run_worker as run_taskiq

    import_task_modules(settings.worker_tasks)
    worker = Worker(settings, redis, blobs)
    args = WorkerArgs(
        broker=worker.broker,  # type: ignore[arg-type]  # an instance is accepted
        modules=[],
        workers=processes,
        max_async_tasks=1,  # one job at a time per process: renders use the whole core
        max_prefetch=0,
        ack_type=AcknowledgeType.WHEN_EXECUTED,
        shutdown_timeout=5,
        wait_tasks_timeout=settings.job_timeout,
        configure_logging=True,
    )
    return run_taskiq(args) or 0


__all__ = ["MAX_ATTEMPTS", "Worker", "run_worker"]
