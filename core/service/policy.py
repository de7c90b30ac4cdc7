"""Who may do what: protected identities and per-user usage limits."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from core.config import Settings
from core.errors import FaceCastError, QuotaExceeded
from core.faces.analyzer import Analyzer, Embedding, identity_distance
from core.kinds import EngineName
from core.media.images import load_picture

# -- protected identities -----------------------------------------------------------------------

# Euclidean distance under which two identity vectors are one person, per engine: dlib's
# 128-D descriptors (its own rule: 0.6, stricter here) and ArcFace's unit vectors, where
# distance d means cosine similarity 1 - d^2/2 (1.0: cosine 0.5).
PROTECTED_THRESHOLDS: dict[EngineName, float] = {"classic": 0.5, "insightface": 1.0}


def protected_threshold(settings: Settings) -> float:
    """``FACECAST_PROTECTED_THRESHOLD``, or the engine's own."""
    if settings.protected_threshold is not None:
        return settings.protected_threshold
    return PROTECTED_THRESHOLDS[settings.engine]


@dataclass(slots=True)
class ProtectedFaces:
    """Reference embeddings of people who may not be enrolled (public figures, say)."""

    embeddings: list[Embedding] = field(default_factory=list)
    threshold: float = 0.5

    @classmethod
    def load(cls, settings: Settings, analyzer: Analyzer) -> ProtectedFaces:
        found: list[Embedding] = []
        folder = settings.protected_dir
        if folder is not None and folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() not in (".jpg", ".jpeg", ".png", ".webp"):
                    continue
                try:
                    picture = load_picture(path, settings)
                except FaceCastError:
                    continue
                faces = analyzer.detect(picture)
                if faces:
                    face = max(faces, key=lambda f: f.quality.eye_distance)
                    found.append(analyzer.embedding(picture, face.landmarks))
        return cls(found, protected_threshold(settings))

    def matches(self, embedding: Embedding | None) -> bool:
        if embedding is None:
            return False
        return any(
            identity_distance(embedding, known) < self.threshold for known in self.embeddings
        )


# -- limits ------------------------------------------------------------------------------


class PixelBudget:
    """Per-user cap on decoded pixels a second (a token bucket in this process): one
    image as large as allowed goes through at once, a stream of them is slowed down."""

    def __init__(self, per_second: float, burst: float) -> None:
        self.per_second = per_second
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # who: (pixels left, when)

    def take(self, who: str, pixels: int) -> None:
        now = time.monotonic()
        left, then = self._buckets.get(who, (self.burst, now))
        left = min(self.burst, left + (now - then) * self.per_second)
        if pixels > left:
            self._buckets[who] = (left, now)
            wait = max(1, math.ceil((pixels - left) / self.per_second))
            raise QuotaExceeded(
                f"That's a lot of pixels in a short time: try again in {wait} seconds."
            )
        self._buckets[who] = (left - pixels, now)
        if len(self._buckets) > 10_000:  # forget the full ones
            full = [k for k, (v, t) in self._buckets.items() if v >= self.burst]
            for key in full:
                del self._buckets[key]


class UsageLog(Protocol):
    async def record_usage(self, user_id: int, kind: str) -> None: ...

    async def usage_count(self, user_id: int, kind: str, since: datetime) -> int: ...


class UsageLimits:
    """Per-user rate limit (renders a minute) and daily quota, counted in the store so they
    hold across restarts and processes."""

    def __init__(self, log_: UsageLog, per_minute: int, per_day: int) -> None:
        self.log = log_
        self.per_minute = per_minute
        self.per_day = per_day

    async def check(self, user_id: int, kind: str = "render") -> None:
        now = datetime.now(UTC)
        if await self.log.usage_count(user_id, kind, now - timedelta(days=1)) >= self.per_day:
            raise QuotaExceeded(
                f"You've made {self.per_day} things today, the daily limit. Come back tomorrow!"
            )
        if await self.log.usage_count(user_id, kind, now - timedelta(minutes=1)) >= (
            self.per_minute
        ):
            raise QuotaExceeded("Slow down a little: try again in a minute.")

    async def record(self, user_id: int, kind: str = "render") -> None:
        await self.log.record_usage(user_id, kind)


__all__ = [
    "PROTECTED_THRESHOLDS",
    "PixelBudget",
    "ProtectedFaces",
    "UsageLimits",
    "protected_threshold",
]
