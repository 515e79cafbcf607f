"""Isolation levels: a claim needs READ COMMITTED; enqueues and the changes of held jobs do not.

Above READ COMMITTED a claim meets the jobs other claims took since its snapshot as
serialization failures instead of skipping them (4 threads claiming 2,000 jobs: 41 failures
at REPEATABLE READ, 3,823 at SERIALIZABLE), so the queue refuses it before it runs, at the
level SQLAlchemy knows without a query. Every test runs on both executors.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from sqla_jobqueue import JobQueue, JobStatus
from sqla_jobqueue.errors import ConfigurationError
from tests.integration.executors import Blocking, Executor, execute

ABOVE_READ_COMMITTED = ["REPEATABLE READ", "SERIALIZABLE"]


def run_at(queue: Any, level: str) -> None:
    """Make the transaction of ``queue`` (before its first statement) run at ``level``."""
    options = {"isolation_level": level}
    if isinstance(queue, Blocking):
        queue.run(queue.queue.session.connection(execution_options=options))
    else:
        assert isinstance(queue, JobQueue)
        queue.session.connection(execution_options=options)


def server_isolation(queue: Any) -> str:
    return str(execute(queue, "SHOW transaction_isolation").scalar_one())


def enqueued(executor: Executor, **options: Any) -> Any:
    with executor.begin() as queue:
        return queue.enqueue("a", **options)


@pytest.fixture
def serializable_by_default(engine: Engine, database_url: URL) -> Iterator[Engine]:
    """An engine of its own on this test's database, whose default isolation (for every
    role) is SERIALIZABLE, as after ``ALTER DATABASE ... SET default_transaction_isolation``."""
    with engine.begin() as connection:
        connection.execute(
            text(
                f'ALTER DATABASE "{database_url.database}" '
                "SET default_transaction_isolation = 'serializable'"
            )
        )
    fresh = create_engine(database_url)
    yield fresh
    fresh.dispose()


@pytest.mark.parametrize("level", ABOVE_READ_COMMITTED)
def test_a_claim_above_read_committed_is_refused_and_leaves_the_transaction_usable(
    executor: Executor, level: str
) -> None:
    job = enqueued(executor)
    with executor.begin(worker_id="w") as queue:
        run_at(queue, level)
        with pytest.raises(ConfigurationError, match=f"runs at {level}.*READ COMMITTED"):
            queue.claim()
        assert server_isolation(queue) == level.lower()
        still = queue.get(job.id)
        assert (still.status, still.attempts, still.worker_id) == (JobStatus.PENDING, 0, None)


def test_a_database_defaulting_to_serializable_refuses_claims_until_read_committed_is_asked(
    executor: Executor, serializable_by_default: Engine, database_url: URL
) -> None:
    fresh = Executor(executor.kind, serializable_by_default, database_url)
    try:
        job = enqueued(fresh)
        with fresh.begin() as queue:
            assert server_isolation(queue) == "serializable"
            with pytest.raises(ConfigurationError, match="runs at SERIALIZABLE"):
                queue.claim()
        with fresh.begin(worker_id="w") as queue:
            run_at(queue, "READ COMMITTED")
            assert [claimed.id for claimed in queue.claim()] == [job.id]
            assert server_isolation(queue) == "read committed"
    finally:
        fresh.dispose()


@pytest.mark.parametrize("level", ABOVE_READ_COMMITTED)
def test_enqueues_and_the_changes_of_a_held_job_run_at_any_level(
    executor: Executor, level: str
) -> None:
    with executor.begin() as queue:
        run_at(queue, level)
        job = queue.enqueue("a", unique_key="k")
        assert queue.enqueue("a", unique_key="k").id == job.id
        more = [{"job_type": "b"}, {"job_type": "b", "unique_key": "j"}]
        assert len(queue.enqueue_many(more)) == 2
    with executor.begin(worker_id="w") as queue:
        assert job.id in {claimed.id for claimed in queue.claim(["a"])}
    for change in ("start", "update_progress", "complete"):
        with executor.begin(worker_id="w") as queue:
            run_at(queue, level)
            getattr(queue, change)(job.id)
    with executor.begin() as queue:
        assert queue.get(job.id).status is JobStatus.COMPLETED


@pytest.mark.parametrize("level", ["READ COMMITTED", *ABOVE_READ_COMMITTED])
def test_a_held_job_changed_since_the_snapshot_fails_to_serialize_above_read_committed(
    executor: Executor, engine: Engine, level: str
) -> None:
    """What docs/concepts.md asks to retry: the worker's heartbeat commits after the
    transaction's first statement, then the transaction completes the job."""
    job = enqueued(executor)
    with executor.begin(worker_id="w") as queue:
        queue.claim()
    with executor.begin(worker_id="w") as queue:
        run_at(queue, level)
        execute(queue, "SELECT 1")  # the transaction's snapshot
        with Session(engine) as other, other.begin():
            assert JobQueue(other, worker_id="w").heartbeat() == 1
        if level == "READ COMMITTED":
            assert queue.complete(job.id).status is JobStatus.COMPLETED
            return
        with pytest.raises(OperationalError) as refused:
            queue.complete(job.id)
    assert getattr(refused.value.orig, "sqlstate", None) == "40001"
    with executor.begin(worker_id="w") as queue:  # the retried transaction
        run_at(queue, level)
        assert queue.complete(job.id).status is JobStatus.COMPLETED
