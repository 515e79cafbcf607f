"""sqla_jobqueue.testing's helpers for users' tests: enqueued() and run_jobs() inside a test's
rolled-back transaction, with the outcomes a worker records."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, func, select, update
from sqlalchemy.orm import Session

from sqla_jobqueue import Backoff, Cancel, Job, JobContext, JobQueue, JobStatus, Registry, Snooze
from sqla_jobqueue.errors import InvalidJobError, JobQueueError
from sqla_jobqueue.testing import enqueued, run_jobs
from sqla_jobqueue.testing import jobs as jobs_testing

notes = Table(
    "notes",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("text", String(20), nullable=False),
)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session in a transaction rolled back at the end, as an application's tests use."""
    notes.metadata.create_all(engine)
    with engine.connect() as connection:
        transaction = connection.begin()
        session = Session(bind=connection, join_transaction_mode="create_savepoint")
        yield session
        session.close()
        transaction.rollback()


def db_now(session: Session) -> Any:
    return session.execute(select(func.statement_timestamp())).scalar_one()


def test_enqueued_lists_jobs_oldest_first_by_type_and_status(session: Session) -> None:
    queue = JobQueue(session, Job)
    first = queue.enqueue("mail", {"to": "a"})
    queue.enqueue("report", {"id": 1})
    second = queue.enqueue("mail", {"to": "b"}, priority=200)
    assert [job.id for job in enqueued(session, Job, job_type="mail")] == [first.id, second.id]
    assert len(enqueued(session, Job)) == 3
    assert enqueued(session, Job, job_type="mail", status="completed") == []
    with pytest.raises(InvalidJobError, match="'done' is not a job status"):
        enqueued(session, Job, status="done")


def test_a_returning_handler_completes_its_job_and_its_writes_join_the_test_transaction(
    engine: Engine, session: Session
) -> None:
    registry = Registry()

    @registry.handler("note")
    def note(ctx: JobContext) -> dict[str, int]:
        ctx.session.execute(notes.insert().values(id=ctx.data["id"], text="written"))
        ctx.progress(50, "halfway")
        ctx.event(2)
        return {"noted": ctx.data["id"]}

    registry.enqueue(JobQueue(session, Job), "note", {"id": 1})
    (job,) = run_jobs(session, registry, Job)
    assert (job.status, job.result, job.attempts) == (JobStatus.COMPLETED, {"noted": 1}, 1)
    assert (job.current_stage, job.events_count, job.progress) == ("halfway", 2, 100)
    assert session.execute(select(notes.c.text)).scalars().all() == ["written"]
    # Nothing was committed: another connection sees neither the job nor the note.
    with Session(engine) as other:
        assert other.scalars(select(Job)).all() == []
        assert other.execute(select(notes.c.id)).all() == []


def test_a_raising_handler_fails_the_attempt_with_its_backoff_and_its_writes_are_undone(
    session: Session,
) -> None:
    registry = Registry()

    @registry.handler("flaky", max_attempts=2, backoff=Backoff(base=timedelta(hours=1), jitter=0))
    def flaky(ctx: JobContext) -> None:
        ctx.session.execute(notes.insert().values(id=ctx.attempt, text="undone"))
        raise RuntimeError(f"boom {ctx.attempt}")

    registry.enqueue(JobQueue(session, Job), "flaky")
    before = db_now(session)
    (job,) = run_jobs(session, registry, Job)  # not run again: its backoff has not passed
    assert (job.status, job.attempts) == (JobStatus.PENDING, 1)
    assert "RuntimeError: boom 1" in (job.last_error or "")
    assert timedelta(hours=1) <= job.run_at - before <= timedelta(hours=1, minutes=1)
    assert session.execute(select(notes.c.id)).all() == []

    session.execute(update(Job).values(run_at=func.statement_timestamp()))
    (job,) = run_jobs(session, registry, Job)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 2)
    assert "boom 2" in (job.last_error or "")


