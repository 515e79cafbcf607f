"""Jobs in your application's tests, in the test's own transaction.

A test that calls a route (or any code that enqueues) usually runs inside a transaction it
rolls back at the end. These helpers work in that transaction, through the test's own
``Session``:

- :func:`enqueued` lists the jobs in the table (of one type, if asked), oldest first, to
  assert what the code under test enqueued;
- :func:`run_jobs` runs the due jobs now, through the handlers of your
  :class:`~sqla_jobqueue.Registry`, with the outcomes a worker would record: a return
  completes the job with its result, an exception fails the attempt (pending again after
  the handler's backoff, or ``failed`` once attempts are spent), ``Snooze`` and ``Cancel``
  do what they do in a worker. ``ctx.session`` is the test's session, so what a handler
  writes joins the test's transaction and is rolled back with it.

See ``docs/testing.md`` for a FastAPI application and its test. Nothing here imports
pytest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar, cast

from sqlalchemy.orm import Session

from ..errors import InvalidJobError, JobQueueError
from ..handlers import Cancel, HandlerFunction, JobContext, Registry, Snooze
from ..model import JobMixin, JobStatus
from ..plans import default_worker_id
from ..queue import JobQueue
from ..statements import loading
from ..worker import failure_text

__all__ = ["RUNAWAY_ATTEMPTS", "enqueued", "run_jobs"]

J = TypeVar("J", bound=JobMixin)

RUNAWAY_ATTEMPTS = 10_000
"""Attempts after which :func:`run_jobs` without a ``limit`` gives up (a handler that asks
to run again at once, forever)."""


def enqueued(
    session: Session,
    model: type[J],
    *,
    job_type: str | None = None,
    status: JobStatus | str | None = None,
) -> list[J]:
    """The jobs of ``model``'s table as ``session`` sees them, oldest first.

    Parameters
    ----------
    session:
        The test's session (its transaction sees what the code under test enqueued in it).
    model:
        Your job model (the class mapped with ``JobMixin``).
    job_type:
        Only jobs of this type.
    status:
        Only jobs in this status (``"pending"``, ``JobStatus.COMPLETED``...).
    """
    try:
        chosen = None if status is None else JobStatus(status)
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise InvalidJobError(f"{status!r} is not a job status; one of {known}") from None
    listing = JobQueue(session, model).statements.listing(job_type, chosen)
    return list(session.scalars(*loading(model, listing)))


def run_jobs(
    session: Session,
    registry: Registry,
    model: type[J],
    *,
    job_types: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[J]:
    """Run the due jobs now, in the caller's session and transaction, through their handlers.

    Jobs are claimed one at a time in the order a worker claims them (priority, then age),
    so a job that a handler enqueues runs in the same call once it is due, and a failed
    attempt whose backoff has not passed is not run again. Each attempt runs in a
    savepoint: when the handler raises, its writes are rolled back and the failure is
    recorded, as a worker does. The handler's ``timeout`` is not applied (the handler runs
    on the caller's thread), and the caller's transaction is never committed.

    Parameters
    ----------
    session:
        The test's session; handlers get it as ``ctx.session``. Do not commit it in a
        handler.
    registry:
        The handlers to run.
    model:
        Your job model (the class mapped with ``JobMixin``).
    job_types:
        Run only jobs of these types; by default every type of the registry.
    limit:
        Run at most this many attempts. By default, run until no job of these types is
        due.

    Returns
    -------
    list
        The jobs run, in the order of their attempts, each as it is now (a job run twice
        appears twice).

    Raises
    ------
    InvalidJobError
        When a job type has no handler in the registry, or ``limit`` is not positive.
    JobQueueError
        When jobs are still due after ``RUNAWAY_ATTEMPTS`` attempts without a ``limit``.
    """
    types = registry.job_types if job_types is None else list(job_types)
    unknown = [job_type for job_type in types if job_type not in registry]
    if unknown:
        raise InvalidJobError(
            f"no handler registered for job types {unknown}; registered are {registry.job_types}"
        )
    asynchronous = registry.async_job_types(types)
    if asynchronous:
        raise InvalidJobError(
            f"the handlers of {asynchronous} are async def: run_jobs runs plain handlers on a "
            "Session; give it job_types without them, or drain them with an AsyncWorker"
        )
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidJobError(f"limit must be a positive int, got {limit!r}")
    worker_id = default_worker_id()
    queue = JobQueue(session, model, worker_id=worker_id)
    ran: list[J] = []
    while limit is None or len(ran) < limit:
        if limit is None and len(ran) >= RUNAWAY_ATTEMPTS:
            raise JobQueueError(
                f"jobs are still due after {RUNAWAY_ATTEMPTS} attempts: a handler keeps "
                "asking to run again at once (Snooze with no delay?); pass limit= to stop "
                "after a number of attempts"
            )
        claimed = queue.claim(types, batch_size=1)
        if not claimed:
            break
        ran.append(_run_one(queue, worker_id, registry, queue.start(claimed[0])))
    return ran


def _run_one(queue: JobQueue[J], worker_id: str, registry: Registry, job: J) -> J:
    """One attempt of a started job, recorded as a worker records it."""
    session = queue.session
    spec = registry[job.job_type]
    ctx = JobContext(
        job_id=job.id,
        job_type=job.job_type,
        data=job.data,
        attempt=job.attempts,
        max_attempts=job.max_attempts,
        worker_id=worker_id,
        session_factory=lambda: session,
    )
    savepoint = session.begin_nested()
    try:
        value = cast(HandlerFunction, spec.function)(ctx)
        taken = ctx.take_progress()
        if taken is not None:
            queue.update_progress(job.id, None, taken[1], taken[2], attempt=ctx.attempt)
        queue.complete(job.id, value, attempt=ctx.attempt)
        savepoint.commit()
    except Snooze as request:
        savepoint.rollback()
        session.execute(*queue.statements.snooze(job.id, worker_id, ctx.attempt, request.after))
    except Cancel as request:
        savepoint.rollback()
        cancel = queue.statements.cancel_held(job.id, worker_id, ctx.attempt, request.reason)
        session.execute(*cancel)
    except Exception as exc:
        if savepoint.is_active:
            savepoint.rollback()
        queue.fail(job.id, failure_text(exc), backoff=spec.backoff, attempt=ctx.attempt)
    return queue.get(job.id)
