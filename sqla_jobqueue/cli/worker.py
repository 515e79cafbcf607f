"""``worker``: run the handlers of the application's registry until SIGTERM or Ctrl-C.

A registry whose handlers (of ``--types``) include ``async def`` ones is run by the
:class:`~sqla_jobqueue.worker.AsyncWorker` on an asyncio loop (its plain handlers on
threads beside it); any other by the thread-based :class:`~sqla_jobqueue.worker.Worker`.
Every setting is checked (:meth:`sqla_jobqueue.worker.WorkerSettings.check`) before a
database is opened: bad settings never start, nor initialise, the embedded server.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from datetime import timedelta
from typing import Any

import click
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from ..errors import ConfigurationError, JobQueueError
from ..handlers import Registry
from .engine import open_database
from .exits import BadInput
from .imports import archive_model, load_registry
from .options import DatabaseOptions, database_options
from .params import DURATION, NAMES, POSITIVE_INT

__all__ = ["worker"]


@click.command()
@database_options
@click.argument("target", metavar="TARGET")
@click.option(
    "--concurrency", type=POSITIVE_INT, default=4, metavar="N", help="jobs run at once (default 4)"
)
@click.option(
    "--types",
    "job_types",
    type=NAMES,
    metavar="A,B",
    help="only these job types (default: every type in the registry)",
)
@click.option(
    "--batch-size",
    type=POSITIVE_INT,
    metavar="N",
    help="most jobs claimed at once (default: the concurrency, at most 100)",
)
@click.option(
    "--poll-interval",
    type=DURATION,
    metavar="DURATION",
    help="look for due jobs at least this often (LISTEN wakes it sooner)",
)
@click.option(
    "--grace-period",
    type=DURATION,
    metavar="DURATION",
    help="on SIGTERM, how long running jobs may take to finish (default 30s)",
)
@click.option(
    "--heartbeat-interval",
    type=DURATION,
    metavar="DURATION",
    help="how often running jobs' heartbeat is refreshed (default 10s)",
)
@click.option(
    "--stale-timeout",
    type=DURATION,
    metavar="DURATION",
    help="heartbeat age after which a job is rescued (default 1m); at least three "
    "heartbeat intervals, so under 30s needs a shorter --heartbeat-interval",
)
@click.option(
    "--listen-url",
    metavar="URL",
    help="LISTEN for new jobs on a connection straight to PostgreSQL at URL, when the "
    "database URL goes through a transaction pooler (PgBouncer), where LISTEN hears nothing",
)
@click.option(
    "--no-listen",
    is_flag=True,
    help="do not LISTEN: find new jobs by polling every --poll-interval only",
)
@click.option(
    "--no-prepare",
    is_flag=True,
    help="never use server-side prepared statements (PgBouncer before 1.21 in transaction "
    "mode has none)",
)
@click.option(
    "--retention",
    type=DURATION,
    metavar="DURATION",
    help="how long finished jobs are kept before they are deleted (default 7d)",
)
@click.option(
    "--archive",
    metavar="MODULE:CLASS",
    help="your JobArchiveMixin model: finished jobs move into it after --archive-after, "
    "and its days older than --retention are dropped",
)
@click.option(
    "--archive-after",
    type=DURATION,
    metavar="DURATION",
    help="how long finished jobs stay in the job table before they move to --archive (default 1h)",
)
@click.option(
    "--pool-size",
    type=POSITIVE_INT,
    metavar="N",
    help="most connections the worker takes from its pool, LISTEN aside (default: "
    "concurrency + 3, and up to 10 more under load); at least 3, or 2 with --no-maintenance",
)
@click.option(
    "--no-maintenance",
    is_flag=True,
    help="take no part in rescuing stale jobs and pruning old ones (leave it to other "
    "workers): one connection fewer",
)
@click.option(
    "--log-level",
    default="INFO",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    help="default INFO",
)
def worker(
    db: DatabaseOptions,
    target: str,
    concurrency: int,
    job_types: list[str] | None,
    batch_size: int | None,
    poll_interval: timedelta | None,
    grace_period: timedelta | None,
    heartbeat_interval: timedelta | None,
    stale_timeout: timedelta | None,
    listen_url: str | None,
    no_listen: bool,
    no_prepare: bool,
    retention: timedelta | None,
    archive: str | None,
    archive_after: timedelta | None,
    pool_size: int | None,
    no_maintenance: bool,
    log_level: str,
) -> int:
    """Run jobs with the handlers of a registry.

    TARGET is your registry as module:attribute, e.g. myapp.jobs:registry. A registry
    with async def handlers runs on an asyncio loop (plain handlers on threads beside it).
    """
    from ..worker import Worker, WorkerSettings

    registry = load_registry(target)
    unknown = [t for t in job_types or () if t not in registry]
    if unknown:
        raise BadInput(
            f"--types names {', '.join(unknown)}, which {target} has no handler for; "
            f"it handles {', '.join(registry.job_types)}"
        )
    if archive_after is not None and archive is None:
        raise BadInput("--archive-after needs --archive, the model to move finished jobs into")
    durations = {
        "retention": retention,
        "archive_after": archive_after,
        "poll_interval": poll_interval,
        "heartbeat_interval": heartbeat_interval,
        "grace_period": grace_period,
        "stale_timeout": stale_timeout,
    }
    if no_listen and listen_url is not None:
        raise BadInput("--no-listen and --listen-url contradict each other: give one of them")
    pool = _pool(concurrency, pool_size, maintenance=not no_maintenance)
    options: dict[str, Any] = {
        "model": db.job_model(),
        "job_types": job_types,
        "concurrency": concurrency,
        "batch_size": batch_size,
        "listen": False if no_listen else listen_url or True,
        "maintenance": not no_maintenance,
        "archive": None if archive is None else archive_model(archive),
        **{name: value for name, value in durations.items() if value is not None},
    }
    try:
        WorkerSettings.check(registry, **options)
    except ConfigurationError as error:
        raise BadInput(f"--listen-url: {error}") from None
    connect_args = {"prepare_threshold": None} if no_prepare else {}
    logging.basicConfig(
        level=getattr(logging, log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    asynchronous = registry.async_job_types(job_types)
    with open_database(
        db,
        pool_size=pool["pool_size"],
        max_overflow=pool["max_overflow"],
        connect_args=connect_args,
    ) as engine:
        # This process only runs the worker: keep what start-up built (modules, models, the
        # registry) out of the collector's full passes, which otherwise walk it all again
        # every few thousand jobs (about a quarter of a no-op job's CPU, docs/benchmarks.md).
        gc.collect()
        gc.freeze()
        try:
            if asynchronous:
                return _run_async_worker(engine, registry, options, pool, connect_args)
            return Worker(engine, registry, **options).run()
        except JobQueueError as error:
            if isinstance(error.__cause__, DBAPIError):
                # A missing table: told like every other command's, with the --model hint.
                raise error.__cause__ from None
            raise


def _pool(concurrency: int, pool_size: int | None, *, maintenance: bool) -> dict[str, int]:
    """The engine's pool: ``concurrency + 3`` kept, 10 more under load; or exactly
    ``pool_size``, which must leave the worker its rounds, its heartbeats and (unless it
    takes no part in it) its maintenance."""
    if pool_size is None:
        return {"pool_size": concurrency + 3, "max_overflow": 10}
    least = 3 if maintenance else 2
    if pool_size < least:
        raise BadInput(
            f"--pool-size {pool_size} is too small: a worker needs one connection for its "
            f"claims, one for heartbeats{' and one for maintenance' if maintenance else ''}; "
            f"give at least {least}" + ("" if not maintenance else ", or 2 with --no-maintenance")
        )
    return {"pool_size": pool_size, "max_overflow": 0}


def _run_async_worker(
    engine: Engine,
    registry: Registry,
    options: dict[str, Any],
    pool: dict[str, int],
    connect_args: dict[str, Any],
) -> int:
    """Run the registry's async handlers (and its plain ones, on threads) on an
    ``AsyncEngine`` to the database of ``engine``."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from ..worker import AsyncWorker

    async_engine = create_async_engine(
        engine.url, pool_pre_ping=True, **pool, connect_args=connect_args
    )

    async def run() -> int:
        try:
            return await AsyncWorker(async_engine, registry, **options).run()
        finally:
            await async_engine.dispose()

    return asyncio.run(run())
