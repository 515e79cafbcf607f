"""Alembic integration: operations, the autogenerate comparator and renderers.

Import this package in your ``env.py`` to let ``alembic revision --autogenerate`` and
``alembic check`` see job tables' functions, and wrap ``context.run_migrations()`` in
:func:`migrating_alone`. Revisions call :func:`create_job_queue`, :func:`replace_job_queue`,
:func:`drop_job_queue`, :func:`grant_job_queue`, :func:`revoke_job_queue` and
:func:`set_table_storage` (importing
this package on their own); the same operations are registered on Alembic's ``op`` for
revisions written before.
"""

from __future__ import annotations

from . import compare, partitions, render, storage
from .guard import MigrationLockTimeout, migrating_alone, migration_lock_timeout
from .ops import (
    CreateJobQueueOp,
    DropJobQueueOp,
    GrantJobQueueOp,
    JobQueueOp,
    ReplaceJobQueueOp,
    RevokeJobQueueOp,
    create_job_queue,
    drop_job_queue,
    grant_job_queue,
    replace_job_queue,
    revoke_job_queue,
)
from .storage import SetTableStorageOp, set_table_storage
from .template import TEMPLATE_DIRECTORY, copy_template, package_config, upgrade

__all__ = [
    "TEMPLATE_DIRECTORY",
    "CreateJobQueueOp",
    "DropJobQueueOp",
    "GrantJobQueueOp",
    "JobQueueOp",
    "MigrationLockTimeout",
    "ReplaceJobQueueOp",
    "RevokeJobQueueOp",
    "SetTableStorageOp",
    "compare",
    "copy_template",
    "create_job_queue",
    "drop_job_queue",
    "grant_job_queue",
    "migrating_alone",
    "migration_lock_timeout",
    "package_config",
    "partitions",
    "render",
    "replace_job_queue",
    "revoke_job_queue",
    "set_table_storage",
    "storage",
    "upgrade",
]
