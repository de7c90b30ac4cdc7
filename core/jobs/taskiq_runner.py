"""Renders and enrolment analysis on `facecast worker` processes, through Taskiq on Redis.

:class:`TaskiqJobRunner` has the local pool's interface (:class:`core.jobs.base.JobRunner`),
so the service does not notice which one runs its jobs. An order is a Taskiq message on a
Redis stream naming a registered task (:mod:`core.jobs.registry`) with its arguments as JSON
(:mod:`core.jobs.wire`: a :class:`~core.render.tasks.RenderOrder` carries the profile,
pack ids and digests and a secret-free config, never the settings). A worker acknowledges a
message only after the job ended; one that dies mid-job stops refreshing its claim, and
after ``FACECAST_RECLAIM_SECONDS`` another worker takes the job over. Each job ends once:
the worker that finishes it first wins a ``SET NX`` on its id and pushes the one reply
onto this front-end's reply list; progress goes over pub/sub. Outputs come back through
the blob store and are written into this front-end's own data folder.

Redis keys, all under the prefix (``FACECAST_BROKER_PREFIX``): ``stream`` (the Taskiq
queue), ``waiting`` and ``running`` (sorted sets of job ids: the queue as users see it),
``workers`` (heartbeats), ``people:<account>`` (the jobs for or about a person, for
``/forget``), ``cancelled:<job>``, ``delivered:<job>``, ``attempts:<job>``,
``replies:<front-end>``, ``progress:<front-end>`` (a channel), ``latency`` (recent job
latencies) and ``finished`` (jobs ended), ``blob:*``. A person's cap on jobs in flight is
the service's (:class:`core.service.policy.Gate`), not the runner's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from core.config import Settings
from core.errors import FaceCastError
from core.jobs import wire
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
from core.jobs.registry import import_task_modules, name_of
from core.packs.sync import PackDigests, pack_archive
from core.render.tasks import RenderOrder, RenderResult, pack_folders

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from taskiq import AsyncBroker

log = logging.getLogger(__name__)

SHUTTING_DOWN = "The server is shutting down; try again in a minute."
NO_WORKERS = "No render worker is running right now; try again in a minute."
TIMED_OUT = "That took too long to make, so I stopped it. Please try again."
GROUP = "facecast"  # the stream's consumer group: every worker reads from it
HEARTBEAT_SECONDS = 2.0
WORKER_STALE_SECONDS = 10.0  # a worker silent this long no longer counts as alive
KEY_TTL = 24 * 3600  # bookkeeping keys outlive any job
PUBLISHED_FOR = 60.0  # a pack seen in Redis is checked again after this long


class Blobs(Protocol):
    """What a runner needs of :class:`core.storage.blobs.BlobStore` (injected: jobs and
    storage do not import each other)."""

    async def put(self, key: str, data: bytes, ttl: float | None) -> None: ...
    async def get(self, key: str) -> bytes | None: ...
    async def exists(self, key: str) -> bool: ...
    async def delete(self, *keys: str) -> None: ...


class Keys:
    """The Redis key names of one deployment (one prefix)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.stream = f"{prefix}:stream"
        self.waiting = f"{prefix}:waiting"
        self.running = f"{prefix}:running"
        self.workers = f"{prefix}:workers"
        self.latency = f"{prefix}:latency"
        self.finished = f"{prefix}:finished"

    def people(self, person: str) -> str:
        return f"{self.prefix}:people:{person}"

    def cancelled(self, job: str) -> str:
        return f"{self.prefix}:cancelled:{job}"

    def delivered(self, job: str) -> str:
        return f"{self.prefix}:delivered:{job}"

    def attempts(self, job: str) -> str:
        return f"{self.prefix}:attempts:{job}"

    def replies(self, frontend: str) -> str:
        return f"{self.prefix}:replies:{frontend}"

    def progress(self, frontend: str) -> str:
        return f"{self.prefix}:progress:{frontend}"


def pack_blob(digest: str) -> str:
    return f"pack:{digest}"


def job_blob(job: str, name: str) -> str:
    return f"job:{job}:{name}"


# -- the broker ----------------------------------------------------------------------------


