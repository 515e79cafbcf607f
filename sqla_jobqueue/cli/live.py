"""The live view of ``sqla-jobqueue watch`` and ``demo``: snapshots of the job table and
their rendering with rich, and the demo's closing summary.

A :class:`Snapshot` is read in one REPEATABLE READ transaction (:func:`repeatable_read`),
so its counts and its rows agree; :func:`render_snapshot` turns it into progress bars.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ..model import Job, JobMixin, JobStatus
from ..queue import JobQueue

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

__all__ = [
    "RunningJob",
    "Snapshot",
    "age_text",
    "demo_summary",
    "print_demo_summary",
    "render_snapshot",
    "repeatable_read",
    "take_snapshot",
]

STATUSES = [s.value for s in JobStatus]
"""Every job state, in the order the tables show them."""


def age_text(delta: timedelta | None) -> str:
    """A duration for people: ``4.2s``, ``12s``, ``3m05s``, ``2h10m``, ``3d04h``."""
    if delta is None:
        return "-"
    seconds = max(delta.total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


@dataclass(frozen=True)
class RunningJob:
    """A held job as the live view shows it."""

    id: uuid.UUID
    job_type: str
    status: str
    stage: str | None
    progress: int
    worker_id: str | None
    elapsed: timedelta | None
    attempts: int


@dataclass(frozen=True)
class Snapshot:
    """What the live view of ``watch`` and ``demo`` shows at one moment."""

    totals: dict[str, int]
    running: list[RunningJob]
    recent_finished: int
    window: timedelta
    at: datetime | None = None
    estimated: bool = False
    """Whether the finished totals are estimates (``JobQueue.stats`` on a large table)."""

    @property
    def jobs_per_second(self) -> float:
        """Jobs finished (completed or failed) per second over the recent window."""
        return self.recent_finished / self.window.total_seconds()

    def as_json(self) -> dict[str, Any]:
        """The snapshot as plain JSON values."""
        return {
            "at": None if self.at is None else self.at.isoformat(),
            "totals": self.totals,
            "finished_estimated": self.estimated,
            "jobs_per_second": round(self.jobs_per_second, 2),
            "running": [
                {
                    "id": str(job.id),
                    "job_type": job.job_type,
                    "status": job.status,
                    "stage": job.stage,
                    "progress": job.progress,
                    "worker_id": job.worker_id,
                    "elapsed_seconds": None if job.elapsed is None else job.elapsed.total_seconds(),
                    "attempts": job.attempts,
                }
                for job in self.running
            ],
        }


def repeatable_read(engine: Engine) -> Engine:
    """The engine with REPEATABLE READ, so that the counts and the rows of one frame of the
    live view are read from the same snapshot and always agree."""
    return engine.execution_options(isolation_level="REPEATABLE READ")


def take_snapshot(
    session: Session,
    model: type[JobMixin],
    *,
    ids: Sequence[uuid.UUID] | None = None,
    job_types: Sequence[str] | None = None,
    limit: int = 20,
    window: timedelta = timedelta(seconds=10),
) -> Snapshot:
    """Read counts by state and the held jobs (running first, longest first). Without
    ``ids`` the counts are those of :meth:`JobQueue.stats` (finished jobs estimated on a
    large table), so that a frame stays fast on a table of millions of rows."""
    queue = JobQueue(session, model)
    statements = queue.statements
    types = list(job_types) if job_types else None  # none given: every type
    totals = {status: 0 for status in STATUSES}
    estimated = False
    if ids is None:
        stats = queue.stats()
        estimated = stats.estimated
        for job_type, by_status in stats.counts.items():
            if types is None or job_type in types:
                for status, count in by_status.items():
                    totals[status] += count
    else:
        counts = statements.status_counts(ids=ids, job_types=types)
        for status, count in session.execute(*counts):
            totals[JobStatus(status).value] = int(count)
    finished = statements.finished_within(window, ids=ids, job_types=types)
    recent = sum(int(count) for _, count in session.execute(*finished))
    rows = session.execute(*statements.held_jobs(limit, ids=ids, job_types=types)).all()
    at = rows[0].at if rows else session.execute(*statements.clock()).scalar_one()
    running = [
        RunningJob(
            row.id,
            row.job_type,
            JobStatus(row.status).value,
            row.current_stage,
            int(row.progress or 0),
            row.worker_id,
            row.elapsed,
            int(row.attempts),
        )
        for row in rows
    ]
    return Snapshot(totals, running, recent, window, at, estimated)


def render_snapshot(
    snapshot: Snapshot,
    *,
    title: str,
    total: int | None = None,
    width: int = 120,
    rate: float | None = None,
) -> RenderableType:
    """The live view: the totals (with an overall bar when ``total`` is known) and one
    progress bar per held job with its stage, percent, worker and elapsed time.

    ``rate`` replaces the snapshot's jobs per second over its recent window (the demo shows
    its rate since it started, as its summary does). Below 100 columns the worker column is
    left out so that stage and percent still fit.
    """
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    t = snapshot.totals
    done = t["completed"] + t["failed"] + t["cancelled"]
    header: list[RenderableType] = [Text(title, style="bold")]
    if total is not None:
        overall = Table.grid(padding=(0, 2))
        overall.add_row(
            ProgressBar(total=max(total, 1), completed=done, width=30),
            Text(f"{done}/{total} finished", style="bold"),
        )
        header.append(overall)
    about = "~" if snapshot.estimated else ""
    counts = [f"done {about}{t['completed']}", f"failed {about}{t['failed']}"]
    if t["cancelled"]:
        counts.append(f"cancelled {about}{t['cancelled']}")
    if t["claimed"]:
        counts.append(f"claimed {t['claimed']}")
    counts += [f"pending {t['pending']}", f"running {t['running']}"]
    per_second = snapshot.jobs_per_second if rate is None else rate
    header.append(Text(" · ".join(counts) + f" · {per_second:.1f} jobs/s"))
    if not snapshot.running:
        return Group(*header, Text("no job is running", style="dim"))
    compact = width < 100
    table = Table(expand=False, show_edge=False, pad_edge=False)
    table.add_column("job", no_wrap=True, min_width=8)
    table.add_column("type", no_wrap=True, min_width=10, max_width=24, overflow="ellipsis")
    table.add_column("stage", no_wrap=True, min_width=10, max_width=24, overflow="ellipsis")
    table.add_column("progress", no_wrap=True, min_width=12)
    table.add_column("%", justify="right", no_wrap=True, min_width=4)
    if not compact:
        table.add_column("worker", no_wrap=True, max_width=28, overflow="ellipsis")
    table.add_column("elapsed", justify="right", no_wrap=True, min_width=7)
    for job in snapshot.running:
        cells: list[RenderableType] = [
            str(job.id)[-8:],
            job.job_type,
            job.stage or ("(claimed)" if job.status == JobStatus.CLAIMED.value else ""),
            ProgressBar(total=100, completed=job.progress, width=12 if compact else 24),
            f"{job.progress}%",
        ]
        if not compact:
            cells.append(job.worker_id or "")
        cells.append(age_text(job.elapsed))
        table.add_row(*cells)
    return Group(*header, table)


def demo_summary(session: Session, ids: Sequence[uuid.UUID]) -> dict[str, dict[str, Any]]:
    """Per job type: priority, counts by state, jobs run more than once, mean run time and start."""
    statements = JobQueue(session, Job).statements
    rows = session.execute(*statements.summary_by_type(ids)).all()
    summary: dict[str, dict[str, Any]] = {}
    for row in rows:
        summary[row.job_type] = {
            "priority": int(row.priority),
            "jobs": int(row.jobs),
            **{status: 0 for status in STATUSES},
            "rerun": int(row.rerun),
            "mean_run_seconds": None if row.mean_seconds is None else float(row.mean_seconds),
            "mean_start_seconds": None if row.mean_start is None else float(row.mean_start),
        }
    for job_type, status, count in session.execute(*statements.counts(ids)):
        summary[job_type][JobStatus(status).value] = int(count)
    return summary


def print_demo_summary(
    console: Console,
    summary: dict[str, dict[str, Any]],
    totals: dict[str, int],
    elapsed: float,
) -> None:
    """The demo's closing table and a line on what it shows."""
    from rich.table import Table

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}s"

    table = Table(title="Demo summary", title_justify="left")
    table.add_column("type", no_wrap=True, min_width=10, overflow="ellipsis")
    for name in ("prio", "jobs", "done", "failed", "rerun", "run", "start"):
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    for job_type, row in summary.items():
        table.add_row(
            job_type,
            str(row["priority"]),
            str(row["jobs"]),
            str(row["completed"]),
            str(row["failed"]),
            str(row["rerun"]),
            seconds(row["mean_run_seconds"]),
            seconds(row["mean_start_seconds"]),
        )
    table.add_section()
    finished = totals["completed"] + totals["failed"] + totals["cancelled"]
    table.add_row(
        "total",
        "",
        str(sum(row["jobs"] for row in summary.values())),
        str(totals["completed"]),
        str(totals["failed"]),
        str(sum(row["rerun"] for row in summary.values())),
        "",
        "",
        style="bold",
    )
    console.print(table)
    console.print(
        "run: mean time from start to completion; start: mean time after the first job started.",
        style="dim",
    )
    rate = finished / elapsed if elapsed > 0 else 0.0
    console.print(
        f"{finished} jobs finished in {elapsed:.1f}s ({rate:.1f} jobs/s, handlers that sleep "
        "to show progress). Higher priorities started first; failed jobs used all their "
        "attempts and keep their last_error (sqla-jobqueue list --status failed)."
    )
