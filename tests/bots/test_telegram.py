"""The real python-telegram-bot, run by `facecast serve`, against a local fake Bot API."""

from __future__ import annotations

import asyncio
import datetime
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from bots.base import GENERIC_ERROR
from core.config import Settings
from core.faces.analyzer import DlibAnalyzer
from core.media.images import RGBImage, save_image
from core.media.video import probe_video, read_video
from core.service.provenance import load_marks

from ..conftest import CLIP_TONE_AT, audio_of, jpeg
from ..fakes.telegram_api import Call, FakeTelegram
from .conftest import fake_telegram, serving_telegram, serving_telegram_webhook

pytestmark = pytest.mark.asyncio(loop_scope="module")
# Unexpected errors tests cause on purpose: each is logged once, with its traceback.
CAUSED: list[str] = []
TOKEN = "123456:TEST-TOKEN"
ALICE = {"id": 501, "is_bot": False, "first_name": "Alice"}
BOB = {"id": 502, "is_bot": False, "first_name": "Bob"}
DORA = {"id": 504, "is_bot": False, "first_name": "Dora"}
GROUP = {"id": -100777, "type": "supergroup", "title": "Memes", "is_forum": True}


def private(user: dict[str, object]) -> dict[str, object]:
    return {"id": user["id"], "type": "private", "first_name": user["first_name"]}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def fake() -> AsyncIterator[FakeTelegram]:
    async with fake_telegram(TOKEN) as api:
        yield api


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("telegram-data")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bot(fake: FakeTelegram, data_dir: Path) -> AsyncIterator[subprocess.Popen[str]]:
    async with serving_telegram(fake, data_dir, caused=CAUSED) as process:
        yield process


def replies_to(message_id: int, *methods: str):  # type: ignore[no-untyped-def]
    def check(calls: list[Call]) -> list[Call]:
        return [
            c
            for c in calls
            if c.method in methods
            and (c.params.get("reply_parameters") or {}).get("message_id") == message_id
        ]

    return check


async def frames_of(call: Call, tmp: Path) -> list[RGBImage]:
    path = tmp / f"{call.params.get('chat_id')}-{len(call.files['animation'])}.mp4"
    path.write_bytes(call.files["animation"])
    return list(read_video(path))


async def test_commands_are_registered(fake: FakeTelegram, bot: subprocess.Popen[str]) -> None:
    (registered,) = fake.sent("setMyCommands")
    names = [c["command"] for c in registered.params["commands"]]
    assert {"clip", "meme", "faces", "forget", "optin", "optout", "verify", "help"} <= set(names)


async def test_dm_selfie_enrols_and_previews(
    fake: FakeTelegram, bot: subprocess.Popen[str], astronaut: RGBImage, tmp_path: Path
) -> None:
    message = fake.message(private(ALICE), ALICE, photo=jpeg(astronaut))
    fake.push({"message": message})
    mine = replies_to(message["message_id"], "sendMessage", "sendAnimation")
    await fake.wait_for(
        lambda calls: any(c.params.get("reply_markup") for c in mine(calls)),
        what="the enrolment answer and clip menu",
    )
    answers = mine(fake.calls)
    assert "Got your face" in answers[0].params["text"]
    (animation,) = [c for c in answers if c.method == "sendAnimation"]
    assert len(await frames_of(animation, tmp_path)) == 30  # the deal-with-it preview
    assert "AI-made" in animation.params["caption"]
    keyboard = answers[-1].params["reply_markup"]["inline_keyboard"]
    commands = [button["callback_data"] for row in keyboard for button in row]
    assert "/clip astronaut-pan" in commands
    assert fake.sent("sendChatAction")
    # The status message was edited in place and removed when the result came.
    assert fake.sent("editMessageText")
    assert fake.sent("deleteMessage")


