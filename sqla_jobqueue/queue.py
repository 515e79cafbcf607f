"""JobQueue: the session-scoped repository of jobs.

A :class:`JobQueue` wraps the caller's :class:`~sqlalchemy.orm.Session` and a job model.
Every method is one SQL statement (two when it must explain a refusal) in the caller's
transaction; the queue never commits, never starts threads, and never reads the worker's
clock: timestamps come from ``statement_timestamp()`` on the server.

Writes by a worker to a job it holds are *fenced*: when the queue has a ``worker_id`` the
statement also requires ``worker_id`` to match, and when the attempt is known (the job was
passed as a model instance, or ``attempt=`` was given) it requires ``attempts`` to match.
A worker whose job was rescued and claimed again therefore gets
:class:`~sqla_jobqueue.errors.LeaseLostError` instead of completing someone else's attempt.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    DateTime,
    Integer,
    Interval,
    Select,
    String,
    Table,
    Text,
    Uuid,
    and_,
    any_,
    bindparam,
    case,
    column,
    delete,
    func,
    inspect,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_dict

from . import validation as check
from .backoff import DEFAULT_BACKOFF, Backoff
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
    FINISHED_STATUSES,
    HELD_STATUSES,
    LIVE_STATUSES,
    UNIQUE_KEY_PREDICATE,
    Job,
    JobMixin,
    JobStatus,
    Priority,
    is_job_table,
)
from .sql import format_table

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "ENQUEUE_PAGE_SIZE",
    "JobQueue",
    "JobRef",
    "QueueStats",
    "check_job",
    "check_job_types",
    "claim_candidates",
    "default_worker_id",
    "stale_condition",
]

J = TypeVar("J", bound=JobMixin)

JobRef = uuid.UUID | JobMixin
"""A job given by its id or as a model instance (whose ``attempts`` then fences the write)."""

_ENQUEUE_KEYS = frozenset({"job_type", "data", "priority", "max_attempts", "run_at", "unique_key"})
_UNIQUE_RETRIES = 3
ENQUEUE_PAGE_SIZE = 5_000
"""Most jobs one ``INSERT`` of :meth:`JobQueue.enqueue_many` writes."""


def default_worker_id() -> str:
    """``host:pid:random``, at most 100 characters: unique per process start."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _unique_contended(unique_key: object) -> JobQueueError:
    return JobQueueError(
        f"unique_key {unique_key!r} kept changing hands while enqueueing (a live job held it, "
        f"then finished, {_UNIQUE_RETRIES} times); try again"
    )


_RECORD_COLUMNS = (
    ("id", Uuid()),
    ("job_type", String()),
    ("data", JSONB()),
    ("priority", Integer()),
    ("max_attempts", Integer()),
    ("run_at", DateTime(timezone=True)),
    ("run_in", Interval()),
    ("unique_key", String()),
)


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


def claim_candidates(table: Table, limit: Any, job_types: Any | None = None) -> Select[Any]:
    """The ids a claim takes, locked: due pending jobs with attempts left, highest
    priority first, then oldest, then by id, skipping rows another claim has locked.

    ``limit`` and ``job_types`` (an array expression, ``None`` for every type) may be
    values or bound parameters. :meth:`JobQueue.claim`, the worker's claim and the
    installed ``claim_job_batch`` all select this way.
    """
    c = table.c
    candidates = (
        select(c.id)
        .where(
            c.status == literal_column(f"'{JobStatus.PENDING.value}'"),
            c.run_at <= func.statement_timestamp(),
            c.attempts < c.max_attempts,
        )
        .order_by(c.priority.desc(), c.created_at, c.id)
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True)
    )
    if job_types is not None:
        candidates = candidates.where(c.job_type == any_(job_types))
    return candidates


def stale_condition(model: type[JobMixin], timeout: timedelta) -> ColumnElement[bool]:
    """Held jobs whose heartbeat (or claim, before any heartbeat) is older than ``timeout``
    by the database clock: what :meth:`JobQueue.recover_stale` rescues."""
    return and_(
        model.status.in_(HELD_STATUSES),
        func.coalesce(model.heartbeat_at, model.claimed_at)
        < func.statement_timestamp() - literal(timeout, Interval()),
    )


