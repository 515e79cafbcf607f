"""Pausing job types: no claim takes their jobs until they are resumed; running jobs finish."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from sqla_jobqueue import JobStatus
from sqla_jobqueue.errors import InvalidJobError
from tests.acceptance.running import base_environment, run_cli, running_worker, url_text
from tests.helpers import wait_for
from tests.integration.executors import Executor

WORKER_MODULE = """
import time

from sqla_jobqueue import JobContext, Registry

registry = Registry()


@registry.handler("slow")
def slow(ctx: JobContext) -> None:
    time.sleep(0.5)


@registry.handler("fast")
def fast(ctx: JobContext) -> None:
    pass
"""


def test_a_paused_type_is_passed_over_by_every_claim_until_resumed(
    executor: Executor, engine: Engine
) -> None:
    with executor.begin() as queue:
        paused = queue.enqueue("report", priority=150).id
        other = queue.enqueue("email").id
        assert queue.pause(["report", "export"], reason="upstream down") == ["export", "report"]
    with executor.begin() as queue:
        worker = executor.beside(queue, worker_id="w1")
        assert [job.id for job in worker.claim(batch_size=10)] == [other]
        assert worker.claim(["report"]) == []
        with engine.connect() as connection:
            claimed = connection.execute(text("SELECT * FROM claim_job_batch('sql', NULL, 10)"))
            assert claimed.all() == []
        listed = {entry.job_type: entry for entry in queue.paused()}
        assert set(listed) == {"export", "report"}
        assert listed["report"].reason == "upstream down"
        since = listed["report"].paused_at
    with executor.begin() as queue:
        # Pausing again keeps the time it was first paused, with the new reason.
        queue.pause(["report"], reason="still down")
        (again,) = [entry for entry in queue.paused() if entry.job_type == "report"]
        assert (again.paused_at, again.reason) == (since, "still down")
        assert queue.resume(["report", "never-paused"]) == ["report"]
        assert [entry.job_type for entry in queue.paused()] == ["export"]
    with executor.begin() as queue:
        worker = executor.beside(queue, worker_id="w1")
        assert [job.id for job in worker.claim()] == [paused]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda q: q.pause("report"), "pause takes a list of job types, not the string 'report'"),
        (lambda q: q.pause([]), "pause needs at least one job type"),
        (lambda q: q.resume([]), "resume needs at least one job type"),
        (lambda q: q.pause(["x" * 51]), "job_type"),
        (lambda q: q.pause(["report"], reason="r" * 501), "reason"),
    ],
)
def test_bad_pauses_are_refused_and_write_nothing(
    executor: Executor, engine: Engine, call: Any, message: str
) -> None:
    with executor.begin() as queue, pytest.raises(InvalidJobError, match=re.escape(message)):
        call(queue)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM jobs_controls")).scalar_one() == 0


def test_worker_processes_finish_what_runs_and_claim_nothing_more_of_a_paused_type(
    executor: Executor, engine: Engine, database_url: URL, tmp_path: Path
) -> None:
    (tmp_path / "paused_jobs.py").write_text(WORKER_MODULE)
    env = base_environment(DATABASE_URL=url_text(database_url))
    with executor.begin() as queue:
        # 40 jobs of 0.5 s on 4 slots: 5 s of work, far more than the pause takes.
        slow = [queue.enqueue("slow").id for _ in range(40)]

    def count(status: str, job_type: str) -> int:
        with engine.connect() as connection:
            query = text("SELECT count(*) FROM jobs WHERE status = :s AND job_type = :t")
            return int(connection.execute(query, {"s": status, "t": job_type}).scalar_one())

    def clock() -> Any:
        with engine.connect() as connection:
            return connection.execute(text("SELECT clock_timestamp()")).scalar_one()

    workers = [
        running_worker("paused_jobs:registry", "--concurrency", "2", env=env, cwd=tmp_path)
        for _ in range(2)
    ]
    with workers[0], workers[1]:
        wait_for(lambda: count("running", "slow") > 0, what="slow jobs running")
        with executor.begin() as queue:
            queue.pause(["slow"], reason="test")
        paused_at = clock()
        with executor.begin() as queue:
            fast = [queue.enqueue("fast").id for _ in range(20)]
        wait_for(lambda: count("completed", "fast") == 20, what="fast jobs run meanwhile")
        wait_for(lambda: count("running", "slow") == 0, what="running slow jobs finish")
        with engine.connect() as connection:
            late = connection.execute(
                text("SELECT count(*) FROM jobs WHERE job_type = 'slow' AND claimed_at > :t"),
                {"t": paused_at},
            ).scalar_one()
        assert late == 0
        left = count("pending", "slow")
        assert 0 < left < len(slow)
        assert run_cli("resume", "slow", env=env).returncode == 0
        wait_for(lambda: count("completed", "slow") == len(slow), what="slow jobs resume")
    with executor.begin() as queue:
        assert all(queue.get(job_id).status == JobStatus.COMPLETED for job_id in fast)
