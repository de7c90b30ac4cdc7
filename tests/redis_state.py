"""The real Redis the shared-state tests use: each test gets its own key prefix, removed
afterwards, and skips with the reason when no Redis answers."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import pytest

from core.service.state import RedisState, StateUnavailable

REDIS_URL = os.environ.get("FACECAST_TEST_REDIS", "redis://127.0.0.1:6379/0")


@contextlib.asynccontextmanager
async def redis_prefix() -> AsyncIterator[str]:
    """A fresh key prefix on the test Redis; its keys are deleted at the end."""
    prefix = f"facecast-test-{uuid.uuid4().hex[:12]}:"
    try:
        probe = await RedisState.connect(REDIS_URL, prefix)
    except StateUnavailable as exc:
        pytest.skip(f"no Redis for the shared-state tests: {exc.message}")
    try:
        yield prefix
    finally:
        client = probe._redis
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await probe.close()


async def redis_state(prefix: str) -> RedisState:
    return await RedisState.connect(REDIS_URL, prefix)
