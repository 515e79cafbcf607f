"""Claiming, the changes of a job, and the maintenance a repository can run itself.

A change that updates nothing is explained by what holds the job now: not found, held by
another worker or attempt (:class:`~sqla_jobqueue.errors.LeaseLostError`), or in a status
the change does not start from (:class:`~sqla_jobqueue.errors.InvalidTransitionError`).

A claim needs a READ COMMITTED transaction: above it, a claim meets the jobs other claims
took since its snapshot as serialization failures rather than skipping them, so it is
refused before it runs (:data:`CLAIM_ISOLATION_LEVELS`). The changes of a held job run at
any level: at REPEATABLE READ or SERIALIZABLE one fails with a serialization failure when
the job's row changed since the transaction's snapshot (a heartbeat, a cancel, a rescue),
and the transaction is retried as any other (see ``docs/concepts.md``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import inspect

from .. import validation as check
from ..backoff import Backoff
from ..errors import (
    ConfigurationError,
    InvalidJobError,
    InvalidTransitionError,
    JobNotFoundError,
    LeaseLostError,
)
from ..model import HELD_STATUSES, UNFINISHED_STATUSES, JobMixin, JobStatus
from ..statements import Bound, loading
from .core import Isolation, JobRef, Plan, QueueCore, default_worker_id, job_id_of

__all__ = [
    "CLAIM_ISOLATION_LEVELS",
    "cancel",
    "check_job_types",
    "claim",
    "complete",
    "fail",
    "heartbeat",
    "prune",
    "recover_stale",
    "release",
    "retry",
    "start",
    "update_progress",
]

J = TypeVar("J", bound=JobMixin)

CLAIM_ISOLATION_LEVELS = frozenset({"READ COMMITTED", "READ UNCOMMITTED"})
"""The isolation levels a claim runs at (PostgreSQL's READ UNCOMMITTED is READ COMMITTED).
``None``, a level SQLAlchemy does not know, is let through."""


def check_job_types(job_types: Sequence[str] | None) -> list[str] | None:
    """The job types to claim, checked: ``None`` for every type, else a non-empty list."""
    if job_types is None:
        return None
    if isinstance(job_types, str):
        raise InvalidJobError(
            f"job_types must be a list of job types, not the string {job_types!r}; "
            f"write [{job_types!r}]"
        )
    types = [check.check_job_type(t) for t in job_types]
    if not types:
        raise InvalidJobError("job_types is empty; pass None to claim every type")
    return types


def claim(q: QueueCore[J], job_types: Sequence[str] | None, batch_size: int) -> Plan[list[J]]:
    """:meth:`JobQueue.claim`."""
    size = check.check_batch_size(batch_size)
    types = check_job_types(job_types)
    level = yield Isolation()
    if level is not None and level not in CLAIM_ISOLATION_LEVELS:
        raise ConfigurationError(
            f"claim needs a READ COMMITTED transaction, and this session's runs at {level}: "
            "there, concurrent claims fail with serialization failures instead of skipping "
            "the jobs other claims took. Claim in a transaction of its own at READ COMMITTED, "
            "e.g. session.connection(execution_options={'isolation_level': 'READ COMMITTED'}) "
            "before its first statement, or a Session on "
            "engine.execution_options(isolation_level='READ COMMITTED'); nothing was claimed"
        )
    if q.worker_id is None:
        q.worker_id = default_worker_id()
    # One statement while no limit is set; when one is, that statement claims nothing and
    # the limited claim function claims instead.
    claimed = loading(q.model, q.statements.claim(q.worker_id, size, types))
    jobs: list[J] = list((yield claimed).scalars())
    if not jobs and (yield q.statements.limits_set(types)).scalar():
        claimed = loading(q.model, q.statements.claim(q.worker_id, size, types, limited=True))
        jobs = list((yield claimed).scalars())
    jobs.sort(key=lambda job: (-job.priority, job.created_at, job.id))
    return jobs


def _attempt(job: JobRef, attempt: int | None) -> int | None:
    """The attempt a write to ``job`` is fenced by, if known."""
    if attempt is not None:
        return check.check_int32(attempt, "attempt")
    if isinstance(job, JobMixin):
        # Read what the instance holds without refreshing it: an expired attribute must
        # not be reloaded, or the fence would check the job against itself.
        loaded = inspect(job).dict.get("attempts")
        return int(loaded) if loaded is not None else None
    return None


def _changed(
    q: QueueCore[J],
    job_id: uuid.UUID,
    action: str,
    allowed: tuple[JobStatus, ...],
    change: Bound,
    worker_id: str | None = None,
    attempt: int | None = None,
) -> Plan[J]:
    """Run a change of one job; explain a refusal by what holds the job now."""
    updated: J | None = (yield loading(q.model, change)).scalars().one_or_none()
    if updated is not None:
        return updated
    row = (yield q.statements.holder_of(job_id)).one_or_none()
    if row is None:
        raise JobNotFoundError(job_id)
    status, holder, attempts = JobStatus(row.status), row.worker_id, row.attempts
    held_elsewhere = (worker_id is not None and holder != worker_id) or (
        attempt is not None and attempts != attempt
    )
    if held_elsewhere:
        raise LeaseLostError(job_id, action, status.value, holder, attempts, worker_id, attempt)
    raise InvalidTransitionError(job_id, action, status.value, tuple(s.value for s in allowed))


def start(q: QueueCore[J], job: JobRef, attempt: int | None) -> Plan[J]:
    """:meth:`JobQueue.start`."""
    job_id, fence = job_id_of(job), _attempt(job, attempt)
    change = q.statements.start(job_id, q.worker_id, fence)
    allowed = (JobStatus.CLAIMED,)
    return (yield from _changed(q, job_id, "start", allowed, change, q.worker_id, fence))


def update_progress(
    q: QueueCore[J],
    job: JobRef,
    progress: int | None,
    stage: str | None,
    events: int,
    attempt: int | None,
) -> Plan[J]:
    """:meth:`JobQueue.update_progress`."""
    percent = None if progress is None else check.check_progress(progress)
    label = None if stage is None else check.check_stage(stage)
    count = check.check_int32(events, "events")
    if count < 0:
        raise InvalidJobError(f"events must be zero or more, got {count}")
    job_id, fence = job_id_of(job), _attempt(job, attempt)
    change = q.statements.update_progress(job_id, q.worker_id, fence, percent, label, count)
    action = "update progress of"
    return (yield from _changed(q, job_id, action, HELD_STATUSES, change, q.worker_id, fence))


def complete(q: QueueCore[J], job: JobRef, result: Any, attempt: int | None) -> Plan[J]:
    """:meth:`JobQueue.complete`."""
    # Stored as the checked text, not through the engine's JSON serialiser, so that a
    # result holds the same values (UUID, datetime, Decimal) as a worker's result.
    text = (
        None
        if result is None
        else check.check_json(result, "result", q.max_payload_bytes, require_object=False)
    )
    job_id, fence = job_id_of(job), _attempt(job, attempt)
    change = q.statements.complete(job_id, q.worker_id, fence, text)
    return (yield from _changed(q, job_id, "complete", HELD_STATUSES, change, q.worker_id, fence))


def fail(
    q: QueueCore[J],
    job: JobRef,
    error: str,
    run_again_in: timedelta | None,
    backoff: Backoff,
    attempt: int | None,
) -> Plan[J]:
    """:meth:`JobQueue.fail`."""
    if not isinstance(error, str):
        raise InvalidJobError(f"error must be a string, got {type(error).__name__}")
    if run_again_in is not None:
        run_again_in = check.check_finite_delay(run_again_in, "run_again_in")
    job_id, fence = job_id_of(job), _attempt(job, attempt)
    change = q.statements.fail(
        job_id, q.worker_id, fence, error, run_again_in=run_again_in, backoff=backoff
    )
    return (yield from _changed(q, job_id, "fail", HELD_STATUSES, change, q.worker_id, fence))


def cancel(q: QueueCore[J], job: JobRef) -> Plan[J]:
    """:meth:`JobQueue.cancel`."""
    job_id = job_id_of(job)
    change = q.statements.cancel(job_id)
    return (yield from _changed(q, job_id, "cancel", UNFINISHED_STATUSES, change))


def retry(q: QueueCore[J], job: JobRef) -> Plan[J]:
    """:meth:`JobQueue.retry`."""
    job_id = job_id_of(job)
    change = q.statements.retry(job_id)
    return (yield from _changed(q, job_id, "retry", (JobStatus.FAILED,), change))


def _ids(jobs: Iterable[JobRef] | None) -> list[uuid.UUID] | None:
    return None if jobs is None else [job_id_of(job) for job in jobs]


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0))


def heartbeat(q: QueueCore[J], jobs: Iterable[JobRef] | None) -> Plan[int]:
    """:meth:`JobQueue.heartbeat`."""
    worker_id = q._needs_worker("heartbeat")
    ids = _ids(jobs)
    if ids == []:
        return 0
    return _rowcount((yield q.statements.heartbeat(worker_id, ids)))


def release(q: QueueCore[J], jobs: Iterable[JobRef] | None) -> Plan[int]:
    """:meth:`JobQueue.release`."""
    worker_id = q._needs_worker("release")
    ids = _ids(jobs)
    if ids == []:
        return 0
    return _rowcount((yield q.statements.release(worker_id, ids)))


def recover_stale(q: QueueCore[J], timeout: timedelta) -> Plan[int]:
    """:meth:`JobQueue.recover_stale`."""
    check.check_positive_interval(timeout, "timeout")
    return _rowcount((yield q.statements.recover_stale(timeout)))


def prune(q: QueueCore[J], older_than: timedelta, limit: int | None) -> Plan[int]:
    """:meth:`JobQueue.prune`."""
    check.check_positive_interval(older_than, "older_than")
    if limit is not None:
        limit = check.check_batch_size(limit)
    return _rowcount((yield q.statements.prune(older_than, limit)))
