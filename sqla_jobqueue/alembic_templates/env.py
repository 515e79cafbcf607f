"""Alembic environment for an application that uses sqla_jobqueue.

Add your own metadata to ``target_metadata``. The database comes, in this order, from a
Connection or an Engine in ``config.attributes["connection"]`` (how
``sqla_jobqueue.alembic.upgrade`` and test suites call it), from the ``DATABASE_URL``
environment variable, or from ``sqlalchemy.url`` in ``alembic.ini``. With none of them,
online migrations stop with an error before connecting anywhere, and ``--sql`` renders
PostgreSQL.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, pool

import sqla_jobqueue.alembic  # noqa: F401  (registers op.create_job_queue and autogenerate)
from sqla_jobqueue import metadata as jobqueue_metadata
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


def _run(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
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
    given = config.attributes.get("connection")
    if given is not None and not isinstance(given, Engine):
        _run(given)  # a Connection, or an object standing in for one (as test tools pass)
        return
    engine = given if given is not None else _engine()
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        if engine is not given:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
