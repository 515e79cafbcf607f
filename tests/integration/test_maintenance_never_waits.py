"""Maintenance never waits on a lock that someone else holds.

A stale job whose row another transaction has locked (an operator's open transaction, a
report that reads with ``FOR UPDATE``) is skipped by a rescue round and rescued by a later
one, once the lock is gone; the other stale jobs are rescued at once. The same for pruning
old finished jobs. A lock on the whole table (``LOCK TABLE``, an ``ALTER TABLE`` or a
``CREATE INDEX`` in progress) makes a duty's round give up after the duty's own
``lock_timeout`` and return ``None``, as when another worker holds the duty.

Every statement under test runs under a ``statement_timeout`` guard, so that one that
waited would fail after the guard rather than hang the run; the duties' own limit on lock
waits is far shorter, and the guard is not a ``lock_timeout``, so it can neither stand in
for that limit nor be mistaken for it. Heartbeats and completions are backdated: no sleep.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobQueue, JobStatus, Registry
from sqla_jobqueue.maintenance import Pruner, PrunerConfig, Rescuer, RescuerConfig
from sqla_jobqueue.maintenance.base import DutyBase
from tests.helpers import StartWorker, wait_for
from tests.integration.executors import Executor, execute

GUARD = "10s"
"""The ``statement_timeout`` under which a statement that waited on a lock fails."""
GUARDED = {"connect_args": {"options": f"-c statement_timeout={GUARD}"}}
"""Engine options of that guard."""

STALE = timedelta(minutes=1)
RETENTION = timedelta(days=7)


# ------------------------------------------------------------------------------ setup


def stale_jobs(factory: sessionmaker[Session], n: int) -> list[uuid.UUID]:
    """``n`` running jobs of the worker ``gone``, whose last heartbeat is an hour old."""
    with factory.begin() as session:
        queue = JobQueue(session, worker_id="gone")
        queue.enqueue_many([{"job_type": "x", "data": {"n": i}} for i in range(n)])
        claimed = queue.claim(batch_size=n)
        for job in claimed:
            queue.start(job)
        session.execute(text("UPDATE jobs SET heartbeat_at = heartbeat_at - interval '1 hour'"))
        return sorted(job.id for job in claimed)


def old_finished_jobs(factory: sessionmaker[Session], n: int) -> list[uuid.UUID]:
    """``n`` completed jobs that finished ten days ago (``RETENTION`` is seven)."""
    with factory.begin() as session:
        queue = JobQueue(session, worker_id="w")
        queue.enqueue_many([{"job_type": "x", "data": {"n": i}} for i in range(n)])
        claimed = queue.claim(batch_size=n)
        for job in claimed:
            queue.complete(job)
        session.execute(text("UPDATE jobs SET completed_at = completed_at - interval '10 days'"))
        return sorted(job.id for job in claimed)


@contextmanager
def row_locked(engine: Engine, job_id: uuid.UUID) -> Iterator[Connection]:
    """Hold ``FOR UPDATE`` on one job's row in a transaction of its own until exit."""
    with engine.connect() as connection, connection.begin():
        connection.execute(select(Job.id).where(Job.id == job_id).with_for_update())
        yield connection


@contextmanager
def table_locked(engine: Engine, mode: str) -> Iterator[Connection]:
    """Hold a lock on the whole job table in a transaction of its own until exit."""
    with engine.connect() as connection, connection.begin():
        connection.execute(text(f"LOCK TABLE jobs IN {mode} MODE"))
        yield connection


def holders(engine: Engine, ids: list[uuid.UUID]) -> list[tuple[str, str | None]]:
    """Status and ``worker_id`` of each of ``ids``, in that order (``DELETED`` when gone)."""
    with engine.connect() as connection:
        rows = connection.execute(select(Job.id, Job.status, Job.worker_id).where(Job.id.in_(ids)))
        found = {job_id: (JobStatus(status).value, worker) for job_id, status, worker in rows}
    return [found.get(job_id, DELETED) for job_id in ids]


RESCUED = ("pending", None)
STILL_STALE = ("running", "gone")
FINISHED = ("completed", "w")
DELETED = ("deleted", None)


# --------------------------------------------------------------------------- duties


