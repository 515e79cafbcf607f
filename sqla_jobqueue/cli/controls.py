"""``pause`` and ``resume``: stop and restart the claiming of job types, on every worker."""

from __future__ import annotations

import click
from sqlalchemy.orm import Session

from ..plans import check_job_types
from ..plans.controls import MAX_REASON_LENGTH
from ..queue import JobQueue
from .engine import open_database
from .exits import EXIT_OK, BadInput
from .options import DatabaseOptions, database_options, json_option
from .output import echo, jsonable, print_json, when

__all__ = ["pause", "resume"]


def _job_types(job_types: tuple[str, ...]) -> list[str]:
    """The types named, checked before the database is opened."""
    if not job_types:
        raise BadInput("name at least one job type")
    return check_job_types(list(job_types)) or []


@click.command()
@database_options
@json_option
@click.argument("job_types", metavar="TYPE...", nargs=-1)
@click.option(
    "--reason",
    metavar="TEXT",
    help=f"why, shown by status (at most {MAX_REASON_LENGTH} characters)",
)
def pause(
    db: DatabaseOptions, as_json: bool, job_types: tuple[str, ...], reason: str | None
) -> int:
    """Stop every worker from claiming jobs of these types; running jobs finish."""
    types = _job_types(job_types)
    if reason is not None and len(reason) > MAX_REASON_LENGTH:
        raise BadInput(f"--reason is {len(reason)} characters long; at most {MAX_REASON_LENGTH}")
    model = db.job_model()
    with open_database(db) as engine, Session(engine) as session, session.begin():
        queue = JobQueue(session, model)
        queue.pause(types, reason=reason)
        paused = [entry for entry in queue.paused() if entry.job_type in types]
    if as_json:
        rows = [
            {"job_type": p.job_type, "paused_at": jsonable(p.paused_at), "reason": p.reason}
            for p in paused
        ]
        print_json({"paused": rows})
        return EXIT_OK
    for entry in paused:
        echo(
            f"Paused {entry.job_type} since {when(entry.paused_at)} UTC: no worker claims its "
            f"jobs until `sqla-jobqueue resume {entry.job_type}`."
        )
    return EXIT_OK


@click.command()
@database_options
@json_option
@click.argument("job_types", metavar="TYPE...", nargs=-1)
def resume(db: DatabaseOptions, as_json: bool, job_types: tuple[str, ...]) -> int:
    """Let workers claim jobs of these paused types again."""
    types = _job_types(job_types)
    model = db.job_model()
    with open_database(db) as engine, Session(engine) as session, session.begin():
        resumed = JobQueue(session, model).resume(types)
    if as_json:
        print_json({"resumed": resumed, "not_paused": sorted(set(types) - set(resumed))})
        return EXIT_OK
    for job_type in types:
        echo(f"Resumed {job_type}." if job_type in resumed else f"{job_type} was not paused.")
    return EXIT_OK
