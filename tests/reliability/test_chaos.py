"""Random SIGKILLs among worker processes: nothing is lost, no effect happens twice, and no
job runs again unless it was in flight in a killed process.

Every run of a ``chaos`` job is recorded in ``executions`` outside the job's transaction; its
effect goes through ``ctx.session`` into ``effects``, whose primary key is the job id.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobQueue, JobStatus
from tests.helpers import wait_for
from tests.reliability.battery import sized
from tests.reliability.conftest import Spawn
from tests.reliability.worker_process import effects, executions, registry

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("effects_table")]

FAST = ("--heartbeat", "0.2", "--stale", "5")


def count(engine: Engine, table: object) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def age_heartbeats_of(factory: sessionmaker[Session], pid: int) -> int:
    """As if the heartbeat of the jobs process ``pid`` held were an hour old; how many."""
    with factory.begin() as session:
        held = session.execute(
            update(Job)
            .where(Job.status == JobStatus.RUNNING, Job.worker_id.like(f"%:{pid}:%"))
            .values(heartbeat_at=Job.heartbeat_at - timedelta(hours=1))
            .returning(Job.id)
        )
        return len(held.all())


def test_random_sigkills_lose_nothing_and_rerun_only_what_was_in_flight(
    engine: Engine,
    session_factory: sessionmaker[Session],
    spawn: Spawn,
    figures: dict[str, object],
) -> None:
    seed = int(os.environ.get("SQLA_JOBQUEUE_CHAOS_SEED", "0")) or random.randrange(1, 10**6)
    chance = random.Random(seed)
    jobs, kills, processes = sized(300, 5000), sized(6, 40), sized(3, 4)
    with session_factory.begin() as session:
        ids: list[uuid.UUID] = registry.enqueue_many(
            JobQueue(session),
            [{"job_type": "chaos", "data": {"seconds": chance.uniform(0.005, 0.05)}}
             for _ in range(jobs)],
        )  # fmt: skip
    started = time.monotonic()
    workers = [spawn("--concurrency", "4", *FAST) for _ in range(processes)]
    in_flight = 0
    for kill in range(kills):
        # Spread the kills over the run: each waits for its share of the jobs to be done.
        share = (kill + 1) * jobs // (kills + 2)
        wait_for(lambda: count(engine, effects) >= share, timeout=120,  # noqa: B023
                 what=f"{share} effects before kill {kill + 1}")  # fmt: skip
        victim = chance.randrange(processes)
        process = workers[victim]
        process.kill()
        process.wait(10)
        in_flight += age_heartbeats_of(session_factory, process.pid)
        workers[victim] = spawn("--concurrency", "4", *FAST)

    def completed() -> bool:
        with session_factory() as session:
            return JobQueue(session).stats().counts == {"chaos": {"completed": jobs}}

    wait_for(completed, timeout=sized(120, 1200), what="every job completed")
    seconds = time.monotonic() - started
    with engine.connect() as connection:
        done = connection.execute(select(effects.c.job_id)).scalars().all()
        runs = connection.execute(select(executions.c.job_id)).scalars().all()
    duplicates = len(runs) - len(set(runs))
    lost = len(set(ids) - set(done))
    figures.update(jobs=jobs, processes=processes, kills=kills, seed=seed,
                   in_flight_at_kills=in_flight, executions=len(runs), duplicates=duplicates,
                   lost=lost, seconds=round(seconds, 1))  # fmt: skip
    assert sorted(done) == sorted(ids), "every job's effect exactly once"
    assert set(runs) == set(ids)
    assert lost == 0
    assert duplicates <= in_flight, f"seed {seed}: more re-runs than jobs in flight at kills"
