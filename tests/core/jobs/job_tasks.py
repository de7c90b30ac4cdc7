"""Tasks for the job runner tests; a module of its own so spawned workers can import it."""

from __future__ import annotations

import os
import time

from core import progress
from core.errors import FaceCastError


def square(value: int, pause: float = 0.05) -> int:
    for step in range(4):
        time.sleep(pause / 4)
        progress.report(step + 1, 4)
    return value * value


def crash() -> None:
    os._exit(3)  # the worker process dies mid-job, as a segfault in native code would


def refuse() -> None:
    raise FaceCastError("That clip is too sad to render.")
