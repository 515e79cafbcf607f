"""A worker on a database whose default isolation is SERIALIZABLE: its handlers' sessions
and its own connections run at READ COMMITTED, so a completion does not fail because a
heartbeat touched the job's row."""

from __future__ import annotations

import asyncio
import threading

from sqlalchemy import Engine, select, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import AsyncJobContext, Job, JobContext, JobQueue, JobStatus, Registry
from tests.helpers import WAIT, StartWorker, wait_for


def heartbeat_of(factory: sessionmaker[Session], job_id: object) -> object:
    with factory() as session:
        return session.execute(select(Job.heartbeat_at).where(Job.id == job_id)).scalar_one()


def test_a_session_completion_survives_a_heartbeat_under_a_serializable_default(
    start_worker: StartWorker,
    engine: Engine,
    database_url: URL,
    session_factory: sessionmaker[Session],
) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'ALTER DATABASE "{database_url.database}" '
                                "SET default_transaction_isolation = 'serializable'"))  # fmt: skip
    beaten = threading.Event()
    registry = Registry()
    if start_worker.kind == "sync":

        @registry.handler("report", max_attempts=1)
        def report(ctx: JobContext) -> int:
            found = ctx.session.execute(text("SHOW transaction_isolation")).scalar_one()
            ctx.session.execute(select(Job.attempts).where(Job.id == ctx.job_id))  # a snapshot
            assert beaten.wait(WAIT)  # the job's row was updated after this snapshot
            return 1 if found == "read committed" else 0

    else:

        @registry.handler("report", max_attempts=1)
        async def report_async(ctx: AsyncJobContext) -> int:
            found = (await ctx.session.execute(text("SHOW transaction_isolation"))).scalar_one()
            await ctx.session.execute(select(Job.attempts).where(Job.id == ctx.job_id))
            assert await asyncio.to_thread(beaten.wait, WAIT)
            return 1 if found == "read committed" else 0

    with session_factory.begin() as session:
        job_id = registry.enqueue(JobQueue(session), "report").id
    # An engine of its own: its connections are new, and take the database's new default.
    with start_worker(registry, engine_options={}) as worker:
        wait_for(lambda: worker.running_jobs == [job_id], what="the job to run")
        first = heartbeat_of(session_factory, job_id)
        wait_for(lambda: heartbeat_of(session_factory, job_id) != first, what="a heartbeat")
        beaten.set()
        wait_for(lambda: job_id not in worker.running_jobs, what="the outcome written")
        stats = worker.stats
    with session_factory() as session:
        job = JobQueue(session).get(job_id)
    assert (job.status, job.result, job.last_error) == (JobStatus.COMPLETED, 1, None)
    assert (stats.completed, stats.failed) == (1, 0)
