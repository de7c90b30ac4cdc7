"""The real discord.py, run by `facecast serve`, against a local fake REST API and gateway."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web
from skimage.data import astronaut as data_astronaut

from bots.base import GENERIC_ERROR
from core.media.images import RGBImage
from core.media.video import read_video

from ..conftest import CLIP_TONE_AT, audio_of, free_port, jpeg, start_serve, stop_serve
from ..fakes.discord_api import APP_ID, GUILD_ID, Call, FakeDiscord

pytestmark = pytest.mark.asyncio(loop_scope="module")
# Unexpected errors tests cause on purpose: each is logged once, with its traceback.
CAUSED: list[str] = []
ALICE = {
    "id": "600000000000000001",
    "username": "alice",
    "discriminator": "0",
    "global_name": "Alice",
    "avatar": None,
}
BOB = {
    "id": "600000000000000002",
    "username": "bob",
    "discriminator": "0",
    "global_name": "Bob",
    "avatar": None,
}
CAROL = {
    "id": "600000000000000003",
    "username": "carol",
    "discriminator": "0",
    "global_name": "Carol",
    "avatar": None,
}


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
    """`facecast serve` with Discord; its data folder."""
    data = tmp_path_factory.mktemp("discord-data")
    env = {
        "FACECAST_DATA_DIR": str(data),
        "FACECAST_DISCORD_TOKEN": "discord-test-token",
        "FACECAST_DISCORD_API_BASE": fake.url("/api/v10"),
        "FACECAST_DISCORD_GATEWAY_URL": f"ws://127.0.0.1:{fake.port}/gateway",
        "FACECAST_DISCORD_GUILD_IDS": json.dumps([int(GUILD_ID)]),
        "FACECAST_WORKERS": "2",
    }
    process = start_serve(env, free_port())
    try:
        await asyncio.wait_for(fake.identified.wait(), 60)
        await fake.wait_for(
            lambda calls: any(c.method == "PUT" and "/commands" in c.path for c in calls),
            what="the command sync",
        )
        await asyncio.sleep(0.5)
        yield data
    finally:
        await stop_serve(process, caused=CAUSED)


def to(interaction: dict[str, Any]):  # type: ignore[no-untyped-def]
    """The calls answering one interaction: its callback and its webhook messages."""

    def calls(all_calls: list[Call]) -> list[Call]:
        return [
            c
            for c in all_calls
            if f"/interactions/{interaction['id']}/" in c.path or interaction["token"] in c.path
        ]

    return calls


def followups(interaction: dict[str, Any], all_calls: list[Call]) -> list[Call]:
    return [
        c
        for c in to(interaction)(all_calls)
        if c.method == "POST" and c.path.startswith("/webhooks/")
    ]


def with_file(interaction: dict[str, Any]):  # type: ignore[no-untyped-def]
    return lambda calls: any(c.files for c in followups(interaction, calls))


async def posted_file(fake: FakeDiscord, interaction: dict[str, Any], what: str) -> bytes:
    """Send the interaction and return the one file its follow-ups posted."""
    await fake.dispatch("INTERACTION_CREATE", interaction)
    await fake.wait_for(with_file(interaction), what=what)
    (posted,) = [c for c in followups(interaction, fake.calls) if c.files]
    (data,) = posted.files.values()
    return data


def frames(data: bytes, tmp: Path, name: str) -> list[RGBImage]:
    path = tmp / name
    path.write_bytes(data)
    return list(read_video(path))


async def enrol(fake: FakeDiscord, user: dict[str, Any], picture: RGBImage) -> dict[str, Any]:
    attachment = fake.add_attachment(jpeg(picture), "me.jpg", "image/jpeg")
    interaction = fake.interaction(
        user,
        {
            "id": "1",
            "name": "face",
            "type": 1,
            "options": [{"name": "image", "type": 11, "value": attachment["id"]}],
            "resolved": {"attachments": {attachment["id"]: attachment}},
        },
    )
    await posted_file(fake, interaction, "the enrolment preview")
    return interaction


async def test_login_and_guild_command_sync(fake: FakeDiscord, bot: None) -> None:
    assert fake.calls_to("GET", "/users/@me")
    synced = fake.commands[f"/applications/{APP_ID}/guilds/{GUILD_ID}/commands"]
    names = {c["name"] for c in synced}
    assert {
        "face",
        "clip",
        "meme",
        "faces",
        "forget",
        "optin",
        "optout",
        "verify",
        "help",
        "Meme this",
    } <= names
    assert not fake.calls_to("PUT", f"/applications/{APP_ID}/commands")  # no global sync
    # The gateway session stays alive: the client heartbeats and gets ACKs.
    for _ in range(40):
        if fake.heartbeats:
            break
        await asyncio.sleep(0.1)
    assert fake.heartbeats >= 1


async def test_face_defers_then_posts_the_preview(
    fake: FakeDiscord, bot: None, astronaut: RGBImage, tmp_path: Path
) -> None:
    interaction = await enrol(fake, ALICE, astronaut)
    answers = to(interaction)(fake.calls)
    assert answers[0].path.endswith("/callback")
    assert answers[0].json["type"] == 5  # deferred within the 3-second window
    assert any(c.method == "PATCH" and c.path.endswith("@original") for c in answers)  # progress
    (preview,) = [c for c in followups(interaction, fake.calls) if c.files]
    (data,) = preview.files.values()
    assert data[:6] == b"GIF89a"
    assert len(frames(data, tmp_path, "preview.gif")) == 30


async def test_clip_autocomplete_and_render(fake: FakeDiscord, bot: None, tmp_path: Path) -> None:
    typing = fake.slash(ALICE, "clip", {"clip": "pan"}, focused="clip")
    await fake.dispatch("INTERACTION_CREATE", typing)
    await fake.wait_for(lambda calls: to(typing)(calls), what="the autocomplete answer")
    (answer,) = to(typing)(fake.calls)
    assert answer.json["type"] == 8
    assert [c["value"] for c in answer.json["data"]["choices"]] == ["astronaut-pan"]

    ask = fake.slash(ALICE, "clip", {"clip": "astronaut-pan"})
    clip = await posted_file(fake, ask, "the clip")
    assert clip[4:8] == b"ftyp"  # MP4 by default: small, and Discord plays it inline
    assert len(frames(clip, tmp_path, "clip.mp4")) == 72
    ask = fake.slash(ALICE, "clip", {"clip": "astronaut-pan", "format": "gif"})
    gif = await posted_file(fake, ask, "the clip as a GIF")
    assert gif[:6] == b"GIF89a"
    assert len(frames(gif, tmp_path, "clip.gif")) in (36, 72)  # 12 fps or more


async def test_meme_this_on_a_non_consenting_member_uses_the_invoker(
    fake: FakeDiscord, bot: None, group_photo: RGBImage, tmp_path: Path
) -> None:
    await enrol(fake, BOB, np.ascontiguousarray(group_photo[200:520, 380:650]))
    carols = fake.message(CAROL, "ship it on a friday")
    meme_this = fake.interaction(
        BOB,
        {
            "id": "3",
            "name": "Meme this",
            "type": 3,
            "target_id": carols["id"],
            "resolved": {"messages": {carols["id"]: carols}},
        },
    )
    made = await posted_file(fake, meme_this, "the meme")
    texts = [
        c.json.get("content", "")
        for c in followups(meme_this, fake.calls)
        if isinstance(c.json, dict)
    ]
    assert any("Carol hasn't opted in" in t for t in texts)
    own = fake.slash(BOB, "meme", {"template": "deal-with-it"})
    reference = await posted_file(fake, own, "Bob's own meme")
    a = frames(made, tmp_path, "a.gif")[0].astype(int)
    b = frames(reference, tmp_path, "b.gif")[0].astype(int)
    assert np.abs(a - b)[80:250, 80:280].mean() < 4


async def test_an_oversize_result_is_shrunk_below_the_limit(fake: FakeDiscord, bot: None) -> None:
    limit = 400_000
    ask = fake.slash(ALICE, "clip", {"clip": "astronaut-shake"}, size_limit=limit)
    assert len(await posted_file(fake, ask, "the shrunk clip")) <= limit


async def test_errors_are_ephemeral(fake: FakeDiscord, bot: None) -> None:
    stranger = {**CAROL, "id": "600000000000000009", "username": "dave", "global_name": "Dave"}
    ask = fake.slash(stranger, "clip", {"clip": "astronaut-pan"})
    await fake.dispatch("INTERACTION_CREATE", ask)
    await fake.wait_for(lambda calls: followups(ask, calls), what="the error")
    (error,) = followups(ask, fake.calls)
    assert "don't have your face" in error.json["content"]
    assert error.json["flags"] & 64  # only the user sees it


async def test_a_dm_selfie_enrols(fake: FakeDiscord, bot: None, astronaut: RGBImage) -> None:
    attachment = fake.add_attachment(jpeg(astronaut), "selfie.jpg", "image/jpeg")
    dm = "810000000000000001"
    message = fake.message(CAROL, "", channel_id=dm, attachments=[attachment])
    await fake.dispatch("MESSAGE_CREATE", message)

    def answers(calls: list[Call]) -> list[Call]:
        return [c for c in calls if c.path == f"/channels/{dm}/messages"]

    await fake.wait_for(
        lambda calls: any("/clip" in (c.json or {}).get("content", "") for c in answers(calls)),
        what="the whole DM answer",
    )
    assert any(c.files for c in answers(fake.calls))
    texts = [
        c.json.get("content", "")
        for c in fake.calls
        if c.path == f"/channels/{dm}/messages" and isinstance(c.json, dict)
    ]
    assert any("Got your face" in t for t in texts)


def original_edits(interaction: dict[str, Any], all_calls: list[Call]) -> list[Call]:
    return [
        c
        for c in to(interaction)(all_calls)
        if c.method == "PATCH" and c.path.endswith("@original")
    ]


async def test_progress_edits_are_throttled(fake: FakeDiscord, bot: Path) -> None:
    """At most one edit of the deferred response every 1.5 s; the result's "Done!" at once."""
    dave = {**CAROL, "id": "600000000000000010", "username": "dave", "global_name": "Dave"}
    await enrol(fake, dave, np.ascontiguousarray(data_astronaut()))
    ask = fake.slash(dave, "clip", {"clip": "astronaut-shake"})
    await posted_file(fake, ask, "the clip")
    await fake.wait_for(
        lambda calls: any(
            (c.json or {}).get("content") == "Done!" for c in original_edits(ask, calls)
        ),
        what="the last edit",
    )
    edits = original_edits(ask, fake.calls)
    progress = [c for c in edits if (c.json or {}).get("content") != "Done!"]
    assert progress  # progress was shown...
    gaps = [b.at - a.at for a, b in itertools.pairwise(progress)]
    assert all(gap >= 1.4 for gap in gaps), gaps  # ...but not faster than Discord allows
    assert edits[-1].json["content"] == "Done!"


