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

        # The runner and shared state, set by show_runner when /metrics is read.
        self.running = Gauge(
            "facecast_jobs_running", "Jobs a worker is on now.", registry=self.registry
        )
        self.workers_alive = Gauge(
            "facecast_workers_alive", "Render workers answering now.", registry=self.registry
        )
        self.job_latency = Gauge(
            "facecast_job_latency_seconds", "Submit-to-end time of recent jobs, by quantile.",
            ["quantile"], registry=self.registry,
        )  # fmt: skip
        self.in_flight = Gauge(
            "facecast_jobs_in_flight", "Jobs admitted and not ended, on every front-end.",
            registry=self.registry,
        )  # fmt: skip
        self.busy_refusals = Gauge(
            "facecast_busy_refusals", "\"Busy\" answers since the start (every front-end).",
            registry=self.registry,
        )  # fmt: skip

    def show_runner(
        self,
        running: int,
        workers_alive: int | None,
        latencies: dict[str, float | None],
        in_flight: int,
        busy_refusals: int,
    ) -> None:
        """Set the runner's gauges when /metrics is read (a broker's figures need a round
        trip, which a gauge callback cannot make). ``latencies``: quantile -> seconds."""
        self.running.set(running)
        if workers_alive is not None:
            self.workers_alive.set(workers_alive)
        for quantile, seconds in latencies.items():
            if seconds is not None:
                self.job_latency.labels(quantile).set(seconds)
        self.in_flight.set(in_flight)
        self.busy_refusals.set(busy_refusals)

    def watch_queue(self, length: Callable[[], int]) -> None:
        self.queue.set_function(lambda: float(length()))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["Metrics"]
