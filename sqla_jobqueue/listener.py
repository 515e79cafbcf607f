"""Wake-up on enqueue: LISTEN on a dedicated connection, with polling as the fallback.

The migration installs a statement-level trigger that runs ``pg_notify(channel,
job_type)`` for every distinct type inserted; PostgreSQL delivers the notification when
the enqueuing transaction commits. A :class:`Listener` holds one psycopg connection
outside the engine's pool in autocommit mode (the worker has its engine make it, so
``connect_args``, a ``creator`` and connect events apply), ``LISTEN``\\ s on the job
table's channel (:attr:`QueueObjects.channel <sqla_jobqueue.sql.QueueObjects.channel>`) and calls a
callback with the job type of each notification, so an idle worker claims at once
instead of at its next poll.

When the connection is lost (the server restarted, an administrator terminated it) the
listener logs a warning, waits with exponential backoff and reconnects; the worker keeps
finding jobs by polling meanwhile. After every (re)connection the callback is called with
``None``, because notifications sent while nobody listened are gone.

A LISTEN through a transaction pooler (PgBouncer's ``pool_mode = transaction``) hears
nothing: the server session that listened serves other clients between transactions. So
once listening, a worker sends a notification of its own through its engine
(:func:`probe`) and warns (:data:`DEAF`) when the listener has not heard it within
:data:`PROBE_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Table, TextClause, text

from .model import claim_function_name
from .sql import QueueObjects

__all__ = ["DEAF", "PROBE_TIMEOUT", "AsyncListener", "Listener", "channel_of", "probe"]

log = logging.getLogger(__name__)

APPLICATION_NAME = "sqla_jobqueue listener"
"""``application_name`` of listener connections, to find them in ``pg_stat_activity``."""
_WAIT_SLICE = 0.5
_LOST = "listener connection lost (%s); polling meanwhile, reconnecting in %.1fs"
_MAX_BACKOFF = 10.0


_CURRENT_SCHEMA = "SELECT current_schema()"

PROBE_TIMEOUT = 5.0
"""Seconds a listener has to hear the worker's own notification."""
DEAF = (
    "LISTEN heard nothing within %gs of a notification the worker sent through its engine: "
    "is the listener's connection going through a transaction pooler (PgBouncer with "
    "pool_mode = transaction), where LISTEN hears nothing? Give the worker a URL straight to "
    "PostgreSQL to listen on (listen=URL, --listen-url), or poll only (listen=False, "
    "--no-listen); until then it finds new jobs by polling every %gs"
)


def probe(channel: str) -> tuple[TextClause, dict[str, str]]:
    """The statement that sends an empty notification on ``channel``, through whatever
    connection runs it; a listener takes it as a reconnection (a claim at once)."""
    return text("SELECT pg_notify(:channel, '')"), {"channel": channel}


