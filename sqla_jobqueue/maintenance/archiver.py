"""The archiver: moves finished jobs into a day-partitioned archive, and drops old days.

With an archive (:mod:`sqla_jobqueue.archive`), the job table keeps only live jobs and
those finished within ``after``. A round, under the duty's advisory lock:

1. in each transaction, creates the archive's partitions for every day from the oldest
   job due to move to tomorrow (``CREATE TABLE IF NOT EXISTS ... PARTITION OF``), and
   drops those whose whole day is older than ``retention``;
2. then moves due jobs, oldest first, ``batch_limit`` per transaction, while the
   transactions come back full.

Jobs older than ``retention`` are not moved (their day is dropped): the pruner deletes them
from the job table, as it does without an archive. Creating and dropping partitions needs
the archive's owner: a worker whose role may not gets a warning that says so, and archives
nothing until it may.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from ..archive import ArchiveStatements, Partition, is_archive_table, partition_days
from ..errors import InvalidJobError
from .base import DutyBase, check_positive_intervals
from .lock import try_lock
from .pruner import DEFAULT_PRUNE_BATCH_LIMIT

__all__ = ["DEFAULT_ARCHIVE_AFTER", "DEFAULT_ARCHIVE_INTERVAL", "Archiver", "ArchiverConfig"]

log = logging.getLogger("sqla_jobqueue.maintenance")

DEFAULT_ARCHIVE_AFTER = timedelta(hours=1)
"""How long finished jobs stay in the job table before they move to the archive."""
DEFAULT_ARCHIVE_INTERVAL = timedelta(minutes=1)
"""How often an archiving round runs (on one worker at a time)."""
_MAX_BATCHES_PER_ROUND = 100
_INSUFFICIENT_PRIVILEGE = "42501"
_MUST_BE_OWNER = "must be owner"


@dataclass(frozen=True)
class ArchiverConfig:
    """Settings of the archiver.

    Parameters
    ----------
    archive:
        The mapped :class:`~sqla_jobqueue.archive.JobArchiveMixin` model.
    after:
        Finished jobs older than this (by ``completed_at``) move to the archive.
    retention:
        Days of the archive older than this are dropped; ``None`` keeps them all.
    interval:
        Time between rounds.
    batch_limit:
        Most jobs moved per transaction.
    """

    archive: type[Any]
    after: timedelta = DEFAULT_ARCHIVE_AFTER
    retention: timedelta | None = None
    interval: timedelta = DEFAULT_ARCHIVE_INTERVAL
    batch_limit: int = DEFAULT_PRUNE_BATCH_LIMIT

    def __post_init__(self) -> None:
        table = getattr(self.archive, "__table__", None)
        if table is None or not is_archive_table(table):
            raise InvalidJobError(
                f"archive must be a mapped JobArchiveMixin model, got {self.archive!r}"
            )
        check_positive_intervals(self, "after", "interval")
        if self.retention is not None:
            check_positive_intervals(self, "retention")
            if self.retention <= self.after:
                raise InvalidJobError(
                    f"the retention ({self.retention}) must be longer than archive_after "
                    f"({self.after}): jobs are archived after archive_after and dropped with "
                    "their day after the retention"
                )
        limit = self.batch_limit
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidJobError(f"ArchiverConfig.batch_limit must be an int >= 1, got {limit!r}")


class Archiver(DutyBase[ArchiverConfig]):
    """Runs archiving rounds for one job model and its archive."""

    name = "archiver"

    def __init__(self, model: type[Any], config: ArchiverConfig) -> None:
        super().__init__(model, config)
        self.statements = ArchiveStatements(model.__table__, config.archive.__table__)

    def transaction(self, connection: Connection) -> int | None:
        """Keep the partitions (two catalog reads and an index lookup when none is
        missing), then move a batch of due jobs."""
        if not try_lock(connection, self.name, self.model.__table__):
            return None
        config = self.config
        if not self._keep_partitions(connection):
            return 0
        move = self.statements.move(config.after, config.retention, config.batch_limit)
        return int(connection.execute(*move).rowcount)

    def wants_another(self, changed: int, transactions: int) -> bool:
        """Another batch while the last one was full (at most 100 in a round)."""
        return changed >= self.config.batch_limit and transactions < _MAX_BATCHES_PER_ROUND

    def _keep_partitions(self, connection: Connection) -> bool:
        """Create the days the due jobs need (and tomorrow), drop the expired days; whether
        it could."""
        archive = self.config.archive.__table__
        now = datetime.now(timezone.utc)
        oldest = connection.execute(
            *self.statements.oldest_due(self.config.after, self.config.retention)
        ).scalar_one()
        existing = {
            partition
            for (name,) in connection.execute(*self.statements.partitions())
            if (partition := Partition.named(name)) is not None
        }
        wanted = partition_days(oldest or now, now + timedelta(days=1))
        ddl = [day.create(archive) for day in wanted if day not in existing]
        if self.config.retention is not None:
            expired = now - self.config.retention
            ddl += [day.drop(archive) for day in sorted(existing) if day.end <= expired]
        for statement in ddl:
            try:
                with connection.begin_nested():
                    connection.exec_driver_sql(statement)
            except DBAPIError as error:
                if not _not_allowed(error):
                    raise
                log.warning(
                    "archiver: role %s may not create or drop partitions of %s (%s): make "
                    "it a member of the archive's owner (docs/scaling.md#roles-of-the-"
                    "archive); until then no job is archived",
                    connection.engine.url.username,
                    archive.fullname,
                    str(error.orig).strip().splitlines()[0],
                )
                return False
        return True


def _not_allowed(error: DBAPIError) -> bool:
    return getattr(
        error.orig, "sqlstate", None
    ) == _INSUFFICIENT_PRIVILEGE or _MUST_BE_OWNER in str(error.orig)