def make_broker(url: str, keys: Keys, reclaim_seconds: float, consumer: str) -> AsyncBroker:
    """A Taskiq Redis-stream broker whose consumers take one message at a time, take over
    messages left unacknowledged for ``reclaim_seconds`` (a dead worker's), and can keep
    their own running messages from being taken over (:func:`refresh_claims`)."""
    try:
        from redis.asyncio import Redis
        from taskiq import AckableMessage
        from taskiq_redis import RedisStreamBroker
    except ImportError:
        raise FaceCastError(
            "FACECAST_BROKER_URL is set, but taskiq-redis is not installed: "
            "pip install 'facecast[scale]'."
        ) from None

    class StreamBroker(RedisStreamBroker):
        # taskiq-redis 1.2.4 reads up to 100 messages at once and looks for abandoned ones
        # only after new ones arrived; here a worker holds only what it runs, and an
        # abandoned job is taken over even when nothing new comes.
        held: set[bytes]

        async def listen(self) -> AsyncGenerator[AckableMessage, None]:
            idle = round(reclaim_seconds * 1000)
            async with Redis(connection_pool=self.connection_pool) as redis:
                while True:
                    # Shielded: Taskiq cancels a pending read when the worker stops, and a
                    # redis-py call cancelled in flight can leave its caller hanging.
                    claimed: Any = await asyncio.shield(
                        redis.xautoclaim(
                            keys.stream, GROUP, self.consumer_name, min_idle_time=idle, count=1
                        )
                    )
                    entries = list(claimed[1])
                    if not entries:
                        fetched: Any = await asyncio.shield(
                            redis.xreadgroup(
                                GROUP,
                                self.consumer_name,
                                {keys.stream: ">"},
                                count=1,
                                block=self.block,
                            )
                        )
                        entries = [entry for _, found in fetched or () for entry in found]
                    for message_id, fields in entries:
                        if not fields:
                            continue  # deleted meanwhile
                        self.held.add(message_id)
                        yield AckableMessage(data=fields[b"data"], ack=self._acker(message_id))

        def _acker(self, message_id: bytes) -> Callable[[], Awaitable[None]]:
            async def ack() -> None:
                async with Redis(connection_pool=self.connection_pool) as redis:
                    await redis.xack(keys.stream, GROUP, message_id)
                    await redis.xdel(keys.stream, message_id)  # the stream holds only work
                self.held.discard(message_id)

            return ack

    broker = StreamBroker(
        url,
        queue_name=keys.stream,
        consumer_group_name=GROUP,
        consumer_name=consumer,
        consumer_id="0",
        xread_block=1000,
        xread_count=1,
        idle_timeout=round(reclaim_seconds * 1000),
        unacknowledged_lock_timeout=5.0,
    )
    broker.held = set()
    return broker


async def refresh_claims(redis: Redis, broker: AsyncBroker, keys: Keys, consumer: str) -> None:
    """Reset the idle time of the messages this worker is running, so no other worker takes
    them over while it is alive."""
    held = list(getattr(broker, "held", ()))
    if held:
        await redis.xclaim(keys.stream, GROUP, consumer, 0, held, justid=True)


async def publish_pack(blobs: Blobs, folder: Path, digest: str | None = None) -> str:
    """Store the pack in ``folder`` under its digest unless it is there already; returns
    the digest. Packs are kept until deleted (they are small and reused)."""
    if digest is not None and await blobs.exists(pack_blob(digest)):
        return digest
    made, archive = await asyncio.to_thread(pack_archive, folder)
    if not await blobs.exists(pack_blob(made)):
        await blobs.put(pack_blob(made), archive, None)
    return made


# -- the front-end's runner -------------------------------------------------------------------


# Reserve a place in the queue, or say why not (-1: no worker alive, -2: the queue is
# full), with Redis's clock (machines' clocks differ): {place, time in microseconds}.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local at = t[1] .. string.format('%06d', tonumber(t[2]))
if redis.call('ZCOUNT', KEYS[2], now - tonumber(ARGV[2]), '+inf') == 0 then return {-1, at} end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return {-2, at} end
redis.call('ZADD', KEYS[1], now, ARGV[1])
return {redis.call('ZRANK', KEYS[1], ARGV[1]) + 1, at}
"""


async def redis_now(redis: Redis) -> float:
    """Redis's clock, which every machine of a deployment shares."""
    seconds, microseconds = await redis.time()
    return float(seconds) + float(microseconds) / 1e6


class RemoteJob(Job):
    def __init__(
        self,
        job_id: str,
        user: str,
        task: Callable[..., Any],
        args: tuple[Any, ...],
        about: Iterable[str] = (),
    ) -> None:
        super().__init__(job_id, user, task, args, about)
        self.started = False
        self.started_at = 0.0
        self.position = 0
        self.outputs: frozenset[Path] = frozenset()


