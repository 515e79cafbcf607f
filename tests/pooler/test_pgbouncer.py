"""Workers through a real PgBouncer in transaction mode, LISTEN straight to PostgreSQL.

Six ``sqla-jobqueue worker`` processes with concurrency 20 share a pool of 4 server
connections: every job runs and completes exactly once (each run is recorded outside the
database, see ``handlers.py``), PgBouncer never holds more than 4 server connections, the
rescue duty works through it, and once the queue is empty a new job still wakes an idle
worker (polling once an hour) through the direct LISTEN.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select, text, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import AsyncWorker, Job, JobQueue, JobStatus, Worker
from sqla_jobqueue.listener import PROBE_TIMEOUT
from tests.helpers import wait_for
from tests.pooler.conftest import POOL_SIZE, Bouncer
from tests.pooler.handlers import RUNS_VARIABLE, registry, runs
from tests.reliability.battery import sized

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 6
CONCURRENCY = 20


@pytest.fixture
def runs_directory(tmp_path: Path) -> Path:
    directory = tmp_path / "runs"
    directory.mkdir()
    return directory


@pytest.fixture
def workers(
    pgbouncer: Bouncer, database_url: URL, tmp_path: Path, runs_directory: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    direct = database_url.render_as_string(hide_password=False)
    pooled = pgbouncer.url.render_as_string(hide_password=False)
    environment = {**os.environ, "PYTHONPATH": str(ROOT), RUNS_VARIABLE: str(runs_directory)}
    for n in range(PROCESSES):
        output = (tmp_path / f"worker-{n}.log").open("wb")
        started.append(subprocess.Popen(
            [sys.executable, "-m", "sqla_jobqueue.cli", "worker", "tests.pooler.handlers:registry",
             "--database-url", pooled, "--listen-url", direct, "--no-prepare",
             "--concurrency", str(CONCURRENCY), "--poll-interval", "1h",
             "--heartbeat-interval", "1s", "--stale-timeout", "4s"],
            cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, env=environment,
        ))  # fmt: skip
    yield started
    for process in started:
        process.kill()
        process.wait(10)
    for log in sorted(tmp_path.glob("worker-*.log")):
        print(f"----- {log.name}:\n{log.read_text(errors='replace')[-3000:]}")


def statuses(factory: sessionmaker[Session]) -> dict[str, int]:
    with factory() as session:
        rows = session.execute(select(Job.status, func.count()).group_by(Job.status))
        return {JobStatus(status).value: n for status, n in rows}


def test_workers_through_pgbouncer_complete_every_job_once_within_its_pool(
    pgbouncer: Bouncer, engine: Engine, session_factory: sessionmaker[Session],
    workers: list[subprocess.Popen[bytes]], runs_directory: Path,
) -> None:  # fmt: skip
    jobs = sized(20_000, 100_000)
    with session_factory.begin() as session:
        ids = registry.enqueue_many(JobQueue(session), [{"job_type": "noop"}] * jobs)
        # A job a dead worker was running: the rescue duty, through PgBouncer, returns it.
        dead = JobQueue(session).enqueue("noop")
        session.flush()
        session.execute(
            update(Job).where(Job.id == dead.id).values(
                status=JobStatus.RUNNING, worker_id="dead:1:x", attempts=1,
                heartbeat_at=func.now() - timedelta(hours=1), started_at=func.now(),
            )
        )  # fmt: skip
    peak = 0
    sampling = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not sampling.is_set():
            peak = max(peak, pgbouncer.server_connections())
            sampling.wait(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        wait_for(lambda: statuses(session_factory) == {"completed": jobs + 1},
                 timeout=sized(240, 900), what="every job completed")  # fmt: skip
    finally:
        sampling.set()
        sampler.join()
    ran = runs(runs_directory)
    assert sorted(ran) == sorted(str(job_id) for job_id in [*ids, dead.id])  # each once
    assert 0 < peak <= POOL_SIZE
    assert all(process.poll() is None for process in workers)

    # Idle, polling once an hour: a new job is found through the LISTEN straight to the server.
    with session_factory.begin() as session:
        late: uuid.UUID = JobQueue(session).enqueue("noop").id
    wait_for(lambda: statuses(session_factory) == {"completed": jobs + 2}, timeout=20,
             what="the job enqueued while the workers were idle")  # fmt: skip
    assert runs(runs_directory).count(str(late)) == 1
    with engine.connect() as connection:
        direct_listens = connection.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' "
                 "AND datname = current_database()")
        ).scalar_one()  # fmt: skip
    assert direct_listens == PROCESSES


@pytest.mark.parametrize("kind", ["threads", "asyncio"])
def test_a_listen_through_the_pooler_is_warned_about_and_a_direct_one_is_not(
    pgbouncer: Bouncer, database_url: URL, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sqla_jobqueue")
    pooled = pgbouncer.url.set(drivername="postgresql+psycopg")
    direct = database_url.render_as_string(hide_password=False)
    cases: list[tuple[bool | str, bool]] = [(True, True), (direct, False)]
    for listen, deaf in cases:
        caplog.clear()
        if kind == "threads":
            engine = create_engine(pooled, connect_args={"prepare_threshold": None})
            try:
                with Worker(engine, registry, listen=listen) as worker:
                    waited = _wait_for_the_check(caplog, deaf, worker)
            finally:
                engine.dispose()
        else:

            async def run(listen: bool | str = listen, deaf: bool = deaf) -> float:
                engine = create_async_engine(pooled, connect_args={"prepare_threshold": None})
                try:
                    async with AsyncWorker(engine, registry, listen=listen) as worker:
                        return await asyncio.to_thread(_wait_for_the_check, caplog, deaf, worker)
                finally:
                    await engine.dispose()

            waited = asyncio.run(run())
        warned = [
            r.getMessage() for r in caplog.records if "LISTEN heard nothing" in r.getMessage()
        ]
        assert bool(warned) == deaf, (listen, warned, waited)
        if deaf:
            assert "--listen-url" in warned[0] and "transaction pooler" in warned[0]


def _wait_for_the_check(
    caplog: pytest.LogCaptureFixture, deaf: bool, worker: Worker | AsyncWorker
) -> float:
    """Until the warning is logged (deaf) or the listener heard the worker's notification,
    after which no warning comes (not deaf)."""
    started = time.monotonic()
    while time.monotonic() - started < 3 * PROBE_TIMEOUT:
        if deaf and any("LISTEN heard nothing" in r.getMessage() for r in caplog.records):
            break
        if not deaf and worker.listener is not None and worker.listener.heard.is_set():
            break
        time.sleep(0.05)
    return time.monotonic() - started
