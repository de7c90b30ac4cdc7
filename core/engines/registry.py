"""Engines by name: each engine's analyzer, identity embedder and swapper.

:data:`ENGINES` maps every :data:`~core.config.EngineName` to an :class:`Engine`, a row of
factories typed by the interfaces they return, so a new engine is one more row (the neural
engine's modules, and onnxruntime, are imported only when its factories run).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.config import Settings
from core.engines.base import Swapper
from core.engines.models import ModelStore, load_registry
from core.faces.analyzer import Analyzer
from core.faces.profile import IdentityEmbedder
from core.kinds import EngineName


@dataclass(frozen=True, slots=True)
class Engine:
    name: EngineName
    analyzer: Callable[[Settings], Analyzer]
    swapper: Callable[[Settings], Swapper]
    # The engine's own identity embedder, or None when enrolment's analyzer embedding is
    # the identity (classic). Given the analyzer, so one that embeds is reused.
    identity: Callable[[Settings, Analyzer | None], IdentityEmbedder | None]


def model_store(settings: Settings) -> ModelStore:
    registry = load_registry(settings.models_registry) if settings.models_registry else None
    return ModelStore(settings.resolved_models_dir, registry)


def _classic_analyzer(settings: Settings) -> Analyzer:
    from core.faces.analyzer import DlibAnalyzer

    return DlibAnalyzer()


def _classic_swapper(settings: Settings) -> Swapper:
    from core.engines.classic import ClassicSwapper

    return ClassicSwapper()


def _no_identity(settings: Settings, analyzer: Analyzer | None) -> IdentityEmbedder | None:
    return None


def _neural_analyzer(settings: Settings) -> Analyzer:
    """buffalo_l's SCRFD, 1k3d68 and ArcFace (68 landmarks, like dlib's)."""
    from core.engines.neural import InsightFaceAnalyzer

    return InsightFaceAnalyzer(model_store(settings))


def _neural_swapper(settings: Settings) -> Swapper:
    from core.engines.neural import InSwapper

    return InSwapper(model_store(settings))


def _neural_identity(settings: Settings, analyzer: Analyzer | None) -> IdentityEmbedder | None:
    """ArcFace; the neural analyzer already computes it, so it is reused when given."""
    from core.engines.neural import ArcFaceEmbedder, InsightFaceAnalyzer

    if isinstance(analyzer, InsightFaceAnalyzer):
        return analyzer
    return ArcFaceEmbedder(model_store(settings))


ENGINES: dict[EngineName, Engine] = {
    "classic": Engine("classic", _classic_analyzer, _classic_swapper, _no_identity),
    "insightface": Engine("insightface", _neural_analyzer, _neural_swapper, _neural_identity),
}


def engine(name: str) -> Engine:
    try:
        return ENGINES[name]  # type: ignore[index]
    except KeyError:
        known = ", ".join(sorted(ENGINES))
        raise ValueError(f"unknown swap engine {name!r}; known: {known}") from None


def make_analyzer(settings: Settings) -> Analyzer:
    """The configured engine's face analyzer."""
    return engine(settings.engine).analyzer(settings)


def make_identity(settings: Settings, analyzer: Analyzer | None = None) -> IdentityEmbedder | None:
    """The configured engine's own identity embedder (None for classic)."""
    return engine(settings.engine).identity(settings, analyzer)


def make_swapper(settings: Settings) -> Swapper:
    """The configured engine's swapper (the neural one loads its model files)."""
    return engine(settings.engine).swapper(settings)


__all__ = [
    "ENGINES",
    "Engine",
    "engine",
    "make_analyzer",
    "make_identity",
    "make_swapper",
    "model_store",
]
