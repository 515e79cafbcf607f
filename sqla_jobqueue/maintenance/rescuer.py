"""The rescuer: gives back the jobs of workers that stopped heartbeating.

A worker refreshes ``heartbeat_at`` of the jobs it runs every heartbeat interval. When a
worker dies (killed, out of memory, machine lost) its jobs stay ``running`` with an old
heartbeat. A rescue round runs the statement of :meth:`JobQueue.recover_stale
<sqla_jobqueue.JobQueue.recover_stale>`: jobs whose heartbeat is older than
``stale_timeout`` go back to ``pending`` (due now), or end ``failed`` when they have spent
their attempts, so a job that kills every worker that runs it stops after
``max_attempts``. A job that was claimed but never started gets its attempt back. A job
whose row another transaction has locked is skipped, not waited for: a later round
rescues it once the lock is gone.

``stale_timeout`` must comfortably exceed the workers' heartbeat interval: a live worker's
long job is then never rescued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection

from ..statements import JobStatements
from .base import DutyBase, check_positive_intervals
from .lock import try_lock

__all__ = [
    "DEFAULT_RESCUE_INTERVAL",
    "DEFAULT_STALE_TIMEOUT",
    "Rescuer",
    "RescuerConfig",
]

DEFAULT_STALE_TIMEOUT = timedelta(minutes=1)
"""A job whose heartbeat is older than this is presumed abandoned."""
DEFAULT_RESCUE_INTERVAL = timedelta(seconds=15)
"""How often a rescue round runs (on one worker at a time)."""


@dataclass(frozen=True)
class RescuerConfig:
    """Settings of the rescuer.

    Parameters
    ----------
    stale_timeout:
        Age of the last heartbeat after which a held job is rescued.
    interval:
        Time between rounds.
    """

    stale_timeout: timedelta = DEFAULT_STALE_TIMEOUT
    interval: timedelta = DEFAULT_RESCUE_INTERVAL

    def __post_init__(self) -> None:
        check_positive_intervals(self, "stale_timeout", "interval")


class Rescuer(DutyBase[RescuerConfig]):
    """Runs rescue rounds for one job model.

    Parameters
    ----------
    model:
        The mapped job model.
    config:
        Its settings.
    """

    name = "rescuer"

    def __init__(self, model: type[Any], config: RescuerConfig | None = None) -> None:
        super().__init__(model, config or RescuerConfig())

    def transaction(self, connection: Connection) -> int | None:
        """Rescue stale jobs under the duty's advisory lock (one transaction per round)."""
        if not try_lock(connection, self.name, self.model.__table__):
            return None
        rescue = JobStatements.of(self.model.__table__).recover_stale(self.config.stale_timeout)
        return int(connection.execute(*rescue).rowcount)