def channel_of(table: Table, schema: str) -> str:
    """The channel the enqueue trigger of ``table`` (in ``schema``) notifies."""
    return QueueObjects(schema, table.name, claim_function_name(table)).channel


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Listener:
    """LISTEN for enqueues on one channel in a background thread.

    Parameters
    ----------
    connect:
        A libpq connection string or ``postgresql://`` URL, or a function returning a new
        psycopg connection that nothing else uses (the listener sets it to autocommit and
        closes it).
    table:
        The job table whose enqueues to listen for; without a schema, the connection's
        ``current_schema()`` resolves it, as the migration did.
    on_notify:
        Called from the listener's thread with the notified job type, or with ``None``
        after each (re)connection. It must be quick.
    """

    def __init__(
        self,
        connect: str | Callable[[], psycopg.Connection[Any]],
        table: Table,
        on_notify: Callable[[str | None], None],
    ) -> None:
        self.connect = connect
        self.table = table
        self.channel: str | None = None
        """The channel, known once connected."""
        self.on_notify = on_notify
        self.listening = threading.Event()
        """Set while the LISTEN is in place."""
        self.heard = threading.Event()
        """Set by the first notification received."""
        self.reconnects = 0
        """How many times the connection was lost and listening started again."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start listening in a daemon thread."""
        self._thread = threading.Thread(
            target=self._run, name="sqla_jobqueue-listener", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop listening and close the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _connection(self) -> psycopg.Connection[Any]:
        if isinstance(self.connect, str):
            return psycopg.connect(self.connect, autocommit=True, application_name=APPLICATION_NAME)
        connection = self.connect()
        try:
            connection.rollback()
            connection.autocommit = True
            connection.execute("SELECT set_config('application_name', %s, false)",
                               (APPLICATION_NAME,))  # fmt: skip
        except BaseException:
            connection.close()
            raise
        return connection

    def _channel(self, connection: psycopg.Connection[Any]) -> str:
        schema = self.table.schema
        if schema is None:
            row = connection.execute(_CURRENT_SCHEMA).fetchone()
            schema = str(row[0]) if row else "public"
        return channel_of(self.table, schema)

    def _run(self) -> None:
        backoff = 0.2
        lost = False
        while not self._stop.is_set():
            try:
                with self._connection() as connection:
                    self.channel = self._channel(connection)
                    connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self.listening.set()
                    if lost:
                        self.reconnects += 1
                        log.warning("listener reconnected; listening on %s again", self.channel)
                    lost = False
                    backoff = 0.2
                    self.on_notify(None)
                    while not self._stop.is_set():
                        for notification in connection.notifies(timeout=_WAIT_SLICE):
                            self.heard.set()
                            self.on_notify(notification.payload or None)
            except psycopg.Error as exc:
                self.listening.clear()
                if self._stop.is_set():
                    break
                lost = True
                log.warning(_LOST, _first_line(exc), backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
            except Exception:
                self.listening.clear()
                log.exception("listener failed unexpectedly; retrying in %.1fs", backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
        self.listening.clear()


class AsyncListener:
    """:class:`Listener` for an asyncio worker: LISTEN on psycopg's ``AsyncConnection`` in
    a task of the running event loop.

    Parameters
    ----------
    connect:
        A coroutine function returning a new ``psycopg.AsyncConnection`` that nothing else
        uses (the listener sets it to autocommit and closes it).
    table, on_notify:
        As for :class:`Listener`; ``on_notify`` is called on the event loop.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]],
        table: Table,
        on_notify: Callable[[str | None], None],
    ) -> None:
        self.connect = connect
        self.table = table
        self.channel: str | None = None
        """The channel, known once connected."""
        self.on_notify = on_notify
        self.listening = threading.Event()
        """Set while the LISTEN is in place."""
        self.heard = threading.Event()
        """Set by the first notification received."""
        self.reconnects = 0
        """How many times the connection was lost and listening started again."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start listening in a task of the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="listener")

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.listening.clear()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        connection = await self.connect()
        try:
            await connection.rollback()
            await connection.set_autocommit(True)
            await connection.execute("SELECT set_config('application_name', %s, false)",
                                     (APPLICATION_NAME,))  # fmt: skip
        except BaseException:
            await connection.close()
            raise
        return connection

    async def _run(self) -> None:
        backoff = 0.2
        lost = False
        while True:
            try:
                async with await self._connection() as connection:
                    schema = self.table.schema
                    if schema is None:
                        row = await (await connection.execute(_CURRENT_SCHEMA)).fetchone()
                        schema = str(row[0]) if row else "public"
                    self.channel = channel_of(self.table, schema)
                    listen = sql.SQL("LISTEN {}").format(sql.Identifier(self.channel))
                    await connection.execute(listen)
                    self.listening.set()
                    if lost:
                        self.reconnects += 1
                        log.warning("listener reconnected; listening on %s again", self.channel)
                    lost = False
                    backoff = 0.2
                    self.on_notify(None)
                    async for notification in connection.notifies():
                        self.heard.set()
                        self.on_notify(notification.payload or None)
            except psycopg.Error as exc:
                self.listening.clear()
                lost = True
                log.warning(_LOST, _first_line(exc), backoff)
            except Exception:
                self.listening.clear()
                log.exception("listener failed unexpectedly; retrying in %.1fs", backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)
