"""Jobs that run after other jobs (``depends_on``).

A job that depends on others is ``waiting`` until they have all completed, then
``pending``; when one of them fails or is cancelled it ends ``cancelled``, saying which,
and so do the jobs that depend on it in turn. The order is checked on the database's own
clock: a job starts after everything it depends on completed.
"""

from __future__ import annotations

import itertools
import re
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from sqla_jobqueue import Job, JobQueue, JobStatus
from sqla_jobqueue.errors import InvalidJobError
from sqla_jobqueue.maintenance import Settler
from tests.acceptance.running import base_environment, running_worker, url_text
from tests.helpers import wait_for
from tests.integration.executors import Executor

WORKER_MODULE = """
import time

from sqla_jobqueue import JobContext, Registry

registry = Registry()


@registry.handler("step")
def step(ctx: JobContext) -> None:
    time.sleep(ctx.data.get("seconds", 0.05))


@registry.handler("broken")
def broken(ctx: JobContext) -> None:
    raise RuntimeError("broken on purpose")
"""


def rows(engine: Engine, ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    with engine.connect() as connection:
        found = connection.execute(
            text(
                "SELECT id, status, started_at, completed_at, last_error, depends_on "
                "FROM jobs WHERE id = ANY(:ids)"
            ),
            {"ids": ids},
        )
        return {row.id: row for row in found}


def finish(engine: Engine, job_id: uuid.UUID, how: str = "complete") -> None:
    """Claim one job and end it (``complete`` or ``fail`` for good), as a worker would."""
    with Session(engine) as session, session.begin():
        queue = JobQueue(session, worker_id="finisher")
        (claimed,) = queue.claim(batch_size=1)
        assert claimed.id == job_id, (claimed.id, job_id)
        if how == "complete":
            queue.complete(claimed)
        else:
            session.execute(
                text("UPDATE jobs SET max_attempts = attempts WHERE id = :id"), {"id": job_id}
            )
            queue.fail(claimed, "it broke")


def test_a_job_waits_until_everything_it_depends_on_completed(
    executor: Executor, engine: Engine
) -> None:
    with executor.begin() as queue:
        first = queue.enqueue("step", priority=1)
        second = queue.enqueue("step", priority=1)
        both = queue.enqueue("step", depends_on=[first, second.id], priority=150)
        assert (both.status, both.depends_on) == (JobStatus.WAITING, [first.id, second.id])
    # The waiting job has the highest priority, yet it is not claimable.
    finish(engine, first.id)
    assert rows(engine, [both.id])[both.id].status == "waiting"
    finish(engine, second.id)
    assert rows(engine, [both.id])[both.id].status == "pending"
    with executor.begin() as queue:
        assert queue.stats().counts["step"] == {"pending": 1, "completed": 2}


def test_depending_only_on_completed_jobs_is_pending_at_once(
    executor: Executor, engine: Engine
) -> None:
    with executor.begin() as queue:
        first = queue.enqueue("step")
    finish(engine, first.id)
    with executor.begin() as queue:
        after = queue.enqueue("step", depends_on=[first.id, first.id])
        assert (after.status, after.depends_on) == (JobStatus.PENDING, [first.id])


def test_a_failed_or_cancelled_dependency_cancels_the_jobs_after_it_in_turn(
    executor: Executor, engine: Engine
) -> None:
    with executor.begin() as queue:
        parent = queue.enqueue("step")
        child = queue.enqueue("step", depends_on=[parent])
        grandchild = queue.enqueue("step", depends_on=[child])
        other = queue.enqueue("step")
        after_other = queue.enqueue("step", depends_on=[other])
    finish(engine, parent.id, "fail")
    found = rows(engine, [child.id, grandchild.id])
    assert found[child.id].status == found[grandchild.id].status == "cancelled"
    assert found[child.id].last_error == (
        f"cancelled: it depends on job {parent.id}, which ended failed"
    )
    assert found[grandchild.id].last_error == (
        f"cancelled: it depends on job {child.id}, which ended cancelled"
    )
    assert found[child.id].completed_at is not None
    with executor.begin() as queue:
        queue.cancel(other.id)
    assert rows(engine, [after_other.id])[after_other.id].last_error == (
        f"cancelled: it depends on job {other.id}, which ended cancelled"
    )


def test_a_waiting_job_can_be_cancelled_and_waited_for(executor: Executor) -> None:
    with executor.begin() as queue:
        parent = queue.enqueue("step")
        child = queue.enqueue("step", depends_on=[parent])
    with executor.begin() as queue:
        assert queue.cancel(child.id).status == JobStatus.CANCELLED
    with executor.begin() as queue:
        assert queue.wait(child.id, timeout=0).status == JobStatus.CANCELLED
        assert queue.get(parent.id).status == JobStatus.PENDING


@pytest.mark.parametrize(
    ("depends_on", "message"),
    [
        ([], "depends_on is empty"),
        ("not-a-list", "depends_on must be a list of jobs or job ids, got str"),
        ([uuid.uuid4()], "which does not exist (or is not committed yet); nothing was enqueued"),
        (["nope"], "'nope' is not a job id"),
        ([uuid.uuid4() for _ in range(101)], "depends_on names 101 jobs; at most 100"),
    ],
)
def test_a_job_that_could_never_run_is_refused(
    executor: Executor, engine: Engine, depends_on: Any, message: str
) -> None:
    with executor.begin() as queue, pytest.raises(InvalidJobError, match=re.escape(message)):
        queue.enqueue("step", depends_on=depends_on)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM jobs")).scalar_one() == 0


def test_depending_on_a_job_that_failed_or_with_a_unique_key_is_refused(
    executor: Executor, engine: Engine
) -> None:
    with executor.begin() as queue:
        parent = queue.enqueue("step")
    finish(engine, parent.id, "fail")
    with executor.begin() as queue, pytest.raises(InvalidJobError, match="which ended failed"):
        queue.enqueue("step", depends_on=[parent.id])
    with executor.begin() as queue, pytest.raises(InvalidJobError, match="unique_key"):
        queue.enqueue("step", depends_on=[parent.id], unique_key="k")
    assert set(rows(engine, [parent.id])) == {parent.id}


def test_the_last_two_dependencies_finishing_at_once_release_the_job(engine: Engine) -> None:
    """Two transactions each complete one of a job's two dependencies, the second before
    the first commits: the second's settlement waits for the first's commit and then sees
    both completed, so the job is pending without the settling duty."""
    with Session(engine) as session, session.begin():
        queue = JobQueue(session)
        parents = [queue.enqueue("step").id for _ in range(2)]
        child = queue.enqueue("step", depends_on=parents).id
    with Session(engine) as session, session.begin():
        claimed = {j.id: j.attempts for j in JobQueue(session, worker_id="w").claim(None, 2)}
    assert set(claimed) == set(parents)
    first, second = parents
    finished = threading.Event()

    def complete_second() -> None:
        with Session(engine) as other, other.begin():
            JobQueue(other, worker_id="w").complete(second, attempt=claimed[second])
        finished.set()

    with Session(engine) as session, session.begin():
        JobQueue(session, worker_id="w").complete(first, attempt=claimed[first])
        thread = threading.Thread(target=complete_second)
        thread.start()

        def settling_waits() -> bool:
            with engine.connect() as connection:
                query = text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                )
                return bool(connection.execute(query).scalar_one())

        wait_for(lambda: finished.is_set() or settling_waits(), what="the second settlement")
    thread.join(30)
    assert finished.is_set()
    assert rows(engine, [child])[child].status == "pending"


