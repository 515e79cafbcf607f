"""An archive of finished jobs, partitioned by day, that keeps them out of the job table.

Opt in by mapping :class:`JobArchiveMixin` beside your job model and giving workers
``archive=`` (``--archive`` on the command line)::

    class Job(JobMixin, Base):
        __tablename__ = "jobs"

    class JobArchive(JobArchiveMixin, Base):
        __tablename__ = "jobs_archive"

    Worker(engine, registry, archive=JobArchive, archive_after=timedelta(hours=1))

The archive has the job table's columns. Its primary key is ``(id, completed_at)`` and it
is ``PARTITION BY RANGE (completed_at)``, one partition a day (UTC), named
``<archive>_pYYYYMMDD``. A worker's archiver (:mod:`sqla_jobqueue.maintenance.archiver`)
moves finished jobs older than ``archive_after`` into it in short transactions, creates
the partitions they need, and drops every partition whose day is older than the
retention: retention is a ``DROP TABLE``, not millions of ``DELETE``\\ s. The job table then
holds live jobs and the last ``archive_after`` of finished ones, however long the history.

The table itself comes from your metadata like any other (``alembic revision
--autogenerate`` writes its ``create_table`` with ``postgresql_partition_by``); its
partitions are made by the archiver, which PostgreSQL allows only to the archive's owner
(see docs/scaling.md for the roles).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    Interval,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    any_,
    delete,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from .model import FINISHED_PREDICATE, FINISHED_STATUSES, JobMixin, TableNames
from .sql import format_table, short_identifier
from .statements.base import Bound, param
from .statements.fence import status_literals

__all__ = [
    "ArchiveStatements",
    "JobArchiveMixin",
    "Partition",
    "is_archive_table",
    "partition_days",
]

_INFO_KEY = "sqla_jobqueue_archive"
_SUFFIX = re.compile(r"_p(\d{8})$")
_DAY = timedelta(days=1)


class JobArchiveMixin(JobMixin):
    """The columns of a job table, for an archive of finished jobs partitioned by day.

    ``completed_at`` is part of the primary key (a partitioned table's keys must hold its
    partition key); an index on ``(job_type, completed_at)`` serves the usual question of
    an archive: the jobs of one type over a time range.
    """

    completed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)

    @declared_attr.directive
    @classmethod
    def __table_args__(cls) -> tuple[Any, ...]:
        names = TableNames.of(cls, "JobArchiveMixin")
        return (
            PrimaryKeyConstraint("id", "completed_at"),
            CheckConstraint(FINISHED_PREDICATE, name=names.check("status")),
            Index(names.index("by_type"), "job_type", "completed_at"),
            {
                "postgresql_partition_by": "RANGE (completed_at)",
                "info": {_INFO_KEY: True},
            },
        )


def is_archive_table(table: Table) -> bool:
    """Whether ``table`` was built from :class:`JobArchiveMixin`."""
    return _INFO_KEY in table.info


@dataclass(frozen=True, order=True)
class Partition:
    """One day of an archive: completed_at from its midnight (UTC) to the next."""

    day: date

    def name(self, archive: Table) -> str:
        """``<archive>_pYYYYMMDD``, cut to PostgreSQL's identifier length if need be."""
        return short_identifier(archive.name, f"_p{self.day:%Y%m%d}")

    @property
    def start(self) -> datetime:
        return datetime(self.day.year, self.day.month, self.day.day, tzinfo=timezone.utc)

    @property
    def end(self) -> datetime:
        return self.start + _DAY

    def create(self, archive: Table) -> str:
        """``CREATE TABLE IF NOT EXISTS ... PARTITION OF`` the archive for this day."""
        return (
            f"CREATE TABLE IF NOT EXISTS {_qualified(archive, self.name(archive))} "
            f"PARTITION OF {format_table(archive)} FOR VALUES FROM "
            f"('{self.start.isoformat()}') TO ('{self.end.isoformat()}')"
        )

    def drop(self, archive: Table) -> str:
        """``DROP TABLE`` of this day's partition."""
        return f"DROP TABLE IF EXISTS {_qualified(archive, self.name(archive))}"

    @classmethod
    def named(cls, name: str) -> Partition | None:
        """The partition a child table's name stands for; ``None`` for one not ours."""
        found = _SUFFIX.search(name)
        if found is None:
            return None
        try:
            return cls(datetime.strptime(found.group(1), "%Y%m%d").date())
        except ValueError:
            return None


def partition_days(first: datetime, last: datetime) -> list[Partition]:
    """The partitions that hold every ``completed_at`` from ``first`` to ``last``."""
    day, until = first.astimezone(timezone.utc).date(), last.astimezone(timezone.utc).date()
    days = []
    while day <= until:
        days.append(Partition(day))
        day += _DAY
    return days


def _qualified(archive: Table, name: str) -> str:
    partition = Table(name, MetaData(), schema=archive.schema)
    return format_table(partition)


class ArchiveStatements:
    """The statements of the archiver, between one job table and its archive."""

    def __init__(self, jobs: Table, archive: Table) -> None:
        self.jobs = jobs
        self.archive = archive
        self._columns = [c.name for c in archive.columns if c.name in jobs.c]
        self._moves = {kept: self._build_move(kept) for kept in (False, True)}

    def _due(self, kept: bool) -> list[Any]:
        """Finished jobs older than ``p_after`` and, when ``kept``, not older than
        ``p_keep``: those are the pruner's, their day already dropped."""
        c = self.jobs.c
        now = func.statement_timestamp()
        due = [
            c.status.in_(status_literals(FINISHED_STATUSES)),
            c.completed_at < now - param("p_after", Interval()),
        ]
        if kept:
            due.append(c.completed_at >= now - param("p_keep", Interval()))
        return due

    @staticmethod
    def _params(after: timedelta, keep: timedelta | None) -> dict[str, Any]:
        return {"p_after": after} if keep is None else {"p_after": after, "p_keep": keep}

    def oldest_due(self, after: timedelta, keep: timedelta | None) -> Bound:
        """When the oldest job to archive finished (``NULL``: none is due), read from the
        index of finished jobs."""
        statement = select(func.min(self.jobs.c.completed_at)).where(*self._due(keep is not None))
        return Bound(statement, self._params(after, keep))

    def _build_move(self, kept: bool) -> Any:
        c = self.jobs.c
        doomed = (
            select(c.id)
            .where(*self._due(kept))
            .order_by(c.completed_at)
            .limit(param("p_limit", Integer()))
            .with_for_update(skip_locked=True)
        )
        moved = (
            delete(self.jobs)
            .where(c.id == any_(func.array(doomed.scalar_subquery())))
            .returning(*(c[name] for name in self._columns))
            .cte("moved")
        )
        # SQLAlchemy keeps the rowcount of an INSERT only when asked to.
        return (
            insert(self.archive)
            .from_select(self._columns, select(*(moved.c[name] for name in self._columns)))
            .execution_options(preserve_rowcount=True)
        )

    def move(self, after: timedelta, keep: timedelta | None, limit: int) -> Bound:
        """Move at most ``limit`` due jobs, oldest first, from the job table to the archive
        in one statement (``DELETE ... RETURNING`` into ``INSERT``). Rows another
        transaction has locked are skipped."""
        params = {**self._params(after, keep), "p_limit": limit}
        return Bound(self._moves[keep is not None], params)

    def partitions(self) -> Bound:
        """The names of the archive's partitions."""
        statement = text(
            "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:p_archive)"
        )
        return Bound(statement, {"p_archive": format_table(self.archive)})
