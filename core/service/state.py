"""State that several front-ends share: one small interface, two homes.

:class:`LocalState` keeps it in this process (the embedded default: one ``facecast serve``).
:class:`RedisState` keeps it in Redis (``FACECAST_STATE_URL``, or ``FACECAST_BROKER_URL`` when
that names Redis), so that any number of front-ends see the same counts. Every operation
that checks and changes is one atomic step: a Lua script on Redis (which runs scripts one at
a time), plain code without an ``await`` in between in this process.

What lives here:

- sliding windows (:meth:`SharedState.take`): rate limits and daily quotas; a refused
  render gives its place back (:meth:`SharedState.give_back`);
- slots with a time-to-live (:meth:`SharedState.enter`): jobs in flight, per user and in
  all; a front-end that dies leaks nothing past the time-to-live;
- first sightings (:meth:`SharedState.first_time`): Telegram update ids, so an update that
  reaches two front-ends is handled by one;
- counters (:meth:`SharedState.add`): busy refusals, for ``/healthz`` and ``/metrics``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from core.config import Settings
from core.errors import FaceCastError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``limit`` takes in any ``seconds``."""

    seconds: float
    limit: int


class SharedState(Protocol):
    @property
    def shared(self) -> bool:
        """True where other front-ends see the same state (Redis)."""
        ...

    async def take(self, key: str, token: str, windows: Sequence[Window]) -> Window | None:
        """Take one place under ``key`` if every window has room (None), else take nothing
        and return the first full window."""
        ...

    async def give_back(self, key: str, token: str) -> None:
        """Undo :meth:`take` of ``token``."""
        ...

    async def enter(self, key: str, token: str, cap: int, ttl: float) -> int:
        """Join the slots at ``key`` if fewer than ``cap`` are held; returns how many were
        held before (``>= cap``: refused, not joined). A slot lapses after ``ttl`` seconds."""
        ...

    async def leave(self, key: str, token: str) -> None: ...

    async def held(self, key: str) -> int:
        """Slots held at ``key`` now."""
        ...

    async def first_time(self, key: str, ttl: float) -> bool:
        """True the first time ``key`` is seen within ``ttl`` seconds, anywhere."""
        ...

    async def add(self, counter: str, amount: int = 1) -> int:
        """Add to a counter; returns its new value."""
        ...

    async def count(self, counter: str) -> int: ...

    async def close(self) -> None: ...


# -- in this process ---------------------------------------------------------------------------

_MAX_SEEN = 100_000  # first_time keys kept in memory, oldest dropped first


class LocalState:
    """The embedded default: this process's memory. No method awaits between its check and
    its change, so each is atomic on the event loop."""

    shared = False

    def __init__(self) -> None:
        self._taken: dict[str, dict[str, float]] = {}  # key -> token -> when
        self._slots: dict[str, dict[str, float]] = {}  # key -> token -> lapses at
        self._seen: OrderedDict[str, float] = OrderedDict()  # key -> lapses at
        self._counters: dict[str, int] = {}

    async def take(self, key: str, token: str, windows: Sequence[Window]) -> Window | None:
        now = time.monotonic()
        longest = max((w.seconds for w in windows), default=0.0)
        taken = {t: at for t, at in self._taken.get(key, {}).items() if at > now - longest}
        for window in windows:
            if sum(1 for at in taken.values() if at > now - window.seconds) >= window.limit:
                self._taken[key] = taken
                return window
        taken[token] = now
        self._taken[key] = taken
        if len(self._taken) > _MAX_SEEN:  # forget keys with nothing left in their windows
            for stale in [
                k for k, t in self._taken.items() if max(t.values(), default=0) < now - longest
            ]:
                del self._taken[stale]
        return None

    async def give_back(self, key: str, token: str) -> None:
        self._taken.get(key, {}).pop(token, None)

    async def enter(self, key: str, token: str, cap: int, ttl: float) -> int:
        now = time.monotonic()
        slots = {t: end for t, end in self._slots.get(key, {}).items() if end > now}
        held = len(slots)
        if held < cap:
            slots[token] = now + ttl
        self._slots[key] = slots
        return held

    async def leave(self, key: str, token: str) -> None:
        slots = self._slots.get(key)
        if slots is not None:
            slots.pop(token, None)
            if not slots:
                del self._slots[key]

    async def held(self, key: str) -> int:
        now = time.monotonic()
        return sum(1 for end in self._slots.get(key, {}).values() if end > now)

    async def first_time(self, key: str, ttl: float) -> bool:
        now = time.monotonic()
        lapses = self._seen.get(key)
        if lapses is not None and lapses > now:
            return False
        self._seen[key] = now + ttl
        self._seen.move_to_end(key)
        while len(self._seen) > _MAX_SEEN:
            self._seen.popitem(last=False)
        return True

    async def add(self, counter: str, amount: int = 1) -> int:
        self._counters[counter] = self._counters.get(counter, 0) + amount
        return self._counters[counter]

    async def count(self, counter: str) -> int:
        return self._counters.get(counter, 0)

    async def close(self) -> None:
        return None


# -- in Redis ----------------------------------------------------------------------------------

# Times come from the Redis server (TIME), so front-ends with skewed clocks agree.
_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"

