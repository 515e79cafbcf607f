"""What every repository method does, written once, without I/O.

Each method of :class:`~sqla_jobqueue.JobQueue` and :class:`~sqla_jobqueue.AsyncJobQueue` is
a *plan* here: a generator that checks its arguments (raising the errors of
:mod:`sqla_jobqueue.errors` before anything is written), yields requests — a
:class:`~sqla_jobqueue.statements.Bound` statement to execute (answered with its
``Result``), :class:`CanCopy`, :class:`Copy`, :class:`Add` — and returns the method's value.
The two queues only run plans: one on a ``Session``, the other awaiting an ``AsyncSession``.

:mod:`~sqla_jobqueue.plans.core` holds the requests and :class:`QueueCore`;
:mod:`~sqla_jobqueue.plans.enqueue`, :mod:`~sqla_jobqueue.plans.lifecycle`,
:mod:`~sqla_jobqueue.plans.reads` and :mod:`~sqla_jobqueue.plans.bulk` the plans.
"""

from __future__ import annotations

from .bulk import (
    BulkAction,
    JobFilter,
    cancel_where,
    count_where,
    delete_where,
    reprioritize_where,
    retry_where,
)
from .controls import (
    PausedType,
    TypeLimits,
    limit,
    limits,
    pause,
    paused,
    remove_limits,
    resume,
)
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
from .waiting import wait

__all__ = [
    "ENQUEUE_PAGE_SIZE",
    "Add",
    "BulkAction",
    "CanCopy",
    "Copy",
    "JobFilter",
    "JobRef",
    "PausedType",
    "Plan",
    "QueueCore",
    "QueueStats",
    "Request",
    "TypeLimits",
    "cancel",
    "cancel_where",
    "check_job",
    "check_job_types",
    "claim",
    "complete",
    "count_where",
    "default_worker_id",
    "delete_where",
    "enqueue",
    "enqueue_many",
    "fail",
    "get",
    "heartbeat",
    "limit",
    "limits",
    "pause",
    "paused",
    "prune",
    "recover_stale",
    "release",
    "remove_limits",
    "reprioritize_where",
    "resume",
    "retry",
    "retry_where",
    "start",
    "stats",
    "update_progress",
    "wait",
]
