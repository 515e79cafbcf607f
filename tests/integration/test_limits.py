"""Limits on job types, kept by every claim: at most N held per type, at most N held per
concurrency key (oldest first), at most N claimed per period. Claims here are the
repository's and the installed function's; worker processes are in test_limits_workers."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from sqla_jobqueue import JobQueue, JobStatus, TypeLimits
from sqla_jobqueue.errors import InvalidJobError
from sqla_jobqueue.statements import JobStatements
from tests.helpers import job_table
from tests.integration.executors import Executor


def _claim(executor: Executor, queue: Any, batch_size: int = 10, types: Any = None) -> list[Any]:
    worker = executor.beside(queue, worker_id="w1")
    return list(worker.claim(types, batch_size=batch_size))


def test_a_type_limit_caps_the_jobs_held_and_claims_the_rest_as_they_finish(
    executor: Executor,
) -> None:
    with executor.begin() as queue:
        limited = [queue.enqueue("export", priority=150).id for _ in range(5)]
        free = [queue.enqueue("email").id for _ in range(3)]
        assert queue.limit("export", max_running=2) == TypeLimits("export", 2, None, None, None)
    with executor.begin() as queue:
        claimed = _claim(executor, queue)
        # The limited type's two best jobs lead, the free ones fill the batch in order.
        assert [job.id for job in claimed] == [*limited[:2], *free]
    with executor.begin() as queue:
        assert _claim(executor, queue) == []
        queue.complete(limited[0], attempt=1)
    with executor.begin() as queue:
        assert [job.id for job in _claim(executor, queue)] == [limited[2]]
    with executor.begin() as queue:
        # A job not claimed for its limit keeps every attempt.
        assert queue.get(limited[4]).attempts == 0
        assert queue.remove_limits(["export", "never-limited"]) == ["export"]
        assert queue.limits() == []
    with executor.begin() as queue:
        assert [job.id for job in _claim(executor, queue)] == limited[3:]


def test_a_key_limit_runs_each_key_oldest_first_and_others_beside_it(
    executor: Executor, engine: Engine
) -> None:
    with executor.begin() as queue:
        queue.limit("sync", max_running_per_key=1)
        a = [queue.enqueue("sync", concurrency_key="customer:a").id for _ in range(3)]
        b = [queue.enqueue("sync", concurrency_key="customer:b").id for _ in range(2)]
        # A later job of higher priority does not overtake its key's older ones.
        late = queue.enqueue("sync", concurrency_key="customer:a", priority=150).id
        unkeyed = queue.enqueue("sync").id
    with executor.begin() as queue:
        assert {job.id for job in _claim(executor, queue)} == {a[0], b[0], unkeyed}
    with executor.begin() as queue:
        assert _claim(executor, queue) == []
        queue.complete(a[0], attempt=1)
        # The next of b fails and waits to be retried: it holds its key's later jobs back.
        queue.fail(b[0], "boom", attempt=1)
    with engine.begin() as connection:
        later = text("UPDATE jobs SET run_at = now() + interval '1 hour' WHERE id = :id")
        connection.execute(later, {"id": b[0]})
    with executor.begin() as queue:
        assert queue.get(b[0]).status == JobStatus.PENDING
        assert [job.id for job in _claim(executor, queue)] == [a[1]]
    with engine.begin() as connection:
        connection.execute(text("UPDATE jobs SET run_at = now() WHERE id = :id"), {"id": b[0]})
    with executor.begin() as queue:
        assert [job.id for job in _claim(executor, queue)] == [b[0]]
        queue.complete(a[1], attempt=1)
    with executor.begin() as queue:
        assert [job.id for job in _claim(executor, queue)] == [a[2]]
        queue.complete(a[2], attempt=1)
    with executor.begin() as queue:
        assert [job.id for job in _claim(executor, queue)] == [late]


def test_a_key_limit_of_two_holds_two_of_a_key(executor: Executor) -> None:
    with executor.begin() as queue:
        queue.limit("sync", max_running_per_key=2, max_running=3)
        a = [queue.enqueue("sync", concurrency_key="a").id for _ in range(4)]
        b = [queue.enqueue("sync", concurrency_key="b").id for _ in range(4)]
    with executor.begin() as queue:
        # Two of a, then the type's limit of three leaves room for one of b.
        assert [job.id for job in _claim(executor, queue)] == [a[0], a[1], b[0]]
    with executor.begin() as queue:
        assert _claim(executor, queue) == []


def test_a_rate_limit_claims_a_burst_then_as_the_bucket_refills(
    executor: Executor, engine: Engine
) -> None:
    with executor.begin() as queue:
        jobs = [queue.enqueue("call_api").id for _ in range(10)]
        limits = queue.limit("call_api", rate_limit=3, rate_period=timedelta(hours=1))
        assert limits.rate_period == timedelta(hours=1)
    with executor.begin() as queue:
        assert [job.id for job in _claim(executor, queue)] == jobs[:3]
    with executor.begin() as queue:
        assert _claim(executor, queue) == []
    with engine.begin() as connection:
        # Twenty minutes later, a third of the hour's three tokens: one more job.
        connection.execute(text(
            "UPDATE jobs_controls SET rate_refilled_at = rate_refilled_at - interval '20 minutes'"
        ))  # fmt: skip
    with executor.begin() as queue:
        assert [job.id for job in _claim(executor, queue)] == [jobs[3]]
    with executor.begin() as queue:
        assert _claim(executor, queue) == []
    with engine.begin() as connection:
        # A day later the bucket is full, never fuller: three jobs.
        connection.execute(text(
            "UPDATE jobs_controls SET rate_refilled_at = rate_refilled_at - interval '1 day'"
        ))  # fmt: skip
    with executor.begin() as queue:
        assert [job.id for job in _claim(executor, queue)] == jobs[4:7]


def test_claim_job_batch_keeps_the_limits(executor: Executor, engine: Engine) -> None:
    with executor.begin() as queue:
        queue.limit("export", max_running=1)
        jobs = [queue.enqueue("export").id for _ in range(3)]
    with engine.begin() as connection:
        claimed = connection.execute(text("SELECT id FROM claim_job_batch('sql', NULL, 10)"))
        assert claimed.scalars().all() == [jobs[0]]
    with engine.begin() as connection:
        again = connection.execute(text("SELECT id FROM claim_job_batch('sql', NULL, 10)"))
        assert again.all() == []


def test_a_claim_of_limited_types_outside_read_committed_is_refused(
    executor: Executor, engine: Engine
) -> None:
    with executor.begin() as queue:
        queue.limit("export", max_running=1)
        queue.enqueue("export")
    with engine.connect() as connection:
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with pytest.raises(Exception, match="needs a READ COMMITTED transaction"):
            connection.execute(text("SELECT * FROM claim_job_batch('sql', NULL, 10)"))


def test_limits_are_listed_replaced_and_removed(executor: Executor) -> None:
    with executor.begin() as queue:
        queue.limit("b", rate_limit=5, rate_period=60)
        queue.limit("a", max_running=2, max_running_per_key=1)
        assert queue.limits() == [
            TypeLimits("a", 2, 1, None, None),
            TypeLimits("b", None, None, 5, timedelta(minutes=1)),
        ]
        queue.pause(["a"])
        # Setting limits replaces them all and leaves the pause alone.
        assert queue.limit("a", max_running=4) == TypeLimits("a", 4, None, None, None)
        assert [p.job_type for p in queue.paused()] == ["a"]
        assert queue.remove_limits(["a"]) == ["a"]
        assert [p.job_type for p in queue.paused()] == ["a"]
        assert [entry.job_type for entry in queue.limits()] == ["b"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda q: q.limit("a"), "limit 'a' with max_running, max_running_per_key or rate_limit"),
        (lambda q: q.limit("a", max_running=0), "max_running must be at least 1, got 0"),
        (lambda q: q.limit("a", max_running=True), "max_running must be an int, got bool"),
        (lambda q: q.limit("a", max_running_per_key=-1), "max_running_per_key must be at least 1"),
        (lambda q: q.limit("a", rate_limit=5, rate_period=0), "rate_period must be positive"),
        (lambda q: q.limit("a", rate_limit=2**31), "rate_limit 2147483648 is outside"),
        (lambda q: q.limit("x" * 51, max_running=1), "job_type"),
        (lambda q: q.remove_limits("a"), "remove_limits takes a list of job types"),
        (lambda q: q.enqueue("a", concurrency_key="k" * 256), "concurrency_key"),
        (lambda q: q.enqueue("a", concurrency_key=7), "concurrency_key"),
    ],
)
def test_bad_limits_are_refused_and_write_nothing(
    executor: Executor, engine: Engine, call: Any, message: str
) -> None:
    with executor.begin() as queue, pytest.raises(InvalidJobError, match=re.escape(message)):
        call(queue)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM jobs_controls")).scalar_one() == 0
        assert connection.execute(text("SELECT count(*) FROM jobs")).scalar_one() == 0


def test_enqueue_many_gives_jobs_their_concurrency_keys(executor: Executor) -> None:
    with executor.begin() as queue:
        ids = queue.enqueue_many(
            [{"job_type": "sync", "concurrency_key": f"k{i % 2}"} for i in range(4)]
            + [{"job_type": "sync"}]
        )
    with executor.begin() as queue:
        keys = [queue.get(job_id).concurrency_key for job_id in ids]
        assert keys == ["k0", "k1", "k0", "k1", None]


def test_a_crashed_job_of_a_limited_type_runs_alone_within_the_limit(engine: Engine) -> None:
    """A worker's rounds pass over a job that crashed a worker; its claim of one job to
    run alone takes it, within the type's limit like any other."""
    statements = JobStatements.of(job_table())
    with Session(engine) as session, session.begin():
        queue = JobQueue(session)
        queue.limit("export", max_running=1)
        crashed = queue.enqueue("export", priority=150).id
        other = queue.enqueue("export").id
        session.execute(text("UPDATE jobs SET crashes = 1 WHERE id = :id"), {"id": crashed})
    empty: list[Any] = []
    with engine.begin() as connection:
        round_ = statements.complete_and_claim(
            "w", empty, empty, empty, empty, empty, 10, None, limited=True
        )
        assert [row.id for row in connection.execute(*round_)] == [other]
    with engine.begin() as connection:
        assert connection.execute(*statements.claim_alone("w", None, limited=True)).all() == []
    with Session(engine) as session, session.begin():
        JobQueue(session).complete(other, attempt=1)
    with engine.begin() as connection:
        alone = connection.execute(*statements.claim_alone("w", None, limited=True)).all()
        assert [row.id for row in alone] == [crashed]
