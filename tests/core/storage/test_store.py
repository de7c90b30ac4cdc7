from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import text

from core.config import Settings
from core.errors import BadMedia
from core.faces.analyzer import DlibAnalyzer
from core.faces.profile import FaceProfile, enroll
from core.media.images import RGBImage
from core.storage.crypto import FACES, KEY_FILE, PEPPER, WEB_SESSIONS, Keys
from core.storage.store import GROUP_MEMES, USAGE_KEPT, Store


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


async def test_faces_are_encrypted_and_private_without_a_configured_key(
    store_settings: Settings, profile: FaceProfile
) -> None:
    assert store_settings.secret_key is None
    store = await Store.open(store_settings)
    try:
        user = await store.user("web", "e")
        await store.add_face(user, profile)
        (raw,) = await store.raw_face_data(user)
        assert b"texture" not in raw
        assert not raw.startswith(b"PK")
    finally:
        await store.close()
    data = store_settings.resolved_data_dir
    key_file = data / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_text().strip()) >= 40
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE(store_settings.outputs_dir.stat().st_mode) == 0o700
    if store_settings.database_url is None:
        assert stat.S_IMODE((data / "facecast.db").stat().st_mode) == 0o600
    # The same generated key reads it back after a restart.
    again = await Store.open(store_settings)
    try:
        assert await again.find_user("web", "e") == user
        back = await again.active_profile(user)
        assert back is not None
        assert np.array_equal(back.texture, profile.texture)
    finally:
        await again.close()


def test_each_purpose_has_its_own_key() -> None:
    keys = Keys(("one secret",))
    derived = [keys.derived(p)[0] for p in (FACES, PEPPER, WEB_SESSIONS)]
    assert len(set(derived)) == 3
    assert all(len(k) == 32 for k in derived)
    assert b"one secret" not in derived


async def test_keys_rotate_the_first_encrypts_all_decrypt(
    store_settings: Settings, profile: FaceProfile
) -> None:
    def keyed(value: str) -> Settings:
        return store_settings.model_copy(update={"secret_key": SecretStr(value)})

    old = await Store.open(keyed("old key"))
    try:
        user = await old.user("telegram", "7")
        await old.add_face(user, profile)
        (sealed_old,) = await old.raw_face_data(user)
    finally:
        await old.close()
    rotated = await Store.open(keyed("new key, old key"))
    try:
        assert await rotated.find_user("telegram", "7") == user  # rehashed with the new pepper
        back = await rotated.active_profile(user)
        assert back is not None
        assert np.array_equal(back.texture, profile.texture)
        await rotated.add_face(user, profile)
        newest = (await rotated.raw_face_data(user))[-1]
        assert newest != sealed_old
    finally:
        await rotated.close()
    new_only = await Store.open(keyed("new key"))
    try:
        assert await new_only.find_user("telegram", "7") == user
        back = await new_only.active_profile(user)  # the newest face, sealed with the new key
        assert back is not None
        assert np.array_equal(back.texture, profile.texture)
        await new_only.activate(user, 1)
        with pytest.raises(BadMedia):  # the old key is gone: its face can't be read
            await new_only.active_profile(user)
    finally:
        await new_only.close()


@pytest.mark.parametrize("secret", [None, "an old secret"])
async def test_data_from_before_derived_keys_stays_readable(
    store_settings: Settings, profile: FaceProfile, secret: str | None
) -> None:
    """A server of old hashed accounts with the raw secret (or "facecast" without one) and
    sealed faces with SHA-256 of the secret (or not at all)."""
    settings = store_settings.model_copy(
        update={"secret_key": SecretStr(secret) if secret else None}
    )
    store = await Store.open(settings)
    try:
        pepper = secret.encode() if secret else b"facecast"
        old_account = hmac.new(pepper, b"discord:42", hashlib.sha256).hexdigest()[:40]
        data = profile.to_bytes()
        if secret:
            key = base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())
            data = Fernet(key).encrypt(data)
        now = datetime.now(UTC)
        async with store.engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO users (account, created_at) VALUES (:a, :t)"),
                {"a": old_account, "t": now},
            )
            user = (
                await connection.execute(
                    text("SELECT id FROM users WHERE account = :a"), {"a": old_account}
                )
            ).scalar_one()
            await connection.execute(
                text(
                    "INSERT INTO faces (user_id, created_at, expires_at, data) "
                    "VALUES (:u, :t, :e, :d)"
                ),
                {"u": user, "t": now, "e": now + timedelta(days=1), "d": data},
            )
        old_folder = store.user_folder(old_account)
        old_folder.mkdir(parents=True)
        (old_folder / "meme.gif").write_bytes(b"GIF89a")
        assert await store.find_user("discord", "42") == user
        assert await store.account_of(user) == store.account("discord", "42") != old_account
        assert (store.user_folder(store.account("discord", "42")) / "meme.gif").is_file()
        back = await store.active_profile(user)
        assert back is not None
        assert np.array_equal(back.texture, profile.texture)
    finally:
        await store.close()


async def test_concurrent_first_messages_make_one_user(store: Store) -> None:
    ids = await asyncio.gather(*(store.user("telegram", "555") for _ in range(12)))
    assert len(set(ids)) == 1
    async with store.engine.connect() as connection:
        count = (await connection.execute(text("SELECT count(*) FROM users"))).scalar_one()
    assert count == 1


async def test_usage_older_than_a_day_is_purged(store: Store) -> None:
    user = await store.user("web", "f")
    for _ in range(3):
        await store.record_usage(user, "render")
    async with store.engine.begin() as connection:
        old = datetime.now(UTC) - USAGE_KEPT - timedelta(minutes=1)
        await connection.execute(
            text("UPDATE usage SET at = :old WHERE id IN (SELECT min(id) FROM usage)"),
            {"old": old},
        )
    await store.purge_expired()
    async with store.engine.connect() as connection:
        left = (await connection.execute(text("SELECT count(*) FROM usage"))).scalar_one()
    assert left == 2
    week_ago = datetime.now(UTC) - timedelta(days=7)
    assert await store.usage_count(user, "render", week_ago) == 2
