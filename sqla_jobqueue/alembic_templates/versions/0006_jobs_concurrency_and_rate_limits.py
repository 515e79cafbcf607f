"""limits on job types, kept by the claim: the controls table's limit columns, the jobs'
concurrency key and its two indexes, and job-queue version 4

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 02:00:00.000000

Adding columns with no default rewrites nothing. The two indexes hold only jobs that have
a concurrency key, so on a table where none has one they are built at once; otherwise,
build them first without blocking writes, and this revision then finds them
(if_not_exists):

    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_jobs_keyed_pending ON jobs
    (job_type, concurrency_key, created_at, id)
    WHERE status = 'pending' AND concurrency_key IS NOT NULL;
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_jobs_keyed_held ON jobs
    (concurrency_key, job_type)
    WHERE status IN ('claimed', 'running') AND concurrency_key IS NOT NULL;
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sqla_jobqueue.alembic

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYED_PENDING = "status = 'pending' AND concurrency_key IS NOT NULL"
KEYED_HELD = "status IN ('claimed', 'running') AND concurrency_key IS NOT NULL"


def upgrade() -> None:
    op.add_column("jobs_controls", sa.Column("max_running", sa.Integer(), nullable=True))
    op.add_column("jobs_controls", sa.Column("max_running_per_key", sa.Integer(), nullable=True))
    op.add_column("jobs_controls", sa.Column("rate_limit", sa.Integer(), nullable=True))
    op.add_column("jobs_controls", sa.Column("rate_period", sa.Interval(), nullable=True))
    op.add_column("jobs_controls", sa.Column("rate_tokens", sa.Double(), nullable=True))
    op.add_column(
        "jobs_controls",
        sa.Column("rate_refilled_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_check_constraint(
        "jobs_controls_max_running_check", "jobs_controls", "max_running >= 1"
    )
    op.create_check_constraint(
        "jobs_controls_max_running_per_key_check", "jobs_controls", "max_running_per_key >= 1"
    )
    op.create_check_constraint(
        "jobs_controls_rate_check",
        "jobs_controls",
        "(rate_limit IS NULL) = (rate_period IS NULL) "
        "AND rate_limit >= 1 AND rate_period > interval '0'",
    )
    op.add_column("jobs", sa.Column("concurrency_key", sa.String(length=255), nullable=True))
    op.create_index(
        "ix_jobs_keyed_pending",
        "jobs",
        ["job_type", "concurrency_key", "created_at", "id"],
        unique=False,
        postgresql_where=sa.text(KEYED_PENDING),
        if_not_exists=True,
    )
    op.create_index(
        "ix_jobs_keyed_held",
        "jobs",
        ["concurrency_key", "job_type"],
        unique=False,
        postgresql_where=sa.text(KEYED_HELD),
        if_not_exists=True,
    )
    sqla_jobqueue.alembic.replace_job_queue(
        "jobs", function_name="claim_job_batch", version=4, from_version=3
    )


def downgrade() -> None:
    sqla_jobqueue.alembic.replace_job_queue(
        "jobs", function_name="claim_job_batch", version=3, from_version=4
    )
    op.drop_index("ix_jobs_keyed_held", table_name="jobs", postgresql_where=sa.text(KEYED_HELD))
    op.drop_index(
        "ix_jobs_keyed_pending", table_name="jobs", postgresql_where=sa.text(KEYED_PENDING)
    )
    op.drop_column("jobs", "concurrency_key")
    op.drop_constraint("jobs_controls_rate_check", "jobs_controls", type_="check")
    op.drop_constraint("jobs_controls_max_running_per_key_check", "jobs_controls", type_="check")
    op.drop_constraint("jobs_controls_max_running_check", "jobs_controls", type_="check")
    for column in (
        "rate_refilled_at",
        "rate_tokens",
        "rate_period",
        "rate_limit",
        "max_running_per_key",
        "max_running",
    ):
        op.drop_column("jobs_controls", column)
