"""Static checks of the public types, run by ``mypy --strict tests/typing`` in CI.

Nothing here runs against a database; mypy fails if an annotation users rely on regresses.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Session
from typing_extensions import assert_type

import sqla_jobqueue
from sqla_jobqueue import (
    AsyncJobContext,
    AsyncJobQueue,
    AsyncWorker,
    Job,
    JobMixin,
    JobQueue,
    JobStatus,
    Priority,
    QueueStats,
    Registry,
    Worker,
)
from sqla_jobqueue.worker import AsyncWorker as AsyncWorkerClass
from sqla_jobqueue.worker import Worker as WorkerClass
from sqla_jobqueue.worker import WorkerSettings, WorkerStats


class Base(DeclarativeBase):
    pass


class Task(JobMixin, Base):
    __tablename__ = "tasks"


def check(session: Session) -> None:
    default = JobQueue(session)
    assert_type(default, JobQueue[Job])
    assert_type(default.enqueue("t", {"a": 1}, priority=Priority.EXPLICIT), Job)
    assert_type(default.claim(["t"], batch_size=5), list[Job])

    custom = JobQueue(session, Task, worker_id="w")
    assert_type(custom, JobQueue[Task])
    task = custom.enqueue("t")
    assert_type(task, Task)
    assert_type(task.status, JobStatus)
    assert_type(task.id, uuid.UUID)
    assert_type(custom.complete(task, {"ok": True}), Task)
    assert_type(custom.enqueue_many([{"job_type": "t"}]), list[uuid.UUID])
    assert_type(custom.stats(), QueueStats)
    registry = Registry()
    assert_type(registry.enqueue(custom, "t"), Task)
    assert_type(registry.enqueue_many(custom, [{"job_type": "t"}]), list[uuid.UUID])


async def check_async(session: AsyncSession) -> None:
    default = AsyncJobQueue(session)
    assert_type(default, AsyncJobQueue[Job])
    assert_type(await default.enqueue("t", {"a": 1}, priority=Priority.EXPLICIT), Job)
    assert_type(await default.claim(["t"], batch_size=5), list[Job])
    assert_type(await default.get(uuid.uuid4()), Job)

    custom = AsyncJobQueue(session, Task, worker_id="w")
    assert_type(custom, AsyncJobQueue[Task])
    task = await custom.enqueue("t")
    assert_type(task, Task)
    assert_type(await custom.start(task), Task)
    assert_type(await custom.update_progress(task, 50, "half"), Task)
    assert_type(await custom.complete(task, {"ok": True}), Task)
    assert_type(await custom.fail(task, "boom"), Task)
    assert_type(await custom.cancel(task), Task)
    assert_type(await custom.retry(task), Task)
    assert_type(await custom.heartbeat(), int)
    assert_type(await custom.release(), int)
    assert_type(await custom.recover_stale(timedelta(minutes=5)), int)
    assert_type(await custom.prune(timedelta(days=1), limit=10), int)
    assert_type(await custom.enqueue_many([{"job_type": "t"}]), list[uuid.UUID])
    assert_type(await custom.stats(), QueueStats)
    registry = Registry()
    assert_type(await registry.enqueue(custom, "t", {"a": 1}), Task)
    assert_type(await registry.enqueue_many(default, [{"job_type": "t"}]), list[uuid.UUID])
    # Not awaited, a call is a coroutine, not a job: mypy says so (this ignore is used).
    not_awaited: Task = custom.enqueue("t")  # type: ignore[assignment]
    del not_awaited


async def check_async_worker(engine: AsyncEngine) -> None:
    registry = Registry()

    @registry.handler("fetch")
    async def fetch(ctx: AsyncJobContext) -> dict[str, int]:
        assert_type(ctx.session, AsyncSession)
        return {"attempt": ctx.attempt}

    # The decorator hands back the coroutine function as it was.
    kept: Callable[[AsyncJobContext], Coroutine[Any, Any, dict[str, int]]] = fetch
    del kept
    worker = AsyncWorker(engine, registry, concurrency=50)
    assert_type(worker.settings, WorkerSettings)
    assert_type(worker.stats, WorkerStats)
    assert_type(await worker.run(), int)
    async with AsyncWorker(engine, registry) as running:
        assert_type(running, AsyncWorkerClass)


def check_lazy_worker() -> None:
    # Worker loads on first use at run time, but type checkers see the class itself.
    assert_type(Worker, type[WorkerClass])
    assert_type(sqla_jobqueue.Worker, type[WorkerClass])
    assert_type(AsyncWorker, type[AsyncWorkerClass])
    # No catch-all module attribute: a misspelt name stays an error (this ignore is used).
    sqla_jobqueue.Wroker  # type: ignore[attr-defined]  # noqa: B018
