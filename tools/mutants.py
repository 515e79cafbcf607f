"""Named mutants: plant one deliberate bug at a time in a copy of the tree and run the tests.

Each mutant is a file, an exact piece of its text and what replaces it, and the tests that
are meant to catch it. For every mutant this script copies the tree to a temporary
directory (the working tree is never touched), plants the bug there, and runs pytest in
the copy (``PYTHONPATH`` puts the copy first, so the CLI subprocesses and worker processes
the tests start import the mutated package too). It prints one line per mutant::

    caught    claim-skip-locked        tests/integration/test_claim_never_waits.py::...
    SURVIVED  claim-order-age          -
    STALE     fence-complete-attempt   sqla_jobqueue/statements/base.py: original text not found

A mutant whose original text is missing (or no longer unique) is reported as STALE, never
skipped: the code moved, and the mutant must be rewritten against its new place.

Usage (from the repository root, with SQLA_JOBQUEUE_TEST_DATABASE_URL set)::

    python tools/mutants.py --list              # the catalogue
    python tools/mutants.py --own               # each mutant against its own tests (minutes)
    python tools/mutants.py                     # the fast suite, then the mutant's slow tests
    python tools/mutants.py claim-skip-locked prune-pending --own

Exit status: 0 when every mutant was caught, 1 when any survived or is stale, 2 when the
unmutated tree fails its own tests (the baseline) or the arguments are wrong.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MUTANTS", "Mutant", "main"]

ROOT = Path(__file__).resolve().parent.parent
_IGNORED = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", ".mypy_cache", ".ruff_cache", ".pytest_cache",
    "__pycache__", "site", ".venv",
)  # fmt: skip
_FAILED_LINE = re.compile(r"^(FAILED|ERROR) (\S+)", re.MULTILINE)


@dataclass(frozen=True)
class Mutant:
    """One deliberate bug.

    Attributes
    ----------
    name:
        A short name, unique in :data:`MUTANTS`.
    path:
        The file, relative to the repository root.
    original:
        Text that must occur exactly once in the file.
    replacement:
        What the bug puts in its place.
    tests:
        pytest node ids meant to catch it (run alone with ``--own``).
    slow:
        Tests marked ``slow`` that are meant to catch it; the full run adds them after the
        fast suite.
    why:
        What promise the bug breaks.
    """

    name: str
    path: str
    original: str
    replacement: str
    tests: tuple[str, ...]
    why: str
    slow: tuple[str, ...] = ()


_CLAIM = "sqla_jobqueue/statements/claim.py"
_FENCE = "sqla_jobqueue/statements/fence.py"
_BATCH = "sqla_jobqueue/statements/base.py"
_CHANGE = "sqla_jobqueue/statements/transitions.py"
_HELD = "sqla_jobqueue/statements/held.py"
_MAINTAIN = "sqla_jobqueue/statements/maintenance.py"
_DISPATCH = "sqla_jobqueue/worker/dispatch.py"
_RECORD = "sqla_jobqueue/worker/recording.py"
_RUN = "sqla_jobqueue/worker/running.py"
_SETTINGS = "sqla_jobqueue/worker/settings.py"
_AIO = "sqla_jobqueue/worker/aio.py"
_B = "sqla_jobqueue/backoff.py"
_SQL = "sqla_jobqueue/sql/job_queue/v1/install.sql"
_MIGRATION = "sqla_jobqueue/alembic_templates/versions/0001_jobs_table_and_claim_function.py"
_T_QUEUE = "tests/integration/test_queue.py"
_T_WAITS = "tests/integration/test_claim_never_waits.py"
_T_FENCES = "tests/integration/test_worker_outcome_fences.py"
_T_WORKER = "tests/integration/test_worker_promises.py"
_T_RECORD = "tests/integration/test_state_changes.py"
_T_SETTINGS = "tests/integration/test_worker_settings.py"
_T_ASYNC = "tests/integration/test_async_worker.py"
_T_DISPATCH = "tests/unit/test_dispatch.py"
_T_HANDLERS = "tests/integration/test_handlers.py"
_T_PROCESSES = "tests/reliability/test_processes.py"
_T_OPTIONS = "tests/acceptance/test_worker_options.py"
_CLI = "sqla_jobqueue/cli/worker.py"

MUTANTS: tuple[Mutant, ...] = (
    # ------------------------------------------------------------------ claiming
    Mutant(
        "claim-priority-ascending",
        _CLAIM,
        ".order_by(c.priority.desc(), c.created_at, c.id)",
        ".order_by(c.priority, c.created_at, c.id)",
        (f"{_T_QUEUE}::test_claim_takes_highest_priority_then_oldest",),
        "highest priority first",
    ),
    Mutant(
        "claim-newest-first",
        _CLAIM,
        ".order_by(c.priority.desc(), c.created_at, c.id)",
        ".order_by(c.priority.desc(), c.created_at.desc(), c.id)",
        (f"{_T_QUEUE}::test_claims_of_one_take_the_oldest_by_created_at_first",),
        "oldest first within a priority",
    ),
    Mutant(
        "claim-by-id-not-age",
        _CLAIM,
        ".order_by(c.priority.desc(), c.created_at, c.id)",
        ".order_by(c.priority.desc(), c.id)",
        (f"{_T_QUEUE}::test_claims_of_one_take_the_oldest_by_created_at_first",),
        "oldest by created_at first, whatever the ids",
    ),
    Mutant(
        "claim-not-due",
        _CLAIM,
        "            c.run_at <= func.statement_timestamp(),\n",
        "",
        (f"{_T_QUEUE}::test_claim_waits_for_run_at",),
        "a job is not claimed before its run_at",
    ),
    Mutant(
        "claim-no-attempts-left",
        _CLAIM,
        "            c.attempts < c.max_attempts,\n",
        "            c.attempts <= c.max_attempts,\n",
        (f"{_T_QUEUE}::test_claim_skips_jobs_without_attempts_left",),
        "a job without attempts left is never claimed",
    ),
    Mutant(
        "claim-skip-locked",
        _CLAIM,
        ".with_for_update(skip_locked=True, key_share=True)",
        ".with_for_update(skip_locked=False, key_share=True)",
        (
            f"{_T_WAITS}::test_jobqueue_claim_skips_a_locked_job_instead_of_waiting",
            f"{_T_WAITS}::test_a_worker_claims_around_a_locked_job_then_runs_it_once_unlocked",
        ),
        "JobQueue.claim and the worker's claim never wait on another's lock",
    ),
    Mutant(
        "claim-for-update",
        _CLAIM,
        ".with_for_update(skip_locked=True, key_share=True)",
        ".with_for_update(skip_locked=True, key_share=False)",
        (f"{_T_WAITS}::test_a_claimed_job_does_not_block_inserts_that_reference_it",),
        "FOR NO KEY UPDATE: a claim does not block inserts referencing the job",
    ),
    Mutant(
        "sql-claim-skip-locked",
        _SQL,
        "FOR NO KEY UPDATE SKIP LOCKED",
        "FOR NO KEY UPDATE",
        (f"{_T_WAITS}::test_claim_job_batch_skips_a_locked_job_instead_of_waiting",),
        "claim_job_batch never waits on another's lock",
    ),
    Mutant(
        "sql-claim-for-update",
        _SQL,
        "FOR NO KEY UPDATE SKIP LOCKED",
        "FOR UPDATE SKIP LOCKED",
        (f"{_T_WAITS}::test_a_claimed_job_does_not_block_inserts_that_reference_it",),
        "claim_job_batch does not block inserts referencing the job",
    ),
    Mutant(
        "sql-claim-order",
        _SQL,
        "ORDER BY candidate.priority DESC, candidate.created_at, candidate.id",
        "ORDER BY candidate.created_at, candidate.id",
        (f"{_T_QUEUE}::test_sql_function_claims_exactly_like_the_queue",),
        "claim_job_batch claims exactly like JobQueue.claim",
    ),
    Mutant(
        "notify-trigger-on-update",
        _SQL,
        "AFTER INSERT ON {table}",
        "AFTER UPDATE ON {table}",
        (f"{_T_QUEUE}::test_enqueue_notifies_each_type_on_commit",),
        "an enqueue notifies the job's type on commit",
    ),
    Mutant(
        "batch-not-capped-at-free-slots",
        _DISPATCH,
        "return min(self.settings.batch_size, free)",
        "return self.settings.batch_size",
        (f"{_T_SETTINGS}::test_a_claim_takes_no_more_jobs_than_free_slots",),
        "a worker never holds a job it is not running",
    ),
    # ------------------------------------------------------------------ the command line
    Mutant(
        "cli-batch-size-ignored",
        _CLI,
        '"batch_size": batch_size,',
        '"batch_size": None,',
        (f"{_T_OPTIONS}::test_batch_size_grace_period_and_log_level_act_as_documented",),
        "sqla-jobqueue worker --batch-size",
    ),
    Mutant(
        "cli-grace-period-ignored",
        _CLI,
        '"grace_period": grace_period,',
        '"grace_period": None,',
        (f"{_T_OPTIONS}::test_batch_size_grace_period_and_log_level_act_as_documented",),
        "sqla-jobqueue worker --grace-period",
    ),
    Mutant(
        "cli-poll-interval-ignored",
        _CLI,
        '"poll_interval": poll_interval,',
        '"poll_interval": None,',
        (
            f"{_T_OPTIONS}::test_bad_worker_durations_get_one_line_and_exit_2",
            f"{_T_OPTIONS}::test_the_start_line_shows_the_polling_and_heartbeat_intervals_given",
        ),
        "sqla-jobqueue worker --poll-interval",
    ),
    Mutant(
        "cli-log-level-ignored",
        _CLI,
        "level=getattr(logging, log_level),",
        "level=logging.INFO,",
        (f"{_T_OPTIONS}::test_batch_size_grace_period_and_log_level_act_as_documented",),
        "sqla-jobqueue worker --log-level",
    ),
    # ------------------------------------------------------------------ the schema
    Mutant(
        "migration-no-status-check",
        _MIGRATION,
        "        sa.CheckConstraint(\n"
        "            \"status IN ('pending', 'claimed', 'running', 'completed', 'failed', "
        "'cancelled')\",\n"
        '            name="jobs_status_check",\n'
        "        ),\n",
        "",
        (f"{_T_RECORD}::test_the_migrated_table_refuses_an_unknown_status",),
        "the status CHECK is in the database the migration builds",
    ),
    Mutant(
        "unique-key-index-any-status",
        "sqla_jobqueue/model.py",
        'UNIQUE_KEY_PREDICATE = f"unique_key IS NOT NULL AND status IN '
        '({status_list_sql(LIVE_STATUSES)})"',
        'UNIQUE_KEY_PREDICATE = "unique_key IS NOT NULL"',
        (f"{_T_QUEUE}::test_unique_key_returns_the_live_job",),
        "at most one live job per unique_key; a finished one does not count",
    ),
    # ------------------------------------------------------------------ transitions
    Mutant(
        "transition-any-status",
        _FENCE,
        "        conditions.append(\n"
        "            c.status == status_literal(statuses[0])\n"
        "            if len(statuses) == 1\n"
        "            else c.status.in_(status_literals(statuses))\n"
        "        )\n",
        "",
        (
            f"{_T_QUEUE}::test_transitions_from_the_wrong_state_are_refused",
            f"{_T_RECORD}::test_a_refused_transition_writes_nothing",
        ),
        "a transition from the wrong state is refused and writes nothing",
    ),
    Mutant(
        "fence-queue-worker",
        _CHANGE,
        "worker_id=self._worker if worker else None,",
        "worker_id=None,",
        (
            f"{_T_QUEUE}::test_a_stale_worker_cannot_complete_a_rescued_job",
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[sync-fail-other_worker]",
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[async-fail-other_worker]",
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[sync-ctx.session-other_worker]",
        ),
        "fail/complete/progress through JobQueue require the holder",
    ),
    Mutant(
        "fence-queue-attempt",
        _CHANGE,
        'attempt=param("p_attempt", Integer()) if attempt else None,',
        "attempt=None,",
        (
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[sync-fail-same_worker_id]",
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[async-fail-same_worker_id]",
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[sync-ctx.session-same_worker_id]",
        ),
        "fail/complete/progress through JobQueue require the attempt",
    ),
    Mutant(
        "fail-spent-one-late",
        _CHANGE,
        "spent = c.attempts >= c.max_attempts\n",
        "spent = c.attempts > c.max_attempts\n",
        (f"{_T_QUEUE}::test_fail_retries_with_backoff_then_fails_and_retry_revives",),
        "a job fails for good after max_attempts",
    ),
    Mutant(
        "rescue-charges-unstarted",
        _MAINTAIN,
        "(never_started, func.greatest(c.attempts - 1, 0)), else_=c.attempts",
        "(never_started, c.attempts), else_=c.attempts",
        (f"{_T_QUEUE}::test_recover_stale_returns_jobs_and_refunds_unstarted_ones",),
        "a rescued job that never started gets its attempt back",
    ),
    Mutant(
        "rescue-never-fails-poison",
        _MAINTAIN,
        "spent = and_(charged, c.attempts >= c.max_attempts)",
        "spent = and_(charged, c.attempts > c.max_attempts)",
        (f"{_T_QUEUE}::test_recover_stale_returns_jobs_and_refunds_unstarted_ones",),
        "a job that keeps killing workers ends failed after max_attempts",
        slow=(
            f"{_T_PROCESSES}::test_a_poison_job_fails_after_max_attempts_without_charging_"
            "innocent_jobs",
        ),
    ),
    Mutant(
        "rescue-charges-the-crowd",
        _MAINTAIN,
        "max_attempts=case((crowded, c.max_attempts + 1), else_=c.max_attempts),",
        "max_attempts=c.max_attempts,",
        (f"{_T_QUEUE}::test_recover_stale_gives_back_the_attempts_of_jobs_that_ran_beside_others",),
        "jobs running beside others when their worker died are not charged for the crash",
        slow=(
            f"{_T_PROCESSES}::test_a_poison_job_fails_after_max_attempts_without_charging_"
            "innocent_jobs",
            f"{_T_PROCESSES}::test_a_poison_job_enqueued_with_two_sleepers_fails_alone",
        ),
    ),
    Mutant(
        "batch-claims-crashed-jobs",
        _CLAIM,
        "c.crashes > zero if crashed else c.crashes == zero",
        "c.crashes > zero if crashed else c.crashes >= zero",
        (f"{_T_QUEUE}::test_recover_stale_gives_back_the_attempts_of_jobs_that_ran_beside_others",),
        "a claim of several jobs passes over jobs that crashed a worker",
    ),
    Mutant(
        "crashed-job-not-alone",
        _DISPATCH,
        "            if self.alone in self.active:\n                return True",
        "            if self.alone in self.active:\n                return False",
        (
            f"{_T_DISPATCH}::test_a_job_that_crashed_a_worker_runs_alone_and_the_next_claim_follows_at_once",
        ),
        "a job that crashed a worker runs alone: nothing else is claimed until it ends",
    ),
    Mutant(
        "stale-by-claim-time",
        _FENCE,
        "func.coalesce(c.heartbeat_at, c.claimed_at)",
        "c.claimed_at",
        ("tests/integration/test_worker.py::test_a_long_job_of_a_live_worker_is_never_rescued",),
        "a live worker's long job is never rescued",
    ),
    Mutant(
        "prune-pending",
        _MAINTAIN,
        "                c.status.in_(status_literals(FINISHED_STATUSES)),\n"
        "                c.completed_at < self._now",
        "                func.coalesce(c.completed_at, c.created_at) < self._now",
        (f"{_T_RECORD}::test_prune_never_deletes_live_jobs_however_old",),
        "prune deletes finished jobs only",
    ),
    Mutant(
        "prune-young",
        _MAINTAIN,
        'c.completed_at < self._now - param("p_older_than", Interval())',
        'c.completed_at < self._now + param("p_older_than", Interval())',
        (f"{_T_RECORD}::test_prune_never_deletes_live_jobs_however_old",),
        "prune keeps finished jobs younger than the retention",
    ),
    Mutant(
        "completed-at-from-python-clock",
        _CHANGE,
        '"progress": 100,\n                "completed_at": self._now,',
        '"progress": 100,\n                "completed_at": '
        '__import__("datetime").datetime.now().astimezone(),',
        (f"{_T_RECORD}::test_timestamps_come_from_the_database_clock_not_the_processs",),
        "timestamps come from the database clock",
    ),
    # ------------------------------------------------------------------ backoff
    Mutant(
        "sql-backoff-uncapped",
        _B,
        'seconds = func.least(param("cap"), grown) * (',
        "seconds = grown * (",
        (f"{_T_RECORD}::test_the_databases_backoff_stays_within_the_python_bounds",),
        "a retry waits at most the backoff's cap",
    ),
    Mutant(
        "sql-backoff-jitter-lengthens",
        _B,
        '1 - param("jitter") * func.random()',
        '1 + param("jitter") * func.random()',
        (f"{_T_RECORD}::test_the_databases_backoff_stays_within_the_python_bounds",),
        "jitter only shortens a delay",
    ),
    Mutant(
        "python-backoff-jitter-lengthens",
        _B,
        "return timedelta(seconds=longest * (1 - self.jitter)), timedelta(seconds=longest)",
        "return timedelta(seconds=longest), timedelta(seconds=longest * (1 + self.jitter))",
        ("tests/unit/test_backoff.py::test_jitter_only_shortens_within_bounds",),
        "Backoff.bounds: jitter only shortens",
    ),
    # ------------------------------------------------------------------ worker writes
    Mutant(
        "fence-complete-worker",
        _FENCE,
        '            conditions.append(func.coalesce(c.worker_id, "") == worker_id)\n',
        "            pass\n",
        (
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[sync-completed-other_worker]",
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[async-completed-other_worker]",
        ),
        "the worker's batched completion (and progress) require the holder",
    ),
    Mutant(
        "fence-complete-attempt",
        _BATCH,
        "            attempt=per_job.c.attempt,\n",
        "            attempt=None,\n",
        (
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[sync-completed-same_worker_id]",
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[async-completed-same_worker_id]",
        ),
        "the worker's batched completion (and progress) require the attempt",
    ),
    Mutant(
        "fence-complete-holder",
        _BATCH,
        "            attempt=per_job.c.attempt,\n            worker_id=self._worker,\n",
        "            attempt=None,\n            worker_id=None,\n",
        (
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[sync-completed-same_worker_id]",
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[async-completed-same_worker_id]",
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[sync-completed-other_worker]",
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[async-completed-other_worker]",
        ),
        "the worker's completion fence, both halves (docs/reliability.md's fence row)",
    ),
    Mutant(
        "fence-complete-status",
        _FENCE,
        "        conditions.append(c.status.not_in(status_literals(others)))\n",
        "",
        (
            "tests/integration/test_worker.py::test_a_job_cancelled_while_it_runs_counts_as_"
            "cancelled_and_the_stop_line_is_readable",
        ),
        "a job cancelled while it ran is not completed",
    ),
    Mutant(
        "fence-outcome-worker",
        _CHANGE,
        '            attempt=param("p_attempt", Integer()),\n            worker_id=self._worker,\n',
        '            attempt=param("p_attempt", Integer()),\n            worker_id=None,\n',
        (
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[sync-snooze-other_worker]",
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[async-snooze-other_worker]",
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[sync-cancel-other_worker]",
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[async-cancel-other_worker]",
        ),
        "a handler's Snooze and Cancel require the holder",
    ),
    Mutant(
        "fence-outcome-attempt",
        _CHANGE,
        '            attempt=param("p_attempt", Integer()),\n',
        "            attempt=None,\n",
        (
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[sync-snooze-same_worker_id]",
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[async-snooze-same_worker_id]",
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[sync-cancel-same_worker_id]",
            f"{_T_FENCES}::test_a_stale_outcome_never_lands[async-cancel-same_worker_id]",
        ),
        "a handler's Snooze and Cancel require the attempt",
    ),
    Mutant(
        "snooze-counts-a-failure",
        _CHANGE,
        "max_attempts=func.least(c.max_attempts + 1, _MAX_INT32),",
        "max_attempts=c.max_attempts,",
        (f"{_T_HANDLERS}::test_snooze_reschedules_without_counting_a_failure",),
        "Snooze does not use up an attempt",
    ),
    Mutant(
        "heartbeat-waits-on-locks",
        _HELD,
        ".with_for_update(skip_locked=True, key_share=True)",
        ".with_for_update(skip_locked=False, key_share=True)",
        (f"{_T_WAITS}::test_heartbeats_skip_a_locked_job_and_refresh_the_others",),
        "a heartbeat never waits on a row another transaction has locked",
    ),
    Mutant(
        "give-back-charges",
        _HELD,
        '            "attempts": func.greatest(c.attempts - 1, 0),\n',
        "",
        (
            "tests/integration/test_worker.py::test_jobs_claimed_by_a_round_whose_answer_was_"
            "lost_are_given_back_uncharged",
        ),
        "jobs claimed by a round whose answer was lost are given back uncharged",
    ),
    # ------------------------------------------------------------------ worker behaviour
    Mutant(
        "session-kept-when-handler-raised",
        _RUN,
        "            value = cast(HandlerFunction, run.spec.function)(ctx)\n"
        "        except BaseException as exc:\n",
        "            value = cast(HandlerFunction, run.spec.function)(ctx)\n"
        "        except BaseException as exc:\n"
        "            if ctx.uses_session:\n"
        "                ctx.session.commit()\n",
        (f"{_T_WORKER}::test_ctx_session_work_is_rolled_back_when_the_handler_raises",),
        "a handler that raised leaves none of its ctx.session writes",
    ),
    Mutant(
        "async-session-kept-when-handler-raised",
        _RUN,
        "        except BaseException as exc:\n"
        "            return outcome_of_error(run, exc)\n"
        "        result = checked_result(run, value, recorder.settings.max_payload_bytes)\n"
        "        if isinstance(result, Outcome):\n"
        "            return result\n"
        "        if not ctx.uses_session:\n"
        "            return completion(run, result)\n"
        "        return await ",
        "        except BaseException as exc:\n"
        "            if ctx.uses_session:\n"
        "                await ctx.session.commit()\n"
        "            return outcome_of_error(run, exc)\n"
        "        result = checked_result(run, value, recorder.settings.max_payload_bytes)\n"
        "        if isinstance(result, Outcome):\n"
        "            return result\n"
        "        if not ctx.uses_session:\n"
        "            return completion(run, result)\n"
        "        return await ",
        (f"{_T_ASYNC}::test_the_handlers_async_session_commits_with_the_completion_or_not_at_all",),
        "an async handler that raised leaves none of its AsyncSession writes",
    ),
    Mutant(
        "async-timeout-not-cancelled",
        _AIO,
        "                if run.task is not None:\n"
        "                    run.task.cancel()\n"
        "            if dispatch.done(",
        "                if run.task is not None:\n"
        "                    pass\n"
        "            if dispatch.done(",
        (
            f"{_T_ASYNC}::test_an_async_handler_over_its_timeout_is_cancelled_and_the_attempt_failed",
        ),
        "an async handler past its timeout is cancelled",
    ),
    Mutant(
        "round-writes-late-outcomes",
        _DISPATCH,
        "pending, self.pending = self.pending, []",
        "pending = self.pending",
        (f"{_T_DISPATCH}::test_an_outcome_taken_while_a_round_runs_waits_for_the_next_round",),
        "an outcome handed in while a round runs is written by the next round",
    ),
    Mutant(
        "lost-answer-not-confirmed",
        _RECORD,
        "elif status == JobStatus.COMPLETED and uncertain and written.kind == COMPLETED:",
        "elif False:",
        (f"{_T_WORKER}::test_a_completion_whose_answer_was_lost_is_confirmed_not_lost",),
        "a completion written by a round whose answer was lost counts as completed",
    ),
    Mutant(
        "outcome-never-given-up",
        _RECORD,
        "MAX_RECORD_TRIES = 5\n",
        "MAX_RECORD_TRIES = 1_000_000\n",
        (f"{_T_WORKER}::test_an_outcome_that_cannot_be_written_is_given_up_after_five_rounds",),
        "an outcome that cannot be written is given up after five rounds",
    ),
    Mutant(
        "worker-never-prunes",
        _SETTINGS,
        "        if self.retention is not None:\n",
        "        if False:\n",
        (f"{_T_WORKER}::test_a_worker_prunes_old_finished_jobs_and_keeps_live_ones",),
        "a worker with maintenance on prunes finished jobs past the retention",
    ),
    Mutant(
        "no-wake-after-reconnect",
        "sqla_jobqueue/listener.py",
        "                    self.on_notify(None)\n                    while not self._stop",
        "                    while not self._stop",
        (f"{_T_WORKER}::test_a_job_enqueued_while_the_listener_was_away_runs_after_it_reconnects",),
        "after the listener reconnects the worker looks for jobs at once",
    ),
    Mutant(
        "async-no-wake-after-reconnect",
        "sqla_jobqueue/listener.py",
        "                    self.on_notify(None)\n                    async for",
        "                    async for",
        (f"{_T_WORKER}::test_a_job_enqueued_while_the_listener_was_away_runs_after_it_reconnects",),
        "after the asyncio listener reconnects the worker looks for jobs at once",
    ),
    Mutant(
        "default-grace-period",
        _SETTINGS,
        "DEFAULT_GRACE_PERIOD = timedelta(seconds=30)",
        "DEFAULT_GRACE_PERIOD = timedelta(seconds=3)",
        (f"{_T_SETTINGS}::test_default_worker_settings_are_the_documented_ones",),
        "the documented default settings",
    ),
)


@dataclass
class Result:
    """What one mutant's run found."""

    mutant: Mutant
    verdict: str  # caught, SURVIVED, STALE, TIMEOUT
    by: str
    seconds: float


