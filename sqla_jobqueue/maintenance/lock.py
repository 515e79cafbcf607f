"""The advisory lock that lets one worker at a time do a maintenance duty on a job table."""

from __future__ import annotations

from sqlalchemy import Connection, Table, text

from ..sql import read_sql

__all__ = ["LOCK_CLASS_ID", "try_lock"]

LOCK_CLASS_ID = 0x5171_0B
"""The first key of sqla_jobqueue's advisory locks (the second hashes duty and table)."""


def try_lock(connection: Connection, duty: str, table: Table) -> bool:
    """Take the advisory lock of ``duty`` on ``table`` for the current transaction.

    Returns whether it was taken; ``False`` when another transaction holds it.
    """
    statement = text(read_sql("maintenance_try_lock.sql"))
    params = {"class_id": LOCK_CLASS_ID, "duty": duty, "schema": table.schema, "table": table.name}
    return bool(connection.execute(statement, params).scalar_one())
