"""The Alembic environment shipped in ``alembic_templates/``.

pytest-alembic's four default tests run against it (imported explicitly; see pyproject;
its experimental downgrade test wraps the connection in a way SQLAlchemy 2.1 rejects, and
our own test below checks the same thing), then
our own checks: upgrade → a second autogenerate is empty → downgrade to base leaves no
table and no function; a downgrade from head to each earlier revision leaves exactly the
schema an upgrade to it leaves; offline SQL; the replace operation; copying the template.
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
from alembic.operations.ops import AddColumnOp, CreateTableOp, ModifyTableOps
from pytest_alembic.tests.default import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from sqlalchemy import Engine, MetaData, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

import sqla_jobqueue.alembic
from sqla_jobqueue import JobQueue, JobStatus, metadata
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

from .catalog import snapshot

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


HEAD_OBJECTS = {
    "tables": ["alembic_version", "job_schedules", "jobs", "jobs_controls"],
    "functions": [
        "claim_job_batch",
        "jobs_claim_within_limits",
        "jobs_notify_enqueued",
        "jobs_notify_finished",
        "jobs_settle_waiting",
    ],
}
"""What the packaged revisions create, up to head."""


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
    assert objects(alembic_engine) == HEAD_OBJECTS
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
    # The claim function calls the limited claim function, which claims.
    assert "public.jobs_claim_within_limits(" in row.body
    with alembic_engine.connect() as connection:
        limited = connection.execute(
            text(
                "SELECT prosecdef, proconfig, "
                "has_function_privilege('public', oid, 'EXECUTE') AS public_can_execute, "
                "pg_get_functiondef(oid) AS body "
                "FROM pg_proc WHERE proname = 'jobs_claim_within_limits'"
            )
        ).one()
    assert limited.prosecdef is False
    assert limited.proconfig == [
        "search_path=pg_catalog, pg_temp",
        "plan_cache_mode=force_generic_plan",
    ]
    assert limited.public_can_execute is False
    assert "FOR NO KEY UPDATE SKIP LOCKED" in limited.body
    assert "AS MATERIALIZED" in limited.body
    assert "public.jobs" in limited.body


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
        assert objects(engine) == HEAD_OBJECTS
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

    from sqla_jobqueue import JobMixin, JobScheduleMixin

    command.upgrade(package_config(alembic_engine), "head")

    class Base(DeclarativeBase):
        metadata = MetaData()

    class Renamed(JobMixin, Base):
        __tablename__ = "jobs"
        __claim_function__ = "take_jobs"

    class Schedule(JobScheduleMixin, Base):
        __tablename__ = "job_schedules"

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
    assert objects(alembic_engine)["functions"] == [
        "jobs_claim_within_limits",
        "jobs_notify_enqueued",
        "jobs_notify_finished",
        "jobs_settle_waiting",
        "take_jobs",
    ]


def test_a_version_1_table_with_jobs_upgrades_to_head_and_back(alembic_engine: Engine) -> None:
    """Revisions 0002 to 0006 on a table that holds jobs: every job gets ``crashes = 0``
    and no dependency or key, the claim function becomes version 4, the table its storage
    parameters and a controls table, and autogenerate finds nothing left; autogenerate
    against the version-1 schema writes the same steps in order; the downgrade restores 1."""
    config = package_config(alembic_engine)
    command.upgrade(config, "0001")
    with alembic_engine.begin() as connection:
        connection.execute(
            text("INSERT INTO jobs (job_type) SELECT 'old' FROM generate_series(1, 50)")
        )
    (schedules, controls, table, replace, storage) = autogenerate_ops(alembic_engine)
    assert isinstance(schedules, CreateTableOp) and schedules.table_name == "job_schedules"
    assert isinstance(controls, CreateTableOp) and controls.table_name == "jobs_controls"
    assert isinstance(table, ModifyTableOps) and table.table_name == "jobs"
    assert [
        (type(op).__name__, op.column.name if isinstance(op, AddColumnOp) else op.index_name)  # type: ignore[attr-defined]
        for op in table.ops
    ] == [
        ("AddColumnOp", "crashes"),
        ("AddColumnOp", "depends_on"),
        ("AddColumnOp", "awaited"),
        ("AddColumnOp", "concurrency_key"),
        ("CreateIndexOp", "ix_jobs_finished"),
        ("CreateIndexOp", "ix_jobs_keyed_held"),
        ("CreateIndexOp", "ix_jobs_keyed_pending"),
        ("CreateIndexOp", "ix_jobs_runs_alone"),
        ("CreateIndexOp", "ix_jobs_waiting"),
    ]
    assert isinstance(replace, ReplaceJobQueueOp)
    assert (replace.from_version, replace.version) == (1, CURRENT_VERSION)
    assert isinstance(storage, SetTableStorageOp)
    assert storage.parameters == JOB_TABLE_STORAGE
    assert set(storage.previous.values()) == {None}
    command.upgrade(config, "head")
    with alembic_engine.connect() as connection:
        added = connection.execute(
            text("SELECT DISTINCT crashes, depends_on, awaited, concurrency_key FROM jobs")
        ).all()
        comment = connection.execute(
            text("SELECT obj_description('claim_job_batch'::regproc, 'pg_proc')")
        ).scalar_one()
        claimed = connection.execute(
            text("SELECT count(*) FROM claim_job_batch('w', NULL, 100)")
        ).scalar_one()
    assert (added, claimed) == ([(0, None, False, None)], 50)
    assert f'"version": {CURRENT_VERSION}' in comment
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
    assert not {"crashes", "depends_on", "awaited", "concurrency_key"} & set(columns)
    assert '"version": 1' in comment
    assert objects(alembic_engine) == {
        "tables": ["alembic_version", "jobs"],
        "functions": ["claim_job_batch", "jobs_notify_enqueued"],
    }


@pytest.mark.parametrize("revision", ["0001", "0002", "0003", "0004"])
def test_a_downgrade_from_head_leaves_the_schema_an_upgrade_left(
    revision: str, alembic_engine: Engine, empty_database_url: URL
) -> None:
    """Down from head, each revision's schema is exactly what the upgrade to it made:
    nothing a later revision added stays (a column, an index, a table, a function, a
    trigger), and what it replaced comes back as it was (a CHECK, a function's body,
    security, comment and privileges)."""
    config = package_config(alembic_engine)
    command.upgrade(config, revision)
    upgraded = snapshot(empty_database_url)
    command.upgrade(config, "head")
    command.downgrade(config, revision)
    assert snapshot(empty_database_url) == upgraded


def test_a_downgrade_below_0004_cancels_the_jobs_still_waiting(alembic_engine: Engine) -> None:
    """A job waiting for another could never run under version 2: the downgrade cancels
    it, says why, and leaves every other job as it was."""
    config = package_config(alembic_engine)
    command.upgrade(config, "head")
    with alembic_engine.begin() as connection:
        first = connection.execute(
            text("INSERT INTO jobs (job_type) VALUES ('first') RETURNING id")
        ).scalar_one()
        connection.execute(
            text("INSERT INTO jobs (job_type, depends_on) VALUES ('then', ARRAY[:first])"),
            {"first": first},
        )
        statuses = {
            job_type: status
            for job_type, status in connection.execute(text("SELECT job_type, status FROM jobs"))
        }
    assert statuses == {"first": "pending", "then": "waiting"}

    command.downgrade(config, "0003")
    with alembic_engine.begin() as connection:
        jobs = connection.execute(
            text(
                "SELECT job_type, status, completed_at IS NOT NULL, last_error FROM jobs "
                "ORDER BY job_type"
            )
        ).all()
        claimed = (
            connection.execute(text("SELECT job_type FROM claim_job_batch('w', NULL, 10)"))
            .scalars()
            .all()
        )
    assert jobs == [
        ("first", "pending", False, None),
        (
            "then",
            "cancelled",
            True,
            "cancelled: the database was downgraded below jobs that wait for others",
        ),
    ]
    assert claimed == ["first"]


STATUS_CHECK_TO_VERSION_3 = """\
    op.execute(
        "ALTER TABLE jobs DROP CONSTRAINT jobs_status_check, ADD CONSTRAINT jobs_status_check "
        "CHECK (status IN ('waiting', 'pending', 'claimed', 'running', 'completed', 'failed', "
        "'cancelled')) NOT VALID"
    )
    op.execute("ALTER TABLE jobs VALIDATE CONSTRAINT jobs_status_check")
