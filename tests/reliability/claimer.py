"""A claiming process for the reliability tests: claims, completes, and records its claims.

Run as ``python -m tests.reliability.claimer DATABASE_URL NAME --batch B --ready FILE
--gate FILE [--asyncio]``. It connects, creates ``--ready``, waits for ``--gate`` (so that
all claimers start together), then loops until no pending job is left: in one transaction
it claims up to ``B`` jobs with ``JobQueue(session, worker_id=NAME).claim`` (with
``--asyncio``, ``AsyncJobQueue`` on an ``AsyncSession``), starts and completes each, and
records every claim in ``claims`` (job id, claimer). A transaction that fails (a deadlock,
a serialization error, anything) is recorded in ``claim_errors``, and the process then
exits with status 1 once the queue is drained.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, create_engine, func, select
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from sqla_jobqueue import AsyncJobQueue, Job, JobQueue, JobStatus
from sqla_jobqueue.database import sqlalchemy_url

claims = Table(
    "claims",
    MetaData(),
    Column("job_id", UUID(as_uuid=True), nullable=False),
    Column("claimer", String(50), nullable=False),
)
"""One row per claim of a job, written in the claiming transaction (no key: a job claimed
twice shows as two rows)."""

claim_errors = Table(
    "claim_errors",
    claims.metadata,
    Column("id", Integer, primary_key=True),
    Column("claimer", String(50), nullable=False),
    Column("error", String, nullable=False),
)
"""One row per failed claiming transaction, written after its rollback."""

PENDING = select(func.count()).select_from(Job).where(Job.status == JobStatus.PENDING)
GIVE_UP_AFTER = 20
"""Failed transactions after which a claimer stops (the test fails on the first anyway)."""
IDLE_PAUSE = 0.005
"""Pause after an empty claim while pending jobs remain (locked by other claimers)."""


def wait_at_the_gate(ready: Path, gate: Path) -> None:
    ready.touch()
    while not gate.exists():
        time.sleep(0.005)


def report(name: str, claimed: int, transactions: int, errors: int) -> int:
    print(f"{name}: claimed {claimed} in {transactions} transactions, {errors} errors")
    return 1 if errors else 0


def claim_rows(jobs: Sequence[Job], name: str) -> list[dict[str, object]]:
    return [{"job_id": job.id, "claimer": name} for job in jobs]


def error_row(name: str, error: str) -> dict[str, object]:
    return {"claimer": name, "error": error[-2000:]}


def record_error(engine: Engine, name: str) -> None:
    """Print the exception being handled and record it in ``claim_errors``."""
    error = traceback.format_exc()
    print(error, file=sys.stderr)
    with engine.begin() as connection:
        connection.execute(claim_errors.insert(), error_row(name, error))


def claim_until_drained(engine: Engine, name: str, batch: int) -> int:
    factory = sessionmaker(engine)
    claimed = transactions = errors = left = 0
    while errors < GIVE_UP_AFTER:
        try:
            with factory.begin() as session:
                queue = JobQueue(session, worker_id=name)
                jobs = queue.claim(batch_size=batch)
                for job in jobs:
                    queue.start(job)
                    queue.complete(job)
                if jobs:
                    session.execute(claims.insert(), claim_rows(jobs, name))
                else:
                    left = session.execute(PENDING).scalar_one()
        except Exception:
            errors += 1
            record_error(engine, name)
            continue
        transactions += 1
        claimed += len(jobs)
        if not jobs:
            if not left:
                break
            time.sleep(IDLE_PAUSE)
    return report(name, claimed, transactions, errors)


async def claim_until_drained_async(engine: AsyncEngine, name: str, batch: int) -> int:
    factory = async_sessionmaker(engine)
    claimed = transactions = errors = left = 0
    while errors < GIVE_UP_AFTER:
        try:
            async with factory.begin() as session:
                queue = AsyncJobQueue(session, worker_id=name)
                jobs = await queue.claim(batch_size=batch)
                for job in jobs:
                    await queue.start(job)
                    await queue.complete(job)
                if jobs:
                    await session.execute(claims.insert(), claim_rows(jobs, name))
                else:
                    left = (await session.execute(PENDING)).scalar_one()
        except Exception:
            errors += 1
            error = traceback.format_exc()
            print(error, file=sys.stderr)
            async with engine.begin() as connection:
                await connection.execute(claim_errors.insert(), error_row(name, error))
            continue
        transactions += 1
        claimed += len(jobs)
        if not jobs:
            if not left:
                break
            await asyncio.sleep(IDLE_PAUSE)
    return report(name, claimed, transactions, errors)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("name")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    parser.add_argument("--gate", type=Path, required=True)
    parser.add_argument("--asyncio", action="store_true")
    args = parser.parse_args(argv)
    url = sqlalchemy_url(args.url)
    if args.asyncio:

        async def run() -> int:
            engine = create_async_engine(url, pool_size=1)
            try:
                async with engine.connect():
                    pass
                await asyncio.to_thread(wait_at_the_gate, args.ready, args.gate)
                return await claim_until_drained_async(engine, args.name, args.batch)
            finally:
                await engine.dispose()

        return asyncio.run(run())
    engine = create_engine(url, pool_size=1)
    try:
        with engine.connect():
            pass
        wait_at_the_gate(args.ready, args.gate)
        return claim_until_drained(engine, args.name, args.batch)
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
