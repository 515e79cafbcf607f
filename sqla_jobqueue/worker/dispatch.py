"""The dispatcher's state and its decisions, shared by both workers: how many jobs to claim
and when, where the next claim resumes, which attempts ran out of time, how long to idle,
and which runs a round's outcomes end.

:class:`Dispatch` does no I/O and starts nothing: a worker asks it what to do, does it (on
threads or on an event loop) and tells it what happened. Unit tests drive it with no
database.
"""

from __future__ import annotations

import enum
import math
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from ..handlers import Handler, JobContextBase, Registry
from ..statements import Claimed, ClaimPosition
from .outcomes import Outcome, Run, shutdown_outcome, timed_out_outcome
from .settings import WorkerSettings

__all__ = [
    "ALONE_CHECK_INTERVAL",
    "IDLE_CAP",
    "LIMITED_WAIT_CAP",
    "LIMITED_WAIT_FIRST",
    "AloneStep",
    "Dispatch",
]

IDLE_CAP = 1.0
"""Longest an idle dispatcher sleeps before it looks at its state again."""
ALONE_CHECK_INTERVAL = 5.0
"""How often a busy worker asks whether a job that must run alone is due."""
LIMITED_WAIT_FIRST = 0.01
"""Seconds a worker waits after a short claim through the limited claim function before
it claims again: a limit holds jobs back that other workers' completions free, and
nothing announces that; nor a claim that passed over a type another claim held (SKIP
LOCKED). While such claims come back empty with due jobs held back, the wait doubles up
to :data:`LIMITED_WAIT_CAP`; with none due, it is the poll interval."""
LIMITED_WAIT_CAP = 0.1
"""Longest wait between claims while limits hold due jobs back."""


class AloneStep(enum.Enum):
    """What a round does about jobs that run alone (jobs that crashed a worker)."""

    NONE = "none"
    CHECK = "check"
    """Ask whether one is due (a busy worker, now and then)."""
    CLAIM = "claim"
    """Claim one before anything else (a worker running nothing)."""


ContextFactory = Callable[[Claimed, Handler], JobContextBase[Any]]


