"""Prometheus metrics of one running FaceCast (its own registry: no global state)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter(
            "facecast_messages", "Requests handled, by command.", ["command"],
            registry=self.registry,
        )  # fmt: skip
        self.renders = Counter(
            "facecast_renders", "Renders finished, by kind and outcome.", ["kind", "outcome"],
            registry=self.registry,
        )  # fmt: skip
        self.render_seconds = Histogram(
            "facecast_render_seconds", "Time from request to finished render.", ["kind"],
            buckets=(0.5, 1, 2, 4, 8, 16, 32, 64), registry=self.registry,
        )  # fmt: skip
        self.errors = Counter(
            "facecast_errors", "Requests answered with an error, by kind.", ["kind"],
            registry=self.registry,
        )  # fmt: skip
        self.enrolments = Counter(
            "facecast_enrolments", "Selfies received, by outcome.", ["outcome"],
            registry=self.registry,
        )  # fmt: skip
        self.verifications = Counter(
            "facecast_verifications", "Liveness checks (/verify videos), by outcome.",
            ["outcome"], registry=self.registry,
        )  # fmt: skip
        self.queue = Gauge(
            "facecast_queue_length", "Renders waiting for a worker.", registry=self.registry
        )

    def watch_queue(self, length: Callable[[], int]) -> None:
        self.queue.set_function(lambda: float(length()))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["Metrics"]
