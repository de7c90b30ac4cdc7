"""Telegram inline mode: the real python-telegram-bot, run by `facecast serve`, against the
local fake Bot API (inline queries in getUpdates, answerInlineQuery, chosen results)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web

from core.media.images import RGBImage
from core.media.video import read_video

from ..conftest import free_port, jpeg, start_serve, stop_serve
from ..fakes.telegram_api import Call, FakeTelegram
from .test_telegram import private, replies_to

pytestmark = pytest.mark.asyncio(loop_scope="module")
TOKEN = "123456:INLINE-TOKEN"
CACHE_CHAT = -1004242  # the operator's upload chat
QUOTA = 4
ALICE = {"id": 601, "is_bot": False, "first_name": "Alice"}
DAVE = {"id": 604, "is_bot": False, "first_name": "Dave"}
ERIN = {"id": 605, "is_bot": False, "first_name": "Erin"}
CAPTION = "when the build | finally passes"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def fake() -> AsyncIterator[FakeTelegram]:
    api = FakeTelegram(TOKEN)
    runner = web.AppRunner(api.app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    api.port = port  # type: ignore[attr-defined]
    yield api
    await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("telegram-inline-data")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bot(fake: FakeTelegram, data_dir: Path) -> AsyncIterator[subprocess.Popen[str]]:
    port = fake.port  # type: ignore[attr-defined]
    env = {
        "FACECAST_DATA_DIR": str(data_dir),
        "FACECAST_TELEGRAM_TOKEN": TOKEN,
        "FACECAST_TELEGRAM_BASE_URL": f"http://127.0.0.1:{port}/bot",
        "FACECAST_TELEGRAM_BASE_FILE_URL": f"http://127.0.0.1:{port}/file/bot",
        "FACECAST_TELEGRAM_POLL_TIMEOUT": "1",
        "FACECAST_TELEGRAM_CACHE_CHAT": str(CACHE_CHAT),
        "FACECAST_DAILY_QUOTA": str(QUOTA),
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
        await stop_serve(process)


async def enrol(fake: FakeTelegram, user: dict[str, object], picture: RGBImage) -> Call:
    """Send a selfie in the user's DM; returns the preview meme the bot sent back."""
    message = fake.message(private(user), user, photo=jpeg(picture))
    fake.push({"message": message})
    mine = replies_to(message["message_id"], "sendMessage", "sendAnimation")
    await fake.wait_for(
        lambda calls: any(c.params.get("reply_markup") for c in mine(calls)),
        what=f"{user['first_name']}'s enrolment",
    )
    (preview,) = [c for c in mine(fake.calls) if c.method == "sendAnimation"]
    return preview


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def alice_preview(
    fake: FakeTelegram, bot: subprocess.Popen[str], astronaut: RGBImage
) -> Call:
    return await enrol(fake, ALICE, astronaut)


async def answer(fake: FakeTelegram, update: dict[str, object], timeout: float = 30) -> Call:
    await fake.wait_for(lambda calls: fake.answers_to(update), timeout, what="the inline answer")
    (answered,) = fake.answers_to(update)
    return answered


def uploads(fake: FakeTelegram) -> list[Call]:
    return [c for c in fake.sent("sendAnimation") if c.params.get("chat_id") == CACHE_CHAT]


def first_frame(data: bytes, path: Path) -> np.ndarray:
    path.write_bytes(data)
    return next(iter(read_video(path))).astype(int)


def usage(data_dir: Path, table: str = "usage") -> int:
    with sqlite3.connect(data_dir / "facecast.db") as db:
        where = " WHERE kind = 'render'" if table == "usage" else ""
        return int(db.execute(f"SELECT COUNT(*) FROM {table}{where}").fetchone()[0])


async def test_a_user_without_a_face_gets_the_selfie_button(
    fake: FakeTelegram, bot: subprocess.Popen[str]
) -> None:
    before = len(uploads(fake))
    update = fake.inline_query(ERIN, "deal-with-it hello")
    fake.push(update)
    answered = await answer(fake, update)
    assert answered.params["results"] == []
    button = answered.params["button"]
    assert button["text"] == "Send me a selfie first"
    assert button["start_parameter"] == "selfie"  # opens the bot's DM with /start selfie
    assert answered.params["is_personal"] is True
    assert len(uploads(fake)) == before  # nothing was rendered