async def test_clip_keyboard_button_renders(
    fake: FakeTelegram, bot: subprocess.Popen[str], tmp_path: Path
) -> None:
    ask = fake.message(private(ALICE), ALICE, text="/clip")
    fake.push({"message": ask})
    (menu,) = await fake.wait_for(
        lambda calls: replies_to(ask["message_id"], "sendMessage")(calls),
        what="the clip keyboard",
    ) and replies_to(ask["message_id"], "sendMessage")(fake.calls)
    keyboard = [b for row in menu.params["reply_markup"]["inline_keyboard"] for b in row]
    pan = next(b for b in keyboard if b["callback_data"] == "/clip astronaut-pan")
    shown = fake._sent_message({"chat_id": ALICE["id"]}, text=menu.params["text"])
    fake.push(
        {
            "callback_query": {
                "id": "cb-1",
                "from": ALICE,
                "chat_instance": "ci-1",
                "message": shown,
                "data": pan["callback_data"],
            }
        }
    )
    done = replies_to(shown["message_id"], "sendAnimation")
    await fake.wait_for(done, what="the clip render")
    assert fake.sent("answerCallbackQuery")
    assert len(await frames_of(done(fake.calls)[0], tmp_path)) == 72


async def test_a_clip_with_sound_comes_as_a_video(
    fake: FakeTelegram,
    bot: subprocess.Popen[str],
    data_dir: Path,
    sound_clip_folder: Path,
    astronaut: RGBImage,
    tmp_path: Path,
) -> None:
    shutil.copytree(sound_clip_folder, data_dir / "clips" / "tone")  # the operator adds it
    enrol = fake.message(private(DORA), DORA, photo=jpeg(astronaut))
    fake.push({"message": enrol})
    await fake.wait_for(replies_to(enrol["message_id"], "sendAnimation"), what="the enrolment")
    ask = fake.message(private(DORA), DORA, text="/clip tone")
    fake.push({"message": ask})
    done = replies_to(ask["message_id"], "sendVideo", "sendAnimation")
    await fake.wait_for(done, what="the clip with sound")
    (video,) = done(fake.calls)
    assert video.method == "sendVideo"  # an animation would be played without its sound
    assert video.params["supports_streaming"] is True
    assert "AI-made" in video.params["caption"]
    received = tmp_path / "tone.mp4"
    received.write_bytes(video.files["video"])
    heard = audio_of(received)
    assert heard is not None
    assert heard[0] == pytest.approx(CLIP_TONE_AT, abs=0.01)
    assert heard[1] == pytest.approx(probe_video(received).duration, abs=0.03)
    # A silent clip is still an animation.
    quiet = fake.message(private(DORA), DORA, text="/clip astronaut-pan")
    fake.push({"message": quiet})
    silent = replies_to(quiet["message_id"], "sendVideo", "sendAnimation")
    await fake.wait_for(silent, what="the silent clip")
    assert [c.method for c in silent(fake.calls)] == ["sendAnimation"]


async def test_group_topic_meme_reply_without_consent_uses_the_requester(
    fake: FakeTelegram,
    bot: subprocess.Popen[str],
    group_photo: RGBImage,
    tmp_path: Path,
) -> None:
    bob_selfie = jpeg(np.ascontiguousarray(group_photo[200:520, 380:650]))
    enrol = fake.message(private(BOB), BOB, photo=bob_selfie)
    fake.push({"message": enrol})
    await fake.wait_for(replies_to(enrol["message_id"], "sendAnimation"), what="Bob's enrolment")
    # A photo posted in the group without addressing the bot is left alone.
    stray = fake.message(GROUP, BOB, photo=bob_selfie, thread=77)
    fake.push({"message": stray})

    alice_said = fake.message(GROUP, ALICE, text="when the build is green", thread=77)
    ask = fake.message(
        GROUP,
        BOB,
        text="/meme deal-with-it me | shipping it",
        reply_to=alice_said,
        thread=77,
    )
    fake.push({"message": ask})
    mine = replies_to(ask["message_id"], "sendMessage", "sendAnimation")
    await fake.wait_for(
        lambda calls: any(c.method == "sendAnimation" for c in mine(calls)),
        what="the group meme",
    )
    note, *_ = mine(fake.calls)
    assert "Alice hasn't opted in" in note.params["text"]
    for call in mine(fake.calls):
        assert call.params["chat_id"] == GROUP["id"]
        assert call.params["message_thread_id"] == 77  # the same forum topic
    assert replies_to(stray["message_id"], "sendMessage", "sendAnimation")(fake.calls) == []

    # Bob's own face: the same meme asked in his DM matches what the group got.
    (group_meme,) = [c for c in mine(fake.calls) if c.method == "sendAnimation"]
    own = fake.message(private(BOB), BOB, text="/meme deal-with-it me | shipping it")
    fake.push({"message": own})
    await fake.wait_for(replies_to(own["message_id"], "sendAnimation"), what="Bob's own meme")
    (own_meme,) = replies_to(own["message_id"], "sendAnimation")(fake.calls)
    a = (await frames_of(group_meme, tmp_path))[0].astype(int)
    b = (await frames_of(own_meme, tmp_path))[0].astype(int)
    assert np.abs(a - b)[60:260, 60:300].mean() < 4


