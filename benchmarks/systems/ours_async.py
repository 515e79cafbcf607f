"""sqla_jobqueue on asyncio: ``AsyncJobQueue`` in an ``AsyncSession``, psycopg's async driver.

The same schema, jobs and prefill as :mod:`benchmarks.systems.ours`; enqueueing goes
through :class:`sqla_jobqueue.AsyncJobQueue` on an ``AsyncEngine`` of
``postgresql+psycopg`` (so ``enqueue_many`` streams a binary ``COPY`` through psycopg's
async connection), one ``async with sessionmaker.begin()`` transaction per call, on one
event loop.

Processing runs :class:`sqla_jobqueue.worker.AsyncWorker` with an ``async def`` no-op
handler, as :func:`benchmarks.systems.ours._drain_with_worker` runs the sync ``Worker``:
built with the swept settings only (``concurrency``, ``batch_size``; everything else at
its default: maintenance on, the default ``poll_interval``, LISTEN on), and the same
clock: ``start`` when released (connected before), ``first`` at the first handler call,
``end`` when the drain loop, asking the database every tick once the handlers stopped,
saw no job left (after the last completion committed). For the latency measurement
(``params["latency"]``) the handler records when it saw each job, enqueued by
:func:`enqueue_timed` (the sync one: the enqueueing side is the same for both workers),
and the drain ends once ``expect`` jobs were seen.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from sqla_jobqueue import AsyncJobQueue
from sqla_jobqueue.database import sqlalchemy_url

from . import ours

__all__ = ["drain", "enqueue_bulk", "enqueue_single", "enqueue_timed", "install", "prefill"]

JOB_TYPE = ours.JOB_TYPE

install = ours.install
prefill = ours.prefill
enqueue_timed = ours.enqueue_timed


def _engine(conninfo: str, pool_size: int = 2, prepared: bool = True) -> Any:
    from sqlalchemy.ext.asyncio import create_async_engine

    # postgresql+psycopg on create_async_engine is psycopg 3's async dialect.
    connect_args: dict[str, Any] = {} if prepared else {"prepare_threshold": None}
    return create_async_engine(
        sqlalchemy_url(conninfo), pool_size=pool_size, max_overflow=4, connect_args=connect_args
    )


def enqueue_single(conninfo: str, n: int) -> float:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    async def run() -> float:
        engine = _engine(conninfo)
        factory = async_sessionmaker(engine, expire_on_commit=False)
        async with factory.begin() as warm:
            await warm.execute(text("SELECT 1"))
        start = time.perf_counter()
        for i in range(n):
            async with factory.begin() as session:
                await AsyncJobQueue(session).enqueue(JOB_TYPE, {"i": i})
        elapsed = time.perf_counter() - start
        await engine.dispose()
        return elapsed

    return asyncio.run(run())


def enqueue_bulk(conninfo: str, n: int, batch: int) -> float:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    async def run() -> float:
        engine = _engine(conninfo)
        factory = async_sessionmaker(engine, expire_on_commit=False)
        async with factory.begin() as warm:
            await warm.execute(text("SELECT 1"))
        start = time.perf_counter()
        for first in range(0, n, batch):
            specs = [
                {"job_type": JOB_TYPE, "data": {"i": i}}
                for i in range(first, min(n, first + batch))
            ]
            async with factory.begin() as session:
                await AsyncJobQueue(session).enqueue_many(specs)
        elapsed = time.perf_counter() - start
        await engine.dispose()
        return elapsed

    return asyncio.run(run())


async def _remaining(engine: Any) -> bool:
    async with engine.connect() as connection:
        return bool((await connection.execute(text(ours.REMAINING_SQL))).scalar())


def drain(conninfo: str, params: dict[str, Any], go: Callable[[], None]) -> dict[str, Any]:
    """Run :class:`sqla_jobqueue.worker.AsyncWorker` until no job is left."""
    return asyncio.run(_drain(conninfo, params, go))


async def _drain(conninfo: str, params: dict[str, Any], go: Callable[[], None]) -> dict[str, Any]:
    from sqla_jobqueue.handlers import AsyncJobContext, Registry
    from sqla_jobqueue.worker import AsyncWorker

    options = ours.worker_options(params)
    progress_updates = int(params.get("progress_updates", 0))
    latency = bool(params.get("latency", False))
    expect = int(params.get("expect", 0))
    counter = itertools.count()
    done = [0]
    first: list[float] = []
    seen: list[tuple[float, float]] = []

    async def noop(ctx: AsyncJobContext) -> None:
        if not first:
            first.append(time.time())
        if latency:
            seen.append((float(ctx.data["t"]), time.time()))
        for step in range(progress_updates):
            ctx.progress((step + 1) * 100 // (progress_updates + 1))
        done[0] = next(counter) + 1

    registry = Registry()
    registry.register(JOB_TYPE, noop)
    prepared = bool(params.get("prepared", True))
    engine = _engine(conninfo, pool_size=options["concurrency"] + 4, prepared=prepared)
    worker = AsyncWorker(engine, registry, **options)
    # Connected before the release, as the sync worker's drain is: the worker's rounds
    # and its listener take these two.
    async with engine.connect(), engine.connect():
        pass
    go()
    start = time.time()
    task = asyncio.create_task(worker.run())
    stalled = False
    end: float | None = None
    last, last_change, last_ask = -1, time.monotonic(), 0.0
    asks = 0
    while not task.done():
        await asyncio.sleep(ours.TICK)
        if latency and len(seen) >= expect:
            break
        now = time.monotonic()
        if done[0] != last:
            last, last_change = done[0], now
        elif not latency and (first or now - last_ask >= ours.IDLE_ASK):
            last_ask = now
            asks += 1
            if not await _remaining(engine):
                end = time.time()
                break
        if now - last_change > ours.STALL_SECONDS:
            stalled = True
            break
    worker.stop()
    await task
    await engine.dispose()
    return {
        "start": start,
        "first": first[0] if first else None,
        "end": end if end is not None else time.time(),
        "processed": next(counter),
        "stalled": stalled,
        "remaining_asks": asks,
        "latencies": seen,
        "mode": (
            f"AsyncWorker (concurrency {options['concurrency']}, batch {options['batch_size']})"
        ),
    }
