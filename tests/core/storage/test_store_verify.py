"""Verified faces and liveness challenges in the store, and the column added to databases
made before it existed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from core.config import Settings
from core.faces.analyzer import DlibAnalyzer
from core.faces.profile import FaceProfile, enroll
from core.media.images import RGBImage
from core.storage.store import Store


@pytest.fixture(scope="module")
def profile(analyzer: DlibAnalyzer, astronaut: RGBImage) -> FaceProfile:
    return enroll(astronaut, analyzer, Settings())


async def test_a_database_from_before_verification_gains_the_column(
    store_settings: Settings, profile: FaceProfile
) -> None:
    store = await Store.open(store_settings)
    user = await store.user("web", "old-timer")
    entry, _ = await store.add_face(user, profile)
    async with store.engine.begin() as connection:  # the schema as it shipped before
        await connection.execute(text("ALTER TABLE faces DROP COLUMN verified_at"))
        await connection.execute(text("DROP TABLE challenges"))
    await store.close()

    store = await Store.open(store_settings)
    try:
        (face,) = await store.faces(user)
        assert face.id == entry.id
        assert not face.verified  # nobody was verified back then
        assert await store.active_profile(user) is not None
        assert await store.mark_verified(face.id)
        active = await store.active_face(user)
        assert active is not None
        assert active.verified
        # A new face starts unverified, and becomes the one in use.
        await store.add_face(user, profile)
        active = await store.active_face(user)
        assert active is not None
        assert not active.verified
    finally:
        await store.close()


async def test_a_challenge_is_answered_once_and_forgotten_with_its_user(
    store_settings: Settings, profile: FaceProfile
) -> None:
    store = await Store.open(store_settings)
    try:
        user = await store.user("telegram", "42")
        entry, _ = await store.add_face(user, profile)
        soon = datetime.now(UTC) + timedelta(minutes=3)
        await store.open_challenge(user, entry.id, "left-right", "nonce-1", soon)
        await store.open_challenge(user, entry.id, "blink-twice", "nonce-2", soon)  # replaces
        kept = await store.take_challenge(user, keep=True)
        assert kept is not None
        assert (kept.kind, kept.nonce) == ("blink-twice", "nonce-2")
        assert abs((kept.expires_at - soon).total_seconds()) < 1
        assert await store.take_challenge(user) == kept
        assert await store.take_challenge(user) is None  # used up
        await store.open_challenge(user, entry.id, "right-left", "nonce-3", soon)
        await store.forget(user)
        async with store.engine.connect() as connection:
            left = await connection.scalar(text("SELECT count(*) FROM challenges"))
        assert left == 0
        assert await store.mark_verified(entry.id) is False  # the face went with them
    finally:
        await store.close()
