"""Helpers shared by the worker tests: waiting for a condition, counting statuses, a worker
with short intervals, and either worker (the sync ``Worker``, the ``AsyncWorker``) behind
one surface so that one test body serves both."""

from __future__ import annotations

import asyncio
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, Table, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobQueue
from sqla_jobqueue.errors import JobQueueError
from sqla_jobqueue.handlers import Registry
from sqla_jobqueue.listener import AsyncListener, Listener
from sqla_jobqueue.worker import AsyncWorker, Worker, WorkerSettings
from sqla_jobqueue.worker.outcomes import WorkerStats

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


FAST = {"poll_interval": 0.05, "heartbeat_interval": 0.2, "stale_timeout": 5,
        "progress_interval": 0.05}  # fmt: skip
"""The short intervals of :func:`fast_worker` and :func:`fast_async_worker`."""


def fast_worker(engine: Engine, registry: Registry, **options: Any) -> Worker:
    """A worker with short intervals; a live worker's jobs are never stale within 5s."""
    return Worker(engine, registry, **{**FAST, **options})


def job_table(model: Any = Job) -> Table:
    """The job model's table, typed as the ``Table`` it is (``__table__`` is a FromClause)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


class WorkerUnderTest(ABC):
    """A worker of either kind, run in the background, driven by a test: entered (it is
    claiming on return), stopped, joined; its stats, running jobs, settings and listener.

    Not a stand-in: ``worker`` is the real :class:`Worker` or :class:`AsyncWorker`.
    """

    kind: str
    """``"sync"`` or ``"async"``."""
    worker: Worker | AsyncWorker
    exit_code: int | None = None
    """What ``run()`` returned: 0 after a graceful stop, 1 after an immediate one."""

    @property
    def stats(self) -> WorkerStats:
        """The worker's counts of outcomes."""
        return self.worker.stats

    @property
    def running_jobs(self) -> list[Any]:
        """Ids of the jobs the worker is running now."""
        return self.worker.running_jobs

    @property
    def settings(self) -> WorkerSettings:
        """The worker's checked settings."""
        return self.worker.settings

    @property
    def worker_id(self) -> str:
        """The worker's identity."""
        return self.worker.worker_id

    @property
    def listener(self) -> Listener | AsyncListener | None:
        """The worker's listener, once started with ``listen``."""
        return self.worker.listener

    @property
    @abstractmethod
    def sync_engine(self) -> Engine:
        """The worker's engine as a sync ``Engine`` (an ``AsyncEngine``'s own one), for
        engine events."""

    def stop(self, *, graceful: bool = True) -> None:
        """Ask the worker to stop."""
        self.worker.stop(graceful=graceful)

    @abstractmethod
    def join(self, timeout: float = WAIT) -> bool:
        """Wait for the worker to end; return whether it did."""

    @abstractmethod
    def holding_write_lock(self) -> AbstractContextManager[None]:
        """Hold the lock the dispatcher takes to write (as if a round were stuck)."""

    @abstractmethod
    def __enter__(self) -> WorkerUnderTest:
        """Start the worker; return once it is claiming (raise if it failed to start)."""

    @abstractmethod
    def __exit__(self, *exc_info: object) -> None:
        """Stop the worker gracefully and wait for it to end; raise what ended its run,
        if anything did."""


class SyncWorkerThread(WorkerUnderTest):
    """A :class:`Worker` started with :meth:`Worker.start` (its own thread)."""

    kind = "sync"

    def __init__(
        self, engine: Engine, registry: Registry, *, own_engine: bool = False, **options: Any
    ) -> None:
        self._engine, self._own_engine = engine, own_engine
        try:
            self.worker = self._worker = worker = fast_worker(engine, registry, **options)
        except BaseException:
            self._dispose()
            raise
        real_run = worker.run

        def run() -> int:  # what Worker.start's thread runs; its return is kept here
            self.exit_code = real_run()
            return self.exit_code

        worker.run = run  # type: ignore[method-assign]

    @property
    def sync_engine(self) -> Engine:
        return self._engine

    def __enter__(self) -> SyncWorkerThread:
        try:
            self._worker.start()
        except BaseException:
            self._dispose()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._worker.__exit__(*exc_info)
        finally:
            self._dispose()
        error = self._worker._run_error
        if error is not None and exc_info[0] is None:
            raise error

    def join(self, timeout: float = WAIT) -> bool:
        return self._worker.join(timeout)

    @contextmanager
    def holding_write_lock(self) -> Iterator[None]:
        with self._worker._write_lock:
            yield

    def _dispose(self) -> None:
        if self._own_engine:
            self._engine.dispose()


