"""A SQLModel application (the usual FastAPI stack) adopts sqla_jobqueue.

SQLModel has no ``DeclarativeBase`` of its own to map ``JobMixin`` onto; the app declares
one whose metadata *is* ``SQLModel.metadata``, as docs/alembic.md shows, and its Alembic
environment keeps ``target_metadata = SQLModel.metadata``. The env.py below is shaped like
a real SQLModel app's: its offline branch passes ``literal_binds=True`` and no
``dialect_opts``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from sqla_jobqueue.alembic import TEMPLATE_DIRECTORY
from sqla_jobqueue.testing.server import create_database, drop_database
from tests.servers import PSQL

from .typecheck import mypy_strict

MODELS = """
from __future__ import annotations

import uuid

from sqlalchemy.orm import DeclarativeBase
from sqlmodel import Field, Session, SQLModel

from sqla_jobqueue import JobMixin, JobQueue


class Hero(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=255)


class Base(DeclarativeBase):
    metadata = SQLModel.metadata


class Job(JobMixin, Base):
    __tablename__ = "jobs"


def create_hero(session: Session, name: str) -> Hero:
    hero = Hero(name=name)
    session.add(hero)
    JobQueue(session, Job).enqueue("welcome_hero", {"hero_id": str(hero.id)})
    return hero
"""

ENV = """
from alembic import context
from sqlalchemy import engine_from_config, pool
from sqlmodel import SQLModel

import sqla_jobqueue.alembic  # noqa: F401
from app import models  # noqa: F401

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_offline():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata, compare_type=True
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
"""

ENQUEUE = """
import sys

from sqlalchemy import text
from sqlmodel import Session, create_engine

from app.models import create_hero

engine = create_engine(sys.argv[1])
with Session(engine) as session, session.begin():
    create_hero(session, "Deadpond")
with Session(engine) as session:
    query = "SELECT job_type, data->>'hero_id' = (SELECT id::text FROM hero) FROM jobs"
    print(session.execute(text(query)).all())
"""


def ini(url: URL) -> str:
    location = url.render_as_string(hide_password=False).replace("%", "%%")
    return f"[alembic]\nscript_location = migrations\nsqlalchemy.url = {location}\n"


@pytest.fixture
def project(tmp_path: Path, empty_database_url: URL) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "models.py").write_text(textwrap.dedent(MODELS).lstrip())
    (tmp_path / "migrations" / "versions").mkdir(parents=True)
    (tmp_path / "migrations" / "env.py").write_text(ENV)
    # A SQLModel app's revision template imports sqlmodel for its column types.
    mako = (TEMPLATE_DIRECTORY / "script.py.mako").read_text()
    mako = mako.replace(
        "from alembic import op\n", "import sqlmodel.sql.sqltypes\nfrom alembic import op\n"
    )
    (tmp_path / "migrations" / "script.py.mako").write_text(mako)
    (tmp_path / "alembic.ini").write_text(ini(empty_database_url))
    return tmp_path


def run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(project)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


APP_OBJECTS = {
    "tables": ["alembic_version", "hero", "jobs", "jobs_controls"],
    "functions": [
        "claim_job_batch",
        "jobs_claim_within_limits",
        "jobs_notify_enqueued",
        "jobs_notify_finished",
        "jobs_settle_waiting",
    ],
}
"""What the app's one revision creates: its table, the job table and its controls table,
and the job queue's functions."""


def tables_and_functions(url: URL) -> dict[str, list[str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                "tables": list(
                    connection.execute(
                        text(
                            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
                        )
                    ).scalars()
                ),
                "functions": list(
                    connection.execute(
                        text(
                            "SELECT proname FROM pg_proc "
                            "WHERE pronamespace = 'public'::regnamespace ORDER BY 1"
                        )
                    ).scalars()
                ),
            }
    finally:
        engine.dispose()


def test_autogenerate_upgrade_and_enqueue_in_a_sqlmodel_app(
    project: Path, empty_database_url: URL
) -> None:
    run(project, "-m", "alembic", "revision", "--autogenerate", "-m", "heroes and jobs")
    (revision,) = (project / "migrations" / "versions").glob("*.py")
    source = revision.read_text()
    upgrade = source[source.index("def upgrade") : source.index("def downgrade")]
    assert "op.create_table('hero'" in upgrade
    assert (
        upgrade.index("op.create_table('jobs'")
        < upgrade.index("op.create_index('ix_jobs_claimable'")
        < upgrade.index("op.create_table('jobs_controls'")
        < upgrade.index("sqla_jobqueue.alembic.create_job_queue('jobs'")
    )
    typed = mypy_strict(project / "app" / "models.py", revision, cwd=project)
    assert typed.returncode == 0, typed.stdout + typed.stderr

    run(project, "-m", "alembic", "upgrade", "head")
    assert tables_and_functions(empty_database_url) == APP_OBJECTS
    checked = run(project, "-m", "alembic", "check")
    assert "No new upgrade operations detected" in checked.stdout + checked.stderr

    url = empty_database_url.render_as_string(hide_password=False)
    enqueued = run(project, "-c", textwrap.dedent(ENQUEUE), url).stdout.strip()
    assert enqueued == "[('welcome_hero', True)]"


def test_the_offline_sql_of_a_sqlmodel_app_applies_with_psql(
    project: Path, server_url: URL
) -> None:
    run(project, "-m", "alembic", "revision", "--autogenerate", "-m", "heroes and jobs")
    script = run(project, "-m", "alembic", "upgrade", "head", "--sql").stdout
    assert "got %'" in script
    target = create_database(server_url, template="template0", prefix="sqlmodel_offline")
    try:
        libpq = target.set(drivername="postgresql").render_as_string(hide_password=False)
        applied = subprocess.run(
            [PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", libpq],
            input=script,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert applied.returncode == 0, applied.stderr
        assert tables_and_functions(target) == APP_OBJECTS
    finally:
        drop_database(server_url, target)
