"""The ``sqla-jobqueue`` command line: look at the queue, act on jobs, run workers, the demo.

Every command that needs a database takes ``--database-url``, or ``--app module:name`` to
take the URL of the application's own engine or settings, or reads ``DATABASE_URL``; with
none it uses the embedded PostgreSQL of :mod:`sqla_jobqueue.embedded` (migrated on first
use) and says so in one line on stderr. Only PostgreSQL URLs are accepted. Commands that
report take ``--json`` for machines; people get tables. Bad arguments get a one-line error
and exit code 2; a job that does not exist or is in the wrong state, or a database that
cannot be reached, gets a one-line error and exit code 1. Ctrl-C exits with 130.

Durations are written as a number and a unit, ``30s``, ``5m``, ``2h``, ``7d``, ``1w``,
``250ms``, or a sum of them (``1h30m``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import logging
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NoReturn

from sqlalchemy import (
    Engine,
    String,
    cast,
    create_engine,
    func,
    inspect,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session

from .database import ENVIRONMENT_VARIABLE, postgresql_url, url_from_environment, url_of
from .embedded import DataDirectoryError
from .errors import (
    InvalidJobError,
    InvalidTransitionError,
    JobNotFoundError,
    JobQueueError,
    ModelError,
)
from .live import STATUSES as _STATUSES
from .live import (
    Snapshot,
    age_text,
    demo_summary,
    print_demo_summary,
    render_snapshot,
    repeatable_read,
    take_snapshot,
)
from .maintenance.rescuer import DEFAULT_STALE_TIMEOUT
from .model import HELD_STATUSES, Job, JobMixin, JobStatus, Priority
from .queue import JobQueue, check_job, stale_condition
from .validation import MAX_DELAY

if TYPE_CHECKING:
    from rich.console import Console

    from .handlers import Registry

__all__ = [
    "MAX_DURATION",
    "build_parser",
    "duration_text",
    "error_line",
    "main",
    "parse_duration",
]

PROG = "sqla-jobqueue"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
MAX_DURATION = MAX_DELAY
"""The longest duration any option takes (100 years)."""
ID_FRAGMENT_DIGITS = 8
"""The fewest hex digits of a job id that commands taking an id accept (``watch`` shows 8)."""


class _UsageError(Exception):
    """Bad input found after parsing (exit code 2)."""


# ---------------------------------------------------------------------------- parsing


def parse_duration(value: str) -> timedelta:
    """Parse ``30s``, ``5m``, ``2h``, ``7d``, ``1w``, ``250ms`` or a sum like ``1h30m``.

    Raises
    ------
    ValueError
        When ``value`` is not such a duration, is zero, or is longer than
        :data:`MAX_DURATION`.
    """
    text_value = value.strip().lower()
    parts = _DURATION_PART.findall(text_value)
    if not parts or "".join(n + u for n, u in parts) != text_value:
        raise ValueError(
            f"invalid duration {value!r}: write a number and a unit, e.g. 30s, 5m, 2h, 7d"
        )
    try:
        total = sum((float(n) * _UNITS[u] for n, u in parts), timedelta(0))
    except OverflowError:
        total = timedelta.max
    if total <= timedelta(0):
        raise ValueError(f"invalid duration {value!r}: must be more than zero")
    if total > MAX_DURATION:
        # Beyond this, "now minus the duration" leaves PostgreSQL's timestamp range.
        raise ValueError(
            f"invalid duration {value!r}: at most {duration_text(MAX_DURATION)} (100 years)"
        )
    return total


def duration_text(duration: timedelta) -> str:
    """``duration`` written as :func:`parse_duration` reads it: ``2s``, ``1h30m``, ``250ms``."""
    milliseconds = round(duration.total_seconds() * 1000)
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, milliseconds = divmod(milliseconds, size)
        if count:
            parts.append(f"{count}{unit}")
    if milliseconds or not parts:
        parts.append(f"{milliseconds}ms")
    return "".join(parts)


def _duration(value: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


_ID_FRAGMENT = re.compile(rf"[0-9a-f]{{{ID_FRAGMENT_DIGITS},31}}")


def _job_id(value: str) -> uuid.UUID | str:
    """A whole job id, or a fragment of one: hex digits its id begins or ends with."""
    text_value = value.strip().lower()
    with contextlib.suppress(ValueError):
        return uuid.UUID(text_value)
    digits = text_value.replace("-", "")
    if _ID_FRAGMENT.fullmatch(digits):
        return digits
    raise argparse.ArgumentTypeError(
        f"{value!r} is not a job id: give the whole id (a UUID) or at least "
        f"{ID_FRAGMENT_DIGITS} of its hex digits, from its start or its end as watch shows"
    )


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _priority(value: str) -> int:
    name = value.strip().upper()
    if name in Priority.__members__:
        return int(Priority[name])
    try:
        return int(value)
    except ValueError:
        names = ", ".join(p.name.lower() for p in Priority)
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a priority: a whole number or one of {names}"
        ) from None


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _json_object(value: str) -> dict[str, Any]:
    try:
        # json.loads accepts NaN and Infinity, which jsonb cannot store.
        data = json.loads(value, parse_constant=_no_constant)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError(
            f'must be a JSON object like \'{{"key": "value"}}\', got {type(data).__name__}'
        )
    return data


def _run_at(value: str) -> datetime | timedelta:
    try:
        return parse_duration(value)
    except ValueError as error:
        if re.fullmatch(f"(?:{_DURATION_PART.pattern})+", value.strip().lower()):
            raise argparse.ArgumentTypeError(str(error)) from None
    iso = value.strip()
    if iso.endswith(("Z", "z")):
        iso = iso[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither a delay (10m, 2h) nor an ISO 8601 time "
            "(2030-01-31T09:00:00+00:00)"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{value!r} has no time zone: add one, e.g. {value}+00:00 or {value}Z"
        )
    return moment


def _names(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{value!r} names nothing: write a,b,c")
    return names


def _statuses(value: str) -> list[str]:
    names = _names(value)
    unknown = [name for name in names if name not in _STATUSES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown status {unknown[0]!r}: choose from {', '.join(_STATUSES)}"
        )
    return names


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ------------------------------------------------------------------------- output


def _console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    # Job data (stages, worker ids like host:1234:ab) is shown as is: no markup, no emoji codes.
    console = Console(stderr=stderr, highlight=False, soft_wrap=False, markup=False, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Output to a file or a pipe is read whole: do not squeeze it into 80 columns.
        console.width = 200
    return console


def _say(message: str) -> None:
    """A one-line notice on stderr, so that stdout stays clean for --json."""
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()


def _jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, JobStatus):
        return value.value
    return value


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=_jsonable, sort_keys=False) + "\n")
    sys.stdout.flush()


def _job_dict(job: JobMixin) -> dict[str, Any]:
    mapper = inspect(type(job))
    return {attr.key: _jsonable(getattr(job, attr.key)) for attr in mapper.column_attrs}


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _one_line(message: str, limit: int = 300) -> str:
    line = " ".join(str(message).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# ----------------------------------------------------------------------- database


def _import_from_cwd() -> None:
    """Let ``module:attribute`` targets name modules of the current directory, as
    ``python -m`` would; a console script's ``sys.path`` starts at its own directory."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())


