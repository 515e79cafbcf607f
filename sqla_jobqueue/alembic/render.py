"""Renderers that write the job-queue operations into revision files.

A revision calls them as ``sqla_jobqueue.alembic.create_job_queue(...)`` rather than
``op.create_job_queue(...)``: the call is typed, so the revision passes ``mypy --strict``.
"""

from __future__ import annotations

from alembic.autogenerate import renderers
from alembic.autogenerate.api import AutogenContext

from .ops import CreateJobQueueOp, DropJobQueueOp, JobQueueOp, ReplaceJobQueueOp

__all__ = ["render_job_queue_op"]

_IMPORT = "import sqla_jobqueue.alembic"


def _render(autogen_context: AutogenContext, op: JobQueueOp) -> str:
    autogen_context.imports.add(_IMPORT)
    args = [repr(op.table_name)] + [
        f"{name}={value!r}"
        for name, value in op.arguments().items()
        if not (name == "schema" and value is None)
    ]
    return f"sqla_jobqueue.alembic.{op.verb}({', '.join(args)})"


@renderers.dispatch_for(CreateJobQueueOp)
def render_job_queue_op(autogen_context: AutogenContext, op: CreateJobQueueOp) -> str:
    """``sqla_jobqueue.alembic.create_job_queue(...)`` (and the drop and replace
    operations), with the import they need."""
    return _render(autogen_context, op)


renderers.dispatch_for(DropJobQueueOp)(render_job_queue_op)
renderers.dispatch_for(ReplaceJobQueueOp)(render_job_queue_op)
