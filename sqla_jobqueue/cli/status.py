"""``status`` and ``watch``: what the queue is doing, once or live."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import click
from sqlalchemy.orm import Session

from ..maintenance.rescuer import DEFAULT_STALE_TIMEOUT
from ..model import UNFINISHED_STATUSES, JobStatus
from ..queue import JobQueue
from ..schedules import schedule_table
from ..statements import JobStatements
from ..statements.schedules import ScheduleStatements
from .controls import limits_dict, limits_text
from .engine import open_database
from .exits import EXIT_OK
from .live import STATUSES, Snapshot, age_text, render_snapshot, repeatable_read, take_snapshot
from .options import DatabaseOptions, database_options, json_option
from .output import console, jsonable, print_json, when
from .params import DURATION, NAMES, POSITIVE_INT, duration_text

__all__ = ["status", "watch"]

UNFINISHED = {state.value for state in UNFINISHED_STATUSES}


@click.command()
@database_options
@json_option
@click.option(
    "--stale-after",
    type=DURATION,
    default=DEFAULT_STALE_TIMEOUT,
    metavar="DURATION",
    help="a held job with no heartbeat for this long is stale (default 1m, as workers)",
)
@click.option(
    "--exact",
    is_flag=True,
    help="count every finished job, even in a table of millions (by default they are "
    "estimated from a sample above a million rows)",
)
def status(db: DatabaseOptions, as_json: bool, stale_after: timedelta, exact: bool) -> int:
    """Counts by type and state, throughput, stale jobs, periodic jobs."""
    model = db.job_model()
    printer = None if as_json else console()
    with open_database(db) as engine, Session(engine) as session:
        queue = JobQueue(session, model)
        stats = queue.stats(exact=exact)
        last_minute = _finished_last_minute(session, queue.statements)
        stale = session.execute(*queue.statements.stale_count(stale_after)).scalar_one()
        schedules = _schedules(session, queue)
        paused = queue.paused()
        limits = queue.limits()
    totals = {state: stats.total(state) for state in STATUSES}
    report = {
        "counts": stats.counts,
        "totals": totals,
        "finished_estimated": stats.estimated,
        "oldest_pending_age_seconds": jsonable(stats.oldest_pending_age),
        "last_minute": last_minute,
        "jobs_per_second": round(sum(last_minute.values()) / 60.0, 2),
        "stale": int(stale),
        "stale_after_seconds": stale_after.total_seconds(),
        "schedules": schedules,
        "paused": [
            {"job_type": p.job_type, "paused_at": jsonable(p.paused_at), "reason": p.reason}
            for p in paused
        ],
        "limits": [limits_dict(entry) for entry in limits],
    }
    if printer is None:
        print_json(report)
        return EXIT_OK
    from rich.table import Table

    table = Table(title="Jobs by type and state", title_justify="left")
    table.add_column("type", no_wrap=True)
    for state in STATUSES:
        table.add_column(state, justify="right")

    def cell(state: str, count: int) -> str:
        return f"~{count}" if stats.estimated and state not in UNFINISHED else str(count)

    for job_type in sorted(stats.counts):
        by_status = stats.counts[job_type]
        table.add_row(job_type, *(cell(s, by_status.get(s, 0)) for s in STATUSES))
    table.add_section()
    table.add_row("total", *(cell(s, totals[s]) for s in STATUSES), style="bold")
    printer.print(table)
    if stats.estimated:
        printer.print(
            "~ finished jobs estimated from a sample of the table (--exact counts them all)."
        )
    printer.print(
        (
            "No pending job is due. "
            if stats.oldest_pending_age is None
            else f"Oldest due pending job has waited {age_text(stats.oldest_pending_age)}. "
        )
        + f"Last minute: {last_minute['completed']} completed, {last_minute['failed']} failed "
        f"({report['jobs_per_second']} jobs/s). "
        f"Stale (no heartbeat for {age_text(stale_after)}): {report['stale']}"
        + (f" — `{_recover_command(db, stale_after)}` returns them to pending." if stale else ".")
    )
    if paused:
        printer.print(
            "Paused (no worker claims them; `sqla-jobqueue resume TYPE`): "
            + ", ".join(p.job_type for p in paused)
        )
    for entry in limits:
        printer.print(f"Limited {entry.job_type}: {limits_text(entry)}.")
    if schedules:
        periodic = Table(title="Periodic jobs (times in UTC)", title_justify="left")
        for column in ("schedule", "when", "last tick", "next tick"):
            periodic.add_column(column, no_wrap=column != "when")
        for row in schedules:
            periodic.add_row(
                row["name"], row["spec"], when(row["last_tick"]), when(row["next_tick"])
            )
        printer.print(periodic)
    return EXIT_OK


def _schedules(session: Session, queue: JobQueue[Any]) -> list[dict[str, Any]]:
    """The rows of the schedules table of the job table's metadata, if it has one, the
    database holds it and this role may read it (a monitor role may not be granted it)."""
    table = schedule_table(queue.table.metadata)
    if table is None:
        return []
    statements = ScheduleStatements.of(queue.table, table)
    if not session.execute(*statements.readable()).scalar_one():
        return []
    return [
        {"name": row.name, "spec": row.spec, "last_tick": row.last_tick,
         "next_tick": row.next_tick, "updated_at": row.updated_at}
        for row in session.execute(*statements.listing())
    ]  # fmt: skip


def _finished_last_minute(session: Session, statements: JobStatements) -> dict[str, int]:
    finished = {
        JobStatus(state).value: int(count)
        for state, count in session.execute(*statements.finished_within(timedelta(minutes=1)))
    }
    return {"completed": finished.get("completed", 0), "failed": finished.get("failed", 0)}


def _recover_command(db: DatabaseOptions, stale_after: timedelta) -> str:
    """The ``recover`` that returns the jobs ``status`` counted as stale, with its options."""
    words = ["sqla-jobqueue", "recover"]
    if stale_after != DEFAULT_STALE_TIMEOUT:
        words += ["--timeout", duration_text(stale_after)]
    if db.app:
        words += ["--app", db.app]
    if db.model:
        words += ["--model", db.model]
    return " ".join(words)


@click.command()
@database_options
@json_option
@click.option(
    "--interval",
    type=DURATION,
    default=timedelta(seconds=1),
    metavar="DURATION",
    help="time between refreshes (default 1s)",
)
@click.option(
    "--count",
    type=POSITIVE_INT,
    metavar="N",
    help="stop after N refreshes (default: until Ctrl-C)",
)
@click.option("--type", "job_types", type=NAMES, metavar="A,B", help="only these job types")
@click.option(
    "--limit", type=POSITIVE_INT, default=20, metavar="N", help="show at most N jobs (default 20)"
)
def watch(
    db: DatabaseOptions,
    as_json: bool,
    interval: timedelta,
    count: int | None,
    job_types: list[str] | None,
    limit: int,
) -> int:
    """Live progress bars of running jobs until Ctrl-C."""
    model = db.job_model()
    printer = None if as_json else console()
    title = "sqla-jobqueue watch (Ctrl-C to stop)"
    with open_database(db) as engine:

        def frame() -> Snapshot:
            with Session(repeatable_read(engine)) as session:
                return take_snapshot(session, model, job_types=job_types, limit=limit)

        if printer is None:
            _every(interval, count, lambda: print_json(frame().as_json()))
        elif not printer.is_terminal:
            # Piped output gets every frame in full, one after the other.
            _every(
                interval,
                count,
                lambda: printer.print(render_snapshot(frame(), title=title, width=printer.width)),
            )
        else:
            from rich.live import Live

            with Live(console=printer, auto_refresh=False, transient=False) as live:
                _every(
                    interval,
                    count,
                    lambda: live.update(
                        render_snapshot(frame(), title=title, width=printer.width), refresh=True
                    ),
                )
    return EXIT_OK


def _every(interval: timedelta, count: int | None, refresh: Callable[[], None]) -> None:
    """Call ``refresh`` ``count`` times (forever for None), ``interval`` apart."""
    refreshes = 0
    while count is None or refreshes < count:
        if refreshes:
            time.sleep(interval.total_seconds())
        refresh()
        refreshes += 1
