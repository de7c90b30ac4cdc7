"""How a running task reports progress, whichever runner runs it.

A runner installs a sink for the job it is running (:func:`install`); the task calls
:func:`report` and knows nothing of queues, processes or brokers. Reports are throttled to
five a second; a job's first and last reports always go out. This module imports nothing of
FaceCast's, so render code can use it without importing a runner.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

Sink = Callable[[int, int], None]

_sink: Sink | None = None
_last_report = 0.0


def install(sink: Sink | None) -> None:
    """Send this process's reports to ``sink`` (None: drop them) from now on."""
    global _sink, _last_report
    _sink = sink
    _last_report = 0.0  # a job's first report always goes out


def report(done: int, total: int) -> None:
    """Tell the job's user how far it got. Best effort: a failing sink is ignored."""
    global _last_report
    if _sink is None:
        return
    now = time.monotonic()
    if done < total and now - _last_report < 0.2:
        return
    _last_report = now
    with contextlib.suppress(Exception):
        _sink(done, total)


__all__ = ["Sink", "install", "report"]