async def test_an_unexpected_error_is_one_friendly_private_reply(
    fake: FakeDiscord, bot: Path
) -> None:
    """The database breaking under the service: one friendly message, "thinking…" resolved."""
    database = bot / "facecast.db"
    with sqlite3.connect(database) as db:
        db.execute("ALTER TABLE users RENAME TO users_away")
    CAUSED.append("no such table: users")
    try:
        ask = fake.slash(ALICE, "clip", {"clip": "astronaut-pan"})
        await fake.dispatch("INTERACTION_CREATE", ask)
        await fake.wait_for(lambda calls: followups(ask, calls), what="the error")
        await fake.wait_for(
            lambda calls: any(c.method == "DELETE" for c in to(ask)(calls)),
            what="the deferred response resolved",
        )
    finally:
        with sqlite3.connect(database) as db:
            db.execute("ALTER TABLE users_away RENAME TO users")
    (error,) = followups(ask, fake.calls)
    assert error.json["content"] == GENERIC_ERROR
    assert error.json["flags"] & 64
    assert to(ask)(fake.calls)[0].json["type"] == 5  # it had been deferred ("thinking…")


async def test_a_failed_status_edit_does_not_stop_the_result(
    fake: FakeDiscord, bot: Path, tmp_path: Path
) -> None:
    erin = {**CAROL, "id": "600000000000000011", "username": "erin", "global_name": "Erin"}
    await enrol(fake, erin, np.ascontiguousarray(data_astronaut()))
    ask = fake.slash(erin, "meme", {"template": "spin"})
    fake.failing_edits.add(ask["token"])  # editing the original response answers 404
    made = await posted_file(fake, ask, "the meme despite failed edits")
    assert original_edits(ask, fake.calls)  # progress was tried, and refused
    assert len(frames(made, tmp_path, "spin.gif")) > 10


