"""``recover`` and ``prune``: what workers do by themselves, done now."""

from __future__ import annotations

from datetime import timedelta

import click
from sqlalchemy.orm import Session

from ..maintenance.rescuer import DEFAULT_STALE_TIMEOUT
from ..queue import JobQueue
from .engine import open_database
from .exits import EXIT_OK
from .live import age_text
from .options import DatabaseOptions, database_options, json_option
from .output import echo, print_json
from .params import DURATION, POSITIVE_INT

__all__ = ["prune", "recover"]


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
    with open_database(db) as engine, Session(engine) as session, session.begin():
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
def prune(db: DatabaseOptions, as_json: bool, older_than: timedelta, limit: int | None) -> int:
    """Delete finished jobs older than a duration."""
    model = db.job_model()
    with open_database(db) as engine, Session(engine) as session, session.begin():
        count = JobQueue(session, model).prune(older_than, limit=limit)
    if as_json:
        print_json({"deleted": count, "older_than_seconds": older_than.total_seconds()})
    else:
        echo(f"Deleted {count} finished job{_plural(count)} older than {age_text(older_than)}.")
    return EXIT_OK
