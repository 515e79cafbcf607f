"""``bulk cancel``, ``bulk retry``, ``bulk reprioritize`` and ``bulk delete``: the jobs that
match a filter, in chunks, each chunk its own transaction.

Every command first counts the jobs it would change; ``--dry-run`` prints that count and
stops. Otherwise it changes at most ``--chunk-size`` jobs per transaction, commits, prints
its progress, and goes on until a chunk changes nothing; Ctrl-C (or SIGTERM) stops it after
the chunk in progress, which is committed, and a second Ctrl-C stops it at once, rolling
that chunk back. A chunk skips the jobs workers are writing at that moment and waits at
most :data:`~sqla_jobqueue.cli.maintenance.COMMAND_LOCK_TIMEOUT` for a lock on the table.

The command acts on the jobs that exist when it starts: it pins ``created_before`` (and,
for ``retry``, ``finished_before``) to the database's clock then, so that jobs enqueued
meanwhile, or retried jobs that fail again, are not taken by a later chunk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import signal
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from types import FrameType
from typing import Any

import click
from sqlalchemy.orm import Session

from ..model import JobMixin, JobStatus
from ..plans.bulk import (
    ACTION_STATUSES,
    DEFAULT_CHUNK_SIZE,
    BulkAction,
    JobFilter,
    bulk_criteria,
    status_words,
)
from ..queue import JobQueue
from .engine import open_database
from .exits import EXIT_INTERRUPTED, EXIT_OK, BadInput, Failure
from .live import age_text
from .maintenance import bounded_transaction
from .options import DatabaseOptions, database_options, json_option
from .output import echo, print_json, say
from .params import DURATION, NAMES, POSITIVE_INT, PRIORITY, STATUSES

__all__ = ["bulk"]

_DONE = {
    "cancel": "cancelled",
    "retry": "retried",
    "reprioritize": "reprioritized",
    "delete": "deleted",
}

Act = Callable[[JobQueue[Any], JobFilter, int], int]


@click.group()
def bulk() -> None:
    """Cancel, retry, reprioritize or delete the jobs that match a filter, in chunks.

    Give at least one filter option, or --all for every job the action changes. Try
    --dry-run first: it prints how many jobs would change.
    """


def _filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every bulk command takes, passed to it as ``job_filter`` (a JobFilter),
    ``chunk_size`` and ``dry_run``."""

    @functools.wraps(command)
    def with_filter(
        *args: Any,
        job_types: tuple[list[str], ...],
        statuses: tuple[list[str], ...],
        older_than: timedelta | None,
        error_contains: str | None,
        everything: bool,
        **kwargs: Any,
    ) -> Any:
        job_filter = JobFilter(
            job_types=_joined(job_types),
            statuses=_joined(statuses),
            older_than=older_than,
            error_contains=error_contains,
            everything=everything,
        )
        return command(*args, job_filter=job_filter, **kwargs)

    options = (
        click.option(
            "--type",
            "job_types",
            type=NAMES,
            multiple=True,
            metavar="TYPE[,TYPE]",
            help="only jobs of these types (repeatable)",
        ),
        click.option(
            "--status",
            "statuses",
            type=STATUSES,
            multiple=True,
            metavar="S[,S]",
            help="only jobs in these states, of those the action changes (repeatable)",
        ),
        click.option(
            "--older-than",
            type=DURATION,
            metavar="DURATION",
            help="only jobs created longer ago than this, e.g. 1h, 2d",
        ),
        click.option(
            "--error-contains",
            metavar="TEXT",
            help="only jobs whose last error contains TEXT (ignoring case)",
        ),
        click.option(
            "--all",
            "everything",
            is_flag=True,
            help="every job the action changes: needed when no other filter is given",
        ),
        click.option(
            "--chunk-size",
            type=POSITIVE_INT,
            default=DEFAULT_CHUNK_SIZE,
            show_default=True,
            metavar="N",
            help="jobs changed per transaction",
        ),
        click.option("--dry-run", is_flag=True, help="print how many jobs would change, and stop"),
    )
    decorated: Callable[..., Any] = database_options(json_option(with_filter))
    for option in reversed(options):
        decorated = option(decorated)
    return decorated


