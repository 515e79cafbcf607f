"""The ``sqla-jobqueue`` command line: look at the queue, act on jobs, run workers, the demo.

Each command is a click command in the module of its family, declaring its options with
decorators beside its function: :mod:`.jobs` (enqueue, list, show, cancel, retry),
:mod:`.status` (status, watch), :mod:`.maintenance` (recover, prune), :mod:`.schema`
(migrate, init-alembic), :mod:`.worker`, :mod:`.server` and :mod:`.demo`. The options many
commands share are declared once in :mod:`.options`, the values they take in
:mod:`.params`, the database they open in :mod:`.engine`, what they print in
:mod:`.output`.

Why click: its commands declare their options beside their function and its parameter
types refuse bad input with a message, which is the shape this command line wants; it is
small, pure Python and has no dependency of its own, so it is a base dependency and a
plain install runs ``sqla-jobqueue worker``. typer builds on click through type hints, but
adds typer and its own rendering on top for the same result; argparse (what this was) puts
every option into one long parser function, away from the code that uses it.

Every command that needs a database takes ``--database-url``, or ``--app module:name`` to
take the URL of the application's own engine or settings, or reads ``DATABASE_URL``; with
none it uses the embedded PostgreSQL (migrated on first use) and says so in one line on
stderr. Commands that report take ``--json`` for machines; people get tables. Exit codes:
0 done, 1 failure (a job that does not exist or is in the wrong state, a database that
cannot be reached), 2 bad input, 130 interrupted; every error is one line on stderr.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Sequence

import click
from sqlalchemy.exc import DBAPIError

from .. import __version__
from ..embedded import DataDirectoryError
from ..errors import InvalidJobError, JobQueueError, ModelError
from .bulk import bulk
from .controls import limit, pause, resume, unlimit
from .demo import demo
from .engine import database_error
from .exits import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, BadInput, Failure
from .grants import grants
from .jobs import cancel, enqueue, list_jobs, retry, show
from .maintenance import prune, recover
from .output import one_line, say
from .schema import init_alembic, migrate
from .server import server
from .status import status, watch
from .worker import worker

__all__ = ["PROG", "cli", "main"]

PROG = "sqla-jobqueue"

_BAD_INPUT = (BadInput, InvalidJobError, ModelError, DataDirectoryError)
"""Errors of the operator's input (exit code 2); other JobQueueErrors are failures (1)."""


@click.group(
    PROG,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Durations: 30s, 5m, 2h, 7d, 1w, 250ms, 1h30m.",
    no_args_is_help=False,
)
@click.version_option(__version__, "--version", prog_name=PROG, message="%(prog)s %(version)s")
def cli() -> None:
    """Look at and operate a sqla_jobqueue job table; run workers and the demo."""


for _command in (
    status,
    watch,
    list_jobs,
    show,
    enqueue,
    cancel,
    retry,
    recover,
    prune,
    bulk,
    pause,
    resume,
    limit,
    unlimit,
    migrate,
    init_alembic,
    grants,
    worker,
    demo,
    server,
):
    cli.add_command(_command)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _command_path(args: Sequence[str]) -> str:
    """``sqla-jobqueue`` and the command ``args`` name, down to a group's command
    (``sqla-jobqueue bulk cancel``): the first argument of each level that names one."""
    path, group = [PROG], cli
    for arg in args:
        command = group.commands.get(arg) if not arg.startswith("-") else None
        if command is None:
            continue
        path.append(arg)
        if not isinstance(command, click.Group):
            break
        group = command
    return " ".join(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sqla-jobqueue`` with ``argv`` (default: the process's arguments).

    Returns the exit code: 0 success, 1 failure (missing job, wrong state, database
    unreachable), 2 bad arguments, 130 interrupted.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    # SIGTERM ends a command like Ctrl-C, so an embedded server it started is stopped.
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, _interrupt)
    failed_in = _command_path(args)
    try:
        root = cli.make_context(PROG, args)
        with root:
            return int(cli.invoke(root))
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.UsageError as error:
        where = error.ctx.command_path if error.ctx is not None else failed_in
        say(f"{where}: error: {one_line(error.format_message())} (see {where} --help)")
        return EXIT_USAGE
    except _BAD_INPUT as error:
        say(f"{failed_in}: error: {one_line(str(error))}")
        return EXIT_USAGE
    except (Failure, JobQueueError) as error:
        say(f"{failed_in}: error: {one_line(str(error))}")
        return EXIT_FAILURE
    except DBAPIError as error:
        say(f"{failed_in}: error: {database_error(error, model_given=False)}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        say(f"{failed_in}: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_FAILURE