async def test_an_inline_query_offers_a_fresh_meme_with_its_caption(
    fake: FakeTelegram, alice_preview: Call, tmp_path: Path
) -> None:
    before = len(uploads(fake))
    typing = fake.inline_query(ALICE, "deal-with-it when the")
    fake.push(typing)
    await asyncio.sleep(0.2)  # the user types on before the bot renders anything
    update = fake.inline_query(ALICE, f"deal-with-it {CAPTION}")
    started = time.monotonic()
    fake.push(update)
    answered = await answer(fake, update)
    assert time.monotonic() - started < 5
    assert answered.params["is_personal"] is True
    assert answered.params["cache_time"] <= 10
    fresh, *others = answered.params["results"]
    assert fresh["type"] == "mpeg4_gif"
    assert fresh["title"] == f"Deal with it: {CAPTION}"
    assert fresh["caption"] == "Deal with it (AI-made)"  # labelled as in chats
    (upload,) = uploads(fake)[before:]  # one render: the superseded query got none
    assert upload.result["animation"]["file_id"] == fresh["mpeg4_file_id"]
    await fake.wait_for(
        lambda calls: any(
            c.method == "deleteMessage"
            and c.params == {"chat_id": CACHE_CHAT, "message_id": upload.result["message_id"]}
            for c in calls
        ),
        what="the upload deleted from the cache chat",
    )
    assert alice_preview.result["animation"]["file_id"] in [r["mpeg4_file_id"] for r in others]
    await asyncio.sleep(1)
    assert not fake.answers_to(typing)

    # The upload is the meme with the query's caption: the same as /meme in her DM.
    own = fake.message(private(ALICE), ALICE, text=f"/meme deal-with-it {CAPTION}")
    fake.push({"message": own})
    await fake.wait_for(replies_to(own["message_id"], "sendAnimation"), what="the DM meme")
    (dm,) = replies_to(own["message_id"], "sendAnimation")(fake.calls)
    inline = first_frame(upload.files["animation"], tmp_path / "inline.mp4")
    chat = first_frame(dm.files["animation"], tmp_path / "dm.mp4")
    preview = first_frame(alice_preview.files["animation"], tmp_path / "preview.mp4")
    assert np.abs(inline - chat).mean() < 3
    assert np.abs(inline - preview).mean() > 3 * np.abs(inline - chat).mean()  # captioned

    # Asked again: the kept file id, at once, with no new render or upload.
    again = fake.inline_query(ALICE, f"deal-with-it {CAPTION}")
    started = time.monotonic()
    fake.push(again)
    repeated = await answer(fake, again)
    assert time.monotonic() - started < 2.5
    assert repeated.params["results"][0]["mpeg4_file_id"] == fresh["mpeg4_file_id"]
    assert len(uploads(fake)) == before + 1


async def test_an_empty_query_lists_recent_renders(fake: FakeTelegram, alice_preview: Call) -> None:
    update = fake.inline_query(ALICE, "")
    fake.push(update)
    answered = await answer(fake, update, timeout=5)
    results = answered.params["results"]
    assert alice_preview.result["animation"]["file_id"] in [r["mpeg4_file_id"] for r in results]
    assert all(r["id"].startswith("f") and r["caption"].endswith("(AI-made)") for r in results)
    assert answered.params.get("button") is None


