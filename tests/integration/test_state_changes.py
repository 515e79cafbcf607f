"""Promises about what a state change writes, checked in the database itself: the status
CHECK, nothing written on a refusal, prune's choice of rows, the SQL backoff's bounds and
timestamps from the database clock. What the repository writes is checked on both
executors (``JobQueue`` and ``AsyncJobQueue``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
import time_machine
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Backoff, Job, JobQueue, JobStatus, Registry
from sqla_jobqueue.errors import InvalidJobError, InvalidTransitionError, LeaseLostError
from sqla_jobqueue.maintenance import Pruner, PrunerConfig
from tests.helpers import fast_worker, wait_for
from tests.integration.executors import Executor, execute

_TIMESTAMPS = ("created_at", "run_at", "claimed_at", "started_at", "heartbeat_at", "completed_at")


def row(queue: Any, job_id: uuid.UUID) -> dict[str, Any]:
    """Every column of a job, read with SQL in the transaction of ``queue`` (a queue from
    :meth:`Executor.begin`), not through the identity map."""
    found = execute(queue, "SELECT * FROM jobs WHERE id = :id", {"id": job_id})
    return dict(found.mappings().one())


def server_now(engine: Engine) -> datetime:
    with engine.connect() as connection:
        now: datetime = connection.execute(text("SELECT statement_timestamp()")).scalar_one()
        return now


# ------------------------------------------------------------------------ the status CHECK


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO jobs (id, job_type, status) VALUES (gen_random_uuid(), 't', 'done')",
        "UPDATE jobs SET status = 'Pending'",
    ],
    ids=["insert", "update"],
)
def test_the_migrated_table_refuses_an_unknown_status(
    engine: Engine, session_factory: sessionmaker[Session], statement: str
) -> None:
    # ``engine`` is on a database built by the packaged Alembic migrations.
    with session_factory.begin() as session:
        JobQueue(session).enqueue("t")
    with pytest.raises(IntegrityError) as refused, engine.begin() as connection:
        connection.execute(text(statement))
    assert isinstance(refused.value.orig, psycopg.errors.CheckViolation)
    assert "jobs_status_check" in str(refused.value.orig)


# ------------------------------------------------------------- refusals write nothing


def test_a_refused_transition_writes_nothing(executor: Executor) -> None:
    with executor.begin() as queue:
        pending, held, done = (queue.enqueue(name).id for name in ("pending", "held", "done"))
    with executor.begin(worker_id="w") as queue:
        assert len(queue.claim(["held", "done"])) == 2
        queue.complete(done)

    refusals: list[tuple[str, Callable[[Any], object], type[Exception]]] = [
        ("complete a pending job", lambda q: q.complete(pending), InvalidTransitionError),
        ("start a pending job", lambda q: q.start(pending), InvalidTransitionError),
        ("retry a pending job", lambda q: q.retry(pending), InvalidTransitionError),
        ("progress of a pending job", lambda q: q.update_progress(pending, 5),
         InvalidTransitionError),
        ("fail a completed job", lambda q: q.fail(done, "late"), InvalidTransitionError),
        ("cancel a completed job", lambda q: q.cancel(done), InvalidTransitionError),
        ("complete another worker's job",
         lambda q: executor.beside(q, worker_id="x").complete(held), LeaseLostError),
        ("fail at the wrong attempt", lambda q: q.fail(held, "x", attempt=7), LeaseLostError),
        ("a result that is not JSON", lambda q: q.complete(held, {1j}), InvalidJobError),
        ("an error that is not text", lambda q: q.fail(held, 42), InvalidJobError),
        ("a percent out of range", lambda q: q.update_progress(held, 101), InvalidJobError),
    ]  # fmt: skip
    for what, refused_action, error in refusals:
        with executor.begin(worker_id="w") as queue:
            before = {job_id: row(queue, job_id) for job_id in (pending, held, done)}
            with pytest.raises(error):
                refused_action(queue)
            after = {job_id: row(queue, job_id) for job_id in (pending, held, done)}
            assert after == before, f"{what}: the refusal changed a row"
        with executor.begin() as queue:
            assert {j: row(queue, j) for j in (pending, held, done)} == before, what


# ------------------------------------------------------------------------------ prune


def old_jobs_in_every_status(executor: Executor, engine: Engine) -> None:
    """One job of each status, named after it, ten years old by every clock a job has;
    and a ``young`` completed job."""
    with executor.begin() as queue:
        names = ("pending", "claimed", "running", "completed", "failed", "cancelled", "young")
        ids = {name: queue.enqueue(name, max_attempts=1).id for name in names}
    with executor.begin(worker_id="w") as queue:
        queue.claim(["claimed", "running", "completed", "failed", "young"], batch_size=10)
        queue.start(ids["running"])
        queue.complete(ids["completed"])
        queue.complete(ids["young"])
        queue.fail(ids["failed"], "boom")
        queue.cancel(ids["cancelled"])
    old = [job_id for name, job_id in ids.items() if name != "young"]
    with engine.begin() as connection:
        ages = ", ".join(f"{c} = {c} - interval '10 years'" for c in _TIMESTAMPS)
        connection.execute(text(f"UPDATE jobs SET {ages} WHERE id = ANY(:ids)"), {"ids": old})


def job_types_left(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(connection.execute(select(Job.job_type)).scalars())


def test_prune_never_deletes_live_jobs_however_old(executor: Executor, engine: Engine) -> None:
    old_jobs_in_every_status(executor, engine)
    with executor.begin() as queue:
        assert queue.prune(timedelta(days=1)) == 3
    assert job_types_left(engine) == {"pending", "claimed", "running", "young"}


def test_the_pruner_never_deletes_live_jobs_however_old(engine: Engine, database_url: URL) -> None:
    old_jobs_in_every_status(Executor("sync", engine, database_url), engine)
    assert Pruner(Job, PrunerConfig(retention=timedelta(days=1))).run_once(engine) == 3
    assert job_types_left(engine) == {"pending", "claimed", "running", "young"}


# ---------------------------------------------------------------------------- backoff


def test_the_databases_backoff_stays_within_the_python_bounds(
    executor: Executor, engine: Engine
) -> None:
    backoff = Backoff(base=timedelta(seconds=1), factor=2, cap=timedelta(seconds=10), jitter=0.5)
    attempts = range(1, 41)
    with executor.begin() as queue:
        ids = {queue.enqueue("t", {"n": n}, max_attempts=100).id: n for n in attempts}
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE jobs SET attempts = (data ->> 'n')::int - 1 WHERE id = ANY(:ids)"),
            {"ids": list(ids)},
        )
    with executor.begin(worker_id="w") as queue:
        assert len(queue.claim(batch_size=len(ids))) == len(ids)

    fractions = []
    for job_id, attempt in ids.items():
        with executor.begin(worker_id="w") as queue:
            before = execute(queue, "SELECT statement_timestamp()").scalar_one()
            job = queue.fail(job_id, "boom", backoff=backoff)
            after = execute(queue, "SELECT statement_timestamp()").scalar_one()
        assert (job.status, job.attempts) == (JobStatus.PENDING, attempt)
        shortest, longest = backoff.bounds(attempt)
        # run_at = (the fail statement's timestamp, between before and after) + delay
        assert job.run_at - before >= shortest, f"attempt {attempt}: shorter than jitter allows"
        assert job.run_at - after <= longest, f"attempt {attempt}: longer than the cap allows"
        fractions.append((job.run_at - before) / longest)
    assert len({round(f, 3) for f in fractions}) > 10, "jitter spreads the delays"


# ---------------------------------------------------------------------- the clock


def test_timestamps_come_from_the_database_clock_not_the_processs(
    executor: Executor, engine: Engine
) -> None:
    registry = Registry({"w": lambda ctx: None})
    before = server_now(engine)
    # This process believes it is 2001; the database knows better.
    with time_machine.travel(datetime(2001, 1, 1, tzinfo=timezone.utc), tick=True):
        assert datetime.now(timezone.utc).year == 2001
        with executor.begin() as queue:
            later = queue.enqueue("q", run_at=timedelta(hours=1)).id
            ids = [queue.enqueue("q").id for _ in range(5)]
            ids += queue.enqueue_many([{"job_type": "q"}, {"job_type": "q", "unique_key": "k"}])
            by_worker = queue.enqueue("w").id
        with executor.begin(worker_id="a") as queue:
            started, completed, failed, progressed, released, *_ = queue.claim(["q"])
            queue.start(started)
            queue.heartbeat()
            queue.update_progress(progressed, 50)
            queue.complete(completed)
            queue.fail(failed, "boom")
            queue.release([released])
        with executor.begin() as queue:
            execute(queue, "UPDATE jobs SET heartbeat_at = heartbeat_at - interval '1 h' "
                           "WHERE id = :id", {"id": started.id})  # fmt: skip
            assert queue.recover_stale(timedelta(minutes=1)) == 1
            queue.cancel(ids[-1])
        with fast_worker(engine, registry, maintenance=False) as worker:
            wait_for(lambda: worker.stats.completed == 1, what="the worker's job")
    after = server_now(engine)

    with executor.begin() as queue:
        rows = [row(queue, job_id) for job_id in [*ids, later, by_worker]]
    checked = 0
    for job in rows:
        for column in _TIMESTAMPS:
            value = job[column]
            if value is None:
                continue
            if job["id"] == later and column == "run_at":
                value -= timedelta(hours=1)
            # Retries are due later by their backoff; the rest is stamped now.
            if column == "run_at" and job["last_error"] is not None:
                assert value > before, (job["id"], column, value)
                continue
            assert before <= value <= after, (job["id"], column, value)
            checked += 1
    assert checked > 20
