"""Worker promises from docs/reliability.md that the suite did not check before issue 16:
``ctx.session`` work of a handler that raised is not kept, a completion whose answer was
lost is confirmed, an outcome that cannot be written is given up after five rounds, the
worker prunes, and it looks for jobs as soon as its listener reconnects.

Each runs on the sync ``Worker`` and on the ``AsyncWorker`` (``start_worker``), but the
``ctx.session`` one: a plain handler under the AsyncWorker has no session (an async
handler's AsyncSession rolled back with its failure is in test_async_worker.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Column, Engine, Integer, MetaData, Table, event, select, text
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobQueue, JobStatus, Registry
from sqla_jobqueue.handlers import JobContext
from sqla_jobqueue.listener import APPLICATION_NAME
from tests.helpers import StartWorker, fast_worker, statuses, wait_for


# Sync only: ctx.session of a plain handler is the sync worker's.
def test_ctx_session_work_is_rolled_back_when_the_handler_raises(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    writes = Table("writes", MetaData(), Column("attempt", Integer))
    writes.metadata.create_all(engine)
    registry = Registry()

    @registry.handler("write_then_raise")
    def write_then_raise(ctx: JobContext) -> None:
        ctx.session.execute(writes.insert().values(attempt=ctx.attempt))
        ctx.session.flush()
        raise RuntimeError("after the write")

    with session_factory.begin() as session:
        job_id = JobQueue(session).enqueue("write_then_raise", max_attempts=1).id
    with fast_worker(engine, registry, maintenance=False) as worker:
        wait_for(lambda: worker.stats.failed == 1, what="the attempt to fail")
    with session_factory() as session:
        job = JobQueue(session).get(job_id)
        assert session.execute(select(writes.c.attempt)).all() == []
    assert job.status == JobStatus.FAILED
    assert "RuntimeError: after the write" in (job.last_error or "")


def test_a_completion_whose_answer_was_lost_is_confirmed_not_lost(
    start_worker: StartWorker, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    ran: list[int] = []
    registry = Registry({"x": lambda ctx: ran.append(ctx.attempt)})
    with session_factory.begin() as session:
        job_id = JobQueue(session).enqueue("x").id

    def completed() -> bool:
        with engine.connect() as connection:
            found = connection.execute(select(Job.status).where(Job.id == job_id)).scalar_one()
            return bool(found == JobStatus.COMPLETED.value)

    # The worker's own engine: the first statement returning rows after which the job is
    # completed (its round, committed on an autocommit connection) loses its answer.
    worker = start_worker(registry, maintenance=False, engine_options={})
    lost: list[str] = []

    @event.listens_for(worker.sync_engine, "after_cursor_execute")
    def lose_the_answer(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not lost and cursor.description is not None and completed():
            lost.append(statement)
            raise psycopg.OperationalError("connection lost after the commit (test)")

    with worker:
        wait_for(lambda: worker.stats.completed + worker.stats.lost == 1, what="accounted")
    assert lost, "the answer of the completing round was lost"
    assert (worker.stats.completed, worker.stats.lost) == (1, 0)
    assert ran == [1]
    with session_factory() as session:
        job = JobQueue(session).get(job_id)
    assert (job.status, job.attempts) == (JobStatus.COMPLETED, 1)


def test_an_outcome_that_cannot_be_written_is_given_up_after_five_rounds(
    start_worker: StartWorker, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with engine.begin() as connection:
        # An application trigger that refuses to record the failure of one job type;
        # the sequence counts the refused writes (nextval survives a rollback).
        connection.execute(text("CREATE SEQUENCE refused_writes"))
        connection.execute(
            text("""
            CREATE FUNCTION refuse_failures() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.job_type = 'doomed' AND NEW.last_error IS NOT NULL THEN
                    PERFORM nextval('refused_writes');
                    RAISE EXCEPTION 'not recording the failure of %', NEW.id;
                END IF;
                RETURN NEW;
            END $$""")
        )
        connection.execute(
            text(
                "CREATE TRIGGER refuse BEFORE UPDATE ON jobs "
                "FOR EACH ROW EXECUTE FUNCTION refuse_failures()"
            )
        )

    def doomed(ctx: JobContext) -> None:
        raise RuntimeError("this failure cannot be written")

    registry = Registry({"doomed": doomed, "fine": lambda ctx: None})
    with session_factory.begin() as session:
        queue = JobQueue(session)
        doomed_id = queue.enqueue("doomed", priority=200).id
        queue.enqueue_many([{"job_type": "fine"}] * 3)
    with start_worker(registry, concurrency=2, maintenance=False) as worker:
        wait_for(lambda: worker.stats.lost == 1, what="the outcome to be given up")
        wait_for(lambda: worker.stats.completed == 3, what="the other jobs still complete")
        assert worker.running_jobs == []
    with engine.connect() as connection:
        tries = connection.execute(text("SELECT last_value FROM refused_writes")).scalar_one()
    assert tries == 5
    with session_factory() as session:
        # Given up, not rewritten: the job waits for the rescuer.
        assert JobQueue(session).get(doomed_id).status == JobStatus.RUNNING


def test_a_worker_prunes_old_finished_jobs_and_keeps_live_ones(
    start_worker: StartWorker, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        queue = JobQueue(session)
        names = ("old_done", "old_cancelled", "old_pending", "young_done")
        ids = {name: queue.enqueue(name).id for name in names}
    with session_factory.begin() as session:
        queue = JobQueue(session, worker_id="earlier")
        for job in queue.claim(["old_done", "young_done"]):
            queue.complete(job)
        queue.cancel(ids["old_cancelled"])
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE jobs SET created_at = created_at - interval '30 days', "
                "run_at = run_at - interval '30 days', "
                "completed_at = completed_at - interval '30 days' WHERE job_type LIKE 'old_%'"
            )
        )
    registry = Registry({"noop": lambda ctx: None})  # runs none of these types
    with start_worker(registry, retention=86_400):
        wait_for(
            lambda: statuses(session_factory) == {"pending": 1, "completed": 1},
            what="the worker's pruner to delete the old finished jobs",
        )
    with session_factory() as session:
        left = set(session.execute(select(Job.id)).scalars())
    assert left == {ids["old_pending"], ids["young_done"]}


def test_a_job_enqueued_while_the_listener_was_away_runs_after_it_reconnects(
    start_worker: StartWorker, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    registry = Registry({"ping": lambda ctx: "pong"})
    # Polling once an hour: only the listener can make these jobs run during the test.
    with start_worker(registry, poll_interval=3600, maintenance=False) as worker:
        listener = worker.listener
        assert listener is not None
        wait_for(listener.listening.is_set, what="the listener to LISTEN")
        with session_factory.begin() as session:
            JobQueue(session).enqueue("ping")
        wait_for(lambda: worker.stats.completed == 1, what="woken by NOTIFY: now idle")

        with session_factory() as session, session.begin():
            job_id: uuid.UUID = JobQueue(session).enqueue("ping").id
            with engine.connect() as connection:
                killed = connection.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND application_name = :name"
                    ),
                    {"name": APPLICATION_NAME},
                ).scalar_one()
            assert killed == 1
            before_commit: datetime = session.execute(text("SELECT clock_timestamp()")).scalar_one()
        # Committed while nobody listened: its notification reached no one.

        wait_for(lambda: worker.stats.completed == 2, what="the job, after the reconnect")
        assert listener.reconnects == 1
        with engine.connect() as connection:
            listened_again = connection.execute(
                text(
                    "SELECT query_start FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = :name"
                ),
                {"name": APPLICATION_NAME},
            ).scalar_one()
        assert listened_again > before_commit, "the new LISTEN came before the commit"
    with session_factory() as session:
        assert JobQueue(session).get(job_id).status == JobStatus.COMPLETED
