"""Both executors of the repository behind one interface, so that one test body serves
:class:`~sqla_jobqueue.JobQueue` and :class:`~sqla_jobqueue.AsyncJobQueue`.

Not a mock: the async side runs each awaited method on an event loop of its own, against
the same real PostgreSQL, through an ``AsyncSession`` on psycopg's async connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, Executable, Result, event, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from sqla_jobqueue import AsyncJobQueue, JobQueue


class Blocking:
    """An :class:`AsyncJobQueue` whose awaited methods are called as blocking ones."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: AsyncJobQueue[Any]) -> None:
        self.loop = loop
        self.queue = queue

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.queue, name)
        if not asyncio.iscoroutinefunction(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            return self.run(value(*args, **kwargs))

        return call

    def run(self, awaitable: Any) -> Any:
        """Await ``awaitable`` on this queue's event loop and return its value."""
        return self.loop.run_until_complete(awaitable)


def execute(
    queue: Any, statement: str | Executable, params: Mapping[str, Any] | None = None
) -> Result[Any]:
    """Execute ``statement`` (SQL text or a SQLAlchemy statement) in the transaction of a
    queue handed out by :meth:`Executor.begin`, on whichever session it runs; the result
    is buffered."""
    query = text(statement) if isinstance(statement, str) else statement
    if isinstance(queue, Blocking):
        result: Result[Any] = queue.run(queue.queue.session.execute(query, params))
        return result
    assert isinstance(queue, JobQueue)
    return queue.session.execute(query, params)


def orm_session(queue: Any) -> Session:
    """The ORM ``Session`` whose identity map holds the jobs of ``queue``: its own
    ``Session``, or the one an ``AsyncSession`` proxies."""
    if isinstance(queue, Blocking):
        session: Session = queue.queue.session.sync_session
        return session
    assert isinstance(queue, JobQueue)
    return queue.session


class Executor:
    """Opens a transaction on one executor and hands out its queue.

    Parameters
    ----------
    kind:
        ``"sync"`` (a ``Session``) or ``"async"`` (an ``AsyncSession``).
    engine:
        The test's engine (its database is the one both executors use).
    url:
        The database's URL.
    """

    def __init__(self, kind: str, engine: Engine, url: URL) -> None:
        self.kind = kind
        self.engine = engine
        self.async_engine: AsyncEngine | None = None
        if kind == "async":
            # NullPool: every transaction has an event loop of its own, and a pooled
            # connection must not outlive the loop it was made on.
            async_url = url.set(drivername="postgresql+psycopg")
            self.async_engine = create_async_engine(async_url, poolclass=NullPool)

    @property
    def executing_engine(self) -> Engine:
        """The (sync) engine whose events see the statements the queue executes."""
        return self.engine if self.async_engine is None else self.async_engine.sync_engine

    @contextmanager
    def recording(self) -> Iterator[list[str]]:
        """The SQL statements that pass through SQLAlchemy on this executor while the block
        runs, in order (a ``COPY`` streamed on the driver's connection does not)."""
        statements: list[str] = []

        def record(*args: Any) -> None:
            statements.append(args[2])

        watched = self.executing_engine
        event.listen(watched, "before_cursor_execute", record)
        try:
            yield statements
        finally:
            event.remove(watched, "before_cursor_execute", record)

    @contextmanager
    def begin(self, model: Any = None, **options: Any) -> Iterator[Any]:
        """A queue in a new transaction, committed when the block ends, rolled back when
        it raises."""
        if self.async_engine is None:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield JobQueue(session, model, **options)
            return
        loop = asyncio.new_event_loop()
        async_session = AsyncSession(self.async_engine, expire_on_commit=False)
        run: Callable[[Any], Any] = loop.run_until_complete
        try:
            run(async_session.begin())
            try:
                yield Blocking(loop, AsyncJobQueue(async_session, model, **options))
            except BaseException:
                run(async_session.rollback())
                raise
            run(async_session.commit())
        finally:
            run(async_session.close())
            loop.close()

    def beside(self, queue: Any, model: Any = None, **options: Any) -> Any:
        """Another queue in the transaction of ``queue`` (from :meth:`begin`), with its own
        model and options: another worker's, say."""
        if isinstance(queue, Blocking):
            return Blocking(queue.loop, AsyncJobQueue(queue.queue.session, model, **options))
        assert isinstance(queue, JobQueue)
        return JobQueue(queue.session, model, **options)

    def dispose(self) -> None:
        if self.async_engine is not None:
            asyncio.run(self.async_engine.dispose())
