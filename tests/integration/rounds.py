"""A worker's round and progress write, run as the worker runs them, for tests that drive
the statements of :class:`~sqla_jobqueue.statements.JobStatements` directly."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Connection

from sqla_jobqueue.statements import Claimed, ClaimPosition, JobStatements, driver_rows
from tests.helpers import job_table

WORKER = "w"


def complete_and_claim(
    connection: Connection,
    ids: Sequence[uuid.UUID],
    attempts: Sequence[int],
    results: Sequence[str | None],
    stages: Sequence[str | None],
    events: Sequence[int],
    limit: int,
    job_types: Sequence[str] | None,
    after: ClaimPosition | None = None,
) -> tuple[list[uuid.UUID], list[Claimed]]:
    """One round of worker ``w``: the ids completed and the jobs claimed, in claim order."""
    bound = JobStatements.of(job_table()).complete_and_claim(
        WORKER, ids, attempts, results, stages, events, limit, job_types, after
    )
    rows = driver_rows(connection, bound)
    done = [row[1] for row in rows if row[0]]
    return done, [Claimed._make(row[1:]) for row in rows if not row[0]]


def write_progress(
    connection: Connection,
    ids: Sequence[uuid.UUID],
    attempts: Sequence[int],
    percents: Sequence[int | None],
    stages: Sequence[str | None],
    events: Sequence[int],
) -> set[uuid.UUID]:
    """Worker ``w``'s progress write; the ids it still held."""
    bound = JobStatements.of(job_table()).write_progress(
        WORKER, ids, attempts, percents, stages, events
    )
    return {row[0] for row in driver_rows(connection, bound)}
