"""sqla_jobqueue: a PostgreSQL job queue inside your SQLAlchemy application.

Map :class:`JobMixin` onto your declarative base (or use the ready :class:`Job`), let
Alembic create the table and the claim function, and enqueue through a :class:`JobQueue`
bound to your session (an :class:`AsyncJobQueue` bound to an ``AsyncSession``), in the
same transaction as your own writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .aqueue import AsyncJobQueue
from .archive import JobArchiveMixin
from .backoff import Backoff
from .handlers import AsyncJobContext, Cancel, JobContext, Registry, Retry, Snooze
from .model import Job, JobMixin, JobStatus, Priority, metadata
from .plans.bulk import JobFilter
from .queue import JobQueue, PausedType, QueueStats, TypeLimits
from .schedules import Cron, Every, JobSchedule, JobScheduleMixin, Missed

if TYPE_CHECKING:
    from .worker import AsyncWorker, Worker

__all__ = [
    "AsyncJobContext",
    "AsyncJobQueue",
    "AsyncWorker",
    "Backoff",
    "Cancel",
    "Cron",
    "Every",
    "Job",
    "JobArchiveMixin",
    "JobContext",
    "JobFilter",
    "JobMixin",
    "JobQueue",
    "JobSchedule",
    "JobScheduleMixin",
    "JobStatus",
    "Missed",
    "PausedType",
    "Priority",
    "QueueStats",
    "Registry",
    "Retry",
    "Snooze",
    "TypeLimits",
    "Worker",
    "metadata",
]

__version__ = "0.1.0"


# An application that only enqueues imports this package in every web process: the worker
# (its threads, listener and maintenance) loads on first use of ``Worker`` instead. Hidden
# from type checkers, which see the import above and no catch-all attribute.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        if name in ("Worker", "AsyncWorker"):
            from . import worker

            value = getattr(worker, name)
            globals()[name] = value
            return value
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
