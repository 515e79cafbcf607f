"""Writing what the worker did: a round (outcomes written and the next jobs claimed in one
transaction), the progress of running jobs, heartbeats, and the completion of a job in
its handler's own session.

Each is written once, on a sync :class:`~sqlalchemy.engine.Connection` or
:class:`~sqlalchemy.orm.Session`: the sync worker calls it directly, the asyncio worker
through ``AsyncConnection.run_sync`` / ``AsyncSession.run_sync``, as SQLAlchemy's own
asyncio layer runs its sync core. The statements come from
:class:`~sqla_jobqueue.statements.JobStatements`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from ..errors import InvalidTransitionError, JobNotFoundError
from ..model import JobStatus
from ..queue import JobQueue
from ..statements import Claimed, ClaimPosition, JobStatements, driver_rows
from ..statements import session as session_settings
from .dispatch import AloneStep
from .outcomes import (
    CANCELLED,
    CANCELLED_STATUS,
    COMPLETED,
    COMPLETED_STATUS,
    DONE,
    FAILED,
    LOST,
    SNOOZED,
    Outcome,
    Run,
    failure_text,
    first_line,
    outcome,
)
from .settings import WorkerSettings

__all__ = [
    "MAX_RECORD_TRIES",
    "Recorder",
    "RoundResult",
    "is_transient",
    "needs_transaction",
]

log = logging.getLogger("sqla_jobqueue.worker")

MAX_RECORD_TRIES = 5
"""Rounds in which an outcome's write may fail before it is given up."""
LIMITS_CHECK_INTERVAL = 2.0
"""Seconds between a worker's checks whether its job types have limits: while one has,
its rounds claim through the limited claim function; until it knows, it claims no job of
a type whose limit was just set."""
_ONE_BY_ONE = (FAILED, SNOOZED, CANCELLED)


def is_transient(exc: BaseException) -> bool:
    """Whether a database error is about the connection rather than the statement."""
    return isinstance(exc, (OperationalError, InterfaceError)) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def needs_transaction(pending: Sequence[Outcome]) -> bool:
    """Whether a round writes outcomes one by one (each in a savepoint of an explicit
    transaction), rather than in the single statement of an autocommit round."""
    return any(o.kind in _ONE_BY_ONE for o in pending)


@dataclass
class RoundResult:
    """What a round did."""

    claimed: list[Claimed]
    again: list[Outcome] = field(default_factory=list)
    """Outcomes refused for a reason that is not the connection's: tried again next round."""
    alone_due: bool = False
    """The answer of an :attr:`AloneStep.CHECK`: a job that runs alone is due."""
    limited: bool = False
    """It claimed through the limited claim function."""
    held_back: bool = False
    """It claimed through the limited claim function and got nothing, while due jobs of
    the worker's types wait: limits hold them back."""


