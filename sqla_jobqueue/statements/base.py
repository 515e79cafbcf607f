"""What every group of statements shares: the bound statement, the cache of built ones.

A statement is built once per table (:meth:`StatementsBase._once`) with named bind
parameters, so that each has one fixed text the driver prepares once; each method returns
it as a :class:`Bound` statement, its parameters filled in from values that the caller has
checked already. Writes to many jobs at once take one array parameter per column
(:func:`per_job`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Executable,
    String,
    Table,
    Text,
    Uuid,
    bindparam,
    column,
    func,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import JSONB

from .fence import holder_fence

__all__ = ["Bound", "StatementsBase", "counts_or_null", "or_null", "param", "per_job"]


class Bound(NamedTuple):
    """A statement with its parameters, ready to execute."""

    statement: Executable
    params: dict[str, Any]


def param(name: str, type_: Any) -> Any:
    """The bind parameter ``name`` of ``type_``."""
    return bindparam(name, type_=type_)


class StatementsBase:
    """The table, the built statements, and the parameters every group uses.

    Parameters
    ----------
    table:
        The job table (``Model.__table__``).
    """

    def __init__(self, table: Table) -> None:
        self.table = table
        self._built: dict[tuple[Any, ...], Any] = {}
        self._worker = param("p_worker_id", String())
        self._now = func.statement_timestamp()
        self._job = table.c.id == param("p_id", Uuid())

    def _once(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        built = self._built.get(key)
        if built is None:
            built = self._built[key] = build()
        return built

    def _fenced_batch(self, per_job: Any) -> tuple[ColumnElement[bool], ...]:
        return holder_fence(
            self.table,
            per_job.c.id,
            attempt=per_job.c.attempt,
            worker_id=self._worker,
            batch=True,
        )


def per_job(name: str, columns: tuple[tuple[str, str, Any], ...]) -> Any:
    """``unnest(:p_ids, :p_attempts, …) AS name(id, attempt, …)``: one row per job
    written, from one array parameter per column (JSONB travels as text)."""
    arrays = [
        sql_cast(bindparam(parameter, type_=ARRAY(Text())), ARRAY(JSONB()))
        if isinstance(type_, JSONB)
        else bindparam(parameter, type_=ARRAY(type_))
        for _, parameter, type_ in columns
    ]
    return (
        func.unnest(*arrays)
        .table_valued(*(column(name_, type_) for name_, _, type_ in columns))
        .render_derived(name=name)
    )


def or_null(values: Sequence[Any]) -> list[Any] | None:
    """``values`` as a list, or ``None`` when every one of them is ``None``."""
    return list(values) if values.count(None) < len(values) else None


def counts_or_null(counts: Sequence[int]) -> list[int] | None:
    """``counts`` as a list, or ``None`` when every one of them is 0 (nothing to add)."""
    return list(counts) if any(counts) else None
