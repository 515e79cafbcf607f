"""A job table's storage parameters (autovacuum, fillfactor) in Alembic.

The model declares them (``postgresql_with``, from ``JobMixin.__table_storage__``), so a
new table gets them in its ``create_table``. For a table that already exists, Alembic
compares no storage parameters; the comparator here does, for job tables, and writes::

    sqla_jobqueue.alembic.set_table_storage(
        "jobs", {"autovacuum_vacuum_threshold": 5000, ...}, previous={...}
    )

Only the parameters the model declares are compared and set: one an operator added by
hand is left alone. ``previous`` holds what the table had (``None`` for a parameter it did
not set), which is what the downgrade puts back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from alembic import op
from alembic.autogenerate import comparators, renderers
from alembic.autogenerate.api import AutogenContext
from alembic.operations import MigrateOperation, Operations
from alembic.operations.ops import UpgradeOps
from alembic.util import DispatchPriority, PriorityDispatchResult
from sqlalchemy import Connection, MetaData, Table, text

from ..errors import ModelError
from ..model import is_job_table
from ..sql import format_table
from .compare import job_tables

__all__ = ["SetTableStorageOp", "Storage", "set_table_storage", "storage_statement"]

Storage = Mapping[str, int | float | str | None]
"""Storage parameters by name; ``None`` resets one to the server's default."""

_WORD = re.compile(r"[A-Za-z0-9_.+-]+")
_RELOPTIONS = text(
    "SELECT c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = :schema AND c.relname = :name AND c.relkind IN ('r', 'p')"
)


def storage_statement(table: Table, parameters: Storage) -> list[str]:
    """``ALTER TABLE ... SET (...)`` for the values and ``RESET (...)`` for the ``None``s."""
    for name, value in parameters.items():
        if not _WORD.fullmatch(name) or not _WORD.fullmatch(str(value)):
            raise ModelError(
                f"storage parameter {name}={value!r} is not a name and a number or a word"
            )
    values = [f"{name} = {value}" for name, value in parameters.items() if value is not None]
    resets = [name for name, value in parameters.items() if value is None]
    statements = []
    if values:
        statements.append(f"ALTER TABLE {format_table(table)} SET ({', '.join(values)})")
    if resets:
        statements.append(f"ALTER TABLE {format_table(table)} RESET ({', '.join(resets)})")
    return statements


@Operations.register_operation("set_table_storage")
class SetTableStorageOp(MigrateOperation):
    """Set (or reset) storage parameters of a table; reversible through ``previous``."""

    def __init__(
        self,
        table_name: str,
        parameters: Storage,
        *,
        previous: Storage,
        schema: str | None = None,
    ) -> None:
        self.table_name = table_name
        self.parameters = dict(parameters)
        self.previous = dict(previous)
        self.schema = schema

    @classmethod
    def set_table_storage(
        cls,
        operations: Operations,
        table_name: str,
        parameters: Storage,
        *,
        previous: Storage,
        schema: str | None = None,
    ) -> None:
        """Set ``parameters`` on ``table_name``; the downgrade sets ``previous``."""
        operations.invoke(cls(table_name, parameters, previous=previous, schema=schema))

    def reverse(self) -> SetTableStorageOp:
        return SetTableStorageOp(
            self.table_name, self.previous, previous=self.parameters, schema=self.schema
        )

    def to_diff_tuple(self) -> tuple[Any, ...]:
        return ("set_table_storage", self.schema, self.table_name, self.parameters)


def set_table_storage(
    table_name: str, parameters: Storage, *, previous: Storage, schema: str | None = None
) -> None:
    """In a revision: set storage parameters of ``table_name`` (``None`` resets one), and
    put ``previous`` back on downgrade."""
    op.invoke(SetTableStorageOp(table_name, parameters, previous=previous, schema=schema))


@Operations.implementation_for(SetTableStorageOp)
def _set_table_storage(operations: Operations, operation: SetTableStorageOp) -> None:
    table = Table(operation.table_name, MetaData(), schema=operation.schema)
    for statement in storage_statement(table, operation.parameters):
        operations.execute(statement)


@renderers.dispatch_for(SetTableStorageOp)
def _render(autogen_context: AutogenContext, operation: SetTableStorageOp) -> str:
    autogen_context.imports.add("import sqla_jobqueue.alembic")
    schema = f", schema={operation.schema!r}" if operation.schema is not None else ""
    return (
        f"sqla_jobqueue.alembic.set_table_storage({operation.table_name!r}, "
        f"{operation.parameters!r}, previous={operation.previous!r}{schema})"
    )


def _same(wanted: int | float | str | None, found: str | None) -> bool:
    if wanted is None or found is None:
        return wanted is None and found is None
    try:
        return float(wanted) == float(found)
    except ValueError:
        return str(wanted).lower() == found.lower()


def _current(connection: Connection, schema: str, name: str) -> dict[str, str] | None:
    """The table's storage parameters, or ``None`` when it does not exist yet."""
    row = connection.execute(_RELOPTIONS, {"schema": schema, "name": name}).first()
    if row is None:
        return None
    return dict(option.split("=", 1) for option in (row[0] or []))


@comparators.dispatch_for("schema", priority=DispatchPriority.LAST)
def compare_table_storage(
    autogen_context: AutogenContext, upgrade_ops: UpgradeOps, schemas: set[str | None]
) -> PriorityDispatchResult:
    """Emit :class:`SetTableStorageOp` for each existing job table whose storage
    parameters differ from those its model declares."""
    connection = autogen_context.connection
    if connection is None or connection.dialect.name != "postgresql":
        return PriorityDispatchResult.CONTINUE
    default_schema = str(connection.dialect.default_schema_name)
    considered = {default_schema if s is None else s for s in schemas}
    for table in job_tables(autogen_context):
        schema = table.schema or default_schema
        if schema not in considered or not is_job_table(table):
            continue
        if not autogen_context.run_object_filters(table, table.name, "table", False, None):
            continue
        current = _current(connection, schema, table.name)
        if current is None:
            continue  # create_table carries them
        wanted: dict[str, Any] = dict(table.dialect_options["postgresql"]["with"] or {})
        changed = {
            name: value for name, value in wanted.items() if not _same(value, current.get(name))
        }
        if changed:
            previous = {name: current.get(name) for name in changed}
            upgrade_ops.ops.append(
                SetTableStorageOp(table.name, changed, previous=previous, schema=table.schema)
            )
    return PriorityDispatchResult.CONTINUE
