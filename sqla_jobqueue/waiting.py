"""Running the plan of ``wait`` on a connection of its own (see :mod:`sqla_jobqueue.plans.waiting`).

Notifications are heard through the driver under the connection: psycopg 3 (sync and
async) and asyncpg. On any other driver :class:`~sqla_jobqueue.plans.waiting.Listen` is
answered ``False`` and the plan reads the job's status every ``poll_interval``. Before the
connection goes back to the pool it stops listening, as it was found.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

from .plans.waiting import Listen, Notice, WaitPlan
from .statements import Bound

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["await_plan", "wait_plan"]


def _listen_sql(channel: str) -> str:
    return 'LISTEN "' + channel.replace('"', '""') + '"'


def wait_plan(connection: Connection, plan: WaitPlan) -> uuid.UUID:
    """Answer the plan on ``connection`` (in autocommit mode) until it returns its value."""
    driver: Any = connection.connection.driver_connection
    psycopg = sys.modules.get("psycopg")
    listening = False
    answer: Any = None
    try:
        while True:
            request = plan.send(answer)
            if isinstance(request, Bound):
                answer = connection.execute(request.statement, request.params)
            elif isinstance(request, Listen):
                listening = psycopg is not None and isinstance(driver, psycopg.Connection)
                if listening:
                    connection.exec_driver_sql(_listen_sql(request.channel))
                answer = listening
            elif isinstance(request, Notice):
                if listening:
                    _hear(driver, request)
                else:
                    time.sleep(request.timeout)
                answer = None
            else:
                raise TypeError(f"wait cannot answer {request!r}")
    except StopIteration as done:
        value: uuid.UUID = done.value
        return value
    finally:
        plan.close()
        if listening:
            connection.exec_driver_sql("UNLISTEN *")


def _hear(driver: Any, notice: Notice) -> None:
    """Return when psycopg hears ``notice.payload``, or after ``notice.timeout``."""
    deadline = time.monotonic() + notice.timeout
    while (remaining := deadline - time.monotonic()) > 0:
        for notification in driver.notifies(timeout=remaining, stop_after=1):
            if notification.payload == notice.payload:
                return


class _AsyncEars:
    """Notifications on an asyncio connection, by driver."""

    def __init__(self, connection: AsyncConnection, driver: Any) -> None:
        self.connection = connection
        self.driver = driver
        self.channel: str | None = None
        self.kind = _driver_kind(driver)
        self.heard: asyncio.Queue[str] = asyncio.Queue()

    def _on_asyncpg_notify(self, *args: Any) -> None:
        # asyncpg calls listeners with (connection, pid, channel, payload).
        self.heard.put_nowait(str(args[3]))

    async def listen(self, channel: str) -> bool:
        if self.kind == "psycopg":
            await self.connection.exec_driver_sql(_listen_sql(channel))
        elif self.kind == "asyncpg":
            await self.driver.add_listener(channel, self._on_asyncpg_notify)
        else:
            return False
        self.channel = channel
        return True

    async def hear(self, notice: Notice) -> None:
        deadline = time.monotonic() + notice.timeout
        while (remaining := deadline - time.monotonic()) > 0:
            if self.channel is None:
                await asyncio.sleep(remaining)
            elif self.kind == "psycopg":
                async for notification in self.driver.notifies(timeout=remaining, stop_after=1):
                    if notification.payload == notice.payload:
                        return
            else:
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(self.heard.get(), remaining) == notice.payload:
                        return

    async def close(self) -> None:
        if self.channel is None:
            return
        if self.kind == "psycopg":
            await self.connection.exec_driver_sql("UNLISTEN *")
        else:
            await self.driver.remove_listener(self.channel, self._on_asyncpg_notify)


def _driver_kind(driver: Any) -> str | None:
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(driver, psycopg.AsyncConnection):
        return "psycopg"
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is not None and isinstance(driver, asyncpg.Connection):
        return "asyncpg"
    return None


async def await_plan(connection: AsyncConnection, plan: WaitPlan) -> uuid.UUID:
    """:func:`wait_plan` for an ``AsyncConnection``."""
    raw = await connection.get_raw_connection()
    ears = _AsyncEars(connection, raw.driver_connection)
    answer: Any = None
    try:
        while True:
            request = plan.send(answer)
            if isinstance(request, Bound):
                answer = await connection.execute(request.statement, request.params)
            elif isinstance(request, Listen):
                answer = await ears.listen(request.channel)
            elif isinstance(request, Notice):
                await ears.hear(request)
                answer = None
            else:
                raise TypeError(f"wait cannot answer {request!r}")
    except StopIteration as done:
        value: uuid.UUID = done.value
        return value
    finally:
        plan.close()
        await ears.close()
