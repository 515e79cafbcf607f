"""``enqueue``, ``list``, ``show``, ``cancel`` and ``retry``: one job at a time.

Commands that take an id take it whole or by 8 or more of its hex digits, from its start or
its end (``watch`` and a narrow ``list`` show the last 8).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import click
from sqlalchemy.orm import Session

from ..errors import JobQueueError
from ..model import HELD_STATUSES, JobMixin, JobStatus, Priority
from ..plans import check_job
from ..queue import JobQueue
from ..statements import loading
from .engine import open_database
from .exits import EXIT_OK, BadInput
from .options import DatabaseOptions, database_options, json_option
from .output import console, echo, error_line, job_dict, print_json, say, when
from .params import JOB_ID, JSON_OBJECT, NAMES, POSITIVE_INT, PRIORITY, RUN_AT, STATUSES

__all__ = ["FULL_ID_WIDTH", "cancel", "enqueue", "list_jobs", "retry", "show"]

FULL_ID_WIDTH = 150
"""From this many columns ``list`` shows whole ids; narrower, their last 8 hex digits."""


@click.command()
@database_options
@json_option
@click.argument("job_type", metavar="TYPE")
@click.option(
    "--data",
    type=JSON_OBJECT,
    metavar="JSON",
    help="the job's arguments, a JSON object (default {})",
)
@click.option(
    "--priority",
    type=PRIORITY,
    default=int(Priority.DISCOVERED),
    metavar="N",
    help="higher runs first: a number or explicit (150), discovered (100, default), backfill (30)",
)
@click.option(
    "--run-at",
    type=RUN_AT,
    metavar="T",
    help="not before T: a delay (10m) or an ISO time with zone",
)
@click.option(
    "--max-attempts",
    type=POSITIVE_INT,
    default=3,
    metavar="N",
    help="attempts before it ends as failed (default 3)",
)
@click.option(
    "--unique-key", metavar="KEY", help="at most one live job per key: return the live one instead"
)
@click.option(
    "--concurrency-key",
    metavar="KEY",
    help="the key its type's limit per key counts it under (sqla-jobqueue limit --per-key)",
)
@click.option(
    "--depends-on",
    "depends_on",
    type=JOB_ID,
    multiple=True,
    metavar="ID",
    help="waits until this job has completed (repeat for several; cancelled if it fails)",
)
def enqueue(
    db: DatabaseOptions,
    as_json: bool,
    job_type: str,
    data: dict[str, Any] | None,
    priority: int,
    run_at: datetime | timedelta | None,
    max_attempts: int,
    unique_key: str | None,
    concurrency_key: str | None,
    depends_on: tuple[uuid.UUID | str, ...],
) -> int:
    """Add a job of type TYPE (which handler runs it)."""
    model = db.job_model()
    job = {
        "job_type": job_type,
        "data": data,
        "priority": priority,
        "max_attempts": max_attempts,
        "run_at": run_at,
        "unique_key": unique_key,
        "concurrency_key": concurrency_key,
    }
    check_job(job)  # the checks JobQueue.enqueue makes, before the embedded server starts
    with open_database(db) as engine, Session(engine) as session, session.begin():
        after = [resolve_id(session, model, given) for given in depends_on] or None
        written = JobQueue(session, model).enqueue(
            job_type,
            data,
            priority=priority,
            max_attempts=max_attempts,
            run_at=run_at,
            unique_key=unique_key,
            depends_on=after,
            concurrency_key=concurrency_key,
        )
        row = job_dict(written)
        existing = unique_key is not None and not _written_here(session, model, written.id)
    if existing:
        notice = (
            f"A live job with unique key {unique_key!r} already exists: {row['id']} "
            f"({row['job_type']}, {row['status']}, created {row['created_at']}). It was "
            "returned and nothing was enqueued."
        )
        if as_json:
            say(notice)
            print_json(row)
        else:
            echo(notice)
        return EXIT_OK
    if as_json:
        print_json(row)
    else:
        echo(
            f"Enqueued {row['id']} ({row['job_type']}, priority {row['priority']}, "
            f"{row['status']}, due {row['run_at']})."
        )
    return EXIT_OK


def _written_here(session: Session, model: type[JobMixin], job_id: uuid.UUID) -> bool:
    """Whether this transaction inserted the job, rather than found it live by its key.

    ``enqueue`` returns the live job of a ``unique_key`` the same way as a new one; a row
    this transaction wrote carries its transaction id in ``xmin``.
    """
    written = JobQueue(session, model).statements.written_here(job_id)
    return bool(session.execute(*written).scalar_one())


@click.command("list")
@database_options
@json_option
@click.option(
    "--status",
    "statuses",
    type=STATUSES,
    metavar="S[,S]",
    help=f"only these states ({', '.join(s.value for s in JobStatus)})",
)
@click.option("--type", "job_types", type=NAMES, metavar="A[,B]", help="only these job types")
@click.option(
    "--limit", type=POSITIVE_INT, default=20, metavar="N", help="at most N jobs (default 20)"
)
def list_jobs(
    db: DatabaseOptions,
    as_json: bool,
    statuses: list[str] | None,
    job_types: list[str] | None,
    limit: int,
) -> int:
    """The most recent jobs, newest first."""
    model = db.job_model()
    printer = None if as_json else console()
    chosen = [JobStatus(status) for status in statuses] if statuses else None
    with open_database(db) as engine, Session(engine) as session:
        newest = JobQueue(session, model).statements.newest(job_types or None, chosen, limit)
        jobs = list(session.scalars(*loading(model, newest)))
        rows = [job_dict(job) for job in jobs]
    if printer is None:
        print_json(rows)
        return EXIT_OK
    printer.print(jobs_table(jobs, printer.width))
    return EXIT_OK


def jobs_table(jobs: Sequence[JobMixin], width: int) -> Any:
    """The table of ``list``: the columns that say something about these jobs.

    Stage and percent only for a list with held jobs, the error (its exception line; the
    traceback is for ``show``) only for one with errors; ids shortened below
    :data:`FULL_ID_WIDTH` columns, so that the error keeps room at 120.
    """
    from rich.table import Table

    full_ids = width >= FULL_ID_WIDTH
    held = any(job.status in HELD_STATUSES for job in jobs)
    errors = any(job.last_error for job in jobs)
    table = Table(title=f"{len(jobs)} most recent jobs", title_justify="left")
    if not full_ids:
        table.caption = "ids: their last 8 hex digits, which show, cancel and retry accept"
        table.caption_justify = "left"
    table.add_column("id", no_wrap=True, min_width=36 if full_ids else 8)
    table.add_column("type", no_wrap=True, max_width=24, overflow="ellipsis")
    table.add_column("status", no_wrap=True, min_width=9)
    table.add_column("prio", justify="right", no_wrap=True, min_width=4)
    table.add_column("tries", justify="right", no_wrap=True, min_width=5)
    if held:
        table.add_column("%", justify="right", no_wrap=True, min_width=4)
        table.add_column("stage", no_wrap=True, overflow="ellipsis", max_width=24)
    table.add_column("created (UTC)", no_wrap=True, min_width=19)
    if errors:
        table.add_column("last error", no_wrap=True, overflow="ellipsis", min_width=20, ratio=1)
    for job in jobs:
        cells = [
            str(job.id) if full_ids else str(job.id)[-8:],
            job.job_type,
            JobStatus(job.status).value,
            str(job.priority),
            f"{job.attempts}/{job.max_attempts}",
        ]
        if held:
            cells += [f"{job.progress}%", job.current_stage or ""]
        cells.append(when(job.created_at))
        if errors:
            cells.append(error_line(job.last_error))
        table.add_row(*cells)
    return table


@click.command()
@database_options
@json_option
@click.argument("job_id", metavar="ID", type=JOB_ID)
def show(db: DatabaseOptions, as_json: bool, job_id: uuid.UUID | str) -> int:
    """Everything about one job, with its last error.

    ID is the job's id, or its first or last 8 or more hex digits.
    """
    model = db.job_model()
    printer = None if as_json else console()
    with open_database(db) as engine, Session(engine) as session:
        row = job_dict(JobQueue(session, model).get(resolve_id(session, model, job_id)))
    if printer is None:
        print_json(row)
        return EXIT_OK
    from rich.table import Table

    table = Table(show_header=False, title=f"job {row['id']}", title_justify="left")
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in row.items():
        shown = json.dumps(value) if isinstance(value, (dict, list)) else value
        table.add_row(key, "" if shown is None else str(shown))
    printer.print(table)
    return EXIT_OK


def resolve_id(session: Session, model: type[JobMixin], given: uuid.UUID | str) -> uuid.UUID:
    """The id of the one job whose id begins or ends with the hex digits ``given``.

    Raises
    ------
    JobQueueError
        When no id does (exit code 1).
    BadInput
        When several do (exit code 2).
    """
    if isinstance(given, uuid.UUID):
        return given
    by_digits = JobQueue(session, model).statements.ids_by_digits(given, 3)
    matches: list[uuid.UUID] = list(session.scalars(*by_digits))
    if not matches:
        raise JobQueueError(
            f"no job id begins or ends with {given!r}: `sqla-jobqueue list` shows the ids "
            "(it never existed, or has been pruned)"
        )
    if len(matches) > 1:
        shown = ", ".join(str(job_id) for job_id in matches[:2])
        more = " and more" if len(matches) > 2 else ""
        raise BadInput(f"{given!r} matches more than one job ({shown}{more}): give more of the id")
    return matches[0]


def _transition(db: DatabaseOptions, as_json: bool, job_id: uuid.UUID | str, action: str) -> int:
    model = db.job_model()
    with open_database(db) as engine, Session(engine) as session, session.begin():
        queue = JobQueue(session, model)
        resolved = resolve_id(session, model, job_id)
        job = queue.cancel(resolved) if action == "cancel" else queue.retry(resolved)
        row = job_dict(job)
    if as_json:
        print_json(row)
    else:
        echo(f"Job {row['id']} ({row['job_type']}) is now {row['status']}.")
    return EXIT_OK


@click.command()
@database_options
@json_option
@click.argument("job_id", metavar="ID", type=JOB_ID)
def cancel(db: DatabaseOptions, as_json: bool, job_id: uuid.UUID | str) -> int:
    """Cancel a job that has not finished.

    ID is the job's id, or its first or last 8 or more hex digits.
    """
    return _transition(db, as_json, job_id, "cancel")


@click.command()
@database_options
@json_option
@click.argument("job_id", metavar="ID", type=JOB_ID)
def retry(db: DatabaseOptions, as_json: bool, job_id: uuid.UUID | str) -> int:
    """Send a failed job back to pending.

    ID is the job's id, or its first or last 8 or more hex digits.
    """
    return _transition(db, as_json, job_id, "retry")