async def test_bad_files_get_clear_replies(
    fake: FakeTelegram, bot: subprocess.Popen[str], astronaut: RGBImage
) -> None:
    huge = fake.message(private(ALICE), ALICE, photo=jpeg(astronaut), file_size=25 * 1024**2)
    text_file = fake.message(private(ALICE), ALICE, document=(b"hello", "notes.txt", "text/plain"))
    broken = fake.message(
        private(ALICE), ALICE, document=(b"not really a jpeg", "me.jpg", "image/jpeg")
    )
    for message in (huge, text_file, broken):
        fake.push({"message": message})
    expected = {
        huge["message_id"]: "too big",
        text_file["message_id"]: "isn't a picture",
        broken["message_id"]: "isn't an image",
    }
    for message_id, words in expected.items():
        await fake.wait_for(replies_to(message_id, "sendMessage"), what=words)
        (answer,) = replies_to(message_id, "sendMessage")(fake.calls)
        assert words in answer.params["text"]


async def test_flood_limit_is_waited_out(fake: FakeTelegram, bot: subprocess.Popen[str]) -> None:
    fake.too_many["sendMessage"] = 1
    ask = fake.message(private(ALICE), ALICE, text="/help")
    fake.push({"message": ask})
    await fake.wait_for(replies_to(ask["message_id"], "sendMessage"), what="the retried reply")
    assert [c.method for c in fake.calls].count("sendMessage:429") == 1


async def test_a_duplicated_update_renders_once(
    fake: FakeTelegram, bot: subprocess.Popen[str]
) -> None:
    ask = fake.message(private(ALICE), ALICE, text="/meme spin")
    update_id = fake.push({"message": ask})
    fake.push({"message": ask}, update_id=update_id)  # Telegram delivers it again
    done = replies_to(ask["message_id"], "sendAnimation")
    await fake.wait_for(done, what="the meme")
    await asyncio.sleep(2)
    assert len(done(fake.calls)) == 1


async def test_a_gif_file_on_request(fake: FakeTelegram, bot: subprocess.Popen[str]) -> None:
    bob = fake.message(private(BOB), BOB, text="/clip astronaut-shake gif")
    fake.push({"message": bob})
    done = replies_to(bob["message_id"], "sendDocument")
    await fake.wait_for(done, what="the GIF document")
    (document,) = done(fake.calls)
    assert document.files["document"][:6] == b"GIF89a"


async def test_forget_removes_the_data(
    fake: FakeTelegram, bot: subprocess.Popen[str], data_dir: Path
) -> None:
    database = data_dir / "facecast.db"

    def counts() -> tuple[int, int]:
        with sqlite3.connect(database) as db:
            users = db.execute("SELECT COUNT(*) FROM users").fetchone()[0]
            faces = db.execute("SELECT COUNT(*) FROM faces").fetchone()[0]
        return users, faces

    users, faces = counts()
    folders = {p.name for p in (data_dir / "outputs").iterdir()}
    ask = fake.message(private(ALICE), ALICE, text="/forget")
    fake.push({"message": ask})
    await fake.wait_for(replies_to(ask["message_id"], "sendMessage"), what="the confirmation")
    (answer,) = replies_to(ask["message_id"], "sendMessage")(fake.calls)
    assert "deleted" in answer.params["text"]
    assert counts() == (users - 1, faces - 1)  # Alice had one face; Bob keeps his
    assert len({p.name for p in (data_dir / "outputs").iterdir()}) == len(folders) - 1
    again = fake.message(private(ALICE), ALICE, text="/clip astronaut-pan")
    fake.push({"message": again})
    await fake.wait_for(replies_to(again["message_id"], "sendMessage"), what="the refusal")
    (refusal,) = replies_to(again["message_id"], "sendMessage")(fake.calls)
    assert "don't have your face" in refusal.params["text"]


