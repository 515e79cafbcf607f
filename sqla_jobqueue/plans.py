"""What every repository method does, written once, without I/O.

Each method of :class:`~sqla_jobqueue.JobQueue` and :class:`~sqla_jobqueue.AsyncJobQueue` is
a *plan* here: a generator that checks its arguments (raising the errors of
:mod:`sqla_jobqueue.errors` before anything is written), yields requests — a
:class:`~sqla_jobqueue.statements.Bound` statement to execute (answered with its
``Result``), :class:`CanCopy`, :class:`Copy`, :class:`Add` — and returns the method's value.
The two queues only run plans: one on a ``Session``, the other awaiting an ``AsyncSession``.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, NamedTuple, TypeVar, cast

from sqlalchemy import Table, inspect
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import instance_dict

from . import validation as check
from .backoff import Backoff
from .errors import (
    InvalidJobError,
    InvalidTransitionError,
    JobNotFoundError,
    JobQueueError,
    LeaseLostError,
    ModelError,
)
from .ids import new_job_id, reserve_job_ids
from .model import (
    DEFAULT_MAX_ATTEMPTS,
    HELD_STATUSES,
    LIVE_STATUSES,
    Job,
    JobMixin,
    JobStatus,
    Priority,
    is_job_table,
)
from .statements import Bound, JobStatements, copy_data, loading

__all__ = [
    "ENQUEUE_PAGE_SIZE",
    "Add",
    "CanCopy",
    "Copy",
    "JobRef",
    "Plan",
    "QueueCore",
    "QueueStats",
    "Request",
    "check_job",
    "check_job_types",
    "default_worker_id",
]

J = TypeVar("J", bound=JobMixin)
T = TypeVar("T")

JobRef = uuid.UUID | JobMixin
"""A job given by its id or as a model instance (whose ``attempts`` then fences the write)."""


class CanCopy(NamedTuple):
    """Ask whether the session's connection can take a binary ``COPY`` (psycopg 3)."""


class Copy(NamedTuple):
    """Stream ``chunks`` through ``COPY`` (asked only after :class:`CanCopy` said yes)."""

    sql: str
    chunks: Iterable[bytes]


class Add(NamedTuple):
    """Add an instance to the session (no I/O)."""

    instance: object


Request = Bound | CanCopy | Copy | Add
Plan = Generator[Request, Any, T]
"""A method's logic: yields requests, receives their answers, returns its value."""

_ENQUEUE_KEYS = frozenset({"job_type", "data", "priority", "max_attempts", "run_at", "unique_key"})
_UNIQUE_RETRIES = 3
ENQUEUE_PAGE_SIZE = 5_000
"""Most jobs one ``INSERT`` of ``enqueue_many`` writes."""


