"""Renderers that write the job-queue operations into revision files."""

from __future__ import annotations

from alembic.autogenerate import renderers
from alembic.autogenerate.api import AutogenContext

from .ops import CreateJobQueueOp, DropJobQueueOp, JobQueueOp, ReplaceJobQueueOp

__all__ = ["render_job_queue_op"]

_IMPORT = "import sqla_jobqueue.alembic  # noqa: F401  (registers op.*_job_queue)"


def _render(autogen_context: AutogenContext, verb: str, op: JobQueueOp) -> str:
    autogen_context.imports.add(_IMPORT)
    args = [repr(op.table_name)]
    if op.schema is not None:
        args.append(f"schema={op.schema!r}")
    args.append(f"function_name={op.function_name!r}")
    if isinstance(op, ReplaceJobQueueOp):
        args.append(f"from_version={op.from_version!r}")
    args.append(f"version={op.version!r}")
    return f"op.{verb}({', '.join(args)})"


@renderers.dispatch_for(CreateJobQueueOp)
def render_job_queue_op(autogen_context: AutogenContext, op: CreateJobQueueOp) -> str:
    """``op.create_job_queue(...)``, with the import that registers it."""
    return _render(autogen_context, "create_job_queue", op)


@renderers.dispatch_for(DropJobQueueOp)
def _render_drop(autogen_context: AutogenContext, op: DropJobQueueOp) -> str:
    return _render(autogen_context, "drop_job_queue", op)


@renderers.dispatch_for(ReplaceJobQueueOp)
def _render_replace(autogen_context: AutogenContext, op: ReplaceJobQueueOp) -> str:
    return _render(autogen_context, "replace_job_queue", op)
