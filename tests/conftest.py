"""Shared fixtures: a real PostgreSQL and a fresh database for every test.

The server is found by :func:`sqla_jobqueue.testing.server.postgres_server`: the
``SQLA_JOBQUEUE_TEST_DATABASE_URL`` (or ``DATABASE_URL``) environment variable, else a
testcontainers PostgreSQL when Docker answers, else an embedded PostgreSQL in a temporary
directory. ``SQLA_JOBQUEUE_TEST_SERVER=url|docker|embedded`` demands one of them (CI sets
it): the run fails rather than test another.

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
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue.alembic import upgrade
from sqla_jobqueue.errors import JobQueueError
from sqla_jobqueue.testing.server import (
    TEST_SERVER_VARIABLE,
    configured_server_url,
    create_database,
    docker_available,
    drop_database,
    postgres_server,
    required_server_kind,
    server_version,
    shown_url,
)
from tests.reliability.battery import FIGURES_FILE, SOAK

_USED = pytest.StashKey[str]()
"""What the suite ran against, once a test started the server: reported at the end."""


def pytest_report_header(config: pytest.Config) -> str:
    """Which PostgreSQL the suite will use (never its password).

    The header is printed before any fixture runs: a server named by the environment is
    asked its version now; a container or an embedded server is only started when a test
    needs it, so its version is reported in the terminal summary.
    """
    try:
        kind = required_server_kind()
    except JobQueueError as exc:
        raise pytest.UsageError(str(exc)) from None
    given = configured_server_url()
    if given is None:
        if kind == "embedded":
            where = f"an embedded PostgreSQL (${TEST_SERVER_VARIABLE}=embedded)"
        elif kind == "docker" or docker_available():
            where = "a testcontainers PostgreSQL (Docker answers)"
        else:
            where = "an embedded PostgreSQL (no test URL set, no Docker)"
        return f"sqla_jobqueue: {where}, started when a test needs it"
    url, variable = given
    try:
        found = f"PostgreSQL {server_version(url)}"
    except DBAPIError as exc:
        found = f"no answer ({_first_line(exc)})"
    return f"sqla_jobqueue: {found} at {shown_url(url)} (from ${variable})"


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig or exc).strip().splitlines()[0]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    used = terminalreporter.config.stash.get(_USED, None)
    if used is not None:
        terminalreporter.write_line(f"sqla_jobqueue: the tests ran against {used}")
    figures = terminalreporter.config.stash.get(FIGURES_FILE, None)
    if figures is not None and figures.exists():
        tier = "soak" if SOAK else "quick"
        terminalreporter.write_line(f"sqla_jobqueue: reliability figures ({tier}) in {figures}:")
        for line in figures.read_text().splitlines():
            terminalreporter.write_line(f"  {line}")


@pytest.fixture(scope="session")
def server_url(pytestconfig: pytest.Config) -> Iterator[URL]:
    """The URL of the PostgreSQL server the suite runs against."""
    with postgres_server() as (url, source):
        try:
            version = server_version(url)
        except DBAPIError as exc:
            version = ""
            problem = _first_line(exc)
        if not version:
            # One line, without the traceback, whose frames would show the password.
            pytest.fail(f"cannot reach the test PostgreSQL at {shown_url(url)} ({source}): "
                        f"{problem}", pytrace=False)  # fmt: skip
        pytestconfig.stash[_USED] = f"PostgreSQL {version} at {shown_url(url)} ({source})"
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
