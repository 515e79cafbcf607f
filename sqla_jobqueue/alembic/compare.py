"""Autogenerate support: find job tables whose database objects are missing or old.

The comparator runs after Alembic's own table comparator (``DispatchPriority.LAST``), so
in a new revision the ``create_table`` of a job table comes first and its
``create_job_queue`` after it. Objects whose table has left the metadata are dropped
*before* Alembic's ``drop_table``, since the claim function returns the table's row type.
"""

from __future__ import annotations

import logging
from typing import Any

from alembic.autogenerate import comparators
from alembic.autogenerate.api import AutogenContext
from alembic.operations.ops import UpgradeOps
from alembic.util import DispatchPriority, PriorityDispatchResult
from sqlalchemy import MetaData, Table, text

from ..model import claim_function_name, is_job_table
from ..sql import CURRENT_VERSION, parse_comment, read_sql
from .ops import CreateJobQueueOp, DropJobQueueOp, ReplaceJobQueueOp

__all__ = ["compare_job_queues"]

log = logging.getLogger(__name__)


def _job_tables(autogen_context: AutogenContext) -> list[Table]:
    found = autogen_context.metadata
    metadatas: list[MetaData] = (
        [] if found is None else [found] if isinstance(found, MetaData) else list(found)
    )
    return [
        table
        for metadata in metadatas
        for table in metadata.tables.values()
        if is_job_table(table)
        and autogen_context.run_object_filters(table, table.name, "table", False, None)
    ]


@comparators.dispatch_for("schema", priority=DispatchPriority.LAST)
def compare_job_queues(
    autogen_context: AutogenContext, upgrade_ops: UpgradeOps, schemas: set[str | None]
) -> PriorityDispatchResult:
    """Emit create, replace and drop operations for the job tables of the metadata."""
    connection = autogen_context.connection
    if connection is None or connection.dialect.name != "postgresql":
        return PriorityDispatchResult.CONTINUE
    default_schema = connection.dialect.default_schema_name

    def resolved(schema: str | None) -> str:
        return schema if schema is not None else str(default_schema)

    wanted = {
        (resolved(table.schema), table.name): table
        for table in _job_tables(autogen_context)
        if table.schema in schemas or (table.schema == default_schema and None in schemas)
    }
    installed: dict[tuple[str, str], dict[str, Any]] = {}
    rows = connection.execute(
        text(read_sql("installed_job_queues.sql")),
        {"schemas": sorted(resolved(s) for s in schemas)},
    )
    for schema, function, comment in rows:
        payload = parse_comment(comment)
        if payload is None:
            continue
        key = (str(payload.get("schema", schema)), str(payload.get("table")))
        installed[key] = {"function": function, "version": int(str(payload.get("version", 0)))}

    for (schema, name), table in wanted.items():
        function = claim_function_name(table)
        found = installed.get((schema, name))
        if found is None or found["function"] != function:
            upgrade_ops.ops.append(
                CreateJobQueueOp(name, schema=table.schema, function_name=function)
            )
        elif found["version"] < CURRENT_VERSION:
            upgrade_ops.ops.append(
                ReplaceJobQueueOp(
                    name,
                    schema=table.schema,
                    function_name=function,
                    from_version=found["version"],
                )
            )
        elif found["version"] > CURRENT_VERSION:
            log.warning(
                "the job queue of %s.%s is at version %s, newer than this sqla_jobqueue "
                "(%s); upgrade sqla_jobqueue before generating revisions",
                schema,
                name,
                found["version"],
                CURRENT_VERSION,
            )
    for (schema, name), found in installed.items():
        if (schema, name) in wanted:
            continue
        given = None if schema == default_schema else schema
        upgrade_ops.ops.insert(
            0,
            DropJobQueueOp(
                name, schema=given, function_name=found["function"], version=found["version"]
            ),
        )
    return PriorityDispatchResult.CONTINUE
