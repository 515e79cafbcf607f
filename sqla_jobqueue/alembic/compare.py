"""Autogenerate support: find job tables whose database objects are missing or old.

The comparator runs after Alembic's own table comparator (``DispatchPriority.LAST``), so
in a new revision the ``create_table`` of a job table comes first and its
``create_job_queue`` after it. Objects whose table has left the metadata are dropped
*before* Alembic's ``drop_table``, since the claim function returns the table's row type.
"""

from __future__ import annotations

import logging

from alembic.autogenerate import comparators
from alembic.autogenerate.api import AutogenContext
from alembic.operations.ops import UpgradeOps
from alembic.util import DispatchPriority, PriorityDispatchResult
from sqlalchemy import Connection, MetaData, Table, text

from ..model import claim_function_name, is_job_table
from ..sql import CURRENT_VERSION, parse_comment, read_sql
from .ops import CreateJobQueueOp, DropJobQueueOp, ReplaceJobQueueOp

__all__ = ["compare_job_queues"]

log = logging.getLogger(__name__)


def job_tables(autogen_context: AutogenContext) -> list[Table]:
    """The job tables of the environment's target metadata."""
    found = autogen_context.metadata
    metadatas: list[MetaData] = (
        [] if found is None else [found] if isinstance(found, MetaData) else list(found)
    )
    return [
        table for metadata in metadatas for table in metadata.tables.values() if is_job_table(table)
    ]


def _installed(
    connection: Connection, schemas: list[str]
) -> dict[tuple[str, str], list[tuple[str, int]]]:
    """``{(schema, table): [(claim function, version), ...]}`` as recorded in comments."""
    installed: dict[tuple[str, str], list[tuple[str, int]]] = {}
    rows = connection.execute(text(read_sql("installed_job_queues.sql")), {"schemas": schemas})
    for schema, function, comment in rows:
        payload = parse_comment(comment)
        if payload is None:
            continue
        key = (str(payload.get("schema", schema)), str(payload.get("table")))
        installed.setdefault(key, []).append((function, int(str(payload.get("version", 0)))))
    return installed


@comparators.dispatch_for("schema", priority=DispatchPriority.LAST)
def compare_job_queues(
    autogen_context: AutogenContext, upgrade_ops: UpgradeOps, schemas: set[str | None]
) -> PriorityDispatchResult:
    """Emit create, replace and drop operations for the job tables of the metadata.

    Tables the environment's ``include_object``/``include_name`` filters leave out are left
    alone, as Alembic leaves them; so are their installed functions.
    """
    connection = autogen_context.connection
    if connection is None or connection.dialect.name != "postgresql":
        return PriorityDispatchResult.CONTINUE
    default_schema = str(connection.dialect.default_schema_name)

    def resolved(schema: str | None) -> str:
        return schema if schema is not None else default_schema

    def given(schema: str) -> str | None:
        return None if schema == default_schema else schema

    considered = {resolved(schema) for schema in schemas}
    known = {
        (resolved(table.schema), table.name): table
        for table in job_tables(autogen_context)
        if resolved(table.schema) in considered
    }
    wanted = {
        key: table
        for key, table in known.items()
        if autogen_context.run_object_filters(table, table.name, "table", False, None)
    }
    installed = _installed(connection, sorted(considered))

    def drop_first(schema: str, name: str, function: str, version: int) -> None:
        # Before any drop_table: the claim function returns the table's row type.
        upgrade_ops.ops.insert(
            0, DropJobQueueOp(name, schema=given(schema), function_name=function, version=version)
        )

    for (schema, name), table in wanted.items():
        function = claim_function_name(table)
        versions = [v for f, v in installed.get((schema, name), []) if f == function]
        for old_function, old_version in installed.get((schema, name), []):
            if old_function != function:
                drop_first(schema, name, old_function, old_version)
        if not versions:
            upgrade_ops.ops.append(
                CreateJobQueueOp(name, schema=table.schema, function_name=function)
            )
        elif versions[0] < CURRENT_VERSION:
            upgrade_ops.ops.append(
                ReplaceJobQueueOp(
                    name, schema=table.schema, function_name=function, from_version=versions[0]
                )
            )
        elif versions[0] > CURRENT_VERSION:
            log.warning(
                "the job queue of %s.%s is at version %s, newer than this sqla_jobqueue "
                "(%s); upgrade sqla_jobqueue before generating revisions",
                schema,
                name,
                versions[0],
                CURRENT_VERSION,
            )
    for (schema, name), found in installed.items():
        if (schema, name) in known:
            continue
        if not autogen_context.run_name_filters(name, "table", {"schema_name": given(schema)}):
            continue
        for function, version in found:
            drop_first(schema, name, function, version)
    return PriorityDispatchResult.CONTINUE
