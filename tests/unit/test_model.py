"""The job table's DDL, compiled without a database."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from sqlalchemy import MetaData, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.schema import CreateIndex, CreateTable

from sqla_jobqueue import Job, JobMixin, JobStatus, Priority
from sqla_jobqueue.errors import ModelError
from sqla_jobqueue.model import claim_function_name, is_job_table


def table_of(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def ddl(table: Table) -> str:
    return str(CreateTable(table).compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]


def index_ddl(table: Table) -> dict[str | None, str]:
    return {
        index.name: str(CreateIndex(index).compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]
        for index in table.indexes
    }


def test_ready_model_has_the_original_columns_and_the_additions() -> None:
    columns = set(table_of(Job).c.keys())
    original = {
        "id", "job_type", "priority", "status", "data", "progress", "current_stage",
        "events_count", "worker_id", "claimed_at", "created_at", "started_at",
        "completed_at", "attempts", "max_attempts", "last_error",
    }  # fmt: skip
    additions = {
        "run_at",
        "heartbeat_at",
        "unique_key",
        "result",
        "crashes",
        "depends_on",
        "awaited",
        "concurrency_key",
    }
    assert original | additions == columns
    text = ddl(table_of(Job))
    assert "job_type VARCHAR(50) NOT NULL" in text
    assert "status VARCHAR(20) DEFAULT 'pending' NOT NULL" in text
    assert "data JSONB DEFAULT '{}'::jsonb NOT NULL" in text
    assert "id UUID DEFAULT gen_random_uuid() NOT NULL" in text
    assert "CONSTRAINT jobs_status_check CHECK (status IN ('waiting', 'pending', 'claimed'" in text
    assert "CONSTRAINT jobs_progress_check CHECK (progress BETWEEN 0 AND 100)" in text


def test_partial_indexes_inline_their_predicates() -> None:
    indexes = index_ddl(table_of(Job))
    assert indexes["ix_jobs_claimable"].endswith(
        "ON jobs (priority DESC, created_at, id) WHERE status = 'pending'"
    )
    assert indexes["ix_jobs_held_by_worker"].endswith(
        "ON jobs (worker_id) WHERE status IN ('claimed', 'running')"
    )
    assert indexes["ix_jobs_unique_key"].startswith("CREATE UNIQUE INDEX")
    assert indexes["ix_jobs_unique_key"].endswith(
        "WHERE unique_key IS NOT NULL AND status IN ('pending', 'claimed', 'running')"
    )


def test_mixin_on_an_app_base_follows_its_naming_convention_and_schema() -> None:
    class Base(DeclarativeBase):
        metadata = MetaData(
            naming_convention={
                "ix": "ix_%(table_name)s_%(constraint_name)s",
                "ck": "ck_%(table_name)s_%(constraint_name)s",
            }
        )

    class Task(JobMixin, Base):
        __tablename__ = "tasks"
        __table_schema__ = "work"
        __claim_function__ = "take_tasks"

    table = table_of(Task)
    assert table.schema == "work"
    assert is_job_table(table) and claim_function_name(table) == "take_tasks"
    assert "CONSTRAINT ck_tasks_status CHECK" in ddl(table)
    assert set(index_ddl(table)) == {
        "ix_tasks_claimable",
        "ix_tasks_finished",
        "ix_tasks_held_by_worker",
        "ix_tasks_runs_alone",
        "ix_tasks_unique_key",
        "ix_tasks_waiting",
        "ix_tasks_keyed_pending",
        "ix_tasks_keyed_held",
    }


def test_convention_without_constraint_name_names_indexes_by_columns() -> None:
    class Base(DeclarativeBase):
        metadata = MetaData(naming_convention={"ix": "idx_%(table_name)s_%(column_0_name)s"})

    class Task(JobMixin, Base):
        __tablename__ = "queue_items"

    assert set(index_ddl(table_of(Task))) == {
        "idx_queue_items_priority",
        "idx_queue_items_completed_at",
        "idx_queue_items_worker_id",
        "idx_queue_items_unique_key",
        "idx_queue_items_depends_on",
        "idx_queue_items_job_type",
        "idx_queue_items_concurrency_key",
    }
    assert claim_function_name(table_of(Task)) == "claim_queue_items_batch"


def test_two_job_tables_on_one_metadata_get_distinct_index_names() -> None:
    class Base(DeclarativeBase):
        pass

    class A(JobMixin, Base):
        __tablename__ = "a_jobs"

    class B(JobMixin, Base):
        __tablename__ = "b_jobs"

    names = [index.name for table in Base.metadata.tables.values() for index in table.indexes]
    assert len(names) == len(set(names)) == 16
    # Each job table has its own controls table.
    assert sorted(Base.metadata.tables) == [
        "a_jobs",
        "a_jobs_controls",
        "b_jobs",
        "b_jobs_controls",
    ]


def test_over_long_claim_function_name_is_refused() -> None:
    class Base(DeclarativeBase):
        pass

    with pytest.raises(ModelError, match="longer than PostgreSQL's 63"):

        class Long(JobMixin, Base):
            __tablename__ = "t" * 60


def test_enums_match_the_original_design() -> None:
    assert [s.value for s in JobStatus] == [
        "waiting", "pending", "claimed", "running", "completed", "failed", "cancelled",
    ]  # fmt: skip
    assert (Priority.EXPLICIT, Priority.DISCOVERED, Priority.BACKFILL) == (150, 100, 30)
    assert str(JobStatus.RUNNING) == "running"


def test_the_table_carries_its_storage_parameters_and_a_model_may_replace_them() -> None:
    text = ddl(table_of(Job))
    assert "autovacuum_vacuum_threshold = 5000" in text and "fillfactor = 80" in text

    class Base(DeclarativeBase):
        pass

    class Quiet(JobMixin, Base):
        __tablename__ = "quiet_jobs"
        __table_storage__: ClassVar[dict[str, int | float]] = {"fillfactor": 90}

    assert ddl(table_of(Quiet)).rstrip().endswith("WITH (fillfactor = 90)")


def test_finished_jobs_are_indexed_by_completion_time() -> None:
    assert index_ddl(table_of(Job))["ix_jobs_finished"] == (
        "CREATE INDEX ix_jobs_finished ON jobs (completed_at) "
        "WHERE status IN ('completed', 'failed', 'cancelled')"
    )
