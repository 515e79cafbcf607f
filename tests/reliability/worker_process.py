"""A worker process for the reliability tests.

Run as ``python -m tests.reliability.worker_process DATABASE_URL [options]``; with
``--asyncio`` it is an :class:`~sqla_jobqueue.AsyncWorker` running the ``async def`` twins
of the handlers. Its handlers:

- ``effect``: sleeps ``data["seconds"]``, waits for the file ``data["gate"]`` when given,
  holds forever on attempt 1 when ``data["hang_first"]``, then records the job in the
  ``effects`` table through ``ctx.session`` (so the effect commits with the completion).
- ``poison``: ends the whole process at once with ``os._exit``;
- ``chaos``: records each execution in ``executions`` (outside the job's transaction, so
  every run counts, including those of a process killed before it completed), sleeps
  ``data["seconds"]``, then records the job in ``effects`` through ``ctx.session``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path

from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, create_engine
from sqlalchemy.dialects.postgresql import UUID

from sqla_jobqueue import AsyncJobContext, AsyncWorker, JobContext, Registry, Worker
from sqla_jobqueue.database import sqlalchemy_url

effects = Table(
    "effects",
    MetaData(),
    Column("job_id", UUID(as_uuid=True), primary_key=True),
    Column("attempt", Integer, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("note", String(50)),
)

executions = Table(
    "executions",
    effects.metadata,
    Column("job_id", UUID(as_uuid=True), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("pid", Integer, nullable=False),
)

# Set by main(): executions are written on connections of their own.
recorder: Engine | None = None


def record_execution(job_id: object, attempt: int) -> None:
    assert recorder is not None
    with recorder.begin() as connection:
        connection.execute(executions.insert().values(job_id=job_id, attempt=attempt,
                                                      pid=os.getpid()))  # fmt: skip


registry = Registry()


@registry.handler("chaos", max_attempts=25)
def chaos(ctx: JobContext) -> None:
    record_execution(ctx.job_id, ctx.attempt)
    time.sleep(float(ctx.data.get("seconds", 0)))
    ctx.session.execute(effects.insert().values(job_id=ctx.job_id, attempt=ctx.attempt,
                                                pid=os.getpid()))  # fmt: skip


@registry.handler("effect", max_attempts=5)
def effect(ctx: JobContext) -> int:
    if ctx.data.get("hang_first") and ctx.attempt == 1:
        time.sleep(3600)
    gate = ctx.data.get("gate")
    if gate:
        while not Path(gate).exists():
            time.sleep(0.01)
    time.sleep(float(ctx.data.get("seconds", 0)))
    ctx.session.execute(effects.insert().values(job_id=ctx.job_id, attempt=ctx.attempt,
                                                pid=os.getpid()))  # fmt: skip
    return os.getpid()


@registry.handler("poison", max_attempts=3)
def poison(ctx: JobContext) -> None:
    os._exit(3)


async_registry = Registry()


@async_registry.handler("effect", max_attempts=5)
async def effect_async(ctx: AsyncJobContext) -> int:
    if ctx.data.get("hang_first") and ctx.attempt == 1:
        await asyncio.sleep(3600)
    gate = ctx.data.get("gate")
    if gate:
        while not Path(gate).exists():
            await asyncio.sleep(0.01)
    await asyncio.sleep(float(ctx.data.get("seconds", 0)))
    await ctx.session.execute(effects.insert().values(job_id=ctx.job_id, attempt=ctx.attempt,
                                                      pid=os.getpid()))  # fmt: skip
    return os.getpid()


@async_registry.handler("chaos", max_attempts=25)
async def chaos_async(ctx: AsyncJobContext) -> None:
    await asyncio.to_thread(record_execution, ctx.job_id, ctx.attempt)
    await asyncio.sleep(float(ctx.data.get("seconds", 0)))
    await ctx.session.execute(effects.insert().values(job_id=ctx.job_id, attempt=ctx.attempt,
                                                      pid=os.getpid()))  # fmt: skip


@async_registry.handler("poison", max_attempts=3)
async def poison_async(ctx: AsyncJobContext) -> None:
    os._exit(3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--heartbeat", type=float, default=0.2)
    parser.add_argument("--stale", type=float, default=5.0)
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument("--poll", type=float, default=0.1)
    parser.add_argument("--asyncio", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {os.getpid()} %(threadName)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    settings = {
        "concurrency": args.concurrency,
        "heartbeat_interval": args.heartbeat,
        "stale_timeout": args.stale,
        "rescue_interval": args.stale / 4,
        "grace_period": args.grace,
        "poll_interval": args.poll,
        "progress_interval": 0.05,
    }
    url = sqlalchemy_url(args.url)
    global recorder
    recorder = create_engine(url, pool_size=args.concurrency)
    if args.asyncio:
        from sqlalchemy.ext.asyncio import create_async_engine

        async def run() -> int:
            engine = create_async_engine(url, pool_size=args.concurrency + 4)
            try:
                return await AsyncWorker(engine, async_registry, **settings).run()
            finally:
                await engine.dispose()

        return asyncio.run(run())
    engine = create_engine(url, pool_size=args.concurrency + 4)
    return Worker(engine, registry, **settings).run()


if __name__ == "__main__":
    sys.exit(main())
