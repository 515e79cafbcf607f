"""What every repository method does, written once, without I/O.

Each method of :class:`~sqla_jobqueue.JobQueue` and :class:`~sqla_jobqueue.AsyncJobQueue` is
a *plan* here: a generator that checks its arguments (raising the errors of
:mod:`sqla_jobqueue.errors` before anything is written), yields requests — a
:class:`~sqla_jobqueue.statements.Bound` statement to execute (answered with its
``Result``), :class:`CanCopy`, :class:`Copy`, :class:`Add` — and returns the method's value.
The two queues only run plans: one on a ``Session``, the other awaiting an ``AsyncSession``.

:mod:`~sqla_jobqueue.plans.core` holds the requests and :class:`QueueCore`;
:mod:`~sqla_jobqueue.plans.enqueue`, :mod:`~sqla_jobqueue.plans.lifecycle` and
:mod:`~sqla_jobqueue.plans.reads` the plans.
"""

from __future__ import annotations

from .core import Add, CanCopy, Copy, JobRef, Plan, QueueCore, Request, default_worker_id
from .enqueue import ENQUEUE_PAGE_SIZE, check_job, enqueue, enqueue_many
from .lifecycle import (
    cancel,
    check_job_types,
    claim,
    complete,
    fail,
    heartbeat,
    prune,
    recover_stale,
    release,
    retry,
    start,
    update_progress,
)
from .reads import QueueStats, get, stats

__all__ = [
    "ENQUEUE_PAGE_SIZE",
    "Add",
    "CanCopy",
    "Copy",
    "JobRef",
    "Plan",
    "QueueCore",
    "QueueStats",
    "Request",
    "cancel",
    "check_job",
    "check_job_types",
    "claim",
    "complete",
    "default_worker_id",
    "enqueue",
    "enqueue_many",
    "fail",
    "get",
    "heartbeat",
    "prune",
    "recover_stale",
    "release",
    "retry",
    "start",
    "stats",
    "update_progress",
]
