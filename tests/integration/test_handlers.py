"""Handler outcomes on a real PostgreSQL: results, failures, Snooze, Cancel, timeouts,
transactional completion, and handler defaults written at enqueue.

The outcomes of plain handlers are checked on the sync ``Worker`` and on the
``AsyncWorker`` (``start_worker``), but the ``ctx.session`` completion: a plain handler under
the AsyncWorker has no session (an async handler's is tested in test_async_worker.py)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Backoff, Cancel, Job, JobContext, JobQueue, JobStatus, Registry, Snooze
from sqla_jobqueue.errors import InvalidJobError
from tests.helpers import WAIT, StartWorker, fast_worker, job_table, wait_for

domain = MetaData()
receipts = Table(
    "receipts",
    domain,
    Column("id", Integer, primary_key=True),
    Column("order_id", Integer, nullable=False),
    Column("note", String(20), nullable=False),
    # Checked at commit: the failure then happens while completing the job.
    UniqueConstraint("order_id", deferrable=True, initially="DEFERRED"),
)


@pytest.fixture
def receipts_table(engine: Engine) -> Iterator[Table]:
    domain.create_all(engine)
    yield receipts


def job(factory: sessionmaker[Session], job_id: uuid.UUID) -> Job:
    with factory() as session:
        return JobQueue(session).get(job_id)


def settled(factory: sessionmaker[Session], job_id: uuid.UUID, *statuses: JobStatus) -> Any:
    def check() -> Job | None:
        found = job(factory, job_id)
        return found if found.status in statuses else None

    return wait_for(check, what=f"job {job_id} to become {statuses}")


def db_now(factory: sessionmaker[Session]) -> Any:
    with factory() as session:
        return session.execute(select(func.statement_timestamp())).scalar_one()


def test_failures_back_off_as_configured_then_fail(
    start_worker: StartWorker, session_factory: sessionmaker[Session]
) -> None:
    registry = Registry()
    backoff = Backoff(base=timedelta(hours=1), factor=3, cap=timedelta(hours=100), jitter=0)

    @registry.handler("flaky", max_attempts=3, backoff=backoff)
    def flaky(ctx: JobContext) -> None:
        raise RuntimeError(f"boom on attempt {ctx.attempt}")

    with session_factory.begin() as session:
        job_id = registry.enqueue(JobQueue(session), "flaky").id
    assert job(session_factory, job_id).max_attempts == 3

    with start_worker(registry):
        for attempt, hours in ((1, 1), (2, 3)):
            before = db_now(session_factory)

            def rescheduled(attempt: int = attempt) -> Job | None:
                found = job(session_factory, job_id)
                done = found.attempts == attempt and found.status == JobStatus.PENDING
                return found if done else None

            found = wait_for(rescheduled, what=f"attempt {attempt} failed and rescheduled")
            assert f"RuntimeError: boom on attempt {attempt}" in (found.last_error or "")
            delay = found.run_at - before
            # run_at = failure time + base * factor ** (attempt - 1), no jitter
            assert timedelta(hours=hours) <= delay <= timedelta(hours=hours, minutes=1)
            with session_factory.begin() as session:  # make it due again without waiting
                session.execute(
                    job_table()
                    .update()
                    .where(Job.id == job_id)
                    .values(run_at=func.statement_timestamp())
                )
        found = settled(session_factory, job_id, JobStatus.FAILED)
    assert found.attempts == 3
    assert "boom on attempt 3" in (found.last_error or "")


def test_snooze_reschedules_without_counting_a_failure(
    start_worker: StartWorker, session_factory: sessionmaker[Session]
) -> None:
    registry = Registry()
    attempts: list[int] = []

    @registry.handler("poll", max_attempts=2)
    def poll(ctx: JobContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt < 4:
            raise Snooze(after=timedelta(0), reason="not ready yet")
        return "ready"

    with session_factory.begin() as session:
        job_id = registry.enqueue(JobQueue(session), "poll").id
    with start_worker(registry):
        found = settled(session_factory, job_id, JobStatus.COMPLETED)
    # Three retries did not use up the two attempts: each grew max_attempts by one.
    assert attempts == [1, 2, 3, 4]
    assert (found.attempts, found.max_attempts, found.result) == (4, 5, "ready")
    assert found.last_error is None


def test_snooze_after_pushes_run_at(
    start_worker: StartWorker, session_factory: sessionmaker[Session]
) -> None:
    registry = Registry({"later": lambda ctx: (_ for _ in ()).throw(Snooze(timedelta(hours=2)))})
    with session_factory.begin() as session:
        job_id = registry.enqueue(JobQueue(session), "later").id
    before = db_now(session_factory)
    with start_worker(registry):
        found = wait_for(
            lambda: (
                (j := job(session_factory, job_id)).status == JobStatus.PENDING
                and j.attempts == 1
                and j
            ),
        )
    assert timedelta(hours=2) <= found.run_at - before <= timedelta(hours=2, minutes=1)
    assert found.max_attempts == 4 and found.worker_id is None


def test_cancel_ends_the_job_cancelled_with_its_reason(
    start_worker: StartWorker, session_factory: sessionmaker[Session]
) -> None:
    registry = Registry()

    @registry.handler("doomed")
    def doomed(ctx: JobContext) -> None:
        raise Cancel("customer closed the account")

    with session_factory.begin() as session:
        job_id = registry.enqueue(JobQueue(session), "doomed").id
    with start_worker(registry):
        found = settled(session_factory, job_id, JobStatus.CANCELLED)
    assert found.last_error == "customer closed the account"
    assert found.attempts == 1 and found.completed_at is not None


def test_a_handler_over_its_timeout_fails_the_attempt_with_a_clear_error(
    start_worker: StartWorker, session_factory: sessionmaker[Session]
) -> None:
    registry = Registry()
    release = threading.Event()
    returned = threading.Event()

    @registry.handler("slow", max_attempts=1, timeout=timedelta(milliseconds=200))
    def slow(ctx: JobContext) -> str:
        release.wait(WAIT)
        returned.set()
        return "too late"

    registry.register("quick", lambda ctx: "ok")
    with session_factory.begin() as session:
        job_id = registry.enqueue(JobQueue(session), "slow").id
    with start_worker(registry, concurrency=1):
        found = settled(session_factory, job_id, JobStatus.FAILED)
        assert "did not finish within its timeout of 0.2s" in (found.last_error or "")
        # The slot is not lost to the stuck thread: another job still runs.
        with session_factory.begin() as session:
            quick = JobQueue(session).enqueue("quick").id
        settled(session_factory, quick, JobStatus.COMPLETED)
        release.set()
        assert returned.wait(WAIT)
    assert job(session_factory, job_id).result is None  # the late return was discarded


# Sync only: ctx.session of a plain handler is the sync worker's.
def test_transactional_completion_keeps_both_or_neither(
    engine: Engine, session_factory: sessionmaker[Session], receipts_table: Table
) -> None:
    registry = Registry()

    @registry.handler("receipt", max_attempts=1)
    def receipt(ctx: JobContext) -> dict[str, int]:
        ctx.session.execute(
            receipts_table.insert().values(order_id=ctx.data["order"], note=ctx.data["note"])
        )
        return {"order": ctx.data["order"]}

    with session_factory.begin() as session:
        queue = JobQueue(session)
        good = registry.enqueue(queue, "receipt", {"order": 1, "note": "fine"}).id
        # The second write breaks the UNIQUE constraint on order_id.
        duplicate = registry.enqueue(queue, "receipt", {"order": 1, "note": "again"}, priority=0).id
        too_long = registry.enqueue(queue, "receipt", {"order": 2, "note": "x" * 50}).id

    with fast_worker(engine, registry, concurrency=1):
        ok = settled(session_factory, good, JobStatus.COMPLETED)
        bad = settled(session_factory, duplicate, JobStatus.FAILED)
        long = settled(session_factory, too_long, JobStatus.FAILED)
    assert ok.result == {"order": 1}
    assert "neither its writes nor the completion" in (bad.last_error or "")
    assert "UniqueViolation" in (bad.last_error or "")
    assert "StringDataRightTruncation" in (long.last_error or "")
    with session_factory() as session:
        rows = session.execute(select(receipts_table.c.order_id, receipts_table.c.note)).all()
    assert rows == [(1, "fine")]


def test_a_result_that_is_not_json_fails_the_attempt(
    start_worker: StartWorker, session_factory: sessionmaker[Session]
) -> None:
    registry = Registry()
    registry.register("weird", lambda ctx: {"when": object()}, max_attempts=1)
    with session_factory.begin() as session:
        job_id = registry.enqueue(JobQueue(session), "weird").id
    with start_worker(registry):
        found = settled(session_factory, job_id, JobStatus.FAILED)
    assert "result must be JSON-serialisable" in (found.last_error or "")


def test_registry_enqueue_applies_handler_max_attempts_unless_overridden(
    session_factory: sessionmaker[Session],
) -> None:
    registry = Registry()
    registry.register("a", lambda ctx: None, max_attempts=7)
    with session_factory.begin() as session:
        queue = JobQueue(session)
        first = registry.enqueue(queue, "a")
        second = registry.enqueue(queue, "a", max_attempts=2, priority=5)
        many = registry.enqueue_many(
            queue, [{"job_type": "a"}, {"job_type": "a", "max_attempts": 1}]
        )
        assert (first.max_attempts, second.max_attempts, second.priority) == (7, 2, 5)
        assert [queue.get(i).max_attempts for i in many] == [7, 1]
        with pytest.raises(InvalidJobError, match="no handler registered for job type 'b'"):
            registry.enqueue(queue, "b")


def test_a_job_enqueued_through_the_registry_runs_with_its_handler_max_attempts(
    start_worker: StartWorker, session_factory: sessionmaker[Session]
) -> None:
    registry = Registry()
    seen: dict[str, int] = {}

    @registry.handler("send_receipt", max_attempts=5)
    def send_receipt(ctx: JobContext) -> None:
        seen[ctx.data["via"]] = ctx.max_attempts

    with session_factory.begin() as session:
        queue = JobQueue(session, Job)
        registry.enqueue(queue, "send_receipt", {"via": "registry"})
        registry.enqueue_many(queue, [{"job_type": "send_receipt", "data": {"via": "many"}}])
        # A plain enqueue does not know the handlers: the row keeps the column's default.
        queue.enqueue("send_receipt", {"via": "queue"})
    with start_worker(registry):
        wait_for(lambda: len(seen) == 3, what="the three jobs to run")
    assert seen == {"registry": 5, "many": 5, "queue": 3}