class Recorder:
    """The statements a worker writes with, executed on a connection it is given."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.statements = JobStatements.of(settings.table)
        self.worker_id = settings.worker_id
        self.limited = False
        """Whether one of the worker's job types had a limit when last checked."""
        self._limits_checked_at: float | None = None

    def round(
        self,
        connection: Connection,
        pending: list[Outcome],
        want: int,
        resume_after: ClaimPosition | None,
        uncertain: bool,
        known: Sequence[uuid.UUID],
        alone: AloneStep = AloneStep.NONE,
    ) -> RoundResult:
        """Write the pending outcomes and claim ``want`` jobs, or, at an
        :attr:`AloneStep.CLAIM`, one job that runs alone if one is due.

        On an autocommit connection when no outcome :func:`needs_transaction`, else inside
        the caller's transaction (at READ COMMITTED), whose session the server ends if it
        sits idle for ``stale_timeout``: a worker stopped (SIGSTOP) mid-round must not hold
        the rows it locked until it is resumed. After an uncertain round, first gives back
        (to pending, attempt refunded) the jobs the database says this worker holds that are
        not ``known`` to it. Every outcome gets its ``final_status``.
        """
        if needs_transaction(pending):
            idle = timedelta(seconds=self.settings.stale_timeout)
            connection.execute(*session_settings.bound_waits(None, idle))
        if uncertain:
            self._give_back_unknown(connection, known)
        completions = [o for o in pending if o.kind == COMPLETED]
        result = RoundResult([])
        statements, job_types = self.statements, self.settings.job_types
        if want or alone is AloneStep.CLAIM:
            self._check_limits(connection)
        if alone is AloneStep.CLAIM:
            bound = statements.claim_alone(self.worker_id, job_types, self.limited)
            result.claimed = [Claimed._make(row) for row in driver_rows(connection, bound)]
            if result.claimed:
                want = 0
        elif alone is AloneStep.CHECK:
            result.alone_due = bool(connection.execute(*statements.alone_due(job_types)).scalar())
        if completions or want or len(completions) < len(pending):
            result.limited = self.limited and want > 0
            done, claimed = self._complete_and_claim(connection, completions, want, resume_after)
            result.claimed += claimed
            if result.limited and not claimed:
                held_back = connection.execute(*statements.held_back(job_types)).scalar()
                result.held_back = bool(held_back)
            settle_completions(completions, done)
            result.again = self._record(connection, pending)
        for written in pending:
            if written.kind == DONE:
                written.final_status = COMPLETED_STATUS
            elif written.kind == LOST:
                written.final_status = LOST
        refused = [o for o in pending if o.final_status == LOST and o not in result.again]
        if refused:
            self._settle_refused(connection, refused, uncertain)
        return result

    def _complete_and_claim(
        self,
        connection: Connection,
        completions: list[Outcome],
        want: int,
        resume_after: ClaimPosition | None,
    ) -> tuple[list[uuid.UUID], list[Claimed]]:
        """Complete ``completions`` and claim ``want`` jobs in one statement; return the
        ids completed and the jobs claimed, in claim order."""
        bound = self.statements.complete_and_claim(
            self.worker_id,
            [o.run.ctx.job_id for o in completions],
            [o.run.ctx.attempt for o in completions],
            [o.result_json for o in completions],
            [o.stage for o in completions],
            [o.events for o in completions],
            want,
            self.settings.job_types,
            resume_after,
            # A round that claims nothing completes without the limited claim function.
            self.limited and want > 0,
        )
        done: list[uuid.UUID] = []
        claimed: list[Claimed] = []
        for row in driver_rows(connection, bound):
            if row[0]:
                done.append(row[1])
            else:
                claimed.append(Claimed._make(row[1:]))
        return done, claimed

    def _check_limits(self, connection: Connection) -> None:
        """Find out, every :data:`LIMITS_CHECK_INTERVAL`, whether the worker's types have
        limits (:attr:`limited`)."""
        now = time.monotonic()
        checked = self._limits_checked_at
        if checked is not None and now - checked < LIMITS_CHECK_INTERVAL:
            return
        bound = self.statements.limits_set(self.settings.job_types)
        self.limited = bool(connection.execute(*bound).scalar())
        self._limits_checked_at = now

    def _give_back_unknown(self, connection: Connection, known: Sequence[uuid.UUID]) -> None:
        bound = self.statements.give_back(self.worker_id, known)
        given = list(connection.execute(*bound).scalars())
        if given:
            log.warning("gave back %d jobs claimed by a round whose answer was lost: %s",
                        len(given), ", ".join(map(str, given)))  # fmt: skip

    def _settle_refused(self, connection: Connection, refused: list[Outcome],
                        uncertain: bool) -> None:  # fmt: skip
        """Find out why outcomes were refused, for the stats and the log.

        A job cancelled while it ran here is still marked with this worker and attempt:
        its outcome counts as cancelled. After an uncertain round, a refused completion
        may have been written by the earlier try whose answer was lost: it counts as
        completed. Any other refusal stays lost.
        """
        attempts = {o.run.ctx.job_id: o.run.ctx.attempt for o in refused}
        settled = self.statements.settled(self.worker_id, list(attempts))
        try:
            rows = connection.execute(*settled).all()
        except DBAPIError as exc:
            if is_transient(exc):
                raise
            log.warning("could not read why %d outcomes were refused (%s); counted as lost",
                        len(refused), first_line(exc.orig or exc))  # fmt: skip
            return
        now = {row.id: JobStatus(row.status) for row in rows if attempts[row.id] == row.attempts}
        for written in refused:
            status = now.get(written.run.ctx.job_id)
            if status == JobStatus.CANCELLED:
                written.final_status = CANCELLED_STATUS
            elif status == JobStatus.COMPLETED and uncertain and written.kind == COMPLETED:
                written.final_status = COMPLETED_STATUS

    def _record(self, connection: Connection, pending: list[Outcome]) -> list[Outcome]:
        """Write failures, snoozes and cancellations, each in its own savepoint.

        A job that is gone (deleted while it ran) or no longer held is lost. An outcome
        whose write fails for another reason that is not the connection's is returned to be
        tried again next round, and given up (logged, counted as lost) after
        :data:`MAX_RECORD_TRIES` rounds.
        """
        again: list[Outcome] = []
        for written in pending:
            if written.kind not in _ONE_BY_ONE:
                continue
            savepoint = connection.begin_nested()
            try:
                written.final_status = self._record_one(connection, written)
                savepoint.commit()
            except Exception as exc:
                if is_transient(exc) or not savepoint.is_active:
                    raise
                savepoint.rollback()
                if _try_again(written, exc):
                    again.append(written)
        return again

    def _record_one(self, connection: Connection, written: Outcome) -> str:
        ctx = written.run.ctx
        statements, worker_id = self.statements, self.worker_id
        if written.kind == FAILED:
            failed = statements.fail(
                ctx.job_id,
                worker_id,
                ctx.attempt,
                written.error or "failed",
                run_again_in=written.after,
                backoff=written.run.spec.backoff,
            )
            row = connection.execute(*failed).first()
            return LOST if row is None else JobStatus(row.status).value
        if written.kind == SNOOZED:
            after = written.after or timedelta(0)
            snooze = statements.snooze(ctx.job_id, worker_id, ctx.attempt, after)
            held = connection.execute(*snooze).first() is not None
            return JobStatus.PENDING.value if held else LOST
        reason = written.error or "cancelled by its handler"
        cancel = statements.cancel_held(ctx.job_id, worker_id, ctx.attempt, reason)
        held = connection.execute(*cancel).first() is not None
        return JobStatus.CANCELLED.value if held else LOST

    # ----------------------------------------------------- the worker's connections

    @staticmethod
    def pin_read_committed(connection: Connection) -> None:
        """Make an autocommit connection the worker keeps run each statement at READ
        COMMITTED (:func:`~sqla_jobqueue.statements.session.pin_read_committed`)."""
        connection.execute(*session_settings.pin_read_committed())

    @staticmethod
    def unpin_read_committed(connection: Connection) -> None:
        """Undo :meth:`pin_read_committed` before the connection goes back to the pool it
        is shared with."""
        connection.execute(*session_settings.unpin_read_committed())

    # ----------------------------------------------------- outside the rounds

    def heartbeat(self, connection: Connection, ids: Sequence[uuid.UUID]) -> None:
        """Refresh ``heartbeat_at`` of the jobs this worker holds among ``ids``."""
        connection.execute(*self.statements.heartbeat_unlocked(self.worker_id, ids))

    def write_progress(self, connection: Connection, runs: Sequence[Run]) -> None:
        """Write what ``runs`` reported since the last tick, in one statement.

        A job the worker no longer holds is abandoned (its handler may check
        ``ctx.abandoned``). When the write fails, the events taken are given back.
        """
        reports = []
        for run in runs:
            taken = run.ctx.take_progress()
            if taken is not None:
                reports.append((run.ctx, taken))
        if not reports:
            return
        bound = self.statements.write_progress(
            self.worker_id,
            [ctx.job_id for ctx, _ in reports],
            [ctx.attempt for ctx, _ in reports],
            [percent for _, (percent, _, _) in reports],
            [stage for _, (_, stage, _) in reports],
            [events for _, (_, _, events) in reports],
        )
        try:
            held = {row[0] for row in driver_rows(connection, bound)}
        except Exception:
            for ctx, (_, _, events) in reports:
                ctx.give_back_events(events)
            raise
        for ctx, _ in reports:
            if ctx.job_id not in held:
                ctx.abandon()

    def complete_in_session(
        self, session: Session, run: Run, value: Any, lock: threading.Lock
    ) -> Outcome:
        """Complete ``run``'s job in its handler's session and commit both together.

        The commit and the timeout exclude each other under ``lock``: once the dispatcher
        declared the attempt timed out (and fails it) the completion is not committed, and
        once this commit is decided the dispatcher no longer times it out.
        """
        ctx = run.ctx
        try:
            queue = JobQueue(
                session,
                self.settings.model,
                worker_id=self.worker_id,
                max_payload_bytes=self.settings.max_payload_bytes,
            )
            unwritten = ctx.take_progress()
            if unwritten is not None:
                _, stage, events = unwritten
                queue.update_progress(ctx.job_id, None, stage, events, attempt=ctx.attempt)
            queue.complete(ctx.job_id, value, attempt=ctx.attempt)
            with lock:
                timed_out = run.timed_out
                run.finished = not timed_out
            if timed_out:
                session.rollback()
                return outcome(run, LOST, error="timed out before its commit")
            session.commit()
        except (JobNotFoundError, InvalidTransitionError) as exc:
            session.rollback()
            return outcome(run, LOST, error=str(exc))
        except Exception as exc:
            session.rollback()
            return outcome(
                run,
                FAILED,
                error="the handler's transaction failed to commit with the completion, so "
                "neither its writes nor the completion were kept:\n" + failure_text(exc),
                summary=f"commit failed, nothing kept: {first_line(exc)}",
            )
        return outcome(run, DONE)


def settle_completions(completions: list[Outcome], done: Sequence[uuid.UUID]) -> None:
    """Mark each completion written (``completed``) or refused (:data:`LOST`, for now)."""
    if len(done) == len(completions):  # the common round: every one was written
        for written in completions:
            written.final_status = COMPLETED_STATUS
        return
    written_ids = set(done)
    for written in completions:
        in_done = written.run.ctx.job_id in written_ids
        written.final_status = COMPLETED_STATUS if in_done else LOST


def _try_again(written: Outcome, exc: Exception) -> bool:
    """An outcome whose write was refused: whether to try it again next round."""
    written.tries += 1
    ctx = written.run.ctx
    if written.tries < MAX_RECORD_TRIES:
        log.warning("job %s type=%s attempt=%d: writing its outcome %s failed (%s); trying "
                    "again next round", ctx.job_id, ctx.job_type, ctx.attempt, written.kind,
                    first_line(exc))  # fmt: skip
        return True
    log.error("job %s type=%s attempt=%d: writing its outcome %s failed %d times (%s); giving "
              "it up: the job comes back through rescue", ctx.job_id, ctx.job_type,
              ctx.attempt, written.kind, written.tries, first_line(exc))  # fmt: skip
    written.final_status = LOST
    return False
