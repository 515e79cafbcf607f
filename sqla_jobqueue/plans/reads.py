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

__all__ = ["ESTIMATE_ABOVE_ROWS", "SAMPLED_ROWS", "QueueStats", "get", "sample_percent", "stats"]

J = TypeVar("J", bound=JobMixin)

ESTIMATE_ABOVE_ROWS = 1_000_000
"""Above this many rows in the table (by the planner's estimate), :meth:`JobQueue.stats`
estimates the finished jobs from a sample of the table unless asked to count them all."""
SAMPLED_ROWS = 100_000
"""About how many rows the sample of an estimate reads."""


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
    estimated:
        Whether the counts of finished jobs (completed, failed, cancelled) are estimates
        from a sample of the table; those of pending, claimed and running jobs are
        always exact.
    """

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    oldest_pending_age: timedelta | None = None
    estimated: bool = False

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


def sample_percent(row_estimate: int, exact: bool) -> float | None:
    """The percentage of the table's pages to count finished jobs in, ``None`` for all
    of them: all while the table holds at most :data:`ESTIMATE_ABOVE_ROWS` rows (or has
    never been analyzed, -1), and enough pages for about :data:`SAMPLED_ROWS` above."""
    if exact or row_estimate <= ESTIMATE_ABOVE_ROWS:
        return None
    return 100.0 * SAMPLED_ROWS / row_estimate


def stats(q: QueueCore[J], exact: bool) -> Plan[QueueStats]:
    """:meth:`JobQueue.stats`."""
    counts: dict[str, dict[str, int]] = {}
    for job_type, status, count in (yield q.statements.live_counts()):
        counts.setdefault(job_type, {})[JobStatus(status).value] = int(count)
    percent = sample_percent(int((yield q.statements.row_estimate()).scalar_one() or -1), exact)
    for job_type, status, count in (yield q.statements.finished_counts(percent)):
        scaled = int(count) if percent is None else round(int(count) * 100.0 / percent)
        counts.setdefault(job_type, {})[JobStatus(status).value] = scaled
    oldest = (yield q.statements.oldest_pending_age()).scalar_one()
    return QueueStats(counts=counts, oldest_pending_age=oldest, estimated=percent is not None)
