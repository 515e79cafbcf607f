"""sqla_jobqueue: a PostgreSQL job queue inside your SQLAlchemy application.

Map :class:`JobMixin` onto your declarative base (or use the ready :class:`Job`), let
Alembic create the table and the claim function, and enqueue through a :class:`JobQueue`
bound to your session, in the same transaction as your own writes.
"""

from __future__ import annotations

from .backoff import Backoff
from .model import Job, JobMixin, JobStatus, Priority, metadata
from .queue import JobQueue, QueueStats

__all__ = [
    "Backoff",
    "Job",
    "JobMixin",
    "JobQueue",
    "JobStatus",
    "Priority",
    "QueueStats",
    "metadata",
]

__version__ = "0.1.0"