@pytest.fixture(params=["run_once", "run_once_async"])
def run_round(request: pytest.FixtureRequest, database_url: URL) -> Iterator[Any]:
    """One round of a duty, on a guarded ``Engine`` (``run_once``) or ``AsyncEngine``
    (``run_once_async``); its value is what the round returned."""
    if request.param == "run_once":
        engine = create_engine(database_url, **GUARDED)
        yield lambda duty: duty.run_once(engine)
        engine.dispose()
        return
    url = database_url.set(drivername="postgresql+psycopg")

    async def run(duty: DutyBase[Any]) -> int | None:
        async_engine = create_async_engine(url, **GUARDED)
        try:
            return await duty.run_once_async(async_engine)
        finally:
            await async_engine.dispose()

    yield lambda duty: asyncio.run(run(duty))


def test_a_rescue_round_skips_a_locked_stale_job_and_a_later_round_rescues_it(
    run_round: Any, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    locked, unlocked = stale_jobs(session_factory, 2)
    rescuer = Rescuer(Job, RescuerConfig(stale_timeout=STALE))
    with row_locked(engine, locked):
        assert run_round(rescuer) == 1  # returned while the lock is held
        assert holders(engine, [locked, unlocked]) == [STILL_STALE, RESCUED]
    assert run_round(rescuer) == 1
    assert holders(engine, [locked, unlocked]) == [RESCUED, RESCUED]


def test_a_pruning_round_skips_a_locked_old_job_and_a_later_round_deletes_it(
    run_round: Any, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    locked, *unlocked = old_finished_jobs(session_factory, 5)
    pruner = Pruner(Job, PrunerConfig(retention=RETENTION, batch_limit=2))
    with row_locked(engine, locked):
        assert run_round(pruner) == 4  # two full batches, then one of the last job
        assert holders(engine, [locked, *unlocked]) == [FINISHED] + [DELETED] * 4
    assert run_round(pruner) == 1
    assert holders(engine, [locked]) == [DELETED]


@pytest.mark.parametrize("mode", ["ACCESS EXCLUSIVE", "SHARE"])  # ALTER TABLE, CREATE INDEX
def test_a_round_gives_up_on_a_table_lock_and_a_later_round_does_its_work(
    run_round: Any,
    engine: Engine,
    session_factory: sessionmaker[Session],
    mode: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("WARNING", logger="sqla_jobqueue.maintenance")
    stale = stale_jobs(session_factory, 2)
    old = old_finished_jobs(session_factory, 2)
    rescuer = Rescuer(Job, RescuerConfig(stale_timeout=STALE))
    pruner = Pruner(Job, PrunerConfig(retention=RETENTION))
    with table_locked(engine, mode):
        # Given up after the duty's lock_timeout, as when another worker holds the duty.
        assert run_round(rescuer) is None
        assert run_round(pruner) is None
    assert "rescuer: gave up this round on jobs" in caplog.text
    assert "pruner: gave up this round on jobs" in caplog.text
    assert holders(engine, stale + old) == [STILL_STALE] * 2 + [FINISHED] * 2
    assert run_round(rescuer) == 2
    assert run_round(pruner) == 2
    assert holders(engine, stale + old) == [RESCUED] * 2 + [DELETED] * 2


def test_a_duty_leaves_the_lock_timeout_of_its_connection_as_it_found_it(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    stale_jobs(session_factory, 1)
    pooled = create_engine(engine.url, pool_size=1, max_overflow=0, **GUARDED)
    try:
        with pooled.connect() as connection:
            before = connection.execute(text("SHOW lock_timeout")).scalar_one()
        assert Rescuer(Job, RescuerConfig(stale_timeout=STALE)).run_once(pooled) == 1
        with pooled.connect() as connection:  # the same connection, back from the pool
            assert connection.execute(text("SHOW lock_timeout")).scalar_one() == before
    finally:
        pooled.dispose()


# ------------------------------------------------------------------------ JobQueue


def guarded(queue: Any) -> Any:
    """``queue`` (from :meth:`Executor.begin`) with the guard set in its transaction."""
    execute(queue, f"SET LOCAL statement_timeout = '{GUARD}'")
    return queue


def test_recover_stale_skips_a_locked_job_and_a_later_call_rescues_it(
    executor: Executor, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    locked, unlocked = stale_jobs(session_factory, 2)
    with row_locked(engine, locked):
        with executor.begin() as queue:
            assert guarded(queue).recover_stale(STALE) == 1
        assert holders(engine, [locked, unlocked]) == [STILL_STALE, RESCUED]
    with executor.begin() as queue:
        assert guarded(queue).recover_stale(STALE) == 1
    assert holders(engine, [locked, unlocked]) == [RESCUED, RESCUED]


@pytest.mark.parametrize("limit", [None, 2])
def test_prune_skips_a_locked_job_and_a_later_call_deletes_it(
    executor: Executor,
    engine: Engine,
    session_factory: sessionmaker[Session],
    limit: int | None,
) -> None:
    locked, *unlocked = old_finished_jobs(session_factory, 3)
    with row_locked(engine, locked):
        with executor.begin() as queue:
            assert guarded(queue).prune(RETENTION, limit=limit) == 2
        assert holders(engine, [locked, *unlocked]) == [FINISHED, DELETED, DELETED]
    with executor.begin() as queue:
        assert guarded(queue).prune(RETENTION, limit=limit) == 1
    assert holders(engine, [locked]) == [DELETED]


def test_prune_skips_a_job_an_operator_is_retrying(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        queue = JobQueue(session, worker_id="w")
        job = queue.enqueue("x", max_attempts=1)
        queue.claim()
        queue.fail(job, "boom")
        session.execute(text("UPDATE jobs SET completed_at = completed_at - interval '10 days'"))
    with session_factory.begin() as operator:
        JobQueue(operator).retry(job.id)  # its row stays locked until this commits
        with session_factory.begin() as session:
            session.execute(text(f"SET LOCAL statement_timeout = '{GUARD}'"))
            assert JobQueue(session).prune(RETENTION) == 0
    with session_factory() as session:
        assert JobQueue(session).get(job.id).status is JobStatus.PENDING


# -------------------------------------------------------------------------- workers


def test_a_workers_rescuer_rescues_around_a_locked_stale_job(
    start_worker: StartWorker, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    ran: list[uuid.UUID] = []
    registry = Registry({"x": lambda ctx: ran.append(ctx.job_id)})
    locked, unlocked = stale_jobs(session_factory, 2)
    with ExitStack() as stack:
        lock = stack.enter_context(ExitStack())
        lock.enter_context(row_locked(engine, locked))
        worker = stack.enter_context(start_worker(registry, rescue_interval=0.05))
        # Rescued, claimed and run by this worker while the other job stays locked.
        wait_for(lambda: ran == [unlocked], what="the unlocked stale job to be rescued and run")
        assert holders(engine, [locked]) == [STILL_STALE]
        lock.close()
        wait_for(lambda: sorted(ran) == [locked, unlocked], what="the other one once unlocked")
        wait_for(lambda: worker.stats.completed == 2, what="both completions recorded")


def test_a_workers_pruner_prunes_around_a_locked_old_job(
    start_worker: StartWorker, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    locked, *unlocked = old_finished_jobs(session_factory, 3)
    registry = Registry({"x": lambda ctx: None})
    with row_locked(engine, locked), start_worker(registry, retention=RETENTION):
        # A worker's first pruning round runs as it starts.
        wait_for(
            lambda: holders(engine, unlocked) == [DELETED, DELETED],
            what="the unlocked old jobs to be pruned",
        )
        assert holders(engine, [locked]) == [FINISHED]


# ------------------------------------------------------------- a maintainer that stalls


def test_a_maintainer_stalled_mid_round_frees_the_duty_after_its_idle_limit(
    engine: Engine, session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a worker stopped (SIGSTOP) inside its rescue transaction: the server ends that
    session once it sits idle past the duty's limit, which frees the duty's advisory lock
    (and the rows it locked) for the other workers."""
    import sqla_jobqueue.maintenance.base as duty_base

    monkeypatch.setattr(duty_base, "DUTY_IDLE_TIMEOUT", timedelta(milliseconds=300))
    [stale] = stale_jobs(session_factory, 1)
    rescuer = Rescuer(Job, RescuerConfig(stale_timeout=STALE))
    stalled = engine.connect()
    try:
        stalled.begin()
        # The first half of a round, as the duty runs it; then the process stops.
        assert rescuer._bounded_transaction(stalled) == 1
        wait_for(lambda: rescuer.run_once(engine) is not None,
                 what="another worker's round to get the duty back")  # fmt: skip
        with pytest.raises(DBAPIError, match=r"idle-in-transaction timeout|terminating|closed"):
            stalled.execute(text("SELECT 1"))
    finally:
        stalled.invalidate()
        stalled.close()
    # The stalled round's rescue never committed; a later round did it.
    with session_factory() as session:
        assert JobQueue(session).get(stale).status == JobStatus.PENDING