def _import_object(spec: str, what: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise _UsageError(f"{what} {spec!r} must be written module:attribute, e.g. myapp.jobs:Job")
    _import_from_cwd()
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise _UsageError(f"cannot import {module_name!r} for {what} {spec!r}: {error}") from None
    except Exception as error:
        raise _UsageError(
            f"importing {module_name!r} for {what} {spec!r} failed: {_exception_line(error)}"
        ) from None
    try:
        value = module
        for name in attribute.split("."):
            value = getattr(value, name)
    except AttributeError:
        raise _UsageError(f"{module_name!r} has no {attribute!r} (for {what} {spec!r})") from None
    return value


def _exception_line(error: BaseException) -> str:
    """``Type: message`` of an exception raised by the user's own code."""
    message = str(error).strip()
    return type(error).__name__ + (f": {message}" if message else "")


def _registry(target: str) -> Registry:
    """The worker's registry; an error raised by the user's module is one line too."""
    from .worker import load_registry

    _import_from_cwd()
    try:
        return load_registry(target)
    except JobQueueError:
        raise
    except Exception as error:
        raise _UsageError(
            f"loading the registry {target!r} failed: {_exception_line(error)}"
        ) from None


def _model(args: argparse.Namespace) -> type[JobMixin]:
    spec = getattr(args, "model", None)
    if not spec:
        return Job
    model = _import_object(spec, "--model")
    if not (isinstance(model, type) and issubclass(model, JobMixin)):
        raise _UsageError(f"--model {spec!r} is not a mapped JobMixin class")
    return model


def _postgresql_url(url: str | URL, source: str) -> URL:
    try:
        return postgresql_url(url)
    except ValueError as error:
        raise _UsageError(f"invalid database URL from {source}: {error}") from None


def _app_url(spec: str) -> URL:
    """The URL of the application's engine, URL or settings named by ``--app``."""
    value = _import_object(spec, "--app")
    try:
        url = url_of(value)
    except ValueError as error:
        raise _UsageError(f"--app {spec!r} names no database: {error}") from None
    except Exception as error:
        raise _UsageError(f"calling --app {spec!r} failed: {_exception_line(error)}") from None
    return _postgresql_url(url, f"--app {spec}")


def _given_url(args: argparse.Namespace) -> URL | None:
    """The database the command was told to use, or None for the embedded default.

    ``--app`` and ``--database-url`` are two ways of naming it: both at once is an error.
    ``DATABASE_URL`` is used when neither is given; beside ``--app`` (whose settings often
    read it) it must name the same database.
    """
    app = getattr(args, "app", None)
    flag = getattr(args, "database_url", None)
    environment = url_from_environment()
    if app and flag:
        raise _UsageError("--app and --database-url both name a database: give only one")
    if app:
        url = _app_url(app)
        if environment:
            other = _postgresql_url(environment, ENVIRONMENT_VARIABLE)
            if other != url:
                raise _UsageError(
                    f"--app {app} names {url.render_as_string(hide_password=True)} but "
                    f"{ENVIRONMENT_VARIABLE} names {other.render_as_string(hide_password=True)}"
                    f": unset {ENVIRONMENT_VARIABLE} or leave out --app"
                )
        return url
    if flag:
        return _postgresql_url(flag, "--database-url")
    if environment:
        return _postgresql_url(environment, ENVIRONMENT_VARIABLE)
    return None


@contextlib.contextmanager
def _database(
    args: argparse.Namespace, *, migrate_embedded: bool = True, pool_size: int = 5
) -> Iterator[Engine]:
    """An engine on the given database, or on the embedded server for the command's life."""
    url = _given_url(args)
    if url is not None:
        try:
            engine = create_engine(url, pool_pre_ping=True, pool_size=pool_size)
        except (ArgumentError, NoSuchModuleError, ImportError) as error:
            raise _UsageError(f"invalid database URL: {_exception_line(error)}") from None
        try:
            yield engine
        finally:
            engine.dispose()
        return
    from .embedded import embedded_server

    with embedded_server(getattr(args, "data_dir", None), keep=args.keep_server) as server:
        _say(server.describe())
        engine = create_engine(server.url, pool_pre_ping=True, pool_size=pool_size)
        try:
            if migrate_embedded:
                _migrate(engine)
            yield engine
        finally:
            engine.dispose()


def _migrate(engine: Engine) -> str | None:
    from .alembic import upgrade

    # Alembic logs each step at INFO; a command line user wants only the outcome.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from alembic.util import CommandError

    try:
        upgrade(engine)
    except CommandError as error:
        # Typically the database's alembic_version belongs to the application's own history.
        raise JobQueueError(
            f"the packaged migrations cannot run here ({_one_line(str(error), 160)}); if your "
            "application has its own Alembic history, run its `alembic upgrade head` instead"
        ) from None
    with engine.connect() as connection:
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if revision is None else str(revision)


def _database_error(error: DBAPIError, *, model_given: bool) -> str:
    orig = error.orig
    sqlstate = getattr(orig, "sqlstate", None)
    first = _one_line(str(orig).strip().splitlines()[0] if str(orig).strip() else str(error))
    if sqlstate in ("42P01", "42883"):
        # Most often the application's model maps another table than the default 'jobs'.
        hint = (
            ""
            if model_given
            else "if your job model maps a table other than 'jobs', name it with --model "
            "MODULE:CLASS (e.g. --model myapp.models:Job); otherwise "
        )
        return (
            f"{first}: the job table or its claim function is missing; {hint}run "
            "`sqla-jobqueue migrate` (or your application's `alembic upgrade head`)"
        )
    if error.connection_invalidated or sqlstate is None or sqlstate.startswith("08"):
        return f"cannot reach the database: {first}"
    return f"database error: {first}"


def _resolve_id(session: Session, model: type[JobMixin], given: uuid.UUID | str) -> uuid.UUID:
    """The id of the one job whose id begins or ends with the hex digits ``given``."""
    if isinstance(given, uuid.UUID):
        return given
    digits = func.replace(cast(model.id, String), "-", "")
    matches = session.scalars(
        select(model.id)
        .where(or_(digits.startswith(given), digits.endswith(given)))
        .order_by(model.id)
        .limit(3)
    ).all()
    if not matches:
        raise JobQueueError(
            f"no job id begins or ends with {given!r}: `{PROG} list` shows the ids "
            "(it never existed, or has been pruned)"
        )
    if len(matches) > 1:
        shown = ", ".join(str(job_id) for job_id in matches[:2])
        more = " and more" if len(matches) > 2 else ""
        raise _UsageError(
            f"{given!r} matches more than one job ({shown}{more}): give more of the id"
        )
    return matches[0]


# ----------------------------------------------------------------------- commands


def _cmd_status(args: argparse.Namespace) -> int:
    model = _model(args)
    with _database(args) as engine, Session(engine) as session:
        stats = JobQueue(session, model).stats()
        now = func.statement_timestamp()
        finished = {
            JobStatus(status).value: int(count)
            for status, count in session.execute(
                select(model.status, func.count())
                .where(
                    model.status.in_([JobStatus.COMPLETED.value, JobStatus.FAILED.value]),
                    model.completed_at >= now - literal(timedelta(minutes=1)),
                )
                .group_by(model.status)
            )
        }
        stale = session.execute(
            select(func.count()).where(stale_condition(model, args.stale_after))
        ).scalar_one()
    last_minute = {"completed": finished.get("completed", 0), "failed": finished.get("failed", 0)}
    totals = {status: stats.total(status) for status in _STATUSES}
    report = {
        "counts": stats.counts,
        "totals": totals,
        "oldest_pending_age_seconds": _jsonable(stats.oldest_pending_age),
        "last_minute": last_minute,
        "jobs_per_second": round(sum(last_minute.values()) / 60.0, 2),
        "stale": int(stale),
        "stale_after_seconds": args.stale_after.total_seconds(),
    }
    if args.json:
        _print_json(report)
        return EXIT_OK
    from rich.table import Table

    table = Table(title="Jobs by type and state", title_justify="left")
    table.add_column("type", no_wrap=True)
    for status in _STATUSES:
        table.add_column(status, justify="right")
    for job_type in sorted(stats.counts):
        by_status = stats.counts[job_type]
        table.add_row(job_type, *(str(by_status.get(s, 0)) for s in _STATUSES))
    table.add_section()
    table.add_row("total", *(str(totals[s]) for s in _STATUSES), style="bold")
    console = _console()
    console.print(table)
    console.print(
        (
            "No pending job is due. "
            if stats.oldest_pending_age is None
            else f"Oldest due pending job has waited {age_text(stats.oldest_pending_age)}. "
        )
        + f"Last minute: {last_minute['completed']} completed, {last_minute['failed']} failed "
        f"({report['jobs_per_second']} jobs/s). "
        f"Stale (no heartbeat for {age_text(args.stale_after)}): {report['stale']}"
        + (f" — `{_recover_command(args)}` returns them to pending." if stale else ".")
    )
    return EXIT_OK


def _recover_command(args: argparse.Namespace) -> str:
    """The ``recover`` that returns the jobs ``status`` counted as stale, with its options."""
    words = [PROG, "recover"]
    if args.stale_after != DEFAULT_STALE_TIMEOUT:
        words += ["--timeout", duration_text(args.stale_after)]
    for option in ("app", "model"):
        if getattr(args, option, None):
            words += [f"--{option}", getattr(args, option)]
    return " ".join(words)


def _cmd_list(args: argparse.Namespace) -> int:
    model = _model(args)
    statement = select(model).order_by(model.created_at.desc(), model.id.desc()).limit(args.limit)
    if args.status:
        statement = statement.where(model.status.in_(args.status))
    if args.type:
        statement = statement.where(model.job_type.in_(args.type))
    with _database(args) as engine, Session(engine) as session:
        jobs = list(session.scalars(statement))
        rows = [_job_dict(job) for job in jobs]
    if args.json:
        _print_json(rows)
        return EXIT_OK
    _console().print(_jobs_table(jobs, _console().width))
    return EXIT_OK


FULL_ID_WIDTH = 150
"""From this many columns ``list`` shows whole ids; narrower, their last 8 hex digits."""


def _jobs_table(jobs: Sequence[JobMixin], width: int) -> Any:
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
        cells.append(_when(job.created_at))
        if errors:
            cells.append(error_line(job.last_error))
        table.add_row(*cells)
    return table


def error_line(last_error: str | None) -> str:
    """The line of ``last_error`` that says what went wrong: for a Python traceback, the
    exception (``Type: message``) after it rather than its first line."""
    if not last_error:
        return ""
    lines = [line for line in last_error.strip().splitlines() if line.strip()]
    if lines and lines[0].startswith("Traceback (most recent call last)"):
        # The exception follows the last indented line (File ..., the code, ^^^ markers);
        # with chained exceptions that is the one raised last.
        indented = [i for i, line in enumerate(lines) if line[:1].isspace()]
        if indented and indented[-1] + 1 < len(lines):
            return _one_line(" ".join(lines[indented[-1] + 1 :]))
        return _one_line(lines[-1])
    return _one_line(last_error)


def _cmd_show(args: argparse.Namespace) -> int:
    model = _model(args)
    with _database(args) as engine, Session(engine) as session:
        job = JobQueue(session, model).get(_resolve_id(session, model, args.id))
        row = _job_dict(job)
    if args.json:
        _print_json(row)
        return EXIT_OK
    from rich.table import Table

    table = Table(show_header=False, title=f"job {row['id']}", title_justify="left")
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in row.items():
        shown = json.dumps(value) if isinstance(value, (dict, list)) else value
        table.add_row(key, "" if shown is None else str(shown))
    _console().print(table)
    return EXIT_OK


def _check_enqueue(args: argparse.Namespace) -> None:
    """The checks ``JobQueue.enqueue`` makes, before the embedded server is started."""
    check_job(
        {
            "job_type": args.job_type,
            "data": args.data,
            "priority": args.priority,
            "max_attempts": args.max_attempts,
            "run_at": args.run_at,
            "unique_key": args.unique_key,
        }
    )


def _cmd_enqueue(args: argparse.Namespace) -> int:
    model = _model(args)
    _check_enqueue(args)
    with _database(args) as engine, Session(engine) as session, session.begin():
        job = JobQueue(session, model).enqueue(
            args.job_type,
            args.data,
            priority=args.priority,
            max_attempts=args.max_attempts,
            run_at=args.run_at,
            unique_key=args.unique_key,
        )
        row = _job_dict(job)
        existing = args.unique_key is not None and not _written_here(session, model, job.id)
    if existing:
        notice = (
            f"A live job with unique key {args.unique_key!r} already exists: {row['id']} "
            f"({row['job_type']}, {row['status']}, created {row['created_at']}). It was "
            "returned and nothing was enqueued."
        )
        if args.json:
            _say(notice)
            _print_json(row)
        else:
            _console().print(notice)
        return EXIT_OK
    if args.json:
        _print_json(row)
    else:
        _console().print(
            f"Enqueued {row['id']} ({row['job_type']}, priority {row['priority']}, "
            f"{row['status']}, due {row['run_at']})."
        )
    return EXIT_OK


def _written_here(session: Session, model: type[JobMixin], job_id: uuid.UUID) -> bool:
    """Whether this transaction inserted the job, rather than found it live by its key.

    ``enqueue`` returns the live job of a ``unique_key`` the same way as a new one; a row
    this transaction wrote carries its transaction id in ``xmin``.
    """
    table = inspect(model).local_table
    return bool(
        session.execute(
            select(text("xmin = pg_current_xact_id()::xid"))
            .select_from(table)
            .where(table.c.id == job_id)
        ).scalar_one()
    )


def _transition(args: argparse.Namespace, action: str) -> int:
    model = _model(args)
    with _database(args) as engine, Session(engine) as session, session.begin():
        queue = JobQueue(session, model)
        job_id = _resolve_id(session, model, args.id)
        job = queue.cancel(job_id) if action == "cancel" else queue.retry(job_id)
        row = _job_dict(job)
    if args.json:
        _print_json(row)
    else:
        _console().print(f"Job {row['id']} ({row['job_type']}) is now {row['status']}.")
    return EXIT_OK


def _cmd_cancel(args: argparse.Namespace) -> int:
    return _transition(args, "cancel")


def _cmd_retry(args: argparse.Namespace) -> int:
    return _transition(args, "retry")


def _cmd_recover(args: argparse.Namespace) -> int:
    model = _model(args)
    with _database(args) as engine, Session(engine) as session, session.begin():
        count = JobQueue(session, model).recover_stale(args.timeout)
    if args.json:
        _print_json({"recovered": count, "timeout_seconds": args.timeout.total_seconds()})
    else:
        _console().print(
            f"Recovered {count} job{'s' if count != 1 else ''} "
            f"with no heartbeat for {age_text(args.timeout)}."
        )
    return EXIT_OK


def _cmd_prune(args: argparse.Namespace) -> int:
    model = _model(args)
    with _database(args) as engine, Session(engine) as session, session.begin():
        count = JobQueue(session, model).prune(args.older_than, limit=args.limit)
    if args.json:
        _print_json({"deleted": count, "older_than_seconds": args.older_than.total_seconds()})
    else:
        _console().print(
            f"Deleted {count} finished job{'s' if count != 1 else ''} "
            f"older than {age_text(args.older_than)}."
        )
    return EXIT_OK


def _cmd_migrate(args: argparse.Namespace) -> int:
    with _database(args, migrate_embedded=False) as engine:
        revision = _migrate(engine)
    if args.json:
        _print_json({"revision": revision})
    else:
        _console().print(f"The database is at revision {revision} (head).")
    return EXIT_OK


def _cmd_init_alembic(args: argparse.Namespace) -> int:
    from .alembic import copy_template

    try:
        ini = copy_template(args.directory, ini_path=args.ini)
    except FileExistsError as error:
        raise _UsageError(str(error)) from None
    except OSError as error:
        # e.g. DIR is an existing file, or a parent is not writable.
        raise _UsageError(f"cannot write the environment to {args.directory!r}: {error}") from None
    if args.json:
        _print_json({"directory": str(args.directory), "ini": str(ini)})
    else:
        _console().print(
            f"Wrote {ini} and the environment in {args.directory}/. Next: add your "
            f"metadata to target_metadata in {args.directory}/env.py, set DATABASE_URL "
            "(or sqlalchemy.url), then run `alembic upgrade head`."
        )
    return EXIT_OK


def _cmd_server(args: argparse.Namespace) -> int:
    from .embedded import embedded_server, stop_server

    if args.stop:
        message = stop_server(args.data_dir)
        if args.json:
            _print_json({"message": message})
        else:
            _console().print(message)
        return EXIT_OK
    with embedded_server(args.data_dir, keep=True) as server:
        _say(server.describe())
        engine = create_engine(server.url)
        try:
            _migrate(engine)  # the URL printed is ready for every command and for workers
        finally:
            engine.dispose()
        url = server.url.render_as_string(hide_password=False)
        if args.json:
            _print_json({"url": url, "data_dir": str(server.data_dir)})
        else:
            sys.stdout.write(url + "\n")
    return EXIT_OK


def _cmd_watch(args: argparse.Namespace) -> int:
    model = _model(args)
    interval = args.interval.total_seconds()
    with _database(args) as engine:

        def frame() -> Snapshot:
            with Session(repeatable_read(engine)) as session:
                return take_snapshot(session, model, job_types=args.type, limit=args.limit)

        refreshes = 0

        def more() -> bool:
            return args.count is None or refreshes < args.count

        if args.json:
            while more():
                _print_json(frame().as_json())
                refreshes += 1
                if more():
                    time.sleep(interval)
            return EXIT_OK
        console = _console()
        title = "sqla-jobqueue watch (Ctrl-C to stop)"
        if not console.is_terminal:
            # Piped output gets every frame in full, one after the other.
            while more():
                console.print(render_snapshot(frame(), title=title, width=console.width))
                refreshes += 1
                if more():
                    time.sleep(interval)
            return EXIT_OK
        from rich.live import Live

        with Live(console=console, auto_refresh=False, transient=False) as live:
            while more():
                live.update(
                    render_snapshot(frame(), title=title, width=console.width), refresh=True
                )
                refreshes += 1
                if more():
                    time.sleep(interval)
    return EXIT_OK


# ------------------------------------------------------------------------ parser


def _database_options() -> _Parser:
    parent = _Parser(add_help=False)
    group = parent.add_argument_group("database")
    group.add_argument(
        "--database-url",
        metavar="URL",
        help="PostgreSQL URL (default: $DATABASE_URL, else the embedded PostgreSQL)",
    )
    group.add_argument(
        "--app",
        metavar="MODULE:NAME",
        help="take the database from your application instead: its Engine or AsyncEngine, "
        "URL or URL string, or a function returning one, e.g. myapp.db:engine",
    )
    group.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data directory of the embedded PostgreSQL (default: under your user data dir)",
    )
    group.add_argument(
        "--keep-server",
        action="store_true",
        help="leave the embedded PostgreSQL running after this command if it starts it",
    )
    group.add_argument(
        "--model",
        metavar="MODULE:CLASS",
        help="your JobMixin model, if not sqla_jobqueue.Job (table jobs)",
    )
    return parent


