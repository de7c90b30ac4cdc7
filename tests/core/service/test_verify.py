"""/verify through the service: a random challenge, a video answering it checked in a
worker, the face marked verified, and only then /optin."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.config import Settings
from core.faces.analyzer import DlibAnalyzer
from core.faces.liveness import CHALLENGES
from core.faces.profile import FaceProfile, enroll
from core.jobs.local import LocalJobRunner
from core.media.images import RGBImage
from core.packs.camera import animate_still
from core.service.conversation import Service
from core.service.messages import (
    Chat,
    Person,
    Progress,
    Quoted,
    Reply,
    Request,
    Text,
    VerifyChallenge,
)
from core.storage.store import Store

from ...conftest import REPO
from ..faces.synthetic_head import (
    HeadMesh,
    astronaut_head,
    head_picture,
    write_challenge,
    write_video,
)

ALICE = Person("telegram", "2001", "Alice")
DM = Chat("dm")


@pytest.fixture(scope="module")
def profile(analyzer: DlibAnalyzer, astronaut: RGBImage) -> FaceProfile:
    return enroll(astronaut, analyzer, Settings())


@pytest.fixture(scope="module")
def mesh(analyzer: DlibAnalyzer) -> HeadMesh:
    return astronaut_head(analyzer)


@pytest.fixture
async def bot(
    tmp_path: Path, analyzer: DlibAnalyzer, profile: FaceProfile
) -> AsyncIterator[Service]:
    settings = Settings(data_dir=tmp_path / "data", bundled_clips_dir=REPO / "clips")
    store = await Store.open(settings)
    runner = LocalJobRunner(workers=1, max_queue=5)
    service = Service(settings, store, runner, analyzer)
    # Alice has enrolled (straight into the store: enrolment's preview render is not
    # what these tests are about).
    await store.add_face(await store.user(ALICE.platform, ALICE.id), profile)
    yield service
    await runner.close()
    await store.close()


async def talk(bot: Service, request: Request) -> list[Reply]:
    return [reply async for reply in bot.handle(request)]


async def challenge(bot: Service) -> VerifyChallenge:
    (reply,) = await talk(bot, Request(ALICE, DM, text="/verify"))
    assert isinstance(reply, VerifyChallenge)
    return reply


async def test_a_live_answer_verifies_the_face_and_opens_optin(
    bot: Service, mesh: HeadMesh, profile: FaceProfile, tmp_path: Path
) -> None:
    (refused,) = await talk(bot, Request(ALICE, DM, text="/optin"))
    assert isinstance(refused, Text)
    assert refused.error
    assert "/verify" in refused.text

    asked = await challenge(bot)
    assert asked.challenge in CHALLENGES
    assert asked.instruction in asked.text
    assert "round video" in asked.text  # said the Telegram way
    again = await challenge(bot)  # asking twice does not re-roll it
    assert (again.challenge, again.nonce) == (asked.challenge, asked.nonce)

    video = write_challenge(tmp_path / "answer.mp4", mesh, asked.challenge)
    replies = await talk(bot, Request(ALICE, DM, video=video.read_bytes(), nonce=asked.nonce))
    assert any(isinstance(r, Progress) for r in replies)
    final = replies[-1]
    assert isinstance(final, Text)
    assert not final.error, final.text
    assert final.text.startswith("Verified")

    (listing,) = await talk(bot, Request(ALICE, DM, text="/faces"))
    assert "(verified) (in use)" in listing.text  # type: ignore[union-attr]
    (done,) = await talk(bot, Request(ALICE, DM, text="/verify"))
    assert "already verified" in done.text  # type: ignore[union-attr]
    (ok,) = await talk(bot, Request(ALICE, DM, text="/optin"))
    assert not ok.error  # type: ignore[union-attr]
    assert "can now put your face" in ok.text  # type: ignore[union-attr]
    assert bot.metrics.verifications.labels("passed")._value.get() == 1

    # Bob may now meme her in a group; once she sends a new, unverified selfie, not any more.
    bob = Person("telegram", "2002", "Bob")
    await bot.store.add_face(await bot.store.user(bob.platform, bob.id), profile)
    ask = Request(bob, Chat("group", is_group=True), text="/meme spin", reply_to=Quoted(ALICE))

    async def first_reply() -> Reply:
        replies = bot.handle(ask)
        try:
            return await anext(replies)
        finally:
            await replies.aclose()  # the render itself is not what this is about

    assert isinstance(await first_reply(), Progress)  # her face: straight to rendering
    await bot.store.add_face(await bot.store.user(ALICE.platform, ALICE.id), profile)
    assert "hasn't opted in" in getattr(await first_reply(), "text", "")


async def test_a_picture_waved_at_the_camera_is_not_verified(
    bot: Service, astronaut: RGBImage, tmp_path: Path
) -> None:
    asked = await challenge(bot)
    frames, _ = animate_still(head_picture(astronaut), "sway", seconds=2.6, fps=15, size=(384, 384))
    video = write_video(tmp_path / "photo.mp4", frames, 15)
    replies = await talk(bot, Request(ALICE, DM, video=video.read_bytes()))
    final = replies[-1]
    assert isinstance(final, Text)
    assert final.error
    assert final.text.startswith("Not verified:")
    assert "/verify" in final.text
    (listing,) = await talk(bot, Request(ALICE, DM, text="/faces"))
    assert "(verified)" not in listing.text  # type: ignore[union-attr]
    # The challenge was used up: the next video needs a new one.
    (again,) = await talk(bot, Request(ALICE, DM, video=video.read_bytes()))
    assert "Send /verify first" in again.text  # type: ignore[union-attr]
    assert asked.nonce != (await challenge(bot)).nonce


async def test_stale_expired_and_unasked_answers_are_refused_without_a_check(
    tmp_path: Path, analyzer: DlibAnalyzer, profile: FaceProfile
) -> None:
    settings = Settings(data_dir=tmp_path / "data", verify_challenge_seconds=0.5)
    store = await Store.open(settings)
    runner = LocalJobRunner(workers=1, max_queue=5)
    bot = Service(settings, store, runner, analyzer)
    try:
        junk = b"\x1aE\xdf\xa3 not really a webm"
        (unknown,) = await talk(bot, Request(Person("web", "stranger"), DM, video=junk))
        assert "send me a selfie" in unknown.text  # type: ignore[union-attr]
        await store.add_face(await store.user(ALICE.platform, ALICE.id), profile)
        (unasked,) = await talk(bot, Request(ALICE, DM, video=junk))
        assert "Send /verify first" in unasked.text  # type: ignore[union-attr]
        await challenge(bot)
        (stale,) = await talk(bot, Request(ALICE, DM, video=junk, nonce="an-old-one"))
        assert "older challenge" in stale.text  # type: ignore[union-attr]
        await challenge(bot)
        await asyncio.sleep(0.6)
        (expired,) = await talk(bot, Request(ALICE, DM, video=junk))
        assert "expired" in expired.text  # type: ignore[union-attr]
        await challenge(bot)
        replies = await talk(bot, Request(ALICE, DM, video=junk, video_suffix=".webm"))
        assert "isn't a video" in replies[-1].text  # type: ignore[union-attr]
        assert "Traceback" not in replies[-1].text  # type: ignore[union-attr]
        assert runner.queue_length == 0
    finally:
        await runner.close()
        await store.close()
