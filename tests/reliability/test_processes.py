"""Real worker processes, killed, poisoned and stopped: nothing is lost or done twice.

Each test starts ``tests/reliability/worker_process.py`` as separate processes on its own
database. The ``effect`` handler writes one row per job through ``ctx.session``, whose
primary key is the job id: a job whose effect were committed twice would fail, and a lost
job would be missing.
"""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobQueue, JobStatus, Priority
from tests.helpers import wait_for
from tests.reliability.conftest import Spawn
from tests.reliability.worker_process import effects, registry

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("effects_table")]

# A live worker's jobs are never stale within 5 s, however loaded the machine; rescue of a
# dead worker's jobs is driven by backdating their heartbeat (a rescue round every 1.25 s).
FAST = ("--heartbeat", "0.2", "--stale", "5")


def age_heartbeats_of_the_dead(factory: sessionmaker[Session]) -> list[tuple[uuid.UUID, int]]:
    """As if an hour passed since the dead worker's last heartbeat; return what it held.

    Only called while no worker process is alive, so every running job is the dead one's.
    """
    with factory.begin() as session:
        return [
            (row.id, row.attempts)
            for row in session.execute(
                update(Job)
                .where(Job.status == JobStatus.RUNNING)
                .values(heartbeat_at=Job.heartbeat_at - timedelta(hours=1))
                .returning(Job.id, Job.attempts)
            )
        ]


def enqueue(factory: sessionmaker[Session], *jobs: Mapping[str, object]) -> list[uuid.UUID]:
    with factory.begin() as session:
        return registry.enqueue_many(JobQueue(session), list(jobs))


def by_status(factory: sessionmaker[Session]) -> Counter[str]:
    with factory() as session:
        rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    return Counter({JobStatus(status).value: n for status, n in rows})


def effect_rows(engine: Engine) -> list[tuple[uuid.UUID, int]]:
    with engine.connect() as connection:
        rows = connection.execute(select(effects.c.job_id, effects.c.attempt))
        return [(job_id, attempt) for job_id, attempt in rows]


def jobs(factory: sessionmaker[Session], ids: list[uuid.UUID]) -> list[Job]:
    with factory() as session:
        queue = JobQueue(session)
        return [queue.get(job_id) for job_id in ids]


def test_sigkill_mid_job_the_job_is_rescued_and_completed_by_another_worker(
    engine: Engine, session_factory: sessionmaker[Session], spawn: Spawn,
    figures: dict[str, object],
) -> None:  # fmt: skip
    [hanging] = enqueue(
        session_factory, {"job_type": "effect", "data": {"hang_first": True}, "priority": 200}
    )
    others = enqueue(session_factory, *[{"job_type": "effect", "data": {"seconds": 0.01}}] * 40)
    first = spawn("--concurrency", "3", *FAST)
    wait_for(lambda: jobs(session_factory, [hanging])[0].status == JobStatus.RUNNING)
    wait_for(lambda: len(effect_rows(engine)) >= 5, what="some work done before the kill")
    first.send_signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    assert hanging in dict(age_heartbeats_of_the_dead(session_factory))

    spawn("--concurrency", "3", *FAST)
    wait_for(lambda: by_status(session_factory) == {"completed": 41}, timeout=60)
    rows = effect_rows(engine)
    assert sorted(job_id for job_id, _ in rows) == sorted([hanging, *others])  # 0 lost, 0 twice
    rescued = jobs(session_factory, [hanging])[0]
    figures.update(jobs=41, kills=1, lost=41 - len(rows), duplicates=0, rescued_attempts=2)
    assert rescued.attempts == 2
    assert dict(rows)[hanging] == 2


def run_until_drained(
    factory: sessionmaker[Session], spawn: Spawn, concurrency: int, drained: Counter[str]
) -> list[list[uuid.UUID]]:
    """Run one worker process at a time until the jobs' statuses are ``drained``, starting
    a new one after each crash; return what each crashed process was running."""
    crashes: list[list[uuid.UUID]] = []
    for _ in range(8):
        process = spawn("--concurrency", str(concurrency), *FAST)
        wait_for(
            lambda: (
                process.poll() is not None  # noqa: B023
                or by_status(factory) == drained
            ),
            timeout=60,
        )
        if process.poll() is None:
            return crashes
        assert process.returncode == 3, "only the poison job ends a worker"
        crashes.append([job_id for job_id, _ in age_heartbeats_of_the_dead(factory)])
    raise AssertionError(f"still not drained after {len(crashes)} crashes: {by_status(factory)}")


