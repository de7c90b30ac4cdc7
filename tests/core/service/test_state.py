"""Shared state: the in-process and the Redis home behave alike, and every check-and-change
is one step, so concurrent callers (several front-ends) never both get the last place."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.config import Settings
from core.errors import QuotaExceeded
from core.service.policy import UsageLimits
from core.service.state import (
    LocalState,
    SharedState,
    StateUnavailable,
    Window,
    open_state,
    state_url,
)
from core.storage.store import Store

from ...redis_state import redis_prefix, redis_state


@pytest.fixture(params=["local", "redis"])
async def states(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[], SharedState]]:
    """A maker of front-ends' views of one shared state: the same object in this process,
    separate connections to one Redis."""
    if request.param == "local":
        local = LocalState()
        yield lambda: local
        return
    async with redis_prefix() as prefix:
        opened = [await redis_state(prefix) for _ in range(3)]
        turn = itertools.count()
        yield lambda: opened[next(turn) % len(opened)]
        for state in opened:
            await state.close()


async def test_windows_give_exactly_the_limit_under_concurrency(
    states: Callable[[], SharedState],
) -> None:
    windows = (Window(3600, 10), Window(60, 6))
    results = await asyncio.gather(
        *(states().take("usage:alice", f"t{i}", windows) for i in range(15))
    )
    assert results.count(None) == 6
    assert {w for w in results if w is not None} == {Window(60, 6)}
    # Giving one back makes one place; another user is not affected.
    assert await states().take("usage:alice", "late", windows) == Window(60, 6)
    await states().give_back("usage:alice", "t0" if results[0] is None else "t5")
    assert await states().take("usage:alice", "late", windows) is None
    assert await states().take("usage:bob", "b1", windows) is None


async def test_the_longer_window_refuses_once_full(states: Callable[[], SharedState]) -> None:
    windows = (Window(3600, 2), Window(60, 5))
    assert await states().take("q", "a", windows) is None
    assert await states().take("q", "b", windows) is None
    assert await states().take("q", "c", windows) == Window(3600, 2)


async def test_windows_slide(states: Callable[[], SharedState]) -> None:
    windows = (Window(0.3, 1),)
    assert await states().take("w", "a", windows) is None
    assert await states().take("w", "b", windows) == Window(0.3, 1)
    await asyncio.sleep(0.4)
    assert await states().take("w", "c", windows) is None


async def test_slots_cap_and_lapse(states: Callable[[], SharedState]) -> None:
    held = await asyncio.gather(*(states().enter("jobs:1", f"j{i}", 2, 60) for i in range(5)))
    assert sorted(held) == [0, 1, 2, 2, 2]
    assert await states().held("jobs:1") == 2
    joined = [f"j{i}" for i, h in enumerate(held) if h < 2]
    await states().leave("jobs:1", joined[0])
    assert await states().enter("jobs:1", "again", 2, 60) == 1
    # A slot whose holder vanished lapses by itself.
    assert await states().enter("jobs:2", "ghost", 1, 0.2) == 0
    assert await states().enter("jobs:2", "next", 1, 60) == 1
    await asyncio.sleep(0.3)
    assert await states().enter("jobs:2", "next", 1, 60) == 0


async def test_first_time_is_first_once_everywhere(states: Callable[[], SharedState]) -> None:
    seen = await asyncio.gather(*(states().first_time("update:42", 60) for _ in range(8)))
    assert seen.count(True) == 1
    assert await states().first_time("update:43", 0.2)
    await asyncio.sleep(0.3)
    assert await states().first_time("update:43", 0.2)  # remembered only as long as asked


async def test_counters_add_up(states: Callable[[], SharedState]) -> None:
    await asyncio.gather(*(states().add("busy") for _ in range(7)))
    assert await states().count("busy") == 7
    assert await states().count("never") == 0


# -- usage limits over the store and over Redis ----------------------------------------------


class _SlowToAcknowledge:
    """The store, answering a usage write only a moment after it is committed (a loaded
    machine): the window in which a concurrent reservation sees the write."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def record_usage(self, user_id: int, kind: str) -> None:
        await self.store.record_usage(user_id, kind)
        await asyncio.sleep(0.05)

    async def usage_count(self, user_id: int, kind: str, since: datetime) -> int:
        return await self.store.usage_count(user_id, kind, since)


