"""The Alembic environment shipped in ``alembic_templates/``.

pytest-alembic's four default tests run against it (imported explicitly; see pyproject;
its experimental downgrade test wraps the connection in a way SQLAlchemy 2.1 rejects, and
our own test below checks the same thing), then
our own checks: upgrade → a second autogenerate is empty → downgrade to base leaves no
table and no function; offline SQL; the replace operation; copying the template.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import produce_migrations
from alembic.migration import MigrationContext
from alembic.operations import MigrateOperation
from pytest_alembic.tests.default import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from sqlalchemy import Engine, MetaData, create_engine, text
from sqlalchemy.engine import URL

import sqla_jobqueue.alembic
from sqla_jobqueue import metadata
from sqla_jobqueue.alembic import (
    TEMPLATE_DIRECTORY,
    CreateJobQueueOp,
    ReplaceJobQueueOp,
    SetTableStorageOp,
    copy_template,
    package_config,
)
from sqla_jobqueue.model import JOB_TABLE_STORAGE
from sqla_jobqueue.sql import CURRENT_VERSION

__all__ = [
    "test_model_definitions_match_ddl",
    "test_single_head_revision",
    "test_up_down_consistency",
    "test_upgrade",
]


@pytest.fixture
def alembic_engine(empty_database_url: URL) -> Iterator[Engine]:
    engine = create_engine(empty_database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def alembic_config() -> object:
    return package_config()


def objects(engine: Engine) -> dict[str, list[str]]:
    with engine.connect() as connection:
        tables = connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        ).scalars()
        functions = connection.execute(
            text(
                "SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'public' ORDER BY 1"
            )
        ).scalars()
        return {"tables": list(tables), "functions": list(functions)}


def diff(context: MigrationContext, target: MetaData) -> list[MigrateOperation]:
    """The operations autogenerate would write into a revision's ``upgrade()``."""
    upgrade_ops = produce_migrations(context, target).upgrade_ops
    assert upgrade_ops is not None
    return list(upgrade_ops.ops)


def autogenerate_ops(engine: Engine) -> list[MigrateOperation]:
    with engine.connect() as connection:
        return diff(MigrationContext.configure(connection), metadata)


def test_upgrade_autogenerate_is_empty_downgrade_leaves_nothing(alembic_engine: Engine) -> None:
    ops = autogenerate_ops(alembic_engine)
    assert [type(op).__name__ for op in ops][-1] == "CreateJobQueueOp"
    command.upgrade(package_config(alembic_engine), "head")
    assert objects(alembic_engine) == {
        "tables": ["alembic_version", "jobs"],
        "functions": ["claim_job_batch", "jobs_notify_enqueued"],
    }
    assert autogenerate_ops(alembic_engine) == []
    command.downgrade(package_config(alembic_engine), "base")
    assert objects(alembic_engine) == {"tables": ["alembic_version"], "functions": []}


def test_installed_function_is_hardened_and_versioned(alembic_engine: Engine) -> None:
    command.upgrade(package_config(alembic_engine), "head")
    with alembic_engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT prosecdef, proconfig, obj_description(oid, 'pg_proc') AS comment, "
                "has_function_privilege('public', oid, 'EXECUTE') AS public_can_execute, "
                "pg_get_functiondef(oid) AS body "
                "FROM pg_proc WHERE proname = 'claim_job_batch'"
            )
        ).one()
    assert row.prosecdef is False, "SECURITY INVOKER"
    assert row.proconfig == ["search_path=pg_catalog, pg_temp"]
    assert f'"version": {CURRENT_VERSION}' in row.comment
    assert row.public_can_execute is False
    assert "FOR NO KEY UPDATE SKIP LOCKED" in row.body
    assert "AS MATERIALIZED" in row.body
    assert "public.jobs" in row.body


def test_an_older_installed_version_gets_a_replace_op(alembic_engine: Engine) -> None:
    command.upgrade(package_config(alembic_engine), "head")
    with alembic_engine.begin() as connection:
        comment = connection.execute(
            text("SELECT obj_description('claim_job_batch'::regproc, 'pg_proc')")
        ).scalar_one()
        older = comment.replace(f'"version": {CURRENT_VERSION}', '"version": 0')
        connection.execute(
            text(f"COMMENT ON FUNCTION claim_job_batch(varchar, varchar[], integer) IS '{older}'")
        )
    (op,) = autogenerate_ops(alembic_engine)
    assert isinstance(op, ReplaceJobQueueOp)
    assert (op.from_version, op.version) == (0, CURRENT_VERSION)
    assert isinstance(op.reverse(), ReplaceJobQueueOp) and op.reverse().version == 0
    with alembic_engine.begin() as connection:
        context = MigrationContext.configure(connection)
        from alembic.operations import Operations

        Operations(context).invoke(op)
    assert autogenerate_ops(alembic_engine) == []


