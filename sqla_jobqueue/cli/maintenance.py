"""``recover`` and ``prune``: what workers do by themselves, done now."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import click
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ..maintenance.base import DUTY_IDLE_TIMEOUT
from ..maintenance.pruner import DEFAULT_PRUNE_BATCH_LIMIT
from ..maintenance.rescuer import DEFAULT_STALE_TIMEOUT
from ..queue import JobQueue
from ..statements.session import bound_waits, gave_up_on_a_lock
from .engine import open_database
from .exits import EXIT_OK, Failure
from .live import age_text
from .options import DatabaseOptions, database_options, json_option
from .output import echo, print_json
from .params import DURATION, POSITIVE_INT

__all__ = ["COMMAND_LOCK_TIMEOUT", "bounded_transaction", "prune", "recover"]

COMMAND_LOCK_TIMEOUT = timedelta(seconds=5)
"""The longest ``recover`` or one transaction of ``prune`` waits for a lock another
transaction holds (an ``ALTER TABLE``, a ``CREATE INDEX``): the command then fails and
says so, rather than wait with every later query on the table queued behind it. Rows that
workers hold are skipped, never waited for."""


def _plural(count: int) -> str:
    return "" if count == 1 else "s"


@click.command()
@database_options
@json_option
@click.option(
    "--timeout",
    type=DURATION,
    default=DEFAULT_STALE_TIMEOUT,
    metavar="DURATION",
    help="no heartbeat for this long (default 1m, the workers' stale timeout)",
)
def recover(db: DatabaseOptions, as_json: bool, timeout: timedelta) -> int:
    """Return held jobs with a stale heartbeat to pending."""
    model = db.job_model()
    with open_database(db) as engine, Session(engine) as session, bounded_transaction(session):
        count = JobQueue(session, model).recover_stale(timeout)
    if as_json:
        print_json({"recovered": count, "timeout_seconds": timeout.total_seconds()})
    else:
        echo(f"Recovered {count} job{_plural(count)} with no heartbeat for {age_text(timeout)}.")
    return EXIT_OK


@click.command()
@database_options
@json_option
@click.option(
    "--older-than",
    type=DURATION,
    required=True,
    metavar="DURATION",
    help="finished longer ago than this, e.g. 7d",
)
@click.option("--limit", type=POSITIVE_INT, metavar="N", help="delete at most N jobs in this run")
@click.option(
    "--batch-size",
    type=POSITIVE_INT,
    default=DEFAULT_PRUNE_BATCH_LIMIT,
    show_default=True,
    metavar="N",
    help="jobs deleted per transaction, oldest first",
)
def prune(
    db: DatabaseOptions,
    as_json: bool,
    older_than: timedelta,
    limit: int | None,
    batch_size: int,
) -> int:
    """Delete finished jobs older than a duration, in short transactions."""
    model = db.job_model()
    count = transactions = 0
    with open_database(db) as engine, Session(engine) as session:
        while limit is None or count < limit:
            chunk = batch_size if limit is None else min(batch_size, limit - count)
            try:
                with bounded_transaction(session):
                    deleted = JobQueue(session, model).prune(older_than, limit=chunk)
            except Failure as failure:
                raise Failure(f"{failure} ({count} deleted before it)") from None
            count += deleted
            transactions += 1
            if deleted < chunk:
                break
    if as_json:
        print_json(
            {
                "deleted": count,
                "transactions": transactions,
                "older_than_seconds": older_than.total_seconds(),
            }
        )
    else:
        echo(
            f"Deleted {count} finished job{_plural(count)} older than {age_text(older_than)} "
            f"in {transactions} transaction{_plural(transactions)}."
        )
    return EXIT_OK


@contextmanager
def bounded_transaction(session: Session) -> Iterator[None]:
    """A transaction of ``session`` that waits at most :data:`COMMAND_LOCK_TIMEOUT` for a
    lock; past it, a :class:`Failure` that says what held it up."""
    try:
        with session.begin():
            session.execute(*bound_waits(COMMAND_LOCK_TIMEOUT, DUTY_IDLE_TIMEOUT))
            yield
    except DBAPIError as error:
        if not gave_up_on_a_lock(error):
            raise
        raise Failure(
            f"gave up after waiting {age_text(COMMAND_LOCK_TIMEOUT)} for a lock on the job "
            "table that another transaction holds (a migration, an index build?); nothing "
            "of this transaction was written: run the command again once it is done"
        ) from None
