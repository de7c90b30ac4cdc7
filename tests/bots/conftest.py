from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from bots.web import create_app
from core.config import Settings
from core.faces.analyzer import DlibAnalyzer
from core.jobs.local import LocalJobRunner
from core.service.conversation import Service
from core.storage.store import Store

from ..conftest import REPO


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, analyzer: DlibAnalyzer, *, workers: int = 2, max_queue: int = 10
) -> AsyncIterator[TestServer]:
    """The real web app on a real local port, with a real store and render workers."""
    store = await Store.open(settings)
    runner = LocalJobRunner(workers=workers, max_queue=max_queue)
    server = TestServer(create_app(Service(settings, store, runner, analyzer)))
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()
        await runner.close()
        await store.close()


@pytest.fixture
async def web_server(tmp_path: Path, analyzer: DlibAnalyzer) -> AsyncIterator[TestServer]:
    settings = Settings(data_dir=tmp_path / "data", bundled_clips_dir=REPO / "clips")
    async with serving(settings, analyzer) as server:
        yield server
