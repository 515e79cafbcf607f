"""The worker's settings: the documented defaults, and ``batch_size`` never more than the
free slots; on the sync ``Worker`` and on the ``AsyncWorker``."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobQueue, JobStatus, Registry
from sqla_jobqueue.maintenance import Pruner, Rescuer, Settler
from tests.helpers import WAIT, StartWorker, statuses, unstarted_worker, wait_for


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_default_worker_settings_are_the_documented_ones(kind: str) -> None:
    # The table in docs/workers.md; a worker checks its settings without connecting.
    worker = unstarted_worker(kind, Registry({"t": lambda ctx: None}))
    assert worker.settings.job_types == ["t"]
    assert (worker.settings.concurrency, worker.settings.batch_size) == (10, 10)
    assert worker.settings.poll_interval == 2
    assert worker.settings.heartbeat_interval == 10
    assert worker.settings.stale_timeout == 60
    assert worker.settings.grace_period == 30
    assert worker.settings.progress_interval == 0.5
    assert worker.settings.listen is True
    rescuer, settler, pruner = worker.duties
    assert isinstance(rescuer, Rescuer) and isinstance(pruner, Pruner)
    assert isinstance(settler, Settler) and settler.config.interval == timedelta(seconds=10)
    assert rescuer.config.stale_timeout == timedelta(seconds=60)
    assert rescuer.config.interval == timedelta(seconds=15)  # stale_timeout / 4
    assert pruner.config.retention == timedelta(days=7)
    host, pid, random_part = worker.worker_id.rsplit(":", 2)
    assert host and pid.isdigit() and len(random_part) == 8


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_batch_size_above_concurrency_is_capped_and_maintenance_off_has_no_duties(
    kind: str,
) -> None:
    registry = Registry({"t": lambda ctx: None})
    capped = unstarted_worker(kind, registry, concurrency=2, batch_size=10)
    assert capped.settings.batch_size == 2
    assert unstarted_worker(kind, registry, concurrency=4).settings.batch_size == 4
    assert unstarted_worker(kind, registry, concurrency=200).settings.batch_size == 100
    assert unstarted_worker(kind, registry, maintenance=False).duties == []
    kept = unstarted_worker(kind, registry, retention=None)
    assert [type(d) for d in kept.duties] == [Rescuer, Settler]


def running_in_database(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        running = JobStatus.RUNNING.value
        return int(session.execute(select(func.count()).where(Job.status == running)).scalar_one())


def test_a_claim_takes_no_more_jobs_than_free_slots(
    start_worker: StartWorker, session_factory: sessionmaker[Session]
) -> None:
    release = threading.Event()
    registry = Registry({"hold": lambda ctx: release.wait(WAIT) and None})
    with session_factory.begin() as session:
        JobQueue(session).enqueue("hold")
    with start_worker(registry, concurrency=3, maintenance=False) as worker:
        try:
            wait_for(lambda: len(worker.running_jobs) == 1, what="the first job to run")
            with session_factory.begin() as session:
                # Four more in one commit, one notification: one slot is taken, two free.
                JobQueue(session).enqueue_many([{"job_type": "hold"}] * 4)
            wait_for(lambda: running_in_database(session_factory) >= 3, what="the free slots")
            assert running_in_database(session_factory) == 3 == len(worker.running_jobs)
            assert statuses(session_factory) == {"running": 3, "pending": 2}
            release.set()
            wait_for(lambda: worker.stats.completed == 5, what="all five jobs")
        finally:
            release.set()  # before the worker's graceful stop waits for its handlers
