"""Limits kept by real worker processes: four workers with ten slots each, two sync and two
asyncio, never run more jobs of a limited type than its limits allow. Handlers record when
each job ran in a table of their own; the test samples the job table meanwhile."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from sqla_jobqueue import JobQueue
from tests.acceptance.running import base_environment, running_worker, url_text
from tests.helpers import wait_for

WORKER_MODULE = """
import os
import time

import psycopg

from sqla_jobqueue import JobContext, Registry

registry = Registry()
URL = os.environ["DATABASE_URL"].replace("+psycopg", "")


def record(ctx: JobContext, seconds: float) -> None:
    started = time.time()
    time.sleep(seconds)
    with psycopg.connect(URL, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO runs (job_id, job_type, seq, key, started, ended) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (ctx.job_id, ctx.job_type, ctx.data.get("seq"), ctx.data.get("key"),
             started, time.time()),
        )


@registry.handler("export")
def export(ctx: JobContext) -> None:
    record(ctx, 0.2)


@registry.handler("sync")
def sync(ctx: JobContext) -> None:
    record(ctx, 0.05)


@registry.handler("call_api")
def call_api(ctx: JobContext) -> None:
    record(ctx, 0.0)


@registry.handler("asyncio_marker")
async def asyncio_marker(ctx: JobContext) -> None:
    pass
"""

TYPES = "export,sync,call_api"


@contextlib.contextmanager
def four_workers(engine: Engine, database_url: URL, tmp_path: Path) -> Iterator[None]:
    """Two sync workers (``--types`` leaves the async handler out) and two asyncio ones."""
    (tmp_path / "limited_jobs.py").write_text(WORKER_MODULE)
    with engine.begin() as connection:
        connection.execute(text(
            "CREATE TABLE runs (job_id uuid, job_type text, seq int, key text, "
            "started float8, ended float8)"
        ))  # fmt: skip
    env = base_environment(DATABASE_URL=url_text(database_url))
    common = ("--concurrency", "10", "--poll-interval", "0.2s")
    sync = [("--types", TYPES)] * 2
    asyncio: list[tuple[str, ...]] = [()] * 2
    with contextlib.ExitStack() as stack:
        workers = [
            stack.enter_context(
                running_worker("limited_jobs:registry", *common, *extra, env=env, cwd=tmp_path)
            )
            for extra in sync + asyncio
        ]
        yield
    # Stopped (SIGTERM): each finished its jobs and wrote every outcome without an error.
    for worker in workers:
        logged = worker.output()[1]
        assert "database error" not in logged and "Traceback" not in logged, logged[-3000:]


def _runs(engine: Engine, job_type: str) -> list[Any]:
    with engine.connect() as connection:
        query = "SELECT seq, key, started, ended FROM runs WHERE job_type = :t ORDER BY started"
        return list(connection.execute(text(query), {"t": job_type}).all())


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals that overlap at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = running = 0
    for _, change in edges:
        running += change
        most = max(most, running)
    return most


class Sampler:
    """Samples the number of held jobs of a type until stopped; keeps the largest."""

    def __init__(self, engine: Engine, job_type: str) -> None:
        self.most = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(engine, job_type), daemon=True)

    def _run(self, engine: Engine, job_type: str) -> None:
        query = text(
            "SELECT count(*) FROM jobs WHERE job_type = :t AND status IN ('claimed', 'running')"
        )
        with engine.connect() as connection:
            while not self._stop.is_set():
                held = connection.execute(query, {"t": job_type}).scalar_one()
                connection.commit()
                self.most = max(self.most, int(held))
                self.samples += 1

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _finished(engine: Engine, job_type: str, count: int) -> bool:
    with engine.connect() as connection:
        query = "SELECT count(*) FROM jobs WHERE job_type = :t AND status = 'completed'"
        return bool(connection.execute(text(query), {"t": job_type}).scalar_one() == count)


def test_a_type_limit_of_three_holds_across_four_workers_of_ten_slots(
    engine: Engine, database_url: URL, tmp_path: Path
) -> None:
    with Session(engine) as session, session.begin():
        queue = JobQueue(session)
        queue.limit("export", max_running=3)
        for _ in range(45):
            queue.enqueue("export")
    with four_workers(engine, database_url, tmp_path), Sampler(engine, "export") as sampler:
        wait_for(lambda: _finished(engine, "export", 45), what="45 limited jobs run")
    runs = _runs(engine, "export")
    assert len(runs) == 45
    # The handlers never ran more than three at once, and did run three at once.
    assert _most_at_once([(run.started, run.ended) for run in runs]) == 3
    assert sampler.samples > 10
    assert sampler.most <= 3


def test_a_key_limit_of_one_runs_each_key_in_order_and_keys_in_parallel(
    engine: Engine, database_url: URL, tmp_path: Path
) -> None:
    keys = [f"customer:{n}" for n in range(6)]
    with Session(engine) as session, session.begin():
        queue = JobQueue(session)
        queue.limit("sync", max_running_per_key=1)
        for seq in range(10):
            for key in keys:
                queue.enqueue("sync", {"seq": seq, "key": key}, concurrency_key=key)
    with four_workers(engine, database_url, tmp_path):
        wait_for(lambda: _finished(engine, "sync", 60), what="60 keyed jobs run")
    runs = _runs(engine, "sync")
    assert len(runs) == 60
    for key in keys:
        mine = [run for run in runs if run.key == key]
        # Oldest first, one at a time: each run ends before the next of its key starts.
        assert [run.seq for run in mine] == list(range(10)), key
        assert all(a.ended <= b.started for a, b in itertools.pairwise(mine)), key
    assert _most_at_once([(run.started, run.ended) for run in runs]) >= 3


def test_a_rate_limit_holds_over_every_window(
    engine: Engine, database_url: URL, tmp_path: Path
) -> None:
    with Session(engine) as session, session.begin():
        queue = JobQueue(session)
        queue.limit("call_api", rate_limit=10, rate_period=timedelta(seconds=1))
        for _ in range(40):
            queue.enqueue("call_api")
    with four_workers(engine, database_url, tmp_path):
        wait_for(lambda: _finished(engine, "call_api", 40), what="40 rate-limited jobs run")
    with engine.connect() as connection:
        claims = connection.execute(text(
            "SELECT extract(epoch FROM claimed_at)::float8 FROM jobs ORDER BY claimed_at"
        )).scalars().all()  # fmt: skip
    assert len(claims) == 40
    # A bucket of 10 tokens refilled at 10 a second: over any span of T seconds at most
    # 10 + 10 T claims; so 40 claims span at least 3 seconds.
    for i, first in enumerate(claims):
        for j in range(i, len(claims)):
            assert j - i + 1 <= 10 + 10 * (claims[j] - first) + 1e-6, (i, j)
    assert claims[-1] - claims[0] >= 3 - 1e-3