def _json_option() -> _Parser:
    parent = _Parser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print JSON for machines")
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sqla-jobqueue`` and its commands."""
    from . import __version__

    parser = _Parser(
        prog=PROG,
        description="Look at and operate a sqla_jobqueue job table; run workers and the demo.",
        epilog="Durations: 30s, 5m, 2h, 7d, 1w, 250ms, 1h30m.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    db = _database_options()
    js = _json_option()

    def command(
        name: str,
        handler: Callable[[argparse.Namespace], int],
        help: str,
        parents: Sequence[_Parser] = (),
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, parents=list(parents))
        sub.set_defaults(handler=handler)
        return sub

    sub = command(
        "status", _cmd_status, "counts by type and state, throughput, stale jobs", [db, js]
    )
    sub.add_argument(
        "--stale-after",
        type=_duration,
        default=DEFAULT_STALE_TIMEOUT,
        metavar="DURATION",
        help="a held job with no heartbeat for this long is stale (default 1m, as workers)",
    )

    sub = command("watch", _cmd_watch, "live progress bars of running jobs until Ctrl-C", [db, js])
    sub.add_argument(
        "--interval",
        type=_duration,
        default=timedelta(seconds=1),
        metavar="DURATION",
        help="time between refreshes (default 1s)",
    )
    sub.add_argument(
        "--count",
        type=_positive_int,
        metavar="N",
        help="stop after N refreshes (default: until Ctrl-C)",
    )
    sub.add_argument("--type", type=_names, metavar="A,B", help="only these job types")
    sub.add_argument(
        "--limit",
        type=_positive_int,
        default=20,
        metavar="N",
        help="show at most N jobs (default 20)",
    )

    sub = command("list", _cmd_list, "the most recent jobs, newest first", [db, js])
    sub.add_argument(
        "--status",
        type=_statuses,
        metavar="S[,S]",
        help=f"only these states ({', '.join(_STATUSES)})",
    )
    sub.add_argument("--type", type=_names, metavar="A[,B]", help="only these job types")
    sub.add_argument(
        "--limit", type=_positive_int, default=20, metavar="N", help="at most N jobs (default 20)"
    )

    sub = command("show", _cmd_show, "everything about one job, with its last error", [db, js])
    sub.add_argument(
        "id", type=_job_id, help="the job's id, or its first or last 8 or more hex digits"
    )

    sub = command("enqueue", _cmd_enqueue, "add a job", [db, js])
    sub.add_argument("job_type", metavar="TYPE", help="the job type (which handler runs it)")
    sub.add_argument(
        "--data",
        type=_json_object,
        metavar="JSON",
        help="the job's arguments, a JSON object (default {})",
    )
    sub.add_argument(
        "--priority",
        type=_priority,
        default=int(Priority.DISCOVERED),
        metavar="N",
        help="higher runs first: a number or explicit (150), "
        "discovered (100, default), backfill (30)",
    )
    sub.add_argument(
        "--run-at",
        type=_run_at,
        metavar="T",
        help="not before T: a delay (10m) or an ISO time with zone",
    )
    sub.add_argument(
        "--max-attempts",
        type=_positive_int,
        default=3,
        metavar="N",
        help="attempts before it ends as failed (default 3)",
    )
    sub.add_argument(
        "--unique-key",
        metavar="KEY",
        help="at most one live job per key: return the live one instead",
    )

    sub = command("cancel", _cmd_cancel, "cancel a job that has not finished", [db, js])
    sub.add_argument(
        "id", type=_job_id, help="the job's id, or its first or last 8 or more hex digits"
    )
    sub = command("retry", _cmd_retry, "send a failed job back to pending", [db, js])
    sub.add_argument(
        "id", type=_job_id, help="the job's id, or its first or last 8 or more hex digits"
    )

    sub = command(
        "recover", _cmd_recover, "return held jobs with a stale heartbeat to pending", [db, js]
    )
    sub.add_argument(
        "--timeout",
        type=_duration,
        default=DEFAULT_STALE_TIMEOUT,
        metavar="DURATION",
        help="no heartbeat for this long (default 1m, the workers' stale timeout)",
    )

    sub = command("prune", _cmd_prune, "delete finished jobs older than a duration", [db, js])
    sub.add_argument(
        "--older-than",
        type=_duration,
        required=True,
        metavar="DURATION",
        help="finished longer ago than this, e.g. 7d",
    )
    sub.add_argument(
        "--limit", type=_positive_int, metavar="N", help="delete at most N jobs in this run"
    )

    command(
        "migrate",
        _cmd_migrate,
        "create or upgrade the jobs table through the packaged Alembic environment",
        [db, js],
    )

    sub = command(
        "init-alembic",
        _cmd_init_alembic,
        "copy a ready Alembic environment for a project without one",
        [js],
    )
    sub.add_argument("directory", metavar="DIR", help="where to put env.py and versions/")
    sub.add_argument(
        "--ini", metavar="PATH", help="where to write alembic.ini (default: beside DIR)"
    )

    sub = command("worker", _cmd_worker, "run jobs with the handlers of a registry", [db])
    sub.add_argument(
        "target",
        metavar="TARGET",
        help="your registry as module:attribute, e.g. myapp.jobs:registry",
    )
    sub.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        metavar="N",
        help="jobs run at once (default 4)",
    )
    sub.add_argument(
        "--types",
        type=_names,
        metavar="A,B",
        help="only these job types (default: every type in the registry)",
    )
    sub.add_argument(
        "--batch-size",
        type=_positive_int,
        metavar="N",
        help="most jobs claimed at once (default: free slots)",
    )
    sub.add_argument(
        "--poll-interval",
        type=_duration,
        metavar="DURATION",
        help="look for due jobs at least this often (LISTEN wakes it sooner)",
    )
    sub.add_argument(
        "--grace-period",
        type=_duration,
        metavar="DURATION",
        help="on SIGTERM, how long running jobs may take to finish (default 30s)",
    )
    sub.add_argument(
        "--heartbeat-interval",
        type=_duration,
        metavar="DURATION",
        help="how often running jobs' heartbeat is refreshed (default 10s)",
    )
    sub.add_argument(
        "--stale-timeout",
        type=_duration,
        metavar="DURATION",
        help="heartbeat age after which a job is rescued (default 1m); at least three "
        "heartbeat intervals, so under 30s needs a shorter --heartbeat-interval",
    )
    sub.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default INFO",
    )

    sub = command(
        "demo",
        _cmd_demo,
        "run a demo workload with live progress on the embedded PostgreSQL",
        [db, js],
    )
    sub.add_argument(
        "--jobs", type=_positive_int, default=300, metavar="N", help="how many jobs (default 300)"
    )
    sub.add_argument(
        "--workers",
        type=_positive_int,
        default=4,
        metavar="N",
        help="how many workers (default 4, two jobs at a time each)",
    )

    sub = command(
        "server",
        _cmd_server,
        "start the embedded PostgreSQL, keep it running and print its URL",
        [js],
    )
    sub.add_argument(
        "--data-dir", metavar="DIR", help="its data directory (default: under your user data dir)"
    )
    sub.add_argument("--stop", action="store_true", help="stop it instead")
    return parser


def _cmd_worker(args: argparse.Namespace) -> int:
    from .worker import Worker

    registry = _registry(args.target)
    unknown = [t for t in args.types or () if t not in registry]
    if unknown:
        raise _UsageError(
            f"--types names {', '.join(unknown)}, which {args.target} has no handler for; "
            f"it handles {', '.join(registry.job_types)}"
        )
    options: dict[str, Any] = {
        "model": _model(args),
        "job_types": args.types,
        "concurrency": args.concurrency,
        "batch_size": args.batch_size,
    }
    for name in ("poll_interval", "heartbeat_interval", "grace_period", "stale_timeout"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    # Worker() checks its settings without touching the database: check them on an engine
    # that never connects, so bad settings do not first start (or initialise) a server.
    unconnected = create_engine("postgresql+psycopg://")
    try:
        Worker(unconnected, registry, **options)
    finally:
        unconnected.dispose()
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    with _database(args, pool_size=args.concurrency + 3) as engine:
        worker = Worker(engine, registry, **options)
        # This process only runs the worker: keep what start-up built (modules, models, the
        # registry) out of the collector's full passes, which otherwise walk it all again
        # every few thousand jobs (about a quarter of a no-op job's CPU, docs/benchmarks.md).
        gc.collect()
        gc.freeze()
        try:
            return worker.run()
        except JobQueueError as error:
            if isinstance(error.__cause__, DBAPIError):
                # A missing table: told like every other command's, with the --model hint.
                raise error.__cause__ from None
            raise


DEMO_MAX_JOBS = 20_000
"""Most jobs ``demo`` enqueues."""
DEMO_MAX_WORKERS = 16
"""Most workers ``demo`` runs (each holds a few connections and a LISTEN connection)."""
_DEMO_CONCURRENCY = 2


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import demo
    from .worker import Worker

    if args.workers > DEMO_MAX_WORKERS:
        raise _UsageError(f"--workers must be at most {DEMO_MAX_WORKERS}, got {args.workers}")
    if args.jobs > DEMO_MAX_JOBS:
        raise _UsageError(f"--jobs must be at most {DEMO_MAX_JOBS}, got {args.jobs}")
    console = _console()
    pool = args.workers * (_DEMO_CONCURRENCY + 2)
    with _database(args, pool_size=pool) as engine:
        # The embedded database is migrated by _database(); a database given by URL is not,
        # and the demo must also run on a fresh one.
        if not inspect(engine).has_table(Job.__tablename__):
            _migrate(engine)
        with Session(engine) as session, session.begin():
            # The workers claim by job type: demo jobs an interrupted run left unfinished
            # run too, so they are counted and shown with this run's own.
            earlier = demo.unfinished(session)
            ids = earlier + demo.enqueue(session, args.jobs)
        if not args.json:
            console.print(
                f"Enqueued {args.jobs} demo jobs: render_report (priority 150), sync_feed (100), "
                f"backfill_thumbnails (30); running them on {args.workers} workers. The "
                "handlers sleep (20 ms to 1.5 s) to show progress, so the jobs per second "
                "here are not the queue's throughput (docs/benchmarks.md)."
            )
            if earlier:
                console.print(
                    f"{len(earlier)} demo jobs left unfinished by an earlier run run too: "
                    f"{len(ids)} jobs in all."
                )
        workers = [
            Worker(
                engine,
                demo.registry,
                concurrency=_DEMO_CONCURRENCY,
                poll_interval=timedelta(milliseconds=200),
                progress_interval=timedelta(milliseconds=100),
                # Rescue stuck jobs like any worker, but never prune someone's history.
                retention=None,
                worker_id=f"demo-{index + 1}:{os.getpid()}",
                grace_period=timedelta(seconds=10),
            )
            for index in range(args.workers)
        ]
        started = time.monotonic()
        interrupted = False
        running: list[Any] = []
        elapsed = 0.0
        try:
            for worker in workers:
                worker.start()
                running.append(worker)
            elapsed = _demo_progress(engine, ids, console, quiet=args.json, started=started)
        except KeyboardInterrupt:
            interrupted = True
            _say("Interrupted: running jobs finish, the others go back to pending...")
        finally:
            _stop_workers(running)
        if interrupted:
            elapsed = time.monotonic() - started
        with Session(engine) as session:
            summary = demo_summary(session, ids)
    totals = {status: 0 for status in _STATUSES}
    for row in summary.values():
        for status in _STATUSES:
            totals[status] += row[status]
    finished = totals["completed"] + totals["failed"] + totals["cancelled"]
    if args.json:
        _print_json(
            {
                "jobs": len(ids),
                "enqueued": args.jobs,
                "earlier_unfinished": len(earlier),
                "workers": args.workers,
                "elapsed_seconds": round(elapsed, 3),
                "jobs_per_second": round(_rate(finished, elapsed), 2),
                "totals": totals,
                "by_type": summary,
                "interrupted": interrupted,
            }
        )
    else:
        print_demo_summary(console, summary, totals, elapsed)
        if interrupted:
            left = totals["pending"] + totals["claimed"] + totals["running"]
            console.print(
                f"Stopped early: {left} jobs are left pending; a worker finishes them "
                "(sqla-jobqueue worker sqla_jobqueue.demo:registry)."
            )
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def _stop_workers(workers: Sequence[Any]) -> None:
    """Stop started workers gracefully; a second Ctrl-C (or a stuck one) stops them at once."""
    if not workers:
        return
    for worker in workers:
        worker.stop()
    deadline = time.monotonic() + max(float(w.grace_period) for w in workers) + 30.0
    try:
        stuck = [w for w in workers if not w.join(max(deadline - time.monotonic(), 0.1))]
    except KeyboardInterrupt:
        stuck = list(workers)
    for worker in stuck:
        worker.stop(graceful=False)
    for worker in stuck:
        if not worker.join(timeout=10):
            _say(f"worker {worker.worker_id} did not stop; its jobs come back through rescue")


def _rate(finished: int, elapsed: float) -> float:
    """The demo's jobs per second, the same in its live view and in its summary."""
    return finished / elapsed if elapsed > 0 else 0.0


