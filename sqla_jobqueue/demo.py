"""The demo workload of ``sqla-jobqueue demo``: three job types at the original priorities.

It shows, in a few seconds, what the queue does with a mixed workload:

``render_report`` (priority 150, ``Priority.EXPLICIT``: a user asked for it)
    Multi-stage: *fetching data*, *rendering*, *uploading*, reporting percent and stage as
    it goes, about a second and a half in all. Enqueued last, run first.
``sync_feed`` (priority 100, ``Priority.DISCOVERED``: the system found work to do)
    Short; counts the items it syncs with ``ctx.event``. One in five fails its first
    attempt (a simulated timeout) and succeeds on the retry, after a short backoff; one in
    twenty-five always fails and ends ``failed`` after three attempts.
``backfill_thumbnails`` (priority 30, ``Priority.BACKFILL``: background catch-up)
    Very short, many of them; they run when nothing more important is waiting.

The handlers only sleep, to make progress visible: the demo's jobs per second say nothing of
the queue's throughput (``docs/benchmarks.md`` measures that). :data:`registry` can be run by
any worker, e.g.
``sqla-jobqueue worker sqla_jobqueue.demo:registry``. :func:`plan` says which jobs to
enqueue for a given total, and :func:`enqueue` writes them in the caller's transaction.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from .backoff import Backoff
from .handlers import JobContext, Registry
from .model import Job, Priority
from .queue import JobQueue

__all__ = [
    "DEMO_TYPES",
    "QUICK_BACKOFF",
    "SimulatedFailure",
    "enqueue",
    "plan",
    "registry",
    "unfinished",
]

QUICK_BACKOFF = Backoff(
    base=timedelta(milliseconds=200), factor=2.0, cap=timedelta(seconds=1), jitter=0.25
)
"""Backoff of the demo's failing jobs: short, so that retries show within the demo."""

registry = Registry()
"""The demo's handlers, one per type of :data:`DEMO_TYPES`."""

_REPORT_STAGES = (("fetching data", 3), ("rendering", 5), ("uploading", 2))


class SimulatedFailure(RuntimeError):
    """The error the demo's failing jobs raise."""


@registry.handler("render_report", max_attempts=3, backoff=QUICK_BACKOFF)
def render_report(ctx: JobContext) -> dict[str, Any]:
    """A multi-stage job: percent and stage are reported at every step."""
    step = float(ctx.data.get("step_seconds", 0.15))
    steps = sum(n for _, n in _REPORT_STAGES)
    done = 0
    for stage, count in _REPORT_STAGES:
        for _ in range(count):
            if ctx.abandoned:
                return {"abandoned_at": done}
            ctx.progress(round(100 * done / steps), stage=stage)
            time.sleep(step)
            done += 1
    ctx.progress(100, stage="done")
    return {"pages": int(ctx.data.get("pages", 1))}


@registry.handler("sync_feed", max_attempts=3, backoff=QUICK_BACKOFF)
def sync_feed(ctx: JobContext) -> dict[str, Any]:
    """A short job; some fail once, a few always fail."""
    items = int(ctx.data.get("items", 5))
    if ctx.data.get("broken"):
        raise SimulatedFailure(f"feed {ctx.data.get('feed')} answered 500 (simulated)")
    if ctx.data.get("flaky") and ctx.attempt == 1:
        raise SimulatedFailure(f"feed {ctx.data.get('feed')} timed out (simulated)")
    for index in range(items):
        time.sleep(0.01)
        ctx.event()
        ctx.progress(round(100 * (index + 1) / items), stage="syncing")
    return {"items": items}


@registry.handler("backfill_thumbnails", max_attempts=3, backoff=QUICK_BACKOFF)
def backfill_thumbnails(ctx: JobContext) -> None:
    """A very short background job."""
    time.sleep(0.02)
    ctx.progress(100, stage="thumbnail written")


DEMO_TYPES: tuple[str, ...] = tuple(registry.job_types)
"""The job types of the demo."""


def plan(jobs: int, *, seed: int | None = None) -> list[dict[str, Any]]:
    """The jobs of a demo run of ``jobs`` jobs, in the order they are enqueued.

    About 10% reports, 40% feed syncs and 50% backfills (at least one of each from three
    jobs up), backfills first so that the higher priorities visibly overtake them.
    """
    if jobs < 1:
        raise ValueError(f"the demo needs at least one job, got {jobs}")
    rng = random.Random(seed)
    reports = max(1, round(jobs * 0.10)) if jobs >= 3 else min(jobs, 1)
    syncs = max(1, round(jobs * 0.40)) if jobs >= 3 else max(0, jobs - reports)
    backfills = max(0, jobs - reports - syncs)
    specs: list[dict[str, Any]] = []
    for index in range(backfills):
        specs.append(
            {
                "job_type": "backfill_thumbnails",
                "priority": int(Priority.BACKFILL),
                "data": {"photo": index},
            }
        )
    for index in range(syncs):
        data: dict[str, Any] = {"feed": f"feed-{index}", "items": rng.randint(3, 8)}
        if index % 25 == 12:
            data["broken"] = True
        elif index % 5 == 2:
            data["flaky"] = True
        specs.append({"job_type": "sync_feed", "priority": int(Priority.DISCOVERED), "data": data})
    for index in range(reports):
        specs.append(
            {
                "job_type": "render_report",
                "priority": int(Priority.EXPLICIT),
                "data": {"report": index, "pages": rng.randint(1, 20)},
            }
        )
    return specs


def unfinished(session: Session) -> list[uuid.UUID]:
    """Ids of the demo's jobs still pending or held, left by an earlier run that stopped."""
    return list(session.scalars(*JobQueue(session, Job).statements.live_ids(DEMO_TYPES)))


def enqueue(session: Session, jobs: int, *, seed: int | None = None) -> list[uuid.UUID]:
    """Enqueue a demo run of ``jobs`` jobs in the caller's transaction; return their ids."""
    return registry.enqueue_many(JobQueue(session), plan(jobs, seed=seed))