@functools.cache
def _insert_statement(table: Table, *, unique: bool) -> Any:
    """``INSERT … SELECT FROM jsonb_to_recordset(:jobs)``, built once per table.

    The jobs travel as one JSON array parameter, so the statement text is the same for one
    job or thousands (the driver caches and prepares it), and the server parses the rows
    in C.
    """
    new = (
        func.jsonb_to_recordset(sql_cast(bindparam("jobs", type_=Text()), JSONB()))
        .table_valued(*(column(name, type_) for name, type_ in _RECORD_COLUMNS))
        .render_derived(name="new_jobs", with_types=True)
    )
    rows = select(
        new.c.id,
        new.c.job_type,
        new.c.data,
        new.c.priority,
        new.c.max_attempts,
        func.coalesce(new.c.run_at, func.statement_timestamp() + new.c.run_in),
        new.c.unique_key,
    )
    columns = ["id", "job_type", "data", "priority", "max_attempts", "run_at", "unique_key"]
    statement = pg_insert(table).from_select(columns, rows)
    if unique:
        statement = statement.on_conflict_do_nothing(
            index_elements=[table.c.unique_key],
            index_where=literal_column(UNIQUE_KEY_PREDICATE),
        )
    return statement.returning(table.c.id) if unique else statement


_MICROSECOND = timedelta(microseconds=1)
_encode_json = json.JSONEncoder(ensure_ascii=False).encode


@functools.cache
def _insert_one_statement(table: Table, *, unique: bool, due: bool) -> Any:
    """``INSERT … VALUES`` of one checked row, returning what the database fills in.

    A job due now (``due``) binds neither ``run_at`` nor ``unique_key``: the common
    enqueue sends five parameters, not eight.
    """
    c = table.c
    values: dict[Any, Any] = {
        c.id: bindparam("id", type_=Uuid()),
        c.job_type: bindparam("job_type", type_=String()),
        c.data: sql_cast(bindparam("data_json", type_=Text()), JSONB()),
        c.priority: bindparam("priority", type_=Integer()),
        c.max_attempts: bindparam("max_attempts", type_=Integer()),
        c.run_at: func.statement_timestamp()
        if due
        else func.coalesce(
            bindparam("run_at_abs", type_=DateTime(timezone=True)),
            func.statement_timestamp() + bindparam("run_in", type_=Interval()),
        ),
    }
    if unique:
        values[c.unique_key] = bindparam("unique_key", type_=String())
    statement = pg_insert(table).values(values)
    if unique:
        statement = statement.on_conflict_do_nothing(
            index_elements=[c.unique_key], index_where=literal_column(UNIQUE_KEY_PREDICATE)
        )
    return statement.returning(c.created_at, c.run_at)


def _copyable(row: dict[str, Any]) -> bool:
    """Whether a checked row can be loaded by COPY: due now, without a unique key."""
    return row["unique_key"] is None and row["run_at_abs"] is None and not row["run_in"]


@functools.cache
def _copy_statement(table: Table) -> str:
    """``COPY <table> (…) FROM STDIN (FORMAT BINARY)``; ``run_at`` takes its default."""
    return (
        f"COPY {format_table(table)} (id, job_type, data, priority, max_attempts) "
        "FROM STDIN (FORMAT BINARY)"
    )


_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # then no flags, no header extension
_COPY_END = b"\xff\xff"
_FIVE_FIELDS_AND_ID_LENGTH = b"\x00\x05\x00\x00\x00\x10"
_JSONB_VERSION = b"\x01"


def _int4_fields(*values: int) -> bytes:
    return b"".join(b"\x00\x00\x00\x04" + value.to_bytes(4, "big", signed=True) for value in values)


_DEFAULT_SETTINGS = _int4_fields(Priority.DISCOVERED, DEFAULT_MAX_ATTEMPTS)
_COPY_CHUNK_ROWS = 128
"""Rows per write of a COPY: the server loads one chunk while the next is being built."""