def _demo_progress(
    engine: Engine,
    ids: Sequence[uuid.UUID],
    console: Console,
    *,
    quiet: bool,
    started: float,
) -> float:
    """Show the demo's jobs until none is pending or held; return the seconds from
    ``started`` to the last frame, when the last job had finished."""
    from .model import Job

    title = "sqla-jobqueue demo (Ctrl-C to stop)"
    refresh = 0.2
    elapsed = 0.0

    def frame() -> Snapshot:
        nonlocal elapsed
        with Session(repeatable_read(engine)) as session:
            snapshot = take_snapshot(session, Job, ids=ids, limit=12)
        elapsed = time.monotonic() - started
        return snapshot

    def finished(snapshot: Snapshot) -> int:
        t = snapshot.totals
        return t["completed"] + t["failed"] + t["cancelled"]

    def live_jobs(snapshot: Snapshot) -> int:
        t = snapshot.totals
        left = t["pending"] + t["claimed"] + t["running"]
        watch_for_stall(left)
        return left

    stall = {"left": -1, "since": time.monotonic(), "told": False}

    def watch_for_stall(left: int) -> None:
        now = time.monotonic()
        if left != stall["left"]:
            stall.update(left=left, since=now, told=False)
        elif left and not stall["told"] and now - float(stall["since"]) > 30:
            stall["told"] = True
            _say(
                f"No demo job has finished for 30s ({left} left); `sqla-jobqueue status` "
                "and `sqla-jobqueue list --status running` show where they are."
            )

    if quiet or not console.is_terminal:
        last_line = -1.0
        while True:
            snapshot = frame()
            if not quiet and (elapsed - last_line >= 1.0 or not live_jobs(snapshot)):
                t = snapshot.totals
                console.print(
                    f"{elapsed:5.1f}s  done {t['completed']} · failed {t['failed']} · "
                    f"running {t['running']} · pending {t['pending']} of {len(ids)} · "
                    f"{_rate(finished(snapshot), elapsed):.1f} jobs/s"
                )
                last_line = elapsed
            if not live_jobs(snapshot):
                return elapsed
            time.sleep(refresh)
    from rich.live import Live

    with Live(console=console, auto_refresh=False, transient=False) as live:
        while True:
            snapshot = frame()
            live.update(
                render_snapshot(
                    snapshot,
                    title=title,
                    total=len(ids),
                    width=console.width,
                    rate=_rate(finished(snapshot), elapsed),
                ),
                refresh=True,
            )
            if not live_jobs(snapshot):
                return elapsed
            time.sleep(refresh)


