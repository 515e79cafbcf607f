"""The repository against a real PostgreSQL: enqueue, claim order and filters, transitions.

Every test runs on both executors (``JobQueue`` on a ``Session``, ``AsyncJobQueue`` on an
``AsyncSession``) through the ``executor`` fixture: one body, the same promises.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from sqla_jobqueue import Backoff, JobStatus, Priority
from sqla_jobqueue.errors import (
    InvalidJobError,
    InvalidTransitionError,
    JobNotFoundError,
    LeaseLostError,
)
from sqla_jobqueue.plans import reads
from tests.integration.executors import Executor, execute


def count_jobs(engine: Engine, where: str = "true") -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(text(f"SELECT count(*) FROM jobs WHERE {where}")).scalar_one()
        )


def backdate(engine: Engine, column: str, by: str, where: str = "true") -> None:
    with engine.begin() as connection:
        connection.execute(
            text(f"UPDATE jobs SET {column} = {column} - interval '{by}' WHERE {where}")
        )


def test_enqueue_returns_a_pending_job_with_defaults(executor: Executor) -> None:
    with executor.begin() as queue:
        job = queue.enqueue("send_receipt", {"order_id": 7})
        assert job.status is JobStatus.PENDING
        assert job.priority == Priority.DISCOVERED
        assert job.data == {"order_id": 7}
        assert job.attempts == 0 and job.max_attempts == 3
        assert job.run_at >= job.created_at
    with executor.begin() as queue:
        assert queue.get(job.id).job_type == "send_receipt"


def test_a_job_exists_if_and_only_if_the_enqueueing_transaction_commits(
    executor: Executor, engine: Engine
) -> None:
    with pytest.raises(RuntimeError), executor.begin() as queue:
        queue.enqueue("a")
        assert count_jobs(engine) == 0, "another connection must not see an uncommitted job"
        raise RuntimeError("the request failed after the enqueue")
    assert count_jobs(engine) == 0
    with executor.begin() as queue:
        queue.enqueue("a")
    assert count_jobs(engine) == 1


def test_enqueue_is_atomic_with_domain_writes(executor: Executor, engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE orders (id int PRIMARY KEY)"))
    with pytest.raises(RuntimeError), executor.begin() as queue:
        execute(queue, "INSERT INTO orders VALUES (1)")
        queue.enqueue("send_receipt", {"order_id": 1})
        raise RuntimeError("the request failed after both writes")
    assert count_jobs(engine) == 0
    with executor.begin() as queue:
        execute(queue, "INSERT INTO orders VALUES (1)")
        queue.enqueue("send_receipt", {"order_id": 1})
    assert count_jobs(engine) == 1


def test_claim_takes_highest_priority_then_oldest(executor: Executor) -> None:
    with executor.begin() as queue:
        backfill = queue.enqueue("t", priority=Priority.BACKFILL)
        discovered_old = queue.enqueue("t")
    with executor.begin() as queue:
        discovered_new = queue.enqueue("t")
        explicit = queue.enqueue("t", priority=Priority.EXPLICIT)
    with executor.begin(worker_id="w") as queue:
        claimed = queue.claim(None, batch_size=3)
        assert [job.id for job in claimed] == [explicit.id, discovered_old.id, discovered_new.id]
        assert all(job.status is JobStatus.CLAIMED and job.worker_id == "w" for job in claimed)
        assert all(job.attempts == 1 and job.claimed_at is not None for job in claimed)
        assert all(job.heartbeat_at == job.claimed_at for job in claimed)
    with executor.begin(worker_id="w") as queue:
        assert [job.id for job in queue.claim()] == [backfill.id]


def test_claims_of_one_take_the_oldest_by_created_at_first(
    executor: Executor, engine: Engine
) -> None:
    ids = []
    for _ in range(3):
        with executor.begin() as queue:
            ids.append(queue.enqueue("t").id)
    # The last one enqueued, made the oldest: as if its transaction had begun first.
    backdate(engine, "created_at", "1 hour", f"id = '{ids[-1]}'")
    order = []
    for _ in range(3):
        with executor.begin(worker_id="w") as queue:
            (job,) = queue.claim(batch_size=1)
            order.append(job.id)
    assert order == [ids[2], ids[0], ids[1]]


def test_jobs_enqueued_together_are_claimed_in_enqueue_order(executor: Executor) -> None:
    with executor.begin() as queue:
        ids = queue.enqueue_many([{"job_type": "t", "data": {"n": n}} for n in range(50)])
    with executor.begin(worker_id="w") as queue:
        claimed = queue.claim(batch_size=50)
    assert [job.id for job in claimed] == ids


def test_claim_filters_by_job_type(executor: Executor) -> None:
    with executor.begin() as queue:
        wanted = {queue.enqueue("email").id, queue.enqueue("sms").id}
        queue.enqueue("report")
    with executor.begin(worker_id="w") as queue:
        claimed = queue.claim(["email", "sms"], batch_size=10)
    assert {job.id for job in claimed} == wanted


def test_claim_waits_for_run_at(executor: Executor, engine: Engine) -> None:
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    with executor.begin() as queue:
        scheduled = queue.enqueue("t", run_at=later)
        delayed = queue.enqueue("t", run_at=timedelta(minutes=5))
    with executor.begin(worker_id="w") as queue:
        assert queue.claim() == []
    backdate(engine, "run_at", "2 hours")
    with executor.begin(worker_id="w") as queue:
        claimed = queue.claim()
    assert {job.id for job in claimed} == {scheduled.id, delayed.id}


def test_claim_skips_jobs_without_attempts_left(executor: Executor, engine: Engine) -> None:
    with executor.begin() as queue:
        job = queue.enqueue("t", max_attempts=2)
    with engine.begin() as connection:
        connection.execute(text("UPDATE jobs SET attempts = 2"))
    with executor.begin(worker_id="w") as queue:
        assert queue.claim() == []
    assert count_jobs(engine, f"id = '{job.id}' AND status = 'pending'") == 1


def test_fail_retries_with_backoff_then_fails_and_retry_revives(
    executor: Executor, engine: Engine
) -> None:
    with executor.begin() as queue:
        job_id = queue.enqueue("t", max_attempts=2).id
    for attempt, expected in ((1, JobStatus.PENDING), (2, JobStatus.FAILED)):
        backdate(engine, "run_at", "1 day")
        with executor.begin(worker_id="w") as queue:
            (job,) = queue.claim()
            assert job.attempts == attempt
            with pytest.raises(InvalidTransitionError, match="cannot retry"):
                queue.retry(job)
            queue.start(job)
            failed = queue.fail(job, f"boom {attempt}", run_again_in=timedelta(minutes=10))
            assert failed.status is expected
            assert failed.last_error == f"boom {attempt}"
            if expected is JobStatus.PENDING:
                assert failed.worker_id is None
                now = execute(queue, "SELECT statement_timestamp()").scalar_one()
                assert timedelta(minutes=9) < failed.run_at - now <= timedelta(minutes=10)
            else:
                assert failed.completed_at is not None
    with executor.begin() as queue:
        revived = queue.retry(job_id)
        assert revived.status is JobStatus.PENDING
        assert revived.attempts == 0
        assert revived.last_error == "boom 2"
    with executor.begin(worker_id="w") as queue:
        assert [j.id for j in queue.claim()] == [job_id]
        assert queue.cancel(job_id).status is JobStatus.CANCELLED


def test_fail_without_run_again_in_uses_exponential_backoff(executor: Executor) -> None:
    backoff = Backoff(base=timedelta(seconds=30), factor=3, cap=timedelta(hours=1), jitter=0)
    with executor.begin() as queue:
        queue.enqueue("t", max_attempts=5)
    delays = []
    for _ in range(3):
        with executor.begin(worker_id="w") as queue:
            execute(queue, "UPDATE jobs SET run_at = now() - interval '1 day'")
            (job,) = queue.claim()
            failed = queue.fail(job, "again", backoff=backoff)
            now = execute(queue, "SELECT statement_timestamp()").scalar_one()
            delays.append(round((failed.run_at - now).total_seconds()))
    assert delays == [30, 90, 270]


def test_complete_stores_result_and_progress(executor: Executor) -> None:
    with executor.begin() as queue:
        queue.enqueue("t")
    with executor.begin(worker_id="w") as queue:
        (job,) = queue.claim()
        running = queue.start(job)
        assert running.status is JobStatus.RUNNING and running.started_at is not None
        assert queue.heartbeat() == 1 and queue.heartbeat([]) == 0
        progressed = queue.update_progress(job, 40, "downloading", events=3)
        progressed = queue.update_progress(job.id, stage="parsing", events=2, attempt=1)
        assert (progressed.progress, progressed.current_stage, progressed.events_count) == (
            40,
            "parsing",
            5,
        )
        done = queue.complete(job, {"rows": 12})
        assert done.status is JobStatus.COMPLETED
        assert done.progress == 100 and done.result == {"rows": 12}
        assert done.completed_at is not None


def test_transitions_from_the_wrong_state_are_refused(executor: Executor, engine: Engine) -> None:
    with executor.begin() as queue:
        job_id = queue.enqueue("t").id
    with executor.begin(worker_id="w") as queue:
        for action in (queue.start, queue.complete, queue.retry):
            with pytest.raises(InvalidTransitionError) as caught:
                action(job_id)
            assert "'pending'" in str(caught.value)
        with pytest.raises(InvalidTransitionError, match="update progress"):
            queue.update_progress(job_id, 10)
    with executor.begin() as queue:
        queue.cancel(job_id)
    with executor.begin() as queue, pytest.raises(InvalidTransitionError, match="cancelled"):
        queue.cancel(job_id)
    assert count_jobs(engine, "status = 'cancelled'") == 1


def test_unknown_job_id_is_reported(executor: Executor) -> None:
    missing = uuid.uuid4()
    with executor.begin(worker_id="w") as queue:
        with pytest.raises(JobNotFoundError, match=str(missing)):
            queue.get(missing)
        with pytest.raises(JobNotFoundError):
            queue.complete(missing)
        with pytest.raises(JobNotFoundError):
            queue.cancel(missing)


def test_recover_stale_returns_jobs_and_refunds_unstarted_ones(
    executor: Executor, engine: Engine
) -> None:
    with executor.begin() as queue:
        running_id = queue.enqueue("t", data={"n": 1}).id
        claimed_id = queue.enqueue("t", data={"n": 2}).id
        spent_id = queue.enqueue("t", data={"n": 3}, max_attempts=1).id
        fresh_id = queue.enqueue("t", data={"n": 4}).id
    # Each dead worker ran one job: a crash while a job runs alone is its own.
    for worker_id, job_id, starts in [
        ("dead-1", running_id, True),
        ("dead-3", claimed_id, False),
        ("dead-2", spent_id, True),
        ("live", fresh_id, True),
    ]:
        with executor.begin(worker_id=worker_id) as queue:
            (job,) = queue.claim(batch_size=1)
            assert job.id == job_id
            if starts:
                queue.start(job)
    backdate(engine, "heartbeat_at", "10 minutes", f"id <> '{fresh_id}'")
    with executor.begin() as queue:
        assert queue.recover_stale(timedelta(minutes=5)) == 3
    with executor.begin() as queue:
        running = queue.get(running_id)
        assert (running.status, running.attempts, running.crashes, running.worker_id) == (
            JobStatus.PENDING, 1, 1, None
        )  # fmt: skip
        assert "dead-1" in (running.last_error or "")
        claimed_job = queue.get(claimed_id)
        assert (claimed_job.status, claimed_job.attempts, claimed_job.crashes) == (
            JobStatus.PENDING, 0, 0
        )  # fmt: skip
        spent = queue.get(spent_id)
        assert (spent.status, spent.attempts, spent.crashes) == (JobStatus.FAILED, 1, 1)
        assert queue.get(fresh_id).status is JobStatus.RUNNING


def test_recover_stale_gives_back_the_attempts_of_jobs_that_ran_beside_others(
    executor: Executor, engine: Engine
) -> None:
    """Any of the jobs a dead worker was running may have killed it: none is charged (each
    gets an attempt more, as a snooze does), each counts the crash and runs alone next; a
    claim of several jobs passes over them."""
    with executor.begin() as queue:
        ids = [queue.enqueue("t", data={"n": n}, max_attempts=1).id for n in range(3)]
        later = queue.enqueue("t", data={"n": 3}).id
    with executor.begin(worker_id="crowded") as queue:
        for job in queue.claim(batch_size=3):
            queue.start(job)
    backdate(engine, "heartbeat_at", "10 minutes")
    with executor.begin() as queue:
        assert queue.recover_stale(timedelta(minutes=5)) == 3
    with executor.begin() as queue:
        for job_id in ids:
            job = queue.get(job_id)
            assert (job.status, job.attempts, job.max_attempts, job.crashes) == (
                JobStatus.PENDING, 1, 2, 1
            )  # fmt: skip
            assert "while running other jobs too" in (job.last_error or "")
    with executor.begin(worker_id="next") as queue:
        assert [job.id for job in queue.claim(batch_size=10)] == [later]
    with executor.begin(worker_id="alone") as queue:
        assert [job.id for job in queue.claim(batch_size=1)] == [ids[0]]


def test_a_stale_worker_cannot_complete_a_rescued_job(executor: Executor, engine: Engine) -> None:
    with executor.begin() as queue:
        queue.enqueue("t")
    with executor.begin(worker_id="stale") as stale:
        (job,) = stale.claim()
        stale.start(job)
        first_attempt = job.attempts
    backdate(engine, "heartbeat_at", "1 hour")
    with executor.begin() as queue:
        assert queue.recover_stale(timedelta(minutes=1)) == 1
    with executor.begin(worker_id="stale") as queue:
        (again,) = queue.claim(batch_size=1)  # it crashed: only a claim of one takes it
        assert again.attempts == first_attempt + 1
    with executor.begin(worker_id="stale") as late:
        with pytest.raises(LeaseLostError, match="no longer holds"):
            late.complete(job.id, attempt=first_attempt)
        with pytest.raises(LeaseLostError):
            executor.beside(late, worker_id="someone-else").fail(job.id, "late")
    with executor.begin(worker_id="stale") as queue:
        queue.complete(job.id, attempt=first_attempt + 1)
    assert count_jobs(engine, "status = 'completed' AND attempts = 2") == 1


def test_release_gives_back_unstarted_jobs_without_charging(
    executor: Executor, engine: Engine
) -> None:
    with executor.begin() as queue:
        queue.enqueue_many([{"job_type": "t"}] * 4)
    with executor.begin(worker_id="w") as queue:
        first, second, *_ = queue.claim(batch_size=4)
        queue.start(first)
        assert queue.release([second]) == 1
        assert queue.release() == 2
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT status, attempts FROM jobs")).all()
    assert sorted(tuple(row) for row in rows) == [
        ("pending", 0),
        ("pending", 0),
        ("pending", 0),
        ("running", 1),
    ]


def test_heartbeat_refreshes_only_this_workers_jobs(executor: Executor, engine: Engine) -> None:
    with executor.begin() as queue:
        queue.enqueue_many([{"job_type": "t"}] * 2)
    with executor.begin(worker_id="a") as queue:
        queue.claim(batch_size=1)
        executor.beside(queue, worker_id="b").claim(batch_size=1)
    backdate(engine, "heartbeat_at", "1 hour")
    with executor.begin(worker_id="a") as queue:
        assert queue.heartbeat() == 1
    assert count_jobs(engine, "heartbeat_at > now() - interval '1 minute'") == 1
    assert count_jobs(engine, "worker_id = 'a' AND heartbeat_at > now() - interval '1 minute'") == 1


def test_unique_key_returns_the_live_job(executor: Executor, engine: Engine) -> None:
    with executor.begin() as queue:
        first = queue.enqueue("sync", {"account": 1}, unique_key="sync:1")
        second = queue.enqueue("sync", {"account": 1}, unique_key="sync:1")
        assert second.id == first.id
        ids = queue.enqueue_many(
            [
                {"job_type": "sync", "unique_key": "sync:1"},
                {"job_type": "sync", "unique_key": "sync:2"},
                {"job_type": "sync", "unique_key": "sync:2"},
                {"job_type": "other"},
            ]
        )
        assert ids[0] == first.id and ids[1] == ids[2] and len(set(ids)) == 3
    assert count_jobs(engine) == 3
    with executor.begin(worker_id="w") as queue:
        for job in queue.claim(["sync"], batch_size=5):
            queue.complete(job)
    with executor.begin() as queue:
        again = queue.enqueue("sync", unique_key="sync:1")
        assert again.id != first.id, "a finished job does not hold its key"
    assert count_jobs(engine) == 4


@pytest.mark.parametrize("batch", [1, 4])
def test_sql_function_claims_exactly_like_the_queue(
    executor: Executor, engine: Engine, batch: int
) -> None:
    """The same jobs in the same order, including jobs that crashed a worker, which only a
    claim of one job takes."""
    specs = [
        {"job_type": kind, "priority": priority, "data": {"n": n}}
        for n, (kind, priority) in enumerate(
            [("a", 30), ("b", 150), ("a", 100), ("c", 150), ("a", 150), ("b", 100)] * 5
        )
    ]
    specs.append({"job_type": "a", "priority": 999, "run_at": timedelta(hours=1)})
    with executor.begin() as queue:
        queue.enqueue_many(specs)
    with engine.begin() as connection:
        crashed = set(
            connection.execute(
                text(
                    "UPDATE jobs SET crashes = 1 WHERE (data->>'n')::int % 7 = 0 "
                    "RETURNING (data->>'n')::int"
                )
            ).scalars()
        )

    def claim_all(claim: Callable[[], list[tuple[int, int]]]) -> list[tuple[int, int]]:
        order = []
        for _ in range(30):
            claimed = claim()
            order.extend(claimed)
            if not claimed:
                break
        return order

    def via_queue() -> list[tuple[int, int]]:
        with executor.begin(worker_id="py") as queue:
            jobs = queue.claim(["a", "b"], batch_size=batch)
        return [(job.data["n"], job.attempts) for job in jobs]

    def via_function() -> list[tuple[int, int]]:
        with engine.begin() as connection:
            rows = connection.execute(
                text(
                    "SELECT data, attempts FROM claim_job_batch('sql', ARRAY['a','b'], :batch) "
                    "ORDER BY priority DESC, created_at, id"
                ),
                {"batch": batch},
            )
            return [(row.data["n"], row.attempts) for row in rows]

    from_queue = claim_all(via_queue)
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE jobs SET status = 'pending', attempts = 0, worker_id = NULL, "
                "claimed_at = NULL, heartbeat_at = NULL"
            )
        )
    from_function = claim_all(via_function)
    claimed_crashed = [n for n, _ in from_queue if n in crashed]
    if batch == 1:
        assert len(from_queue) == 25 and len(claimed_crashed) == 4
    else:
        assert len(from_queue) == 21 and claimed_crashed == []
    assert from_function == from_queue
    with engine.connect() as connection:
        workers = connection.execute(
            text("SELECT DISTINCT worker_id FROM jobs WHERE status = 'claimed'")
        ).scalars()
        assert list(workers) == ["sql"]


def test_stats_counts_by_type_and_status(executor: Executor, engine: Engine) -> None:
    with executor.begin() as queue:
        queue.enqueue_many([{"job_type": "a"}] * 3 + [{"job_type": "b"}])
    with executor.begin(worker_id="w") as queue:
        queue.claim(["b"])
    backdate(engine, "run_at", "90 seconds", "status = 'pending'")
    with executor.begin() as queue:
        stats = queue.stats()
    assert stats.counts == {"a": {"pending": 3}, "b": {"claimed": 1}}
    assert stats.total("pending") == 3
    assert stats.oldest_pending_age is not None
    assert timedelta(seconds=90) <= stats.oldest_pending_age < timedelta(minutes=5)


def test_stats_estimates_the_finished_jobs_of_a_large_table_from_a_sample(
    executor: Executor, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above ``ESTIMATE_ABOVE_ROWS`` (lowered here from a million) finished jobs are counted
    in a sample of the table's pages and scaled up; live jobs are always exact."""
    monkeypatch.setattr(reads, "ESTIMATE_ABOVE_ROWS", 5_000)
    monkeypatch.setattr(reads, "SAMPLED_ROWS", 10_000)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO jobs (job_type, status, attempts, completed_at) "
                "SELECT 'old', CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'completed' END, 1, "
                "now() FROM generate_series(1, 22000) AS g"
            )
        )
    with executor.begin() as queue:
        queue.enqueue_many([{"job_type": "a"}] * 3)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE jobs"))

    with executor.begin() as queue:
        estimate = queue.stats()
        exact = queue.stats(exact=True)
    assert estimate.estimated and not exact.estimated
    assert estimate.counts["a"] == exact.counts["a"] == {"pending": 3}
    assert exact.counts["old"] == {"completed": 19_800, "failed": 2_200}
    for status, count in exact.counts["old"].items():
        # About 45 % of the pages, scaled back up: a sample that was not scaled is off by half.
        assert 0.7 * count <= estimate.counts["old"][status] <= 1.3 * count, estimate


