"""FaceCast as a user-installable Discord app: the real discord.py, run by `facecast serve`
with a global command sync, against the local fake, answering interactions from chats the
bot is not in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web

from core.media.images import RGBImage

from ..conftest import free_port, jpeg, start_serve, stop_serve
from ..fakes.discord_api import (
    APP_ID,
    BOT_DM_CONTEXT,
    ELSEWHERE_GUILD_ID,
    GUILD_CONTEXT,
    GUILD_INSTALL,
    PRIVATE_CHANNEL_CONTEXT,
    USER_INSTALL,
    Call,
    FakeDiscord,
)
from .test_discord import ALICE, BOB, CAROL, followups, frames, posted_file

pytestmark = pytest.mark.asyncio(loop_scope="module")
GLOBAL = f"/applications/{APP_ID}/commands"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def fake() -> AsyncIterator[FakeDiscord]:
    api = FakeDiscord()
    runner = web.AppRunner(api.app)
    await runner.setup()
    api.port = free_port()
    await web.TCPSite(runner, "127.0.0.1", api.port).start()
    yield api
    await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bot(fake: FakeDiscord, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Path]:
    """`facecast serve` with Discord, syncing its commands globally (user installs see only
    global commands); its data folder."""
    data = tmp_path_factory.mktemp("discord-user-app")
    env = {
        "FACECAST_DATA_DIR": str(data),
        "FACECAST_DISCORD_TOKEN": "discord-test-token",
        "FACECAST_DISCORD_API_BASE": fake.url("/api/v10"),
        "FACECAST_DISCORD_GATEWAY_URL": f"ws://127.0.0.1:{fake.port}/gateway",
        "FACECAST_DISCORD_SYNC_GLOBAL": "true",
        "FACECAST_WORKERS": "2",
    }
    process = start_serve(env, free_port())
    try:
        await asyncio.wait_for(fake.identified.wait(), 60)
        await fake.wait_for(lambda calls: fake.calls_to("PUT", GLOBAL), what="the global sync")
        await asyncio.sleep(0.5)
        yield data
    finally:
        await stop_serve(process)


async def enrol_in_dm(fake: FakeDiscord, user: dict[str, Any], picture: RGBImage) -> None:
    """/face in the bot's DM, FaceCast installed to the user's account only."""
    attachment = fake.add_attachment(jpeg(picture), "me.jpg", "image/jpeg")
    interaction = fake.user_app_interaction(
        user,
        {
            "id": "1",
            "name": "face",
            "type": 1,
            "options": [{"name": "image", "type": 11, "value": attachment["id"]}],
            "resolved": {"attachments": {attachment["id"]: attachment}},
        },
        where="dm",
    )
    assert interaction["context"] == BOT_DM_CONTEXT
    assert "guild_id" not in interaction
    await posted_file(fake, interaction, "the enrolment preview")


def untouched_channels(fake: FakeDiscord) -> bool:
    """Nothing was read from or posted to a channel the bot is not in."""
    return not [c for c in fake.calls if c.path.startswith("/channels/")]


async def test_commands_are_registered_for_user_installs(fake: FakeDiscord, bot: Path) -> None:
    names = {c["name"] for c in fake.commands[GLOBAL]}
    assert {"face", "clip", "meme", "faces", "forget", "help", "Meme this"} <= names
    for name in names:
        command = fake.command(GLOBAL, name)
        assert command["integration_types"] == [GUILD_INSTALL, USER_INSTALL], name
        assert command["contexts"] == [GUILD_CONTEXT, BOT_DM_CONTEXT, PRIVATE_CHANNEL_CONTEXT]
    assert fake.command(GLOBAL, "Meme this")["type"] == 3  # a message context menu


async def test_meme_from_a_user_install_in_a_server_without_the_bot(
    fake: FakeDiscord, bot: Path, astronaut: RGBImage, tmp_path: Path
) -> None:
    await enrol_in_dm(fake, ALICE, astronaut)
    ask = fake.slash(
        ALICE, "meme", {"template": "spin", "top": "shipped", "bottom": "it"}, user_app="guild"
    )
    assert ask["guild_id"] == ELSEWHERE_GUILD_ID  # a server READY never announced
    assert ask["authorizing_integration_owners"] == {str(USER_INSTALL): ALICE["id"]}
    made = await posted_file(fake, ask, "the meme")
    assert made[:6] == b"GIF89a"
    assert len(frames(made, tmp_path, "spin.gif")) > 10
    assert fake.calls_to("POST", f"/interactions/{ask['id']}/")[0].json["type"] == 5
    assert untouched_channels(fake)


async def test_clip_from_a_user_install_in_a_group_dm(
    fake: FakeDiscord, bot: Path, astronaut: RGBImage, tmp_path: Path
) -> None:
    await enrol_in_dm(fake, ALICE, astronaut)
    limit = 600_000
    ask = fake.slash(ALICE, "clip", {"clip": "astronaut-pan"}, user_app="group", size_limit=limit)
    assert "guild_id" not in ask
    assert ask["context"] == PRIVATE_CHANNEL_CONTEXT
    clip = await posted_file(fake, ask, "the clip")
    assert clip[4:8] == b"ftyp"
    assert len(clip) <= limit
    assert len(frames(clip, tmp_path, "clip.mp4")) == 72
    assert untouched_channels(fake)


async def test_meme_this_without_consent_uses_the_requester_with_a_note(
    fake: FakeDiscord, bot: Path, group_photo: RGBImage, astronaut: RGBImage, tmp_path: Path
) -> None:
    await enrol_in_dm(fake, BOB, np.ascontiguousarray(group_photo[200:520, 380:650]))
    await enrol_in_dm(fake, CAROL, astronaut)  # she has a face, but never said /optin
    carols = fake.message(CAROL, "ship it on a friday", channel_id="880000000000000002")
    meme_this = fake.user_app_interaction(
        BOB,
        {
            "id": "3",
            "name": "Meme this",
            "type": 3,
            "target_id": carols["id"],
            "resolved": {"messages": {carols["id"]: carols}},
        },
        where="guild",
    )
    made = await posted_file(fake, meme_this, "the meme")
    texts = [
        c.json.get("content", "")
        for c in followups(meme_this, fake.calls)
        if isinstance(c.json, dict)
    ]
    assert any("Carol hasn't opted in" in t for t in texts)
    own = fake.slash(BOB, "meme", {"template": "deal-with-it"}, user_app="dm")
    reference = await posted_file(fake, own, "Bob's own meme")
    a = frames(made, tmp_path, "a.gif")[0].astype(int)
    b = frames(reference, tmp_path, "b.gif")[0].astype(int)
    assert np.abs(a - b)[80:250, 80:280].mean() < 4
    assert untouched_channels(fake)
    calls: list[Call] = followups(meme_this, fake.calls)
    assert len(calls) <= 5  # a user install's follow-up cap
