"""procrastinate through its public API: an ``App`` on its psycopg 3 connector.

Jobs are an ``async`` no-op task; processing runs ``App.run_worker_async`` with
``wait=False`` (stop once the queue is empty) at the concurrency under test, with
LISTEN/NOTIFY on and its default polling interval (5 s). The latency's "polling" variant
turns LISTEN off and keeps that default, as sqla_jobqueue's does with its own.
procrastinate keeps finished jobs, as sqla_jobqueue does.

The clock of a drain (the same for every system, see :mod:`benchmarks.systems`):
``start`` when the child is released (its pool opened before), ``first`` at the first
call of the task, ``end`` when ``run_worker_async(wait=False)`` returns: its fetch found no
job and every job it started has finished, each finish written and committed by the
worker before the job counts as done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["drain", "enqueue_bulk", "enqueue_single", "install", "prefill"]

JOB_TYPE = "noop"
_seen: list[tuple[float, float]] = []
_count = [0]
_first: list[float] = []


def _app(conninfo: str, max_size: int = 4) -> Any:
    import procrastinate

    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=conninfo, min_size=1, max_size=max_size)
    )

    @app.task(name=JOB_TYPE)
    async def noop(i: int = 0, t: float | None = None) -> None:
        if not _first:
            _first.append(time.time())
        _count[0] += 1
        if t is not None:
            _seen.append((t, time.time()))

    app.noop = noop  # type: ignore[attr-defined]
    return app


def install(conninfo: str) -> None:
    async def run() -> None:
        app = _app(conninfo)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    asyncio.run(run())


def enqueue_single(conninfo: str, n: int) -> float:
    async def run() -> float:
        app = _app(conninfo)
        async with app.open_async():
            start = time.perf_counter()
            for i in range(n):
                await app.noop.defer_async(i=i)
            return time.perf_counter() - start

    return asyncio.run(run())


def enqueue_bulk(conninfo: str, n: int, batch: int) -> float:
    async def run() -> float:
        app = _app(conninfo)
        async with app.open_async():
            start = time.perf_counter()
            for first in range(0, n, batch):
                await app.noop.batch_defer_async(
                    *({"i": i} for i in range(first, min(n, first + batch)))
                )
            return time.perf_counter() - start

    return asyncio.run(run())


def prefill(conninfo: str, n: int) -> None:
    enqueue_bulk(conninfo, n, 5_000)


def enqueue_timed(conninfo: str, n: int, gap: float) -> list[tuple[float, float]]:
    async def run() -> list[tuple[float, float]]:
        app = _app(conninfo)
        sent = []
        async with app.open_async():
            for _ in range(n):
                stamp = time.time()
                await app.noop.defer_async(t=stamp)
                sent.append((stamp, time.time()))
                await asyncio.sleep(gap)
        return sent

    return asyncio.run(run())


def drain(conninfo: str, params: dict[str, Any], go: Callable[[], None]) -> dict[str, Any]:
    concurrency = int(params.get("concurrency", 10))
    latency = bool(params.get("latency", False))
    expect = int(params.get("expect", 0))
    options: dict[str, Any] = {"listen_notify": bool(params.get("listen_notify", True))}
    if "poll_interval" in params:
        options["fetch_job_polling_interval"] = float(params["poll_interval"])
    logging.getLogger("procrastinate").setLevel(logging.WARNING)

    async def run() -> dict[str, Any]:
        app = _app(conninfo, max_size=concurrency + 4)
        async with app.open_async():
            go()
            start = time.time()
            if latency:
                worker = asyncio.create_task(
                    app.run_worker_async(
                        concurrency=concurrency,
                        wait=True,
                        install_signal_handlers=False,
                        **options,
                    )
                )
                while len(_seen) < expect and not worker.done():
                    await asyncio.sleep(0.05)
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            else:
                await app.run_worker_async(
                    concurrency=concurrency,
                    wait=False,
                    install_signal_handlers=False,
                    **options,
                )
            end = time.time()
        return {
            "start": start,
            "first": _first[0] if _first else None,
            "end": end,
            "processed": _count[0],
            "latencies": list(_seen),
        }

    return asyncio.run(run())