def test_prune_with_a_limit_deletes_the_oldest_first(executor: Executor, engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO jobs (job_type, status, attempts, completed_at) "
                "SELECT 'done', 'completed', 1, now() - g * interval '1 day' "
                "FROM generate_series(8, 12) AS g"
            )
        )
    with executor.begin() as queue:
        assert queue.prune(timedelta(days=7), limit=2) == 2
    with engine.connect() as connection:
        left = connection.execute(
            text("SELECT date_part('day', now() - completed_at) FROM jobs ORDER BY 1")
        ).scalars()
        assert list(left) == [8, 9, 10]


def test_prune_deletes_only_old_finished_jobs(executor: Executor, engine: Engine) -> None:
    with executor.begin() as queue:
        queue.enqueue_many([{"job_type": "t", "max_attempts": 1}] + [{"job_type": "t"}] * 4)
    with executor.begin(worker_id="w") as queue:
        failed, done, cancelled, _ = queue.claim(batch_size=4)
        assert queue.fail(failed, "boom").status is JobStatus.FAILED
        queue.complete(done)
        queue.cancel(cancelled)
    backdate(engine, "completed_at", "8 days", "completed_at IS NOT NULL")
    with executor.begin() as queue:
        assert queue.prune(timedelta(days=7), limit=2) == 2
        assert queue.prune(timedelta(days=7)) == 1
        assert queue.stats().total(JobStatus.PENDING) == 1
    assert count_jobs(engine) == 2