async def test_a_use_being_recorded_is_not_counted_twice(tmp_path: Path) -> None:
    """A use confirmed while another is reserved is counted once: in the store or as
    pending, never both (it was both for a moment, and a user one short of the daily quota
    was refused; CI saw three inline results chosen at once count as two)."""
    store = await Store.open(Settings(data_dir=tmp_path))
    try:
        user = await store.user("telegram", "1002")
        limits = UsageLimits(_SlowToAcknowledge(store), per_minute=6, per_day=3)
        first, second = await limits.reserve(user), await limits.reserve(user)
        confirming = asyncio.create_task(limits.confirm(first))
        await asyncio.sleep(0.01)  # the first use is in the store, not yet acknowledged
        third = await limits.reserve(user)  # 1 recorded + 1 pending: the last place
        await confirming
        for ticket in (second, third):
            await limits.confirm(ticket)
        assert await store.usage_count(user, "render", datetime.now(UTC) - timedelta(days=1)) == 3
        with pytest.raises(QuotaExceeded, match="daily limit"):
            await limits.reserve(user)
    finally:
        await store.close()


async def test_rate_limit_holds_under_15_concurrent_requests_in_process(
    tmp_path: Path,
) -> None:
    store = await Store.open(Settings(data_dir=tmp_path))
    try:
        user = await store.user("telegram", "1001")
        limits = UsageLimits(store, per_minute=6, per_day=50)
        outcomes = await asyncio.gather(
            *(limits.reserve(user) for _ in range(15)), return_exceptions=True
        )
        tickets = [t for t in outcomes if not isinstance(t, BaseException)]
        refused = [e for e in outcomes if isinstance(e, QuotaExceeded)]
        assert (len(tickets), len(refused)) == (6, 9)
        # One is refunded (its render was refused as busy): one place comes free.
        await limits.refund(tickets[0])
        for ticket in tickets[1:]:
            await limits.confirm(ticket)
        await limits.confirm(await limits.reserve(user))
        with pytest.raises(QuotaExceeded, match="Slow down"):
            await limits.reserve(user)
        # What was confirmed is in the store: a restarted server still counts it.
        again = UsageLimits(store, per_minute=6, per_day=50)
        with pytest.raises(QuotaExceeded):
            await again.reserve(user)
    finally:
        await store.close()


async def test_rate_limit_holds_across_two_front_ends_sharing_redis(tmp_path: Path) -> None:
    async with redis_prefix() as prefix:
        first, second = await redis_state(prefix), await redis_state(prefix)
        store = await Store.open(Settings(data_dir=tmp_path))
        try:
            front_ends = [UsageLimits(store, 6, 8, first), UsageLimits(store, 6, 8, second)]
            outcomes = await asyncio.gather(
                *(front_ends[i % 2].reserve(7) for i in range(15)), return_exceptions=True
            )
            tickets = [t for t in outcomes if not isinstance(t, BaseException)]
            assert len(tickets) == 6
            assert all(isinstance(e, QuotaExceeded) for e in outcomes if e not in tickets)
            await front_ends[1].refund(tickets[0])  # refunded by the other front-end
            assert await front_ends[0].reserve(7)
            for limits in front_ends:  # the minute's six places are gone, for both
                with pytest.raises(QuotaExceeded, match="Slow down"):
                    await limits.reserve(7)
        finally:
            await first.close()
            await second.close()
            await store.close()


# -- where the state lives --------------------------------------------------------------------


async def test_state_url_prefers_its_own_setting_then_a_redis_broker() -> None:
    assert state_url(Settings()) is None
    assert state_url(Settings(state_url=SecretStr("redis://h:1/2"))) == "redis://h:1/2"
    broker = SecretStr("redis://:pw@broker:6379/0")
    assert state_url(Settings(broker_url=broker)) == "redis://:pw@broker:6379/0"
    both = Settings(broker_url=broker, state_url=SecretStr("redis://h:1/2"))
    assert state_url(both) == "redis://h:1/2"


async def test_a_redis_that_does_not_answer_is_one_clear_line() -> None:
    with pytest.raises(StateUnavailable) as caught:
        await open_state("redis://:hunter2@127.0.0.1:1/0")
    assert "127.0.0.1:1/0 does not answer" in caught.value.message
    assert "hunter2" not in caught.value.message
    with pytest.raises(StateUnavailable, match="redis://"):
        await open_state("memcached://127.0.0.1:11211")
    assert isinstance(await open_state(None), LocalState)
