from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bots.web import create_app
from core.config import Settings
from core.faces.analyzer import DlibAnalyzer

from ..conftest import REPO, free_port, running_service, start_serve, stop_serve
from ..fakes.discord_api import Call as DiscordCall
from ..fakes.discord_api import FakeDiscord
from ..fakes.telegram_api import Call as TelegramCall
from ..fakes.telegram_api import FakeTelegram


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, analyzer: DlibAnalyzer, *, workers: int = 2, max_queue: int = 10
) -> AsyncIterator[TestServer]:
    """The real web app on a real local port, with a real store and render workers."""
    async with running_service(settings, analyzer, workers=workers, max_queue=max_queue) as app:
        server = TestServer(create_app(app))
        await server.start_server()
        try:
            yield server
        finally:
            await server.close()


@contextlib.asynccontextmanager
async def listening(app: web.Application) -> AsyncIterator[int]:
    """``app`` served on a free local port: the port."""
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


@contextlib.asynccontextmanager
async def fake_telegram(token: str) -> AsyncIterator[FakeTelegram]:
    """The fake Bot API on a free local port (its ``port``)."""
    api = FakeTelegram(token)
    async with listening(api.app) as port:
        api.port = port  # type: ignore[attr-defined]
        yield api


@contextlib.asynccontextmanager
async def serving_telegram(
    fake: FakeTelegram,
    data_dir: Path,
    settings: Mapping[str, str] | None = None,
    caused: Iterable[str] = (),
) -> AsyncIterator[subprocess.Popen[str]]:
    """`facecast serve` with Telegram polling ``fake`` (plus these FACECAST_* ``settings``),
    once it has registered its commands; stopped cleanly but for the errors in ``caused``."""
    port = fake.port  # type: ignore[attr-defined]
    env = {
        "FACECAST_DATA_DIR": str(data_dir),
        "FACECAST_TELEGRAM_TOKEN": fake.token,
        "FACECAST_TELEGRAM_BASE_URL": f"http://127.0.0.1:{port}/bot",
        "FACECAST_TELEGRAM_BASE_FILE_URL": f"http://127.0.0.1:{port}/file/bot",
        "FACECAST_TELEGRAM_POLL_TIMEOUT": "1",
        **(settings or {}),
        "FACECAST_WORKERS": "2",
    }
    process = start_serve(env, free_port())
    try:
        await fake.wait_for(
            lambda calls: any(c.method == "setMyCommands" for c in calls),
            timeout=60,
            what="the bot to register its commands",
        )
        yield process
    finally:
        await stop_serve(process, caused=caused)


@contextlib.asynccontextmanager
async def serving_telegram_webhook(
    fake: FakeTelegram, data_dir: Path
) -> AsyncIterator[tuple[int, TelegramCall]]:
    """`facecast serve` with Telegram taking updates from ``fake`` by webhook, once it has
    registered the webhook and its web server listens: the web port and the setWebhook."""
    port = fake.port  # type: ignore[attr-defined]
    web_port = free_port()
    env = {
        "FACECAST_DATA_DIR": str(data_dir),
        "FACECAST_TELEGRAM_TOKEN": fake.token,
        "FACECAST_TELEGRAM_BASE_URL": f"http://127.0.0.1:{port}/bot",
        "FACECAST_TELEGRAM_BASE_FILE_URL": f"http://127.0.0.1:{port}/file/bot",
        "FACECAST_TELEGRAM_WEBHOOK_URL": f"http://127.0.0.1:{web_port}",
        "FACECAST_WORKERS": "1",
    }
    before = len(fake.sent("setWebhook"))
    process = start_serve(env, web_port)
    try:
        await fake.wait_for(
            lambda calls: len([c for c in calls if c.method == "setWebhook"]) > before,
            what="the webhook registration",
        )
        async with aiohttp.ClientSession() as client:
            for _ in range(100):  # the web server listens once startup is done
                try:
                    async with client.get(f"http://127.0.0.1:{web_port}/healthz") as health:
                        if health.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        yield web_port, fake.sent("setWebhook")[-1]
    finally:
        await stop_serve(process)


@contextlib.asynccontextmanager
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """The fake Discord REST API and gateway on a free local port."""
    api = FakeDiscord()
    async with listening(api.app) as port:
        api.port = port
        yield api


@contextlib.asynccontextmanager
async def serving_discord(
    fake: FakeDiscord,
    data_dir: Path,
    settings: Mapping[str, str],
    synced: Callable[[list[DiscordCall]], object],
    what: str,
    caused: Iterable[str] = (),
) -> AsyncIterator[None]:
    """`facecast serve` with Discord on ``fake`` (plus these FACECAST_* ``settings``), once
    it has identified and its command sync (``synced``, ``what``) is seen; stopped cleanly
    but for the errors in ``caused``."""
    env = {
        "FACECAST_DATA_DIR": str(data_dir),
        "FACECAST_DISCORD_TOKEN": "discord-test-token",
        "FACECAST_DISCORD_API_BASE": fake.url("/api/v10"),
        "FACECAST_DISCORD_GATEWAY_URL": f"ws://127.0.0.1:{fake.port}/gateway",
        **settings,
        "FACECAST_WORKERS": "2",
    }
    process = start_serve(env, free_port())
    try:
        await asyncio.wait_for(fake.identified.wait(), 60)
        await fake.wait_for(synced, what=what)
        await asyncio.sleep(0.5)
        yield
    finally:
        await stop_serve(process, caused=caused)


def attachment_command(
    name: str, option: str, attachment: dict[str, Any], command_id: str = "1"
) -> dict[str, Any]:
    """A slash command's data with one attachment option, the attachment resolved."""
    return {
        "id": command_id,
        "name": name,
        "type": 1,
        "options": [{"name": option, "type": 11, "value": attachment["id"]}],
        "resolved": {"attachments": {attachment["id"]: attachment}},
    }


@pytest.fixture
async def web_server(tmp_path: Path, analyzer: DlibAnalyzer) -> AsyncIterator[TestServer]:
    settings = Settings(data_dir=tmp_path / "data", bundled_clips_dir=REPO / "clips")
    async with serving(settings, analyzer) as server:
        yield server
