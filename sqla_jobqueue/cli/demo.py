"""``demo``: the workload of :mod:`sqla_jobqueue.demo` run by a few workers, shown live.

The workload itself (its handlers and the jobs it enqueues) stays in
:mod:`sqla_jobqueue.demo`, where any worker can run it
(``sqla-jobqueue worker sqla_jobqueue.demo:registry``); this module runs it and shows it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import click
from sqlalchemy import Engine, inspect
from sqlalchemy.orm import Session

from ..model import Job
from .engine import migrate, open_database
from .exits import EXIT_INTERRUPTED, EXIT_OK, BadInput
from .live import (
    STATUSES,
    Snapshot,
    demo_summary,
    print_demo_summary,
    render_snapshot,
    repeatable_read,
    take_snapshot,
)
from .options import DatabaseOptions, database_options, json_option
from .output import console, echo, print_json, say
from .params import POSITIVE_INT

if TYPE_CHECKING:
    from rich.console import Console

    from ..worker import Worker

__all__ = ["DEMO_MAX_JOBS", "DEMO_MAX_WORKERS", "demo"]

DEMO_MAX_JOBS = 20_000
"""Most jobs ``demo`` enqueues."""
DEMO_MAX_WORKERS = 16
"""Most workers ``demo`` runs (each holds a few connections and a LISTEN connection)."""
_CONCURRENCY = 2
_REFRESH = 0.2
_STALL_SECONDS = 30.0


@click.command()
@database_options
@json_option
@click.option(
    "--jobs", type=POSITIVE_INT, default=300, metavar="N", help="how many jobs (default 300)"
)
@click.option(
    "--workers",
    type=POSITIVE_INT,
    default=4,
    metavar="N",
    help="how many workers (default 4, two jobs at a time each)",
)
def demo(db: DatabaseOptions, as_json: bool, jobs: int, workers: int) -> int:
    """Run a demo workload, shown live.

    On the embedded PostgreSQL unless a database is named; the demo's own workers run it.
    """
    from .. import demo as workload

    if workers > DEMO_MAX_WORKERS:
        raise BadInput(f"--workers must be at most {DEMO_MAX_WORKERS}, got {workers}")
    if jobs > DEMO_MAX_JOBS:
        raise BadInput(f"--jobs must be at most {DEMO_MAX_JOBS}, got {jobs}")
    printer = None if as_json else console()
    with open_database(db, pool_size=workers * (_CONCURRENCY + 2)) as engine:
        # The embedded database is migrated by open_database(); a database given by URL is
        # not, and the demo must also run on a fresh one.
        if not inspect(engine).has_table(Job.__tablename__):
            migrate(engine)
        with Session(engine) as session, session.begin():
            # The workers claim by job type: demo jobs an interrupted run left unfinished
            # run too, so they are counted and shown with this run's own.
            earlier = workload.unfinished(session)
            ids = earlier + workload.enqueue(session, jobs)
        if printer is not None:
            printer.print(
                f"Enqueued {jobs} demo jobs: render_report (priority 150), sync_feed (100), "
                f"backfill_thumbnails (30); running them on {workers} workers. The "
                "handlers sleep (20 ms to 1.5 s) to show progress, so the jobs per second "
                "here are not the queue's throughput (docs/benchmarks.md)."
            )
            if earlier:
                printer.print(
                    f"{len(earlier)} demo jobs left unfinished by an earlier run run too: "
                    f"{len(ids)} jobs in all."
                )
        elapsed, interrupted = _run(engine, ids, workers, printer)
        with Session(engine) as session:
            summary = demo_summary(session, ids)
    totals = {status: 0 for status in STATUSES}
    for row in summary.values():
        for status in STATUSES:
            totals[status] += row[status]
    finished = totals["completed"] + totals["failed"] + totals["cancelled"]
    if printer is None:
        print_json(
            {
                "jobs": len(ids),
                "enqueued": jobs,
                "earlier_unfinished": len(earlier),
                "workers": workers,
                "elapsed_seconds": round(elapsed, 3),
                "jobs_per_second": round(_rate(finished, elapsed), 2),
                "totals": totals,
                "by_type": summary,
                "interrupted": interrupted,
            }
        )
    else:
        print_demo_summary(printer, summary, totals, elapsed)
        if interrupted:
            left = totals["pending"] + totals["claimed"] + totals["running"]
            echo(
                f"Stopped early: {left} jobs are left pending; a worker finishes them "
                "(sqla-jobqueue worker sqla_jobqueue.demo:registry)."
            )
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def _run(
    engine: Engine, ids: Sequence[uuid.UUID], workers: int, printer: Console | None
) -> tuple[float, bool]:
    """Run the demo's workers until its jobs are done or Ctrl-C; return the seconds it took
    and whether it was interrupted."""
    from .. import demo as workload
    from ..worker import Worker

    pool = [
        Worker(
            engine,
            workload.registry,
            concurrency=_CONCURRENCY,
            poll_interval=timedelta(milliseconds=200),
            progress_interval=timedelta(milliseconds=100),
            # Rescue stuck jobs like any worker, but never prune someone's history.
            retention=None,
            worker_id=f"demo-{index + 1}:{os.getpid()}",
            grace_period=timedelta(seconds=10),
        )
        for index in range(workers)
    ]
    started = time.monotonic()
    running: list[Worker] = []
    try:
        for each in pool:
            each.start()
            running.append(each)
        return _show_progress(engine, ids, printer, started=started), False
    except KeyboardInterrupt:
        say("Interrupted: running jobs finish, the others go back to pending...")
        return time.monotonic() - started, True
    finally:
        _stop_workers(running)


def _stop_workers(workers: Sequence[Worker]) -> None:
    """Stop started workers gracefully; a second Ctrl-C (or a stuck one) stops them at once."""
    if not workers:
        return
    for each in workers:
        each.stop()
    deadline = time.monotonic() + max(w.settings.grace_period for w in workers) + 30.0
    try:
        stuck = [w for w in workers if not w.join(max(deadline - time.monotonic(), 0.1))]
    except KeyboardInterrupt:
        stuck = list(workers)
    for each in stuck:
        each.stop(graceful=False)
    for each in stuck:
        if not each.join(timeout=10):
            say(f"worker {each.worker_id} did not stop; its jobs come back through rescue")


def _rate(finished: int, elapsed: float) -> float:
    """The demo's jobs per second, the same in its live view and in its summary."""
    return finished / elapsed if elapsed > 0 else 0.0


