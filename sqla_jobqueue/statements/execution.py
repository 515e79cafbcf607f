"""How a bound statement is run elsewhere than through ``Session.execute`` as it is.

:func:`driver_sql` compiles a statement for execution on the driver directly, with list
parameters sent in binary on psycopg; :func:`loading` makes a statement that returns every
column of the job table load model instances.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Connection, Dialect, Executable, select
from sqlalchemy.sql.compiler import Compiled

from .base import Bound

__all__ = ["driver_rows", "driver_sql", "loading"]

_ARRAY_PARAMS = (
    "p_ids", "p_attempts", "p_results", "p_percents", "p_stages", "p_events", "p_job_types",
)  # fmt: skip


def driver_sql(dialect: Dialect, statement: Executable) -> tuple[str, Compiled]:
    """``statement`` compiled for ``dialect``, to run with ``exec_driver_sql`` on the
    parameters ``compiled.construct_params(params)``; compiled once per dialect.

    On psycopg, list parameters are sent in binary (``%(name)b``), several times faster
    than text; SQLAlchemy has no way to ask. Safe: the statement is ours, compiled by the
    psycopg dialect in its pyformat style, so each name occurs once as ``%(name)s`` (tests
    check this), and the SQL is only executed with ``exec_driver_sql``, which hands the
    string to psycopg as it is.
    """
    return _driver_sql(dialect.name, dialect.driver, dialect, statement)


_DRIVER_SQL: dict[tuple[str, str, int], tuple[str, Compiled, Executable]] = {}


def _driver_sql(
    name: str, driver: str, dialect: Dialect, statement: Executable
) -> tuple[str, Compiled]:
    key = (name, driver, id(statement))
    cached = _DRIVER_SQL.get(key)
    if cached is None or cached[2] is not statement:
        compiled = cast(Any, statement).compile(dialect=dialect)
        sql = compiled.string
        if driver == "psycopg":
            for parameter in _ARRAY_PARAMS:
                sql = sql.replace(f"%({parameter})s", f"%({parameter})b")
        # The statement is kept with its text so that its id is never reused meanwhile.
        cached = _DRIVER_SQL[key] = (sql, compiled, statement)
    return cached[0], cached[1]


def driver_rows(connection: Connection, bound: Bound) -> Sequence[Any]:
    """Run ``bound`` on ``connection`` and return the driver's own rows.

    For the worker's hot statements, whose columns need no processing: building
    SQLAlchemy rows costs more per job than anything else but the database. The statement
    still runs through SQLAlchemy (its events, logging, error wrapping and invalidation of
    a lost connection).
    """
    sql, compiled = driver_sql(connection.dialect, bound.statement)
    result = connection.exec_driver_sql(sql, compiled.construct_params(bound.params))
    try:
        rows: Sequence[Any] = result.cursor.fetchall()
    finally:
        result.close()
    return rows


def loading(model: type[Any], bound: Bound) -> Bound:
    """``bound`` (a statement returning every column of the job table) made to load
    instances of ``model``, refreshing those the session holds already."""
    key = (model, bound.statement)
    loads = _LOADING.get(key)
    if loads is None:
        loads = _LOADING[key] = (
            select(model)
            .from_statement(cast(Any, bound.statement))
            .execution_options(populate_existing=True)
        )
    return Bound(loads, bound.params)


_LOADING: dict[tuple[type[Any], Executable], Executable] = {}
