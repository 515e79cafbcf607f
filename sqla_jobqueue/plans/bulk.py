"""Bulk actions: the jobs that match a :class:`JobFilter`, counted, cancelled, retried,
re-prioritised or deleted, one chunk per call.

A repository never commits, so an action changes at most ``limit`` jobs and returns how
many it changed; the caller commits and calls again until it returns 0. A call runs one
statement for each partial index its statuses are in (pending; claimed and running;
finished: see :mod:`sqla_jobqueue.statements.bulk`), taking jobs in that index's order,
until ``limit`` changed. It skips the jobs that another transaction is writing right now
(``SKIP LOCKED``): it never waits behind a worker, and a later call finds the job it
skipped. :func:`count_where` is the dry run: it counts what the action would change.

Each action changes only the statuses it makes sense for (:data:`ACTION_STATUSES`), the
same as its one-job twin: cancel a pending, claimed or running job; retry a failed one;
re-prioritise a pending one; delete a pending or finished one, never one a worker holds.
A filter without statuses means all of the action's; a filter status outside them is an
error. So is a filter with no criterion at all, unless it says ``everything=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeVar, get_args

from .. import validation as check
from ..errors import InvalidJobError
from ..model import FINISHED_STATUSES, UNFINISHED_STATUSES, JobMixin, JobStatus
from ..statements import Bound, BulkCriteria
from ..statements.bulk import like_pattern
from .core import Plan, QueueCore
from .lifecycle import _rowcount

__all__ = [
    "ACTION_STATUSES",
    "DEFAULT_CHUNK_SIZE",
    "MAX_ERROR_TEXT_LENGTH",
    "BulkAction",
    "JobFilter",
    "bulk_criteria",
    "cancel_where",
    "count_where",
    "delete_where",
    "reprioritize_where",
    "retry_where",
    "status_words",
]

J = TypeVar("J", bound=JobMixin)

BulkAction = Literal["cancel", "retry", "reprioritize", "delete"]
"""The bulk actions, by the name of their method (``cancel`` for ``cancel_where``)."""

ACTION_STATUSES: dict[str, tuple[JobStatus, ...]] = {
    "cancel": UNFINISHED_STATUSES,
    "retry": (JobStatus.FAILED,),
    "reprioritize": (JobStatus.PENDING,),
    "delete": (JobStatus.WAITING, JobStatus.PENDING, *FINISHED_STATUSES),
}
"""The statuses of the jobs each bulk action changes."""

DEFAULT_CHUNK_SIZE = 10_000
"""How many jobs one call of a bulk action changes at most, unless told."""

MAX_ERROR_TEXT_LENGTH = 1000
"""The longest text :attr:`JobFilter.error_contains` may look for."""


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a bulk action changes, or :meth:`JobQueue.count_where
    <sqla_jobqueue.JobQueue.count_where>` counts: those that meet every criterion given.

    Checked when an action runs, before anything is written
    (:class:`~sqla_jobqueue.errors.InvalidJobError`).

    Attributes
    ----------
    job_types:
        Only jobs of these types.
    statuses:
        Only jobs in these statuses, all of them statuses the action changes; ``None``
        means every status the action changes (every status, for a count without an
        action).
    created_before:
        Only jobs created before this time (an aware ``datetime``).
    older_than:
        Only jobs created longer ago than this, by the database clock.
    finished_before:
        Only jobs that finished (``completed_at``) before this time: completed, failed or
        cancelled ones.
    error_contains:
        Only jobs whose ``last_error`` contains this text, ignoring case; ``%`` and ``_``
        are matched as themselves.
    everything:
        Match every job the action changes. A filter with no other criterion must say so:
        an action on every job is a choice, never an accident. It cannot be combined with
        a criterion.
    """

    job_types: Sequence[str] | None = None
    statuses: Sequence[JobStatus | str] | None = None
    created_before: datetime | None = None
    older_than: timedelta | None = None
    finished_before: datetime | None = None
    error_contains: str | None = None
    everything: bool = False

    def __post_init__(self) -> None:
        # A list given stays the caller's to change: keep a copy, so that the filter is
        # as frozen as it says (and hashable).
        for name in ("job_types", "statuses"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))

    def has_criteria(self) -> bool:
        """Whether any criterion is given (``everything`` is not one)."""
        return any(
            value is not None
            for value in (
                self.job_types,
                self.statuses,
                self.created_before,
                self.older_than,
                self.finished_before,
                self.error_contains,
            )
        )