def charged(job: Job, enqueued_max_attempts: int) -> int:
    """The attempts a job was charged: a crash beside other jobs gives one back by raising
    ``max_attempts``, as a snooze does."""
    return job.attempts - (job.max_attempts - enqueued_max_attempts)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_poison_job_fails_after_max_attempts_without_charging_innocent_jobs(
    engine: Engine, session_factory: sessionmaker[Session], spawn: Spawn, concurrency: int,
    figures: dict[str, object],
) -> None:  # fmt: skip
    [poison] = enqueue(session_factory, {"job_type": "poison", "priority": Priority.EXPLICIT})
    # Slow enough to be running beside the poison job when it kills the process.
    innocents = enqueue(session_factory, *[{"job_type": "effect", "data": {"seconds": 0.3}}] * 12)
    crashes = run_until_drained(
        session_factory, spawn, concurrency, Counter({"failed": 1, "completed": 12})
    )
    assert all(poison in held for held in crashes)
    [failed] = jobs(session_factory, [poison])
    # Alone, the poison job crashes nobody else. Beside two slow innocents (concurrency 3)
    # it crashes them once; none of the three is charged for that crash, and each runs
    # alone next. The poison job is charged for each crash of its own: 3.
    crowded = [held for held in crashes if len(held) > 1]
    assert len(crowded) == (1 if concurrency > 1 else 0)
    assert [len(held) for held in crashes if len(held) == 1] == [1, 1, 1]
    assert failed.status is JobStatus.FAILED
    assert (charged(failed, 3), failed.attempts) == (3, failed.max_attempts)
    assert failed.crashes == len(crashes)
    assert "stopped heartbeating" in (failed.last_error or "")
    innocent = jobs(session_factory, innocents)
    figures.update(jobs=13, crashes=len(crashes), crowded_crashes=len(crowded),
                   innocent_attempts_charged=sum(charged(j, 5) - 1 for j in innocent),
                   innocent_failed=sum(j.status == JobStatus.FAILED for j in innocent),
                   poison_attempts_charged=charged(failed, 3))  # fmt: skip
    assert {j.id: (j.status, charged(j, 5)) for j in innocent} == {
        job_id: (JobStatus.COMPLETED, 1) for job_id in innocents
    }
    beside = {job_id for held in crowded for job_id in held if job_id != poison}
    assert {j.id: j.crashes for j in innocent if j.crashes} == dict.fromkeys(beside, 1)
    assert sorted(job_id for job_id, _ in effect_rows(engine)) == sorted(innocents)


def test_a_poison_job_enqueued_with_two_sleepers_fails_alone(
    engine: Engine, session_factory: sessionmaker[Session], spawn: Spawn,
    figures: dict[str, object],
) -> None:  # fmt: skip
    """The smallest case of issue 14: one job that ends the process and two that sleep
    0.2 s, enqueued together with max_attempts 3, one worker with concurrency 3 restarted
    after each exit. The rescue used to return the three together, so the next claim
    regrouped them and all three ended failed with 3 attempts."""
    poison, *sleepers = enqueue(
        session_factory,
        {"job_type": "poison", "max_attempts": 3},
        *[{"job_type": "effect", "data": {"seconds": 0.2}, "max_attempts": 3}] * 2,
    )
    crashes = run_until_drained(session_factory, spawn, 3, Counter({"failed": 1, "completed": 2}))
    [failed] = jobs(session_factory, [poison])
    done = jobs(session_factory, sleepers)
    figures.update(jobs=3, crashes=len(crashes), poison_attempts_charged=charged(failed, 3),
                   innocent_attempts_charged=sum(charged(j, 3) - 1 for j in done),
                   innocent_failed=sum(j.status == JobStatus.FAILED for j in done))  # fmt: skip
    # The first crash, beside the sleepers, is given back to all three; then the poison
    # job runs alone and is charged for its own three.
    assert [sorted(held) == sorted([poison, *sleepers]) for held in crashes] == [
        True, False, False, False
    ]  # fmt: skip
    assert (failed.status, failed.attempts, failed.max_attempts) == (JobStatus.FAILED, 4, 4)
    assert [(j.status, j.attempts, j.max_attempts) for j in done] == [
        (JobStatus.COMPLETED, 2, 4)
    ] * 2
    assert sorted(job_id for job_id, _ in effect_rows(engine)) == sorted(sleepers)


def test_sigterm_finishes_running_jobs_and_leaves_the_rest_pending(
    engine: Engine, session_factory: sessionmaker[Session], spawn: Spawn, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gated = enqueue(
        session_factory, *[{"job_type": "effect", "data": {"gate": str(gate)}, "priority": 200}] * 2
    )
    rest = enqueue(session_factory, *[{"job_type": "effect"}] * 6)
    process = spawn("--concurrency", "2", "--grace", "20", *FAST)
    wait_for(lambda: by_status(session_factory)["running"] == 2, what="both gated jobs running")
    process.send_signal(signal.SIGTERM)
    log = tmp_path / "worker-0.log"
    wait_for(lambda: "SIGTERM: finishing running jobs" in log.read_text(errors="replace"),
             what="the worker to take the signal")  # fmt: skip
    # The running jobs finish only now, freeing their slots: a worker still claiming would
    # take the rest.
    gate.touch()
    assert process.wait(20) == 0  # within the grace period
    assert {(j.status, j.attempts) for j in jobs(session_factory, gated)} == {
        (JobStatus.COMPLETED, 1)
    }
    assert by_status(session_factory) == {"completed": 2, "pending": 6}
    assert {(j.status, j.attempts, j.worker_id) for j in jobs(session_factory, rest)} == {
        (JobStatus.PENDING, 0, None)
    }
    assert len(effect_rows(engine)) == 2


def test_a_second_signal_stops_at_once_and_cut_off_jobs_come_back_through_rescue(
    session_factory: sessionmaker[Session], spawn: Spawn, tmp_path: Path
) -> None:
    never = tmp_path / "never"
    gated = enqueue(session_factory, *[{"job_type": "effect", "data": {"gate": str(never)}}] * 2)
    process = spawn("--concurrency", "2", *FAST)
    wait_for(lambda: by_status(session_factory)["running"] == 2)
    process.send_signal(signal.SIGTERM)
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(0.5)  # graceful: it waits for the gated jobs
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 1
    assert {(j.status, j.attempts) for j in jobs(session_factory, gated)} == {
        (JobStatus.RUNNING, 1)
    }
    with session_factory.begin() as session:  # their heartbeat, an hour later
        session.execute(
            update(Job).values(heartbeat_at=func.statement_timestamp() - timedelta(hours=1))
        )
        assert JobQueue(session).recover_stale(timedelta(minutes=1)) == 2
    assert {(j.status, j.attempts) for j in jobs(session_factory, gated)} == {
        (JobStatus.PENDING, 1)
    }
