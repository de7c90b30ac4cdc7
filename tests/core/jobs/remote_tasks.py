"""Tasks the broker tests run on `facecast worker` processes, which import this module
through ``FACECAST_WORKER_TASKS=tests.core.jobs.remote_tasks`` (the documented hook)."""

from __future__ import annotations

import time

from core.jobs.registry import register

from .job_tasks import crash, square


def hang(seconds: float) -> str:
    """An encoder that never comes back (as far as any timeout is concerned)."""
    time.sleep(seconds)
    return "woke up"


def broken() -> None:
    """A bug: not a friendly refusal, so it is tried once more."""
    raise RuntimeError("a bug in the encoder")


register("square", square)
register("hang", hang)
register("crash", crash)
register("broken", broken)
