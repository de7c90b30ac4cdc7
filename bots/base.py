"""What every chat adapter shares: a lifecycle, and how the service's replies become messages.

An adapter turns a platform update into a :class:`~core.service.messages.Request`, passes it to
the service, and hands the replies to a :class:`Replier` of its own, which knows how to post
text, choices and media on its platform and how (or whether) to show progress. :func:`deliver`
is the one reply loop: progress is best effort and never stands between a user and a
result, and an unexpected error becomes one friendly message, its traceback logged once.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Protocol

from core.service.messages import Choices, Media, Progress, Reply, Text

log = logging.getLogger(__name__)

GENERIC_ERROR = "Something went wrong on my side; try again."


class Adapter(Protocol):
    """A chat platform's bot, started and stopped with the server."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Replier(ABC):
    """One conversation turn's replies, posted on one platform."""

    async def progress(self, reply: Progress) -> None:
        """Show how far a render got (default: not at all)."""
        return

    @abstractmethod
    async def text(self, reply: Text) -> None: ...

    @abstractmethod
    async def choices(self, reply: Choices) -> None: ...

    @abstractmethod
    async def media(self, reply: Media) -> None: ...

    async def done(self) -> None:
        """Called once after the last reply."""
        return


async def safe(replies: AsyncIterator[Reply], where: str) -> AsyncIterator[Reply]:
    """``replies``, ending in a friendly error message instead of an exception."""
    try:
        async for reply in replies:
            yield reply
    except Exception:
        log.exception("answering %s failed", where)
        yield Text(GENERIC_ERROR, error=True)


async def deliver(replies: AsyncIterator[Reply], replier: Replier, where: str) -> None:
    """Post every reply through ``replier``; a failed progress update is logged and skipped."""
    async for reply in safe(replies, where):
        if isinstance(reply, Progress):
            try:
                await replier.progress(reply)
            except Exception as exc:  # the status message is gone, a token expired, ...
                log.warning("could not show progress in %s: %s", where, exc)
        elif isinstance(reply, Media):
            await replier.media(reply)
        elif isinstance(reply, Choices):
            await replier.choices(reply)
        else:
            await replier.text(reply)
    await replier.done()


async def say(*replies: Reply) -> AsyncIterator[Reply]:
    """Replies an adapter makes itself, in the shape the service's come in."""
    for reply in replies:
        yield reply


__all__ = ["GENERIC_ERROR", "Adapter", "Replier", "deliver", "safe", "say"]