def default_worker_id() -> str:
    """``host:pid:random``, at most 100 characters: unique per process start."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def check_job(
    spec: Mapping[str, Any], *, max_payload_bytes: int = check.DEFAULT_MAX_PAYLOAD_BYTES
) -> dict[str, Any]:
    """Check one job's arguments exactly as :meth:`JobQueue.enqueue` does.

    ``spec`` holds the keywords of ``enqueue`` (``job_type`` required). Returns the INSERT
    parameters, with a new id; raises :class:`~sqla_jobqueue.errors.InvalidJobError`. Use
    it to refuse bad input before opening a connection at all.
    """
    data = spec.get("data")
    run_at = check.check_run_at(spec.get("run_at"))
    unique_key = spec.get("unique_key")
    if unique_key is not None:
        check.check_text(unique_key, "unique_key", 255)
    data_json = (
        "{}"
        if data is None
        else check.check_json(data, "data", max_payload_bytes, require_object=True)
    )
    return {
        "id": new_job_id(),
        "job_type": check.check_job_type(spec.get("job_type")),
        "data_json": data_json,
        "priority": check.check_int32(spec.get("priority", Priority.DISCOVERED), "priority"),
        "max_attempts": check.check_max_attempts(spec.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
        "run_at_abs": run_at if isinstance(run_at, datetime) else None,
        "run_in": run_at if isinstance(run_at, timedelta) else timedelta(0),
        "unique_key": unique_key,
    }


def check_job_types(job_types: Sequence[str] | None) -> list[str] | None:
    """The job types to claim, checked: ``None`` for every type, else a non-empty list."""
    if job_types is None:
        return None
    if isinstance(job_types, str):
        raise InvalidJobError(
            f"job_types must be a list of job types, not the string {job_types!r}; "
            f"write [{job_types!r}]"
        )
    types = [check.check_job_type(t) for t in job_types]
    if not types:
        raise InvalidJobError("job_types is empty; pass None to claim every type")
    return types


def _unique_contended(unique_key: object) -> JobQueueError:
    return JobQueueError(
        f"unique_key {unique_key!r} kept changing hands while enqueueing (a live job held it, "
        f"then finished, {_UNIQUE_RETRIES} times); try again"
    )


@dataclass(frozen=True)
class QueueStats:
    """A snapshot of a job table.

    Attributes
    ----------
    counts:
        ``{job_type: {status: count}}`` for every type and status present.
    oldest_pending_age:
        How long the longest-waiting due pending job has waited since its ``run_at``;
        ``None`` when nothing is due.
    """

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    oldest_pending_age: timedelta | None = None

    def total(self, status: JobStatus | str) -> int:
        """The number of jobs in ``status``, over all types."""
        key = JobStatus(status).value
        return sum(by_status.get(key, 0) for by_status in self.counts.values())


class QueueCore(Generic[J]):
    """What both queues know: the model, its statements, the worker, the payload limit.

    Checks its arguments as the queues' constructors document them.
    """

    def __init__(
        self,
        model: type[J] | None,
        worker_id: str | None,
        max_payload_bytes: int,
    ) -> None:
        chosen = cast("type[J]", Job if model is None else model)
        table = getattr(chosen, "__table__", None)
        if not isinstance(table, Table) or not is_job_table(table):
            raise ModelError(
                f"{chosen!r} is not a mapped JobMixin model; map JobMixin onto your "
                "DeclarativeBase (class Job(JobMixin, Base)) or use sqla_jobqueue.Job"
            )
        if worker_id is not None:
            check.check_text(worker_id, "worker_id", 100)
        if isinstance(max_payload_bytes, bool) or not isinstance(max_payload_bytes, int):
            raise InvalidJobError("max_payload_bytes must be an int")
        if max_payload_bytes < 2:
            raise InvalidJobError(f"max_payload_bytes must be at least 2, got {max_payload_bytes}")
        self.model: type[J] = chosen
        self.table: Table = table
        self.statements = JobStatements.of(table)
        self.worker_id = worker_id
        self.max_payload_bytes = max_payload_bytes

    def _needs_worker(self, action: str) -> str:
        if self.worker_id is None:
            raise InvalidJobError(
                f"{action} needs a worker_id: create the {type(self).__name__} with one"
            )
        return self.worker_id


# ------------------------------------------------------------------- enqueue


def enqueue(q: QueueCore[J], spec: Mapping[str, Any]) -> Plan[J]:
    """:meth:`JobQueue.enqueue`: ``spec`` holds its arguments."""
    row = check_job(spec, max_payload_bytes=q.max_payload_bytes)
    unique_key = row["unique_key"]
    for _ in range(_UNIQUE_RETRIES):
        filled = (yield q.statements.enqueue_one(row)).one_or_none()
        if filled is not None:
            job = _built(q.model, row, filled.created_at, filled.run_at)
            yield Add(job)
            return job
        live = loading(q.model, q.statements.live_with_key(unique_key))
        existing: J | None = (yield live).scalars().one_or_none()
        if existing is not None:
            return existing
        row["id"] = new_job_id()
    raise _unique_contended(unique_key)


def _built(model: type[J], row: dict[str, Any], created_at: datetime, run_at: datetime) -> J:
    """The model instance of a row just inserted, made persistent without a query.

    Every column's value is known (the database only filled in the two timestamps), so
    the instance is built here and attached with ``make_transient_to_detached`` instead of
    being loaded from ``RETURNING *``, which costs more than the INSERT. Like a load, it
    skips the model's ``__init__`` and its attribute events: the values go straight into
    the instance's dict as loaded state, not as changes. Columns an application adds to
    its own model stay unloaded and load on access.
    """
    mapper = inspect(model)
    # What the model's __init__ would do first: configure mappers declared since.
    mapper.registry.configure(cascade=True)
    job: J = mapper.class_manager.new_instance()
    instance_dict(job).update(
        id=row["id"],
        job_type=row["job_type"],
        priority=row["priority"],
        status=JobStatus.PENDING,
        data=json.loads(row["data_json"]),
        progress=0,
        current_stage=None,
        events_count=0,
        worker_id=None,
        claimed_at=None,
        created_at=created_at,
        started_at=None,
        completed_at=None,
        attempts=0,
        max_attempts=row["max_attempts"],
        last_error=None,
        run_at=run_at,
        heartbeat_at=None,
        unique_key=row["unique_key"],
        result=None,
    )
    make_transient_to_detached(job)
    return job


def enqueue_many(q: QueueCore[J], jobs: Iterable[Mapping[str, Any]]) -> Plan[list[uuid.UUID]]:
    """:meth:`JobQueue.enqueue_many`."""
    specs = list(jobs)
    if not specs:
        return []
    statements = q.statements
    # The common kind of spec is checked column by column without building a row; any
    # other spec (or a bad one) sends every spec through the full checks.
    plain = check.plain_specs(specs, q.max_payload_bytes)
    if plain is not None and (yield CanCopy()):
        ids: list[uuid.UUID] = []
        chunks = copy_data(reserve_job_ids(len(specs)), *plain, None, ids)
        yield Copy(statements.copy_sql, chunks)
        return ids
    rows = []
    for index, spec in enumerate(specs):
        checked = check.mapping_keys(spec, _ENQUEUE_KEYS, index)
        try:
            rows.append(check_job(checked, max_payload_bytes=q.max_payload_bytes))
        except InvalidJobError as exc:
            raise InvalidJobError(f"job #{index}: {exc}") from None
    if all(_copyable(row) for row in rows) and (yield CanCopy()):
        ids = [row["id"] for row in rows]
        chunks = copy_data(
            ids,
            [row["job_type"] for row in rows],
            [row["data_json"].encode() for row in rows],
            [(row["priority"], row["max_attempts"]) for row in rows],
        )
        yield Copy(statements.copy_sql, chunks)
        return ids
    inserted: set[uuid.UUID] = set()
    for start in range(0, len(rows), ENQUEUE_PAGE_SIZE):
        inserted |= yield from _insert_page(q, rows[start : start + ENQUEUE_PAGE_SIZE])
    for _ in range(_UNIQUE_RETRIES):
        missing = [row for row in rows if row["id"] not in inserted]
        if not missing:
            return [row["id"] for row in rows]
        found = yield statements.live_ids_with_keys(row["unique_key"] for row in missing)
        live = {key: job_id for key, job_id in found}
        again = [row for row in missing if row["unique_key"] not in live]
        if not again:
            return [row["id"] if row["id"] in inserted else live[row["unique_key"]] for row in rows]
        for row in again:
            row["id"] = new_job_id()
        inserted |= yield from _insert_page(q, again)
    raise _unique_contended(again[0]["unique_key"])


def _copyable(row: dict[str, Any]) -> bool:
    """Whether a checked row can be loaded by COPY: due now, without a unique key."""
    return row["unique_key"] is None and row["run_at_abs"] is None and not row["run_in"]


def _insert_page(q: QueueCore[J], rows: list[dict[str, Any]]) -> Plan[set[uuid.UUID]]:
    """Insert one page of checked rows; return the ids actually inserted."""
    result = yield q.statements.enqueue_page(rows)
    if any(row["unique_key"] is not None for row in rows):
        return set(result.scalars())
    return {row["id"] for row in rows}


# --------------------------------------------------------------------- claim


def claim(q: QueueCore[J], job_types: Sequence[str] | None, batch_size: int) -> Plan[list[J]]:
    """:meth:`JobQueue.claim`."""
    size = check.check_batch_size(batch_size)
    types = check_job_types(job_types)
    if q.worker_id is None:
        q.worker_id = default_worker_id()
    claimed = loading(q.model, q.statements.claim(q.worker_id, size, types))
    jobs: list[J] = list((yield claimed).scalars())
    jobs.sort(key=lambda job: (-job.priority, job.created_at, job.id))
    return jobs


# --------------------------------------------------------------- transitions


def _job_id(job: JobRef) -> uuid.UUID:
    if isinstance(job, JobMixin):
        return job.id
    if isinstance(job, uuid.UUID):
        return job
    if isinstance(job, str):
        try:
            return uuid.UUID(job)
        except ValueError:
            pass
    raise InvalidJobError(f"{job!r} is not a job id (a UUID) or a job")


def _attempt(job: JobRef, attempt: int | None) -> int | None:
    """The attempt a write to ``job`` is fenced by, if known."""
    if attempt is not None:
        return check.check_int32(attempt, "attempt")
    if isinstance(job, JobMixin):
        # Read what the instance holds without refreshing it: an expired attribute must
        # not be reloaded, or the fence would check the job against itself.
        loaded = inspect(job).dict.get("attempts")
        return int(loaded) if loaded is not None else None
    return None


def _changed(
    q: QueueCore[J],
    job_id: uuid.UUID,
    action: str,
    allowed: tuple[JobStatus, ...],
    change: Bound,
    worker_id: str | None = None,
    attempt: int | None = None,
) -> Plan[J]:
    """Run a change of one job; explain a refusal by what holds the job now."""
    updated: J | None = (yield loading(q.model, change)).scalars().one_or_none()
    if updated is not None:
        return updated
    row = (yield q.statements.holder_of(job_id)).one_or_none()
    if row is None:
        raise JobNotFoundError(job_id)
    status, holder, attempts = JobStatus(row.status), row.worker_id, row.attempts
    held_elsewhere = (worker_id is not None and holder != worker_id) or (
        attempt is not None and attempts != attempt
    )
    if held_elsewhere:
        raise LeaseLostError(job_id, action, status.value, holder, attempts, worker_id, attempt)
    raise InvalidTransitionError(job_id, action, status.value, tuple(s.value for s in allowed))


def start(q: QueueCore[J], job: JobRef, attempt: int | None) -> Plan[J]:
    """:meth:`JobQueue.start`."""
    job_id, fence = _job_id(job), _attempt(job, attempt)
    change = q.statements.start(job_id, q.worker_id, fence)
    allowed = (JobStatus.CLAIMED,)
    return (yield from _changed(q, job_id, "start", allowed, change, q.worker_id, fence))


def update_progress(
    q: QueueCore[J],
    job: JobRef,
    progress: int | None,
    stage: str | None,
    events: int,
    attempt: int | None,
) -> Plan[J]:
    """:meth:`JobQueue.update_progress`."""
    percent = None if progress is None else check.check_progress(progress)
    label = None if stage is None else check.check_stage(stage)
    count = check.check_int32(events, "events")
    if count < 0:
        raise InvalidJobError(f"events must be zero or more, got {count}")
    job_id, fence = _job_id(job), _attempt(job, attempt)
    change = q.statements.update_progress(job_id, q.worker_id, fence, percent, label, count)
    action = "update progress of"
    return (yield from _changed(q, job_id, action, HELD_STATUSES, change, q.worker_id, fence))


def complete(q: QueueCore[J], job: JobRef, result: Any, attempt: int | None) -> Plan[J]:
    """:meth:`JobQueue.complete`."""
    # Stored as the checked text, not through the engine's JSON serialiser, so that a
    # result holds the same values (UUID, datetime, Decimal) as a worker's result.
    text = (
        None
        if result is None
        else check.check_json(result, "result", q.max_payload_bytes, require_object=False)
    )
    job_id, fence = _job_id(job), _attempt(job, attempt)
    change = q.statements.complete(job_id, q.worker_id, fence, text)
    return (yield from _changed(q, job_id, "complete", HELD_STATUSES, change, q.worker_id, fence))


def fail(
    q: QueueCore[J],
    job: JobRef,
    error: str,
    retry_in: timedelta | None,
    backoff: Backoff,
    attempt: int | None,
) -> Plan[J]:
    """:meth:`JobQueue.fail`."""
    if not isinstance(error, str):
        raise InvalidJobError(f"error must be a string, got {type(error).__name__}")
    if retry_in is not None:
        retry_in = check.check_finite_delay(retry_in, "retry_in")
    job_id, fence = _job_id(job), _attempt(job, attempt)
    change = q.statements.fail(
        job_id, q.worker_id, fence, error, retry_in=retry_in, backoff=backoff
    )
    return (yield from _changed(q, job_id, "fail", HELD_STATUSES, change, q.worker_id, fence))


def cancel(q: QueueCore[J], job: JobRef) -> Plan[J]:
    """:meth:`JobQueue.cancel`."""
    job_id = _job_id(job)
    change = q.statements.cancel(job_id)
    return (yield from _changed(q, job_id, "cancel", LIVE_STATUSES, change))


def retry(q: QueueCore[J], job: JobRef) -> Plan[J]:
    """:meth:`JobQueue.retry`."""
    job_id = _job_id(job)
    change = q.statements.retry(job_id)
    return (yield from _changed(q, job_id, "retry", (JobStatus.FAILED,), change))


def _ids(jobs: Iterable[JobRef] | None) -> list[uuid.UUID] | None:
    return None if jobs is None else [_job_id(job) for job in jobs]


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0))


def heartbeat(q: QueueCore[J], jobs: Iterable[JobRef] | None) -> Plan[int]:
    """:meth:`JobQueue.heartbeat`."""
    worker_id = q._needs_worker("heartbeat")
    ids = _ids(jobs)
    if ids == []:
        return 0
    return _rowcount((yield q.statements.heartbeat(worker_id, ids)))


def release(q: QueueCore[J], jobs: Iterable[JobRef] | None) -> Plan[int]:
    """:meth:`JobQueue.release`."""
    worker_id = q._needs_worker("release")
    ids = _ids(jobs)
    if ids == []:
        return 0
    return _rowcount((yield q.statements.release(worker_id, ids)))


def recover_stale(q: QueueCore[J], timeout: timedelta) -> Plan[int]:
    """:meth:`JobQueue.recover_stale`."""
    check.check_positive_interval(timeout, "timeout")
    return _rowcount((yield q.statements.recover_stale(timeout)))


def prune(q: QueueCore[J], older_than: timedelta, limit: int | None) -> Plan[int]:
    """:meth:`JobQueue.prune`."""
    check.check_positive_interval(older_than, "older_than")
    if limit is not None:
        limit = check.check_batch_size(limit)
    return _rowcount((yield q.statements.prune(older_than, limit)))


# --------------------------------------------------------------------- reads


def get(q: QueueCore[J], job_id: uuid.UUID) -> Plan[J]:
    """:meth:`JobQueue.get`."""
    checked = _job_id(job_id)
    job: J | None = (yield loading(q.model, q.statements.get(checked))).scalars().one_or_none()
    if job is None:
        raise JobNotFoundError(checked)
    return job


def stats(q: QueueCore[J]) -> Plan[QueueStats]:
    """:meth:`JobQueue.stats`."""
    counts: dict[str, dict[str, int]] = {}
    for job_type, status, count in (yield q.statements.counts()):
        counts.setdefault(job_type, {})[JobStatus(status).value] = int(count)
    oldest = (yield q.statements.oldest_pending_age()).scalar_one()
    return QueueStats(counts=counts, oldest_pending_age=oldest)