class _StallWatch:
    """Says once, on stderr, when no demo job has finished for a while."""

    def __init__(self) -> None:
        self.left = -1
        self.since = time.monotonic()
        self.told = False

    def see(self, left: int) -> None:
        now = time.monotonic()
        if left != self.left:
            self.left, self.since, self.told = left, now, False
        elif left and not self.told and now - self.since > _STALL_SECONDS:
            self.told = True
            say(
                f"No demo job has finished for 30s ({left} left); `sqla-jobqueue status` "
                "and `sqla-jobqueue list --status running` show where they are."
            )


def _show_progress(
    engine: Engine, ids: Sequence[uuid.UUID], printer: Console | None, *, started: float
) -> float:
    """Show the demo's jobs until none is pending or held (nothing for ``--json``); return
    the seconds from ``started`` to the last frame, when the last job had finished."""
    stall = _StallWatch()

    def frame() -> tuple[Snapshot, float, int, int]:
        with Session(repeatable_read(engine)) as session:
            snapshot = take_snapshot(session, Job, ids=ids, limit=12)
        t = snapshot.totals
        left = t["pending"] + t["claimed"] + t["running"]
        stall.see(left)
        finished = t["completed"] + t["failed"] + t["cancelled"]
        return snapshot, time.monotonic() - started, finished, left

    if printer is None or not printer.is_terminal:
        last_line = -1.0
        while True:
            snapshot, elapsed, finished, left = frame()
            if printer is not None and (elapsed - last_line >= 1.0 or not left):
                t = snapshot.totals
                printer.print(
                    f"{elapsed:5.1f}s  done {t['completed']} · failed {t['failed']} · "
                    f"running {t['running']} · pending {t['pending']} of {len(ids)} · "
                    f"{_rate(finished, elapsed):.1f} jobs/s"
                )
                last_line = elapsed
            if not left:
                return elapsed
            time.sleep(_REFRESH)
    from rich.live import Live

    title = "sqla-jobqueue demo (Ctrl-C to stop)"
    with Live(console=printer, auto_refresh=False, transient=False) as live:
        while True:
            snapshot, elapsed, finished, left = frame()
            view = render_snapshot(
                snapshot,
                title=title,
                total=len(ids),
                width=printer.width,
                rate=_rate(finished, elapsed),
            )
            live.update(view, refresh=True)
            if not left:
                return elapsed
            time.sleep(_REFRESH)
