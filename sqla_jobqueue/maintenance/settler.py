"""The settler: settles waiting jobs that nothing else settled.

When a job that others depend on finishes, the job queue's trigger settles them in the
same transaction: they become ``pending`` once everything they depend on has completed,
or end ``cancelled`` when something they depend on failed or was cancelled. Two
transactions can miss each other, though: the last two jobs a job depends on finishing at
the same moment in two workers (each sees the other still running), or a job finishing
while the job that depends on it is being enqueued. A settling round, on one worker at a
time, runs the same settle function over every waiting job, so such a job waits at most
one ``interval`` more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection

from ..statements import JobStatements
from .base import DutyBase, check_batch_limit, check_positive_intervals
from .lock import try_lock

__all__ = ["DEFAULT_SETTLE_INTERVAL", "Settler", "SettlerConfig"]

DEFAULT_SETTLE_INTERVAL = timedelta(seconds=10)
"""How often a settling round runs (on one worker at a time)."""
_DEFAULT_BATCH_LIMIT = 10_000


@dataclass(frozen=True)
class SettlerConfig:
    """Settings of the settler.

    Parameters
    ----------
    interval:
        Time between rounds.
    batch_limit:
        Most jobs released, and most cancelled, per transaction.
    """

    interval: timedelta = DEFAULT_SETTLE_INTERVAL
    batch_limit: int = _DEFAULT_BATCH_LIMIT

    def __post_init__(self) -> None:
        check_positive_intervals(self, "interval")
        check_batch_limit(self)


class Settler(DutyBase[SettlerConfig]):
    """Runs settling rounds for one job model.

    Parameters
    ----------
    model:
        The mapped job model.
    config:
        Its settings.
    """

    name = "settler"

    def __init__(self, model: type[Any], config: SettlerConfig | None = None) -> None:
        super().__init__(model, config or SettlerConfig())

    def transaction(self, connection: Connection) -> int | None:
        """Settle waiting jobs under the duty's advisory lock."""
        if not try_lock(connection, self.name, self.model.__table__):
            return None
        settle = JobStatements.of(self.model.__table__).settle_waiting(self.config.batch_limit)
        return int(connection.execute(*settle).scalar_one())

    def wants_another(self, changed: int, transactions: int) -> bool:
        """Another transaction while the last one settled a full batch (at most 100)."""
        return changed >= self.config.batch_limit and transactions < 100
