"""Renders and enrolment on two real `facecast worker` processes through the real Redis.

The workers are started once for the module, each with its own data folder, and import the
test tasks through FACECAST_WORKER_TASKS. The test that SIGKILLs a worker runs last.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.config import Settings
from core.faces.analyzer import DlibAnalyzer
from core.faces.profile import FaceProfile
from core.jobs.base import CANCELLED, Job, JobEvent, RenderFailed, RunnerBusy
from core.media.images import RGBImage
from core.media.video import probe_video
from core.packs.sync import pack_digest, unpack_archive
from core.render.tasks import (
    EnrolConfig,
    EnrolOrder,
    RenderConfig,
    RenderOrder,
    enrol_order,
    render_order,
)
from core.service.conversation import Service
from core.service.messages import Chat, Media, Person, Reply, Request, Text
from core.service.provenance import check_file
from core.storage.store import Store

from ...conftest import REPO, free_port, jpeg, start_serve, stop_serve
from . import remote_tasks

pytest.importorskip("taskiq_redis", reason="the scale extra (taskiq-redis) is not installed")
redis_sync = pytest.importorskip("redis", reason="the scale extra (redis) is not installed")

from core.jobs.taskiq_runner import TIMED_OUT, TaskiqJobRunner  # noqa: E402
from core.storage.blobs import RedisBlobStore, redis_client  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/12"  # a database of these tests' own
RECLAIM_SECONDS = 3.0


def _redis_answers() -> bool:
    try:
        return bool(redis_sync.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except redis_sync.RedisError:
        return False


if not _redis_answers():
    pytest.skip(f"no Redis answering at {REDIS_URL}", allow_module_level=True)


class Workers:
    """Two `facecast worker` processes (each with its own process group and data dir)."""

    def __init__(self, root: Path, prefix: str) -> None:
        self.root = root
        self.prefix = prefix
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.killed_at = 0.0

    def data(self, name: str) -> Path:
        return self.root / name

    def start(self, name: str) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "FACECAST_DATA_DIR": str(self.data(name)),
            "FACECAST_BROKER_URL": REDIS_URL,
            "FACECAST_BROKER_PREFIX": self.prefix,
            "FACECAST_WORKER_TASKS": "tests.core.jobs.remote_tasks",
            "FACECAST_RECLAIM_SECONDS": str(RECLAIM_SECONDS),
            "FACECAST_JOB_TIMEOUT": "60",
        }
        with (self.root / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "facecast", "worker", "--processes", "1"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: a kill takes the whole "machine"
            )

    def wait_alive(self) -> None:
        """Until every started worker sends heartbeats."""
        client = redis_sync.Redis.from_url(REDIS_URL)
        deadline = time.monotonic() + 60
        # A heartbeat from before the last kill may be the dead worker's.
        while client.zcount(
            f"{self.prefix}:workers", max(time.time() - 5, self.killed_at), "+inf"
        ) < len(self.processes):
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.2)

    def kill(self, name: str) -> None:
        """As when a machine dies: SIGKILL to every process of that worker."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        self.killed_at = time.time()

    def stop(self) -> None:
        for process in self.processes.values():
            os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
                raise AssertionError("a worker did not stop on SIGTERM") from None
        self.processes.clear()


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    started = Workers(tmp_path_factory.mktemp("workers"), f"test-{uuid.uuid4().hex[:8]}")
    started.start("one")
    started.start("two")
    yield started
    started.stop()
    client = redis_sync.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{started.prefix}:*"):
        client.delete(key)


def _settings(root: Path, workers: Workers, **changes: Any) -> Settings:
    return Settings(
        data_dir=root,
        bundled_clips_dir=REPO / "clips",
        broker_url=REDIS_URL,
        broker_prefix=workers.prefix,
        worker_tasks=["tests.core.jobs.remote_tasks"],
        **{"reclaim_seconds": RECLAIM_SECONDS, "job_timeout": 60.0, **changes},
    )


async def _runner(settings: Settings) -> TaskiqJobRunner:
    redis = redis_client(REDIS_URL)
    return await TaskiqJobRunner.start(
        settings, redis, RedisBlobStore(redis, settings.broker_prefix)
    )


@pytest.fixture
async def frontend(tmp_path: Path, workers: Workers) -> AsyncIterator[TaskiqJobRunner]:
    runner = await _runner(_settings(tmp_path / "front", workers, max_queue=50))
    await asyncio.to_thread(workers.wait_alive)
    yield runner
    await runner.close()


async def _follow(job: Job) -> list[JobEvent]:
    return [event async for event in job.events()]


