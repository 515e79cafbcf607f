"""A stale worker's outcome never lands on a job that was rescued and claimed again.

A worker runs attempt *n* of a job and stops heartbeating (a pause, a partition). The job
is rescued and a second worker runs it. Whatever the stale attempt then reports — a
completion (batched or through ``ctx.session``), a failure, ``Snooze`` or ``Cancel`` — is
discarded while the second worker still holds the job, and the second worker's outcome
is the one that lands. Both workers are sync ``Worker`` ones, or both ``AsyncWorker`` ones
(``start_worker``; the ``ctx.session`` completion is the sync worker's only).

Two ways the holder can differ, each guarded by one half of the fence:

- ``same_worker_id``: both workers use one worker id (a fixed id given to two processes);
  only the attempt tells the stale one apart.
- ``other_worker``: the job had one attempt, so the rescue failed it; an operator retried
  it (attempts back to 0) and the second worker runs it at the same attempt number as the
  stale one; only the worker id tells them apart.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobQueue, JobStatus
from sqla_jobqueue.handlers import Cancel, JobContext, Registry, Snooze
from tests.helpers import WAIT, StartWorker, wait_for

KINDS = ("completed", "ctx.session", "fail", "snooze", "cancel")
FENCES = ("same_worker_id", "other_worker")
WORKERS = ("sync", "async")


# A plain handler under the AsyncWorker has no ctx.session: that kind is the sync worker's.
CASES = [(worker, kind, fence) for worker, kind, fence in itertools.product(WORKERS, KINDS, FENCES)
         if (worker, kind) != ("async", "ctx.session")]  # fmt: skip


@pytest.mark.parametrize(
    ("start_worker", "kind", "fence"),
    CASES,
    ids=["-".join(case) for case in CASES],
    indirect=["start_worker"],
)
def test_a_stale_outcome_never_lands(
    start_worker: StartWorker,
    engine: Engine,
    session_factory: sessionmaker[Session],
    kind: str,
    fence: str,
) -> None:
    writes = Table("writes", MetaData(), Column("run", Integer), Column("worker", String(100)))
    writes.metadata.create_all(engine)
    gates = [threading.Event(), threading.Event()]
    runs: list[int] = []
    registry = Registry()

    @registry.handler("hold")
    def hold(ctx: JobContext) -> str:
        run = len(runs)
        runs.append(ctx.attempt)
        if kind == "ctx.session":
            ctx.session.execute(writes.insert().values(run=run, worker=ctx.worker_id))
        assert gates[run].wait(WAIT)
        if run == 0:  # the stale attempt reports its outcome
            if kind == "fail":
                raise RuntimeError("the stale attempt failed")
            if kind == "snooze":
                raise Snooze(timedelta(0), "the stale attempt asks to run again")
            if kind == "cancel":
                raise Cancel("the stale attempt cancels")
            return "stale"
        return "fresh"

    same = fence == "same_worker_id"
    with session_factory.begin() as session:
        job_id = JobQueue(session).enqueue("hold", max_attempts=3 if same else 1).id

    options = {"concurrency": 1, "maintenance": False}
    run_stale_then_fresh(
        start_worker, session_factory, registry, job_id, gates, runs, same, options
    )
    with session_factory() as session:
        done = JobQueue(session).get(job_id)
        rows = session.execute(select(writes.c.run, writes.c.worker)).all()
    assert (done.status, done.result) == (JobStatus.COMPLETED, "fresh")
    # The stale attempt's ctx.session write was rolled back with its refused completion.
    fresh_id = "w" if same else "fresh"
    assert rows == ([(1, fresh_id)] if kind == "ctx.session" else [])


def run_stale_then_fresh(
    start_worker: StartWorker,
    session_factory: sessionmaker[Session],
    registry: Registry,
    job_id: uuid.UUID,
    gates: list[threading.Event],
    runs: list[int],
    same: bool,
    options: dict[str, Any],
) -> None:
    """Run the job on a stale worker, rescue it, run it on a fresh one, and release the
    stale attempt while the fresh one holds the job."""
    stale_id, fresh_id = ("w", "w") if same else ("stale", "fresh")
    with start_worker(registry, worker_id=stale_id, **options) as stale, released(gates):
        wait_for(lambda: stale.running_jobs == [job_id], what="the stale worker runs the job")
        with session_factory.begin() as session:
            # As if its heartbeat had stopped an hour ago, then a rescue round ran.
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(heartbeat_at=func.statement_timestamp() - timedelta(hours=1))
            )
            queue = JobQueue(session)
            assert queue.recover_stale(timedelta(minutes=1)) == 1
            if not same:
                assert queue.get(job_id).status == JobStatus.FAILED  # its only attempt
                queue.retry(job_id)
        with start_worker(registry, worker_id=fresh_id, **options) as fresh, released(gates):
            wait_for(lambda: len(runs) == 2, what="the fresh worker runs the job")
            with session_factory() as session:
                held = JobQueue(session).get(job_id)
            assert (held.status, held.attempts) == (JobStatus.RUNNING, 2 if same else 1)
            expected = (JobStatus.RUNNING, held.attempts, fresh_id)

            gates[0].set()
            wait_for(lambda: job_id not in stale.running_jobs, what="the stale outcome handled")
            with session_factory() as session:
                job = JobQueue(session).get(job_id)
            assert (job.status, job.attempts, job.worker_id) == expected, "the stale outcome landed"
            counts = stale.stats
            assert (counts.lost, counts.completed, counts.failed) == (1, 0, 0)
            assert (counts.snoozed, counts.cancelled) == (0, 0)

            gates[1].set()
            wait_for(lambda: fresh.stats.completed == 1, what="the fresh worker completes it")


@contextmanager
def released(gates: list[threading.Event]) -> Iterator[None]:
    """On the way out, let every handler return: a failed assertion must not leave a
    worker waiting for its handler through its grace period."""
    try:
        yield
    finally:
        for gate in gates:
            gate.set()
