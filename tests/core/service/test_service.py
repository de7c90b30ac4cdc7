"""Conversations through core/service.py with real pictures, a real store and real renders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text

from core.config import Settings
from core.faces.analyzer import DlibAnalyzer
from core.jobs.local import LocalJobRunner
from core.media.images import RGBImage
from core.media.video import read_video
from core.service.conversation import Service
from core.service.messages import (
    Chat,
    Choices,
    Media,
    Person,
    Progress,
    Quoted,
    Reply,
    Request,
    Text,
)
from core.service.policy import ProtectedFaces
from core.storage.store import Store

from ...conftest import jpeg

ALICE = Person("telegram", "1001", "Alice")
BOB = Person("telegram", "1002", "Bob")
DM = Chat("dm")
GROUP = Chat("group-1", is_group=True)


@pytest.fixture
async def bot(
    store_settings: Settings, analyzer: DlibAnalyzer, hanks: RGBImage, tmp_path: Path
) -> AsyncIterator[Service]:
    protected = tmp_path / "protected"
    protected.mkdir()
    Image.fromarray(hanks).save(protected / "tom_hanks.png")
    settings = store_settings.model_copy(update={"protected_dir": protected})
    store = await Store.open(settings)
    runner = LocalJobRunner(workers=2, max_queue=10)
    service = Service(
        settings, store, runner, analyzer, protected=ProtectedFaces.load(settings, analyzer)
    )
    yield service
    await runner.close()
    await store.close()


async def talk(bot: Service, request: Request) -> list[Reply]:
    return [reply async for reply in bot.handle(request)]


def only(replies: list[Reply], kind: type) -> list:  # type: ignore[type-arg]
    return [r for r in replies if isinstance(r, kind)]


@pytest.fixture(scope="module")
def alice_selfie(astronaut: RGBImage) -> bytes:
    return jpeg(astronaut)


@pytest.fixture(scope="module")
def bob_selfie(group_photo: RGBImage) -> bytes:
    return jpeg(np.ascontiguousarray(group_photo[200:520, 380:650]))


async def test_a_selfie_enrols_and_answers_with_a_preview_and_clips(
    bot: Service, alice_selfie: bytes
) -> None:
    replies = await talk(bot, Request(ALICE, DM, image=alice_selfie))
    assert "Got your face" in replies[0].text  # type: ignore[union-attr]
    assert only(replies, Progress)
    (preview,) = only(replies, Media)
    assert preview.kind == "gif"
    assert preview.path.is_file()
    assert len(list(read_video(preview.path))) > 10
    menu = replies[-1]
    assert isinstance(menu, Choices)
    assert "/clip astronaut-pan" in [c.command for c in menu.choices]
    # ...and then a clip.
    replies = await talk(bot, Request(ALICE, DM, text="/clip astronaut-pan"))
    (clip,) = only(replies, Media)
    assert clip.kind == "mp4"
    assert len(list(read_video(clip.path))) == 72


@pytest.mark.parametrize(
    ("picture", "words"),
    [
        ("text", "isn't an image"),
        ("coffee", "couldn't find a face"),
        ("group", "faces of similar size"),
        ("tiny", "only 10x10 pixels"),
        ("huge", "too big"),
    ],
)
async def test_bad_selfies_get_a_reason_and_store_nothing(
    bot: Service, group_photo: RGBImage, picture: str, words: str
) -> None:
    from skimage import data

    payloads = {
        "text": b"definitely not a photo",
        "coffee": jpeg(np.ascontiguousarray(data.coffee())),
        "group": jpeg(group_photo),
        "tiny": jpeg(np.zeros((10, 10, 3), np.uint8)),
        "huge": b"\xff" * (bot.settings.max_upload_bytes + 1),
    }
    replies = await talk(bot, Request(ALICE, DM, image=payloads[picture]))
    assert len(replies) == 1
    assert isinstance(replies[0], Text)
    assert replies[0].error
    assert words in replies[0].text
    assert await bot.store.find_user(ALICE.platform, ALICE.id) is None


async def test_a_protected_identity_is_refused_neutrally(
    bot: Service, hanks: RGBImage, alice_selfie: bytes
) -> None:
    # Hanks' sample is cut off at the chin; a border makes it a selfie enrolment accepts.
    framed = np.pad(hanks, ((40, 60), (40, 40), (0, 0)), mode="edge")
    replies = await talk(bot, Request(BOB, DM, image=jpeg(framed)))
    assert len(replies) == 1
    assert "can't use that photo" in replies[0].text  # type: ignore[union-attr]
    assert "Hanks" not in replies[0].text  # type: ignore[union-attr]
    assert await bot.store.find_user(BOB.platform, BOB.id) is None
    accepted = await talk(bot, Request(ALICE, DM, image=alice_selfie))
    assert only(accepted, Media)


async def test_meme_as_a_reply_respects_consent(
    bot: Service, alice_selfie: bytes, bob_selfie: bytes
) -> None:
    await talk(bot, Request(ALICE, DM, image=alice_selfie))
    await talk(bot, Request(BOB, DM, image=bob_selfie))
    alice_said = Quoted(ALICE, "when the tests pass on the first try")
    ask = Request(BOB, GROUP, text="/meme deal-with-it", reply_to=alice_said)

    without = await talk(bot, ask)
    assert "Alice hasn't opted in" in without[0].text  # type: ignore[union-attr]
    (bobs,) = only(without, Media)

    await talk(bot, Request(ALICE, DM, text="/optin"))
    with_consent = await talk(bot, ask)
    assert not any("opted in" in getattr(r, "text", "") for r in with_consent)
    (alices,) = only(with_consent, Media)

    # Which face is in each meme: compare with Alice's own preview of the same template.
    alice_frames = list(read_video(alices.path))
    bob_frames = list(read_video(bobs.path))
    own = await talk(bot, Request(ALICE, DM, text="/meme deal-with-it"))
    reference = list(read_video(only(own, Media)[0].path))
    face = np.s_[80:250, 80:280]  # the face, clear of captions, glasses and badge

    def distance(a: list[RGBImage], b: list[RGBImage]) -> float:
        return float(np.abs(a[0][face].astype(int) - b[0][face]).mean())

    assert distance(alice_frames, reference) < 4
    assert distance(bob_frames, reference) > 10

    await talk(bot, Request(ALICE, DM, text="/optout"))
    again = await talk(bot, ask)
    assert "hasn't opted in" in again[0].text  # type: ignore[union-attr]


async def test_faces_choose_and_forget_everything(
    bot: Service, alice_selfie: bytes, bob_selfie: bytes
) -> None:
    await talk(bot, Request(ALICE, DM, image=alice_selfie))
    await talk(bot, Request(ALICE, DM, image=bob_selfie))
    (listing,) = await talk(bot, Request(ALICE, DM, text="/faces"))
    assert isinstance(listing, Choices)
    assert "2 of 5" in listing.text
    assert "(in use)" in listing.text.splitlines()[2]
    (chosen,) = await talk(bot, Request(ALICE, DM, text="/face 1"))
    assert "face 1" in chosen.text  # type: ignore[union-attr]
    (wrong,) = await talk(bot, Request(ALICE, DM, text="/face 9"))
    assert "1 to 2" in wrong.text  # type: ignore[union-attr]
    await talk(bot, Request(ALICE, DM, text="/optin"))
    await talk(bot, Request(BOB, DM, image=bob_selfie))

    user = await bot.store.find_user(ALICE.platform, ALICE.id)
    assert user is not None
    account = await bot.store.account_of(user)
    folder = bot.store.user_folder(account)
    assert any(folder.iterdir())

    (done,) = await talk(bot, Request(ALICE, DM, text="/forget"))
    assert "deleted" in done.text  # type: ignore[union-attr]
    # Nothing of Alice is left in any table or anywhere in the data folder.
    async with bot.store.engine.connect() as connection:
        for table in ("users", "faces", "consents", "usage"):
            rows = (await connection.execute(text(f"SELECT * FROM {table}"))).all()
            column = "id" if table == "users" else "user_id"
            keys = [getattr(row, column) for row in rows]
            assert user not in keys, table
        accounts = (await connection.execute(text("SELECT account FROM users"))).scalars()
        assert account not in list(accounts)
    leftovers = [p for p in bot.settings.resolved_data_dir.rglob("*") if account in str(p)]
    assert leftovers == []
    assert await bot.store.find_user(BOB.platform, BOB.id) is not None  # Bob is untouched
    (after,) = await talk(bot, Request(ALICE, DM, text="/clip astronaut-pan"))
    assert "don't have your face" in after.text  # type: ignore[union-attr]


async def test_expired_faces_are_not_used(bot: Service, alice_selfie: bytes) -> None:
    await talk(bot, Request(ALICE, DM, image=alice_selfie))
    user = await bot.store.find_user(ALICE.platform, ALICE.id)
    assert user is not None
    await bot.store.expire_now(user)
    (reply,) = await talk(bot, Request(ALICE, DM, text="/meme spin"))
    assert "expired" in reply.text  # type: ignore[union-attr]


async def test_quota_and_rate_limit(
    store_settings: Settings, analyzer: DlibAnalyzer, alice_selfie: bytes
) -> None:
    settings = store_settings.model_copy(update={"daily_quota": 2, "renders_per_minute": 5})
    store = await Store.open(settings)
    runner = LocalJobRunner(workers=1, max_queue=5)
    try:
        bot = Service(settings, store, runner, analyzer)
        await talk(bot, Request(ALICE, DM, image=alice_selfie))  # render 1: the preview
        assert only(await talk(bot, Request(ALICE, DM, text="/meme spin")), Media)  # 2
        (refused,) = await talk(bot, Request(ALICE, DM, text="/meme spin"))
        assert "daily limit" in refused.text  # type: ignore[union-attr]
        bot.limits.per_day, bot.limits.per_minute = 100, 2
        (slow,) = await talk(bot, Request(ALICE, DM, text="/meme spin"))
        assert "Slow down" in slow.text  # type: ignore[union-attr]
    finally:
        await runner.close()
        await store.close()


async def test_help_per_platform_lists_the_memes(bot: Service) -> None:
    web = Person("web", "w1")
    (web_help,) = await talk(bot, Request(web, Chat("w1"), text="/help"))
    (group_help,) = await talk(bot, Request(ALICE, GROUP, text="/help"))
    for reply in (web_help, group_help):
        assert isinstance(reply, Text)
        assert "deal-with-it" in reply.text
        assert "earthquake" in reply.text
        assert "/forget" in reply.text
    # The web chat is one person alone: no groups, no replying to someone.
    assert "/optin" not in web_help.text  # type: ignore[union-attr]
    assert "reply to someone" not in web_help.text  # type: ignore[union-attr]
    assert "/optin" in group_help.text  # type: ignore[union-attr]
    assert "reply to someone" in group_help.text  # type: ignore[union-attr]
    (unknown,) = await talk(bot, Request(web, Chat("w1"), text="/meme moonwalk"))
    assert isinstance(unknown, Text)
    assert unknown.error
    assert "moonwalk" in unknown.text
    assert "deal-with-it" in unknown.text
    assert "spin" in unknown.text


async def test_help_unknown_and_chatter(bot: Service) -> None:
    (helped,) = await talk(bot, Request(ALICE, DM, text="/help"))
    assert "/forget" in helped.text  # type: ignore[union-attr]
    (unknown,) = await talk(bot, Request(ALICE, DM, text="/dance"))
    assert "/help" in unknown.text  # type: ignore[union-attr]
    (chatter,) = await talk(bot, Request(ALICE, DM, text="hello?"))
    assert "selfie" in chatter.text  # type: ignore[union-attr]
    assert await talk(bot, Request(ALICE, GROUP, text="lol")) == []  # no noise in groups
    (menu,) = await talk(bot, Request(ALICE, DM, text="/meme"))
    assert isinstance(menu, Choices)
    assert "/meme deal-with-it" in [c.command for c in menu.choices]
    (missing,) = await talk(bot, Request(ALICE, DM, text="/clip moonwalk"))
    assert "don't know a clip" in missing.text  # type: ignore[union-attr]
    (long,) = await talk(bot, Request(ALICE, DM, text="/meme spin " + "x" * 200))
    assert "at most 140" in long.text  # type: ignore[union-attr]
