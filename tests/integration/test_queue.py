"""JobQueue against a real PostgreSQL: enqueue, claim order and filters, transitions."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobQueue, JobStatus, Priority
from sqla_jobqueue.errors import (
    InvalidJobError,
    InvalidTransitionError,
    JobNotFoundError,
    LeaseLostError,
)


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


def test_enqueue_returns_a_pending_job_with_defaults(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        job = JobQueue(session).enqueue("send_receipt", {"order_id": 7})
        assert job.status is JobStatus.PENDING
        assert job.priority == Priority.DISCOVERED
        assert job.data == {"order_id": 7}
        assert job.attempts == 0 and job.max_attempts == 3
        assert job.run_at >= job.created_at
        job_id = job.id
    with session_factory() as session:
        assert JobQueue(session).get(job_id).job_type == "send_receipt"


def test_rollback_leaves_no_job_and_commit_shows_it(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session, session.begin():
        JobQueue(session).enqueue("a")
        assert count_jobs(engine) == 0, "another connection must not see an uncommitted job"
        session.rollback()
    assert count_jobs(engine) == 0
    with session_factory.begin() as session:
        JobQueue(session).enqueue("a")
    assert count_jobs(engine) == 1


def test_enqueue_is_atomic_with_domain_writes(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE orders (id int PRIMARY KEY)"))
    with pytest.raises(RuntimeError), session_factory.begin() as session:
        session.execute(text("INSERT INTO orders VALUES (1)"))
        JobQueue(session).enqueue("send_receipt", {"order_id": 1})
        raise RuntimeError("the request failed after both writes")
    assert count_jobs(engine) == 0
    with session_factory.begin() as session:
        session.execute(text("INSERT INTO orders VALUES (1)"))
        JobQueue(session).enqueue("send_receipt", {"order_id": 1})
    assert count_jobs(engine) == 1


def test_claim_takes_highest_priority_then_oldest(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        queue = JobQueue(session)
        backfill = queue.enqueue("t", priority=Priority.BACKFILL)
        discovered_old = queue.enqueue("t")
    with session_factory.begin() as session:
        queue = JobQueue(session)
        discovered_new = queue.enqueue("t")
        explicit = queue.enqueue("t", priority=Priority.EXPLICIT)
    with session_factory.begin() as session:
        claimed = JobQueue(session, worker_id="w").claim(None, batch_size=3)
        assert [job.id for job in claimed] == [explicit.id, discovered_old.id, discovered_new.id]
        assert all(job.status is JobStatus.CLAIMED and job.worker_id == "w" for job in claimed)
        assert all(job.attempts == 1 and job.claimed_at is not None for job in claimed)
        assert all(job.heartbeat_at == job.claimed_at for job in claimed)
    with session_factory.begin() as session:
        assert [job.id for job in JobQueue(session, worker_id="w").claim()] == [backfill.id]


def test_claims_of_one_take_the_oldest_by_created_at_first(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    ids = []
    for _ in range(3):
        with session_factory.begin() as session:
            ids.append(JobQueue(session).enqueue("t").id)
    # The last one enqueued, made the oldest: as if its transaction had begun first.
    backdate(engine, "created_at", "1 hour", f"id = '{ids[-1]}'")
    order = []
    for _ in range(3):
        with session_factory.begin() as session:
            (job,) = JobQueue(session, worker_id="w").claim(batch_size=1)
            order.append(job.id)
    assert order == [ids[2], ids[0], ids[1]]


def test_jobs_enqueued_together_are_claimed_in_enqueue_order(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        ids = JobQueue(session).enqueue_many(
            [{"job_type": "t", "data": {"n": n}} for n in range(50)]
        )
    with session_factory.begin() as session:
        claimed = JobQueue(session, worker_id="w").claim(batch_size=50)
    assert [job.id for job in claimed] == ids


def test_claim_filters_by_job_type(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        queue = JobQueue(session)
        wanted = {queue.enqueue("email").id, queue.enqueue("sms").id}
        queue.enqueue("report")
    with session_factory.begin() as session:
        claimed = JobQueue(session, worker_id="w").claim(["email", "sms"], batch_size=10)
    assert {job.id for job in claimed} == wanted


def test_claim_waits_for_run_at(engine: Engine, session_factory: sessionmaker[Session]) -> None:
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    with session_factory.begin() as session:
        queue = JobQueue(session)
        scheduled = queue.enqueue("t", run_at=later)
        delayed = queue.enqueue("t", run_at=timedelta(minutes=5))
    with session_factory.begin() as session:
        assert JobQueue(session, worker_id="w").claim() == []
    backdate(engine, "run_at", "2 hours")
    with session_factory.begin() as session:
        claimed = JobQueue(session, worker_id="w").claim()
    assert {job.id for job in claimed} == {scheduled.id, delayed.id}


def test_claim_skips_jobs_without_attempts_left(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        job = JobQueue(session).enqueue("t", max_attempts=2)
    with engine.begin() as connection:
        connection.execute(text("UPDATE jobs SET attempts = 2"))
    with session_factory.begin() as session:
        assert JobQueue(session, worker_id="w").claim() == []
    assert count_jobs(engine, f"id = '{job.id}' AND status = 'pending'") == 1


def test_fail_retries_with_backoff_then_fails_and_retry_revives(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        job_id = JobQueue(session).enqueue("t", max_attempts=2).id
    for attempt, expected in ((1, JobStatus.PENDING), (2, JobStatus.FAILED)):
        backdate(engine, "run_at", "1 day")
        with session_factory.begin() as session:
            queue = JobQueue(session, worker_id="w")
            (job,) = queue.claim()
            assert job.attempts == attempt
            queue.start(job)
            failed = queue.fail(job, f"boom {attempt}", retry_in=timedelta(minutes=10))
            assert failed.status is expected
            assert failed.last_error == f"boom {attempt}"
            if expected is JobStatus.PENDING:
                assert failed.worker_id is None
                delay = (
                    failed.run_at
                    - session.execute(text("SELECT statement_timestamp()")).scalar_one()
                )
                assert timedelta(minutes=9) < delay <= timedelta(minutes=10)
            else:
                assert failed.completed_at is not None
    with session_factory.begin() as session:
        revived = JobQueue(session).retry(job_id)
        assert revived.status is JobStatus.PENDING
        assert revived.attempts == 0
        assert revived.last_error == "boom 2"
    with session_factory.begin() as session:
        assert [j.id for j in JobQueue(session, worker_id="w").claim()] == [job_id]


def test_fail_without_retry_in_uses_exponential_backoff(
    session_factory: sessionmaker[Session],
) -> None:
    from sqla_jobqueue import Backoff

    backoff = Backoff(base=timedelta(seconds=30), factor=3, cap=timedelta(hours=1), jitter=0)
    with session_factory.begin() as session:
        JobQueue(session).enqueue("t", max_attempts=5)
    delays = []
    for _ in range(3):
        with session_factory.begin() as session:
            session.execute(text("UPDATE jobs SET run_at = now() - interval '1 day'"))
            queue = JobQueue(session, worker_id="w")
            (job,) = queue.claim()
            failed = queue.fail(job, "again", backoff=backoff)
            now = session.execute(text("SELECT statement_timestamp()")).scalar_one()
            delays.append(round((failed.run_at - now).total_seconds()))
    assert delays == [30, 90, 270]


def test_complete_stores_result_and_progress(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        JobQueue(session).enqueue("t")
    with session_factory.begin() as session:
        queue = JobQueue(session, worker_id="w")
        (job,) = queue.claim()
        running = queue.start(job)
        assert running.status is JobStatus.RUNNING and running.started_at is not None
        progressed = queue.update_progress(job, 40, "downloading", events=3)
        progressed = queue.update_progress(job, stage="parsing", events=2)
        assert (progressed.progress, progressed.current_stage, progressed.events_count) == (
            40,
            "parsing",
            5,
        )
        done = queue.complete(job, {"rows": 12})
        assert done.status is JobStatus.COMPLETED
        assert done.progress == 100 and done.result == {"rows": 12}
        assert done.completed_at is not None


def test_transitions_from_the_wrong_state_are_refused(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        job_id = JobQueue(session).enqueue("t").id
    with session_factory() as session:
        queue = JobQueue(session, worker_id="w")
        for action in (queue.start, queue.complete, queue.retry):
            with pytest.raises(InvalidTransitionError) as caught:
                action(job_id)
            assert "'pending'" in str(caught.value)
        with pytest.raises(InvalidTransitionError, match="update progress"):
            queue.update_progress(job_id, 10)
        session.rollback()
    with session_factory.begin() as session:
        JobQueue(session).cancel(job_id)
    with session_factory() as session, pytest.raises(InvalidTransitionError, match="cancelled"):
        JobQueue(session).cancel(job_id)
    assert count_jobs(engine, "status = 'cancelled'") == 1


def test_unknown_job_id_is_reported(session_factory: sessionmaker[Session]) -> None:
    missing = uuid.uuid4()
    with session_factory() as session:
        queue = JobQueue(session, worker_id="w")
        with pytest.raises(JobNotFoundError, match=str(missing)):
            queue.get(missing)
        with pytest.raises(JobNotFoundError):
            queue.complete(missing)
        with pytest.raises(JobNotFoundError):
            queue.cancel(missing)


def test_recover_stale_returns_jobs_and_refunds_unstarted_ones(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        queue = JobQueue(session)
        running_id = queue.enqueue("t", data={"n": 1}).id
        claimed_id = queue.enqueue("t", data={"n": 2}).id
        spent_id = queue.enqueue("t", data={"n": 3}, max_attempts=1).id
        fresh_id = queue.enqueue("t", data={"n": 4}).id
    with session_factory.begin() as session:
        queue = JobQueue(session, worker_id="dead")
        claimed = {job.id: job for job in queue.claim(batch_size=4)}
        queue.start(claimed[running_id])
        queue.start(claimed[spent_id])
        queue.start(claimed[fresh_id])
    backdate(engine, "heartbeat_at", "10 minutes", f"id <> '{fresh_id}'")
    with session_factory.begin() as session:
        assert JobQueue(session).recover_stale(timedelta(minutes=5)) == 3
    with session_factory() as session:
        queue = JobQueue(session)
        running = queue.get(running_id)
        assert (running.status, running.attempts, running.worker_id) == (JobStatus.PENDING, 1, None)
        assert "dead" in (running.last_error or "")
        claimed_job = queue.get(claimed_id)
        assert (claimed_job.status, claimed_job.attempts) == (JobStatus.PENDING, 0)
        spent = queue.get(spent_id)
        assert (spent.status, spent.attempts) == (JobStatus.FAILED, 1)
        assert queue.get(fresh_id).status is JobStatus.RUNNING


def test_a_stale_worker_cannot_complete_a_rescued_job(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        JobQueue(session).enqueue("t")
    with session_factory.begin() as session:
        stale = JobQueue(session, worker_id="stale")
        (job,) = stale.claim()
        stale.start(job)
        first_attempt = job.attempts
    backdate(engine, "heartbeat_at", "1 hour")
    with session_factory.begin() as session:
        assert JobQueue(session).recover_stale(timedelta(minutes=1)) == 1
    with session_factory.begin() as session:
        (again,) = JobQueue(session, worker_id="stale").claim()
        assert again.attempts == first_attempt + 1
    with session_factory() as session:
        late = JobQueue(session, worker_id="stale")
        with pytest.raises(LeaseLostError, match="no longer holds"):
            late.complete(job.id, attempt=first_attempt)
        with pytest.raises(LeaseLostError):
            JobQueue(session, worker_id="someone-else").fail(job.id, "late")
    with session_factory.begin() as session:
        JobQueue(session, worker_id="stale").complete(job.id, attempt=first_attempt + 1)
    assert count_jobs(engine, "status = 'completed' AND attempts = 2") == 1


def test_release_gives_back_unstarted_jobs_without_charging(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        JobQueue(session).enqueue_many([{"job_type": "t"}] * 3)
    with session_factory.begin() as session:
        queue = JobQueue(session, worker_id="w")
        first, *_ = queue.claim(batch_size=3)
        queue.start(first)
        assert queue.release() == 2
    with session_factory() as session:
        jobs = session.query(Job).order_by(Job.id).all()
        assert sorted((j.status.value, j.attempts) for j in jobs) == [
            ("pending", 0),
            ("pending", 0),
            ("running", 1),
        ]


def test_heartbeat_refreshes_only_this_workers_jobs(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        JobQueue(session).enqueue_many([{"job_type": "t"}] * 2)
    with session_factory.begin() as session:
        JobQueue(session, worker_id="a").claim(batch_size=1)
        JobQueue(session, worker_id="b").claim(batch_size=1)
    backdate(engine, "heartbeat_at", "1 hour")
    with session_factory.begin() as session:
        assert JobQueue(session, worker_id="a").heartbeat() == 1
    assert count_jobs(engine, "heartbeat_at > now() - interval '1 minute'") == 1
    assert count_jobs(engine, "worker_id = 'a' AND heartbeat_at > now() - interval '1 minute'") == 1


def test_unique_key_returns_the_live_job(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        queue = JobQueue(session)
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
    with session_factory.begin() as session:
        queue = JobQueue(session, worker_id="w")
        for job in queue.claim(["sync"], batch_size=5):
            queue.complete(job)
    with session_factory.begin() as session:
        again = JobQueue(session).enqueue("sync", unique_key="sync:1")
        assert again.id != first.id, "a finished job does not hold its key"
    assert count_jobs(engine) == 4


def test_sql_function_claims_exactly_like_the_queue(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    specs = [
        {"job_type": kind, "priority": priority, "data": {"n": n}}
        for n, (kind, priority) in enumerate(
            [("a", 30), ("b", 150), ("a", 100), ("c", 150), ("a", 150), ("b", 100)] * 5
        )
    ]
    specs.append({"job_type": "a", "priority": 999, "run_at": timedelta(hours=1)})
    with session_factory.begin() as session:
        JobQueue(session).enqueue_many(specs)

    def claim_all(claim: object) -> list[tuple[int, int]]:
        order = []
        for _ in range(20):
            with session_factory.begin() as session:
                batch = claim(session)  # type: ignore[operator]
                order.extend(batch)
                if not batch:
                    break
        return order

    def via_queue(session: Session) -> list[tuple[int, int]]:
        jobs = JobQueue(session, worker_id="py").claim(["a", "b"], batch_size=4)
        return [(job.data["n"], job.attempts) for job in jobs]

    def via_function(session: Session) -> list[tuple[int, int]]:
        rows = session.execute(
            text(
                "SELECT data, attempts FROM claim_job_batch('sql', ARRAY['a','b'], 4) "
                "ORDER BY priority DESC, created_at, id"
            )
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
    assert len(from_queue) == 25
    assert from_function == from_queue
    with engine.connect() as connection:
        workers = connection.execute(
            text("SELECT DISTINCT worker_id FROM jobs WHERE status = 'claimed'")
        ).scalars()
        assert list(workers) == ["sql"]


def test_stats_counts_by_type_and_status(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        queue = JobQueue(session)
        queue.enqueue_many([{"job_type": "a"}] * 3 + [{"job_type": "b"}])
    with session_factory.begin() as session:
        JobQueue(session, worker_id="w").claim(["b"])
    backdate(engine, "run_at", "90 seconds", "status = 'pending'")
    with session_factory() as session:
        stats = JobQueue(session).stats()
    assert stats.counts == {"a": {"pending": 3}, "b": {"claimed": 1}}
    assert stats.total("pending") == 3
    assert stats.oldest_pending_age is not None
    assert timedelta(seconds=90) <= stats.oldest_pending_age < timedelta(minutes=5)


def test_prune_deletes_only_old_finished_jobs(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        queue = JobQueue(session)
        queue.enqueue_many([{"job_type": "t"}] * 4)
    with session_factory.begin() as session:
        queue = JobQueue(session, worker_id="w")
        done, cancelled, _ = queue.claim(batch_size=3)
        queue.complete(done)
        queue.cancel(cancelled)
    backdate(engine, "completed_at", "8 days", "completed_at IS NOT NULL")
    with session_factory.begin() as session:
        assert JobQueue(session).prune(timedelta(days=7)) == 2
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
    database_url: object, session_factory: sessionmaker[Session], specs: list[dict[str, object]]
) -> None:
    import psycopg

    from sqla_jobqueue.sql import QueueObjects

    url = database_url.set(drivername="postgresql").render_as_string(hide_password=False)  # type: ignore[attr-defined]
    channel = QueueObjects("public", "jobs", "claim_job_batch").channel
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f'LISTEN "{channel}"')
        with session_factory.begin() as session:
            JobQueue(session).enqueue_many(specs)
            assert list(listener.notifies(timeout=0.2, stop_after=1)) == [], "only on commit"
        received = {n.payload for n in listener.notifies(timeout=5, stop_after=2)}
    assert received == {"email", "sms"}


@pytest.mark.parametrize(
    "delay",
    [timedelta(microseconds=50), timedelta(days=3, microseconds=7), -timedelta(minutes=5)],
    ids=["tiny", "odd", "past"],
)
def test_run_at_delays_are_exact_to_the_microsecond(
    session_factory: sessionmaker[Session], delay: timedelta
) -> None:
    with session_factory.begin() as session:
        queue = JobQueue(session)
        many = queue.get(queue.enqueue_many([{"job_type": "t", "run_at": delay}])[0])
        single = queue.enqueue("t", run_at=delay)
        now = session.execute(text("SELECT statement_timestamp()")).scalar_one()
    # Each INSERT ran after the transaction began (created_at) and before `now`.
    for job in (many, single):
        assert job.created_at + delay <= job.run_at <= now + delay


def test_a_delay_beyond_a_century_is_refused(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session, pytest.raises(InvalidJobError, match="days away"):
        JobQueue(session).enqueue("t", run_at=timedelta(days=999_999_999))
