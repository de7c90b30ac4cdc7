"""A launch-night burst against the chat service: the local pool vs Taskiq workers on Redis.

N users send a selfie at once (enrolment, then the preview meme each enrolment renders),
then M `/clip` requests arrive at once, spread over those users. The same burst runs
against the local process pool (2 workers, the default) and against the broker with 1 and
2 `facecast worker` processes (FACECAST_BROKER_URL; Redis must answer, else those rows
are skipped and say why). Rate limits and the per-person cap on renders in flight are
lifted so the runner alone decides; the queue cap is the default 20.

For each setup: requests completed, refused ("busy"), failed otherwise, lost (no final
answer at all: must be 0), enrolment and clip latency p50/p95 (request to answer), the
median time to a busy refusal, and clip renders per minute per worker, with its ratio to
the floor: one render of the same clip in this process, measured first, in the same run.

    python benchmarks/scale_bench.py --users 10 --requests 40
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _common import cpu_model
from PIL import Image
from rich.console import Console
from rich.table import Table
from skimage import data

from core.config import Settings
from core.faces.analyzer import DlibAnalyzer
from core.jobs.base import RunnerBusy
from core.jobs.local import LocalJobRunner
from core.render.tasks import RenderConfig, RenderOrder, render_order
from core.service.conversation import Service
from core.service.messages import Chat, Media, Person, Request, Text
from core.storage.store import Store

REPO = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("SCALE_BENCH_REDIS", "redis://127.0.0.1:6379/13")
CLIP = "astronaut-pan"


def selfie() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(data.astronaut())).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


class TimedRunner:
    """The runner as the service sees it, timing how long a refused submit takes (the
    runner's own share of a busy answer)."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.refusals: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.runner, name)

    @property
    def queue_length(self) -> int:
        return int(self.runner.queue_length)

    async def submit(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await self.runner.submit(*args, **kwargs)
        except RunnerBusy:
            self.refusals.append(time.perf_counter() - started)
            raise


@dataclass
class Outcomes:
    enrol: list[float] = field(default_factory=list)
    clip: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)
    failed: int = 0
    why_failed: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    clip_window: tuple[float, float] = (0.0, 0.0)
    runner_refusals: list[float] = field(default_factory=list)

    def tally(
        self, answers: list[tuple[str, float, float, str]], success: str, into: list[float]
    ) -> None:
        """Count ``ask`` results: the time to a ``success`` goes to ``into``."""
        for verdict, first, _, said in answers:
            if verdict == success:
                into.append(first)
            elif verdict == "busy":
                self.refused.append(first)
            elif verdict == "lost":
                self.lost += 1
            else:
                self.failed += 1
                self.why_failed[said] += 1


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def ask(service: Service, request: Request) -> tuple[str, float, float, str]:
    """("media" | "busy" | "error" | "lost", seconds to the first answer that says which,
    seconds to the end, what an error said)."""
    started = time.perf_counter()
    verdict, first, said = "lost", 0.0, ""
    try:
        async for reply in service.handle(request):
            if verdict != "lost":
                continue
            if isinstance(reply, Media):
                verdict, first = "media", time.perf_counter() - started
            elif isinstance(reply, Text) and reply.error:
                busy = "busy" in reply.text or "No render worker" in reply.text
                verdict, first = ("busy" if busy else "error"), time.perf_counter() - started
                said = reply.text
            elif isinstance(reply, Text) and "Got your face" in reply.text:
                verdict, first = "enrolled", time.perf_counter() - started
    except Exception as exc:  # a crash in the service is a lost request, and is shown
        print(f"  request crashed: {exc!r}", file=sys.stderr)
    return verdict, first, time.perf_counter() - started, said


async def burst(service: Service, users: int, requests: int) -> Outcomes:
    result = Outcomes()
    people = [Person("web", f"bench-{uuid.uuid4().hex[:8]}") for _ in range(users)]
    picture = selfie()
    enrolled = await asyncio.gather(
        *(ask(service, Request(p, Chat(p.id), image=picture)) for p in people)
    )
    result.tally(enrolled, "enrolled", result.enrol)
    start = time.perf_counter()
    clips = await asyncio.gather(
        *(
            ask(service, Request(people[i % users], Chat(people[i % users].id), f"/clip {CLIP}"))
            for i in range(requests)
        )
    )
    result.clip_window = (start, time.perf_counter())
    result.tally(clips, "media", result.clip)
    return result


def start_workers(count: int, prefix: str, root: Path) -> list[subprocess.Popen[bytes]]:
    processes = []
    for number in range(count):
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "FACECAST_DATA_DIR": str(root / f"worker-{number}"),
            "FACECAST_BROKER_URL": REDIS_URL,
            "FACECAST_BROKER_PREFIX": prefix,
        }
        with (root / f"worker-{number}.log").open("ab") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "facecast", "worker", "--processes", "1"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    return processes


