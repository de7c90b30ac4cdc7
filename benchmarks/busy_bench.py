"""How fast "busy" comes when the render queue is full (target: under 100 ms).

A real service (SQLite store, local pool of one worker, queue of one, both taken by sleeping
jobs) answers `/clip` for a user with an ordinary enrolled face and for one with a large
(4 MB, incompressible) face: one at a time, then 50 at once. The floor is the one store
query a refusal needs (finding the user), measured in the same run; the last row is what
reading the large face into a render order costs, which a refusal must not pay.

    .venv/bin/python benchmarks/busy_bench.py [--repeat 50]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import statistics
import tempfile
import time
from pathlib import Path

from _common import sample_dir


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def row(name: str, seconds: list[float], floor: float) -> tuple[str, ...]:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    p50 = statistics.median(ordered)
    return (
        name,
        f"{p50 * 1000:.1f}",
        f"{p95 * 1000:.1f}",
        f"{max(ordered) * 1000:.1f}",
        (f"{p50 / floor:.1f}"),
    )


async def bench(repeat: int) -> None:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from core.config import Settings
    from core.faces.analyzer import DlibAnalyzer
    from core.faces.profile import enroll
    from core.jobs.local import LocalJobRunner
    from core.media.images import load_image
    from core.service.conversation import Service
    from core.service.messages import Chat, Person, Request, Text
    from core.storage.store import Store

    repo = Path(__file__).resolve().parents[1]
    logging.getLogger("core.jobs.local").setLevel(logging.CRITICAL)  # fillers die at the end
    analyzer = DlibAnalyzer()
    group = load_image(sample_dir() / "t1.jpg")
    ordinary = enroll(np.ascontiguousarray(group[200:520, 380:650]), analyzer, Settings())
    noise = np.random.default_rng(0).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)
    large = dataclasses.replace(ordinary, texture=noise)
    with tempfile.TemporaryDirectory() as work:
        settings = Settings(data_dir=Path(work), bundled_clips_dir=repo / "clips", max_queue=1)
        store = await Store.open(settings)
        runner = LocalJobRunner(workers=1, max_queue=1)
        service = Service(settings, store, runner, analyzer)
        try:
            people = {"ordinary face": Person("web", "a"), "large face": Person("web", "b")}
            for (_, person), profile in zip(people.items(), (ordinary, large), strict=True):
                await store.add_face(await store.user(person.platform, person.id), profile)
            for _ in range(2):
                await runner.submit("filler", time.sleep, 600)
            await asyncio.sleep(3)  # the worker process has started: the machine is quiet

            async def refusal(person: Person) -> float:
                started = time.perf_counter()
                request = Request(person, Chat(person.id), text="/clip astronaut-pan")
                replies = [reply async for reply in service.handle(request)]
                took = time.perf_counter() - started
                assert isinstance(replies[0], Text)
                assert "busy" in replies[0].text
                return took

            floors = []
            for _ in range(repeat):
                started = time.perf_counter()
                await store.find_user("web", "a")
                floors.append(time.perf_counter() - started)
            floor = statistics.median(floors)
            rows = [row("floor: find the user (one store query)", floors, floor)]
            for name, person in people.items():
                alone = [await refusal(person) for _ in range(repeat)]
                rows.append(row(f"busy, {name}, one at a time", alone, floor))
            burst = await asyncio.gather(*(refusal(people["large face"]) for _ in range(50)))
            rows.append(row("busy, large face, 50 at once", list(burst), floor))
            readings = []
            for _ in range(max(3, repeat // 10)):
                started = time.perf_counter()
                user = await store.find_user("web", "b")
                assert user is not None
                profile = await store.active_profile(user)
                assert profile is not None
                await asyncio.to_thread(profile.to_bytes)
                readings.append(time.perf_counter() - started)
            rows.append(row("(reading the large face: not paid by a refusal)", readings, floor))
        finally:
            await runner.close()
            await store.close()
    table = Table(title=f'Time to a "busy" answer, full queue; {cpu_model()}')
    for column in ("case", "p50 ms", "p95 ms", "max ms", "p50 x floor"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for cells in rows:
        table.add_row(*cells)
    Console(width=110).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    asyncio.run(bench(parser.parse_args().repeat))


if __name__ == "__main__":
    main()