def _check_action(action: object) -> str | None:
    if action is None:
        return None
    if action not in get_args(BulkAction):
        raise InvalidJobError(
            f"action must be one of {', '.join(get_args(BulkAction))} or None, got {action!r}"
        )
    return str(action)


def _check_statuses(statuses: object, action: str | None) -> tuple[JobStatus, ...]:
    allowed = ACTION_STATUSES[action] if action is not None else tuple(JobStatus)
    if statuses is None:
        return allowed
    if isinstance(statuses, (str, JobStatus)) or not isinstance(statuses, Sequence):
        raise InvalidJobError(
            f"statuses must be a list of statuses, not {statuses!r}; write [{statuses!r}]"
        )
    if not statuses:
        raise InvalidJobError("statuses is empty; leave it None for every status")
    chosen: list[JobStatus] = []
    for given in statuses:
        try:
            status = JobStatus(given)
        except ValueError:
            names = ", ".join(s.value for s in JobStatus)
            raise InvalidJobError(f"{given!r} is not a job status: one of {names}") from None
        if status not in allowed:
            assert action is not None
            raise InvalidJobError(
                f"{action} changes only {status_words(allowed)} jobs, and the filter's "
                f"statuses include {status.value!r}: leave that status out, or leave "
                f"statuses out to mean all of them"
            )
        if status not in chosen:
            chosen.append(status)
    return tuple(s for s in JobStatus if s in chosen)


