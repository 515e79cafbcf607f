"""A claim or a heartbeat never waits on a row another transaction has locked, and a claimed
job's lock never blocks an INSERT that references the job by foreign key.

Each test holds a lock in a second connection and gives the statement under test a
``lock_timeout``: a statement that waited for the lock would fail with
``LockNotAvailable`` instead of returning the other jobs. The worker tests run on the sync
``Worker`` and on the ``AsyncWorker``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobQueue, Registry
from tests.helpers import WAIT, StartWorker, wait_for

LOCK_TIMEOUT = "2s"
IMPATIENT = {"connect_args": {"options": f"-c lock_timeout={LOCK_TIMEOUT}"}}
"""Engine options under which every statement gives up on a lock after 2 s."""


@contextmanager
def row_locked(engine: Engine, job_id: uuid.UUID) -> Iterator[Connection]:
    """Hold ``FOR UPDATE`` on one job's row in a transaction of its own until exit."""
    with engine.connect() as connection, connection.begin():
        connection.execute(select(Job.id).where(Job.id == job_id).with_for_update())
        yield connection


def enqueue(factory: sessionmaker[Session], job_type: str, n: int) -> list[uuid.UUID]:
    """``n`` jobs of ``job_type``, the first of the highest priority (claimed first)."""
    with factory.begin() as session:
        queue = JobQueue(session)
        return [queue.enqueue(job_type, priority=200 if i == 0 else 100).id for i in range(n)]


def impatient(session: Session) -> None:
    session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))


def test_jobqueue_claim_skips_a_locked_job_instead_of_waiting(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    first, *others = enqueue(session_factory, "t", 4)
    with row_locked(engine, first), session_factory.begin() as session:
        impatient(session)
        claimed = JobQueue(session, worker_id="w").claim(batch_size=10)
        assert sorted(job.id for job in claimed) == sorted(others)


def test_claim_job_batch_skips_a_locked_job_instead_of_waiting(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    first, *others = enqueue(session_factory, "t", 4)
    with row_locked(engine, first), session_factory.begin() as session:
        impatient(session)
        rows = session.execute(text("SELECT id FROM claim_job_batch('w', NULL, 10)")).scalars()
        assert sorted(rows) == sorted(others)


def test_a_worker_claims_around_a_locked_job_then_runs_it_once_unlocked(
    start_worker: StartWorker, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    ran: list[uuid.UUID] = []
    registry = Registry({"t": lambda ctx: ran.append(ctx.job_id)})
    first, *others = enqueue(session_factory, "t", 4)
    with ExitStack() as stack:
        # Locked before the worker starts: it claims at once, and must claim around it.
        lock = stack.enter_context(ExitStack())
        lock.enter_context(row_locked(engine, first))
        # Every statement of this worker gives up on a lock after 2 s rather than waiting.
        worker = stack.enter_context(
            start_worker(registry, maintenance=False, engine_options=IMPATIENT)
        )
        wait_for(lambda: sorted(ran) == sorted(others), what="the unlocked jobs to run")
        lock.close()
        wait_for(lambda: len(ran) == 4, what="the job once unlocked")
        wait_for(lambda: worker.stats.completed == 4, what="every completion recorded")
    assert sorted(ran) == sorted([first, *others])


def test_heartbeats_skip_a_locked_job_and_refresh_the_others(
    start_worker: StartWorker, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    release = threading.Event()
    registry = Registry({"hold": lambda ctx: release.wait(WAIT) and None})
    locked_job, other_job = enqueue(session_factory, "hold", 2)

    def heartbeat_of(job_id: uuid.UUID) -> Any:
        with engine.connect() as connection:
            return connection.execute(select(Job.heartbeat_at).where(Job.id == job_id)).scalar_one()

    try:
        with start_worker(
            registry, concurrency=2, maintenance=False, engine_options=IMPATIENT
        ) as worker:
            wait_for(lambda: len(worker.running_jobs) == 2, what="both jobs to run")
            with row_locked(engine, locked_job) as locker:
                since = locker.execute(text("SELECT statement_timestamp()")).scalar_one()
                wait_for(
                    lambda: heartbeat_of(other_job) > since,
                    what="a heartbeat of the unlocked job while the other one is locked",
                )
            release.set()
            wait_for(lambda: worker.stats.completed == 2, what="both completed")
    finally:
        release.set()


@pytest.fixture
def notes(engine: Engine) -> None:
    """An application table whose rows reference jobs by foreign key."""
    with engine.begin() as connection:
        connection.execute(
            text("CREATE TABLE job_notes (job_id uuid NOT NULL REFERENCES jobs (id), note text)")
        )


def insert_note_impatiently(engine: Engine, job_id: uuid.UUID) -> None:
    with engine.begin() as connection:
        connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        connection.execute(
            text("INSERT INTO job_notes VALUES (:id, 'written while the job is claimed')"),
            {"id": job_id},
        )


@pytest.mark.parametrize("claim", ["JobQueue.claim", "claim_job_batch"])
def test_a_claimed_job_does_not_block_inserts_that_reference_it(
    engine: Engine, session_factory: sessionmaker[Session], notes: None, claim: str
) -> None:
    (job_id,) = enqueue(session_factory, "t", 1)
    with session_factory.begin() as session:
        # The claim's transaction stays open, holding its row lock, while another
        # transaction inserts a row whose foreign key checks the job (FOR KEY SHARE).
        if claim == "JobQueue.claim":
            assert [job.id for job in JobQueue(session, worker_id="w").claim()] == [job_id]
        else:
            rows = session.execute(text("SELECT id FROM claim_job_batch('w', NULL, 1)"))
            assert list(rows.scalars()) == [job_id]
        insert_note_impatiently(engine, job_id)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM job_notes")).scalar_one() == 1
