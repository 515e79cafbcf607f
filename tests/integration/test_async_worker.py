"""The asyncio worker against a real PostgreSQL: async handlers on the loop, plain ones on
threads, the handler's AsyncSession committed with the completion, timeouts that cancel,
LISTEN wake-up, progress, and a graceful stop with handlers running; what the sync worker's
tests check of ``ctx.session`` (a plain handler under the AsyncWorker has none), on an async
handler's AsyncSession: a failure at commit, a stale attempt's refused completion.

The behaviour both workers share is tested on both by the other worker tests
(``start_worker``)."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, UniqueConstraint, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import AsyncJobContext, Cancel, Job, JobContext, JobQueue, JobStatus, Snooze
from sqla_jobqueue.errors import InvalidJobError
from sqla_jobqueue.handlers import Registry
from sqla_jobqueue.worker import AsyncWorker, Worker
from tests.helpers import WAIT, StartWorker, fast_async_worker, statuses, wait_for
from tests.integration.test_worker_outcome_fences import FENCES, run_stale_then_fresh


def jobs(factory: sessionmaker[Session]) -> dict[str, Job]:
    with factory() as session:
        return {job.job_type: job for job in session.scalars(select(Job))}


def test_async_and_plain_handlers_run_and_their_outcomes_are_written(
    engine: Engine, database_url: URL, session_factory: sessionmaker[Session]
) -> None:
    registry = Registry()
    threads: dict[str, str] = {}

    @registry.handler("async_ok")
    async def async_ok(ctx: AsyncJobContext) -> dict[str, Any]:
        await asyncio.sleep(0)
        ctx.progress(50, "halfway")
        ctx.event(3)
        return {"n": ctx.data["n"] * 2}

    @registry.handler("plain_ok")
    def plain_ok(ctx: JobContext) -> str:
        threads["plain"] = threading.current_thread().name
        return "plain"

    @registry.handler("async_fails", max_attempts=1)
    async def async_fails(ctx: AsyncJobContext) -> None:
        raise ValueError("boom")

    @registry.handler("async_snoozes")
    async def async_snoozes(ctx: AsyncJobContext) -> None:
        raise Snooze(timedelta(hours=1), "later")

    @registry.handler("async_cancels")
    async def async_cancels(ctx: AsyncJobContext) -> None:
        raise Cancel("not needed")

    with session_factory.begin() as session:
        queue = JobQueue(session)
        registry.enqueue(queue, "async_ok", {"n": 21})
        for job_type in ("plain_ok", "async_fails", "async_snoozes", "async_cancels"):
            registry.enqueue(queue, job_type)
    with fast_async_worker(database_url, registry) as running:
        wait_for(lambda: running.worker.stats.completed == 2 and running.worker.stats.cancelled
                 == 1 and running.worker.stats.failed == 1 and running.worker.stats.snoozed == 1,
                 what="five outcomes")  # fmt: skip
    found = jobs(session_factory)
    assert found["async_ok"].status == JobStatus.COMPLETED
    assert found["async_ok"].result == {"n": 42}
    assert (found["async_ok"].current_stage, found["async_ok"].events_count) == ("halfway", 3)
    assert found["plain_ok"].result == "plain"
    assert threads["plain"] == "sqla_jobqueue-handler"  # not the event loop's thread
    assert found["async_fails"].status == JobStatus.FAILED
    assert "ValueError: boom" in (found["async_fails"].last_error or "")
    assert found["async_snoozes"].status == JobStatus.PENDING
    assert found["async_cancels"].status == JobStatus.CANCELLED
    assert found["async_cancels"].last_error == "not needed"
    assert running.exit_code == 0


@pytest.fixture
def receipts(engine: Engine) -> Table:
    table = Table(
        "async_receipts",
        MetaData(),
        Column("order_id", Integer, primary_key=True),
        Column("note", String, nullable=False),
    )
    table.create(engine)
    return table


def test_the_handlers_async_session_commits_with_the_completion_or_not_at_all(
    engine: Engine,
    database_url: URL,
    session_factory: sessionmaker[Session],
    receipts: Table,
) -> None:
    registry = Registry()

    @registry.handler("receipt", max_attempts=1)
    async def receipt(ctx: AsyncJobContext) -> int:
        await ctx.session.execute(
            receipts.insert().values(order_id=ctx.data["order"], note=ctx.data["note"])
        )
        if ctx.data["note"] == "bad":
            raise RuntimeError("after writing")
        return int(ctx.data["order"])

    with session_factory.begin() as session:
        registry.enqueue(JobQueue(session), "receipt", {"order": 1, "note": "good"})
        registry.enqueue(JobQueue(session), "receipt", {"order": 2, "note": "bad"})
    with fast_async_worker(database_url, registry) as running:
        wait_for(lambda: running.worker.stats.completed + running.worker.stats.failed == 2)
    with engine.connect() as connection:
        assert connection.execute(select(receipts.c.order_id)).scalars().all() == [1]
    assert statuses(session_factory) == {"completed": 1, "failed": 1}


def test_an_async_handler_over_its_timeout_is_cancelled_and_the_attempt_failed(
    database_url: URL, session_factory: sessionmaker[Session]
) -> None:
    registry = Registry()
    cancelled = threading.Event()

    @registry.handler("slow", max_attempts=1, timeout=timedelta(milliseconds=200))
    async def slow(ctx: AsyncJobContext) -> None:
        try:
            await asyncio.sleep(WAIT)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with session_factory.begin() as session:
        job_id = registry.enqueue(JobQueue(session), "slow").id
    with fast_async_worker(database_url, registry) as running:
        wait_for(lambda: running.worker.stats.failed == 1, what="the timed-out attempt")
        assert cancelled.wait(WAIT)
    with session_factory() as session:
        job = JobQueue(session).get(job_id)
    assert job.status == JobStatus.FAILED
    assert "did not finish within its timeout of 0.2s" in (job.last_error or "")
    assert "the handler was cancelled" in (job.last_error or "")


def test_a_job_enqueued_while_idle_wakes_the_worker_through_listen(
    database_url: URL, session_factory: sessionmaker[Session]
) -> None:
    registry = Registry()
    done = threading.Event()

    @registry.handler("ping")
    async def ping(ctx: AsyncJobContext) -> None:
        done.set()

    # Polling hourly: only the notification can wake it in time.
    with fast_async_worker(database_url, registry, poll_interval=3600) as running:
        listener = running.worker.listener
        assert listener is not None
        assert listener.listening.wait(WAIT)
        with session_factory.begin() as session:
            registry.enqueue(JobQueue(session), "ping")
        assert done.wait(WAIT)


def test_a_graceful_stop_lets_running_handlers_finish_and_cuts_off_the_rest(
    database_url: URL, session_factory: sessionmaker[Session]
) -> None:
    registry = Registry()
    started = threading.Event()

    @registry.handler("short")
    async def short(ctx: AsyncJobContext) -> str:
        started.set()
        await asyncio.sleep(0.3)
        return "finished"

    @registry.handler("endless")
    async def endless(ctx: AsyncJobContext) -> None:
        await asyncio.sleep(WAIT * 10)

    with session_factory.begin() as session:
        short_id = registry.enqueue(JobQueue(session), "short").id
        endless_id = registry.enqueue(JobQueue(session), "endless").id
    running = fast_async_worker(database_url, registry, grace_period=1.0)
    with running:
        assert started.wait(WAIT)
        wait_for(lambda: len(running.worker.running_jobs) == 2, what="both jobs running")
    assert running.exit_code == 0
    with session_factory() as session:
        queue = JobQueue(session)
        assert queue.get(short_id).result == "finished"
        cut = queue.get(endless_id)
    assert cut.status == JobStatus.PENDING  # a failed attempt, due again at once
    assert "shut down before the handler finished" in (cut.last_error or "")


def test_the_sync_worker_refuses_async_handlers_and_says_what_to_use(engine: Engine) -> None:
    registry = Registry()

    @registry.handler("a")
    async def a(ctx: AsyncJobContext) -> None:
        return None

    with pytest.raises(InvalidJobError, match="run them with AsyncWorker"):
        Worker(engine, registry)


def test_the_async_worker_refuses_a_sync_engine(engine: Engine) -> None:
    with pytest.raises(InvalidJobError, match="AsyncWorker needs an AsyncEngine"):
        AsyncWorker(engine, Registry({"t": lambda ctx: None}))  # type: ignore[arg-type]


def test_a_failure_at_the_commit_of_the_async_session_keeps_neither_writes_nor_completion(
    engine: Engine, database_url: URL, session_factory: sessionmaker[Session]
) -> None:
    orders = Table(
        "async_orders",
        MetaData(),
        Column("order_id", Integer, nullable=False),
        Column("note", String(20), nullable=False),
        # Checked at commit: the failure then happens while completing the job.
        UniqueConstraint("order_id", deferrable=True, initially="DEFERRED"),
    )
    orders.metadata.create_all(engine)
    registry = Registry()

    @registry.handler("order", max_attempts=1)
    async def order(ctx: AsyncJobContext) -> int:
        await ctx.session.execute(orders.insert().values(order_id=1, note=ctx.data["note"]))
        return 1

    with session_factory.begin() as session:
        queue = JobQueue(session)
        first = registry.enqueue(queue, "order", {"note": "first"}, priority=200).id
        again = registry.enqueue(queue, "order", {"note": "again"}).id
    with fast_async_worker(database_url, registry, concurrency=1) as running:
        wait_for(lambda: running.worker.stats.completed + running.worker.stats.failed == 2)
    with session_factory() as session:
        queue = JobQueue(session)
        assert queue.get(first).status == JobStatus.COMPLETED
        failed = queue.get(again)
        rows = session.execute(select(orders.c.note)).scalars().all()
    assert failed.status == JobStatus.FAILED
    assert "neither its writes nor the completion" in (failed.last_error or "")
    assert "UniqueViolation" in (failed.last_error or "")
    assert rows == ["first"]


@pytest.mark.parametrize("fence", FENCES)
def test_a_stale_async_attempts_session_work_is_rolled_back_with_its_refused_completion(
    engine: Engine, database_url: URL, session_factory: sessionmaker[Session], fence: str
) -> None:
    # test_worker_outcome_fences.py's scenario, the stale attempt writing in its AsyncSession.
    writes = Table("writes", MetaData(), Column("run", Integer), Column("worker", String(100)))
    writes.metadata.create_all(engine)
    gates = [threading.Event(), threading.Event()]
    runs: list[int] = []
    registry = Registry()

    @registry.handler("hold")
    async def hold(ctx: AsyncJobContext) -> str:
        run = len(runs)
        runs.append(ctx.attempt)
        await ctx.session.execute(writes.insert().values(run=run, worker=ctx.worker_id))
        assert await asyncio.to_thread(gates[run].wait, WAIT)
        return "stale" if run == 0 else "fresh"

    same = fence == "same_worker_id"
    with session_factory.begin() as session:
        job_id = JobQueue(session).enqueue("hold", max_attempts=3 if same else 1).id
    start_worker = StartWorker("async", engine, database_url)
    options = {"concurrency": 1, "maintenance": False}
    run_stale_then_fresh(
        start_worker, session_factory, registry, job_id, gates, runs, same, options
    )
    with session_factory() as session:
        done = JobQueue(session).get(job_id)
        rows = session.execute(select(writes.c.run, writes.c.worker)).all()
    assert (done.status, done.result) == (JobStatus.COMPLETED, "fresh")
    assert rows == [(1, "w" if same else "fresh")]