def status_words(statuses: tuple[JobStatus, ...]) -> str:
    """``pending, claimed or running``: statuses as an error message names them."""
    names = [s.value for s in statuses]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _check_aware(value: object, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidJobError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidJobError(
            f"{what} {value.isoformat()} has no time zone; pass an aware datetime "
            "(e.g. datetime.now(timezone.utc))"
        )
    return value


def bulk_criteria(
    job_filter: JobFilter, action: str | None, *, priority: int | None = None
) -> BulkCriteria:
    """The checked criteria of ``job_filter`` for ``action`` (``None``: a plain count).

    Raises
    ------
    InvalidJobError
        When the filter is not a :class:`JobFilter`, a criterion is not acceptable, a
        status is not one ``action`` changes, or an action's filter has no criterion and
        does not say ``everything=True``.
    """
    action = _check_action(action)
    if not isinstance(job_filter, JobFilter):
        raise InvalidJobError(f"the filter must be a JobFilter, got {type(job_filter).__name__}")
    if job_filter.everything is not True and job_filter.everything is not False:
        raise InvalidJobError(f"everything must be True or False, got {job_filter.everything!r}")
    if job_filter.everything and job_filter.has_criteria():
        raise InvalidJobError(
            "a JobFilter with everything=True matches every job: leave out its other "
            "criteria, or leave out everything=True to match only the jobs they describe"
        )
    if action is not None and not job_filter.everything and not job_filter.has_criteria():
        raise InvalidJobError(
            f"the filter has no criterion, so {action} would change every "
            f"{status_words(ACTION_STATUSES[action])} job: say so with "
            "JobFilter(everything=True), or give a criterion"
        )
    types = job_filter.job_types
    job_types = None
    if types is not None:
        if isinstance(types, str) or not isinstance(types, Sequence):
            raise InvalidJobError(
                f"job_types must be a list of job types, not {types!r}; write [{types!r}]"
            )
        if not types:
            raise InvalidJobError("job_types is empty; leave it None for every type")
        job_types = list(dict.fromkeys(check.check_job_type(t) for t in types))
    statuses = _check_statuses(job_filter.statuses, action)
    created_before = finished_before = None
    if job_filter.created_before is not None:
        created_before = _check_aware(job_filter.created_before, "created_before")
    if job_filter.finished_before is not None:
        finished_before = _check_aware(job_filter.finished_before, "finished_before")
        if not set(statuses) & set(FINISHED_STATUSES):
            raise InvalidJobError(
                "finished_before matches finished jobs only, and the filter takes only "
                f"{status_words(statuses)} jobs: leave finished_before out"
            )
    older_than = None
    if job_filter.older_than is not None:
        older_than = check.check_positive_interval(job_filter.older_than, "older_than")
        if older_than > check.MAX_DELAY:
            raise InvalidJobError(
                f"older_than {older_than} is more than {check.MAX_DELAY.days} days; "
                "pass created_before for a fixed time"
            )
    error_pattern = None
    if job_filter.error_contains is not None:
        text = check.check_text(job_filter.error_contains, "error_contains", MAX_ERROR_TEXT_LENGTH)
        error_pattern = like_pattern(text)
    return BulkCriteria(
        statuses=statuses,
        job_types=job_types,
        created_before=created_before,
        older_than=older_than,
        finished_before=finished_before,
        error_pattern=error_pattern,
        priority_other_than=priority,
        one_per_unique_key=action == "retry",
    )


def _check_limit(limit: object) -> int:
    size = check.check_int32(limit, "limit")
    if size < 1:
        raise InvalidJobError(f"limit must be at least 1, got {size}")
    return size


def _check_priority(priority: object) -> int:
    return check.check_int32(priority, "priority")


def count_where(
    q: QueueCore[J], job_filter: JobFilter, action: str | None, priority: int | None
) -> Plan[int]:
    """:meth:`JobQueue.count_where`."""
    if priority is not None:
        if action != "reprioritize":
            raise InvalidJobError(
                "priority is for counting what reprioritize would change: pass "
                "action='reprioritize' with it, or leave it out"
            )
        priority = _check_priority(priority)
    criteria = bulk_criteria(job_filter, action, priority=priority)
    return int((yield q.statements.count_where(criteria)).scalar_one())


def _in_chunks(
    criteria: BulkCriteria, limit: int, chunk: Callable[[BulkCriteria, int], Bound]
) -> Plan[int]:
    """Run ``chunk`` on the statuses of each partial index in turn, until ``limit`` jobs
    changed: each statement reads the jobs of one index, in its order."""
    changed = 0
    for part in criteria.by_index():
        changed += _rowcount((yield chunk(part, limit - changed)))
        if changed >= limit:
            break
    return changed


def cancel_where(q: QueueCore[J], job_filter: JobFilter, limit: int) -> Plan[int]:
    """:meth:`JobQueue.cancel_where`."""
    size, criteria = _check_limit(limit), bulk_criteria(job_filter, "cancel")
    return (yield from _in_chunks(criteria, size, q.statements.cancel_where))


def retry_where(q: QueueCore[J], job_filter: JobFilter, limit: int) -> Plan[int]:
    """:meth:`JobQueue.retry_where`."""
    size, criteria = _check_limit(limit), bulk_criteria(job_filter, "retry")
    return (yield from _in_chunks(criteria, size, q.statements.retry_where))


def reprioritize_where(
    q: QueueCore[J], job_filter: JobFilter, priority: int, limit: int
) -> Plan[int]:
    """:meth:`JobQueue.reprioritize_where`."""
    target = _check_priority(priority)
    size, criteria = _check_limit(limit), bulk_criteria(job_filter, "reprioritize")

    def chunk(part: BulkCriteria, left: int) -> Bound:
        return q.statements.reprioritize_where(part, target, left)

    return (yield from _in_chunks(criteria, size, chunk))


def delete_where(q: QueueCore[J], job_filter: JobFilter, limit: int) -> Plan[int]:
    """:meth:`JobQueue.delete_where`."""
    size, criteria = _check_limit(limit), bulk_criteria(job_filter, "delete")
    return (yield from _in_chunks(criteria, size, q.statements.delete_where))