async def test_webhook_mode(fake: FakeTelegram, tmp_path_factory: pytest.TempPathFactory) -> None:
    """With a webhook URL the bot registers it and takes updates on FaceCast's web server."""
    import aiohttp

    data_dir = tmp_path_factory.mktemp("telegram-webhook")
    async with serving_telegram_webhook(fake, data_dir) as (web_port, hook):
        assert hook.params["url"] == f"http://127.0.0.1:{web_port}/telegram/webhook"
        secret = hook.params["secret_token"]
        ask = fake.message(private(BOB), BOB, text="/help")
        update = {"update_id": 999_001, "message": ask}
        async with aiohttp.ClientSession() as client:
            url = f"http://127.0.0.1:{web_port}/telegram/webhook"
            async with client.post(url, json=update) as forged:
                assert forged.status == 403  # no secret: not from Telegram
            odd = {"X-Telegram-Bot-Api-Secret-Token": "\u00e9" + secret}
            async with client.post(url, json=update, headers=odd) as forged:
                assert forged.status == 403  # a secret that is not even ASCII: the same
            signed = {"X-Telegram-Bot-Api-Secret-Token": secret, "Content-Type": "application/json"}
            for body in (b"[]", b"null", b"[" * 100_000, b"{oops", b'{"message": 1}'):
                async with client.post(url, data=body, headers=signed) as malformed:
                    assert malformed.status == 400, body[:20]
            async with client.post(
                url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret}
            ) as delivered:
                assert delivered.status == 200
        await fake.wait_for(replies_to(ask["message_id"], "sendMessage"), what="the answer")
        (answer,) = replies_to(ask["message_id"], "sendMessage")(fake.calls)
        assert "/forget" in answer.params["text"]


CAROL = {"id": 503, "is_bot": False, "first_name": "Carol"}


async def test_an_unexpected_error_gets_one_friendly_reply(
    fake: FakeTelegram, bot: subprocess.Popen[str], data_dir: Path
) -> None:
    """The database breaking under the service: a friendly message, not silence."""
    database = data_dir / "facecast.db"
    with sqlite3.connect(database) as db:
        db.execute("ALTER TABLE users RENAME TO users_away")
    CAUSED.append("no such table: users")
    try:
        ask = fake.message(private(CAROL), CAROL, text="/faces")
        fake.push({"message": ask})
        answered = replies_to(ask["message_id"], "sendMessage")
        await fake.wait_for(answered, what="the apology")
    finally:
        with sqlite3.connect(database) as db:
            db.execute("ALTER TABLE users_away RENAME TO users")
    (answer,) = answered(fake.calls)
    assert answer.params["text"] == GENERIC_ERROR


async def test_a_failed_status_edit_does_not_stop_the_result(
    fake: FakeTelegram, bot: subprocess.Popen[str], astronaut: RGBImage, tmp_path: Path
) -> None:
    fake.failing["editMessageText"] = 1000  # every status edit answers 400
    try:
        message = fake.message(private(CAROL), CAROL, photo=jpeg(astronaut))
        fake.push({"message": message})
        mine = replies_to(message["message_id"], "sendMessage", "sendAnimation")
        await fake.wait_for(
            lambda calls: any(c.params.get("reply_markup") for c in mine(calls)),
            what="the preview and clip menu despite failed edits",
        )
    finally:
        fake.failing.pop("editMessageText", None)
    assert fake.sent("editMessageText:400")  # progress was tried, and refused
    (animation,) = [c for c in mine(fake.calls) if c.method == "sendAnimation"]
    assert len(await frames_of(animation, tmp_path)) == 30


DAVE = {"id": 504, "is_bot": False, "first_name": "Dave"}


