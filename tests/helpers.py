"""Helpers shared by the worker tests: waiting for a condition, counting statuses, a worker
with short intervals."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, Table
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobQueue
from sqla_jobqueue.handlers import Registry
from sqla_jobqueue.worker import Worker

WAIT = 30.0


def wait_for(condition: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
    """Poll ``condition`` until it is truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.02)


def statuses(factory: sessionmaker[Session]) -> dict[str, int]:
    """How many jobs of every type are in each status."""
    with factory() as session:
        counts = JobQueue(session).stats().counts
    total: dict[str, int] = {}
    for by_status in counts.values():
        for status, n in by_status.items():
            total[status] = total.get(status, 0) + n
    return total


def fast_worker(engine: Engine, registry: Registry, **options: Any) -> Worker:
    """A worker with short intervals; a live worker's jobs are never stale within 5s."""
    options.setdefault("poll_interval", 0.05)
    options.setdefault("heartbeat_interval", 0.2)
    options.setdefault("stale_timeout", 5)
    options.setdefault("progress_interval", 0.05)
    return Worker(engine, registry, **options)


def job_table(model: Any = Job) -> Table:
    """The job model's table, typed as the ``Table`` it is (``__table__`` is a FromClause)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


class AsyncWorkerThread:
    """An :class:`~sqla_jobqueue.worker.AsyncWorker` on an event loop of its own, in a
    thread, driven like a started :class:`Worker` (``with``, ``stop``, ``join``)."""

    def __init__(self, url: Any, registry: Registry, **options: Any) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        from sqla_jobqueue.worker import AsyncWorker

        self.engine = create_async_engine(url, pool_size=options.get("concurrency", 10) + 4)
        self.worker = AsyncWorker(self.engine, registry, **options)
        self.exit_code: int | None = None
        self._thread = threading.Thread(target=self._main, name="async-worker-loop")

    def _main(self) -> None:
        async def main() -> None:
            try:
                self.exit_code = await self.worker.run()
            finally:
                await self.engine.dispose()

        asyncio.run(main())

    def __enter__(self) -> AsyncWorkerThread:
        self._thread.start()
        wait_for(lambda: self.worker._ready.is_set(), what="the async worker to start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self.join()

    def stop(self, *, graceful: bool = True) -> None:
        """Ask the worker to stop."""
        self.worker.stop(graceful=graceful)

    def join(self, timeout: float = WAIT) -> None:
        """Wait for the worker's loop to end."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the async worker did not stop"


def fast_async_worker(url: Any, registry: Registry, **options: Any) -> AsyncWorkerThread:
    """:func:`fast_worker`'s intervals, on an :class:`AsyncWorker` in a thread."""
    options.setdefault("poll_interval", 0.05)
    options.setdefault("heartbeat_interval", 0.2)
    options.setdefault("stale_timeout", 5)
    options.setdefault("progress_interval", 0.05)
    return AsyncWorkerThread(url, registry, **options)