def _joined(values: tuple[list[str], ...]) -> list[str] | None:
    """The names of a repeatable comma-separated option, or ``None`` when not given."""
    names = [name for value in values for name in value]
    return names or None


@bulk.command()
@_filter_options
def cancel(
    db: DatabaseOptions, as_json: bool, job_filter: JobFilter, chunk_size: int, dry_run: bool
) -> int:
    """Cancel pending, claimed and running jobs that match the filter.

    A handler still running a job it cancels is not interrupted: its outcome is discarded.
    """
    return _act(db, as_json, "cancel", job_filter, chunk_size, dry_run)


@bulk.command()
@_filter_options
def retry(
    db: DatabaseOptions, as_json: bool, job_filter: JobFilter, chunk_size: int, dry_run: bool
) -> int:
    """Send failed jobs that match the filter back to pending, attempts reset.

    A failed job whose unique key a live job holds stays failed; of several failed jobs
    with one key, one is retried.
    """
    return _act(db, as_json, "retry", job_filter, chunk_size, dry_run)


@bulk.command()
@click.option(
    "--priority",
    type=PRIORITY,
    required=True,
    metavar="N",
    help="the new priority: a number or explicit (150), discovered (100), backfill (30)",
)
@_filter_options
def reprioritize(
    db: DatabaseOptions,
    as_json: bool,
    job_filter: JobFilter,
    chunk_size: int,
    dry_run: bool,
    priority: int,
) -> int:
    """Give pending jobs that match the filter a new priority."""
    return _act(db, as_json, "reprioritize", job_filter, chunk_size, dry_run, priority)


@bulk.command()
@_filter_options
def delete(
    db: DatabaseOptions, as_json: bool, job_filter: JobFilter, chunk_size: int, dry_run: bool
) -> int:
    """Delete pending and finished jobs that match the filter; never claimed or running ones.

    To delete finished jobs by age, prune is the usual way.
    """
    return _act(db, as_json, "delete", job_filter, chunk_size, dry_run)


def _pinned(job_filter: JobFilter, action: BulkAction, now: datetime) -> JobFilter:
    """``job_filter`` narrowed to the jobs that exist at ``now`` (and, for retry, that
    failed before it): what the command acts on, however long it runs."""
    created_before = _earlier(job_filter.created_before, now)
    finished_before = job_filter.finished_before
    if action == "retry":
        finished_before = _earlier(finished_before, now)
    if job_filter.everything:
        job_filter = JobFilter()
    return dataclasses.replace(
        job_filter, created_before=created_before, finished_before=finished_before
    )


def _earlier(given: datetime | None, now: datetime) -> datetime:
    return now if given is None else min(given, now)


def _act(
    db: DatabaseOptions,
    as_json: bool,
    action: BulkAction,
    job_filter: JobFilter,
    chunk_size: int,
    dry_run: bool,
    priority: int | None = None,
) -> int:
    if job_filter.everything and job_filter.has_criteria():
        raise BadInput("--all is every job: give it alone, or leave it out to use the filter")
    if not job_filter.everything and not job_filter.has_criteria():
        raise BadInput(
            f"no filter given, so {action} would change every "
            f"{status_words(ACTION_STATUSES[action])} job: give --type, --status, "
            "--older-than or --error-contains, or --all to mean every one"
        )
    # The checks every chunk makes, before the embedded server starts.
    bulk_criteria(job_filter, action, priority=priority)
    model = db.job_model()
    with open_database(db) as engine, Session(engine) as session:
        with bounded_transaction(session):
            queue = JobQueue(session, model)
            now = session.execute(*queue.statements.clock()).scalar_one()
            pinned = _pinned(job_filter, action, now)
            matched = queue.count_where(pinned, action=action, priority=priority)
        if dry_run:
            _report_dry_run(as_json, action, job_filter, matched)
            return EXIT_OK
        if not as_json:
            echo(f"{_jobs(matched)} to be {_DONE[action]}, in chunks of at most {chunk_size}.")
        act = _action(action, priority)
        chunks = _run_chunks(session, model, act, pinned, chunk_size, matched, as_json)
    interrupted = chunks.interrupted
    total = sum(chunks.sizes)
    if as_json:
        print_json(
            {
                "action": action,
                "dry_run": False,
                "matched": matched,
                "changed": total,
                "chunks": chunks.sizes,
                "interrupted": interrupted,
            }
        )
    else:
        count = len(chunks.sizes)
        echo(f"{_jobs(total)} {_DONE[action]} in {count} chunk{_plural(count)}.")
    if interrupted:
        say(
            f"sqla-jobqueue bulk {action}: interrupted after a committed chunk; "
            f"{_jobs(total)} {_DONE[action]}: run the command again to go on"
        )
        return EXIT_INTERRUPTED
    return EXIT_OK


