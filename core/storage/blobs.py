"""Bytes that travel between machines: rendered outputs, clip packs, large job inputs.

A :class:`BlobStore` is a small key -> bytes store with a time to live. Render workers on
other machines have their own data folder; what they make reaches the front-end through
one of these, never through a shared filesystem. :class:`RedisBlobStore` keeps the bytes in
the same Redis the broker uses (the ``scale`` extra); ``redis`` is imported only here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from core.errors import FaceCastError

if TYPE_CHECKING:
    from redis.asyncio import Redis


class BlobStore(Protocol):
    async def put(self, key: str, data: bytes, ttl: float | None) -> None:
        """Keep ``data`` under ``key`` for ``ttl`` seconds (None: until deleted)."""
        ...

    async def get(self, key: str) -> bytes | None:
        """The bytes under ``key``, or None when there are none (expired, deleted)."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, *keys: str) -> None: ...


def redis_client(url: str) -> Redis:
    """An asyncio Redis client for ``url``, or a one-line error naming the extra."""
    try:
        from redis.asyncio import Redis
    except ImportError:
        raise FaceCastError(
            "FACECAST_BROKER_URL is set, but redis is not installed: pip install 'facecast[scale]'."
        ) from None
    return Redis.from_url(url)


class RedisBlobStore:
    """Blobs as plain Redis strings under ``<prefix>:blob:<key>``."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = f"{prefix}:blob:"

    async def put(self, key: str, data: bytes, ttl: float | None) -> None:
        expiry = max(1, round(ttl * 1000)) if ttl is not None else None
        await self.redis.set(self.prefix + key, data, px=expiry)

    async def get(self, key: str) -> bytes | None:
        value = await self.redis.get(self.prefix + key)
        if value is None:
            return None
        return value if isinstance(value, bytes) else str(value).encode()

    async def exists(self, key: str) -> bool:
        return bool(await self.redis.exists(self.prefix + key))

    async def delete(self, *keys: str) -> None:
        if keys:
            await self.redis.delete(*(self.prefix + key for key in keys))


__all__ = ["BlobStore", "RedisBlobStore", "redis_client"]
