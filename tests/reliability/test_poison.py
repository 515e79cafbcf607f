"""Poison jobs at 1 % among innocent ones, drained by worker processes with concurrency > 1:
every poison job ends failed after exactly ``max_attempts`` crashes of its own, and no
innocent job is charged for a crash it was merely running beside.

A ``poison`` job ends its process with ``os._exit``; an ``effect`` job records itself in
``effects`` (primary key: the job id) through ``ctx.session``. A supervisor starts a new
process for each one that dies and ages the dead one's heartbeats, as time would.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobQueue, JobStatus
from tests.reliability.battery import sized
from tests.reliability.conftest import Spawn
from tests.reliability.test_chaos import age_heartbeats_of, count
from tests.reliability.worker_process import effects, registry

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("effects_table")]

FAST = ("--heartbeat", "0.2", "--stale", "5")
PROCESSES = 2
CONCURRENCY = 4


def charged(row: Any, enqueued_max_attempts: int) -> int:
    """The attempts a job was charged: a crash beside other jobs gives one back by raising
    ``max_attempts``."""
    return int(row.attempts - (row.max_attempts - enqueued_max_attempts))


def test_poison_jobs_at_one_percent_fail_alone_and_charge_no_innocent_job(
    engine: Engine, session_factory: sessionmaker[Session], spawn: Spawn,
    figures: dict[str, object],
) -> None:  # fmt: skip
    total = sized(300, 2000)
    poisoned = total // 100
    kinds = ["poison"] * poisoned + ["effect"] * (total - poisoned)
    random.Random(14).shuffle(kinds)
    specs = [
        {"job_type": "poison"} if kind == "poison" else
        {"job_type": "effect", "data": {"seconds": 0.02}}
        for kind in kinds
    ]  # fmt: skip
    with session_factory.begin() as session:
        ids = registry.enqueue_many(JobQueue(session), specs)
    poison_ids = {job_id for job_id, kind in zip(ids, kinds, strict=True) if kind == "poison"}

    def drained() -> bool:
        with session_factory() as session:
            counted = session.execute(select(Job.status, func.count()).group_by(Job.status))
            statuses = {status: n for status, n in counted}
        return statuses == {JobStatus.COMPLETED: total - poisoned, JobStatus.FAILED: poisoned}

    started = time.monotonic()
    processes = [spawn("--concurrency", str(CONCURRENCY), *FAST) for _ in range(PROCESSES)]
    crashes = crowded = 0
    deadline = started + sized(240, 1200)
    while not drained():
        assert time.monotonic() < deadline, "not drained in time"
        for index, process in enumerate(processes):
            if process.poll() is None:
                continue
            assert process.returncode == 3, "only a poison job ends a worker"
            crashes += 1
            crowded += age_heartbeats_of(session_factory, process.pid) > 1
            processes[index] = spawn("--concurrency", str(CONCURRENCY), *FAST)
        time.sleep(0.05)
    seconds = time.monotonic() - started
    for process in processes:
        process.kill()

    with session_factory() as session:
        rows = session.execute(
            select(Job.id, Job.status, Job.attempts, Job.max_attempts, Job.crashes)
        ).all()
    poison = [row for row in rows if row.id in poison_ids]
    innocent = [row for row in rows if row.id not in poison_ids]
    figures.update(jobs=total, poison_jobs=poisoned, processes=PROCESSES,
                   concurrency=CONCURRENCY, crashes=crashes, crowded_crashes=crowded,
                   innocent_failed=sum(r.status == JobStatus.FAILED for r in innocent),
                   innocent_attempts_charged=sum(charged(r, 5) - 1 for r in innocent),
                   innocents_run_alone=sum(r.crashes > 0 for r in innocent),
                   poison_attempts_charged=sorted({charged(r, 3) for r in poison}),
                   lost=total - poisoned - count(engine, effects),
                   seconds=round(seconds, 1))  # fmt: skip
    assert {(r.status, charged(r, 3), r.attempts == r.max_attempts) for r in poison} == {
        (JobStatus.FAILED, 3, True)
    }
    assert [r for r in innocent if (r.status, charged(r, 5)) != (JobStatus.COMPLETED, 1)] == []
    assert count(engine, effects) == total - poisoned  # each innocent's effect, once
    # Each poison job crashes its worker three times alone, and at most once beside others.
    assert poisoned * 3 <= crashes <= poisoned * 4
