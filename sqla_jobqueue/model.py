"""The job table as a declarative mixin, and a ready model for apps that want one.

An application maps :class:`JobMixin` onto its own ``DeclarativeBase``; the columns,
the CHECK constraints and the partial indexes that claiming relies on are then part of
the application's own ``MetaData``, and Alembic autogenerate sees them like any other
table::

    class Base(DeclarativeBase):
        pass

    class Job(JobMixin, Base):
        __tablename__ = "jobs"

Three optional class attributes adjust the table: ``__table_schema__`` puts it in a schema,
``__claim_function__`` names the SQL claim function that the Alembic operation installs
for it (by default ``claim_job_batch`` for a table called ``jobs`` and
``claim_<table>_batch`` otherwise), and ``__table_storage__`` replaces the table's storage
parameters (:data:`JOB_TABLE_STORAGE`: autovacuum on a fixed number of changed rows).

Constraint and index names follow the metadata's ``naming_convention`` when it has one
for checks (``ck``) or indexes (``ix``); otherwise they are ``<table>_status_check``,
``<table>_progress_check`` and ``ix_<table>_<purpose>``.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, cast

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    Enum,
    Index,
    Integer,
    Interval,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from .errors import ModelError
from .ids import new_job_id
from .sql import MAX_IDENTIFIER_LENGTH, controls_table_name, short_identifier

__all__ = [
    "FINISHED_PREDICATE",
    "FINISHED_STATUSES",
    "HELD_STATUSES",
    "JOB_TABLE_STORAGE",
    "KEYED_HELD_PREDICATE",
    "KEYED_PENDING_PREDICATE",
    "LIVE_STATUSES",
    "MAX_CONCURRENCY_KEY_LENGTH",
    "MAX_DEPENDENCIES",
    "RUNS_ALONE_PREDICATE",
    "UNFINISHED_STATUSES",
    "UNIQUE_KEY_PREDICATE",
    "WAITING_PREDICATE",
    "Job",
    "JobMixin",
    "JobStatus",
    "Priority",
    "StorageValue",
    "TableNames",
    "claim_function_name",
    "controls_table",
    "is_job_table",
    "metadata",
    "status_list_sql",
]


class JobStatus(str, enum.Enum):
    """The states of a job (see the state diagram in the concepts docs)."""

    WAITING = "waiting"
    """Not claimable until every job it depends on has completed (``depends_on``)."""
    PENDING = "pending"
    CLAIMED = "claimed"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


DEFAULT_MAX_ATTEMPTS = 3
"""How many times a job may be claimed when its enqueuer does not say (the column's default)."""


class Priority(enum.IntEnum):
    """Named priorities of the original design; any int32 is accepted."""

    EXPLICIT = 150
    """Work a user asked for and is waiting on."""
    DISCOVERED = 100
    """Work the system found on its own (the default)."""
    BACKFILL = 30
    """Background catch-up work that may wait."""


HELD_STATUSES: tuple[JobStatus, ...] = (JobStatus.CLAIMED, JobStatus.RUNNING)
"""States in which a worker holds the job."""
LIVE_STATUSES: tuple[JobStatus, ...] = (JobStatus.PENDING, *HELD_STATUSES)
"""States in which a job may still run; ``unique_key`` is unique among them."""
UNFINISHED_STATUSES: tuple[JobStatus, ...] = (JobStatus.WAITING, *LIVE_STATUSES)
"""States a job has not left yet: it may be cancelled, and waited for."""
FINISHED_STATUSES: tuple[JobStatus, ...] = (
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
)
"""Final states; ``completed_at`` records when a job reached one of them."""


def status_list_sql(statuses: tuple[JobStatus, ...]) -> str:
    """``'pending', 'claimed'``: statuses as SQL literals, for predicates that select a
    partial index (a bound parameter would hide the constant from the planner)."""
    return ", ".join(f"'{s.value}'" for s in statuses)


UNIQUE_KEY_PREDICATE = f"unique_key IS NOT NULL AND status IN ({status_list_sql(LIVE_STATUSES)})"
"""Where ``unique_key`` must be unique: among live jobs that have a key."""

FINISHED_PREDICATE = f"status IN ({status_list_sql(FINISHED_STATUSES)})"
"""Finished jobs, indexed by ``completed_at``: what pruning deletes oldest first and what
``status`` counts over the last minute, without reading the rest of a large table."""

StorageValue = int | float | str
"""A storage parameter's value: a number, or a word such as ``on``."""

JOB_TABLE_STORAGE: dict[str, StorageValue] = {
    "autovacuum_vacuum_scale_factor": 0.0,
    "autovacuum_vacuum_threshold": 5000,
    "autovacuum_vacuum_insert_scale_factor": 0.0,
    "autovacuum_vacuum_insert_threshold": 10000,
    "autovacuum_analyze_scale_factor": 0.0,
    "autovacuum_analyze_threshold": 5000,
    "autovacuum_vacuum_cost_delay": 0,
    "vacuum_index_cleanup": "on",
    "fillfactor": 80,
}
"""The job table's storage parameters (``CREATE TABLE ... WITH``). Vacuum and analyze run
after a fixed number of changed rows rather than a fraction of the table, so that the
dead entries of claimed jobs leave the claim index as often on a table of ten million
finished rows as on an empty one, and at full speed; ``vacuum_index_cleanup`` keeps vacuum
from skipping the indexes when few of a large table's pages hold dead rows, which would
leave those entries in the claim index; ``fillfactor`` leaves room for the heartbeat and
progress updates to be HOT updates. docs/production.md explains each."""

WAITING_PREDICATE = f"status = '{JobStatus.WAITING.value}'"
"""Jobs waiting for the jobs they depend on, indexed by ``depends_on`` (GIN): the jobs
that run after a given one are found when it finishes, and counted by ``status``."""

MAX_DEPENDENCIES = 100
"""Most jobs one job may depend on."""

RUNS_ALONE_PREDICATE = f"status = '{JobStatus.PENDING.value}' AND crashes > 0"
"""Pending jobs that run alone: each was running in a worker process that died. Such a
job is claimed only by a worker running nothing else, and by itself, so that a crash while
it runs is its own (see docs/reliability.md)."""

MAX_CONCURRENCY_KEY_LENGTH = 255
"""Longest ``concurrency_key``, in characters."""

KEYED_PENDING_PREDICATE = f"status = '{JobStatus.PENDING.value}' AND concurrency_key IS NOT NULL"
"""Pending jobs with a concurrency key, indexed by type, key and age: a claim of a type
limited per key finds whether a job has older ones of its key still to run."""

KEYED_HELD_PREDICATE = (
    f"status IN ({status_list_sql(HELD_STATUSES)}) AND concurrency_key IS NOT NULL"
)
"""Claimed and running jobs with a concurrency key, indexed by key and type: a claim of a
type limited per key counts those of a job's key (the key first, so that a naming
convention by first column does not name it as the pending jobs' index). Jobs without a
key are in neither index, so the two cost nothing to applications that never set one."""

_INFO_KEY = "sqla_jobqueue"
_CONTROLS_INFO_KEY = "sqla_jobqueue_controls"
_DEFAULT_IX_CONVENTION = "ix_%(column_0_label)s"


@dataclass(frozen=True)
class TableNames:
    """Names of a mixin table's constraints and indexes: by the metadata's
    ``naming_convention`` when it has ``ck`` or ``ix`` entries, otherwise
    ``<table>_<purpose>_check`` and ``ix_<table>_<purpose>``."""

    table: str
    convention: Mapping[str, Any]

    @classmethod
    def of(cls, model: type[Any], mixin: str) -> TableNames:
        """The names for a declarative class being mapped with ``mixin``."""
        table = model.__dict__.get("__tablename__") or getattr(model, "__tablename__", None)
        if not isinstance(table, str):
            raise ModelError(f"{model.__name__} maps {mixin} but has no __tablename__")
        metadata: MetaData = getattr(model, "metadata")  # noqa: B009 - set by DeclarativeBase
        return cls(table, metadata.naming_convention)

    def check(self, purpose: str) -> str:
        """The name of a CHECK constraint."""
        return purpose if "ck" in self.convention else f"{self.table}_{purpose}_check"

    def index(self, purpose: str) -> str | None:
        """The name of an index (``None``: the convention names it by its columns)."""
        ix = self.convention.get("ix", _DEFAULT_IX_CONVENTION)
        if ix == _DEFAULT_IX_CONVENTION:
            return f"ix_{self.table}_{purpose}"
        return purpose if "%(constraint_name)s" in str(ix) else None


def _timestamp(**kwargs: Any) -> Any:
    return mapped_column(DateTime(timezone=True), **kwargs)


def _status_type() -> Enum:
    return Enum(
        JobStatus,
        native_enum=False,
        create_constraint=False,
        length=20,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class JobMixin:
    """Columns, constraints and indexes of a job table, for any declarative base.

    The columns are those of the original design plus ``run_at`` (not claimable
    before), ``heartbeat_at`` (refreshed by the worker holding the job), ``unique_key``
    (at most one live job per key), ``result`` (a small JSON result), ``crashes`` (how
    many times a worker process died while running the job; a job that has crashed once
    runs alone, see :data:`RUNS_ALONE_PREDICATE`), ``depends_on`` (the jobs that must
    complete before this one may run; it is ``waiting`` until then) and ``awaited``
    (someone waits for the job to finish, a caller of ``JobQueue.wait`` or a job that
    depends on it: when it finishes, a trigger announces it and settles its dependents).
    """

    __table_schema__: ClassVar[str | None] = None
    __claim_function__: ClassVar[str | None] = None
    __table_storage__: ClassVar[Mapping[str, StorageValue]] = JOB_TABLE_STORAGE

    id: Mapped[uuid.UUID] = mapped_column(
        Uuid, primary_key=True, default=new_job_id, server_default=text("gen_random_uuid()")
    )
    job_type: Mapped[str] = mapped_column(String(50))
    priority: Mapped[int] = mapped_column(Integer, server_default=text("100"))
    status: Mapped[JobStatus] = mapped_column(_status_type(), server_default=text("'pending'"))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    progress: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    current_stage: Mapped[str | None] = mapped_column(String(100))
    events_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    worker_id: Mapped[str | None] = mapped_column(String(100))
    claimed_at: Mapped[datetime | None] = _timestamp()
    created_at: Mapped[datetime] = _timestamp(server_default=text("now()"))
    started_at: Mapped[datetime | None] = _timestamp()
    completed_at: Mapped[datetime | None] = _timestamp()
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(
        Integer, server_default=text(str(DEFAULT_MAX_ATTEMPTS))
    )
    last_error: Mapped[str | None] = mapped_column(Text)
    run_at: Mapped[datetime] = _timestamp(server_default=text("now()"))
    heartbeat_at: Mapped[datetime | None] = _timestamp()
    unique_key: Mapped[str | None] = mapped_column(String(255))
    result: Mapped[Any | None] = mapped_column(JSONB)
    crashes: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    depends_on: Mapped[list[uuid.UUID] | None] = mapped_column(ARRAY(Uuid))
    awaited: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    concurrency_key: Mapped[str | None] = mapped_column(String(MAX_CONCURRENCY_KEY_LENGTH))

    @declared_attr.directive
    @classmethod
    def __table_args__(cls) -> tuple[Any, ...]:
        names = TableNames.of(cls, "JobMixin")
        table = names.table
        function = cls.__claim_function__ or default_claim_function_name(table)
        if len(function.encode()) > MAX_IDENTIFIER_LENGTH:
            raise ModelError(
                f"claim function name {function!r} is longer than PostgreSQL's 63 characters; "
                f"set {cls.__name__}.__claim_function__ to a shorter name"
            )
        check_name, index_name = names.check, names.index

        metadata: MetaData = getattr(cls, "metadata")  # noqa: B009 - set by DeclarativeBase
        controls = _controls_table(metadata, table, cls.__table_schema__)
        kwargs: dict[str, Any] = {
            "info": {_INFO_KEY: {"claim_function": function, "controls": controls.key}},
            "postgresql_with": dict(cls.__table_storage__),
        }
        if cls.__table_schema__ is not None:
            kwargs["schema"] = cls.__table_schema__
        return (
            CheckConstraint(
                f"status IN ({status_list_sql(tuple(JobStatus))})", name=check_name("status")
            ),
            CheckConstraint("progress BETWEEN 0 AND 100", name=check_name("progress")),
            Index(
                index_name("claimable"),
                cast(Column[int], cls.priority).desc(),
                "created_at",
                "id",
                postgresql_where=text(f"status = '{JobStatus.PENDING.value}'"),
            ),
            Index(
                index_name("runs_alone"),
                cast(Column[int], cls.priority).desc(),
                "created_at",
                "id",
                postgresql_where=text(RUNS_ALONE_PREDICATE),
            ),
            Index(
                index_name("held_by_worker"),
                "worker_id",
                postgresql_where=text(f"status IN ({status_list_sql(HELD_STATUSES)})"),
            ),
            Index(
                index_name("unique_key"),
                "unique_key",
                unique=True,
                postgresql_where=text(UNIQUE_KEY_PREDICATE),
            ),
            Index(
                index_name("waiting"),
                "depends_on",
                postgresql_using="gin",
                postgresql_where=text(WAITING_PREDICATE),
            ),
            Index(
                index_name("keyed_pending"),
                "job_type",
                "concurrency_key",
                "created_at",
                "id",
                postgresql_where=text(KEYED_PENDING_PREDICATE),
            ),
            Index(
                index_name("keyed_held"),
                "concurrency_key",
                "job_type",
                postgresql_where=text(KEYED_HELD_PREDICATE),
            ),
            Index(
                index_name("finished"),
                "completed_at",
                postgresql_where=text(FINISHED_PREDICATE),
            ),
            kwargs,
        )


def _controls_table(metadata: MetaData, job_table: str, schema: str | None) -> Table:
    """The controls table of ``job_table``, added to ``metadata`` beside it.

    One row per job type that an operator controls: ``paused_at`` is set while the type
    is paused (claims pass over its jobs) and ``reason`` says why; ``max_running``,
    ``max_running_per_key`` and ``rate_limit`` per ``rate_period`` limit the type's claims,
    and ``rate_tokens`` (as of ``rate_refilled_at``) is what its rate limit's bucket held
    after the last claim.
    """
    name = controls_table_name(job_table)
    key = name if schema is None else f"{schema}.{name}"

    def check(purpose: str) -> str:
        # As TableNames.check: by the metadata's convention when it names CHECKs.
        if "ck" in metadata.naming_convention:
            return purpose
        return short_identifier(name, f"_{purpose}_check")

    existing = metadata.tables.get(key)
    if existing is not None:
        return existing
    return Table(
        name,
        metadata,
        Column("job_type", String(50), primary_key=True),
        Column("paused_at", DateTime(timezone=True)),
        Column("reason", Text),
        Column("updated_at", DateTime(timezone=True), server_default=text("now()"), nullable=False),
        Column("max_running", Integer),
        Column("max_running_per_key", Integer),
        Column("rate_limit", Integer),
        Column("rate_period", Interval),
        Column("rate_tokens", Double),
        Column("rate_refilled_at", DateTime(timezone=True)),
        CheckConstraint("max_running >= 1", name=check("max_running")),
        CheckConstraint("max_running_per_key >= 1", name=check("max_running_per_key")),
        CheckConstraint(
            "(rate_limit IS NULL) = (rate_period IS NULL) "
            "AND rate_limit >= 1 AND rate_period > interval '0'",
            name=check("rate"),
        ),
        schema=schema,
        info={_CONTROLS_INFO_KEY: {"job_table": job_table}},
    )


def controls_table(table: Table) -> Table:
    """The controls table of a job table (declared with it by :class:`JobMixin`)."""
    if not is_job_table(table):
        raise ValueError(f"table {table.fullname!r} is not a JobMixin table")
    return table.metadata.tables[str(table.info[_INFO_KEY]["controls"])]


def default_claim_function_name(table_name: str) -> str:
    """The claim function's name for a table: ``claim_job_batch`` for ``jobs``."""
    return "claim_job_batch" if table_name == "jobs" else f"claim_{table_name}_batch"


def is_job_table(table: Table) -> bool:
    """Whether ``table`` was built from :class:`JobMixin`."""
    return _INFO_KEY in table.info


def claim_function_name(table: Table) -> str:
    """The name of the claim function installed for a job table."""
    if not is_job_table(table):
        raise ValueError(f"table {table.fullname!r} is not a JobMixin table")
    return str(table.info[_INFO_KEY]["claim_function"])


metadata = MetaData()
"""The metadata of the ready :class:`Job` model; add it to Alembic's ``target_metadata``."""


class _Base(DeclarativeBase):
    metadata = metadata


class Job(JobMixin, _Base):
    """A ready job model on :data:`metadata`, table ``jobs`` in the default schema."""

    __tablename__ = "jobs"
