"""No configured secret reaches the log of `facecast serve`."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import SecretStr

from core.config import Settings
from facecast.logs import REDACTED, RedactSecrets, secrets_of

from ..conftest import free_port, start_serve
from ..fakes.telegram_api import FakeTelegram

TOKEN = "123456:SECRET-token_with/slash"
SECRET_KEY = "s3cret-key-for-sessions"


async def test_serve_never_logs_the_telegram_token(tmp_path: Path) -> None:
    fake = FakeTelegram(TOKEN)
    runner = web.AppRunner(fake.app)
    await runner.setup()
    api = free_port()
    await web.TCPSite(runner, "127.0.0.1", api).start()
    process = start_serve(
        {
            "FACECAST_DATA_DIR": str(tmp_path / "data"),
            "FACECAST_TELEGRAM_TOKEN": TOKEN,
            "FACECAST_SECRET_KEY": SECRET_KEY,
            "FACECAST_TELEGRAM_BASE_URL": f"http://127.0.0.1:{api}/bot",
            "FACECAST_TELEGRAM_BASE_FILE_URL": f"http://127.0.0.1:{api}/file/bot",
            "FACECAST_TELEGRAM_POLL_TIMEOUT": "0",
            "FACECAST_WORKERS": "1",
        },
        free_port(),
    )
    try:
        await fake.wait_for(
            lambda calls: any(c.method == "setMyCommands" for c in calls),
            timeout=60,
            what="the bot to register its commands",
        )
        alice = {"id": 501, "is_bot": False, "first_name": "Alice"}
        chat = {"id": 501, "type": "private", "first_name": "Alice"}
        fake.push({"message": fake.message(chat, alice, text="/help")})
        await fake.wait_for(
            lambda calls: any(c.method == "sendMessage" for c in calls),
            what="the answer to /help (so getUpdates was polled)",
        )
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(process.communicate, timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        await runner.cleanup()
    assert process.returncode == 0, err
    assert "Traceback" not in err, err
    assert "FaceCast web chat" in out
    for secret in (TOKEN, SECRET_KEY, "SECRET-token", "123456%3ASECRET"):
        assert secret not in out
        assert secret not in err, err


def test_filter_scrubs_message_arguments_and_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(
        telegram_token=SecretStr(TOKEN),
        discord_token=SecretStr("discord.TOKEN.xyz"),
        secret_key=SecretStr(SECRET_KEY),
    )
    handler = logging.StreamHandler()
    handler.addFilter(RedactSecrets(secrets_of(settings)))
    logger = logging.getLogger("facecast.test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("POST https://api/bot%s/getMe with key %s", TOKEN, SECRET_KEY)
        logger.warning("quoted: https://api/bot123456%3ASECRET-token_with%2Fslash/x")
        logger.warning("Authorization: Bot %s", "discord.TOKEN.xyz")
        try:
            raise RuntimeError(f"bad token {TOKEN}")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert err.count(REDACTED) == 5, err
    assert "RuntimeError" in err
    for secret in ("SECRET-token", "123456%3A", SECRET_KEY, "discord.TOKEN"):
        assert secret not in err, err


def test_each_of_several_secret_keys_is_redacted_alone() -> None:
    settings = Settings(secret_key=SecretStr("new-key-one, old-key-two"))
    scrub = RedactSecrets(secrets_of(settings)).scrub
    assert scrub("rotating from old-key-two to new-key-one") == (
        f"rotating from {REDACTED} to {REDACTED}"
    )


def test_the_brokers_password_is_redacted() -> None:
    settings = Settings(broker_url=SecretStr("redis://:s3cret-redis-pass@redis.internal:6379/0"))
    scrub = RedactSecrets(secrets_of(settings)).scrub
    assert scrub("Error connecting to redis://:s3cret-redis-pass@redis.internal") == (
        f"Error connecting to redis://:{REDACTED}@redis.internal"
    )


def test_the_shared_states_password_is_redacted_too() -> None:
    settings = Settings(
        broker_url=SecretStr("redis://:broker-pass@redis.internal:6379/0"),
        state_url=SecretStr("redis://:state-pass@state.internal:6379/1"),
    )
    scrub = RedactSecrets(secrets_of(settings)).scrub
    assert scrub("redis://:state-pass@state.internal and redis://:broker-pass@x") == (
        f"redis://:{REDACTED}@state.internal and redis://:{REDACTED}@x"
    )