def _order(
    settings: Settings, profile: bytes, kind: str, target: str, name: str, fmt: str = "mp4"
) -> RenderOrder:
    output = settings.outputs_dir / name / f"{kind}-{target}.{fmt}"
    return RenderOrder(
        kind=kind,  # type: ignore[arg-type]
        target=target,
        profile=profile,
        output=str(output),
        config=RenderConfig.of(settings),
        max_bytes=2_000_000,
    )


@pytest.fixture(scope="module")
def profile(selfie_profile: FaceProfile) -> bytes:
    return selfie_profile.to_bytes()


async def test_enrolment_runs_on_a_worker(frontend: TaskiqJobRunner, astronaut: RGBImage) -> None:
    config = EnrolConfig.of(frontend.settings)
    enrolled = await frontend.submit("enrol-a", enrol_order, EnrolOrder(jpeg(astronaut), config))
    refused = await frontend.submit("enrol-b", enrol_order, EnrolOrder(b"not a picture", config))
    good, bad = await asyncio.wait_for(asyncio.gather(_follow(enrolled), _follow(refused)), 60)
    assert good[-1].kind == "done"
    face = FaceProfile.from_bytes(good[-1].result)
    assert face.texture.shape[0] >= 256  # the enrolled astronaut, made on the worker
    assert bad[-1].kind == "failed"
    assert "image" in bad[-1].message.lower() or "picture" in bad[-1].message.lower()


async def test_a_pack_added_after_the_workers_started_renders_on_both(
    frontend: TaskiqJobRunner, workers: Workers, profile: bytes
) -> None:
    settings = frontend.settings
    pack = settings.resolved_clips_dir / "late-arrival"
    shutil.copytree(REPO / "clips" / "astronaut-pan", pack)
    manifest = pack / "clip.toml"
    manifest.write_text(
        manifest.read_text()
        .replace('id = "astronaut-pan"', 'id = "late-arrival"')
        .replace('title = "Astronaut: pan across"', 'title = "Late arrival"')
    )
    # Two at once: each idle worker takes one (a worker holds only the job it runs).
    jobs = [
        await frontend.submit(
            f"u{i}", render_order, _order(settings, profile, "clip", "late-arrival", f"u{i}")
        )
        for i in range(2)
    ]
    results = await asyncio.wait_for(asyncio.gather(*(_follow(j) for j in jobs)), 60)
    for history in results:
        assert history[-1].kind == "done", history[-1]
        made = Path(history[-1].result.path)
        assert made.is_relative_to(settings.outputs_dir)  # in the front-end's own folder
        assert probe_video(made).frames > 0
    cached = {
        p.parent.name
        for w in ("one", "two")
        for p in workers.data(w).glob("pack-cache/*/late-arrival")
    }
    assert len(cached) == 1  # one digest...
    assert all(any(workers.data(w).glob("pack-cache/*/late-arrival")) for w in ("one", "two"))
    # The operator changes the pack: the next render uses the new content, never the old.
    manifest.write_text(manifest.read_text().replace("Late arrival", "Late arrival, again"))
    again = await frontend.submit(
        "u9", render_order, _order(settings, profile, "clip", "late-arrival", "u9")
    )
    assert (await asyncio.wait_for(_follow(again), 60))[-1].kind == "done"
    digests = {
        p.parent.name
        for w in ("one", "two")
        for p in workers.data(w).glob("pack-cache/*/late-arrival")
    }
    assert len(digests) == 2
    fresh = next(
        p
        for w in ("one", "two")
        for p in workers.data(w).glob("pack-cache/*/late-arrival")
        if p.parent.name not in cached
    )
    assert "Late arrival, again" in (fresh / "clip.toml").read_text()