class Dispatch:
    """What a worker is running and has to write, and what it should do next.

    ``lock`` guards :attr:`active` and the runs' ``finished``/``timed_out`` flags, which
    handler threads and background loops read too.
    """

    def __init__(
        self, settings: WorkerSettings, registry: Registry, make_context: ContextFactory
    ) -> None:
        self.settings = settings
        self.registry = registry
        # Looked up for every job claimed (the registry's lookup costs a method call); a
        # registry only grows, and a type registered later is found in it on first use.
        self._handlers = {job_type: registry[job_type] for job_type in registry}
        self._make_context = make_context
        self.lock = threading.Lock()
        self.active: dict[uuid.UUID, Run] = {}
        self.pending: list[Outcome] = []
        """Outcomes to write in the next round."""
        self.hungry = True
        """Whether to claim at once rather than at the next poll."""
        self.notified = 0
        """Notifications received (to see whether one came during a claim)."""
        self.uncertain = False
        """Whether the last round's commit may have happened with its answer lost."""
        self.resume_after: ClaimPosition | None = None
        self.alone: uuid.UUID | None = None
        """The job running alone here: nothing else is claimed until it ends."""
        self.alone_waiting = False
        """A job that runs alone is due: claim nothing more until nothing runs here."""
        self._next_alone_check = 0.0
        self._resume_until = 0.0
        self._next_poll = 0.0
        self._limited_wait = LIMITED_WAIT_FIRST
        self.grace_deadline = math.inf

    # ------------------------------------------------------------------ waking

    def on_notify(self, job_type: str | None) -> bool:
        """A notification (``None``: the listener reconnected): whether it concerns this
        worker, which then claims at once."""
        types = self.settings.job_types
        if job_type is None or job_type in types:
            self.notified += 1
            self.hungry = True
            return True
        return False

    def begin_stop(self, now: float) -> None:
        """A graceful stop begins: running handlers have until the grace deadline."""
        if self.grace_deadline == math.inf:
            self.grace_deadline = now + self.settings.grace_period

    # ---------------------------------------------------------------- a round

    def expire(self, now: float) -> list[Run]:
        """Give up on the runs past their deadline: each gets a failed outcome to write;
        returns them (for the worker to free their slot or cancel their task)."""
        expired: list[Run] = []
        with self.lock:
            for run in self.active.values():
                if run.deadline is not None and now >= run.deadline and not run.finished:
                    run.timed_out = True
                    run.ctx.abandon()
                    expired.append(run)
        self.pending.extend(timed_out_outcome(run, now) for run in expired)
        return expired

    def take(self, outcome: Outcome) -> None:
        """A handler's outcome, written next round unless the worker gave up on it."""
        if not outcome.run.timed_out:
            self.pending.append(outcome)

    def free_slots(self) -> int:
        """Slots free for claiming now: jobs whose outcome is written in this round free
        their slot in it too."""
        with self.lock:
            active = len(self.active)
        return self.settings.concurrency - active + len(self.pending)

    def done(self, now: float, stopping: bool) -> bool:
        """Whether a stopping worker may end: nothing runs, or the grace period is over."""
        if not stopping:
            return False
        with self.lock:
            active = len(self.active)
        return active == 0 or now >= self.grace_deadline

    def claim_size(self, now: float, stopping: bool, free: int) -> int:
        """How many jobs the next round claims (0: it only writes outcomes, if any)."""
        if now >= self._resume_until:
            self.resume_after = None
        if stopping or free <= 0 or self._making_room_to_be_alone():
            return 0
        if not (self.hungry or now >= self._next_poll):
            return 0
        return min(self.settings.batch_size, free)

    def _making_room_to_be_alone(self) -> bool:
        """Whether a job runs alone here, or one waits for the jobs running here to end."""
        with self.lock:
            if self.alone in self.active:
                return True
            self.alone = None
            return self.alone_waiting and bool(self.active)

    def alone_step(self, now: float, want: int) -> AloneStep:
        """What a round that claims ``want`` jobs does about jobs that run alone: a worker
        running nothing claims one first; a busy one asks every
        :data:`ALONE_CHECK_INTERVAL` whether one is due, so that it makes room for it even
        when the queue never empties."""
        if not want:
            return AloneStep.NONE
        with self.lock:
            idle = not self.active
        if idle:
            return AloneStep.CLAIM
        if now >= self._next_alone_check:
            self._next_alone_check = now + ALONE_CHECK_INTERVAL
            return AloneStep.CHECK
        return AloneStep.NONE

    def claimed(
        self,
        want: int,
        claimed: Sequence[Claimed],
        notified: int,
        now: float,
        alone: AloneStep = AloneStep.NONE,
        alone_due: bool = False,
        limited: bool = False,
        held_back: bool = False,
    ) -> None:
        """A round that asked for ``want`` jobs came back with ``claimed``; ``notified``
        is :attr:`notified` as it was before the round; ``alone`` is the round's
        :meth:`alone_step`, and ``alone_due`` the answer of a check; ``limited``: the
        round claimed through the limited claim function, and ``held_back``: it claimed
        nothing while limits held due jobs back."""
        if not want:
            return
        self._claimed(want, claimed, notified, now, limited, held_back)
        if alone is AloneStep.CHECK and alone_due:
            self.alone_waiting = self.hungry = True
        elif alone is AloneStep.CLAIM:
            self.alone_waiting = False
            crashed = [row for row in claimed if row.crashes]
            if crashed:
                self.alone = crashed[0].id
                # Once it ends, claim again at once, from the start of the queue.
                self.hungry = True
                self.resume_after = None

    def _claimed(
        self,
        want: int,
        claimed: Sequence[Claimed],
        notified: int,
        now: float,
        limited: bool,
        held_back: bool,
    ) -> None:
        full = len(claimed) == want
        # A short claim that resumed may have passed over due jobs before its position; a
        # notification during the claim may be for a job it could not see yet: either
        # way, look again at once.
        resumed = self.resume_after is not None
        self.hungry = full or resumed or self.notified != notified
        self._resume_from(claimed[-1] if full else None, now)
        if not self.hungry:
            self._next_poll = now + self._wait_after_short_claim(bool(claimed), limited, held_back)

    def _wait_after_short_claim(self, claimed_some: bool, limited: bool, held_back: bool) -> float:
        """The poll interval; after a limited claim that claimed some jobs,
        :data:`LIMITED_WAIT_FIRST`; after one that claimed none while limits hold due jobs
        back, twice the last such wait, up to :data:`LIMITED_WAIT_CAP`."""
        poll = self.settings.poll_interval
        if limited and claimed_some:
            self._limited_wait = LIMITED_WAIT_FIRST
        elif limited and held_back:
            self._limited_wait = min(self._limited_wait * 2, LIMITED_WAIT_CAP)
        else:
            self._limited_wait = LIMITED_WAIT_FIRST
            return poll
        return min(self._limited_wait, poll)

    def _resume_from(self, last: Claimed | None, now: float) -> None:
        """Let the next claim resume after ``last`` (``None``: from the start of the queue).

        Positions are kept for at most ``poll_interval`` from the first: jobs that become
        due before the position (a retry, a rescued job, a job whose enqueueing
        transaction began before the position) are claimed within that time.
        """
        if last is None:
            self.resume_after = None
            return
        if self.resume_after is None:
            self._resume_until = now + self.settings.poll_interval
        self.resume_after = ClaimPosition.of(last)

    def start_round(self) -> list[Outcome]:
        """The outcomes a round writes; those taken while it runs wait for the next."""
        pending, self.pending = self.pending, []
        return pending

    def round_failed(self, pending: list[Outcome]) -> None:
        """A round raised: its commit may have happened; the next one checks first, and
        writes ``pending`` again."""
        self.pending = pending + self.pending
        self.uncertain = True
        self.resume_after = None

    def runs(self, claimed: Sequence[Claimed], now: float) -> list[Run]:
        """The runs of newly claimed jobs, now active."""
        runs = []
        handlers = self._handlers
        with self.lock:
            for row in claimed:
                spec = handlers.get(row.job_type)
                if spec is None:
                    spec = handlers[row.job_type] = self.registry[row.job_type]
                run = Run(self._make_context(row, spec), spec, now)
                self.active[row.id] = run
                runs.append(run)
        return runs

    def again_at_once(self, free: int, claimed: int) -> bool:
        """Whether to start another round without waiting: jobs are likely due and
        slots are free."""
        return self.hungry and free > claimed

    def written(self, pending: list[Outcome], again: list[Outcome]) -> list[Outcome]:
        """A round wrote ``pending`` but ``again`` (kept for the next round); returns the
        written outcomes, whose runs are over."""
        self.pending = again + self.pending
        self.uncertain = False
        written = [o for o in pending if o not in again] if again else pending
        with self.lock:
            for outcome in written:
                self.active.pop(outcome.run.ctx.job_id, None)
        return written

    # ------------------------------------------------------------------- idle

    def idle_timeout(self, now: float, stopping: bool, free: int) -> float:
        """How long to wait for a wake-up before looking again."""
        timeout = IDLE_CAP
        if stopping:
            timeout = min(timeout, self.grace_deadline - now)
        elif free > 0 and not self._making_room_to_be_alone():
            timeout = min(timeout, self._next_poll - now)
        with self.lock:
            deadlines = [r.deadline for r in self.active.values() if r.deadline is not None]
        if deadlines:
            timeout = min(timeout, min(deadlines) - now)
        return max(timeout, 0.0)

    # ---------------------------------------------------- what the loops read

    def known_ids(self) -> list[uuid.UUID]:
        """Every job this worker runs or has an outcome of."""
        with self.lock:
            return list(self.active)

    def held_ids(self) -> list[uuid.UUID]:
        """The jobs whose heartbeat to refresh: running here and not given up on."""
        with self.lock:
            return [job_id for job_id, run in self.active.items() if not run.timed_out]

    def reporting_runs(self) -> list[Run]:
        """The runs whose handlers may have reported progress."""
        with self.lock:
            return [r for r in self.active.values() if not r.finished and not r.timed_out]

    def cut_off(self, now: float) -> list[Run]:
        """At the end of the grace period: give up on the runs still going; each gets a
        failed outcome (due again at once) to write."""
        with self.lock:
            cut = [r for r in self.active.values() if not r.finished and not r.timed_out]
            for run in cut:
                run.timed_out = True
                run.ctx.abandon()
        settings = self.settings
        self.pending.extend(
            shutdown_outcome(run, settings.worker_id, settings.grace_period, now) for run in cut
        )
        return cut
