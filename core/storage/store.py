"""What FaceCast remembers about people, and nothing more.

Users are known only by a keyed hash of their platform and account id; a face is stored as
the enrolled profile (texture, landmarks, embedding), always encrypted (keys from
``FACECAST_SECRET_KEY`` or a generated key file, see :mod:`core.storage.crypto`), and expires
after ``FACECAST_RETENTION_DAYS``; consent to be memed by others, usage (for quotas, kept a
day), which rendered file shows whom, which faces were verified live, the one open
liveness challenge, and which renders a chat platform already holds (its file id, for inline
answers) are the only other records. Rendered files and those file ids expire after
``FACECAST_OUTPUT_TTL_HOURS``. ``forget`` removes all of it at once: the user's rows,
their rendered files, and other people's renders of their face.

SQLAlchemy 2 async: SQLite in the data folder by default, PostgreSQL by URL. The schema is
created on start; columns added since a table first shipped (``_ADDED_COLUMNS``) are added to
an older database then too (Alembic comes with the first change that is not an addition).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import shutil
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    delete,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.config import Settings
from core.errors import FaceCastError
from core.faces.profile import FaceProfile
from core.storage.crypto import Keys, private_dir

GROUP_MEMES = "group-memes"  # consent to being put into memes by other people


class Base(DeclarativeBase):
    pass


class UserRow(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("account"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[str] = mapped_column(String(64))  # keyed hash of platform + account id
    active_face: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FaceRow(Base):
    __tablename__ = "faces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)  # FaceProfile.to_bytes(), maybe sealed
    # When a live capture proved the face is its owner's (see core.faces.liveness).
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ConsentRow(Base):
    __tablename__ = "consents"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class UsageRow(Base):
    __tablename__ = "usage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class OutputRow(Base):
    """A rendered file: whose it is and whose face is in it (the owner's, or a consenting
    friend's), so that either one's /forget deletes it."""

    __tablename__ = "outputs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ChallengeRow(Base):
    """The liveness challenge a user was asked last (one at a time, used once)."""

    __tablename__ = "challenges"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    face_id: Mapped[int] = mapped_column(Integer)  # the face a pass verifies
    kind: Mapped[str] = mapped_column(String(16))
    nonce: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# Columns added after a table first shipped: ALTER TABLE adds them to an older database
# on start (create_all only makes missing tables).
_ADDED_COLUMNS = {"faces": ("verified_at",)}


def _add_missing_columns(connection: Connection) -> None:
    existing = inspect(connection)
    for table_name, columns in _ADDED_COLUMNS.items():
        have = {column["name"] for column in existing.get_columns(table_name)}
        table = Base.metadata.tables[table_name]
        for name in columns:
            if name not in have:
                kind = table.c[name].type.compile(dialect=connection.dialect)
                connection.execute(text(f"ALTER TABLE {table_name} ADD COLUMN {name} {kind}"))


@dataclass(frozen=True, slots=True)
class PendingChallenge:
    face_id: int
    kind: str
    nonce: str
    expires_at: datetime


class SentFileRow(Base):
    """A render of its owner's own face that a chat platform holds as a file id, so an
    inline answer can offer it again without another upload. Looked up by a keyed hash
    (of the template, caption and face), never by the caption itself, which is sealed."""

    __tablename__ = "sent_files"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    media: Mapped[str] = mapped_column(String(16))  # "animation", "video" or "document"
    file_id: Mapped[str] = mapped_column(String(256))
    title: Mapped[str] = mapped_column(String(200))  # the template's or clip's title
    caption: Mapped[str] = mapped_column(String(300))  # what the file was sent with
    words: Mapped[bytes] = mapped_column(LargeBinary)  # the user's caption, sealed
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


# Usage older than the longest quota window is of no use to anyone.
USAGE_KEPT = timedelta(days=1)


def _delete_output(path: Path) -> None:
    """A render and the MP4 it may have become (a GIF too big to send)."""
    for candidate in (path, path.with_suffix(".mp4")):
        candidate.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class SentFile:
    """A render a chat platform holds (see :class:`SentFileRow`), as the adapter uses it."""

    id: int
    media: str
    file_id: str
    title: str
    caption: str
    words: str
    used_at: datetime


@dataclass(frozen=True, slots=True)
class FaceEntry:
    number: int  # 1-based, oldest first, as users see them
    id: int
    created_at: datetime
    expires_at: datetime
    active: bool
    verified: bool = False  # proved live (see Store.mark_verified)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything here is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Store:
    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._session = async_sessionmaker(engine, expire_on_commit=False)
        self.keys = Keys.load(settings)
        self._sealer = self.keys.sealer()
        self._pepper = self.keys.pepper
        self._old_peppers = self.keys.old_peppers

    @classmethod
    async def open(cls, settings: Settings) -> Store:
        url = settings.resolved_database_url
        private_dir(settings.resolved_data_dir)
        private_dir(settings.outputs_dir)
        if url == f"sqlite+aiosqlite:///{settings.resolved_data_dir / 'facecast.db'}":
            # Made private before SQLite creates it; its journals take its mode.
            database = settings.resolved_data_dir / "facecast.db"
            os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))
            database.chmod(0o600)
        engine = create_async_engine(url)
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
            await connection.run_sync(_add_missing_columns)
        return cls(engine, settings)

    async def close(self) -> None:
        await self.engine.dispose()

    # -- people ------------------------------------------------------------------------

    @staticmethod
    def _hash(pepper: bytes, platform: str, account_id: str) -> str:
        message = f"{platform}:{account_id}".encode()
        return hmac.new(pepper, message, hashlib.sha256).hexdigest()[:40]

    def account(self, platform: str, account_id: str) -> str:
        """The keyed hash that stands for a person in the database and on disk."""
        return self._hash(self._pepper, platform, account_id)

    async def find_user(self, platform: str, account_id: str) -> int | None:
        current = self.account(platform, account_id)
        async with self._session() as session:
            found = await session.scalar(select(UserRow.id).where(UserRow.account == current))
            if found is not None:
                return int(found)
        return await self._rekey(platform, account_id)

    async def _rekey(self, platform: str, account_id: str) -> int | None:
        """A user hashed with an older pepper (a rotated-out key, or a server from before
        keys were derived) is found, and their row and folder move to the current hash."""
        current = self.account(platform, account_id)
        older = [self._hash(p, platform, account_id) for p in self._old_peppers]
        async with self._session() as session, session.begin():
            row = await session.scalar(select(UserRow).where(UserRow.account.in_(older)))
            if row is None:
                return None
            old_folder = self.user_folder(row.account)
            row.account = current
        if old_folder.is_dir() and not self.user_folder(current).exists():
            old_folder.rename(self.user_folder(current))
        return int(row.id)

    async def user(self, platform: str, account_id: str) -> int:
        """The user's id, created on first contact: an upsert, so that two first messages
        at once make one user instead of an IntegrityError."""
        found = await self.find_user(platform, account_id)
        if found is not None:
            return found
        values = {"account": self.account(platform, account_id), "created_at": _now()}
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = (
            dialect.insert(UserRow)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["account"])
        )
        async with self._session() as session, session.begin():
            await session.execute(statement)
        made = await self.find_user(platform, account_id)
        assert made is not None
        return made

    def user_folder(self, account: str) -> Path:
        return self.settings.outputs_dir / account

    # -- rendered files ------------------------------------------------------------------

    async def record_output(self, user_id: int, subject_id: int, path: Path) -> None:
        """Remember that ``path`` (about to be rendered for ``user_id``) shows
        ``subject_id``'s face."""
        async with self._session() as session, session.begin():
            session.add(
                OutputRow(user_id=user_id, subject_id=subject_id, path=str(path), created_at=_now())
            )

    async def purge_outputs(self) -> int:
        """Delete rendered files older than ``FACECAST_OUTPUT_TTL_HOURS`` (and their rows);
        returns how many files went."""
        ttl = timedelta(hours=self.settings.output_ttl_hours)
        async with self._session() as session, session.begin():
            await session.execute(delete(OutputRow).where(OutputRow.created_at <= _now() - ttl))
            await session.execute(delete(SentFileRow).where(SentFileRow.created_at <= _now() - ttl))
        oldest = time.time() - ttl.total_seconds()
        removed = 0
        root = self.settings.outputs_dir
        for path in root.glob("*/*") if root.is_dir() else ():
            try:
                if path.is_file() and path.stat().st_mtime <= oldest:
                    path.unlink()
                    removed += 1
            except OSError:  # gone meanwhile
                continue
        for folder in root.iterdir() if root.is_dir() else ():
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
        return removed

    async def output_people(self, path: Path) -> tuple[int, int] | None:
        """Whom the render at ``path`` was made for and whose face it shows, if it is one."""
        # A GIF that could not fit was recorded as .gif and came back as .mp4.
        candidates = {str(path), str(path.with_suffix(".gif")), str(path.with_suffix(".mp4"))}
        async with self._session() as session:
            row = (
                await session.execute(
                    select(OutputRow.user_id, OutputRow.subject_id)
                    .where(OutputRow.path.in_(candidates))
                    .limit(1)
                )
            ).first()
        return (int(row.user_id), int(row.subject_id)) if row is not None else None

    # -- renders a chat platform holds -----------------------------------------------------

    def keyed(self, *parts: str) -> str:
        """A keyed hash of ``parts``: looks things up without storing them."""
        message = "\x1f".join(parts).encode()
        return hmac.new(self._pepper, message, hashlib.sha256).hexdigest()[:40]

    def _sent(self, row: SentFileRow) -> SentFile:
        words = self._sealer.open(row.words).decode() if row.words else ""
        return SentFile(
            row.id, row.media, row.file_id, row.title, row.caption, words, _aware(row.used_at)
        )

    async def keep_sent_file(
        self,
        user_id: int,
        key: str,
        *,
        media: str,
        file_id: str,
        title: str,
        caption: str,
        words: str = "",
    ) -> SentFile:
        """Remember (or replace) the file id a platform gave one of ``user_id``'s renders."""
        now = _now()
        async with self._session() as session, session.begin():
            await session.execute(
                delete(SentFileRow).where(SentFileRow.user_id == user_id, SentFileRow.key == key)
            )
            row = SentFileRow(
                user_id=user_id,
                key=key,
                media=media,
                file_id=file_id,
                title=title[:200],
                caption=caption[:300],
                words=self._sealer.seal(words.encode()) if words else b"",
                created_at=now,
                used_at=now,
            )
            session.add(row)
            await session.flush()
            return self._sent(row)

    async def sent_file(self, user_id: int, *, key: str = "", file: int = 0) -> SentFile | None:
        """One of ``user_id``'s sent files, by key or by id."""
        condition = SentFileRow.key == key if key else SentFileRow.id == file
        async with self._session() as session:
            row = await session.scalar(
                select(SentFileRow).where(SentFileRow.user_id == user_id, condition)
            )
            return self._sent(row) if row is not None else None

    async def recent_sent_files(self, user_id: int, limit: int) -> list[SentFile]:
        """``user_id``'s sent files, the most recently made or used first."""
        async with self._session() as session:
            rows = await session.scalars(
                select(SentFileRow)
                .where(SentFileRow.user_id == user_id)
                .order_by(SentFileRow.used_at.desc(), SentFileRow.id.desc())
                .limit(limit)
            )
            return [self._sent(row) for row in rows]

    async def touch_sent_file(self, user_id: int, file: int) -> bool:
        """Mark a sent file as just used (it moves to the top); False if there is none."""
        async with self._session() as session, session.begin():
            row = await session.scalar(
                select(SentFileRow).where(SentFileRow.user_id == user_id, SentFileRow.id == file)
            )
            if row is None:
                return False
            row.used_at = _now()
            return True

    async def account_of(self, user_id: int) -> str:
        async with self._session() as session:
            row = await session.get(UserRow, user_id)
            if row is None:
                raise FaceCastError("I don't know you yet: send me a selfie first.")
            return row.account

    # -- faces -------------------------------------------------------------------------

    async def add_face(self, user_id: int, profile: FaceProfile) -> tuple[FaceEntry, bool]:
        """Save a face and make it active; the oldest goes when the user has the maximum.
        Returns the new entry and whether an old face was dropped."""
        now = _now()
        expires = now + timedelta(days=self.settings.retention_days)
        dropped = False
        async with self._session() as session, session.begin():
            ids = list(
                await session.scalars(
                    select(FaceRow.id).where(FaceRow.user_id == user_id).order_by(FaceRow.id)
                )
            )
            while len(ids) >= self.settings.max_faces_per_user:
                await session.execute(delete(FaceRow).where(FaceRow.id == ids.pop(0)))
                dropped = True
            row = FaceRow(
                user_id=user_id,
                created_at=now,
                expires_at=expires,
                data=self._sealer.seal(profile.to_bytes()),
            )
            session.add(row)
            await session.flush()
            user = await session.get(UserRow, user_id)
            assert user is not None
            user.active_face = row.id
            face_id = row.id
        entries = await self.faces(user_id)
        return next(e for e in entries if e.id == face_id), dropped

    async def faces(self, user_id: int) -> list[FaceEntry]:
        now = _now()
        async with self._session() as session:
            user = await session.get(UserRow, user_id)
            rows = await session.execute(
                select(FaceRow.id, FaceRow.created_at, FaceRow.expires_at, FaceRow.verified_at)
                .where(FaceRow.user_id == user_id)
                .order_by(FaceRow.id)
            )
            live = [r for r in rows if _aware(r.expires_at) > now]
        active = user.active_face if user else None
        return [
            FaceEntry(
                n,
                r.id,
                _aware(r.created_at),
                _aware(r.expires_at),
                r.id == active,
                r.verified_at is not None,
            )
            for n, r in enumerate(live, start=1)
        ]

    async def activate(self, user_id: int, number: int) -> FaceEntry:
        entries = await self.faces(user_id)
        if not 1 <= number <= len(entries):
            raise FaceCastError(
                "You have one saved face, face 1: send /face 1, or a new selfie to add another."
                if len(entries) == 1
                else f"You have {len(entries)} saved faces: pick a number from 1 to {len(entries)}."
                if entries
                else "You have no saved faces: send me a selfie."
            )
        chosen = entries[number - 1]
        async with self._session() as session, session.begin():
            user = await session.get(UserRow, user_id)
            assert user is not None
            user.active_face = chosen.id
        return replace(chosen, active=True)

    async def active_profile(self, user_id: int) -> FaceProfile | None:
        """The user's active face (or their newest, if the active one expired)."""
        entries = await self.faces(user_id)
        if not entries:
            return None
        chosen = next((e for e in entries if e.active), entries[-1])
        return await self.face_profile(user_id, chosen.id)

    async def face_profile(self, user_id: int, face_id: int) -> FaceProfile | None:
        """One of the user's faces by its id, None when it is gone or expired."""
        async with self._session() as session:
            data = await session.scalar(
                select(FaceRow.data).where(
                    FaceRow.id == face_id, FaceRow.user_id == user_id, FaceRow.expires_at > _now()
                )
            )
        if data is None:
            return None
        sealed: bytes = data  # decrypting and unpacking a face: off the event loop
        return await asyncio.to_thread(lambda: FaceProfile.from_bytes(self._sealer.open(sealed)))

    async def active_face(self, user_id: int) -> FaceEntry | None:
        """The face :meth:`active_profile` reads: the active one, or the newest."""
        entries = await self.faces(user_id)
        return next((e for e in entries if e.active), entries[-1]) if entries else None

    async def mark_verified(self, face_id: int) -> bool:
        """Record that a live capture proved ``face_id`` is its owner's; False when the
        face is gone meanwhile."""
        async with self._session() as session, session.begin():
            row = await session.get(FaceRow, face_id)
            if row is None:
                return False
            row.verified_at = _now()
            return True

    # -- liveness challenges ------------------------------------------------------------

    async def open_challenge(
        self, user_id: int, face_id: int, kind: str, nonce: str, expires_at: datetime
    ) -> None:
        """Remember the challenge ``user_id`` was just given (replacing an older one)."""
        async with self._session() as session, session.begin():
            await session.execute(delete(ChallengeRow).where(ChallengeRow.user_id == user_id))
            session.add(
                ChallengeRow(
                    user_id=user_id, face_id=face_id, kind=kind, nonce=nonce, expires_at=expires_at
                )
            )

    async def take_challenge(self, user_id: int, *, keep: bool = False) -> PendingChallenge | None:
        """The user's open challenge, removed unless ``keep``: each is answered once
        (expired ones too, for the caller to refuse)."""
        async with self._session() as session, session.begin():
            row = await session.get(ChallengeRow, user_id)
            if row is None:
                return None
            if not keep:
                await session.delete(row)
            return PendingChallenge(row.face_id, row.kind, row.nonce, _aware(row.expires_at))

    async def raw_face_data(self, user_id: int) -> list[bytes]:
        """The stored bytes of a user's faces, as they are on disk (for audits and tests)."""
        async with self._session() as session:
            return list(
                await session.scalars(select(FaceRow.data).where(FaceRow.user_id == user_id))
            )

    # -- consent and usage ----------------------------------------------------------------

    async def set_consent(self, user_id: int, scope: str, granted: bool) -> None:
        async with self._session() as session, session.begin():
            await session.execute(
                delete(ConsentRow).where(ConsentRow.user_id == user_id, ConsentRow.scope == scope)
            )
            if granted:
                session.add(ConsentRow(user_id=user_id, scope=scope, granted_at=_now()))

    async def has_consent(self, user_id: int, scope: str) -> bool:
        async with self._session() as session:
            found = await session.scalar(
                select(ConsentRow.user_id).where(
                    ConsentRow.user_id == user_id, ConsentRow.scope == scope
                )
            )
            return found is not None

    async def record_usage(self, user_id: int, kind: str) -> None:
        async with self._session() as session, session.begin():
            session.add(UsageRow(user_id=user_id, kind=kind, at=_now()))

    async def usage_count(self, user_id: int, kind: str, since: datetime) -> int:
        async with self._session() as session:
            count = await session.scalar(
                select(func.count(UsageRow.id)).where(
                    UsageRow.user_id == user_id, UsageRow.kind == kind, UsageRow.at >= since
                )
            )
            return int(count or 0)

    # -- forgetting --------------------------------------------------------------------

    async def forget(self, user_id: int) -> None:
        """Delete every row about the user, every file rendered for them and every render
        of their face made for someone else, now."""
        account = await self.account_of(user_id)
        async with self._session() as session, session.begin():
            theirs = await session.scalars(
                select(OutputRow.path).where(OutputRow.subject_id == user_id)
            )
            for path in theirs:
                _delete_output(Path(path))
            await session.execute(
                delete(OutputRow).where(
                    (OutputRow.user_id == user_id) | (OutputRow.subject_id == user_id)
                )
            )
            for table in (FaceRow, ConsentRow, UsageRow, ChallengeRow, SentFileRow):
                await session.execute(delete(table).where(table.user_id == user_id))
            await session.execute(delete(UserRow).where(UserRow.id == user_id))
        shutil.rmtree(self.user_folder(account), ignore_errors=True)

    async def purge_expired(self) -> int:
        """Delete faces past their retention and usage older than any quota looks back;
        returns how many faces."""
        now = _now()
        async with self._session() as session, session.begin():
            await session.execute(delete(UsageRow).where(UsageRow.at <= now - USAGE_KEPT))
            result = await session.execute(delete(FaceRow).where(FaceRow.expires_at <= now))
            return int(getattr(result, "rowcount", 0) or 0)

    async def expire_now(self, user_id: int) -> None:
        """Age all of a user's faces past their retention (operators and tests)."""
        async with self._session() as session, session.begin():
            rows = await session.scalars(select(FaceRow).where(FaceRow.user_id == user_id))
            for row in rows:
                row.expires_at = _now() - timedelta(seconds=1)


__all__ = ["GROUP_MEMES", "USAGE_KEPT", "FaceEntry", "PendingChallenge", "SentFile", "Store"]
