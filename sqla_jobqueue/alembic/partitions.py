"""Autogenerate leaves the archive's day partitions alone.

The archiver (:mod:`sqla_jobqueue.maintenance.archiver`) creates and drops the partitions
of a :class:`~sqla_jobqueue.archive.JobArchiveMixin` table at run time; they are in no
metadata, so Alembic's table comparator would write a ``drop_table`` (and ``drop_index``)
for each one. This comparator runs after it and takes those operations out again: any
table that is a partition of an archive table of the metadata.
"""

from __future__ import annotations

from alembic.autogenerate import comparators
from alembic.autogenerate.api import AutogenContext
from alembic.operations.ops import DropTableOp, ModifyTableOps, UpgradeOps
from alembic.util import DispatchPriority, PriorityDispatchResult
from sqlalchemy import Connection, MetaData, text

from ..archive import is_archive_table
from ..sql import format_table

__all__ = ["keep_archive_partitions"]

_PARTITIONS = text(
    "SELECT n.nspname, c.relname FROM pg_inherits AS i "
    "JOIN pg_class AS c ON c.oid = i.inhrelid "
    "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
    "WHERE i.inhparent = to_regclass(:parent)"
)


def _partitions(connection: Connection, metadatas: list[MetaData]) -> set[tuple[str, str]]:
    """``(schema, name)`` of every partition of an archive table of the metadata."""
    found: set[tuple[str, str]] = set()
    for metadata in metadatas:
        for table in metadata.tables.values():
            if is_archive_table(table):
                rows = connection.execute(_PARTITIONS, {"parent": format_table(table)})
                found.update((str(schema), str(name)) for schema, name in rows)
    return found


@comparators.dispatch_for("schema", priority=DispatchPriority.LAST)
def keep_archive_partitions(
    autogen_context: AutogenContext, upgrade_ops: UpgradeOps, schemas: set[str | None]
) -> PriorityDispatchResult:
    """Remove the operations Alembic wrote on the archives' partitions."""
    connection = autogen_context.connection
    given = autogen_context.metadata
    if connection is None or connection.dialect.name != "postgresql" or given is None:
        return PriorityDispatchResult.CONTINUE
    metadatas = [given] if isinstance(given, MetaData) else list(given)
    partitions = _partitions(connection, metadatas)
    if not partitions:
        return PriorityDispatchResult.CONTINUE
    default_schema = str(connection.dialect.default_schema_name)

    def on_a_partition(operation: object) -> bool:
        if not isinstance(operation, (DropTableOp, ModifyTableOps)):
            return False
        return (operation.schema or default_schema, operation.table_name) in partitions

    upgrade_ops.ops[:] = [op for op in upgrade_ops.ops if not on_a_partition(op)]
    return PriorityDispatchResult.CONTINUE