async def test_a_clip_with_sound_is_posted_with_it(
    fake: FakeDiscord, bot: Path, sound_clip_folder: Path, tmp_path: Path
) -> None:
    shutil.copytree(sound_clip_folder, bot / "clips" / "tone")  # the operator adds it
    fay = {**CAROL, "id": "600000000000000012", "username": "fay", "global_name": "Fay"}
    await enrol(fake, fay, np.ascontiguousarray(data_astronaut()))
    made = await posted_file(fake, fake.slash(fay, "clip", {"clip": "tone"}), "the clip")
    received = tmp_path / "tone.mp4"
    received.write_bytes(made)  # an MP4 attachment: Discord plays it inline, with its sound
    heard = audio_of(received)
    assert heard is not None
    assert heard[0] == pytest.approx(CLIP_TONE_AT, abs=0.01)


ERIN = {
    "id": "600000000000000005",
    "username": "erin",
    "discriminator": "0",
    "global_name": "Erin",
    "avatar": None,
}


async def test_verify_shows_the_challenge_then_checks_the_attached_video(
    fake: FakeDiscord, bot: None, astronaut: RGBImage, tmp_path: Path
) -> None:
    from core.faces.analyzer import DlibAnalyzer
    from core.faces.liveness import INSTRUCTIONS

    from ..core.faces.synthetic_head import astronaut_head, write_challenge

    async def contents(interaction: dict[str, Any], words: str) -> list[str]:
        await fake.dispatch("INTERACTION_CREATE", interaction)

        def said(calls: list[Call]) -> list[str]:
            return [
                str(c.json.get("content", ""))
                for c in followups(interaction, calls)
                if isinstance(c.json, dict)
            ]

        await fake.wait_for(
            lambda calls: any(words in t for t in said(calls)), what=f"an answer with {words!r}"
        )
        return said(fake.calls)

    await enrol(fake, ERIN, astronaut)
    (asked,) = await contents(fake.slash(ERIN, "verify", {}), "Verify it's you")
    assert "/verify video:" in asked
    (challenge,) = [kind for kind, words in INSTRUCTIONS.items() if words in asked]

    video = write_challenge(tmp_path / "me.mp4", astronaut_head(DlibAnalyzer()), challenge)
    attachment = fake.add_attachment(video.read_bytes(), "me.mp4", "video/mp4")
    answer = fake.interaction(
        ERIN,
        {
            "id": "5",
            "name": "verify",
            "type": 1,
            "options": [{"name": "video", "type": 11, "value": attachment["id"]}],
            "resolved": {"attachments": {attachment["id"]: attachment}},
        },
    )
    verdict = await contents(answer, "erified")
    assert verdict[-1].startswith("Verified"), verdict
    optin = await contents(fake.slash(ERIN, "optin", {}), "OK")
    assert "can now put your face" in optin[-1]
