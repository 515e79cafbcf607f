"""Enqueueing: one job, a page of jobs, and the binary ``COPY`` stream of many.

One job is an ``INSERT … VALUES`` whose text depends only on whether it has a unique key and
whether it is due now; a page of jobs travels as one JSON array parameter
(``jsonb_to_recordset``), so its text is the same for one job or thousands; bulk jobs
without options go through ``COPY … FROM STDIN (FORMAT BINARY)``, whose stream
:func:`copy_data` builds.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    DateTime,
    Integer,
    Interval,
    String,
    Text,
    Uuid,
    any_,
    bindparam,
    column,
    func,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert

from ..model import DEFAULT_MAX_ATTEMPTS, LIVE_STATUSES, UNIQUE_KEY_PREDICATE, Priority
from ..sql import format_table
from .base import Bound, StatementsBase, param
from .fence import status_literals

__all__ = ["KEY_HOLDER_COLUMNS", "EnqueueStatements", "copy_data"]

KEY_HOLDER_COLUMNS = ("id", "job_type", "status", "unique_key", "created_at", "run_at")
"""What enqueueing reads of the live job that holds a ``unique_key``, and of the jobs it
inserts: all an enqueuer's role may read (``SELECT`` on these columns)."""

_RECORD_COLUMNS = (
    ("id", Uuid()),
    ("job_type", String()),
    ("data", JSONB()),
    ("priority", Integer()),
    ("max_attempts", Integer()),
    ("run_at", DateTime(timezone=True)),
    ("run_in", Interval()),
    ("unique_key", String()),
    ("concurrency_key", String()),
)
_MICROSECOND = timedelta(microseconds=1)
_encode_json = json.JSONEncoder(ensure_ascii=False).encode


