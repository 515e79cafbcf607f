"""What an attempt ends with: the runs in progress, their outcomes, how a handler's return
or exception becomes an outcome, and how outcomes are counted and logged.

Everything here is plain Python with no database and no threads of its own, shared by
both workers.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .. import validation as check
from ..errors import InvalidJobError
from ..handlers import Cancel, Handler, JobContextBase, Snooze
from ..model import JobStatus

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "DONE",
    "FAILED",
    "LOST",
    "SNOOZED",
    "Outcome",
    "Run",
    "WorkerStats",
    "checked_result",
    "completion",
    "failure_text",
    "first_line",
    "log_late_return",
    "log_outcomes",
    "outcome",
    "outcome_of_error",
    "shutdown_outcome",
    "timed_out_outcome",
]

log = logging.getLogger("sqla_jobqueue.worker")

COMPLETED = "completed"
"""The handler returned; the completion is written by the worker's round."""
DONE = "done"
"""The handler returned and its job was completed in its own session's transaction."""
FAILED = "failed"
SNOOZED = "snoozed"
"""The handler raised :class:`~sqla_jobqueue.Snooze`."""
CANCELLED = "cancelled"
LOST = "lost"
"""The worker no longer held the job, or its outcome could not be written."""

COMPLETED_STATUS = JobStatus.COMPLETED.value
CANCELLED_STATUS = JobStatus.CANCELLED.value
_MAX_ERROR_CHARS = 8000


class Run:
    """One attempt in progress on a worker."""

    __slots__ = ("ctx", "deadline", "finished", "spec", "started", "task", "timed_out")

    def __init__(self, ctx: JobContextBase[Any], spec: Handler, started: float) -> None:
        self.ctx = ctx
        self.spec = spec
        self.started = started
        timeout = spec.timeout
        self.deadline = None if timeout is None else started + timeout.total_seconds()
        self.finished = False
        """The handler returned (or its completion is being committed)."""
        self.timed_out = False
        """The worker gave up on the attempt (timeout, or the end of the grace period)."""
        self.task: asyncio.Future[Any] | None = None
        """The asyncio worker's task running the handler, cancelled when it times out."""


@dataclass(slots=True)
class Outcome:
    """How an attempt ended, waiting to be written."""

    run: Run
    kind: str
    result_json: str | None = None
    error: str | None = None
    after: timedelta | None = None
    duration: float = 0.0
    final_status: str = ""
    """The job's status once written, or :data:`LOST`."""
    summary: str = ""
    """One line for the log; ``error`` holds the whole story for ``last_error``."""
    tries: int = 0
    """Rounds in which writing this outcome failed with a non-transient error."""
    stage: str | None = None
    """A progress stage the ticker had not written yet, written with the completion."""
    events: int = 0
    """Events the ticker had not counted yet, counted with the completion."""


@dataclass
class WorkerStats:
    """Counts of job outcomes recorded by one worker since it started.

    ``str(stats)`` is a one-line summary for logs and the command line:
    ``"3 completed, 1 failed, 0 snoozed, 1 cancelled, 0 lost"``.
    """

    completed: int = 0
    failed: int = 0
    """Failed attempts, whether the job goes back to pending or ends ``failed``."""
    snoozed: int = 0
    """Attempts whose handler raised :class:`~sqla_jobqueue.Snooze`."""
    cancelled: int = 0
    """Jobs whose handler raised :class:`~sqla_jobqueue.Cancel`, and jobs cancelled (for
    instance with ``sqla-jobqueue cancel``) while they ran here."""
    lost: int = 0
    """Outcomes discarded: the job was no longer this worker's (rescued after a stale
    heartbeat and claimed again, or deleted), or its outcome could not be written."""

    def add(self, kind: str) -> None:
        """Count one outcome of ``kind`` (internal)."""
        attribute = _STAT_OF_KIND[kind]
        setattr(self, attribute, getattr(self, attribute) + 1)

    def __str__(self) -> str:
        return (
            f"{self.completed} completed, {self.failed} failed, {self.snoozed} snoozed, "
            f"{self.cancelled} cancelled, {self.lost} lost"
        )


_STAT_OF_KIND = {
    COMPLETED: "completed", DONE: "completed", FAILED: "failed",
    SNOOZED: "snoozed", CANCELLED: "cancelled", LOST: "lost",
}  # fmt: skip


