"""Workers that stall or lose their connections: a frozen worker's jobs are rescued and
completed elsewhere and its late writes are all refused; terminated connections, the
LISTEN one included, cost nothing."""

from __future__ import annotations

import signal
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobQueue, JobStatus
from tests.helpers import wait_for
from tests.reliability.battery import sized
from tests.reliability.conftest import Spawn
from tests.reliability.worker_process import effects, registry

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("effects_table")]

FAST = ("--heartbeat", "0.2", "--stale", "5")


def statuses(factory: sessionmaker[Session], ids: list[uuid.UUID]) -> list[tuple[str, int]]:
    with factory() as session:
        queue = JobQueue(session)
        return sorted(
            (queue.get(job_id).status.value, queue.get(job_id).attempts) for job_id in ids
        )


def test_a_frozen_workers_jobs_are_completed_elsewhere_and_its_late_writes_refused(
    engine: Engine,
    session_factory: sessionmaker[Session],
    spawn: Spawn,
    tmp_path: Path,
    figures: dict[str, object],
) -> None:
    gate = tmp_path / "gate"
    with session_factory.begin() as session:
        ids = registry.enqueue_many(
            JobQueue(session), [{"job_type": "effect", "data": {"gate": str(gate)}}] * 2
        )
    frozen = spawn("--concurrency", "2", *FAST)
    wait_for(lambda: statuses(session_factory, ids) == [("running", 1)] * 2, what="both running")
    frozen.send_signal(signal.SIGSTOP)
    try:
        with session_factory.begin() as session:  # its heartbeats, an hour late
            session.execute(
                update(Job)
                .where(Job.id.in_(ids))
                .values(heartbeat_at=Job.heartbeat_at - timedelta(hours=1))
            )
        gate.touch()
        spawn("--concurrency", "2", *FAST)
        wait_for(lambda: statuses(session_factory, ids) == [("completed", 2)] * 2,
                 timeout=60, what="both completed by the second worker")  # fmt: skip
    finally:
        frozen.send_signal(signal.SIGCONT)
    # Thawed, the first worker finishes its two handlers: their completions (and the effects
    # written in the same transactions) are refused, and it says so.
    log = tmp_path / "worker-0.log"
    wait_for(lambda: log.read_text(errors="replace").count("no longer holds the job") == 2,
             what="both late outcomes refused")  # fmt: skip
    frozen.send_signal(signal.SIGTERM)
    assert frozen.wait(30) == 0
    with engine.connect() as connection:
        rows = connection.execute(select(effects.c.job_id, effects.c.attempt)).all()
    figures.update(jobs=2, stalls=1, late_writes_refused=2, duplicates=len(rows) - 2, lost=0)
    assert sorted(rows) == sorted((job_id, 2) for job_id in ids)
    assert "0 completed, 0 failed, 0 snoozed, 0 cancelled, 2 lost" in log.read_text()


def terminate_worker_backends(engine: Engine) -> int:
    """End every other session on this database (the workers', LISTEN included)."""
    with engine.connect() as connection:
        ended = connection.execute(
            text(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"
            )
        ).scalar_one()
    engine.dispose()
    return int(ended)


def test_terminated_connections_lose_nothing_and_listen_comes_back(
    engine: Engine,
    session_factory: sessionmaker[Session],
    spawn: Spawn,
    figures: dict[str, object],
) -> None:
    jobs, rounds = sized(200, 3000), sized(5, 30)
    with session_factory.begin() as session:
        ids = registry.enqueue_many(
            JobQueue(session), [{"job_type": "effect", "data": {"seconds": 0.01}}] * jobs
        )
    # Two workers poll often: a handler whose ctx.session was terminated fails its attempt,
    # and the retry, due after its backoff, is found by polling. The third polls hourly:
    # once the others are gone, only its LISTEN, reconnected, can wake it.
    workers = [spawn("--concurrency", "4", "--poll", "0.2", *FAST) for _ in range(2)]
    listening = spawn("--concurrency", "4", "--poll", "3600", *FAST)

    def done() -> int:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(effects)).scalar_one())

    started = time.monotonic()
    terminated = 0
    for round_ in range(rounds):
        share = (round_ + 1) * jobs // (rounds + 1)
        wait_for(lambda: done() >= share, timeout=60, what=f"{share} done")  # noqa: B023
        terminated += terminate_worker_backends(engine)
    wait_for(lambda: done() == jobs, timeout=sized(120, 600), what="every job done")
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    with session_factory.begin() as session:
        late = registry.enqueue(JobQueue(session), "effect").id
    wait_for(lambda: done() == jobs + 1, timeout=30, what="the job enqueued after the terminations")
    assert listening.poll() is None, "the listening worker survived"
    with engine.connect() as connection:
        effect_ids = connection.execute(select(effects.c.job_id)).scalars().all()
    with session_factory() as session:
        counts = JobQueue(session).stats().counts
    figures.update(jobs=jobs + 1, terminations=rounds, connections_terminated=terminated,
                   lost=len({*ids, late} - set(effect_ids)), duplicates=0,
                   seconds=round(time.monotonic() - started, 1))  # fmt: skip
    assert sorted(effect_ids) == sorted([*ids, late])
    assert counts == {"effect": {JobStatus.COMPLETED.value: jobs + 1}}