async def test_verify_with_a_round_video_then_optin(
    fake: FakeTelegram, bot: subprocess.Popen[str], astronaut: RGBImage, tmp_path: Path
) -> None:
    from core.faces.analyzer import DlibAnalyzer
    from core.faces.liveness import INSTRUCTIONS

    from ..core.faces.synthetic_head import astronaut_head, write_challenge

    async def say_(text: str) -> str:
        message = fake.message(private(DAVE), DAVE, text=text)
        fake.push({"message": message})
        answered = replies_to(message["message_id"], "sendMessage")
        await fake.wait_for(answered, what=f"the answer to {text}")
        return str(answered(fake.calls)[-1].params["text"])

    selfie = fake.message(private(DAVE), DAVE, photo=jpeg(astronaut))
    fake.push({"message": selfie})
    await fake.wait_for(
        lambda calls: any(
            c.params.get("reply_markup")
            for c in replies_to(selfie["message_id"], "sendMessage")(calls)
        ),
        what="Dave's enrolment",
    )
    assert "/verify" in await say_("/optin")
    asked = await say_("/verify")
    assert "round video message" in asked
    (challenge,) = [kind for kind, words in INSTRUCTIONS.items() if words in asked]

    answer = write_challenge(tmp_path / "note.mp4", astronaut_head(DlibAnalyzer()), challenge)
    note = fake.message(private(DAVE), DAVE, video_note=answer.read_bytes())
    fake.push({"message": note})
    verdict = replies_to(note["message_id"], "sendMessage", "editMessageText")

    def verdict_given(calls: list[Call]) -> bool:
        return any("erified" in str(c.params.get("text")) for c in verdict(calls))

    await fake.wait_for(verdict_given, what="the verdict on Dave's video note")
    texts = [str(c.params.get("text")) for c in verdict(fake.calls)]
    assert texts[-1].startswith("Verified"), texts
    assert "can now put your face" in await say_("/optin")
    # A video in a group is somebody's video, not an answer: no reply, no check.
    posted = fake.message(GROUP, DAVE, video=answer.read_bytes())
    fake.push({"message": posted})
    await asyncio.sleep(1.5)
    assert not replies_to(posted["message_id"], "sendMessage")(fake.calls)


ERIN = {"id": 505, "is_bot": False, "first_name": "Erin"}


async def test_check_as_a_reply_says_whether_this_deployment_made_it(
    fake: FakeTelegram,
    bot: subprocess.Popen[str],
    data_dir: Path,
    astronaut: RGBImage,
    analyzer: DlibAnalyzer,
    tmp_path: Path,
) -> None:
    """Reply /check to a picture: ours (marked and signed with the server's own marks),
    then somebody else's photo."""
    marks = load_marks(Settings(data_dir=data_dir))  # what the serving bot made on start
    face = analyzer.detect(astronaut)[0]
    ours = tmp_path / "ours.png"
    save_image(marks.watermarker().embed(astronaut, face.landmarks[:68]), ours, sign=marks.sign)
    answers = []
    for data, name in ((ours.read_bytes(), "ours.png"), (jpeg(astronaut), "photo.jpg")):
        shared = fake.message(private(ERIN), BOB, document=(data, name, "image/png"))
        ask = fake.message(private(ERIN), ERIN, text="/check", reply_to=shared)
        fake.push({"message": ask})
        answered = replies_to(ask["message_id"], "sendMessage")
        await fake.wait_for(answered, timeout=60, what="the /check answer")
        answers.append(answered(fake.calls)[-1].params["text"])
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    assert answers[0].startswith(f"Made by this FaceCast deployment on {today}")
    assert "present and valid, signed by this FaceCast deployment" in answers[0]
    assert answers[1].startswith("Not made by this FaceCast deployment")
    assert "Alice" not in "".join(answers)
    assert "Bob" not in "".join(answers)
    # Without anything to check: how to use it.
    bare = fake.message(private(ERIN), ERIN, text="/check")
    fake.push({"message": bare})
    hint = replies_to(bare["message_id"], "sendMessage")
    await fake.wait_for(hint, what="the /check hint")
    assert "Reply /check to a picture or video" in hint(fake.calls)[-1].params["text"]