class EnqueueStatements(StatementsBase):
    """The statements that add jobs to a job table."""

    @functools.cached_property
    def copy_sql(self) -> str:
        """``COPY … FROM STDIN (FORMAT BINARY)`` of :func:`copy_data`; ``run_at`` defaults."""
        return (
            f"COPY {format_table(self.table)} (id, job_type, data, priority, max_attempts) "
            "FROM STDIN (FORMAT BINARY)"
        )

    def enqueue_one(self, row: dict[str, Any]) -> Bound:
        """``INSERT … VALUES`` of one checked row (see ``check_job``), returning
        ``created_at`` and ``run_at``; a live job of the same ``unique_key`` inserts
        nothing. A job due now binds neither ``run_at`` nor ``unique_key``; a job that
        depends on others binds ``depends_on``."""
        unique = row["unique_key"] is not None
        due = row["run_at_abs"] is None and not row["run_in"]
        dependent = row["depends_on"] is not None
        keyed = row["concurrency_key"] is not None
        key = ("enqueue_one", unique, due, dependent, keyed)
        return Bound(self._once(key, lambda: self._insert_one(unique, due, dependent, keyed)), row)

    def dependencies(self, job_ids: Sequence[uuid.UUID]) -> Bound:
        """``(id, status)`` of the jobs a new job would depend on, as this transaction sees
        them: read before anything is written, to refuse a job that could never run."""

        def build() -> Any:
            c = self.table.c
            return select(c.id, c.status).where(c.id == any_(param("p_ids", ARRAY(Uuid()))))

        return Bound(self._once(("dependencies",), build), {"p_ids": list(job_ids)})

    def await_dependencies(self, job_ids: Sequence[uuid.UUID]) -> Bound:
        """Mark the jobs a new job depends on ``awaited``, returning ``(id, status)`` as
        they stand once locked: a job finishing after this has its dependents settled by
        its trigger, once this transaction commits (the finishing one waits for it)."""

        def build() -> Any:
            c = self.table.c
            return (
                update(self.table)
                .where(c.id == any_(param("p_ids", ARRAY(Uuid()))))
                .values(awaited=true())
                .returning(c.id, c.status)
            )

        return Bound(self._once(("await_dependencies",), build), {"p_ids": list(job_ids)})

    def _insert_one(self, unique: bool, due: bool, dependent: bool, keyed: bool) -> Any:
        c = self.table.c
        values: dict[Any, Any] = {
            c.id: param("id", Uuid()),
            c.job_type: param("job_type", String()),
            c.data: sql_cast(param("data_json", Text()), JSONB()),
            c.priority: param("priority", Integer()),
            c.max_attempts: param("max_attempts", Integer()),
            c.run_at: self._now
            if due
            else func.coalesce(
                param("run_at_abs", DateTime(timezone=True)),
                self._now + param("run_in", Interval()),
            ),
        }
        if unique:
            values[c.unique_key] = param("unique_key", String())
        if keyed:
            values[c.concurrency_key] = param("concurrency_key", String())
        if dependent:
            # The insert trigger makes it waiting unless all it depends on completed.
            values[c.depends_on] = param("depends_on", ARRAY(Uuid()))
        statement = pg_insert(self.table).values(values)
        if unique:
            statement = statement.on_conflict_do_nothing(
                index_elements=[c.unique_key], index_where=literal_column(UNIQUE_KEY_PREDICATE)
            )
        return statement.returning(c.created_at, c.run_at)

    def enqueue_page(self, rows: list[dict[str, Any]]) -> Bound:
        """``INSERT … SELECT FROM jsonb_to_recordset(:jobs)`` of checked rows.

        The jobs travel as one JSON array parameter, so the statement text is the same for
        one job or thousands, and the server parses the rows in C. With unique keys among
        them it skips live keys and returns the ids it inserted.
        """
        unique = any(row["unique_key"] is not None for row in rows)
        statement = self._once(("enqueue_page", unique), lambda: self._insert_page(unique))
        return Bound(statement, {"jobs": _jobs_json(rows)})

    def _insert_page(self, unique: bool) -> Any:
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
            func.coalesce(new.c.run_at, self._now + new.c.run_in),
            new.c.unique_key,
            new.c.concurrency_key,
        )
        columns = [
            "id",
            "job_type",
            "data",
            "priority",
            "max_attempts",
            "run_at",
            "unique_key",
            "concurrency_key",
        ]
        statement = pg_insert(self.table).from_select(columns, rows)
        if not unique:
            return statement
        return statement.on_conflict_do_nothing(
            index_elements=[self.table.c.unique_key],
            index_where=literal_column(UNIQUE_KEY_PREDICATE),
        ).returning(self.table.c.id)

    def live_with_key(self, unique_key: str) -> Bound:
        """The live job that holds ``unique_key``: which job it is and where it stands
        (:data:`KEY_HOLDER_COLUMNS`), never its payload or outcome, which an enqueuer may
        not read (see :mod:`sqla_jobqueue.grants`)."""

        def build() -> Any:
            c = self.table.c
            return select(*(c[name] for name in KEY_HOLDER_COLUMNS)).where(
                c.unique_key == param("unique_key", String()),
                c.status.in_(status_literals(LIVE_STATUSES)),
            )

        return Bound(self._once(("live_with_key",), build), {"unique_key": unique_key})

    def live_ids_with_keys(self, keys: Iterable[str]) -> Bound:
        """``(unique_key, id)`` of the live jobs that hold any of ``keys``."""

        def build() -> Any:
            c = self.table.c
            return select(c.unique_key, c.id).where(
                c.unique_key == any_(param("p_keys", ARRAY(String()))),
                c.status.in_(status_literals(LIVE_STATUSES)),
            )

        return Bound(self._once(("live_ids_with_keys",), build), {"p_keys": sorted(set(keys))})


# --------------------------------------------------------------- bulk enqueue data

_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # then no flags, no header extension
_COPY_END = b"\xff\xff"
_FIVE_FIELDS_AND_ID_LENGTH = b"\x00\x05\x00\x00\x00\x10"
_JSONB_VERSION = b"\x01"
_COPY_CHUNK_ROWS = 128
"""Rows per write of a COPY: the server loads one chunk while the next is being built."""


def _int4_fields(*values: int) -> bytes:
    return b"".join(b"\x00\x00\x00\x04" + value.to_bytes(4, "big", signed=True) for value in values)


_DEFAULT_SETTINGS = _int4_fields(Priority.DISCOVERED, DEFAULT_MAX_ATTEMPTS)


def copy_data(
    ids: Iterable[uuid.UUID],
    job_types: list[str],
    payloads: list[bytes],
    settings: list[tuple[int, int]] | None,
    taken: list[uuid.UUID] | None = None,
) -> Iterator[bytes]:
    """The binary stream of :attr:`EnqueueStatements.copy_sql` for checked jobs, in chunks,
    built here rather than row by row by the driver (which adapts each value through its
    type registry).

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
    """The JSON array of checked rows that :meth:`EnqueueStatements.enqueue_page` unpacks.

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
            f'"unique_key":{dumps(row["unique_key"])},'
            f'"concurrency_key":{dumps(row["concurrency_key"])}}}'
        )
    return "[" + ",".join(parts) + "]"
