"""Concurrent claiming: many connections, every job claimed exactly once, on both
executors (``JobQueue`` on a ``Session``, ``AsyncJobQueue`` on an ``AsyncSession``)."""

from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import Engine, text

from tests.integration.executors import Executor

JOBS = 5_000
CLAIMERS = 8


def test_each_job_is_claimed_exactly_once_by_eight_connections(
    executor: Executor, engine: Engine
) -> None:
    with executor.begin() as queue:
        queue.enqueue_many(
            [{"job_type": "t", "data": {"n": n}, "priority": n % 3} for n in range(JOBS)]
        )
    claimed: dict[str, list[str]] = {}
    start = threading.Barrier(CLAIMERS)
    errors: list[BaseException] = []

    def claimer(name: str) -> None:
        mine: list[str] = []
        try:
            start.wait()
            while True:
                with executor.begin(worker_id=name) as queue:
                    batch = queue.claim(batch_size=25)
                    mine.extend(str(job.id) for job in batch)
                if not batch:
                    break
        except BaseException as exc:  # reported below, with the thread's name
            errors.append(exc)
        claimed[name] = mine

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(CLAIMERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    counts = Counter(job for jobs in claimed.values() for job in jobs)
    assert len(counts) == JOBS
    assert max(counts.values()) == 1
    assert sum(1 for jobs in claimed.values() if jobs) > 1, "claims should spread over workers"
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT worker_id, count(*) FROM jobs WHERE status = 'claimed' GROUP BY 1")
        ).all()
    assert {worker: n for worker, n in rows} == {
        name: len(jobs) for name, jobs in claimed.items() if jobs
    }
