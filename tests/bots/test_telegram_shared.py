"""Two front-ends, one Telegram bot: an update that reaches both (a webhook retried to the
other server, say) is answered once when they share state in Redis. The real
python-telegram-bot runs against the local fake Bot API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import SecretStr
from telegram import Update

from bots.telegram_bot import TelegramBot
from core.config import Settings
from core.faces.analyzer import DlibAnalyzer
from core.jobs.local import LocalJobRunner
from core.service.conversation import Service
from core.service.state import LocalState, RedisState, SharedState
from core.storage.store import Store

from ..conftest import REPO, free_port
from ..fakes.telegram_api import Call, FakeTelegram
from ..redis_state import redis_prefix, redis_state

TOKEN = "654321:SHARED-TEST-TOKEN"
CAROL = {"id": 601, "is_bot": False, "first_name": "Carol"}
CHAT = {"id": 601, "type": "private", "first_name": "Carol"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    api = FakeTelegram(TOKEN)
    runner = web.AppRunner(api.app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    api.port = port  # type: ignore[attr-defined]
    yield api
    await runner.cleanup()


@contextlib.asynccontextmanager
async def front_end(
    fake: FakeTelegram, data_dir: Path, analyzer: DlibAnalyzer, state: SharedState
) -> AsyncIterator[TelegramBot]:
    """One `facecast serve`'s Telegram side, taking updates by webhook."""
    port = fake.port  # type: ignore[attr-defined]
    settings = Settings(
        data_dir=data_dir,
        bundled_clips_dir=REPO / "clips",
        telegram_token=SecretStr(TOKEN),
        telegram_base_url=f"http://127.0.0.1:{port}/bot",
        telegram_base_file_url=f"http://127.0.0.1:{port}/file/bot",
        telegram_webhook_url="https://front.example",
    )
    store = await Store.open(settings)
    runner = LocalJobRunner(workers=1, max_queue=2)
    bot = TelegramBot(Service(settings, store, runner, analyzer, state=state), settings)
    await bot.start()
    try:
        yield bot
    finally:
        await bot.stop()
        await runner.close()
        await store.close()


async def answers_to_one_update_seen_by_both(
    fake: FakeTelegram, tmp_path: Path, analyzer: DlibAnalyzer, states: tuple[SharedState, ...]
) -> int:
    """How many answers one /help gets when the same update reaches both front-ends."""
    async with (
        front_end(fake, tmp_path / "one", analyzer, states[0]) as one,
        front_end(fake, tmp_path / "two", analyzer, states[1]) as two,
    ):
        ask = fake.message(CHAT, CAROL, text="/help")
        payload = {"update_id": 7001, "message": ask}
        for bot in (one, two):
            update = Update.de_json(payload, bot.application.bot)
            await bot.application.update_queue.put(update)

        def answers(calls: list[Call]) -> list[Call]:
            return [
                c
                for c in calls
                if c.method == "sendMessage"
                and (c.params.get("reply_parameters") or {}).get("message_id") == ask["message_id"]
            ]

        await fake.wait_for(answers, what="the answer to /help")
        await asyncio.sleep(1.0)  # time for a second answer, if one were coming
        return len(answers(fake.calls))


async def test_an_update_reaching_two_front_ends_is_answered_once(
    fake: FakeTelegram, tmp_path: Path, analyzer: DlibAnalyzer
) -> None:
    async with redis_prefix() as prefix:
        states = (await redis_state(prefix), await redis_state(prefix))
        try:
            assert await answers_to_one_update_seen_by_both(fake, tmp_path, analyzer, states) == 1
        finally:
            for state in states:
                await state.close()


async def test_without_shared_state_each_front_end_answers(
    fake: FakeTelegram, tmp_path: Path, analyzer: DlibAnalyzer
) -> None:
    """The same set-up without Redis: each front-end only knows its own updates."""
    states = (LocalState(), LocalState())
    assert await answers_to_one_update_seen_by_both(fake, tmp_path, analyzer, states) == 2


async def test_with_redis_gone_updates_are_still_answered(
    fake: FakeTelegram, tmp_path: Path, analyzer: DlibAnalyzer
) -> None:
    aioredis = pytest.importorskip("redis.asyncio", reason="the scale extra is not installed")
    gone = RedisState(aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1))
    try:
        async with front_end(fake, tmp_path / "alone", analyzer, gone) as bot:
            ask = fake.message(CHAT, CAROL, text="/help")
            await bot.application.update_queue.put(
                Update.de_json({"update_id": 7002, "message": ask}, bot.application.bot)
            )
            (answer,) = [
                c
                for c in await fake.wait_for(
                    lambda calls: [c for c in calls if c.method == "sendMessage"],
                    what="the answer to /help",
                )
                if c.method == "sendMessage"
            ]
            assert "/clip" in answer.params["text"]
    finally:
        await gone.close()