def _copy_tree(ref: str | None, target: Path) -> None:
    if ref is None:
        shutil.copytree(ROOT, target, ignore=_IGNORED, symlinks=True)
        return
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)


def _pytest(
    tree: Path, args: Sequence[str], timeout: float, *, every: bool = False
) -> tuple[int | None, str]:
    """Run pytest in ``tree``; with ``every``, run on after the first failure."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    stop = [] if every else ["-x"]
    command = [sys.executable, "-m", "pytest", *stop, "-q", "-rfE", "-p", "no:cacheprovider",
               *args]  # fmt: skip
    try:
        done = subprocess.run(
            command, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return None, out
    return done.returncode, done.stdout + done.stderr


def _failures(output: str, every: bool) -> str:
    """The first failing test, or with ``every`` all of them."""
    found = [match.group(2) for match in _FAILED_LINE.finditer(output)]
    if found:
        return " ".join(found if every else found[:1])
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1][:120] if lines else "(no output)"


def _check(tree: Path, mutant: Mutant) -> str | None:
    """Why the mutant cannot be planted, or ``None``."""
    path = tree / mutant.path
    if not path.exists():
        return f"{mutant.path} does not exist"
    count = path.read_text().count(mutant.original)
    if count != 1:
        return f"{mutant.path}: original text found {count} times, expected once"
    return None


def _run_one(tree: Path, mutant: Mutant, own: bool, timeout: float) -> Result:
    started = time.monotonic()
    problem = _check(tree, mutant)
    if problem is not None:
        return Result(mutant, "STALE", problem, 0.0)
    path = tree / mutant.path
    original_text = path.read_text()
    path.write_text(original_text.replace(mutant.original, mutant.replacement))
    try:
        runs: list[list[str]] = (
            [[*mutant.tests, *mutant.slow]] if own else [["-m", "not slow", "tests"]]
        )
        if not own and mutant.slow:
            runs.append(list(mutant.slow))
        for args in runs:
            code, output = _pytest(tree, args, timeout, every=own)
            if code is None:
                return Result(mutant, "TIMEOUT", " ".join(args)[:80], time.monotonic() - started)
            if code != 0:
                return Result(mutant, "caught", _failures(output, own), time.monotonic() - started)
        return Result(mutant, "SURVIVED", "-", time.monotonic() - started)
    finally:
        path.write_text(original_text)


def _baseline(tree: Path, mutants: Iterable[Mutant], own: bool, timeout: float) -> str | None:
    """The failure of the unmutated tree on the tests the run relies on, or ``None``."""
    if own:
        args = sorted({test for m in mutants for test in (*m.tests, *m.slow)})
    else:
        args = ["-m", "not slow", "tests"]
    code, output = _pytest(tree, args, timeout)
    if code == 0:
        return None
    return output[-3000:] if code is not None else "timed out"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the mutants named on the command line (all by default); print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument(
        "--own", action="store_true", help="only each mutant's own tests, listing every one failed"
    )
    parser.add_argument("--list", action="store_true", help="print the catalogue and exit")
    parser.add_argument("--ref", help="a git ref to copy instead of the working tree")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per pytest run")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    parser.add_argument(
        "--markdown", action="store_true", help="end with a markdown table (progress on stderr)"
    )
    args = parser.parse_args(argv)
    by_name = {m.name: m for m in MUTANTS}
    unknown = [name for name in args.names if name not in by_name]
    if unknown:
        print(f"unknown mutants: {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    chosen = [by_name[name] for name in args.names] or list(MUTANTS)
    if args.list:
        for m in chosen:
            print(f"{m.name:34} {m.path}: {m.why}")
        return 0
    if not os.environ.get("SQLA_JOBQUEUE_TEST_DATABASE_URL"):
        print("set SQLA_JOBQUEUE_TEST_DATABASE_URL to the PostgreSQL to test against "
              "(e.g. postgresql://postgres@127.0.0.1:5432/test)", file=sys.stderr)  # fmt: skip
        return 2
    with tempfile.TemporaryDirectory(prefix="sqla_jobqueue_mutants_") as tmp:
        tree = Path(tmp) / "tree"
        _copy_tree(args.ref, tree)
        if not args.no_baseline:
            failure = _baseline(tree, chosen, args.own, args.timeout)
            if failure is not None:
                print(f"the unmutated tree fails its tests; fix that first:\n{failure}",
                      file=sys.stderr)  # fmt: skip
                return 2
        results = []
        for mutant in chosen:
            result = _run_one(tree, mutant, args.own, args.timeout)
            results.append(result)
            line = f"{result.verdict:9} {mutant.name:34} {result.by}  ({result.seconds:.0f}s)"
            print(line, file=sys.stderr if args.markdown else sys.stdout, flush=True)
    caught = sum(r.verdict in ("caught", "TIMEOUT") for r in results)
    if args.markdown:
        print("| mutant | file | breaks | result | caught by |\n|---|---|---|---|---|")
        for r in results:
            print(f"| `{r.mutant.name}` | `{r.mutant.path}` | {r.mutant.why} | {r.verdict} | "
                  f"`{r.by}` |")  # fmt: skip
    print(f"\n{caught} of {len(results)} mutants caught"
          f" ({'own tests only' if args.own else 'fast suite + own slow tests'})")  # fmt: skip
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
