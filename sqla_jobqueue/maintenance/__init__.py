"""Maintenance duties: background work that one worker at a time does for everyone.

Each duty is a small module with a frozen config dataclass (named defaults, validated on
construction) and a class whose :meth:`~Duty.run_once` does one round in short
transactions. A round first takes a PostgreSQL advisory lock specific to the duty and the
job table with ``pg_try_advisory_xact_lock``; when another worker holds it the round is
skipped, so however many workers run, each duty runs on one of them at a time. The lock
lives only as long as the transaction, so a worker that dies mid-round frees it.

A round never waits on someone else's lock: rows other transactions have locked are
skipped (``SKIP LOCKED``) and left to a later round, and every other lock wait is bounded
by a ``lock_timeout`` local to the transaction (:data:`~.base.DUTY_LOCK_TIMEOUT`), past
which the round gives up, as when another worker holds the duty.

- :mod:`~sqla_jobqueue.maintenance.rescuer`: returns jobs whose heartbeat went stale to
  ``pending`` (or ``failed`` when their attempts are spent).
- :mod:`~sqla_jobqueue.maintenance.pruner`: deletes finished jobs older than a retention.
- :mod:`~sqla_jobqueue.maintenance.settler`: settles waiting jobs whose dependencies
  finished without settling them (a race between two transactions).
- :mod:`~sqla_jobqueue.maintenance.archiver`: with an archive, moves finished jobs into it
  and drops its days older than the retention.
- :mod:`~sqla_jobqueue.maintenance.scheduler`: enqueues the ticks of periodic jobs. It
  takes no advisory lock: every worker runs it, at each tick, and the statement that
  enqueues a tick lets exactly one of them do it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Engine

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

from .archiver import Archiver, ArchiverConfig
from .lock import LOCK_CLASS_ID, try_lock
from .pruner import Pruner, PrunerConfig
from .rescuer import Rescuer, RescuerConfig
from .scheduler import Scheduler, SchedulerConfig
from .settler import Settler, SettlerConfig

__all__ = [
    "LOCK_CLASS_ID",
    "Archiver",
    "ArchiverConfig",
    "Duty",
    "Pruner",
    "PrunerConfig",
    "Rescuer",
    "RescuerConfig",
    "Scheduler",
    "SchedulerConfig",
    "Settler",
    "SettlerConfig",
    "try_lock",
]


class Duty(Protocol):
    """What the worker needs of a maintenance duty."""

    name: str
    """Short name, used in logs and in the advisory lock key."""

    @property
    def interval(self) -> float:
        """Seconds between two rounds."""
        ...

    def run_once(self, engine: Engine) -> int | None:
        """One round: the number of jobs changed, ``None`` when it was skipped (another
        worker holds the duty's lock, or a lock held by another transaction kept it waiting
        past :data:`~.base.DUTY_LOCK_TIMEOUT` before it changed anything)."""
        ...

    async def run_once_async(self, engine: AsyncEngine) -> int | None:
        """:meth:`run_once` on an ``AsyncEngine``."""
        ...