def stop_workers(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


async def run_setup(
    name: str, workers: int, broker: bool, users: int, requests: int, root: Path
) -> tuple[Outcomes, float]:
    data_dir = root / name
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        data_dir=data_dir,
        bundled_clips_dir=REPO / "clips",
        renders_per_minute=10_000,
        daily_quota=10_000,
        max_jobs_per_user=100,
        decode_pixels_per_second=10**9,
        workers=workers,
        broker_url=REDIS_URL if broker else None,
        broker_prefix=prefix,
    )
    store = await Store.open(settings)
    processes: list[subprocess.Popen[bytes]] = []
    runner: LocalJobRunner | object
    if broker:
        from core.jobs.taskiq_runner import TaskiqJobRunner
        from core.storage.blobs import RedisBlobStore, redis_client

        processes = start_workers(workers, prefix, root)
        redis = redis_client(REDIS_URL)
        remote = await TaskiqJobRunner.start(settings, redis, RedisBlobStore(redis, prefix))
        while ((await remote.stats()).workers_alive or 0) < workers:
            await asyncio.sleep(0.2)
        runner = remote
    else:
        runner = LocalJobRunner(settings.workers, settings.max_queue)
    timed = TimedRunner(runner)
    service = Service(settings, store, timed, DlibAnalyzer())  # type: ignore[arg-type]
    try:
        outcome = await burst(service, users, requests)
        outcome.runner_refusals = timed.refusals
    finally:
        await runner.close()  # type: ignore[attr-defined]
        await store.close()
        stop_workers(processes)
        if broker:
            import redis as redis_sync

            client = redis_sync.Redis.from_url(REDIS_URL)
            for key in client.scan_iter(f"{prefix}:*"):
                client.delete(key)
    window = outcome.clip_window[1] - outcome.clip_window[0]
    per_worker = len(outcome.clip) / max(window, 1e-6) * 60 / workers
    return outcome, per_worker


def floor_seconds(root: Path) -> float:
    """One render of the clip in this process (the second of two: models loaded)."""
    settings = Settings(data_dir=root / "floor", bundled_clips_dir=REPO / "clips")
    analyzer = DlibAnalyzer()
    from core.faces.profile import enroll

    profile = enroll(np.ascontiguousarray(data.astronaut()), analyzer, settings)
    took = 0.0
    for attempt in range(2):
        order = RenderOrder(
            kind="clip",
            target=CLIP,
            profile=profile.to_bytes(),
            output=str(root / "floor" / f"floor-{attempt}.mp4"),
            config=RenderConfig.of(settings),
        )
        started = time.perf_counter()
        render_order(order)
        took = time.perf_counter() - started
    return took


def redis_answers() -> str | None:
    try:
        import redis as redis_sync
        import taskiq_redis  # noqa: F401
    except ImportError:
        return "the scale extra is not installed"
    try:
        redis_sync.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
    except redis_sync.RedisError:
        return f"no Redis answering at {REDIS_URL}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    console = Console(width=170)
    root = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    try:
        floor = floor_seconds(root)
        setups = [("local pool", 2, False)]
        why_not = redis_answers()
        if why_not is None:
            setups += [("broker, 1 worker", 1, True), ("broker, 2 workers", 2, True)]
        table = Table(
            title=(
                f"{args.users} users enrol, then {args.requests} /clip {CLIP} at once "
                f"(queue cap 20) - {cpu_model()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()}"
            )
        )
        for column in (
            "setup",
            "completed",
            "refused",
            "failed",
            "lost",
            "enrol p50/p95 s",
            "clip p50/p95 s",
            "busy answer p50 s",
            "runner refusal p50/max ms",
            "renders/min/worker",
            "vs floor",
        ):
            table.add_column(column)
        outcomes: list[tuple[str, Outcomes]] = []
        for name, workers, broker in setups:
            outcome, per_worker = asyncio.run(
                run_setup(
                    name.replace(" ", "-").replace(",", ""),
                    workers,
                    broker,
                    args.users,
                    args.requests,
                    root,
                )
            )
            outcomes.append((name, outcome))

            def pair(values: list[float]) -> str:
                if not values:
                    return "-"
                return f"{statistics.median(values):.2f} / {percentile(values, 0.95):.2f}"

            busy = f"{statistics.median(outcome.refused):.3f}" if outcome.refused else "-"
            quick = outcome.runner_refusals
            inner = (
                f"{statistics.median(quick) * 1000:.1f} / {max(quick) * 1000:.1f}" if quick else "-"
            )
            table.add_row(
                name,
                str(len(outcome.enrol) + len(outcome.clip)),
                str(len(outcome.refused)),
                str(outcome.failed),
                str(outcome.lost),
                pair(outcome.enrol),
                pair(outcome.clip),
                busy,
                inner,
                f"{per_worker:.1f}",
                f"{per_worker / (60 / floor):.2f}",
            )
        console.print(table)
        console.print(
            f"floor: one {CLIP} render in this process takes {floor:.2f} s "
            f"({60 / floor:.1f} renders/min on one core, nothing else running)."
        )
        for name, outcome in outcomes:
            for said, count in outcome.why_failed.most_common(3):
                console.print(f"{name}: {count} failed with {said!r}")
        if why_not is not None:
            console.print(f"broker rows skipped: {why_not}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