def test_a_removed_job_table_drops_its_function_before_the_table(alembic_engine: Engine) -> None:
    command.upgrade(package_config(alembic_engine), "head")

    with alembic_engine.connect() as connection:
        context = MigrationContext.configure(connection)
        ops = diff(context, MetaData())
    names = [type(op).__name__ for op in ops]
    assert names[0] == "DropJobQueueOp"
    assert "DropTableOp" in names


def test_offline_sql_renders_the_function(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from alembic import command; from sqla_jobqueue.alembic import package_config;"
            "c = package_config(); c.set_main_option('sqlalchemy.url', "
            "'postgresql+psycopg://offline/db'); command.upgrade(c, 'head', sql=True)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE jobs" in result.stdout
    assert "CREATE OR REPLACE FUNCTION public.claim_job_batch(" in result.stdout
    assert result.stdout.index("CREATE TABLE jobs") < result.stdout.index("claim_job_batch(")


def alembic_in(project: Path, *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    """The ``alembic`` command line in ``project``, with ``DATABASE_URL`` only if given."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, **environ},
    )


def test_copy_template_makes_a_working_project(tmp_path: Path, empty_database_url: URL) -> None:
    ini = copy_template(tmp_path / "migrations")
    assert ini == tmp_path / "alembic.ini"
    assert (tmp_path / "migrations" / "env.py").exists()
    assert list((tmp_path / "migrations" / "versions").glob("0001_*.py"))
    url = empty_database_url.render_as_string(hide_password=False)
    result = alembic_in(tmp_path, "upgrade", "head", DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    # alembic.ini's logging applies: the user sees what ran.
    assert "Running upgrade  -> 0001, create the jobs table" in result.stderr
    engine = create_engine(empty_database_url)
    try:
        assert objects(engine)["functions"] == ["claim_job_batch", "jobs_notify_enqueued"]
    finally:
        engine.dispose()
    with pytest.raises(FileExistsError, match="not empty"):
        copy_template(tmp_path / "migrations")


def test_a_copied_project_names_no_database_of_its_own(tmp_path: Path) -> None:
    ini = copy_template(tmp_path / "migrations")
    assert not re.search(r"^\s*sqlalchemy\.url\s*=", ini.read_text(), re.M), ini.read_text()

    refused = alembic_in(tmp_path, "upgrade", "head")
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "Traceback" not in output
    (line,) = [line for line in output.splitlines() if line.startswith("FAILED")]
    assert line.startswith("FAILED: no database named, nothing was migrated: set DATABASE_URL")

    # A database that is not PostgreSQL is refused before anything is written to it.
    sqlite = tmp_path / "app.db"
    refused = alembic_in(tmp_path, "upgrade", "head", DATABASE_URL=f"sqlite:///{sqlite}")
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "Traceback" not in output
    (line,) = [line for line in output.splitlines() if line.startswith("FAILED")]
    assert "is not a PostgreSQL URL" in line and "nothing was migrated" in line
    assert not sqlite.exists()

    # Offline SQL needs no database: it renders PostgreSQL.
    rendered = alembic_in(tmp_path, "upgrade", "head", "--sql")
    assert rendered.returncode == 0, rendered.stderr
    assert "CREATE OR REPLACE FUNCTION public.claim_job_batch(" in rendered.stdout


def test_template_is_part_of_the_package() -> None:
    names = {p.name for p in TEMPLATE_DIRECTORY.iterdir()}
    assert names >= {"env.py", "script.py.mako", "versions"}
    assert CreateJobQueueOp("jobs").reverse().to_diff_tuple()[0] == "drop_job_queue"
    assert sqla_jobqueue.alembic.render is not None


def test_a_job_table_left_out_by_include_object_keeps_its_function(
    alembic_engine: Engine,
) -> None:
    command.upgrade(package_config(alembic_engine), "head")

    def include_object(obj: object, name: str, type_: str, reflected: bool, other: object) -> bool:
        return not (type_ == "table" and name == "jobs")

    with alembic_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": include_object})
        ops = diff(context, metadata)
    assert ops == []


def test_renaming_the_claim_function_drops_the_old_one_first(alembic_engine: Engine) -> None:
    from sqlalchemy.orm import DeclarativeBase

    from sqla_jobqueue import JobMixin

    command.upgrade(package_config(alembic_engine), "head")

    class Base(DeclarativeBase):
        metadata = MetaData()

    class Renamed(JobMixin, Base):
        __tablename__ = "jobs"
        __claim_function__ = "take_jobs"

    with alembic_engine.connect() as connection:
        context = MigrationContext.configure(connection)
        ops = diff(context, Base.metadata)
    assert [(type(op).__name__, op.function_name) for op in ops] == [  # type: ignore[attr-defined]
        ("DropJobQueueOp", "claim_job_batch"),
        ("CreateJobQueueOp", "take_jobs"),
    ]
    with alembic_engine.begin() as connection:
        from alembic.operations import Operations

        operations = Operations(MigrationContext.configure(connection))
        for op in ops:
            operations.invoke(op)
    with alembic_engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert diff(context, Base.metadata) == []
    assert objects(alembic_engine)["functions"] == ["jobs_notify_enqueued", "take_jobs"]


def test_a_version_1_table_with_jobs_upgrades_to_crash_counting_and_back(
    alembic_engine: Engine,
) -> None:
    """Revisions 0002 and 0003 on a table that holds jobs: every job gets ``crashes = 0``,
    the claim function becomes version 2, the table its storage parameters, and
    autogenerate finds nothing left; autogenerate against the version-1 schema writes the
    same steps in order; the downgrade restores 1."""
    config = package_config(alembic_engine)
    command.upgrade(config, "0001")
    with alembic_engine.begin() as connection:
        connection.execute(
            text("INSERT INTO jobs (job_type) SELECT 'old' FROM generate_series(1, 50)")
        )
    (table, replace, storage) = autogenerate_ops(alembic_engine)
    assert [type(op).__name__ for op in table.ops] == [  # type: ignore[attr-defined]
        "AddColumnOp",
        "CreateIndexOp",
        "CreateIndexOp",
    ]
    assert isinstance(replace, ReplaceJobQueueOp)
    assert (replace.from_version, replace.version) == (1, 2)
    assert isinstance(storage, SetTableStorageOp)
    assert storage.parameters == JOB_TABLE_STORAGE
    assert set(storage.previous.values()) == {None}
    command.upgrade(config, "head")
    with alembic_engine.connect() as connection:
        crashes = connection.execute(text("SELECT DISTINCT crashes FROM jobs")).scalars().all()
        comment = connection.execute(
            text("SELECT obj_description('claim_job_batch'::regproc, 'pg_proc')")
        ).scalar_one()
        claimed = connection.execute(
            text("SELECT count(*) FROM claim_job_batch('w', NULL, 100)")
        ).scalar_one()
    assert (crashes, claimed) == ([0], 50)
    assert '"version": 2' in comment
    assert autogenerate_ops(alembic_engine) == []
    command.downgrade(config, "0001")
    with alembic_engine.connect() as connection:
        columns = (
            connection.execute(
                text("SELECT column_name FROM information_schema.columns WHERE table_name = 'jobs'")
            )
            .scalars()
            .all()
        )
        comment = connection.execute(
            text("SELECT obj_description('claim_job_batch'::regproc, 'pg_proc')")
        ).scalar_one()
    assert "crashes" not in columns and '"version": 1' in comment


def reloptions(engine: Engine) -> list[str] | None:
    with engine.connect() as connection:
        return connection.execute(  # type: ignore[no-any-return]
            text("SELECT reloptions FROM pg_class WHERE oid = 'jobs'::regclass")
        ).scalar_one()


def test_revision_0003_takes_an_index_built_concurrently_and_sets_the_storage(
    alembic_engine: Engine,
) -> None:
    """On a large table an operator builds the index of finished jobs beforehand, without
    blocking writes (docs/alembic.md); 0003 then finds it, sets the storage parameters the
    model declares, and its downgrade takes both away again."""
    config = package_config(alembic_engine)
    command.upgrade(config, "0002")
    assert reloptions(alembic_engine) is None
    with alembic_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(
            text(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_jobs_finished ON jobs (completed_at) "
                "WHERE status IN ('completed', 'failed', 'cancelled')"
            )
        )
    command.upgrade(config, "head")
    found = dict(option.split("=") for option in reloptions(alembic_engine) or [])
    assert found == {name: str(value) for name, value in JOB_TABLE_STORAGE.items()}
    assert autogenerate_ops(alembic_engine) == []

    with alembic_engine.begin() as connection:
        connection.execute(
            text("ALTER TABLE jobs SET (fillfactor = 90, toast_tuple_target = 4000)")
        )
    (op,) = autogenerate_ops(alembic_engine)
    assert isinstance(op, SetTableStorageOp), "only what the model declares is compared"
    assert (op.parameters, op.previous) == ({"fillfactor": 80}, {"fillfactor": "90"})

    command.downgrade(config, "0002")
    assert reloptions(alembic_engine) == ["toast_tuple_target=4000"]
    assert "ix_jobs_finished" not in objects_indexes(alembic_engine)


def objects_indexes(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                text("SELECT indexname FROM pg_indexes WHERE tablename = 'jobs'")
            ).scalars()
        )