def test_clips_add_publishes_the_pack_for_the_workers(workers: Workers, tmp_path: Path) -> None:
    data = tmp_path / "operator"
    env = {
        **os.environ,
        "FACECAST_DATA_DIR": str(data),
        "FACECAST_BROKER_URL": REDIS_URL,
        "FACECAST_BROKER_PREFIX": workers.prefix,
    }
    env.pop("FACECAST_CLIPS_DIR", None)
    picture = REPO / "clips" / "examples" / "astronaut.jpg"
    command = ["clips", "add", str(picture), "--id", "op-zoom", "--seconds", "1", "--fps", "8"]
    run = subprocess.run(
        [sys.executable, "-m", "facecast", *command],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    digest = pack_digest(data / "clips" / "op-zoom")
    assert f"sha256 {digest[:12]}" in run.stdout
    stored = redis_sync.Redis.from_url(REDIS_URL).get(f"{workers.prefix}:blob:pack:{digest}")
    assert stored is not None
    assert unpack_archive(stored, "op-zoom", digest, tmp_path / "cache").is_dir()


async def test_forget_reaches_jobs_already_queued(
    frontend: TaskiqJobRunner, workers: Workers, tmp_path: Path, profile: bytes
) -> None:
    settings = frontend.settings
    other = await _runner(_settings(tmp_path / "other-front", workers, max_queue=50))
    try:
        busy = [await frontend.submit("bob", remote_tasks.square, n, 3.0) for n in (2, 3)]
        await asyncio.sleep(1.0)  # both workers are on bob's jobs now
        # Alice's renders wait in the queue, sent through another front-end.
        orders = [_order(settings, profile, "meme", "spin", f"alice-{i}", "gif") for i in range(3)]
        queued = [await other.submit("alice", render_order, order) for order in orders]
        people = f"{workers.prefix}:people:alice"  # what /forget reads, on any front-end
        assert await frontend.redis.scard(people) == 3
        await frontend.cancel("alice")
        histories = await asyncio.wait_for(asyncio.gather(*(_follow(j) for j in queued)), 60)
        assert all(h[-1] == JobEvent("failed", message=CANCELLED) for h in histories)
        done = await asyncio.wait_for(asyncio.gather(*(_follow(j) for j in busy)), 60)
        assert [h[-1].result for h in done] == [4, 9]
        await asyncio.sleep(1.0)  # time for a wrongly started render to show
        for order in orders:
            assert not Path(order.output).exists()
            assert not Path(order.output).with_suffix(".mp4").exists()
        assert await other.redis.scard(people) == 0
    finally:
        await other.close()


async def test_a_job_that_hangs_past_its_timeout_fails_cleanly(
    frontend: TaskiqJobRunner, workers: Workers, tmp_path: Path
) -> None:
    impatient = await _runner(_settings(tmp_path / "impatient", workers, job_timeout=1.5))
    try:
        started = time.monotonic()
        hung = await impatient.submit("carol", remote_tasks.hang, 120.0)
        history = await asyncio.wait_for(_follow(hung), 30)
        assert history[-1] == JobEvent("failed", message=TIMED_OUT)
        assert time.monotonic() - started < 15
    finally:
        await impatient.close()
    # The stuck worker process was replaced: both workers serve again.
    jobs = [await frontend.submit(f"d{n}", remote_tasks.square, n, 0.5) for n in range(4)]
    results = await asyncio.wait_for(asyncio.gather(*(_follow(j) for j in jobs)), 60)
    assert [h[-1].result for h in results] == [0, 1, 4, 9]


async def test_a_job_that_fails_twice_is_reported_as_failed(
    frontend: TaskiqJobRunner, workers: Workers
) -> None:
    crasher = await frontend.submit("f", remote_tasks.crash)  # kills its worker process
    broken = await frontend.submit("g", remote_tasks.broken)  # raises
    crashed, failed = await asyncio.wait_for(asyncio.gather(_follow(crasher), _follow(broken)), 60)
    for history in (crashed, failed):
        assert history[-1] == JobEvent("failed", message=RenderFailed.default_message)
    client = frontend.redis
    assert int(await client.get(f"{workers.prefix}:attempts:{crasher.id}")) == 3  # 2 + verdict
    assert int(await client.get(f"{workers.prefix}:attempts:{broken.id}")) == 2
    await asyncio.to_thread(workers.wait_alive)  # the crashed processes were replaced
    after = await frontend.submit("h", remote_tasks.square, 5, 0.1)
    assert (await asyncio.wait_for(_follow(after), 30))[-1].result == 25


async def test_a_full_queue_answers_busy_at_once(workers: Workers, tmp_path: Path) -> None:
    small = await _runner(_settings(tmp_path / "small", workers, max_queue=2))
    try:
        jobs = [await small.submit("e", remote_tasks.square, n, 1.5) for n in range(2)]
        while (await small.stats()).running < 2:  # the workers took those two
            await asyncio.sleep(0.05)
        jobs += [await small.submit("e", remote_tasks.square, n, 0.1) for n in (2, 3)]
        started = time.monotonic()
        with pytest.raises(RunnerBusy, match="try again in a minute"):
            await small.submit("e", remote_tasks.square, 9)
        assert time.monotonic() - started < 0.1
        histories = await asyncio.wait_for(asyncio.gather(*(_follow(j) for j in jobs)), 60)
        assert [h[-1].result for h in histories] == [0, 1, 4, 9]
    finally:
        await small.close()


async def test_the_chat_service_enrols_and_renders_on_the_workers(
    workers: Workers, tmp_path: Path, analyzer: DlibAnalyzer, astronaut: RGBImage
) -> None:
    settings = _settings(tmp_path / "service", workers, max_queue=50)
    store = await Store.open(settings)
    runner = await _runner(settings)
    service = Service(settings, store, runner, analyzer)
    alice, dm = Person("web", "alice"), Chat("dm")

    async def say(text: str = "", image: bytes | None = None) -> list[Reply]:
        return [r async for r in service.handle(Request(alice, dm, text, image=image))]

    try:
        await asyncio.to_thread(workers.wait_alive)
        replies = await say(image=jpeg(astronaut))
        assert isinstance(replies[0], Text)
        assert "Got your face" in replies[0].text
        preview = [r for r in replies if isinstance(r, Media)]
        assert len(preview) == 1  # the first meme, made on a worker and landed here
        assert preview[0].path.is_file()
        assert preview[0].path.is_relative_to(settings.outputs_dir)
        made = [r for r in await say("/clip astronaut-pan") if isinstance(r, Media)]
        assert len(made) == 1
        assert probe_video(made[0].path).frames > 0
        # Watermarked on the worker, signed here: the signing key never leaves this machine.
        check = await asyncio.to_thread(check_file, made[0].path, service.marks, analyzer)
        assert check.manifest.ours
        assert check.watermarked
        refused = await say(image=b"GIF89a junk")
        assert isinstance(refused[-1], Text)
        assert refused[-1].error
        assert "Traceback" not in refused[-1].text
        await say("/forget")
        assert not preview[0].path.exists()
        assert not made[0].path.exists()
    finally:
        await runner.close()
        await store.close()


async def test_facecast_serve_with_a_broker_url_renders_on_the_workers(
    workers: Workers, tmp_path: Path, astronaut: RGBImage
) -> None:
    port = free_port()
    data = tmp_path / "serve"
    process = start_serve(
        {
            "FACECAST_DATA_DIR": str(data),
            "FACECAST_BROKER_URL": REDIS_URL,
            "FACECAST_BROKER_PREFIX": workers.prefix,
            "FACECAST_WORKERS": "1",  # the local pool's setting: not used with a broker
        },
        port,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        workers.wait_alive()
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            while True:
                try:
                    async with client.get(f"{base}/") as page:  # the page issues the session
                        if page.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "facecast serve did not come up"
                await asyncio.sleep(0.3)
            selfie = {"text": "", "image": base64.b64encode(jpeg(astronaut)).decode()}
            async with client.post(f"{base}/api/message", json=selfie) as answer:
                replies = (await answer.json())["replies"]
            assert "Got your face" in replies[0]["text"]
            media = [r for r in replies if r["type"] == "media"]
            assert len(media) == 1
            async with client.get(base + media[0]["url"]) as fetched:
                assert fetched.status == 200
                gif = await fetched.read()
            assert gif.startswith(b"GIF8")  # the preview meme, rendered on a worker
    finally:
        out = await stop_serve(process)
    assert "renders on `facecast worker`s" in out
    assert not (data / "work").exists()  # the server rendered nothing itself


async def test_twenty_users_and_a_worker_killed_mid_job_lose_nothing(
    frontend: TaskiqJobRunner, workers: Workers, profile: bytes
) -> None:
    settings = frontend.settings
    orders = [
        _order(settings, profile, "meme", "deal-with-it", f"user{i}", "gif") for i in range(20)
    ]
    jobs = [await frontend.submit(f"user{i}", render_order, o) for i, o in enumerate(orders)]
    follow = asyncio.gather(*(_follow(j) for j in jobs))
    client = frontend.redis
    # Wait until both workers are in the middle of a job, then kill one of them.
    deadline = time.monotonic() + 60
    while True:
        pending = await client.xpending(f"{workers.prefix}:stream", "facecast")
        if pending["pending"] >= 2:
            break
        assert time.monotonic() < deadline, "the workers never ran two jobs at once"
        await asyncio.sleep(0.05)
    workers.kill("one")
    histories = await asyncio.wait_for(follow, 120)
    for order, history in zip(orders, histories, strict=True):
        assert history[-1].kind == "done", history[-1]
        assert [e.kind for e in history].count("done") == 1
        assert Path(history[-1].result.path).is_file()
        assert Path(history[-1].result.path).parent == Path(order.output).parent
    attempts = [int(await client.get(f"{workers.prefix}:attempts:{job.id}")) for job in jobs]
    assert max(attempts) == 2  # the killed worker's job ran again elsewhere...
    await asyncio.sleep(1.0)
    assert frontend.replies_ignored == 0  # ...and was delivered once
    stats = await frontend.stats()
    assert stats.queued == 0
    assert stats.latency_p50 is not None
    assert stats.finished >= len(jobs)
    workers.start("one")  # back to two, for whatever runs next
