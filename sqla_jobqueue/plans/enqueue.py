"""Enqueueing: checking a job's arguments, one job, and many (by ``COPY`` when it can).

A job with a ``unique_key`` whose key a live job holds is not inserted: :func:`enqueue`
returns the live job and :func:`enqueue_many` its id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import inspect
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import instance_dict

from .. import validation as check
from ..errors import InvalidJobError, JobQueueError
from ..ids import new_job_id, reserve_job_ids
from ..model import (
    DEFAULT_MAX_ATTEMPTS,
    MAX_CONCURRENCY_KEY_LENGTH,
    MAX_DEPENDENCIES,
    JobMixin,
    JobStatus,
    Priority,
)
from ..statements import copy_data, loading
from .core import Add, CanCopy, Copy, Plan, QueueCore, job_id_of

__all__ = ["ENQUEUE_PAGE_SIZE", "check_job", "enqueue", "enqueue_many"]

J = TypeVar("J", bound=JobMixin)

_ENQUEUE_KEYS = frozenset(
    {"job_type", "data", "priority", "max_attempts", "run_at", "unique_key", "concurrency_key"}
)
_UNIQUE_RETRIES = 3
ENQUEUE_PAGE_SIZE = 5_000
"""Most jobs one ``INSERT`` of ``enqueue_many`` writes."""


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
    concurrency_key = spec.get("concurrency_key")
    if concurrency_key is not None:
        check.check_text(concurrency_key, "concurrency_key", MAX_CONCURRENCY_KEY_LENGTH)
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
        "concurrency_key": concurrency_key,
        "depends_on": _dependency_ids(spec.get("depends_on")),
    }


def _unique_contended(unique_key: object) -> JobQueueError:
    return JobQueueError(
        f"unique_key {unique_key!r} kept changing hands while enqueueing (a live job held it, "
        f"then finished, {_UNIQUE_RETRIES} times); try again"
    )


def enqueue(q: QueueCore[J], spec: Mapping[str, Any]) -> Plan[J]:
    """:meth:`JobQueue.enqueue`: ``spec`` holds its arguments."""
    row = check_job(spec, max_payload_bytes=q.max_payload_bytes)
    dependencies: list[uuid.UUID] | None = row["depends_on"]
    unique_key = row["unique_key"]
    if dependencies is not None:
        if unique_key is not None:
            raise InvalidJobError(
                "a job cannot have both depends_on and a unique_key: unique_key is unique "
                "among pending and running jobs, and a job that depends on others is waiting"
            )
        _refuse_unrunnable(dependencies, (yield q.statements.dependencies(dependencies)))
        locked = (yield q.statements.await_dependencies(dependencies)).all()
        _refuse_unrunnable(dependencies, locked)
        # What the insert trigger decides too: their rows stay locked until the commit.
        done = all(JobStatus(status) is JobStatus.COMPLETED for _, status in locked)
        row["status"] = (JobStatus.PENDING if done else JobStatus.WAITING).value
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


def _dependency_ids(value: object) -> list[uuid.UUID] | None:
    """The ids of ``depends_on`` (jobs or ids), without repeats; ``None`` for none."""
    if value is None:
        return None
    if isinstance(value, str | bytes | JobMixin | uuid.UUID) or not isinstance(value, Iterable):
        raise InvalidJobError(
            f"depends_on must be a list of jobs or job ids, got {type(value).__name__}"
        )
    ids = list(dict.fromkeys(job_id_of(job) for job in value))
    if not ids:
        raise InvalidJobError("depends_on is empty: leave it out for a job that waits for none")
    if len(ids) > MAX_DEPENDENCIES:
        raise InvalidJobError(
            f"depends_on names {len(ids)} jobs; at most {MAX_DEPENDENCIES}: make a job that "
            "depends on a group of them, and depend on it"
        )
    return ids


def _refuse_unrunnable(wanted: list[uuid.UUID], found: Iterable[Any]) -> None:
    """Refuse a job whose dependencies include a job that does not exist or ended
    without completing: it could never run."""
    statuses = {job_id: JobStatus(status) for job_id, status in found}
    for job_id in wanted:
        status = statuses.get(job_id)
        if status is None:
            raise InvalidJobError(
                f"depends_on names job {job_id}, which does not exist (or is not committed "
                "yet); nothing was enqueued"
            )
        if status in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise InvalidJobError(
                f"depends_on names job {job_id}, which ended {status.value}: this job could "
                "never run; nothing was enqueued"
            )


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
        status=JobStatus(row.get("status", JobStatus.PENDING.value)),
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
        crashes=0,
        depends_on=row["depends_on"],
        awaited=False,
        concurrency_key=row["concurrency_key"],
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
    """Whether a checked row can be loaded by COPY: due now, without a unique key or a
    concurrency key."""
    return (
        row["unique_key"] is None
        and row["concurrency_key"] is None
        and row["run_at_abs"] is None
        and not row["run_in"]
    )


def _insert_page(q: QueueCore[J], rows: list[dict[str, Any]]) -> Plan[set[uuid.UUID]]:
    """Insert one page of checked rows; return the ids actually inserted."""
    result = yield q.statements.enqueue_page(rows)
    if any(row["unique_key"] is not None for row in rows):
        return set(result.scalars())
    return {row["id"] for row in rows}
