"""The dispatcher's decisions, without a database: how many jobs to claim and when, where a
claim resumes, which attempts ran out of time, how long to idle, and what a round wrote."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from sqla_jobqueue.handlers import Handler, JobContext, JobContextBase, Registry
from sqla_jobqueue.statements import Claimed
from sqla_jobqueue.worker.dispatch import (
    ALONE_CHECK_INTERVAL,
    IDLE_CAP,
    LIMITED_WAIT_CAP,
    LIMITED_WAIT_FIRST,
    AloneStep,
    Dispatch,
)
from sqla_jobqueue.worker.outcomes import COMPLETED, FAILED, Outcome
from sqla_jobqueue.worker.settings import WorkerSettings

T0 = 1000.0


def context(row: Claimed, spec: Handler) -> JobContextBase[Any]:
    return JobContext(job_id=row.id, job_type=row.job_type, data=row.data, attempt=row.attempts,
                      max_attempts=row.max_attempts, worker_id="w")  # fmt: skip


def dispatch(**settings: object) -> Dispatch:
    registry = Registry({"t": lambda ctx: None})
    registry.register("slow", lambda ctx: None, timeout=timedelta(seconds=5))
    checked = WorkerSettings.check(registry, worker_id="w", **settings)  # type: ignore[arg-type]
    return Dispatch(checked, registry, context)


def claimed(n: int, job_type: str = "t") -> list[Claimed]:
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return [Claimed(uuid.uuid4(), job_type, "{}", 1, 3, 100, at) for _ in range(n)]


def test_a_new_dispatch_claims_a_batch_at_once_and_never_more_than_free_slots() -> None:
    d = dispatch(concurrency=4, batch_size=3)
    assert d.claim_size(T0, stopping=False, free=d.free_slots()) == 3
    assert d.claim_size(T0, stopping=False, free=2) == 2
    assert d.claim_size(T0, stopping=True, free=4) == 0


def test_a_short_claim_waits_for_the_poll_and_a_full_one_resumes_after_its_last_job() -> None:
    d = dispatch(concurrency=4, poll_interval=2)
    d.claimed(4, claimed(2), d.notified, T0)
    assert not d.hungry and d.resume_after is None
    assert d.claim_size(T0 + 1, stopping=False, free=4) == 0
    assert d.claim_size(T0 + 2, stopping=False, free=4) == 4
    full = claimed(4)
    d.claimed(4, full, d.notified, T0 + 2)
    assert d.hungry
    assert d.resume_after is not None and d.resume_after.id == full[-1].id
    # A position is kept for one poll interval at most.
    d.claim_size(T0 + 4.5, stopping=False, free=4)
    assert d.resume_after is None


def test_a_short_limited_claim_looks_again_soon_and_backs_off_while_it_claims_nothing() -> None:
    d = dispatch(concurrency=4, poll_interval=1)
    # Claimed some, not all: limits hold jobs back that finishing jobs free.
    d.claimed(4, claimed(1), d.notified, T0, limited=True)
    assert d.claim_size(T0 + LIMITED_WAIT_FIRST / 2, stopping=False, free=3) == 0
    assert d.claim_size(T0 + LIMITED_WAIT_FIRST, stopping=False, free=3) == 3
    waits = []
    for _ in range(6):
        d.claimed(3, [], d.notified, T0, limited=True, held_back=True)
        waits.append(round(d.idle_timeout(T0, stopping=False, free=3), 6))
    assert waits == [0.02, 0.04, 0.08, LIMITED_WAIT_CAP, LIMITED_WAIT_CAP, LIMITED_WAIT_CAP]
    # Nothing due: the poll interval. One job claimed starts over.
    d.claimed(3, [], d.notified, T0, limited=True, held_back=False)
    assert round(d.idle_timeout(T0, stopping=False, free=3), 6) == 1.0
    d.claimed(3, claimed(1), d.notified, T0, limited=True)
    assert round(d.idle_timeout(T0, stopping=False, free=2), 6) == LIMITED_WAIT_FIRST
    # An unlimited short claim waits the whole poll interval.
    d.claimed(3, claimed(1), d.notified, T0)
    assert round(d.idle_timeout(T0, stopping=False, free=2), 6) == 1.0


def test_a_notification_during_a_claim_makes_it_look_again_at_once() -> None:
    d = dispatch(concurrency=4)
    before = d.notified
    assert d.on_notify("t") and not d.on_notify("other")
    d.claimed(4, [], before, T0)
    assert d.hungry


def test_runs_become_active_and_the_slots_they_hold_are_not_free() -> None:
    d = dispatch(concurrency=4)
    runs = d.runs(claimed(3), T0)
    assert d.free_slots() == 1
    assert d.known_ids() == [run.ctx.job_id for run in runs]
    d.take(Outcome(runs[0], COMPLETED))
    assert d.free_slots() == 2  # its outcome is written in the next round


def test_an_outcome_taken_while_a_round_runs_waits_for_the_next_round() -> None:
    d = dispatch(concurrency=4)
    first, second = d.runs(claimed(2), T0)
    d.take(Outcome(first, COMPLETED))
    writing = d.start_round()
    d.take(Outcome(second, COMPLETED))  # a handler finished during the round
    assert d.written(writing, again=[]) == writing
    assert [o.run for o in d.pending] == [second]
    assert d.known_ids() == [second.ctx.job_id]


def test_a_failed_round_writes_its_outcomes_again_and_is_uncertain() -> None:
    d = dispatch(concurrency=4)
    [run] = d.runs(claimed(1), T0)
    d.take(Outcome(run, COMPLETED))
    writing = d.start_round()
    d.round_failed(writing)
    assert d.uncertain and d.pending == writing
    d.written(d.start_round(), again=[])
    assert not d.uncertain and d.known_ids() == []


def test_an_attempt_past_its_timeout_is_given_up_with_a_failed_outcome() -> None:
    d = dispatch(concurrency=4)
    [slow] = d.runs(claimed(1, "slow"), T0)
    [quick] = d.runs(claimed(1), T0)
    assert d.expire(T0 + 4.9) == []
    assert d.idle_timeout(T0 + 4.9, stopping=False, free=2) <= 0.1 + 1e-9
    assert d.expire(T0 + 5) == [slow]
    assert slow.timed_out and slow.ctx.abandoned and not quick.timed_out
    [failure] = d.pending
    assert failure.kind == FAILED and "timeout of 5s" in (failure.error or "")
    d.take(Outcome(slow, COMPLETED))  # its late return is discarded
    assert len(d.pending) == 1
    assert d.held_ids() == [quick.ctx.job_id]


def test_a_stop_waits_for_running_handlers_until_the_grace_period_ends() -> None:
    d = dispatch(concurrency=4, grace_period=30)
    [run] = d.runs(claimed(1), T0)
    d.begin_stop(T0)
    assert not d.done(T0 + 29, stopping=True)
    assert d.idle_timeout(T0 + 29.5, stopping=True, free=3) == 0.5
    assert d.done(T0 + 30, stopping=True)
    assert d.cut_off(T0 + 30) == [run]
    [cut] = d.pending
    assert cut.after == timedelta(0) and "shut down before the handler finished" in (
        cut.error or ""
    )


def test_an_idle_dispatch_sleeps_until_the_next_poll_and_never_longer_than_the_cap() -> None:
    d = dispatch(concurrency=4, poll_interval=60)
    d.claimed(4, [], d.notified, T0)
    assert d.idle_timeout(T0, stopping=False, free=4) == IDLE_CAP
    d = dispatch(concurrency=4, poll_interval=0.25)
    d.claimed(4, [], d.notified, T0)
    assert d.idle_timeout(T0, stopping=False, free=4) == 0.25


def crashed(n: int) -> list[Claimed]:
    return [row._replace(crashes=1) for row in claimed(n)]


def test_an_idle_dispatch_claims_a_job_that_runs_alone_first_and_a_busy_one_asks() -> None:
    d = dispatch(concurrency=4)
    assert d.alone_step(T0, want=4) is AloneStep.CLAIM
    assert d.alone_step(T0, want=0) is AloneStep.NONE  # no claim, no question
    d.runs(claimed(1), T0)
    assert d.alone_step(T0, want=3) is AloneStep.CHECK
    assert d.alone_step(T0 + ALONE_CHECK_INTERVAL - 0.1, want=3) is AloneStep.NONE
    assert d.alone_step(T0 + ALONE_CHECK_INTERVAL, want=3) is AloneStep.CHECK


def test_a_job_that_crashed_a_worker_runs_alone_and_the_next_claim_follows_at_once() -> None:
    d = dispatch(concurrency=4, poll_interval=0.5)
    alone = crashed(1)
    d.claimed(4, alone, d.notified, T0, AloneStep.CLAIM)
    [run] = d.runs(alone, T0)
    assert d.alone == run.ctx.job_id and d.resume_after is None
    assert d.claim_size(T0, stopping=False, free=d.free_slots()) == 0
    # Waiting for it to end, the dispatcher sleeps rather than spins.
    assert d.idle_timeout(T0, stopping=False, free=d.free_slots()) == IDLE_CAP
    d.take(Outcome(run, COMPLETED))
    d.written(d.start_round(), again=[])
    assert d.claim_size(T0 + 0.1, stopping=False, free=d.free_slots()) == 4
    assert d.alone is None


def test_a_due_job_that_runs_alone_stops_the_claims_until_nothing_runs() -> None:
    d = dispatch(concurrency=4)
    [busy] = d.runs(claimed(1), T0)
    d.claimed(3, [], d.notified, T0, AloneStep.CHECK, alone_due=True)
    assert d.alone_waiting and d.hungry
    assert d.claim_size(T0, stopping=False, free=d.free_slots()) == 0
    assert d.idle_timeout(T0, stopping=False, free=d.free_slots()) == IDLE_CAP
    d.take(Outcome(busy, COMPLETED))
    d.written(d.start_round(), again=[])
    want = d.claim_size(T0 + 0.1, stopping=False, free=d.free_slots())
    assert want == 4 and d.alone_step(T0 + 0.1, want) is AloneStep.CLAIM
    # Another worker took it: this one claims as usual again.
    d.claimed(want, claimed(2), d.notified, T0 + 0.1, AloneStep.CLAIM)
    assert not d.alone_waiting and d.alone is None


def test_a_check_that_finds_nothing_due_changes_nothing() -> None:
    d = dispatch(concurrency=4)
    d.runs(claimed(1), T0)
    d.claimed(3, claimed(3), d.notified, T0, AloneStep.CHECK, alone_due=False)
    assert not d.alone_waiting
    assert d.claim_size(T0, stopping=False, free=3) == 3