# -------------------------------------------------------------------------- main


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sqla-jobqueue`` with ``argv`` (default: the process's arguments).

    Returns the exit code: 0 success, 1 failure (missing job, wrong state, database
    unreachable), 2 bad arguments, 130 interrupted.
    """
    try:
        import rich  # noqa: F401
    except ImportError:
        _say(f"{PROG}: error: the command line needs rich: pip install 'sqla-jobqueue[cli]'")
        return EXIT_FAILURE
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM ends a command like Ctrl-C, so an embedded server it started is stopped.
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, _interrupt)
    prefix = f"{PROG} {args.command}: error:"
    try:
        return int(args.handler(args))
    except (_UsageError, InvalidJobError, ModelError, DataDirectoryError) as error:
        _say(f"{prefix} {_one_line(str(error))}")
        return EXIT_USAGE
    except (JobNotFoundError, InvalidTransitionError) as error:
        _say(f"{prefix} {_one_line(str(error))}")
        return EXIT_FAILURE
    except JobQueueError as error:
        _say(f"{prefix} {_one_line(str(error))}")
        return EXIT_FAILURE
    except DBAPIError as error:
        _say(f"{prefix} {_database_error(error, model_given=bool(getattr(args, 'model', None)))}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        _say(f"{PROG} {args.command}: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
