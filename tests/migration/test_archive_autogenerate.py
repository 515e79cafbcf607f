"""Autogenerate and the archive: the archive's ``create_table`` is partitioned by
``completed_at``, and once the archiver has made its day partitions autogenerate finds
nothing to do (Alembic alone would drop every partition)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from alembic.autogenerate import produce_migrations, render_python_code
from alembic.migration import MigrationContext
from alembic.operations import MigrateOperation, Operations
from alembic.operations.ops import CreateTableOp, ModifyTableOps
from sqlalchemy import Engine, MetaData, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import DeclarativeBase

import sqla_jobqueue.alembic  # noqa: F401  (registers the comparators)
from sqla_jobqueue import JobArchiveMixin, JobMixin
from sqla_jobqueue.maintenance import Archiver, ArchiverConfig


class Base(DeclarativeBase):
    pass


class Task(JobMixin, Base):
    __tablename__ = "tasks"


class TaskArchive(JobArchiveMixin, Base):
    __tablename__ = "tasks_archive"


@pytest.fixture
def engine(empty_database_url: URL) -> Iterator[Engine]:
    engine = create_engine(empty_database_url)
    yield engine
    engine.dispose()


def autogenerate(engine: Engine, metadata: MetaData) -> list[MigrateOperation]:
    with engine.connect() as connection:
        upgrade_ops = produce_migrations(MigrationContext.configure(connection), metadata)
        assert upgrade_ops.upgrade_ops is not None
        return list(upgrade_ops.upgrade_ops.ops)


def test_the_archive_is_created_partitioned_and_its_partitions_are_left_alone(
    engine: Engine,
) -> None:
    ops = autogenerate(engine, Base.metadata)
    (archive,) = [
        op for op in ops if isinstance(op, CreateTableOp) and op.table_name.endswith("archive")
    ]
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        upgrade_ops = produce_migrations(context, Base.metadata).upgrade_ops
        assert upgrade_ops is not None
        rendered = render_python_code(upgrade_ops)
    assert "postgresql_partition_by='RANGE (completed_at)'" in rendered
    with engine.begin() as connection:
        operations = Operations(MigrationContext.configure(connection))
        for op in ops:
            for step in op.ops if isinstance(op, ModifyTableOps) else [op]:
                operations.invoke(step)
        connection.execute(
            text(
                "INSERT INTO tasks (job_type, status, attempts, completed_at) "
                "SELECT 'x', 'completed', 1, now() - g * interval '1 day' "
                "FROM generate_series(1, 3) AS g"
            )
        )
    config = ArchiverConfig(TaskArchive, after=timedelta(hours=1))
    assert Archiver(Task, config).run_once(engine) == 3
    with engine.connect() as connection:
        partitions = connection.execute(
            text("SELECT count(*) FROM pg_inherits WHERE inhparent = 'tasks_archive'::regclass")
        ).scalar_one()
    assert partitions == 5, "three days ago to tomorrow"
    assert autogenerate(engine, Base.metadata) == []
    assert archive.table_name == "tasks_archive"
