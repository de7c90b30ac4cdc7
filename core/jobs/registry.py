"""The tasks a job may name: a broker message carries a task's name, never code.

``render``, ``enrol`` and ``liveness`` (a ``/verify`` capture) are FaceCast's own; a
module listed in ``FACECAST_WORKER_TASKS`` may :func:`register` more when it is imported
(the test suite's slow and hanging tasks).
Both the front-end and the workers import those modules, so a name means the same
function on both sides.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from core.faces.liveness import liveness_order
from core.render.tasks import enrol_order, render_order

REMOTE_TASKS: dict[str, Callable[..., Any]] = {
    "render": render_order,
    "enrol": enrol_order,
    "liveness": liveness_order,
}


def register(name: str, task: Callable[..., Any]) -> Callable[..., Any]:
    """Make ``task`` runnable on workers under ``name``."""
    known = REMOTE_TASKS.get(name)
    if known is not None and known is not task:
        raise ValueError(f"another task is registered as {name!r}")
    REMOTE_TASKS[name] = task
    return task


def name_of(task: Callable[..., Any]) -> str:
    """The registered name of ``task``; a TypeError for one that was never registered."""
    for name, known in REMOTE_TASKS.items():
        if known is task:
            return name
    raise TypeError(f"{getattr(task, '__qualname__', task)!r} is not a registered task")


def import_task_modules(modules: Iterable[str]) -> None:
    """Import the modules that register extra tasks."""
    for module in modules:
        importlib.import_module(module)


__all__ = ["REMOTE_TASKS", "import_task_modules", "name_of", "register"]
