"""Maintenance duties under their advisory lock, and the grace period of a graceful stop
(on the sync ``Worker`` and on the ``AsyncWorker``: ``start_worker``)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, update
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobQueue, JobStatus, Registry
from sqla_jobqueue.errors import InvalidJobError
from sqla_jobqueue.maintenance import Pruner, PrunerConfig, Rescuer, RescuerConfig, try_lock
from tests.helpers import WAIT, StartWorker, job_table


def stale_running_job(factory: sessionmaker[Session]) -> Job:
    with factory.begin() as session:
        queue = JobQueue(session, worker_id="gone")
        queue.enqueue("x")
        [job] = queue.claim()
        queue.start(job)
        session.execute(
            update(Job).values(heartbeat_at=func.statement_timestamp() - timedelta(hours=1))
        )
        return job


def test_one_rescue_round_at_a_time_under_the_advisory_lock(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    job = stale_running_job(session_factory)
    rescuer = Rescuer(Job, RescuerConfig(stale_timeout=timedelta(minutes=1)))
    with engine.connect() as other, other.begin():
        assert try_lock(other, "rescuer", job_table())  # another worker's round
        assert rescuer.run_once(engine) is None
    assert rescuer.run_once(engine) == 1  # the lock went with that transaction
    with session_factory() as session:
        rescued = JobQueue(session).get(job.id)
    assert (rescued.status, rescued.attempts, rescued.worker_id) == (JobStatus.PENDING, 1, None)
    # The rescuer's lock is its own: the pruner is not blocked by it.
    with engine.connect() as other, other.begin():
        assert try_lock(other, "rescuer", job_table())
        assert Pruner(Job).run_once(engine) == 0


def test_pruner_deletes_finished_jobs_older_than_the_retention_in_batches(
    session_factory: sessionmaker[Session], engine: Engine
) -> None:
    with session_factory.begin() as session:
        queue = JobQueue(session, worker_id="w")
        queue.enqueue_many([{"job_type": "x"}] * 7)
        for job in queue.claim(batch_size=7):
            queue.complete(job)
        queue.enqueue("x")  # pending: never pruned
        session.execute(
            update(Job)
            .where(Job.status == JobStatus.COMPLETED)
            .values(completed_at=func.statement_timestamp() - timedelta(days=8))
        )
    pruner = Pruner(Job, PrunerConfig(retention=timedelta(days=7), batch_limit=3))
    assert pruner.run_once(engine) == 7
    with session_factory() as session:
        assert JobQueue(session).stats().counts == {"x": {"pending": 1}}


@pytest.mark.parametrize(
    ("config", "kwargs"),
    [
        (RescuerConfig, {"stale_timeout": timedelta(0)}),
        (RescuerConfig, {"interval": 5}),
        (PrunerConfig, {"retention": timedelta(seconds=-1)}),
        (PrunerConfig, {"batch_limit": 0}),
    ],
)
def test_maintenance_configs_are_validated(config: type, kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidJobError):
        config(**kwargs)


def test_a_handler_running_past_the_grace_period_is_failed_and_due_again(
    start_worker: StartWorker, session_factory: sessionmaker[Session]
) -> None:
    started = threading.Event()
    release = threading.Event()
    registry = Registry()

    @registry.handler("stubborn")
    def stubborn(ctx: object) -> None:
        started.set()
        release.wait(WAIT)

    with session_factory.begin() as session:
        job_id = JobQueue(session).enqueue("stubborn").id
    try:
        with start_worker(registry, grace_period=0.1) as worker:
            assert started.wait(WAIT)
            worker.stop()
            assert worker.join(WAIT)
    finally:
        release.set()
    with session_factory() as session:
        job = JobQueue(session).get(job_id)
        due = session.scalar(func.statement_timestamp()) >= job.run_at
    assert (job.status, job.attempts, job.worker_id) == (JobStatus.PENDING, 1, None)
    assert "shut down before the handler finished" in (job.last_error or "")
    assert due
    assert worker.stats.failed == 1
    assert worker.exit_code == 0  # a graceful stop, though it cut a handler off


def test_a_graceful_stop_waits_for_running_handlers(
    start_worker: StartWorker, session_factory: sessionmaker[Session]
) -> None:
    started = threading.Event()
    release = threading.Event()
    registry = Registry()

    @registry.handler("slow")
    def slow(ctx: object) -> str:
        started.set()
        assert release.wait(WAIT)
        return "finished"

    with session_factory.begin() as session:
        job_id = JobQueue(session).enqueue("slow").id
    try:
        with start_worker(registry, grace_period=WAIT) as worker:
            assert started.wait(WAIT)
            worker.stop()
            assert not worker.join(0.2)  # still waiting for the handler
            release.set()
            assert worker.join(WAIT)
    finally:
        release.set()
    assert (worker.stats.completed, worker.exit_code) == (1, 0)
    with session_factory() as session:
        assert JobQueue(session).get(job_id).result == "finished"


def test_a_handler_cut_off_by_a_stop_that_returns_after_the_worker_ended_is_discarded(
    start_worker: StartWorker,
    session_factory: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = threading.Event()
    release = threading.Event()
    threads: list[threading.Thread] = []
    registry = Registry()

    @registry.handler("stubborn")
    def stubborn(ctx: object) -> str:
        threads.append(threading.current_thread())
        started.set()
        release.wait(WAIT)
        return "too late"

    with session_factory.begin() as session:
        job_id = JobQueue(session).enqueue("stubborn").id
    caplog.set_level("WARNING", logger="sqla_jobqueue.worker")
    try:
        with start_worker(registry, grace_period=0.1) as worker:
            assert started.wait(WAIT)
            worker.stop()
            assert worker.join(WAIT)
    finally:
        release.set()
    threads[0].join(WAIT)
    assert "when the worker had given up on it" in caplog.text
    assert "outcome discarded" in caplog.text
    with session_factory() as session:
        assert JobQueue(session).get(job_id).result is None


def test_stop_after_the_worker_ended_does_nothing(start_worker: StartWorker) -> None:
    registry = Registry({"noop": lambda ctx: None})
    with start_worker(registry) as worker:
        worker.stop()
        assert worker.join(WAIT)
        # As an application's shutdown hook or a late signal might, from another thread.
        worker.worker.stop()
        worker.worker.stop(graceful=False)
    assert worker.exit_code == 0
