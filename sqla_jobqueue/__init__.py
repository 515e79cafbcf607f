"""sqla_jobqueue: a PostgreSQL job queue inside your SQLAlchemy application.

Map :class:`JobMixin` onto your declarative base (or use the ready :class:`Job`), let
Alembic create the table and the claim function, and enqueue through a :class:`JobQueue`
bound to your session, in the same transaction as your own writes.
"""

from __future__ import annotations

from .backoff import Backoff
from .handlers import Cancel, JobContext, Registry, Retry
from .model import Job, JobMixin, JobStatus, Priority, metadata
from .queue import JobQueue, QueueStats
from .worker import Worker

__all__ = [
    "Backoff",
    "Cancel",
    "Job",
    "JobContext",
    "JobMixin",
    "JobQueue",
    "JobStatus",
    "Priority",
    "QueueStats",
    "Registry",
    "Retry",
    "Worker",
    "metadata",
]

__version__ = "0.1.0"