def test_the_settler_releases_and_cancels_what_a_race_left_waiting(engine: Engine) -> None:
    """Two transactions that finish a job's last two dependencies at once each see the
    other still running; the settling duty then settles the job. The race is staged by
    writing the rows as it leaves them."""
    with Session(engine) as session, session.begin():
        queue = JobQueue(session)
        done = [queue.enqueue("step").id for _ in range(2)]
        gone = queue.enqueue("step").id
        released = queue.enqueue("step", depends_on=done).id
        doomed = queue.enqueue("step", depends_on=[gone]).id
        session.execute(
            text("UPDATE jobs SET status = 'completed', completed_at = now() WHERE id = ANY(:d)"),
            {"d": done},
        )
        session.execute(text("DELETE FROM jobs WHERE id = :id"), {"id": gone})
        # The trigger settled `released` already; put it back as the race leaves it.
        session.execute(text("UPDATE jobs SET status = 'waiting' WHERE id = :id"), {"id": released})
    assert Settler(Job).run_once(engine) == 2
    found = rows(engine, [released, doomed])
    assert found[released].status == "pending"
    assert found[doomed].status == "cancelled"
    assert (
        found[doomed].last_error == f"cancelled: it depends on job {gone}, which no longer exists"
    )
    assert Settler(Job).run_once(engine) == 0


def test_chains_and_fan_ins_run_in_order_on_worker_processes(
    executor: Executor, engine: Engine, database_url: URL, tmp_path: Path
) -> None:
    """Two worker processes: a chain of five runs one after the other, a fan-in runs after
    all of its five, a job after a broken one is cancelled with the jobs after it."""
    with executor.begin() as queue:
        chain = [queue.enqueue("step")]
        for _ in range(4):
            chain.append(queue.enqueue("step", depends_on=[chain[-1]]))
        fan = [queue.enqueue("step", {"seconds": 0.05 * n}) for n in range(5)]
        fan_in = queue.enqueue("step", depends_on=fan)
        broken = queue.enqueue("broken", max_attempts=1)
        after_broken = queue.enqueue("step", depends_on=[broken, chain[0]])
        last = queue.enqueue("step", depends_on=[after_broken, fan_in])
    ids = [job.id for job in (*chain, *fan, fan_in, broken, after_broken, last)]
    (tmp_path / "ordered_jobs.py").write_text(WORKER_MODULE)
    env = base_environment(DATABASE_URL=url_text(database_url))

    def settled() -> bool:
        return all(
            row.status in ("completed", "failed", "cancelled") for row in rows(engine, ids).values()
        )

    with (
        running_worker("ordered_jobs:registry", "--concurrency", "4", env=env, cwd=tmp_path),
        running_worker("ordered_jobs:registry", "--concurrency", "4", env=env, cwd=tmp_path),
    ):
        wait_for(settled, timeout=60, what="every job finished")
    found = rows(engine, ids)
    for before, after in itertools.pairwise(chain):
        assert found[after.id].started_at >= found[before.id].completed_at
    assert all(found[job.id].status == "completed" for job in (*chain, *fan, fan_in))
    assert found[fan_in.id].started_at >= max(found[job.id].completed_at for job in fan)
    assert found[broken.id].status == "failed"
    assert found[after_broken.id].status == found[last.id].status == "cancelled"
    assert found[last.id].started_at is None
    assert str(broken.id) in found[after_broken.id].last_error
