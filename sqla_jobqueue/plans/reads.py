"""Reads: one job, and a snapshot of a job table's counts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from ..errors import JobNotFoundError
from ..model import JobMixin, JobStatus
from ..statements import loading
from .core import Plan, QueueCore, job_id_of

__all__ = ["QueueStats", "get", "stats"]

J = TypeVar("J", bound=JobMixin)


@dataclass(frozen=True)
class QueueStats:
    """A snapshot of a job table.

    Attributes
    ----------
    counts:
        ``{job_type: {status: count}}`` for every type and status present.
    oldest_pending_age:
        How long the longest-waiting due pending job has waited since its ``run_at``;
        ``None`` when nothing is due.
    """

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    oldest_pending_age: timedelta | None = None

    def total(self, status: JobStatus | str) -> int:
        """The number of jobs in ``status``, over all types."""
        key = JobStatus(status).value
        return sum(by_status.get(key, 0) for by_status in self.counts.values())


def get(q: QueueCore[J], job_id: uuid.UUID) -> Plan[J]:
    """:meth:`JobQueue.get`."""
    checked = job_id_of(job_id)
    job: J | None = (yield loading(q.model, q.statements.get(checked))).scalars().one_or_none()
    if job is None:
        raise JobNotFoundError(checked)
    return job


def stats(q: QueueCore[J]) -> Plan[QueueStats]:
    """:meth:`JobQueue.stats`."""
    counts: dict[str, dict[str, int]] = {}
    for job_type, status, count in (yield q.statements.counts()):
        counts.setdefault(job_type, {})[JobStatus(status).value] = int(count)
    oldest = (yield q.statements.oldest_pending_age()).scalar_one()
    return QueueStats(counts=counts, oldest_pending_age=oldest)
