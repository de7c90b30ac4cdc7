"""What an operator sees on /healthz and /metrics: queue depth, workers alive, job latency
from the runner; jobs in flight and busy answers from the (shared) state."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bots.web import create_app
from core.config import Settings
from core.faces.analyzer import DlibAnalyzer
from core.faces.profile import FaceProfile
from core.jobs.local import LocalJobRunner
from core.service.conversation import Service
from core.service.messages import Chat, Media, Person, Progress, Request, Text
from core.service.state import RedisState, SharedState
from core.storage.store import Store

from ..conftest import REPO
from ..core.jobs import job_tasks
from ..redis_state import redis_prefix, redis_state

DANA = Person("telegram", "3001", "Dana")


@contextlib.asynccontextmanager
async def operated(
    tmp_path: Path, analyzer: DlibAnalyzer, state: SharedState | None = None, name: str = "a"
) -> AsyncIterator[tuple[Service, TestServer]]:
    settings = Settings(data_dir=tmp_path / name, bundled_clips_dir=REPO / "clips", max_queue=1)
    store = await Store.open(settings)
    runner = LocalJobRunner(workers=1, max_queue=1)
    service = Service(settings, store, runner, analyzer, state=state)
    server = TestServer(create_app(service))
    await server.start_server()
    try:
        yield service, server
    finally:
        await server.close()
        await runner.close()
        await store.close()


async def health(server: TestServer) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as client,
        client.get(server.make_url("/healthz")) as response,
    ):
        return response.status, await response.json()


async def metrics(server: TestServer) -> str:
    async with (
        aiohttp.ClientSession() as client,
        client.get(server.make_url("/metrics")) as response,
    ):
        return await response.text()


async def test_healthz_and_metrics_report_queue_workers_latency_and_busy(
    tmp_path: Path, analyzer: DlibAnalyzer, selfie_profile: FaceProfile
) -> None:
    async with operated(tmp_path, analyzer) as (service, server):
        status, idle = await health(server)
        assert status == 200
        assert idle["status"] == "ok"
        assert (idle["queue"], idle["running"], idle["workers"]) == (0, 0, 1)
        assert idle["latency_p50"] is None  # no job has ended yet
        assert (idle["in_flight"], idle["busy_refusals"]) == (0, 0)
        assert idle["shared_state"] == "local"
        # One job running, one waiting: the queue (of 1) is full.
        jobs = [await service.runner.submit("x", job_tasks.square, n, 1.5) for n in (2, 3)]
        user = await service.store.user(DANA.platform, DANA.id)
        await service.store.add_face(user, selfie_profile)
        (busy,) = [r async for r in service.handle(Request(DANA, Chat("d"), text="/meme spin"))]
        assert isinstance(busy, Text)
        assert "busy" in busy.text
        _, full = await health(server)
        assert (full["queue"], full["running"], full["busy_refusals"]) == (1, 1, 1)
        assert full["workers_alive"] == 1
        for job in jobs:
            assert [e.kind async for e in job.events()][-1] == "done"
        _, after = await health(server)
        assert (after["queue"], after["running"], after["jobs_finished"]) == (0, 0, 2)
        assert 1.5 <= after["latency_p50"] <= after["latency_p95"] < 30
        body = await metrics(server)
        assert "facecast_workers_alive 1.0" in body
        assert "facecast_busy_refusals 1.0" in body
        assert 'facecast_job_latency_seconds{quantile="0.5"}' in body


async def test_front_ends_sharing_redis_see_each_others_jobs_and_refusals(
    tmp_path: Path, analyzer: DlibAnalyzer, selfie_profile: FaceProfile
) -> None:
    async with redis_prefix() as prefix:
        one, two = await redis_state(prefix), await redis_state(prefix)
        try:
            async with (
                operated(tmp_path, analyzer, one, "a") as (first, _),
                operated(tmp_path, analyzer, two, "b") as (_, other_server),
            ):
                user = await first.store.user(DANA.platform, DANA.id)
                await first.store.add_face(user, selfie_profile)
                replies = first.handle(Request(DANA, Chat("d"), text="/meme spin"))
                assert isinstance(await anext(replies), Progress)
                _, seen = await health(other_server)
                assert seen["shared_state"] == "redis"
                assert seen["in_flight"] == 1  # Dana's render, on the other front-end
                assert [r async for r in replies if isinstance(r, Media)]
                await first.gate.refused_busy()
                _, seen = await health(other_server)
                assert (seen["in_flight"], seen["busy_refusals"]) == (0, 1)
        finally:
            await one.close()
            await two.close()


async def test_healthz_says_degraded_when_redis_stops_answering(
    tmp_path: Path, analyzer: DlibAnalyzer
) -> None:
    aioredis = pytest.importorskip("redis.asyncio", reason="the scale extra is not installed")

    gone = RedisState(aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1))
    try:
        async with operated(tmp_path, analyzer, gone) as (_, server):
            status, figures = await health(server)
            assert status == 503
            assert figures["status"] == "degraded"
            assert figures["shared_state"] == "unreachable"
            assert figures["queue"] == 0  # the runner's figures still come
    finally:
        await gone.close()
