"""Shared fixtures: a real PostgreSQL and a fresh database for every test.

The server is found by :func:`sqla_jobqueue.testing.postgres_server`: the
``SQLA_JOBQUEUE_TEST_DATABASE_URL`` (or ``DATABASE_URL``) environment variable, else a
testcontainers PostgreSQL when Docker answers, else an embedded PostgreSQL in a temporary
directory.

Isolation: once per run, a template database is migrated to head through the packaged
Alembic environment (the ``jobs`` table and ``claim_job_batch``). Each test that asks for
``database_url`` gets its own database cloned from that template (``CREATE DATABASE …
TEMPLATE``), dropped afterwards; ``empty_database_url`` is a clone of ``template0`` for
tests that run migrations themselves. Tests may therefore commit, run many connections
and worker processes, and never see each other's rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue.alembic import upgrade
from sqla_jobqueue.testing import create_database, drop_database, postgres_server


def pytest_report_header(config: pytest.Config) -> str:
    return "sqla_jobqueue: PostgreSQL from $SQLA_JOBQUEUE_TEST_DATABASE_URL, Docker or embedded"


@pytest.fixture(scope="session")
def server_url() -> Iterator[URL]:
    """The URL of the PostgreSQL server the suite runs against."""
    with postgres_server() as (url, source):
        engine = create_engine(url)
        with engine.connect() as connection:
            version = connection.exec_driver_sql("SHOW server_version").scalar()
        engine.dispose()
        print(f"\nsqla_jobqueue tests: PostgreSQL {version} ({source})")
        yield url


@pytest.fixture(scope="session")
def template_database(server_url: URL) -> Iterator[str]:
    """A database migrated to head, cloned for each test."""
    url = create_database(server_url, prefix="sqla_jobqueue_template")
    engine = create_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    assert url.database is not None
    yield url.database
    drop_database(server_url, url)


@pytest.fixture
def database_url(server_url: URL, template_database: str) -> Iterator[URL]:
    """A database of this test's own with the ``jobs`` table and its claim function."""
    url = create_database(server_url, template=template_database)
    yield url
    drop_database(server_url, url)


@pytest.fixture
def empty_database_url(server_url: URL) -> Iterator[URL]:
    """An empty database of this test's own."""
    url = create_database(server_url, template="template0")
    yield url
    drop_database(server_url, url)


@pytest.fixture
def engine(database_url: URL) -> Iterator[Engine]:
    engine = create_engine(database_url, pool_size=10, max_overflow=10)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
