"""The repository's promises, held by JobQueue (Session) and AsyncJobQueue (AsyncSession)
alike: one body per promise, run on each executor against the same real PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from sqla_jobqueue import Backoff, Job, JobStatus, Priority
from sqla_jobqueue.errors import (
    InvalidJobError,
    InvalidTransitionError,
    JobNotFoundError,
    LeaseLostError,
    ModelError,
)
from tests.helpers import WAIT
from tests.integration.executors import Executor


def count(engine: Engine, where: str = "true") -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(text(f"SELECT count(*) FROM jobs WHERE {where}")).scalar_one()
        )


def backdate(engine: Engine, column: str, by: str) -> None:
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE jobs SET {column} = {column} - interval '{by}'"))


def test_a_job_exists_if_and_only_if_the_enqueueing_transaction_commits(
    executor: Executor, engine: Engine
) -> None:
    with pytest.raises(RuntimeError), executor.begin() as queue:
        queue.enqueue("a")
        assert count(engine) == 0, "another connection must not see an uncommitted job"
        raise RuntimeError("the request failed after the enqueue")
    assert count(engine) == 0
    with executor.begin() as queue:
        job = queue.enqueue("a", {"order_id": 7})
        assert isinstance(job, Job)
        assert (job.status, job.priority, job.attempts, job.data) == (
            JobStatus.PENDING, Priority.DISCOVERED, 0, {"order_id": 7},
        )  # fmt: skip
    assert count(engine) == 1
    with executor.begin() as queue:
        assert queue.get(job.id).job_type == "a"
        with pytest.raises(JobNotFoundError):
            queue.get(uuid.uuid4())


def test_bulk_enqueue_copies_and_keyed_jobs_take_the_insert(
    executor: Executor, engine: Engine
) -> None:
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    watched = executor.executing_engine
    event.listen(watched, "before_cursor_execute", record)
    try:
        with executor.begin() as queue:
            plain = queue.enqueue_many([{"job_type": "t", "data": {"i": i}} for i in range(300)])
            other = queue.enqueue_many([{"job_type": "t", "priority": 7}])
            assert not [s for s in statements if "INSERT" in s], "the COPY path was not taken"
            live = queue.enqueue("t", unique_key="k").id
            keyed = queue.enqueue_many([{"job_type": "t", "unique_key": "k"}, {"job_type": "u"}])
            assert [s for s in statements if "INSERT" in s]
    finally:
        event.remove(watched, "before_cursor_execute", record)
    assert plain == sorted(plain) and len(set(plain)) == 300
    assert keyed[0] == live
    assert count(engine) == 300 + len(other) + 2
    assert count(engine, "priority = 7") == 1


def test_bad_input_gets_the_same_errors_and_writes_nothing(
    executor: Executor, engine: Engine
) -> None:
    with executor.begin() as queue:
        with pytest.raises(InvalidJobError, match="job_type"):
            queue.enqueue("")
        with pytest.raises(InvalidJobError, match="job #1 has unknown keys"):
            queue.enqueue_many([{"job_type": "t"}, {"job_type": "t", "dta": {}}])
        with pytest.raises(InvalidJobError, match="not the string"):
            queue.claim("t")
        with pytest.raises(InvalidJobError, match="heartbeat needs a worker_id"):
            queue.heartbeat()
        with pytest.raises(InvalidJobError, match="is not a job id"):
            queue.cancel("nope")
    assert count(engine) == 0
    with pytest.raises(ModelError), executor.begin(model=int):
        pass


def test_claims_take_priority_then_age_and_filter_by_type(executor: Executor) -> None:
    with executor.begin() as queue:
        low = queue.enqueue("a", priority=Priority.BACKFILL).id
        first = queue.enqueue("a").id
        high = queue.enqueue("b", priority=Priority.EXPLICIT).id
        second = queue.enqueue("a").id
    with executor.begin(worker_id="w") as queue:
        assert [job.id for job in queue.claim(["a"], batch_size=2)] == [first, second]
        claimed = queue.claim(batch_size=10)
        assert [job.id for job in claimed] == [high, low]
        assert {job.status for job in claimed} == {JobStatus.CLAIMED}
        assert {job.worker_id for job in claimed} == {"w"}


def test_eight_connections_claim_each_job_exactly_once(executor: Executor) -> None:
    with executor.begin() as queue:
        queue.enqueue_many([{"job_type": "t", "data": {"i": i}} for i in range(200)])
    claims: dict[int, list[uuid.UUID]] = {}
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def claimer(index: int) -> None:
        mine: list[uuid.UUID] = claims.setdefault(index, [])
        try:
            start.wait(WAIT)
            while True:
                with executor.begin(worker_id=f"w{index}") as queue:
                    jobs = queue.claim(batch_size=7)
                if not jobs:
                    return
                mine.extend(job.id for job in jobs)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not errors
    every = [job_id for ids in claims.values() for job_id in ids]
    assert len(every) == 200 and len(set(every)) == 200


def test_a_held_job_goes_through_its_life_and_a_stale_writer_is_fenced_off(
    executor: Executor, engine: Engine
) -> None:
    with executor.begin() as queue:
        job_id = queue.enqueue("t", max_attempts=2).id
    with executor.begin(worker_id="w") as queue:
        (job,) = queue.claim()
        with pytest.raises(InvalidTransitionError, match="cannot retry"):
            queue.retry(job)
        assert queue.start(job).status is JobStatus.RUNNING
        assert queue.heartbeat() == 1
        assert queue.heartbeat([]) == 0
        moved = queue.update_progress(job_id, 40, "half", 3, attempt=1)
        assert (moved.progress, moved.current_stage, moved.events_count) == (40, "half", 3)
        failed = queue.fail(job_id, "boom", retry_in=timedelta(0), attempt=1)
        assert (failed.status, failed.last_error, failed.worker_id) == (
            JobStatus.PENDING, "boom", None,
        )  # fmt: skip
    with executor.begin(worker_id="w") as queue:
        (job,) = queue.claim()
        with pytest.raises(LeaseLostError):
            queue.complete(job_id, attempt=1)
        done = queue.complete(job, {"n": 1})
        assert (done.status, done.result, done.progress) == (JobStatus.COMPLETED, {"n": 1}, 100)
    with executor.begin(worker_id="other") as queue, pytest.raises(InvalidTransitionError):
        queue.cancel(job_id)
    assert count(engine, "status = 'completed'") == 1


def test_fail_spends_attempts_with_backoff_and_retry_revives(executor: Executor) -> None:
    backoff = Backoff(base=timedelta(hours=1), cap=timedelta(hours=2), jitter=0)
    with executor.begin() as queue:
        job_id = queue.enqueue("t", max_attempts=1).id
        later = queue.enqueue("t", max_attempts=2).id
    with executor.begin(worker_id="w") as queue:
        assert len(queue.claim()) == 2
        pending = queue.fail(later, "again", backoff=backoff)
        assert pending.status is JobStatus.PENDING
        assert pending.run_at - pending.created_at >= timedelta(minutes=59)
        assert queue.fail(job_id, "over").status is JobStatus.FAILED
        revived = queue.retry(job_id)
        assert (revived.status, revived.attempts) == (JobStatus.PENDING, 0)
        assert queue.cancel(job_id).status is JobStatus.CANCELLED


def test_release_recover_stale_prune_and_stats(executor: Executor, engine: Engine) -> None:
    with executor.begin() as queue:
        queue.enqueue_many([{"job_type": "t"}] * 3)
    with executor.begin(worker_id="w") as queue:
        a, b, c = queue.claim()
        assert queue.release([a]) == 1
        queue.start(b)
    backdate(engine, "heartbeat_at", "1 hour")
    with executor.begin() as queue:
        assert queue.recover_stale(timedelta(minutes=5)) == 2
        stats = queue.stats()
        assert stats.total(JobStatus.PENDING) == 3
        assert stats.oldest_pending_age is not None
        with pytest.raises(InvalidJobError):
            queue.recover_stale(timedelta(0))
    with executor.begin() as queue:
        attempts = {job_id: queue.get(job_id).attempts for job_id in (a.id, b.id, c.id)}
    assert attempts == {a.id: 0, b.id: 1, c.id: 0}, "only the started job is charged"
    with executor.begin(worker_id="w") as queue:
        for job in queue.claim():
            queue.cancel(job)
    backdate(engine, "completed_at", "2 days")
    with executor.begin() as queue:
        assert queue.prune(timedelta(days=1), limit=2) == 2
        assert queue.prune(timedelta(days=1)) == 1
        assert queue.stats().counts == {}
