"""Alembic integration: operations, the autogenerate comparator and renderers.

Import this package in your ``env.py`` (and revision files import it on their own) to make
``op.create_job_queue``, ``op.replace_job_queue`` and ``op.drop_job_queue`` available and
let ``alembic revision --autogenerate`` and ``alembic check`` see job tables' functions.
"""

from __future__ import annotations

from . import compare, render
from .ops import CreateJobQueueOp, DropJobQueueOp, JobQueueOp, ReplaceJobQueueOp
from .template import TEMPLATE_DIRECTORY, copy_template, package_config, upgrade

__all__ = [
    "TEMPLATE_DIRECTORY",
    "CreateJobQueueOp",
    "DropJobQueueOp",
    "JobQueueOp",
    "ReplaceJobQueueOp",
    "compare",
    "copy_template",
    "package_config",
    "render",
    "upgrade",
]