class AsyncWorkerThread(WorkerUnderTest):
    """An :class:`~sqla_jobqueue.worker.AsyncWorker` on an event loop of its own, in a
    thread, driven like a started :class:`Worker` (``with``, ``stop``, ``join``).

    ``engine_options`` go to ``create_async_engine`` (by default a pool of
    ``concurrency + 4``).
    """

    kind = "async"

    def __init__(
        self,
        url: Any,
        registry: Registry,
        *,
        engine_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        engine_options = {"pool_size": options.get("concurrency", 10) + 4, **(engine_options or {})}
        self.engine = create_async_engine(url, **engine_options)
        self.worker = self._worker = AsyncWorker(self.engine, registry, **options)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="async-worker-loop")

    def _main(self) -> None:
        async def main() -> None:
            try:
                self.exit_code = await self._worker.run()
            finally:
                await self.engine.dispose()

        try:
            asyncio.run(main())
        except BaseException as exc:
            self._error = exc

    @property
    def sync_engine(self) -> Engine:
        return self.engine.sync_engine

    def __enter__(self) -> AsyncWorkerThread:
        self._thread.start()
        ready = self._worker._ready
        wait_for(lambda: ready.is_set() or not self._thread.is_alive(),
                 what="the async worker to start")  # fmt: skip
        if self._error is not None or self.exit_code is not None:
            self.join()
            why = self._error or "it stopped before it started"
            raise JobQueueError(f"worker failed to start: {why}") from self._error
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        assert self.join(), "the async worker did not stop"
        if self._error is not None and exc_info[0] is None:
            raise self._error

    def join(self, timeout: float = WAIT) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @contextmanager
    def holding_write_lock(self) -> Iterator[None]:
        loop, lock = self._worker._loop, self._worker._write_lock
        assert loop is not None and lock is not None
        asyncio.run_coroutine_threadsafe(lock.acquire(), loop).result(WAIT)
        try:
            yield
        finally:
            loop.call_soon_threadsafe(lock.release)


def fast_async_worker(url: Any, registry: Registry, **options: Any) -> AsyncWorkerThread:
    """:func:`fast_worker`'s intervals, on an :class:`AsyncWorker` in a thread."""
    return AsyncWorkerThread(url, registry, **{**FAST, **options})


def unstarted_worker(kind: str, registry: Registry, **options: Any) -> Worker | AsyncWorker:
    """A worker of ``kind`` (``"sync"`` or ``"async"``) made, its settings checked, on an
    engine that is never connected."""
    if kind == "async":
        return AsyncWorker(create_async_engine("postgresql+psycopg://"), registry, **options)
    return Worker(create_engine("postgresql+psycopg://"), registry, **options)


class StartWorker:
    """Makes workers of one kind (``"sync"`` or ``"async"``) with :func:`fast_worker`'s
    intervals, on the test's database: ``with start_worker(registry, **options) as
    running: ...``.

    ``engine_options`` (or ``url``) give the worker an engine of its own, made with them
    (``create_engine`` or ``create_async_engine``); by default a sync worker uses the
    test's engine.
    """

    def __init__(self, kind: str, engine: Engine, url: URL) -> None:
        self.kind = kind
        self.engine = engine
        self.url = url

    def __call__(
        self,
        registry: Registry,
        *,
        url: URL | None = None,
        engine_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> WorkerUnderTest:
        """A worker of this kind, not yet started."""
        if self.kind == "async":
            return fast_async_worker(url or self.url, registry, engine_options=engine_options,
                                     **options)  # fmt: skip
        if url is None and engine_options is None:
            return SyncWorkerThread(self.engine, registry, **options)
        engine = create_engine(url or self.url, **(engine_options or {}))
        return SyncWorkerThread(engine, registry, own_engine=True, **options)