def _copy_data(
    ids: Iterable[uuid.UUID],
    job_types: list[str],
    payloads: list[bytes],
    settings: list[tuple[int, int]] | None,
    taken: list[uuid.UUID] | None = None,
) -> Iterator[bytes]:
    """The binary COPY stream of checked jobs, in chunks, built here rather than row by
    row by the driver (which adapts each value through its type registry).

    Columns: ``id``, ``job_type``, ``data`` (jsonb: a version byte, then the JSON text),
    ``priority`` and ``max_attempts`` (``settings``; ``None`` for the defaults). Each id
    is appended to ``taken`` as its row is written.
    """
    type_fields: dict[str, bytes] = {}
    setting_fields: dict[tuple[int, int], bytes] = {}
    chunks = [_COPY_SIGNATURE]
    add = chunks.append
    for index, (job_id, job_type, payload) in enumerate(zip(ids, job_types, payloads, strict=True)):
        type_field = type_fields.get(job_type)
        if type_field is None:
            encoded = job_type.encode()
            type_field = type_fields[job_type] = len(encoded).to_bytes(4, "big") + encoded
        setting_field = _DEFAULT_SETTINGS
        if settings is not None:
            setting = settings[index]
            if setting not in setting_fields:
                setting_fields[setting] = _int4_fields(*setting)
            setting_field = setting_fields[setting]
        if taken is not None:
            taken.append(job_id)
        add(_FIVE_FIELDS_AND_ID_LENGTH)
        add(job_id.int.to_bytes(16, "big"))
        add(type_field)
        add((len(payload) + 1).to_bytes(4, "big"))
        add(_JSONB_VERSION)
        add(payload)
        add(setting_field)
        if index % _COPY_CHUNK_ROWS == _COPY_CHUNK_ROWS - 1:
            yield b"".join(chunks)
            chunks.clear()
    add(_COPY_END)
    yield b"".join(chunks)


def _jobs_json(rows: list[dict[str, Any]]) -> str:
    """The JSON array of checked rows that :func:`_insert_statement` unpacks.

    ``data_json`` was serialised (and checked) already; it is spliced in, not re-encoded.
    """
    dumps = _encode_json
    parts = []
    for row in rows:
        run_at = row["run_at_abs"]
        parts.append(
            f'{{"id":"{row["id"]}","job_type":{dumps(row["job_type"])},'
            f'"data":{row["data_json"]},"priority":{row["priority"]},'
            f'"max_attempts":{row["max_attempts"]},'
            f'"run_at":{"null" if run_at is None else dumps(run_at.isoformat())},'
            f'"run_in":"{row["run_in"] // _MICROSECOND} microseconds",'
            f'"unique_key":{dumps(row["unique_key"])}}}'
        )
    return "[" + ",".join(parts) + "]"


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


