"""The file ids a chat platform holds for inline answers: kept, listed, forgotten."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from core.config import Settings
from core.storage.store import Store


@pytest.fixture
async def store(store_settings: Settings) -> AsyncIterator[Store]:
    opened = await Store.open(store_settings)
    yield opened
    await opened.close()


async def test_sent_files_are_kept_listed_and_forgotten(store: Store, tmp_path: Path) -> None:
    alice = await store.user("telegram", "1")
    bob = await store.user("telegram", "2")
    key = store.keyed("inline", "deal-with-it", "when it works", "", "7")
    assert "when it works" not in key
    first = await store.keep_sent_file(
        alice,
        key,
        media="animation",
        file_id="A",
        title="Deal with it",
        caption="Deal with it (AI-made)",
        words="when it works",
    )
    second = await store.keep_sent_file(
        alice,
        store.keyed("sent", "x.mp4"),
        media="video",
        file_id="B",
        title="Pan",
        caption="Pan (AI-made)",
    )
    await store.keep_sent_file(
        bob,
        key,
        media="animation",
        file_id="C",
        title="Deal with it",
        caption="",
    )
    found = await store.sent_file(alice, key=key)
    assert found is not None
    assert (found.file_id, found.words) == ("A", "when it works")
    assert [f.file_id for f in await store.recent_sent_files(alice, 10)] == ["B", "A"]
    assert await store.touch_sent_file(alice, first.id)
    assert [f.file_id for f in await store.recent_sent_files(alice, 10)] == ["A", "B"]
    assert not await store.touch_sent_file(bob, second.id)  # not Bob's
    # The caption is sealed at rest.
    async with store.engine.connect() as connection:
        stored = (await connection.execute(text("SELECT words FROM sent_files"))).scalars()
        assert all(b"when it works" not in bytes(w or b"") for w in stored)
    # Kept again under the same key: replaced, not doubled.
    await store.keep_sent_file(
        alice,
        key,
        media="animation",
        file_id="A2",
        title="Deal with it",
        caption="",
    )
    assert [f.file_id for f in await store.recent_sent_files(alice, 10)] == ["A2", "B"]

    await store.forget(alice)
    assert await store.sent_file(alice, key=key) is None
    assert [f.file_id for f in await store.recent_sent_files(bob, 10)] == ["C"]


async def test_sent_files_expire_with_renders(store_settings: Settings) -> None:
    settings = store_settings.model_copy(update={"output_ttl_hours": 1e-9})
    store = await Store.open(settings)
    try:
        user = await store.user("telegram", "3")
        await store.keep_sent_file(
            user,
            store.keyed("k"),
            media="animation",
            file_id="Z",
            title="T",
            caption="",
        )
        await store.purge_outputs()
        assert await store.recent_sent_files(user, 10) == []
    finally:
        await store.close()


async def test_output_people_finds_a_render_by_either_suffix(store: Store) -> None:
    alice = await store.user("web", "a")
    bob = await store.user("web", "b")
    gif = store.user_folder(await store.account_of(alice)) / "meme-spin-0123456789ab.gif"
    await store.record_output(alice, bob, gif)
    assert await store.output_people(gif.with_suffix(".mp4")) == (alice, bob)
    assert await store.output_people(gif.with_name("other.gif")) is None
