"""Renderers that write the job-queue operations into revision files."""

from __future__ import annotations

from alembic.autogenerate import renderers
from alembic.autogenerate.api import AutogenContext

from .ops import CreateJobQueueOp, DropJobQueueOp, JobQueueOp, ReplaceJobQueueOp

__all__ = ["render_job_queue_op"]

_IMPORT = "import sqla_jobqueue.alembic  # noqa: F401  (registers op.*_job_queue)"


def _render(autogen_context: AutogenContext, op: JobQueueOp) -> str:
    autogen_context.imports.add(_IMPORT)
    args = [repr(op.table_name)] + [
        f"{name}={value!r}"
        for name, value in op.arguments().items()
        if not (name == "schema" and value is None)
    ]
    return f"op.{op.verb}({', '.join(args)})"


@renderers.dispatch_for(CreateJobQueueOp)
def render_job_queue_op(autogen_context: AutogenContext, op: CreateJobQueueOp) -> str:
    """``op.create_job_queue(...)`` (and the drop and replace operations), with the import
    that registers them."""
    return _render(autogen_context, op)


renderers.dispatch_for(DropJobQueueOp)(render_job_queue_op)
renderers.dispatch_for(ReplaceJobQueueOp)(render_job_queue_op)