class TaskiqJobRunner:
    """Jobs for `facecast worker` processes; one per front-end process."""

    remote = True  # enrolment analysis goes to the workers too

    def __init__(
        self, settings: Settings, redis: Redis, blobs: Blobs, *, poll_seconds: float = 1.0
    ) -> None:
        if settings.broker_url is None:
            raise ValueError("TaskiqJobRunner needs FACECAST_BROKER_URL")
        import_task_modules(settings.worker_tasks)
        self.settings = settings
        self.redis = redis
        self.blobs = blobs
        self.keys = Keys(settings.broker_prefix)
        self.id = uuid.uuid4().hex[:16]  # this front-end: where replies come back to
        self.broker = make_broker(
            settings.broker_url.get_secret_value(), self.keys, settings.reclaim_seconds, self.id
        )
        self.max_queue = settings.max_queue
        self.poll_seconds = poll_seconds
        self.outputs = settings.outputs_dir.resolve()
        self.ttl = settings.output_ttl_hours * 3600  # no blob outlives the outputs
        self._jobs: dict[str, RemoteJob] = {}
        self._digests = PackDigests()
        self._published: dict[str, float] = {}
        self._queue_length = 0
        self.replies_ignored = 0  # replies for a job that had ended here already
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @classmethod
    async def start(cls, settings: Settings, redis: Redis, blobs: Blobs) -> TaskiqJobRunner:
        runner = cls(settings, redis, blobs)
        await runner.broker.startup()  # creates the stream and its consumer group
        runner._tasks = [
            asyncio.create_task(runner._read_replies()),
            asyncio.create_task(runner._read_progress()),
            asyncio.create_task(runner._watch_queue()),
        ]
        return runner

    # -- what the service and operators see ---------------------------------------------

    @property
    def queue_length(self) -> int:
        """Jobs waiting for a worker, all front-ends together (refreshed every second)."""
        return self._queue_length

    async def stats(self) -> RunnerStats:
        """The deployment's figures, every front-end's jobs together: queue depth, jobs
        running, workers alive (heartbeats), recent latency and jobs ended. How many workers
        there should be is not known here (None)."""
        now = await redis_now(self.redis)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.waiting)
            pipe.zcard(self.keys.running)
            pipe.zcount(self.keys.workers, now - WORKER_STALE_SECONDS, "+inf")
            pipe.lrange(self.keys.latency, 0, -1)
            pipe.get(self.keys.finished)
            waiting, running, alive, latencies, finished = await pipe.execute()
        recent = Latencies.of(float(v) for v in latencies)
        return RunnerStats(
            queued=int(waiting),
            running=int(running),
            workers_alive=int(alive),
            latency_p50=recent.percentile(0.5),
            latency_p95=recent.percentile(0.95),
            finished=int(finished or 0),
        )

    # -- submitting ------------------------------------------------------------------------

    async def submit(
        self, user: str, task: Callable[..., Any], *args: Any, about: Iterable[str] = ()
    ) -> Job:
        if self._closed:
            raise RunnerBusy(SHUTTING_DOWN)
        name = name_of(task)
        job_id = uuid.uuid4().hex
        reserved = await self.redis.eval(
            _RESERVE,
            2,
            self.keys.waiting,
            self.keys.workers,
            job_id,
            WORKER_STALE_SECONDS,
            self.max_queue,
        )
        place, now = int(reserved[0]), int(reserved[1]) / 1e6
        if place == -1:
            raise RunnerBusy(NO_WORKERS)
        if place < 0:
            raise RunnerBusy()
        job = RemoteJob(job_id, user, task, args, about=about)
        try:
            args = await self._prepare(job, args)
            text, blobs = wire.dumps(args)
            for blob, data in blobs.items():
                await self.blobs.put(job_blob(job_id, f"in-{blob}"), data, self.ttl)
            async with self.redis.pipeline(transaction=False) as pipe:
                for person in job.people:
                    pipe.sadd(self.keys.people(person), job_id)
                    pipe.expire(self.keys.people(person), KEY_TTL)
                await pipe.execute()
            message = {
                "job": job_id,
                "task": name,
                "user": user,
                "people": sorted(job.people),
                "reply": self.id,
                "submitted": now,
                "timeout": self.settings.job_timeout,
                "args": text,
            }
            self._jobs[job_id] = job
            await self._kick(name, json.dumps(message))
        except BaseException:
            self._jobs.pop(job_id, None)
            await self._forget_job(job)
            raise
        job.position = place
        job.post(JobEvent("queued", position=place))
        return job

    async def _kick(self, name: str, message: str) -> None:
        from taskiq.kicker import AsyncKicker

        kicker: AsyncKicker[[str], None] = AsyncKicker(f"facecast.{name}", self.broker, {})
        await kicker.kiq(message)

    async def _prepare(self, job: RemoteJob, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """A render order names the exact packs it reads (published for the workers) and
        may come back only as its own output file."""
        prepared = []
        for arg in args:
            if isinstance(arg, RenderOrder):
                arg = replace(arg, packs=await self._publish_packs(arg))
                output = Path(arg.output)
                job.outputs = frozenset({output, output.with_suffix(".mp4")})
            prepared.append(arg)
        return tuple(prepared)

    async def _publish_packs(self, order: RenderOrder) -> tuple[tuple[str, str], ...]:
        folders = pack_folders(order.kind, order.target, order.config.settings())
        packs = []
        for folder in folders:
            digest = await asyncio.to_thread(self._digests.of, folder)
            await self.publish_pack(folder, digest)
            packs.append((folder.name, digest))
        return tuple(packs)

    async def publish_pack(self, folder: Path, digest: str | None = None) -> str:
        """Make the pack in ``folder`` available to every worker (once per content)."""
        if digest is None:
            digest = await asyncio.to_thread(self._digests.of, folder)
        if time.monotonic() - self._published.get(digest, -PUBLISHED_FOR) >= PUBLISHED_FOR:
            digest = await publish_pack(self.blobs, folder, digest)
            self._published[digest] = time.monotonic()  # looked at again now and then
        return digest

    async def publish_packs(self, folders: Iterable[Path]) -> None:
        """Publish packs ahead of their first render (at startup); a broken one is logged."""
        for folder in folders:
            try:
                await self.publish_pack(folder)
            except (OSError, FaceCastError) as exc:
                log.warning("could not publish the pack %s: %s", folder, exc)

    # -- hearing back -----------------------------------------------------------------------

    async def _read_replies(self) -> None:
        key = self.keys.replies(self.id)
        while not self._closed:
            try:
                popped = await self.redis.blpop([key], timeout=1)
                if popped is None:
                    continue
                await self._reply(json.loads(popped[1]))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not read a worker's reply")
                await asyncio.sleep(1)

    async def _reply(self, reply: dict[str, Any]) -> None:
        job = self._jobs.pop(str(reply["job"]), None)
        files: dict[str, str] = reply.get("files") or {}
        try:
            if job is None or job.finished.is_set():
                if job is None:
                    self.replies_ignored += 1
                    log.warning("a second reply for %s, ignored", reply.get("job"))
                return  # e.g. cancelled here while it ran
            if job.cancelled:
                job.post(JobEvent("failed", message=CANCELLED))
            elif reply["kind"] == "failed":
                job.post(JobEvent("failed", message=str(reply["message"])))
            else:
                job.post(JobEvent("done", result=await self._land(job, reply, files)))
        except Exception:
            log.exception("could not take the result of %s", reply.get("job"))
            if job is not None:
                job.post(JobEvent("failed", message=RenderFailed.default_message))
        finally:
            await self.blobs.delete(*files.values(), *(reply.get("blobs") or {}).values())
            if job is not None:
                await self._forget_job(job)

    async def _land(self, job: RemoteJob, reply: dict[str, Any], files: dict[str, str]) -> Any:
        """The result, with its files written into this front-end's data folder."""
        blobs = {}
        for name, key in (reply.get("blobs") or {}).items():
            data = await self.blobs.get(key)
            if data is None:
                raise RenderFailed()
            blobs[name] = data
        result = wire.loads(str(reply["result"]), blobs)
        for path_text, blob in files.items():
            path = Path(path_text)
            if path not in job.outputs:  # a worker writes only where it was told to
                raise RenderFailed()
            data = await self.blobs.get(blob)
            if data is None:
                raise RenderFailed()
            await asyncio.to_thread(_write_private, path, data)
        if isinstance(result, RenderResult) and Path(result.path) not in job.outputs:
            raise RenderFailed()
        return result

    async def _read_progress(self) -> None:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.keys.progress(self.id))
        try:
            while not self._closed:
                try:
                    message = await pubsub.get_message(timeout=1.0)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("lost the progress channel; listening again")
                    await asyncio.sleep(1)
                    await pubsub.subscribe(self.keys.progress(self.id))
                    continue
                if message is None:
                    continue
                event = json.loads(message["data"])
                job = self._jobs.get(str(event["job"]))
                if job is not None and not job.finished.is_set():
                    if not job.started:
                        job.started, job.started_at = True, time.monotonic()
                    job.post(JobEvent("progress", done=event["done"], total=event["total"]))
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _watch_queue(self) -> None:
        """Tell waiting users their place as it moves up; keep the queue length fresh."""
        while not self._closed:
            try:
                waiting = [job for job in self._jobs.values() if not job.started]
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.zcard(self.keys.waiting)
                    for job in waiting:
                        pipe.zrank(self.keys.waiting, job.id)
                    length, *ranks = await pipe.execute()
                self._queue_length = int(length)
                await self._give_up_on_silent_jobs()
                for job, rank in zip(waiting, ranks, strict=True):
                    if rank is not None and rank + 1 < job.position and not job.finished.is_set():
                        job.position = rank + 1
                        job.post(JobEvent("queued", position=job.position))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not read the queue")
            await asyncio.sleep(min(self.poll_seconds, 1.0))

    async def _give_up_on_silent_jobs(self) -> None:
        """A job that started long ago and never ended (its reply lost with a flushed
        Redis, say) fails instead of keeping its user waiting for ever."""
        settings = self.settings
        patience = settings.job_timeout * 2 + settings.reclaim_seconds * 2 + 60
        now = time.monotonic()
        for job in list(self._jobs.values()):
            if job.started and now - job.started_at > patience:
                log.error("%s never came back from its worker", job.id)
                del self._jobs[job.id]
                job.post(JobEvent("failed", message=RenderFailed.default_message))
                await self._forget_job(job)

    async def _forget_job(self, job: Job) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self.keys.waiting, job.id)
            for person in job.people:
                pipe.srem(self.keys.people(person), job.id)
            await pipe.execute()

    # -- stopping ------------------------------------------------------------------------------

    async def _cancel_ids(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        if not ids:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.set(self.keys.cancelled(job_id), 1, ex=KEY_TTL)
            pipe.zrem(self.keys.waiting, *ids)
            await pipe.execute()

    async def cancel(self, person: str, wait: float = 60.0) -> None:
        """End every job for or about ``person``, on any front-end: queued ones never start,
        running ones deliver nothing; waits up to ``wait`` seconds for this front-end's
        running ones to end."""
        members = await self.redis.smembers(self.keys.people(person))
        ids = {m.decode() if isinstance(m, bytes) else str(m) for m in members}
        mine = [job for job in self._jobs.values() if person in job.people]
        ids.update(job.id for job in mine)
        await self._cancel_ids(ids)
        running = []
        for job in mine:
            job.cancelled = True
            if job.started:
                running.append(job)
            else:
                job.post(JobEvent("failed", message=CANCELLED))
        if running:
            await wait_finished(running, wait)

    async def close(self, grace: float = 0.0) -> None:
        """Stop: queued jobs are withdrawn and their users told at once, running ones get
        ``grace`` seconds to come back. A second call does nothing."""
        if self._closed:
            return
        self._closed = True
        queued = [job for job in self._jobs.values() if not job.started]
        with contextlib.suppress(Exception):
            await self._cancel_ids(job.id for job in queued)
        for job in queued:
            job.post(JobEvent("failed", message=SHUTTING_DOWN))
        running = [job for job in self._jobs.values() if not job.finished.is_set()]
        if running and grace > 0:
            await wait_finished(running, grace)
        for job in self._jobs.values():
            job.post(JobEvent("failed", message=SHUTTING_DOWN))
        # The readers stop by themselves within a second: cancelling one in the middle of
        # a blocking Redis call leaves a cancellation on whoever awaits it (redis-py).
        _, stuck = await asyncio.wait(self._tasks, timeout=5)
        for reader in stuck:
            reader.cancel()
        with contextlib.suppress(Exception):
            await self.redis.delete(self.keys.replies(self.id))
        await self.broker.shutdown()
        await self.redis.aclose()


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(f".{path.name}.part")
    partial.write_bytes(data)
    partial.chmod(0o600)  # someone's face: readable by this server only
    partial.replace(path)


__all__ = [
    "NO_WORKERS",
    "SHUTTING_DOWN",
    "TIMED_OUT",
    "Keys",
    "TaskiqJobRunner",
    "make_broker",
    "publish_pack",
    "refresh_claims",
]