class JobQueue(Generic[J]):
    """The jobs of one job table, read and written in the caller's transaction.

    Parameters
    ----------
    session:
        The caller's session. The queue executes statements on it and never commits.
    model:
        A mapped :class:`~sqla_jobqueue.JobMixin` class; :class:`~sqla_jobqueue.Job`
        by default.
    worker_id:
        The identity of the worker using this queue. Claims record it, and writes to held
        jobs require it. Without one, the first :meth:`claim` makes one up.
    max_payload_bytes:
        Largest ``data`` or ``result`` accepted, as JSON bytes (64 KiB by default).
    """

    @overload
    def __init__(
        self: JobQueue[Job],
        session: Session,
        model: None = None,
        *,
        worker_id: str | None = None,
        max_payload_bytes: int = check.DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None: ...

    @overload
    def __init__(
        self,
        session: Session,
        model: type[J],
        *,
        worker_id: str | None = None,
        max_payload_bytes: int = check.DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None: ...

    def __init__(
        self,
        session: Session,
        model: type[J] | None = None,
        *,
        worker_id: str | None = None,
        max_payload_bytes: int = check.DEFAULT_MAX_PAYLOAD_BYTES,
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
        self.session = session
        self.model: type[J] = chosen
        self.table: Table = table
        self.worker_id = worker_id
        self.max_payload_bytes = max_payload_bytes

    # ------------------------------------------------------------------ enqueue

    def enqueue(
        self,
        job_type: str,
        data: Mapping[str, Any] | None = None,
        *,
        priority: int = Priority.DISCOVERED,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        run_at: datetime | timedelta | None = None,
        unique_key: str | None = None,
    ) -> J:
        """Add a job in the caller's transaction and return it.

        Parameters
        ----------
        job_type:
            Which handler runs the job (1 to 50 characters).
        data:
            The job's arguments, a JSON object; keep it small and store references.
            ``UUID``, ``datetime``, ``date``, ``time`` and ``Decimal`` values are stored
            as the strings that rebuild them (``str(value)`` or ``isoformat()``), and the
            handler reads those strings; see :mod:`sqla_jobqueue.validation`.
        priority:
            Higher runs first; see :class:`~sqla_jobqueue.Priority`.
        max_attempts:
            How many times the job may be claimed before it ends as ``failed``.
        run_at:
            Not claimable before this time; a ``timedelta`` counts from the database's
            clock. ``None`` means now.
        unique_key:
            At most one live (pending, claimed or running) job per key: when one exists,
            it is returned and nothing is inserted.

        Raises
        ------
        InvalidJobError
            When an argument is not acceptable; nothing is written.
        """
        row = self._row(
            {
                "job_type": job_type,
                "data": data,
                "priority": priority,
                "max_attempts": max_attempts,
                "run_at": run_at,
                "unique_key": unique_key,
            }
        )
        statement = _insert_one_statement(
            self.table, unique=unique_key is not None, due=run_at is None
        )
        for _ in range(_UNIQUE_RETRIES):
            filled = self.session.execute(statement, row).one_or_none()
            if filled is not None:
                return self._attach(row, filled.created_at, filled.run_at)
            existing = self.session.scalars(
                select(self.model)
                .where(
                    self.model.unique_key == unique_key,
                    self.model.status.in_(LIVE_STATUSES),
                )
                .execution_options(populate_existing=True)
            ).one_or_none()
            if existing is not None:
                return existing
            row["id"] = new_job_id()
        raise _unique_contended(unique_key)

    def _attach(self, row: dict[str, Any], created_at: datetime, run_at: datetime) -> J:
        """The model instance of a row just inserted, made persistent without a query.

        Every column's value is known (the database only filled in the two timestamps),
        so the instance is built here and attached with ``make_transient_to_detached``
        instead of being loaded from ``RETURNING *``, which costs more than the INSERT.
        Like a load, it skips the model's ``__init__`` and its attribute events: the
        values go straight into the instance's dict as loaded state, not as changes.
        Columns an application adds to its own model stay unloaded and load on access.
        """
        mapper = inspect(self.model)
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
        self.session.add(job)
        return job

    def enqueue_many(self, jobs: Iterable[Mapping[str, Any]]) -> list[uuid.UUID]:
        """Add many jobs in few statements; return their ids in input order.

        Each mapping takes the keywords of :meth:`enqueue` (``job_type`` required). All
        jobs are checked before anything is written. Jobs that are due now and have no
        ``unique_key`` — the common bulk load — are streamed with one binary ``COPY``.
        Otherwise the rows travel as one JSON array per page of ``ENQUEUE_PAGE_SIZE`` jobs,
        unpacked by a single ``INSERT … SELECT``; a job whose ``unique_key`` is already
        live is not inserted, and the id of the live job stands in its place.
        """
        specs = list(jobs)
        if not specs:
            return []
        # The common kind of spec is checked column by column without building a row;
        # any other spec (or a bad one) sends every spec through the full checks.
        plain = check.plain_specs(specs, self.max_payload_bytes)
        if plain is not None:
            driver = self._psycopg_connection()
            if driver is not None:
                ids: list[uuid.UUID] = []
                self._copy(driver, _copy_data(reserve_job_ids(len(specs)), *plain, None, ids))
                return ids
        rows = []
        for index, spec in enumerate(specs):
            checked = check.mapping_keys(spec, _ENQUEUE_KEYS, index)
            try:
                rows.append(self._row(checked))
            except InvalidJobError as exc:
                raise InvalidJobError(f"job #{index}: {exc}") from None
        driver = self._psycopg_connection() if all(_copyable(row) for row in rows) else None
        if driver is not None:
            ids = [row["id"] for row in rows]
            data = _copy_data(
                ids,
                [row["job_type"] for row in rows],
                [row["data_json"].encode() for row in rows],
                [(row["priority"], row["max_attempts"]) for row in rows],
            )
            self._copy(driver, data)
            return ids
        inserted: set[uuid.UUID] = set()
        for start in range(0, len(rows), ENQUEUE_PAGE_SIZE):
            inserted |= self._insert_page(rows[start : start + ENQUEUE_PAGE_SIZE])
        if len(inserted) == len(rows):
            return [row["id"] for row in rows]
        return self._resolve_unique(rows, inserted)

    def _psycopg_connection(self) -> psycopg.Connection[Any] | None:
        """The psycopg 3 connection under the session's, or ``None`` with another driver.

        psycopg is not imported here: a session on psycopg has imported it already, and an
        application on another driver should not pay for loading it.
        """
        driver = self.session.connection().connection.driver_connection
        loaded = sys.modules.get("psycopg")
        if loaded is None or not isinstance(driver, loaded.Connection):
            return None
        return cast("psycopg.Connection[Any]", driver)

    def _copy(self, driver: psycopg.Connection[Any], data: Iterable[bytes]) -> None:
        """Stream a binary COPY of due, key-less jobs (see :func:`_copy_data`)."""
        with driver.cursor() as cursor, cursor.copy(_copy_statement(self.table)) as copy:
            for chunk in data:
                copy.write(chunk)

    def _insert_page(self, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
        """Insert one page of checked rows; return the ids actually inserted."""
        unique = any(row["unique_key"] is not None for row in rows)
        statement = _insert_statement(self.table, unique=unique)
        result = self.session.execute(statement, {"jobs": _jobs_json(rows)})
        if unique:
            return set(result.scalars())
        return {row["id"] for row in rows}

    def _resolve_unique(
        self, rows: list[dict[str, Any]], inserted: set[uuid.UUID]
    ) -> list[uuid.UUID]:
        for _ in range(_UNIQUE_RETRIES):
            missing = [row for row in rows if row["id"] not in inserted]
            keys = {row["unique_key"] for row in missing}
            found = self.session.execute(
                select(self.table.c.unique_key, self.table.c.id).where(
                    self.table.c.unique_key.in_(keys),
                    self.table.c.status.in_(LIVE_STATUSES),
                )
            )
            live = {key: job_id for key, job_id in found}
            retry = [row for row in missing if row["unique_key"] not in live]
            if not retry:
                return [
                    row["id"] if row["id"] in inserted else live[row["unique_key"]] for row in rows
                ]
            for row in retry:
                row["id"] = new_job_id()
            inserted |= self._insert_page(retry)
        raise _unique_contended(retry[0]["unique_key"])

    def _row(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return check_job(spec, max_payload_bytes=self.max_payload_bytes)

    # ------------------------------------------------------------------ claim

    def claim(self, job_types: Sequence[str] | None = None, batch_size: int = 10) -> list[J]:
        """Claim up to ``batch_size`` due pending jobs for this queue's worker.

        One statement: ``UPDATE … WHERE id = ANY(ARRAY(SELECT … FOR NO KEY UPDATE SKIP
        LOCKED)) RETURNING``. Jobs are taken highest priority first, then oldest, then by id;
        jobs locked by a concurrent claim are skipped, never waited for. Each claimed job
        becomes ``claimed`` by this worker with ``attempts`` increased by one. The list is
        in claim order.

        Parameters
        ----------
        job_types:
            Claim only these types; ``None`` claims every type.
        batch_size:
            The most jobs to claim (at least 1).
        """
        size = check.check_batch_size(batch_size)
        types = check_job_types(job_types)
        if self.worker_id is None:
            self.worker_id = default_worker_id()
        model = self.model
        candidates = claim_candidates(
            self.table,
            size,
            None if types is None else bindparam("job_types", types, type_=ARRAY(String())),
        )
        now = func.statement_timestamp()
        statement = (
            update(model)
            # id = ANY(ARRAY(…)), not IN (…): IN plans as a hash join over the whole table.
            .where(model.id == any_(func.array(candidates.scalar_subquery())))
            .values(
                status=literal_column(f"'{JobStatus.CLAIMED.value}'"),
                worker_id=self.worker_id,
                claimed_at=now,
                heartbeat_at=now,
                attempts=model.attempts + 1,
            )
            .returning(model)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        jobs = list(self.session.scalars(statement))
        jobs.sort(key=lambda job: (-job.priority, job.created_at, job.id))
        return jobs

    # ------------------------------------------------------------- transitions

    def start(self, job: JobRef, *, attempt: int | None = None) -> J:
        """Mark a claimed job ``running`` (``started_at`` set, heartbeat refreshed)."""
        now = func.statement_timestamp()
        return self._transition(
            job,
            "start",
            (JobStatus.CLAIMED,),
            {"status": JobStatus.RUNNING.value, "started_at": now, "heartbeat_at": now},
            attempt=attempt,
        )

    def heartbeat(self, jobs: Iterable[JobRef] | None = None) -> int:
        """Refresh ``heartbeat_at`` of held jobs; return how many were refreshed.

        With ``jobs=None`` every job held by this queue's worker is refreshed. Jobs no
        longer held by this worker are left alone and not counted.
        """
        if self.worker_id is None:
            raise InvalidJobError("heartbeat needs a worker_id: create the JobQueue with one")
        model = self.model
        statement = (
            update(model)
            .where(
                model.status.in_(HELD_STATUSES),
                model.worker_id == self.worker_id,
            )
            .values(heartbeat_at=func.statement_timestamp())
            .execution_options(synchronize_session=False)
        )
        return self._count_changed(statement, jobs)

    def update_progress(
        self,
        job: JobRef,
        progress: int | None = None,
        stage: str | None = None,
        events: int = 0,
        *,
        attempt: int | None = None,
    ) -> J:
        """Record progress of a held job: percent, stage label and events seen.

        ``events`` is added to ``events_count``; ``None`` leaves progress or stage as they
        are. Refreshes the heartbeat too.
        """
        values: dict[str, Any] = {"heartbeat_at": func.statement_timestamp()}
        if progress is not None:
            values["progress"] = check.check_progress(progress)
        if stage is not None:
            values["current_stage"] = check.check_stage(stage)
        count = check.check_int32(events, "events")
        if count < 0:
            raise InvalidJobError(f"events must be zero or more, got {count}")
        if count:
            values["events_count"] = self.model.events_count + count
        return self._transition(job, "update progress of", HELD_STATUSES, values, attempt=attempt)

    def complete(self, job: JobRef, result: Any = None, *, attempt: int | None = None) -> J:
        """Mark a held job ``completed`` with an optional small JSON ``result``.

        ``result`` may hold the same values as a job's ``data``, stored the same way.
        """
        # Stored as the checked text, not through the engine's JSON serialiser, so that a
        # result holds the same values (UUID, datetime, Decimal) as a worker's result.
        stored: Any = None
        if result is not None:
            text = check.check_json(result, "result", self.max_payload_bytes, require_object=False)
            stored = sql_cast(literal(text, Text()), JSONB())
        return self._transition(
            job,
            "complete",
            HELD_STATUSES,
            {
                "status": JobStatus.COMPLETED.value,
                "progress": 100,
                "completed_at": func.statement_timestamp(),
                "result": stored,
            },
            attempt=attempt,
        )

    def fail(
        self,
        job: JobRef,
        error: str,
        *,
        retry_in: timedelta | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        attempt: int | None = None,
    ) -> J:
        """Record a failed attempt of a held job.

        While attempts remain the job goes back to ``pending`` with ``run_at`` pushed by
        ``retry_in`` (or by ``backoff`` computed from its attempts); otherwise it ends as
        ``failed``. ``last_error`` keeps ``error`` either way.
        """
        if not isinstance(error, str):
            raise InvalidJobError(f"error must be a string, got {type(error).__name__}")
        error = error.replace("\x00", "\\0")
        delay: ColumnElement[Any]
        if retry_in is not None:
            delay = literal(check.check_finite_delay(retry_in, "retry_in"), Interval())
        else:
            delay = backoff.sql_delay(self.model.attempts)
        model = self.model
        spent = model.attempts >= model.max_attempts
        now = func.statement_timestamp()
        values: dict[str, Any] = {
            "status": case((spent, JobStatus.FAILED.value), else_=JobStatus.PENDING.value),
            "last_error": error,
            "run_at": case((spent, model.run_at), else_=now + delay),
            "completed_at": case((spent, now), else_=None),
            "worker_id": case((spent, model.worker_id), else_=None),
            "claimed_at": None,
            "heartbeat_at": None,
        }
        return self._transition(job, "fail", HELD_STATUSES, values, attempt=attempt)

    def cancel(self, job: JobRef) -> J:
        """Give up on a job that has not finished: it ends as ``cancelled``.

        A handler still running it is not interrupted: its ``ctx.abandoned`` turns true at
        the worker's next progress write that carries a report from it (within the
        worker's ``progress_interval``), and its outcome is discarded when it returns.
        """
        return self._transition(
            job,
            "cancel",
            LIVE_STATUSES,
            {"status": JobStatus.CANCELLED.value, "completed_at": func.statement_timestamp()},
            fenced=False,
        )

    def retry(self, job: JobRef) -> J:
        """Send a ``failed`` job back to ``pending`` with its attempts reset, due now."""
        return self._transition(
            job,
            "retry",
            (JobStatus.FAILED,),
            {
                "status": JobStatus.PENDING.value,
                "attempts": 0,
                "run_at": func.statement_timestamp(),
                "worker_id": None,
                "claimed_at": None,
                "heartbeat_at": None,
                "started_at": None,
                "completed_at": None,
                "progress": 0,
            },
            fenced=False,
        )

    def recover_stale(self, timeout: timedelta) -> int:
        """Return jobs whose heartbeat is older than ``timeout`` to ``pending``.

        A job that never started (``claimed``) gets its attempt back: it was only claimed
        beside the job that killed its worker. A ``running`` job keeps the attempt it
        spent and ends as ``failed`` when no attempts remain, so a job that keeps killing
        its workers stops after ``max_attempts``. Returns the number of jobs touched.
        """
        check.check_positive_interval(timeout, "timeout")
        model = self.model
        now = func.statement_timestamp()
        never_started = model.status == JobStatus.CLAIMED.value
        spent = and_(~never_started, model.attempts >= model.max_attempts)
        lost = func.concat(
            "worker ",
            model.worker_id,
            " stopped heartbeating (last at ",
            model.heartbeat_at,
            "); rescued by recover_stale",
        )
        statement = (
            update(model)
            .where(stale_condition(model, timeout))
            .values(
                status=case((spent, JobStatus.FAILED.value), else_=JobStatus.PENDING.value),
                attempts=case(
                    (never_started, func.greatest(model.attempts - 1, 0)),
                    else_=model.attempts,
                ),
                last_error=case((never_started, model.last_error), else_=lost),
                completed_at=case((spent, now), else_=None),
                run_at=case((spent, model.run_at), else_=now),
                worker_id=case((spent, model.worker_id), else_=None),
                claimed_at=None,
                heartbeat_at=None,
                started_at=case((spent, model.started_at), else_=None),
            )
            .execution_options(synchronize_session=False)
        )
        return int(getattr(self.session.execute(statement), "rowcount", 0))

    def release(self, jobs: Iterable[JobRef] | None = None) -> int:
        """Give back claimed jobs this worker has not started, without charging them.

        They return to ``pending`` with the attempt of their claim refunded, due now. With
        ``jobs=None`` every not-started job of this queue's worker is released. A worker
        calls this when it shuts down. Returns the number released.
        """
        if self.worker_id is None:
            raise InvalidJobError("release needs a worker_id: create the JobQueue with one")
        model = self.model
        statement = (
            update(model)
            .where(
                model.status == literal_column(f"'{JobStatus.CLAIMED.value}'"),
                model.worker_id == self.worker_id,
            )
            .values(
                status=JobStatus.PENDING.value,
                attempts=func.greatest(model.attempts - 1, 0),
                worker_id=None,
                claimed_at=None,
                heartbeat_at=None,
                run_at=func.least(model.run_at, func.statement_timestamp()),
            )
            .execution_options(synchronize_session=False)
        )
        return self._count_changed(statement, jobs)

    def prune(self, older_than: timedelta, *, limit: int | None = None) -> int:
        """Delete finished jobs (completed, failed, cancelled) older than ``older_than``.

        Age counts from ``completed_at``. ``limit`` bounds how many rows one call deletes,
        so a large backlog can be pruned in short transactions. Returns the number deleted.
        """
        check.check_positive_interval(older_than, "older_than")
        model = self.model
        doomed = select(model.id).where(
            model.status.in_(FINISHED_STATUSES),
            model.completed_at < func.statement_timestamp() - literal(older_than, Interval()),
        )
        if limit is not None:
            doomed = doomed.limit(check.check_batch_size(limit))
        statement = (
            delete(model)
            .where(model.id.in_(doomed.scalar_subquery()))
            .execution_options(synchronize_session=False)
        )
        return int(getattr(self.session.execute(statement), "rowcount", 0))

    # ------------------------------------------------------------------- reads

    def get(self, job_id: uuid.UUID) -> J:
        """Load a job by id, fresh from the database."""
        job = self.session.get(self.model, self._job_id(job_id), populate_existing=True)
        if job is None:
            raise JobNotFoundError(self._job_id(job_id))
        return job

    def stats(self) -> QueueStats:
        """Counts by type and status, and the age of the oldest due pending job."""
        model = self.model
        counts: dict[str, dict[str, int]] = {}
        rows = self.session.execute(
            select(model.job_type, model.status, func.count()).group_by(
                model.job_type, model.status
            )
        )
        for job_type, status, count in rows:
            counts.setdefault(job_type, {})[JobStatus(status).value] = int(count)
        oldest = self.session.execute(
            select(func.statement_timestamp() - func.min(model.run_at)).where(
                model.status == literal_column(f"'{JobStatus.PENDING.value}'"),
                model.run_at <= func.statement_timestamp(),
            )
        ).scalar_one()
        return QueueStats(counts=counts, oldest_pending_age=oldest)

    # ----------------------------------------------------------------- helpers

    def _count_changed(self, statement: Any, jobs: Iterable[JobRef] | None) -> int:
        """Run an UPDATE of this worker's jobs, limited to ``jobs`` when given."""
        if jobs is not None:
            ids = [self._job_id(job) for job in jobs]
            if not ids:
                return 0
            statement = statement.where(self.model.id.in_(ids))
        return int(getattr(self.session.execute(statement), "rowcount", 0))

    @staticmethod
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

    def _fence(self, job: JobRef, attempt: int | None) -> int | None:
        if attempt is not None:
            return check.check_int32(attempt, "attempt")
        if isinstance(job, JobMixin):
            # Read what the instance holds without refreshing it: an expired attribute
            # must not be reloaded, or the fence would check the job against itself.
            loaded = inspect(job).dict.get("attempts")
            return int(loaded) if loaded is not None else None
        return None

    def _transition(
        self,
        job: JobRef,
        action: str,
        allowed: tuple[JobStatus, ...],
        values: dict[str, Any],
        *,
        attempt: int | None = None,
        fenced: bool = True,
    ) -> J:
        job_id = self._job_id(job)
        expected_attempt = self._fence(job, attempt) if fenced else None
        expected_worker = self.worker_id if fenced else None
        model = self.model
        conditions = [model.id == job_id, model.status.in_(allowed)]
        if expected_worker is not None:
            conditions.append(model.worker_id == expected_worker)
        if expected_attempt is not None:
            conditions.append(model.attempts == expected_attempt)
        statement = (
            update(model)
            .where(*conditions)
            .values(values)
            .returning(model)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        updated = self.session.scalars(statement).one_or_none()
        if updated is not None:
            return updated
        raise self._refusal(job_id, action, allowed, expected_worker, expected_attempt)

    def _refusal(
        self,
        job_id: uuid.UUID,
        action: str,
        allowed: tuple[JobStatus, ...],
        expected_worker: str | None,
        expected_attempt: int | None,
    ) -> Exception:
        row = self.session.execute(
            select(self.table.c.status, self.table.c.worker_id, self.table.c.attempts).where(
                self.table.c.id == job_id
            )
        ).one_or_none()
        if row is None:
            return JobNotFoundError(job_id)
        status, worker, attempts = JobStatus(row.status), row.worker_id, row.attempts
        held_elsewhere = (expected_worker is not None and worker != expected_worker) or (
            expected_attempt is not None and attempts != expected_attempt
        )
        if held_elsewhere:
            return LeaseLostError(
                job_id, action, status.value, worker, attempts, expected_worker, expected_attempt
            )
        return InvalidTransitionError(job_id, action, status.value, tuple(s.value for s in allowed))
