"""An existing application adopts sqla_jobqueue through its own Alembic set-up.

The app has its own DeclarativeBase with a naming convention, a domain table, and maps
JobMixin onto a custom table in a custom schema. These tests run the real ``alembic``
command line in a project directory, as the app's developers would.
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

from sqla_jobqueue.sql import CURRENT_VERSION

from .typecheck import mypy_strict

MODELS = """
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_jobqueue import JobMixin


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(constraint_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = {"schema": "shop"}
    id: Mapped[int] = mapped_column(primary_key=True)


class BackgroundJob(JobMixin, Base):
    __tablename__ = "background_jobs"
    __table_schema__ = "shop"
"""

ENV = """
from alembic import context
from sqlalchemy import create_engine, pool

import sqla_jobqueue.alembic  # noqa: F401
from myapp_models import Base


def include_name(name, type_, parent_names):
    return name == "shop" if type_ == "schema" else True


engine = create_engine(context.config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_schemas=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()
"""


@pytest.fixture
def project(tmp_path: Path, empty_database_url: URL) -> Path:
    engine = create_engine(empty_database_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE SCHEMA shop"))
    engine.dispose()
    (tmp_path / "myapp_models.py").write_text(MODELS)
    migrations = tmp_path / "migrations"
    (migrations / "versions").mkdir(parents=True)
    (migrations / "env.py").write_text(ENV)
    from sqla_jobqueue.alembic import TEMPLATE_DIRECTORY

    (migrations / "script.py.mako").write_text((TEMPLATE_DIRECTORY / "script.py.mako").read_text())
    url = empty_database_url.render_as_string(hide_password=False).replace("%", "%%")
    (tmp_path / "alembic.ini").write_text(
        f"[alembic]\nscript_location = migrations\nprepend_sys_path = .\nsqlalchemy.url = {url}\n"
    )
    return tmp_path


def alembic(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(project)},
    )


def catalog(url: URL) -> dict[str, list[str]]:
    engine = create_engine(url)
    queries = {
        "tables": "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        "WHERE table_schema = 'shop' ORDER BY 1",
        "constraints": "SELECT conname FROM pg_constraint c JOIN pg_namespace n "
        "ON n.oid = c.connamespace WHERE n.nspname = 'shop' ORDER BY 1",
        "indexes": "SELECT indexname FROM pg_indexes WHERE schemaname = 'shop' ORDER BY 1",
        "functions": "SELECT p.proname FROM pg_proc p JOIN pg_namespace n "
        "ON n.oid = p.pronamespace WHERE n.nspname = 'shop' ORDER BY 1",
        "triggers": "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1",
    }
    try:
        with engine.connect() as connection:
            return {k: list(connection.execute(text(q)).scalars()) for k, q in queries.items()}
    finally:
        engine.dispose()


def test_autogenerate_upgrade_check_and_downgrade(project: Path, empty_database_url: URL) -> None:
    generated = alembic(project, "revision", "--autogenerate", "-m", "add jobs")
    assert generated.returncode == 0, generated.stderr
    (revision,) = (project / "migrations" / "versions").glob("*.py")
    source = revision.read_text()
    assert "\nimport sqla_jobqueue.alembic\n" in source
    upgrade = source[source.index("def upgrade") : source.index("def downgrade")]
    downgrade = source[source.index("def downgrade") :]
    assert (
        upgrade.index("op.create_table('background_jobs'")
        < upgrade.index("op.create_index(op.f('ix_background_jobs_claimable')")
        < upgrade.index("op.create_table('background_jobs_controls'")
        < upgrade.index("sqla_jobqueue.alembic.create_job_queue(")
    )
    assert upgrade.rstrip().splitlines()[-2].strip() == (
        "sqla_jobqueue.alembic.create_job_queue('background_jobs', schema='shop', "
        f"function_name='claim_background_jobs_batch', version={CURRENT_VERSION})"
    )
    assert (
        downgrade.index("sqla_jobqueue.alembic.drop_job_queue('background_jobs'")
        < downgrade.index("op.drop_table('background_jobs_controls'")
        < downgrade.index("op.drop_table('background_jobs'")
    )
    typed = mypy_strict(revision, cwd=project)
    assert typed.returncode == 0, typed.stdout + typed.stderr

    upgraded = alembic(project, "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    found = catalog(empty_database_url)
    tables = ["shop.background_jobs", "shop.background_jobs_controls", "shop.orders"]
    assert found["tables"] in (tables, ["shop.alembic_version", *tables])
    assert {
        "ck_background_jobs_status",
        "ck_background_jobs_progress",
        "pk_background_jobs",
        "pk_background_jobs_controls",
        "ck_background_jobs_controls_max_running",
        "ck_background_jobs_controls_max_running_per_key",
        "ck_background_jobs_controls_rate",
    } <= set(found["constraints"])
    assert {
        "ix_background_jobs_claimable",
        "ix_background_jobs_held_by_worker",
        "ix_background_jobs_unique_key",
        "ix_background_jobs_waiting",
        "ix_background_jobs_keyed_pending",
        "ix_background_jobs_keyed_held",
    } <= set(found["indexes"])
    assert set(found["functions"]) == {
        "claim_background_jobs_batch",
        "background_jobs_claim_within_limits",
        "background_jobs_notify_enqueued",
        "background_jobs_notify_finished",
        "background_jobs_settle_waiting",
    }
    assert found["triggers"] == [
        "background_jobs_notify_enqueued",
        "background_jobs_notify_finished",
    ]

    checked = alembic(project, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "No new upgrade operations detected" in checked.stdout + checked.stderr

    downgraded = alembic(project, "downgrade", "base")
    assert downgraded.returncode == 0, downgraded.stderr
    after = catalog(empty_database_url)
    assert [t for t in after["tables"] if t != "shop.alembic_version"] == []
    assert after["functions"] == [] and after["triggers"] == []


def test_the_custom_claim_function_claims_from_the_custom_table(
    project: Path, empty_database_url: URL
) -> None:
    """The installed functions name the custom table in its schema: the claim function
    claims from it, and a job that depends on another waits there until that one
    completes (the insert trigger, the finished trigger and the settle function)."""
    assert alembic(project, "revision", "--autogenerate", "-m", "jobs").returncode == 0
    assert alembic(project, "upgrade", "head").returncode == 0
    script = textwrap.dedent(
        """
        import sys
        from sqlalchemy import create_engine, text
        from sqlalchemy.orm import Session
        from sqla_jobqueue import JobQueue
        from myapp_models import BackgroundJob, Order

        CLAIM = "SELECT id, job_type, status FROM shop.claim_background_jobs_batch('w', NULL, 5)"
        engine = create_engine(sys.argv[1])
        with Session(engine) as session, session.begin():
            session.add(Order(id=7))
            queue = JobQueue(session, BackgroundJob)
            receipt = queue.enqueue("send_receipt", {"order_id": 7})
            queue.enqueue("archive_order", {"order_id": 7}, depends_on=[receipt])
        with Session(engine) as session, session.begin():
            rows = session.execute(text(CLAIM)).all()
            print([(job_type, status) for _, job_type, status in rows])
            worker = JobQueue(session, BackgroundJob, worker_id="w")
            for row in rows:
                worker.start(row.id)
                worker.complete(row.id)
        with Session(engine) as session, session.begin():
            rows = session.execute(text(CLAIM)).all()
            print([(job_type, status) for _, job_type, status in rows])
        """
    )
    url = empty_database_url.render_as_string(hide_password=False)
    ran = subprocess.run(
        [sys.executable, "-c", script, url],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(project)},
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [
        "[('send_receipt', 'claimed')]",
        "[('archive_order', 'claimed')]",
    ]
