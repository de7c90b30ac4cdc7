from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from core.jobs.base import CANCELLED, Job, JobEvent, RunnerBusy
from core.jobs.local import SHUTTING_DOWN, LocalJobRunner

from . import job_tasks


@pytest.fixture
async def runner() -> AsyncIterator[LocalJobRunner]:
    started = LocalJobRunner(workers=2, max_queue=20)
    yield started
    await started.close()


async def _follow(job: Job) -> list[JobEvent]:
    return [event async for event in job.events()]


async def test_twenty_jobs_on_two_workers_all_finish_in_queue_order(
    runner: LocalJobRunner,
) -> None:
    jobs = [await runner.submit(f"user{i}", job_tasks.square, i, 0.6) for i in range(20)]
    histories = await asyncio.wait_for(asyncio.gather(*(_follow(j) for j in jobs)), 120)
    for number, history in enumerate(histories):
        assert history[-1].kind == "done"
        assert history[-1].result == number * number
        positions = [e.position for e in history if e.kind == "queued"]
        assert positions == sorted(positions, reverse=True)  # only ever moves up
        if number >= 2:
            assert positions[0] == number - 1  # the first two start at once
            assert positions[-1] == 1
        assert any(e.kind == "progress" and e.total == 4 for e in history)
    assert runner.queue_length == 0


async def test_a_full_queue_refuses_politely() -> None:
    small = LocalJobRunner(workers=1, max_queue=2)
    try:
        jobs = [await small.submit("u", job_tasks.square, i, 0.5) for i in range(3)]
        with pytest.raises(RunnerBusy, match="try again in a minute"):
            await small.submit("u", job_tasks.square, 9)
        histories = await asyncio.wait_for(asyncio.gather(*(_follow(j) for j in jobs)), 60)
        assert [h[-1].result for h in histories] == [0, 1, 4]
    finally:
        await small.close()


async def test_a_job_that_kills_its_worker_fails_alone(runner: LocalJobRunner) -> None:
    innocent = await runner.submit("a", job_tasks.square, 7, 1.0)
    crasher = await runner.submit("b", job_tasks.crash)
    crashed, survived = await asyncio.wait_for(
        asyncio.gather(_follow(crasher), _follow(innocent)), 120
    )
    assert crashed[-1].kind == "failed"
    assert "went wrong" in crashed[-1].message
    assert survived[-1].kind == "done"
    assert survived[-1].result == 49
    after = await runner.submit("c", job_tasks.square, 3)
    assert (await asyncio.wait_for(_follow(after), 60))[-1].result == 9


async def test_a_friendly_error_reaches_the_user(runner: LocalJobRunner) -> None:
    job = await runner.submit("a", job_tasks.refuse)
    history = await asyncio.wait_for(_follow(job), 60)
    assert history[-1] == JobEvent("failed", message="That clip is too sad to render.")


async def test_cancel_ends_a_persons_queued_and_running_jobs() -> None:
    small = LocalJobRunner(workers=1, max_queue=5)
    try:
        running = await small.submit("alice", job_tasks.square, 2, 1.0)
        queued = await small.submit("alice", job_tasks.square, 3, 0.1)
        about = await small.submit("bob", job_tasks.square, 4, 0.1, about=["alice"])
        other = await small.submit("bob", job_tasks.square, 5, 0.1)
        await asyncio.sleep(0.3)  # the first one is in its worker
        started = asyncio.get_running_loop().time()
        await small.cancel("alice")
        assert asyncio.get_running_loop().time() - started < 5  # waited for the running one
        for job in (running, queued, about):
            history = await asyncio.wait_for(_follow(job), 10)
            assert history[-1] == JobEvent("failed", message=CANCELLED)
            assert not [e for e in history if e.kind == "done"]
        assert (await asyncio.wait_for(_follow(other), 30))[-1].result == 25
    finally:
        await small.close()


async def test_close_tells_the_queue_at_once_and_stops_long_jobs_after_the_grace() -> None:
    small = LocalJobRunner(workers=1, max_queue=5)
    slow = await small.submit("a", job_tasks.square, 2, 30.0)
    waiting = await small.submit("b", job_tasks.square, 3, 0.1)
    await asyncio.sleep(0.3)
    started = asyncio.get_running_loop().time()
    closing = asyncio.create_task(small.close(grace=1.0))
    told = await asyncio.wait_for(_follow(waiting), 0.5)  # at once, not after the grace
    assert told[-1] == JobEvent("failed", message=SHUTTING_DOWN)
    await asyncio.wait_for(closing, 10)
    assert asyncio.get_running_loop().time() - started < 5  # not the job's 30 s
    assert (await asyncio.wait_for(_follow(slow), 1))[-1] == JobEvent(
        "failed", message=SHUTTING_DOWN
    )


async def test_stats_count_queued_running_and_finished_jobs() -> None:
    small = LocalJobRunner(workers=1, max_queue=5)
    try:
        assert (await small.stats()).latency_p50 is None
        jobs = [await small.submit("ann", job_tasks.square, n, 0.4) for n in range(3)]
        jobs.append(await small.submit("ben", job_tasks.square, 3, 0.1))
        stats = await small.stats()
        assert (stats.queued, stats.running, stats.workers, stats.finished) == (3, 1, 1, 0)
        await asyncio.wait_for(asyncio.gather(*(_follow(j) for j in jobs)), 60)
        after = await small.stats()
        assert after.queued == after.running == 0
        assert after.finished == 4
        assert after.workers_alive == 1
        assert after.latency_p50 is not None
        assert after.latency_p95 is not None
        assert 0.4 <= after.latency_p50 <= after.latency_p95  # jobs waited for each other
    finally:
        await small.close()


async def test_close_does_not_wait_for_progress_a_dead_worker_blocked() -> None:
    """A worker killed while writing progress leaves the progress queue's shared write lock
    held; the other workers' progress then cannot be flushed. They must still exit, or
    closing the runner waits for them forever."""
    small = LocalJobRunner(workers=1, max_queue=5)
    events = await _follow(await small.submit("a", job_tasks.square, 2))
    assert events[-1].kind == "done"
    held = small._progress._wlock  # as a worker killed mid-write leaves it
    held.acquire()
    try:
        blocked = await _follow(await small.submit("b", job_tasks.square, 3))
        assert blocked[-1].kind == "done"  # the result does not go through that queue
        await asyncio.wait_for(small.close(), 20)
    finally:
        held.release()