def test_a_write_that_fails_to_flush_fails_the_attempt_and_later_jobs_still_run(
    session: Session,
) -> None:
    registry = Registry()
    registry.register(
        "insert", lambda ctx: ctx.session.execute(notes.insert().values(id=7, text="x")) and None
    )
    queue = JobQueue(session, Job)
    ids = [registry.enqueue(queue, "insert", max_attempts=1).id for _ in range(2)]
    jobs = run_jobs(session, registry, Job)
    assert [(job.id, job.status) for job in jobs] == [
        (ids[0], JobStatus.COMPLETED),
        (ids[1], JobStatus.FAILED),
    ]
    assert "UniqueViolation" in (jobs[1].last_error or "")
    assert session.execute(select(notes.c.id)).scalars().all() == [7]


def test_snooze_and_cancel_do_what_they_do_in_a_worker(session: Session) -> None:
    registry = Registry()
    runs: list[int] = []

    @registry.handler("poll", max_attempts=1)
    def poll(ctx: JobContext) -> str:
        runs.append(ctx.attempt)
        if ctx.attempt < 3:
            raise Snooze(reason="not ready")
        return "ready"

    registry.register("later", lambda ctx: (_ for _ in ()).throw(Snooze(timedelta(hours=2))))
    registry.register("doomed", lambda ctx: (_ for _ in ()).throw(Cancel("order deleted")))
    queue = JobQueue(session, Job)
    poll_id = registry.enqueue(queue, "poll").id
    later_id = registry.enqueue(queue, "later").id
    doomed_id = registry.enqueue(queue, "doomed").id

    run_jobs(session, registry, Job)
    assert runs == [1, 2, 3]  # Snooze with no delay runs again at once, within the call
    polled, later, doomed = (queue.get(i) for i in (poll_id, later_id, doomed_id))
    assert (polled.status, polled.result, polled.max_attempts) == (JobStatus.COMPLETED, "ready", 3)
    assert (later.status, later.attempts, later.worker_id) == (JobStatus.PENDING, 1, None)
    assert later.run_at - db_now(session) > timedelta(hours=1)
    assert (doomed.status, doomed.last_error) == (JobStatus.CANCELLED, "order deleted")


def test_jobs_run_in_claim_order_with_follow_ups_and_limits(session: Session) -> None:
    registry = Registry()
    order: list[str] = []

    @registry.handler("step")
    def step(ctx: JobContext) -> None:
        order.append(ctx.data["name"])
        if ctx.data["name"] == "high":
            registry.enqueue(JobQueue(ctx.session, Job), "step", {"name": "follow-up"})

    registry.register("other", lambda ctx: order.append("other"))
    queue = JobQueue(session, Job)
    for name, priority in (("low", 10), ("high", 200), ("mid", 100)):
        registry.enqueue(queue, "step", {"name": name}, priority=priority)
    registry.enqueue(queue, "other")

    assert len(run_jobs(session, registry, Job, job_types=["step"], limit=1)) == 1
    assert order == ["high"]
    run_jobs(session, registry, Job, job_types=["step"])
    assert order == ["high", "mid", "follow-up", "low"]  # the follow-up is younger than mid
    assert [job.job_type for job in enqueued(session, Job, status="pending")] == ["other"]

    with pytest.raises(InvalidJobError, match="no handler registered for job types"):
        run_jobs(session, registry, Job, job_types=["nope"])
    with pytest.raises(InvalidJobError, match="limit must be a positive int"):
        run_jobs(session, registry, Job, limit=0)


def test_a_handler_that_retries_at_once_forever_is_stopped_with_a_clear_error(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs_testing, "RUNAWAY_ATTEMPTS", 5)
    registry = Registry({"forever": lambda ctx: (_ for _ in ()).throw(Snooze())})
    registry.enqueue(JobQueue(session, Job), "forever")
    with pytest.raises(JobQueueError, match="still due after 5 attempts"):
        run_jobs(session, registry, Job)
    assert len(run_jobs(session, registry, Job, limit=3)) == 3
