"""The database a command was told to use, opened for the command's life.

``--app`` or ``--database-url`` name it (both at once is an error), else ``DATABASE_URL``,
else the embedded PostgreSQL of :mod:`sqla_jobqueue.embedded`, started and migrated on
first use and named in one line on stderr. Only PostgreSQL is accepted. A database error
while the command runs ends it with one line that says what to do.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from ..database import ENVIRONMENT_VARIABLE, postgresql_url, url_from_environment, url_of
from ..errors import JobQueueError
from .exits import BadInput, Failure
from .imports import exception_line, import_object
from .options import DatabaseOptions
from .output import one_line, say

__all__ = ["database_error", "given_url", "migrate", "open_database"]


def _postgresql_url(url: str | URL, source: str) -> URL:
    try:
        return postgresql_url(url)
    except ValueError as error:
        raise BadInput(f"invalid database URL from {source}: {error}") from None


def _app_url(spec: str) -> URL:
    """The URL of the application's engine, URL or settings named by ``--app``."""
    value = import_object(spec, "--app")
    try:
        url = url_of(value)
    except ValueError as error:
        raise BadInput(f"--app {spec!r} names no database: {error}") from None
    except Exception as error:
        raise BadInput(f"calling --app {spec!r} failed: {exception_line(error)}") from None
    return _postgresql_url(url, f"--app {spec}")


def given_url(db: DatabaseOptions) -> URL | None:
    """The database the command was told to use, or None for the embedded default.

    ``DATABASE_URL`` is used when neither ``--app`` nor ``--database-url`` is given; beside
    ``--app`` (whose settings often read it) it must name the same database.
    """
    environment = url_from_environment()
    if db.app and db.database_url:
        raise BadInput("--app and --database-url both name a database: give only one")
    if db.app:
        url = _app_url(db.app)
        if environment:
            other = _postgresql_url(environment, ENVIRONMENT_VARIABLE)
            if other != url:
                raise BadInput(
                    f"--app {db.app} names {url.render_as_string(hide_password=True)} but "
                    f"{ENVIRONMENT_VARIABLE} names {other.render_as_string(hide_password=True)}"
                    f": unset {ENVIRONMENT_VARIABLE} or leave out --app"
                )
        return url
    if db.database_url:
        return _postgresql_url(db.database_url, "--database-url")
    if environment:
        return _postgresql_url(environment, ENVIRONMENT_VARIABLE)
    return None


@contextlib.contextmanager
def open_database(
    db: DatabaseOptions,
    *,
    migrate_embedded: bool = True,
    pool_size: int = 5,
    max_overflow: int = 10,
    connect_args: dict[str, Any] | None = None,
) -> Iterator[Engine]:
    """An engine on the given database, or on the embedded server, for the command's life,
    whose pool keeps ``pool_size`` connections and opens at most ``max_overflow`` more;
    ``connect_args`` go to psycopg's ``connect``.

    Raises
    ------
    Failure
        For a database error raised inside the block, told by :func:`database_error`.
    """
    url = given_url(db)
    pool: dict[str, Any] = {
        "pool_pre_ping": True,
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "connect_args": connect_args or {},
    }
    try:
        if url is not None:
            try:
                engine = create_engine(url, **pool)
            except (ArgumentError, NoSuchModuleError, ImportError) as error:
                raise BadInput(f"invalid database URL: {exception_line(error)}") from None
            try:
                yield engine
            finally:
                engine.dispose()
            return
        from ..embedded import embedded_server

        with embedded_server(db.data_dir, keep=db.keep_server) as server:
            say(server.describe())
            engine = create_engine(server.url, **pool)
            try:
                if migrate_embedded:
                    migrate(engine)
                yield engine
            finally:
                engine.dispose()
    except DBAPIError as error:
        raise Failure(database_error(error, model_given=bool(db.model))) from None


def migrate(engine: Engine) -> str | None:
    """Run the packaged migrations to head; return the revision the database is at.

    Through the packaged ``env.py``: a migration running meanwhile is waited for (this
    one then finds the database at head), and a lock held by a worker's or the
    application's transaction past ``SQLA_JOBQUEUE_MIGRATION_LOCK_TIMEOUT`` (5 s) fails
    the command with a :class:`~sqla_jobqueue.errors.JobQueueError` saying what to do.
    """
    from alembic.util import CommandError

    from ..alembic import upgrade
    from ..alembic.guard import MigrationLockTimeout, migration_lock_timeout

    try:
        migration_lock_timeout()  # a bad value is the operator's to fix, before connecting
    except CommandError as error:
        raise BadInput(str(error)) from None
    # Alembic logs each step at INFO; a command line user wants only the outcome.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        upgrade(engine)
    except MigrationLockTimeout as error:
        raise JobQueueError(str(error)) from None
    except CommandError as error:
        # Typically the database's alembic_version belongs to the application's own history.
        raise JobQueueError(
            f"the packaged migrations cannot run here ({one_line(str(error), 160)}); if your "
            "application has its own Alembic history, run its `alembic upgrade head` instead"
        ) from None
    with engine.connect() as connection:
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if revision is None else str(revision)


def database_error(error: DBAPIError, *, model_given: bool) -> str:
    """One line for an operator: what the database said and what to do about it."""
    orig = error.orig
    sqlstate = getattr(orig, "sqlstate", None)
    first = one_line(str(orig).strip().splitlines()[0] if str(orig).strip() else str(error))
    if sqlstate in ("42P01", "42883"):
        # Most often the application's model maps another table than the default 'jobs'.
        hint = (
            ""
            if model_given
            else "if your job model maps a table other than 'jobs', name it with --model "
            "MODULE:CLASS (e.g. --model myapp.models:Job); otherwise "
        )
        return (
            f"{first}: the job table or its claim function is missing; {hint}run "
            "`sqla-jobqueue migrate` (or your application's `alembic upgrade head`)"
        )
    if error.connection_invalidated or sqlstate is None or sqlstate.startswith("08"):
        return f"cannot reach the database: {first}"
    return f"database error: {first}"
