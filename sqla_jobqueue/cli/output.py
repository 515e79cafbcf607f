"""What commands print: JSON for machines on stdout, rich tables for people, notices on
stderr (so that stdout stays parseable), every error on one line.

rich (the ``cli`` extra) is needed only for tables and live views: a plain install runs
``sqla-jobqueue worker`` and every ``--json`` report.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect

from ..model import JobMixin, JobStatus
from .exits import Failure

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "console",
    "echo",
    "error_line",
    "job_dict",
    "jsonable",
    "one_line",
    "print_json",
    "say",
    "when",
]


def console(*, stderr: bool = False) -> Console:
    """A rich console that prints job data as it is: no markup, no emoji codes.

    Raises
    ------
    Failure
        When rich is not installed.
    """
    try:
        from rich.console import Console
    except ImportError:
        raise Failure(
            "printing tables needs rich: pip install 'sqla-jobqueue[cli]' (or use --json)"
        ) from None
    # Job data (stages, worker ids like host:1234:ab) is shown as is.
    printer = Console(stderr=stderr, highlight=False, soft_wrap=False, markup=False, emoji=False)
    if not printer.is_terminal and "COLUMNS" not in os.environ:
        # Output to a file or a pipe is read whole: do not squeeze it into 80 columns.
        printer.width = 200
    return printer


def echo(line: str) -> None:
    """One line for people on stdout."""
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


def say(message: str) -> None:
    """A one-line notice on stderr, so that stdout stays clean for --json."""
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()


def jsonable(value: Any) -> Any:
    """``value`` as JSON holds it: ids and times as strings, durations in seconds."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, JobStatus):
        return value.value
    return value


def print_json(value: Any) -> None:
    """``value`` as one JSON document on one line of stdout."""
    sys.stdout.write(json.dumps(value, default=jsonable, sort_keys=False) + "\n")
    sys.stdout.flush()


def job_dict(job: JobMixin) -> dict[str, Any]:
    """Every column of ``job``, as JSON values."""
    mapper = inspect(type(job))
    return {attr.key: jsonable(getattr(job, attr.key)) for attr in mapper.column_attrs}


def when(moment: datetime | None) -> str:
    """``moment`` in UTC to the second, ``-`` for none."""
    if moment is None:
        return "-"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def one_line(message: str, limit: int = 300) -> str:
    """``message`` on one line, cut at ``limit`` characters."""
    line = " ".join(str(message).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


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
            return one_line(" ".join(lines[indented[-1] + 1 :]))
        return one_line(lines[-1])
    return one_line(last_error)
