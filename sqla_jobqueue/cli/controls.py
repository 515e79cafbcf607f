"""``pause`` and ``resume``: stop and restart the claiming of job types, on every worker;
``limit`` and ``unlimit``: set and remove the limits every claim keeps."""

from __future__ import annotations

from datetime import timedelta

import click
from sqlalchemy.orm import Session

from ..plans import check_job_types
from ..plans.controls import MAX_REASON_LENGTH, TypeLimits
from ..queue import JobQueue
from .engine import open_database
from .exits import EXIT_OK, BadInput
from .options import DatabaseOptions, database_options, json_option
from .output import echo, jsonable, print_json, when
from .params import POSITIVE_INT, RATE, duration_text

__all__ = ["limit", "limits_dict", "limits_text", "pause", "resume", "unlimit"]


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


def limits_text(limits: TypeLimits) -> str:
    """What a type's limits allow, in words."""
    parts = []
    if limits.max_running is not None:
        parts.append(f"at most {limits.max_running} running")
    if limits.max_running_per_key is not None:
        parts.append(f"at most {limits.max_running_per_key} running per concurrency key")
    if limits.rate_limit is not None and limits.rate_period is not None:
        parts.append(f"at most {limits.rate_limit} claimed per {duration_text(limits.rate_period)}")
    return ", ".join(parts)


def limits_dict(limits: TypeLimits) -> dict[str, object]:
    """A type's limits as JSON values (the period in seconds)."""
    period = limits.rate_period
    return {
        "job_type": limits.job_type,
        "max_running": limits.max_running,
        "max_running_per_key": limits.max_running_per_key,
        "rate_limit": limits.rate_limit,
        "rate_period_seconds": None if period is None else period.total_seconds(),
    }


@click.command()
@database_options
@json_option
@click.argument("job_type", metavar="TYPE")
@click.option(
    "--max-running",
    type=POSITIVE_INT,
    metavar="N",
    help="at most N jobs of TYPE claimed or running at once, across all workers",
)
@click.option(
    "--per-key",
    "max_running_per_key",
    type=POSITIVE_INT,
    metavar="N",
    help="at most N running per concurrency key, each key's jobs oldest first (1: in order)",
)
@click.option(
    "--rate",
    type=RATE,
    metavar="N/PERIOD",
    help="at most N claimed per PERIOD, N at once at most (20/s, 500/5m)",
)
def limit(
    db: DatabaseOptions,
    as_json: bool,
    job_type: str,
    max_running: int | None,
    max_running_per_key: int | None,
    rate: tuple[int, timedelta] | None,
) -> int:
    """Limit TYPE's jobs on every worker; its limits become those given."""
    (checked,) = _job_types((job_type,))
    if max_running is None and max_running_per_key is None and rate is None:
        raise BadInput(
            "give --max-running, --per-key or --rate; "
            f"`sqla-jobqueue unlimit {checked}` removes its limits"
        )
    rate_limit, rate_period = rate if rate is not None else (None, timedelta(seconds=1))
    model = db.job_model()
    with open_database(db) as engine, Session(engine) as session, session.begin():
        limits = JobQueue(session, model).limit(
            checked,
            max_running=max_running,
            max_running_per_key=max_running_per_key,
            rate_limit=rate_limit,
            rate_period=rate_period,
        )
    if as_json:
        print_json({"limited": limits_dict(limits)})
        return EXIT_OK
    echo(
        f"Limited {checked}: {limits_text(limits)}. Workers keep it from their next claim "
        "(within 2s for a type that had no limit)."
    )
    return EXIT_OK


@click.command()
@database_options
@json_option
@click.argument("job_types", metavar="TYPE...", nargs=-1)
def unlimit(db: DatabaseOptions, as_json: bool, job_types: tuple[str, ...]) -> int:
    """Remove every limit of these job types."""
    types = _job_types(job_types)
    model = db.job_model()
    with open_database(db) as engine, Session(engine) as session, session.begin():
        removed = JobQueue(session, model).remove_limits(types)
    if as_json:
        print_json({"unlimited": removed, "not_limited": sorted(set(types) - set(removed))})
        return EXIT_OK
    for job_type in types:
        echo(
            f"Removed the limits of {job_type}."
            if job_type in removed
            else f"{job_type} had no limit."
        )
    return EXIT_OK