def failure_text(exc: BaseException) -> str:
    """The traceback of a handler's exception as ``last_error`` keeps it (bounded)."""
    text_ = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if len(text_) > _MAX_ERROR_CHARS:
        text_ = text_[:200] + "\n...\n" + text_[-(_MAX_ERROR_CHARS - 205) :]
    return text_


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message``, for one-line logs."""
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message.splitlines()[0]}" if message else type(exc).__name__


def outcome(run: Run, kind: str, **fields: Any) -> Outcome:
    """An outcome of ``run`` ending now."""
    return Outcome(run, kind, duration=time.monotonic() - run.started, **fields)


def outcome_of_error(run: Run, exc: BaseException) -> Outcome:
    """What a handler's exception means: a snooze, a cancellation or a failed attempt."""
    if isinstance(exc, Snooze):
        return outcome(run, SNOOZED, error=exc.reason, after=exc.after)
    if isinstance(exc, Cancel):
        return outcome(run, CANCELLED, error=exc.reason)
    return outcome(run, FAILED, error=failure_text(exc), summary=first_line(exc))


def checked_result(run: Run, value: Any, max_payload_bytes: int) -> str | Outcome | None:
    """A handler's returned value as the JSON to store, or a failed outcome when it
    cannot be stored."""
    if value is None:
        return None
    try:
        return check.check_json(value, "result", max_payload_bytes, require_object=False)
    except InvalidJobError as exc:
        return outcome(run, FAILED, error=f"InvalidJobError: {exc}")


def completion(run: Run, result_json: str | None) -> Outcome:
    """A completion for the worker's round to write.

    Progress reported since the last tick goes with it (the stage and the events; the
    percent becomes 100).
    """
    completed = outcome(run, COMPLETED, result_json=result_json)
    unwritten = run.ctx.take_progress()
    if unwritten is not None:
        completed.stage, completed.events = unwritten[1], unwritten[2]
    return completed


def timed_out_outcome(run: Run, now: float) -> Outcome:
    """The failed attempt of a handler that outlived its timeout."""
    timeout = run.spec.timeout.total_seconds() if run.spec.timeout else 0.0
    cut_off = "cancelled" if run.task is not None else "left to return on its own"
    message = (
        f"TimeoutError: handler of {run.ctx.job_type!r} did not finish within its "
        f"timeout of {timeout:g}s; the attempt is failed (the handler was {cut_off} and its "
        "outcome is discarded)"
    )
    return Outcome(run, FAILED, error=message, duration=now - run.started)


def shutdown_outcome(run: Run, worker_id: str, grace_period: float, now: float) -> Outcome:
    """The attempt of a handler still running when the grace period ended: failed, due
    again at once."""
    return Outcome(
        run,
        FAILED,
        error=f"worker {worker_id} shut down before the handler finished "
        f"(grace period {grace_period:g}s)",
        after=timedelta(0),
        duration=now - run.started,
    )


def log_late_return(run: Run, late: Outcome) -> None:
    """Log the outcome of a handler that returned after the worker gave up on it."""
    log.warning("job %s type=%s attempt=%d: handler returned after %.1fs, when the worker had "
                "given up on it (its timeout, or the end of the grace period); outcome "
                "discarded", run.ctx.job_id, run.ctx.job_type, run.ctx.attempt,
                late.duration)  # fmt: skip


def log_outcomes(stats: WorkerStats, outcomes: list[Outcome]) -> None:
    """Count and log the written outcomes of a round."""
    info = log.isEnabledFor(logging.INFO)
    for written in outcomes:
        plain = written.kind == COMPLETED and written.final_status == COMPLETED_STATUS
        if plain and not info:
            stats.completed += 1  # the common case, with nothing to log
        else:
            _log_outcome(stats, written)


def _log_outcome(stats: WorkerStats, written: Outcome) -> None:
    ctx = written.run.ctx
    if written.final_status == CANCELLED_STATUS and written.kind != CANCELLED:
        stats.cancelled += 1
        log.info(
            "job %s type=%s attempt=%d/%d was cancelled while it ran; its outcome %s "
            "after %.3fs was discarded", ctx.job_id, ctx.job_type, ctx.attempt,
            ctx.max_attempts, COMPLETED if written.kind == DONE else written.kind,
            written.duration,
        )  # fmt: skip
        return
    kind = LOST if written.final_status == LOST else written.kind
    stats.add(kind)
    if kind == LOST:
        log.warning(
            "job %s type=%s attempt=%d: outcome %s discarded after %.3fs: this worker no "
            "longer holds the job (rescued after a stale heartbeat, or deleted)",
            ctx.job_id, ctx.job_type, ctx.attempt, written.kind, written.duration,
        )  # fmt: skip
        return
    if not log.isEnabledFor(logging.INFO):
        return
    if kind in (COMPLETED, DONE):
        what = "completed"
    elif kind == FAILED:
        status = written.final_status
        what = "failed, will retry" if status == JobStatus.PENDING.value else "failed"
        what += f": {(written.summary or written.error or '').strip().splitlines()[0][:200]}"
    elif kind == SNOOZED:
        what = f"snoozed for {written.after}"
    else:
        what = f"cancelled: {written.error}"
    log.info(
        "job %s type=%s attempt=%d/%d %s in %.3fs",
        ctx.job_id, ctx.job_type, ctx.attempt, ctx.max_attempts, what, written.duration,
    )  # fmt: skip
