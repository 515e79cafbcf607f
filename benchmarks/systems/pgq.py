"""PGQueuer through its public API, on asyncpg (its fastest driver).

Jobs are ``noop`` entrypoints with a JSON payload; processing runs ``PgQueuer.run`` in
``drain`` mode with the batch size under test. PGQueuer's tables are durable (its
default), like sqla_jobqueue's.

The clock of a drain (the same for every system, see :mod:`benchmarks.systems`):
``start`` when the child is released (connected before), ``first`` at the first call of
the entrypoint, ``end`` when ``PgQueuer.run`` returns. In drain mode it returns once a
dequeue found nothing and its count of queued jobs is 0, after its buffers (the job
status log that records each completion) were flushed on the way out: after its last
commit, as sqla_jobqueue's end is after its last. ``dequeue_timeout`` is 1 s (its
default is 30 s), which can only make it quicker: the wait it bounds comes after a
dequeue that found nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

__all__ = ["drain", "enqueue_bulk", "enqueue_single", "install", "prefill"]

JOB_TYPE = "noop"


async def _connect(conninfo: str) -> Any:
    import asyncpg

    return await asyncpg.connect(dsn=conninfo)


def install(conninfo: str) -> None:
    from pgqueuer import AsyncpgDriver, Queries

    async def run() -> None:
        connection = await _connect(conninfo)
        await Queries(AsyncpgDriver(connection)).install()
        await connection.close()

    asyncio.run(run())


def enqueue_single(conninfo: str, n: int) -> float:
    from pgqueuer import AsyncpgDriver, Queries

    async def run() -> float:
        connection = await _connect(conninfo)
        queries = Queries(AsyncpgDriver(connection))
        start = time.perf_counter()
        for i in range(n):
            await queries.enqueue(JOB_TYPE, json.dumps({"i": i}).encode(), 0)
        elapsed = time.perf_counter() - start
        await connection.close()
        return elapsed

    return asyncio.run(run())


def enqueue_bulk(conninfo: str, n: int, batch: int) -> float:
    from pgqueuer import AsyncpgDriver, Queries

    async def run() -> float:
        connection = await _connect(conninfo)
        queries = Queries(AsyncpgDriver(connection))
        start = time.perf_counter()
        for first in range(0, n, batch):
            size = min(n, first + batch) - first
            await queries.enqueue(
                [JOB_TYPE] * size,
                [json.dumps({"i": i}).encode() for i in range(first, first + size)],
                [0] * size,
            )
        elapsed = time.perf_counter() - start
        await connection.close()
        return elapsed

    return asyncio.run(run())


def prefill(conninfo: str, n: int) -> None:
    enqueue_bulk(conninfo, n, 5_000)


def enqueue_timed(conninfo: str, n: int, gap: float) -> list[tuple[float, float]]:
    """Enqueue ``n`` jobs ``gap`` seconds apart, each carrying its enqueue time."""
    from pgqueuer import AsyncpgDriver, Queries

    async def run() -> list[tuple[float, float]]:
        connection = await _connect(conninfo)
        queries = Queries(AsyncpgDriver(connection))
        sent = []
        for _ in range(n):
            stamp = time.time()
            await queries.enqueue(JOB_TYPE, json.dumps({"t": stamp}).encode(), 0)
            sent.append((stamp, time.time()))
            await asyncio.sleep(gap)
        await connection.close()
        return sent

    return asyncio.run(run())


def drain(conninfo: str, params: dict[str, Any], go: Callable[[], None]) -> dict[str, Any]:
    from pgqueuer import PgQueuer
    from pgqueuer.models import Job
    from pgqueuer.types import QueueExecutionMode

    batch = int(params.get("batch", 10))
    latency = bool(params.get("latency", False))
    expect = int(params.get("expect", 0))
    seen: list[tuple[float, float]] = []
    first: list[float] = []

    async def run() -> dict[str, Any]:
        connection = await _connect(conninfo)
        pgq = PgQueuer.from_asyncpg_connection(connection)
        count = 0

        @pgq.entrypoint(JOB_TYPE)
        async def noop(job: Job) -> None:
            nonlocal count
            if not first:
                first.append(time.time())
            count += 1
            if latency and job.payload:
                seen.append((json.loads(job.payload)["t"], time.time()))
                if len(seen) >= expect:
                    pgq.shutdown.set()

        go()
        start = time.time()
        mode = QueueExecutionMode.continuous if latency else QueueExecutionMode.drain
        await pgq.run(batch_size=batch, mode=mode, dequeue_timeout=timedelta(seconds=1))
        end = time.time()
        await connection.close()
        return {
            "start": start,
            "first": first[0] if first else None,
            "end": end,
            "processed": count,
            "latencies": seen,
        }

    return asyncio.run(run())
