"""Alembic environment for an application that uses sqla_jobqueue.

Add your own metadata to ``target_metadata``. The database comes, in this order, from a
Connection or an Engine in ``config.attributes["connection"]`` (how
``sqla_jobqueue.alembic.upgrade`` and test suites call it), from the ``DATABASE_URL``
environment variable, or from ``sqlalchemy.url`` in ``alembic.ini``. With none of them,
online migrations stop with an error before connecting anywhere, and ``--sql`` renders
PostgreSQL.

Online, migrations of a database run one at a time (a second ``alembic upgrade head``
started meanwhile waits, then finds the database at head), and a statement that waits
longer than 5 s for a lock, such as an ``ALTER TABLE`` behind a worker's transaction,
fails the migration with a message saying what to do instead of stalling every query on
the table. ``SQLA_JOBQUEUE_MIGRATION_LOCK_TIMEOUT`` (or ``sqla_jobqueue.lock_timeout`` in
``alembic.ini``) sets that limit: ``30s``, ``2m``, ``0`` for none.
"""

from __future__ import annotations

from datetime import timedelta
from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, pool

import sqla_jobqueue.alembic  # noqa: F401  (registers op.create_job_queue and autogenerate)
from sqla_jobqueue import metadata as jobqueue_metadata
from sqla_jobqueue.alembic import migrating_alone, migration_lock_timeout
from sqla_jobqueue.database import postgresql_url, url_from_environment
from sqla_jobqueue.errors import ConfigurationError

config = context.config
if config.config_file_name is not None:
    # Keep the loggers imported above (sqla_jobqueue's warnings among them) enabled.
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# Your application's metadata goes here too, e.g. [Base.metadata, jobqueue_metadata].
target_metadata = [jobqueue_metadata]


def _url() -> str | None:
    url = url_from_environment() or config.get_main_option("sqlalchemy.url")
    if not url:
        return None
    try:
        return postgresql_url(url).render_as_string(hide_password=False)
    except ConfigurationError as error:
        raise CommandError(f"{error}; nothing was migrated") from None


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        include_schemas=False,
        **kwargs,
    )


def run_migrations_offline() -> None:
    url = _url()
    where = {"url": url} if url else {"dialect_name": "postgresql"}
    _configure(**where, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection, lock_timeout: timedelta | None) -> None:
    _configure(connection=connection)
    with context.begin_transaction(), migrating_alone(connection, lock_timeout):
        context.run_migrations()


def _engine() -> Engine:
    url = _url()
    if url is None:
        raise CommandError(
            "no database named, nothing was migrated: set DATABASE_URL (e.g. "
            "DATABASE_URL=postgresql://USER@HOST/DBNAME alembic upgrade head) or "
            "sqlalchemy.url in alembic.ini"
        )
    return create_engine(url, poolclass=pool.NullPool)


def run_migrations_online() -> None:
    lock_timeout = migration_lock_timeout(config)
    given = config.attributes.get("connection")
    if given is not None and not isinstance(given, Engine):
        # A Connection, or an object standing in for one (as test tools pass).
        _run(given, lock_timeout)
        return
    engine = given if given is not None else _engine()
    try:
        # READ COMMITTED: a migration that waited for another one sees what it committed.
        with engine.connect().execution_options(isolation_level="READ COMMITTED") as connection:
            _run(connection, lock_timeout)
            connection.commit()
    finally:
        if engine is not given:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
