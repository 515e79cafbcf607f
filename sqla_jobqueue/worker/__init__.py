"""Workers: the process side of the queue: claim, run, record, heartbeat, shut down.

A :class:`Worker` runs plain (``def``) handlers on a pool of ``concurrency`` threads; an
:class:`AsyncWorker` runs ``async def`` handlers on an asyncio event loop (and plain ones
on a thread pool beside it)::

    worker = Worker(engine, registry, concurrency=8)
    worker.run()                    # blocks; SIGTERM/SIGINT stop it gracefully

    with Worker(engine, registry):  # or in the background of a web app or a test
        ...

    await AsyncWorker(async_engine, registry, concurrency=100).run()

Both make the same decisions (:mod:`~sqla_jobqueue.worker.dispatch`) and write with the same
statements (:mod:`~sqla_jobqueue.worker.recording`). How they work (the guarantees are
stated in ``docs/reliability.md``):

- **Claiming.** The dispatcher claims at most as many due jobs as it has free slots,
  highest priority first, with one ``UPDATE … FOR NO KEY UPDATE SKIP LOCKED`` statement that
  also marks them ``running``: every claimed job starts at once, so the worker never holds
  a job it is not running, and a crash charges an attempt to exactly the jobs that were
  running (see :mod:`sqla_jobqueue.statements`). While claims come back full, each resumes
  after the last job the previous one took instead of scanning again from the start of
  the claim index; a claim that comes back short, and every ``poll_interval`` at the
  latest, starts from the beginning again.
- **Recording.** Outcomes are written by the dispatcher in one transaction per round: every
  plain completion of the round in a single ``UPDATE``, failures, snoozes and
  cancellations one statement each, together with the next claim. A handler that used
  ``ctx.session`` completes its job in its own transaction instead, so its writes and the
  completion commit together. Every write is fenced by ``worker_id`` and attempt: a worker
  whose job was rescued and claimed again cannot complete it.
- **Progress and heartbeats.** Every ``progress_interval`` the coalesced
  ``ctx.progress()`` / ``ctx.event()`` values of all running jobs are written in one
  statement. Every ``heartbeat_interval``, on a connection of its own and waiting for
  nothing else, ``heartbeat_at`` of the jobs this worker is running is refreshed.
- **Uncertain rounds.** When a round's commit may have happened but its answer was lost,
  the next round first gives back (to ``pending``, attempt refunded) every job the
  database says this worker holds but it is not running.
- **Maintenance.** The rescuer and the pruner (:mod:`sqla_jobqueue.maintenance`) run in
  the background; each round is done by one worker at a time.
- **Wake-up.** A LISTEN connection wakes the dispatcher when a job is enqueued; without it
  (or while it reconnects) the dispatcher polls every ``poll_interval``.
- **Outages.** A database error never ends the worker: it is logged, the dispatcher backs
  off and tries again with the outcomes it still has to write.
- **Shutdown.** ``stop()`` (or the first SIGTERM/SIGINT) stops claiming, lets running
  handlers finish within ``grace_period``, writes their outcomes and returns 0. A handler
  still running after the grace period is recorded as a failed attempt due again at once
  (an async one is cancelled). A second signal stops at once (exit code 1); the jobs cut
  off come back through rescue.

One INFO line per job outcome is logged on the ``sqla_jobqueue.worker`` logger with the
job's id, type, attempt and duration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .loading import load_registry
from .outcomes import WorkerStats, failure_text
from .settings import WorkerOptions, WorkerSettings
from .threaded import Worker

if TYPE_CHECKING:
    from .aio import AsyncWorker

__all__ = [
    "AsyncWorker",
    "Worker",
    "WorkerOptions",
    "WorkerSettings",
    "WorkerStats",
    "failure_text",
    "load_registry",
]

# The asyncio worker imports sqlalchemy.ext.asyncio (and greenlet): loaded on first use.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        if name == "AsyncWorker":
            from .aio import AsyncWorker

            globals()["AsyncWorker"] = AsyncWorker
            return AsyncWorker
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
