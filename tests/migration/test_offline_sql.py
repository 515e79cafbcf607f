"""Offline migrations (``alembic upgrade head --sql``) applied with psql.

The SQL Alembic writes in offline mode depends on the environment: the dialect of the URL
(``postgresql://`` is psycopg2, ``postgresql+psycopg://`` psycopg 3, both of paramstyle
``pyformat``, which doubles every ``%`` of a compiled text), whether ``env.py`` asks for
``paramstyle="named"`` as Alembic's own template does, and ``literal_binds``. Whatever it
is, the script must apply with psql to an empty database and leave the same schema as an
online upgrade.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine
from sqlalchemy.engine import URL

from sqla_jobqueue.alembic import TEMPLATE_DIRECTORY, package_config, upgrade
from sqla_jobqueue.testing.server import create_database, drop_database
from tests.servers import PSQL

from .catalog import snapshot

# The offline branch of a real application's env.py: no dialect_opts, literal_binds and
# compare_type as that application passes them.
APP_ENV = """
from alembic import context
from sqlalchemy import engine_from_config, pool

import sqla_jobqueue.alembic  # noqa: F401
from sqla_jobqueue import metadata

target_metadata = metadata


def run_migrations_offline():
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds={literal_binds},
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    engine = engine_from_config(
        context.config.get_section(context.config.config_ini_section, {{}}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
"""

URLS = {
    "postgresql": "postgresql://offline/db",
    "postgresql+psycopg": "postgresql+psycopg://offline/db",
}


def psql(url: URL, script: Path) -> subprocess.CompletedProcess[str]:
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return subprocess.run(
        [PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script), libpq],
        capture_output=True,
        text=True,
        timeout=60,
    )


def copy_revision(versions: Path) -> None:
    versions.mkdir(parents=True, exist_ok=True)
    for revision in (TEMPLATE_DIRECTORY / "versions").glob("*.py"):
        shutil.copy(revision, versions / revision.name)


def packaged(tmp_path: Path, url: str, literal_binds: bool) -> Config:
    config = package_config()
    config.set_main_option("sqlalchemy.url", url)
    return config


def alembic_init(tmp_path: Path, url: str, literal_binds: bool) -> Config:
    ini = tmp_path / "alembic.ini"
    command.init(Config(str(ini)), str(tmp_path / "migrations"))
    env = tmp_path / "migrations" / "env.py"
    source = env.read_text()
    assert "target_metadata = None" in source and "literal_binds=True" in source
    source = source.replace(
        "target_metadata = None",
        "import sqla_jobqueue.alembic\nfrom sqla_jobqueue import metadata\n"
        "target_metadata = metadata",
    )
    env.write_text(source.replace("literal_binds=True", f"literal_binds={literal_binds}"))
    copy_revision(tmp_path / "migrations" / "versions")
    config = Config(str(ini))
    config.set_main_option("sqlalchemy.url", url)
    return config


def application(tmp_path: Path, url: str, literal_binds: bool) -> Config:
    location = tmp_path / "migrations"
    copy_revision(location / "versions")
    (location / "env.py").write_text(APP_ENV.format(literal_binds=literal_binds))
    config = Config()
    config.set_main_option("script_location", str(location))
    config.set_main_option("sqlalchemy.url", url)
    return config


ENVIRONMENTS = {"packaged": packaged, "alembic init": alembic_init, "application": application}


@pytest.fixture(scope="module")
def online(server_url: URL) -> dict[str, list[tuple[object, ...]]]:
    """The schema an online upgrade through the packaged environment leaves."""
    url = create_database(server_url, template="template0", prefix="offline_ref")
    try:
        engine = create_engine(url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        return snapshot(url)
    finally:
        drop_database(server_url, url)


CASES = [
    pytest.param(environment, driver, literal_binds, id=f"{environment}-{driver}-{binds}")
    for environment in ENVIRONMENTS
    for driver in URLS
    for literal_binds, binds in [(True, "literal_binds"), (False, "bound")]
    # The packaged env.py always renders literal binds.
    if literal_binds or environment != "packaged"
]


@contextlib.contextmanager
def logging_kept() -> Iterator[None]:
    """Alembic's generic ``env.py`` runs ``fileConfig()``, which disables every logger that
    exists and replaces the root's handlers: put them back, so that the tests after this
    one (those that read the worker's warnings with ``caplog``) still see them."""
    root = logging.getLogger()
    loggers = [
        logger for logger in root.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    kept = [(logger, logger.disabled, logger.level) for logger in [root, *loggers]]
    handlers = root.handlers[:]
    try:
        yield
    finally:
        for logger, disabled, level in kept:
            logger.disabled = disabled
            logger.setLevel(level)
        root.handlers[:] = handlers


@pytest.mark.parametrize(("environment", "driver", "literal_binds"), CASES)
def test_offline_sql_applies_with_psql_and_matches_online(
    tmp_path: Path,
    empty_database_url: URL,
    online: dict[str, list[tuple[object, ...]]],
    environment: str,
    driver: str,
    literal_binds: bool,
) -> None:
    config = ENVIRONMENTS[environment](tmp_path, URLS[driver], literal_binds)
    buffer = io.StringIO()
    config.output_buffer = buffer
    with logging_kept():
        command.upgrade(config, "head", sql=True)
    script = tmp_path / "upgrade.sql"
    script.write_text(buffer.getvalue())
    assert "got %'" in buffer.getvalue()

    applied = psql(empty_database_url, script)
    assert applied.returncode == 0, applied.stderr
    assert snapshot(empty_database_url) == online
