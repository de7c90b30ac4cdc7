"""Names several layers and the command line share, each as one ``Literal``.

Everything else (choices in the CLI, registries, validation) derives from these. This
module imports nothing, so the command line can build its help without loading the rest.
"""

from __future__ import annotations

from typing import Literal, get_args

EngineName = Literal["classic", "insightface"]
"""Swap engines: ``classic`` (dlib + the triangulated warp) or ``insightface`` (neural)."""

Motion = Literal["push-in", "pan", "shake", "sway"]
"""Camera moves that turn a still picture into a clip."""

MOTIONS: tuple[str, ...] = get_args(Motion)

__all__ = ["MOTIONS", "EngineName", "Motion"]
