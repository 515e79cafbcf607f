"""What both workers do alike to start and stop: stop signals, backoff after a database
error and its log line, the error for a job table that cannot be read, the start line."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import Connection, Table
from sqlalchemy.exc import DBAPIError

from ..errors import JobQueueError
from .outcomes import first_line
from .settings import WorkerSettings

__all__ = [
    "StopSignals",
    "log_db_error",
    "log_start",
    "missing_table_error",
    "next_backoff",
    "warn_if_sessions_isolated",
]

log = logging.getLogger("sqla_jobqueue.worker")

MAX_BACKOFF = 5.0


class StopSignals:
    """SIGTERM and SIGINT while a worker runs on the main thread: the first stops it
    gracefully, a second stops it at once."""

    def __init__(
        self, stop: Callable[..., None], stopping: Callable[[], bool], grace_period: float
    ) -> None:
        self._stop = stop
        self._stopping = stopping
        self._grace_period = grace_period
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Handle the signals (only on the main thread; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def restore(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def received(self, signum: int) -> None:
        """React to ``signum`` (also what the asyncio worker's loop handlers call)."""
        name = signal.Signals(signum).name
        if self._stopping():
            log.warning("%s again: stopping at once; running jobs come back through rescue",
                        name)  # fmt: skip
            self._stop(graceful=False)
        else:
            log.info("%s: finishing running jobs (grace period %.0fs); send it again to stop "
                     "at once", name, self._grace_period)  # fmt: skip
            self._stop()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received(signum)


def next_backoff(backoff: float, first: float) -> float:
    """The wait after another failure: ``first``, then doubling up to 5 seconds."""
    return min(max(backoff * 2, first), MAX_BACKOFF)


def log_db_error(doing: str, exc: BaseException, backoff: float) -> None:
    """Log a failure of a loop that tries again in ``backoff`` seconds."""
    if isinstance(exc, DBAPIError):
        log.warning("database error while %s (%s); retrying in %.1fs",
                    doing, first_line(exc.orig or exc), backoff)  # fmt: skip
    else:
        log.exception("unexpected error while %s; retrying in %.1fs", doing, backoff)


def missing_table_error(table: Table, exc: DBAPIError) -> JobQueueError:
    """The error of a worker whose job table cannot be read, with what to do."""
    return JobQueueError(
        f"cannot read the job table {table.fullname!r}: {first_line(exc.orig or exc)}; if "
        "your job model maps another table, give it as the worker's model (Worker(engine, "
        "registry, model=YourJob), or --model MODULE:CLASS); otherwise run the migrations "
        "first (sqla-jobqueue migrate, or alembic upgrade head)"
    )


_ISOLATED = ("REPEATABLE READ", "SERIALIZABLE")


def warn_if_sessions_isolated(connection: Connection, sessions_engine: Any) -> None:
    """Warn when handlers' sessions would run above READ COMMITTED (a sessionmaker given to
    the worker): a heartbeat on a job's row then makes its completion in ``ctx.session``
    fail with a serialization error. ``connection`` has connected, so the dialect knows
    the server's default level."""
    if sessions_engine is None:
        return
    options = sessions_engine.get_execution_options()
    level = options.get("isolation_level") or connection.dialect.default_isolation_level
    if str(level).upper() in _ISOLATED:
        log.warning(
            "handlers' sessions run at %s: a job whose handler uses ctx.session fails to "
            "complete whenever a heartbeat touched its row meanwhile; give the worker a "
            "sessionmaker bound to engine.execution_options(isolation_level='READ "
            "COMMITTED')", level,
        )  # fmt: skip


def log_start(settings: WorkerSettings, kind: str = "worker") -> None:
    """The worker's start line: who it is and how it runs."""
    log.info(
        "%s %s started: types %s, concurrency %d, batch %d, polling every %gs, "
        "heartbeat every %gs, %s",
        kind, settings.worker_id, ",".join(settings.job_types), settings.concurrency,
        settings.batch_size, settings.poll_interval, settings.heartbeat_interval,
        _listening(settings),
    )  # fmt: skip


def _listening(settings: WorkerSettings) -> str:
    if not settings.listen:
        return "no LISTEN"
    if settings.listen_conninfo is None:
        return "LISTEN through the engine"
    where = conninfo_to_dict(settings.listen_conninfo)
    return f"LISTEN at {where.get('host', 'localhost')}:{where.get('port', 5432)}"