@pytest.mark.parametrize(
    "specs",
    [
        [{"job_type": "email"}, {"job_type": "sms"}, {"job_type": "email"}],
        [{"job_type": "email", "run_at": timedelta(0)}, {"job_type": "sms", "unique_key": "k"}],
    ],
    ids=["copy", "insert"],
)
def test_enqueue_notifies_each_type_on_commit(
    executor: Executor, database_url: URL, specs: list[dict[str, object]]
) -> None:
    import psycopg

    from sqla_jobqueue.sql import QueueObjects

    url = database_url.set(drivername="postgresql").render_as_string(hide_password=False)
    channel = QueueObjects("public", "jobs", "claim_job_batch").channel
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f'LISTEN "{channel}"')
        with executor.begin() as queue:
            queue.enqueue_many(specs)
            assert list(listener.notifies(timeout=0.2, stop_after=1)) == [], "only on commit"
        received = {n.payload for n in listener.notifies(timeout=5, stop_after=2)}
    assert received == {"email", "sms"}


@pytest.mark.parametrize(
    "delay",
    [timedelta(microseconds=50), timedelta(days=3, microseconds=7), -timedelta(minutes=5)],
    ids=["tiny", "odd", "past"],
)
def test_run_at_delays_are_exact_to_the_microsecond(executor: Executor, delay: timedelta) -> None:
    with executor.begin() as queue:
        many = queue.get(queue.enqueue_many([{"job_type": "t", "run_at": delay}])[0])
        single = queue.enqueue("t", run_at=delay)
        now = execute(queue, "SELECT statement_timestamp()").scalar_one()
    # Each INSERT ran after the transaction began (created_at) and before `now`.
    for job in (many, single):
        assert job.created_at + delay <= job.run_at <= now + delay


def test_a_delay_beyond_a_century_is_refused(executor: Executor, engine: Engine) -> None:
    with executor.begin() as queue, pytest.raises(InvalidJobError, match="days away"):
        queue.enqueue("t", run_at=timedelta(days=999_999_999))
    assert count_jobs(engine) == 0