def _action(action: BulkAction, priority: int | None) -> Act:
    if action == "cancel":
        return lambda queue, job_filter, limit: queue.cancel_where(job_filter, limit=limit)
    if action == "retry":
        return lambda queue, job_filter, limit: queue.retry_where(job_filter, limit=limit)
    if action == "delete":
        return lambda queue, job_filter, limit: queue.delete_where(job_filter, limit=limit)
    assert priority is not None
    return lambda queue, job_filter, limit: queue.reprioritize_where(
        job_filter, priority, limit=limit
    )


@dataclasses.dataclass
class _Chunks:
    """What the chunks of a run changed, and whether it was stopped before the end."""

    sizes: list[int] = dataclasses.field(default_factory=list)
    interrupted: bool = False


def _run_chunks(
    session: Session,
    model: type[JobMixin],
    act: Act,
    job_filter: JobFilter,
    chunk_size: int,
    matched: int,
    as_json: bool,
) -> _Chunks:
    """Run ``act`` a chunk per transaction until a chunk changes nothing or a stop is
    asked for."""
    done = _Chunks()
    with _stop_after_chunk() as stop:
        while not stop():
            try:
                with bounded_transaction(session):
                    changed = act(JobQueue(session, model), job_filter, chunk_size)
            except Failure as failure:
                raise Failure(f"{failure} ({sum(done.sizes)} changed before it)") from None
            if changed == 0:
                return done
            done.sizes.append(changed)
            if not as_json:
                echo(f"  {changed} in this chunk, {sum(done.sizes)} of {matched} so far")
        done.interrupted = True
    return done


@contextlib.contextmanager
def _stop_after_chunk() -> Iterator[Callable[[], bool]]:
    """While the block runs, the first SIGINT or SIGTERM asks the loop to stop after its
    chunk in progress (the function yielded tells whether one came); the second raises
    :class:`KeyboardInterrupt` at once."""
    asked: list[int] = []

    def ask(signum: int, frame: FrameType | None) -> None:
        if asked:
            raise KeyboardInterrupt
        asked.append(signum)
        say(
            "sqla-jobqueue bulk: stopping after the chunk in progress "
            "(Ctrl-C again to stop at once and roll it back)"
        )

    previous: dict[signal.Signals, Any] = {}
    for stopping in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: no handlers
            previous[stopping] = signal.signal(stopping, ask)
    try:
        yield lambda: bool(asked)
    finally:
        for stopping, handler in previous.items():
            signal.signal(stopping, handler)


def _plural(count: int) -> str:
    return "" if count == 1 else "s"


def _jobs(count: int) -> str:
    return f"{count} job{_plural(count)}"


def _report_dry_run(as_json: bool, action: BulkAction, job_filter: JobFilter, matched: int) -> None:
    if as_json:
        print_json({"action": action, "dry_run": True, "matched": matched})
        return
    echo(
        f"{_jobs(matched)} would be {_DONE[action]} "
        f"({_described(action, job_filter)}); nothing was changed."
    )


def _described(action: BulkAction, job_filter: JobFilter) -> str:
    """The filter in words: ``pending, claimed or running; of type a, b; created more than
    2h ago; last error containing 'boom'``."""
    statuses = tuple(JobStatus(s) for s in job_filter.statuses or ACTION_STATUSES[action])
    parts = [status_words(statuses)]
    if job_filter.job_types:
        parts.append(f"of type {', '.join(job_filter.job_types)}")
    if job_filter.older_than is not None:
        parts.append(f"created more than {age_text(job_filter.older_than)} ago")
    if job_filter.error_contains is not None:
        parts.append(f"last error containing {job_filter.error_contains!r}")
    return "; ".join(parts)
