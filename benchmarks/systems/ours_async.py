"""sqla_jobqueue on asyncio: ``AsyncJobQueue`` in an ``AsyncSession``, psycopg's async driver.

The same schema, jobs and prefill as :mod:`benchmarks.systems.ours`; enqueueing goes
through :class:`sqla_jobqueue.AsyncJobQueue` on an ``AsyncEngine`` of
``postgresql+psycopg`` (so ``enqueue_many`` streams a binary ``COPY`` through psycopg's
async connection), one ``async with sessionmaker.begin()`` transaction per call, on one
event loop.

There is no ``drain`` yet: sqla_jobqueue has no async worker. The harness runs a system
only in the measurements whose action its module defines (:func:`benchmarks.systems.offers`),
so the processing, latency and progress measurements leave this one out until a
``drain(conninfo, params, go)`` (and an ``enqueue_timed`` for latency) is added here.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import text

from sqla_jobqueue import AsyncJobQueue
from sqla_jobqueue.database import sqlalchemy_url

from . import ours

__all__ = ["enqueue_bulk", "enqueue_single", "install", "prefill"]

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
