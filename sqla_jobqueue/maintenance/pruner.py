"""The pruner: deletes finished jobs once they are older than the retention.

Completed, failed and cancelled jobs stay in the table for inspection (their result, their
last error) for ``retention`` after ``completed_at``, then a pruning round deletes them
with the statement of :meth:`JobQueue.prune <sqla_jobqueue.JobQueue.prune>`, at most
``batch_limit`` rows per transaction so that a large backlog never holds locks for long.
A job whose row another transaction has locked is skipped, not waited for, and deleted by
a later round.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection

from ..statements import JobStatements
from .base import DutyBase, check_batch_limit, check_positive_intervals
from .lock import try_lock

__all__ = [
    "DEFAULT_PRUNE_BATCH_LIMIT",
    "DEFAULT_PRUNE_INTERVAL",
    "DEFAULT_RETENTION",
    "Pruner",
    "PrunerConfig",
]

DEFAULT_RETENTION = timedelta(days=7)
"""How long finished jobs are kept."""
DEFAULT_PRUNE_INTERVAL = timedelta(minutes=5)
"""How often a pruning round runs (on one worker at a time)."""
DEFAULT_PRUNE_BATCH_LIMIT = 10_000
"""Most rows one pruning transaction deletes."""
_MAX_BATCHES_PER_ROUND = 100


@dataclass(frozen=True)
class PrunerConfig:
    """Settings of the pruner.

    Parameters
    ----------
    retention:
        Finished jobs older than this (by ``completed_at``) are deleted.
    interval:
        Time between rounds.
    batch_limit:
        Most rows deleted per transaction.
    """

    retention: timedelta = DEFAULT_RETENTION
    interval: timedelta = DEFAULT_PRUNE_INTERVAL
    batch_limit: int = DEFAULT_PRUNE_BATCH_LIMIT

    def __post_init__(self) -> None:
        check_positive_intervals(self, "retention", "interval")
        check_batch_limit(self)


class Pruner(DutyBase[PrunerConfig]):
    """Runs pruning rounds for one job model.

    Parameters
    ----------
    model:
        The mapped job model.
    config:
        Its settings.
    """

    name = "pruner"

    def __init__(self, model: type[Any], config: PrunerConfig | None = None) -> None:
        super().__init__(model, config or PrunerConfig())

    def transaction(self, connection: Connection) -> int | None:
        """Delete at most ``batch_limit`` expired finished jobs under the duty's advisory
        lock; a round deletes batch after batch while they come back full."""
        if not try_lock(connection, self.name, self.model.__table__):
            return None
        statements = JobStatements.of(self.model.__table__)
        prune = statements.prune(self.config.retention, self.config.batch_limit)
        return int(connection.execute(*prune).rowcount)

    def wants_another(self, changed: int, transactions: int) -> bool:
        """Another batch while the last one was full (at most 100 in a round)."""
        return changed >= self.config.batch_limit and transactions < _MAX_BATCHES_PER_ROUND