"""
"""The two statements docs/alembic.md ("Version 3") has an app add to its revision."""


def test_a_project_at_0003_autogenerates_its_own_way_to_the_current_version(
    tmp_path: Path, empty_database_url: URL
) -> None:
    """A project copied from the template before revision 0004 existed upgrades the
    library: its own autogenerated revision writes the controls and schedules tables, the
    new columns and indexes and ``replace_job_queue`` to the current version; with the status CHECK
    swapped as docs/alembic.md says, jobs then wait for the jobs they depend on, and the
    revision goes back down."""
    copy_template(tmp_path / "migrations")
    versions = tmp_path / "migrations" / "versions"
    for later in [*versions.glob("000[456]_*.py")]:
        later.unlink()
    url = empty_database_url.render_as_string(hide_password=False)
    upgraded = alembic_in(tmp_path, "upgrade", "head", DATABASE_URL=url)
    assert upgraded.returncode == 0, upgraded.stderr

    generated = alembic_in(
        tmp_path, "revision", "--autogenerate", "-m", "v3", "--rev-id", "0100", DATABASE_URL=url
    )
    assert generated.returncode == 0, generated.stderr
    (revision,) = versions.glob("0100_*.py")
    source = revision.read_text()
    upgrade = source[source.index("def upgrade") : source.index("def downgrade")]
    steps = [
        "op.create_table('job_schedules'",
        "op.create_table('jobs_controls'",
        "op.add_column('jobs', sa.Column('depends_on', postgresql.ARRAY(sa.Uuid()), "
        "nullable=True))",
        "op.add_column('jobs', sa.Column('awaited', sa.Boolean(), "
        "server_default=sa.text('false'), nullable=False))",
        "op.add_column('jobs', sa.Column('concurrency_key', sa.String(length=255), nullable=True))",
        "op.create_index('ix_jobs_waiting', 'jobs', ['depends_on'], unique=False, "
        "postgresql_using='gin', postgresql_where=sa.text(\"status = 'waiting'\"))",
        "    sqla_jobqueue.alembic.replace_job_queue('jobs', function_name='claim_job_batch', "
        f"version={CURRENT_VERSION}, from_version=2)\n",
    ]
    positions = [upgrade.index(step) for step in steps]
    assert positions == sorted(positions), upgrade
    replace = steps[-1]
    revision.write_text(source.replace(replace, STATUS_CHECK_TO_VERSION_3 + replace, 1))

    upgraded = alembic_in(tmp_path, "upgrade", "head", DATABASE_URL=url)
    assert upgraded.returncode == 0, upgraded.stderr
    checked = alembic_in(tmp_path, "check", DATABASE_URL=url)
    assert "No new upgrade operations detected" in checked.stdout + checked.stderr

    engine = create_engine(empty_database_url)
    try:
        with Session(engine) as session, session.begin():
            queue = JobQueue(session)
            first = queue.enqueue("first").id
            then = queue.enqueue("then", depends_on=[first]).id
        with Session(engine) as session, session.begin():
            worker = JobQueue(session, worker_id="w")
            assert [job.id for job in worker.claim()] == [first]
            worker.start(first)
            worker.complete(first)
        with Session(engine) as session, session.begin():
            assert JobQueue(session).get(then).status is JobStatus.PENDING

        downgraded = alembic_in(tmp_path, "downgrade", "-1", DATABASE_URL=url)
        assert downgraded.returncode == 0, downgraded.stderr
        assert objects(engine) == {
            "tables": ["alembic_version", "jobs"],
            "functions": ["claim_job_batch", "jobs_notify_enqueued"],
        }
    finally:
        engine.dispose()


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
