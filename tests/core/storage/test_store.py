from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import SecretStr

from core.config import Settings
from core.faces.analyzer import DlibAnalyzer
from core.faces.profile import FaceProfile, enroll
from core.media.images import RGBImage
from core.storage.store import GROUP_MEMES, Store


@pytest.fixture
async def store(store_settings: Settings) -> AsyncIterator[Store]:
    opened = await Store.open(store_settings)
    yield opened
    await opened.close()


@pytest.fixture(scope="module")
def profile(analyzer: DlibAnalyzer, astronaut: RGBImage) -> FaceProfile:
    return enroll(astronaut, analyzer, Settings())


async def test_people_are_stored_as_keyed_hashes(store: Store) -> None:
    first = await store.user("telegram", "12345")
    assert await store.user("telegram", "12345") == first
    assert await store.user("discord", "12345") != first
    assert await store.find_user("web", "nobody") is None
    account = await store.account_of(first)
    assert "12345" not in account
    assert len(account) == 40


async def test_faces_round_trip_and_cap(store: Store, profile: FaceProfile) -> None:
    user = await store.user("web", "a")
    for _ in range(store.settings.max_faces_per_user):
        await store.add_face(user, profile)
    entry, dropped = await store.add_face(user, profile)
    assert dropped
    entries = await store.faces(user)
    assert len(entries) == store.settings.max_faces_per_user
    assert entries[-1].active
    assert entry.number == len(entries)
    back = await store.active_profile(user)
    assert back is not None
    assert np.array_equal(back.texture, profile.texture)
    chosen = await store.activate(user, 2)
    assert chosen.number == 2
    assert [e.active for e in await store.faces(user)] == [False, True, False, False, False]


async def test_consent_and_usage(store: Store) -> None:
    user = await store.user("web", "b")
    assert not await store.has_consent(user, GROUP_MEMES)
    await store.set_consent(user, GROUP_MEMES, True)
    assert await store.has_consent(user, GROUP_MEMES)
    await store.set_consent(user, GROUP_MEMES, False)
    assert not await store.has_consent(user, GROUP_MEMES)
    for _ in range(3):
        await store.record_usage(user, "render")
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    assert await store.usage_count(user, "render", hour_ago) == 3
    assert await store.usage_count(user, "render", datetime.now(UTC) + timedelta(seconds=5)) == 0


async def test_expired_faces_are_gone(store: Store, profile: FaceProfile) -> None:
    user = await store.user("web", "c")
    await store.add_face(user, profile)
    await store.expire_now(user)
    assert await store.faces(user) == []
    assert await store.active_profile(user) is None
    assert await store.purge_expired() == 1
    assert await store.raw_face_data(user) == []


async def test_face_data_is_encrypted_at_rest_with_a_key(
    store_settings: Settings, profile: FaceProfile
) -> None:
    keyed = store_settings.model_copy(update={"secret_key": SecretStr("correct horse")})
    store = await Store.open(keyed)
    try:
        user = await store.user("web", "d")
        await store.add_face(user, profile)
        (raw,) = await store.raw_face_data(user)
        assert raw != profile.to_bytes()
        assert b"texture" not in raw  # npz member names would show in the clear
        again = await store.active_profile(user)
        assert again is not None
        assert np.array_equal(again.texture, profile.texture)
    finally:
        await store.close()
    wrong = await Store.open(
        store_settings.model_copy(update={"secret_key": SecretStr("another key")})
    )
    try:
        user_again = await wrong.find_user("web", "d")
        assert user_again is None  # the account hash is keyed as well
    finally:
        await wrong.close()
