"""Alembic integration: operations, the autogenerate comparator and renderers.

Import this package in your ``env.py`` to let ``alembic revision --autogenerate`` and
``alembic check`` see job tables' functions. Revisions call :func:`create_job_queue`,
:func:`replace_job_queue` and :func:`drop_job_queue` (importing this package on their own);
the same operations are registered on Alembic's ``op`` for revisions written before.
"""

from __future__ import annotations

from . import compare, render
from .ops import (
    CreateJobQueueOp,
    DropJobQueueOp,
    JobQueueOp,
    ReplaceJobQueueOp,
    create_job_queue,
    drop_job_queue,
    replace_job_queue,
)
from .template import TEMPLATE_DIRECTORY, copy_template, package_config, upgrade

__all__ = [
    "TEMPLATE_DIRECTORY",
    "CreateJobQueueOp",
    "DropJobQueueOp",
    "JobQueueOp",
    "ReplaceJobQueueOp",
    "compare",
    "copy_template",
    "create_job_queue",
    "drop_job_queue",
    "package_config",
    "render",
    "replace_job_queue",
    "upgrade",
]
