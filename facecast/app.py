"""The composition root: builds settings' store, runner, service and chat adapters once.

``facecast serve`` only calls :func:`build`; tests and other entry points can do the same.
Everything heavy (SQLAlchemy, aiohttp, the chat libraries) is imported here, not by the
command line's other commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web

from bots.base import Adapter
from bots.web import close_sockets, create_app
from core.config import Settings
from core.engines.registry import make_analyzer, make_identity
from core.errors import FaceCastError
from core.jobs.local import LocalJobRunner
from core.service.conversation import Service
from core.service.policy import ProtectedFaces
from core.service.state import StateUnavailable, open_state, state_url
from core.storage.store import Store

if TYPE_CHECKING:
    from core.jobs.taskiq_runner import TaskiqJobRunner

HOUSEKEEPING_GRACE = 10.0  # seconds a round of housekeeping under way may take to finish


def require(module: str, extra: str, because: str) -> None:
    """A clear one-line error when an optional dependency a setting needs is missing."""
    if importlib.util.find_spec(module) is None:
        raise FaceCastError(
            f"{because}, but {module} is not installed: pip install 'facecast[{extra}]'."
        )


def adapters_for(service: Service, application: web.Application) -> list[Adapter]:
    """The chat platforms whose tokens are configured, besides the web chat."""
    settings = service.settings
    adapters: list[Adapter] = []
    if settings.telegram_token is not None:
        require("telegram", "telegram", "FACECAST_TELEGRAM_TOKEN is set")
        from bots.telegram_bot import WEBHOOK_PATH, TelegramBot

        telegram = TelegramBot(service, settings)
        adapters.append(telegram)
        if settings.telegram_webhook_url:
            application.router.add_post(WEBHOOK_PATH, telegram.webhook)
    if settings.discord_token is not None:
        require("discord", "discord", "FACECAST_DISCORD_TOKEN is set")
        from bots.discord_bot import DiscordBot

        adapters.append(DiscordBot(service, settings))
    return adapters


async def make_runner(settings: Settings) -> LocalJobRunner | TaskiqJobRunner:
    """The local process pool, or with FACECAST_BROKER_URL the Taskiq workers."""
    if settings.broker_url is None:
        return LocalJobRunner(settings.workers, settings.max_queue)
    require("taskiq_redis", "scale", "FACECAST_BROKER_URL is set")
    from redis.exceptions import RedisError

    from core.jobs.taskiq_runner import TaskiqJobRunner
    from core.storage.blobs import RedisBlobStore, redis_client

    url = settings.broker_url.get_secret_value()
    redis = redis_client(url)
    try:
        return await TaskiqJobRunner.start(
            settings, redis, RedisBlobStore(redis, settings.broker_prefix)
        )
    except (OSError, RedisError) as exc:
        where = urlsplit(url)  # the host, never the password
        raise FaceCastError(
            f"FACECAST_BROKER_URL: no Redis answers at {where.hostname}:{where.port or 6379} "
            f"({type(exc).__name__})."
        ) from None


async def build(settings: Settings) -> tuple[web.Application, Service, list[Adapter]]:
    """The web application with the service, its runner and every configured adapter, wired
    to start and stop with it."""
    if "+asyncpg" in settings.resolved_database_url:
        require("asyncpg", "postgres", "FACECAST_DATABASE_URL names PostgreSQL (asyncpg)")
    # The broker first: its Redis not answering is said as FACECAST_BROKER_URL's problem,
    # though the shared state defaults to the same URL.
    runner = await make_runner(settings)
    # Redis when several front-ends must share limits and update ids, else this process.
    try:
        state = await open_state(state_url(settings))
    except StateUnavailable as exc:
        await runner.close()
        named = "FACECAST_STATE_URL" if settings.state_url is not None else "FACECAST_BROKER_URL"
        raise StateUnavailable(f"{named}: {exc.message}") from None
    store = await Store.open(settings)
    analyzer = make_analyzer(settings)
    service = Service(
        settings,
        store,
        runner,
        analyzer,
        protected=ProtectedFaces.load(settings, analyzer),
        identity=make_identity(settings, analyzer),
        state=state,
    )
    application = create_app(service)
    adapters = adapters_for(service, application)
    tasks: list[asyncio.Task[None]] = []
    stopping = asyncio.Event()
    housekeeping: list[asyncio.Task[None]] = []

    async def start(_: web.Application) -> None:
        housekeeping.append(asyncio.create_task(service.housekeeping(stopping)))
        if not isinstance(runner, LocalJobRunner):  # workers fetch packs by digest
            folders = [clip.folder for clip in service.clips.all()]
            folders += [template.folder for template in service.memes.all()]
            tasks.append(asyncio.create_task(runner.publish_packs(folders)))
        for adapter in adapters:
            await adapter.start()

    async def drain(_: web.Application) -> None:
        """First thing on SIGTERM: queued users are told at once, running renders get
        FACECAST_SHUTDOWN_GRACE seconds, their replies go out, WebSockets close."""
        await runner.close(grace=settings.shutdown_grace)
        await close_sockets(application)

    async def stop(_: web.Application) -> None:
        for adapter in adapters:
            await adapter.stop()
        stopping.set()  # (a round of housekeeping under way finishes, up to a few seconds)
        for task in housekeeping:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, HOUSEKEEPING_GRACE)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await runner.close()
        await store.close()
        await state.close()

    application.on_startup.append(start)
    application.on_shutdown.append(drain)
    application.on_cleanup.append(stop)
    return application, service, adapters


__all__ = ["adapters_for", "build", "make_runner"]