async def test_a_chosen_result_is_recorded_and_counts_against_the_quota(
    fake: FakeTelegram, bot: subprocess.Popen[str], data_dir: Path, group_photo: RGBImage
) -> None:
    await enrol(fake, DAVE, np.ascontiguousarray(group_photo[200:520, 380:650]))  # 1 render
    listing = fake.inline_query(DAVE, "")
    fake.push(listing)
    (result,) = (await answer(fake, listing)).params["results"]
    counted = usage(data_dir)
    for _ in range(QUOTA - 1):
        fake.push(fake.chosen_inline_result(DAVE, result["id"]))
    for _ in range(100):
        if usage(data_dir) == counted + QUOTA - 1:
            break
        await asyncio.sleep(0.1)
    assert usage(data_dir) == counted + QUOTA - 1

    # The day's quota is used up: inline mode says so, and so does the chat.
    refused = fake.inline_query(DAVE, "spin hello")
    fake.push(refused)
    answered = await answer(fake, refused)
    assert "daily limit" in answered.params["button"]["text"]
    assert answered.params["results"] == []  # nothing more to send today
    ask = fake.message(private(DAVE), DAVE, text="/meme spin")
    fake.push({"message": ask})
    await fake.wait_for(replies_to(ask["message_id"], "sendMessage"), what="the refusal")
    (refusal,) = replies_to(ask["message_id"], "sendMessage")(fake.calls)
    assert "daily limit" in refusal.params["text"]

    # /forget forgets the kept file ids too; a late choice of one is not counted.
    kept = usage(data_dir, "sent_files")
    bye = fake.message(private(DAVE), DAVE, text="/forget")
    fake.push({"message": bye})
    await fake.wait_for(replies_to(bye["message_id"], "sendMessage"), what="the goodbye")
    assert usage(data_dir, "sent_files") == kept - 1
    counted = usage(data_dir)
    fake.push(fake.chosen_inline_result(DAVE, result["id"]))
    again = fake.inline_query(DAVE, "")
    fake.push(again)
    assert (await answer(fake, again)).params["button"]["start_parameter"] == "selfie"
    assert usage(data_dir) == counted


FRANK = {"id": 606, "is_bot": False, "first_name": "Frank"}
GRACE = {"id": 607, "is_bot": False, "first_name": "Grace"}


async def test_without_a_cache_chat_renders_go_through_the_users_dm(
    fake: FakeTelegram,
    bot: subprocess.Popen[str],
    astronaut: RGBImage,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """No FACECAST_TELEGRAM_CACHE_CHAT: the upload goes to the user's DM and is deleted
    there at once; a user who blocked the bot is told to open a chat first. (A second bot,
    on a webhook, so that it does not share the module bot's getUpdates.)"""
    import aiohttp

    port = fake.port  # type: ignore[attr-defined]
    web_port = free_port()
    env = {
        "FACECAST_DATA_DIR": str(tmp_path_factory.mktemp("telegram-inline-dm")),
        "FACECAST_TELEGRAM_TOKEN": TOKEN,
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
        hook = fake.sent("setWebhook")[-1]
        assert {"inline_query", "chosen_inline_result"} <= set(hook.params["allowed_updates"])
        headers = {"X-Telegram-Bot-Api-Secret-Token": hook.params["secret_token"]}
        url = f"http://127.0.0.1:{web_port}/telegram/webhook"
        update_ids = iter(range(990_001, 990_100))
        async with aiohttp.ClientSession() as client:
            for _ in range(100):  # the web server listens once startup is done
                try:
                    async with client.get(f"http://127.0.0.1:{web_port}/healthz") as health:
                        if health.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)

            async def deliver(update: dict[str, object]) -> None:
                body = {"update_id": next(update_ids), **update}
                async with client.post(url, json=body, headers=headers) as response:
                    assert response.status == 200

            for user in (FRANK, GRACE):
                selfie = fake.message(private(user), user, photo=jpeg(astronaut))
                await deliver({"message": selfie})
                mine = replies_to(selfie["message_id"], "sendMessage")
                await fake.wait_for(
                    lambda calls, mine=mine: any(c.params.get("reply_markup") for c in mine(calls)),
                    what="the enrolment",
                )
            query = fake.inline_query(FRANK, "spin it works")
            await deliver(query)
            answered = await answer(fake, query)
            (upload,) = [  # in his own DM, silently...
                c
                for c in fake.sent("sendAnimation")
                if c.params.get("chat_id") == FRANK["id"] and c.params.get("disable_notification")
            ]
            offered = answered.params["results"][0]["mpeg4_file_id"]
            assert offered == upload.result["animation"]["file_id"]
            deleted = {"chat_id": FRANK["id"], "message_id": upload.result["message_id"]}
            assert any(c.params == deleted for c in fake.sent("deleteMessage"))  # ...not kept

            fake.blocked.add(GRACE["id"])
            try:
                query = fake.inline_query(GRACE, "spin it works")
                await deliver(query)
                answered = await answer(fake, query)
            finally:
                fake.blocked.discard(GRACE["id"])
            assert answered.params["button"]["text"].startswith("Open a chat with me first")
            assert answered.params["results"][0]["caption"].endswith("(AI-made)")  # her preview
    finally:
        await stop_serve(process)
