"""sqla_jobqueue on asyncio: ``AsyncJobQueue`` in an ``AsyncSession``, psycopg's async driver.

The same schema, jobs and prefill as :mod:`benchmarks.systems.ours`; enqueueing goes
through :class:`sqla_jobqueue.AsyncJobQueue` on an ``AsyncEngine`` of
``postgresql+psycopg`` (so ``enqueue_many`` streams a binary ``COPY`` through psycopg's
async connection), one ``async with sessionmaker.begin()`` transaction per call, on one
event loop.

Processing runs :class:`sqla_jobqueue.worker.AsyncWorker` with an ``async def`` no-op
handler, as :func:`benchmarks.systems.ours._drain_with_worker` runs the sync ``Worker``:
the same settings, the same clock (released after connecting, stopped at the last
``completed_at``) and the same check that no job is left. There is no ``enqueue_timed``
yet, so the latency measurement leaves this system out.
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

__all__ = ["drain", "enqueue_bulk", "enqueue_single", "install", "prefill"]

JOB_TYPE = ours.JOB_TYPE

install = ours.install
prefill = ours.prefill


def _engine(conninfo: str, pool_size: int = 2) -> Any:
    from sqlalchemy.ext.asyncio import create_async_engine

    # postgresql+psycopg on create_async_engine is psycopg 3's async dialect.
    return create_async_engine(sqlalchemy_url(conninfo), pool_size=pool_size, max_overflow=4)


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


async def _last_completion(engine: Any) -> float:
    async with engine.connect() as connection:
        value = (await connection.execute(text(ours.LAST_COMPLETION_SQL))).scalar()
    return float(value) if value is not None else time.time()


def drain(conninfo: str, params: dict[str, Any], go: Callable[[], None]) -> dict[str, Any]:
    """Run :class:`sqla_jobqueue.worker.AsyncWorker` until no job is left."""
    return asyncio.run(_drain(conninfo, params, go))


async def _drain(conninfo: str, params: dict[str, Any], go: Callable[[], None]) -> dict[str, Any]:
    from sqla_jobqueue.handlers import AsyncJobContext, Registry
    from sqla_jobqueue.worker import AsyncWorker

    batch = int(params.get("batch", 10))
    concurrency = int(params.get("concurrency", 1))
    progress_updates = int(params.get("progress_updates", 0))
    counter = itertools.count()
    done = [0]

    async def noop(ctx: AsyncJobContext) -> None:
        for step in range(progress_updates):
            ctx.progress((step + 1) * 100 // (progress_updates + 1))
        done[0] = next(counter) + 1

    registry = Registry()
    registry.register(JOB_TYPE, noop)
    engine = _engine(conninfo, pool_size=concurrency + 4)
    worker = AsyncWorker(
        engine,
        registry,
        concurrency=concurrency,
        batch_size=batch,
        listen=bool(params.get("listen_notify", True)),
        poll_interval=float(params.get("poll_interval", 0.05)),
        maintenance=False,
    )
    # Connected before the clock starts, as the sync worker's drain is: the worker's
    # rounds and its listener take these two.
    async with engine.connect(), engine.connect():
        pass
    go()
    start = time.time()
    task = asyncio.create_task(worker.run())
    stalled = False
    last, last_change = -1, time.monotonic()
    while not task.done():
        await asyncio.sleep(0.02)
        if done[0] != last:
            last, last_change = done[0], time.monotonic()
        elif not await _remaining(engine):
            break
        elif time.monotonic() - last_change > ours.STALL_SECONDS:
            stalled = True
            break
    worker.stop()
    await task
    end = await _last_completion(engine)
    await engine.dispose()
    return {
        "start": start,
        "end": end,
        "processed": next(counter),
        "stalled": stalled,
        "latencies": [],
        "mode": f"AsyncWorker (concurrency {concurrency}, batch {batch})",
    }