# KEYS[1]: a sorted set token -> when taken. ARGV: token, then (seconds, limit) pairs.
# Returns 0 when taken, else the 1-based number of the first full window.
_TAKE = (
    _NOW
    + """
local longest = 0
for i = 2, #ARGV, 2 do longest = math.max(longest, tonumber(ARGV[i])) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - longest)
for i = 2, #ARGV, 2 do
  if redis.call('ZCOUNT', KEYS[1], '(' .. (now - tonumber(ARGV[i])), '+inf')
      >= tonumber(ARGV[i + 1]) then
    return i / 2
  end
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(longest * 1000) + 1000)
return 0
"""
)

# KEYS[1]: a sorted set token -> when the slot lapses. ARGV: token, cap, ttl seconds.
# Returns how many were held before; joins only when that is under the cap.
_ENTER = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  local longest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2]
  redis.call('PEXPIREAT', KEYS[1], math.ceil(tonumber(longest) * 1000) + 1000)
end
return held
"""
)

_HELD = _NOW + "return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')\n"


REDIS_SCHEMES = ("redis", "rediss", "unix")


def redis_address(url: str) -> str:
    """``host:port/db`` of a Redis URL, without its password (for messages and logs)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or ''}"


class StateUnavailable(FaceCastError):
    default_message = "The shared state store does not answer."


TRY_AGAIN = "I can't keep count of requests right now; please try again in a minute."


class RedisState:
    """State in Redis, shared by every front-end that names the same server and prefix. A
    server that stops answering is :class:`StateUnavailable` (a friendly "try again")."""

    shared = True

    def __init__(self, client: Any, prefix: str = "facecast:", address: str = "redis") -> None:
        from redis.exceptions import RedisError

        self._redis = client
        self.prefix = prefix
        self.address = address
        self._failures: tuple[type[BaseException], ...] = (RedisError, OSError)
        self._take = client.register_script(_TAKE)
        self._enter = client.register_script(_ENTER)
        self._held = client.register_script(_HELD)

    @classmethod
    async def connect(cls, url: str, prefix: str = "facecast:") -> RedisState:
        """Connect and check that the server answers (a clear one-line error if not)."""
        try:
            import redis.asyncio as aioredis
            from redis.exceptions import RedisError
        except ImportError:
            raise StateUnavailable(
                "FACECAST_STATE_URL names Redis, but redis is not installed: "
                "pip install 'facecast[scale]'."
            ) from None
        client = aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise StateUnavailable(
                f"Redis at {redis_address(url)} does not answer ({type(exc).__name__})."
            ) from None
        return cls(client, prefix, redis_address(url))

    @contextlib.contextmanager
    def _answering(self) -> Iterator[None]:
        try:
            yield
        except self._failures as exc:
            log.warning("shared state (Redis at %s): %s", self.address, type(exc).__name__)
            raise StateUnavailable(TRY_AGAIN) from None

    async def take(self, key: str, token: str, windows: Sequence[Window]) -> Window | None:
        args: list[Any] = [token]
        for window in windows:
            args += [window.seconds, window.limit]
        with self._answering():
            full = int(await self._take(keys=[self.prefix + key], args=args))
        return windows[full - 1] if full else None

    async def give_back(self, key: str, token: str) -> None:
        with self._answering():
            await self._redis.zrem(self.prefix + key, token)

    async def enter(self, key: str, token: str, cap: int, ttl: float) -> int:
        with self._answering():
            return int(await self._enter(keys=[self.prefix + key], args=[token, cap, ttl]))

    async def leave(self, key: str, token: str) -> None:
        with self._answering():
            await self._redis.zrem(self.prefix + key, token)

    async def held(self, key: str) -> int:
        with self._answering():
            return int(await self._held(keys=[self.prefix + key]))

    async def first_time(self, key: str, ttl: float) -> bool:
        milliseconds = max(1, math.ceil(ttl * 1000))
        with self._answering():
            return bool(await self._redis.set(self.prefix + key, b"1", nx=True, px=milliseconds))

    async def add(self, counter: str, amount: int = 1) -> int:
        with self._answering():
            return int(await self._redis.incrby(self.prefix + "count:" + counter, amount))

    async def count(self, counter: str) -> int:
        with self._answering():
            return int(await self._redis.get(self.prefix + "count:" + counter) or 0)

    async def close(self) -> None:
        await self._redis.aclose()


def state_url(settings: Settings) -> str | None:
    """``FACECAST_STATE_URL``, else ``FACECAST_BROKER_URL`` when that names Redis, else None
    (this process's memory)."""
    if settings.state_url is not None:
        return settings.state_url.get_secret_value() or None
    if settings.broker_url is not None:
        url = settings.broker_url.get_secret_value()
        if urlsplit(url).scheme in REDIS_SCHEMES:
            return url
    return None


async def open_state(url: str | None, prefix: str = "facecast:") -> SharedState:
    """Redis when ``url`` names it (redis:// or rediss://), this process's memory when None."""
    if url is None:
        return LocalState()
    if urlsplit(url).scheme not in REDIS_SCHEMES:
        raise StateUnavailable(
            f"Shared state needs a redis:// URL, not {urlsplit(url).scheme or 'that'}://."
        )
    return await RedisState.connect(url, prefix)


__all__ = [
    "TRY_AGAIN",
    "LocalState",
    "RedisState",
    "SharedState",
    "StateUnavailable",
    "Window",
    "open_state",
    "redis_address",
    "state_url",
]
