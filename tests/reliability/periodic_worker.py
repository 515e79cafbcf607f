"""A worker process whose registry declares a periodic job, for the periodic-jobs tests.

Run as ``python -m tests.reliability.periodic_worker DATABASE_URL [--asyncio]``: a
:class:`~sqla_jobqueue.Worker` (or with ``--asyncio`` an
:class:`~sqla_jobqueue.AsyncWorker`) of the ``tick`` type, scheduled every second with
every missed tick of the last five minutes caught up, each job holding its tick in
``data["tick"]``. The ready ``job_schedules`` table records the ticks.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from datetime import timedelta
from typing import Any

from sqlalchemy import create_engine

from sqla_jobqueue import AsyncJobContext, AsyncWorker, Every, JobContext, Missed, Registry, Worker
from sqla_jobqueue.database import sqlalchemy_url

EVERY_SECOND = Every(
    timedelta(seconds=1), tick_key="tick", missed=Missed.all_within(timedelta(minutes=5))
)

registry = Registry()


@registry.handler("tick", schedule=EVERY_SECOND)
def tick(ctx: JobContext) -> str:
    return str(ctx.data["tick"])


async_registry = Registry()


@async_registry.handler("tick", schedule=EVERY_SECOND)
async def tick_async(ctx: AsyncJobContext) -> str:
    return str(ctx.data["tick"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--asyncio", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {os.getpid()} %(threadName)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    settings: dict[str, Any] = {"concurrency": 2, "poll_interval": 0.1, "heartbeat_interval": 0.2,
                "stale_timeout": 5, "grace_period": 5}  # fmt: skip
    url = sqlalchemy_url(args.url)
    if args.asyncio:
        from sqlalchemy.ext.asyncio import create_async_engine

        async def run() -> int:
            engine = create_async_engine(url, pool_size=6)
            try:
                return await AsyncWorker(engine, async_registry, **settings).run()
            finally:
                await engine.dispose()

        return asyncio.run(run())
    return Worker(create_engine(url, pool_size=6), registry, **settings).run()


if __name__ == "__main__":
    sys.exit(main())
