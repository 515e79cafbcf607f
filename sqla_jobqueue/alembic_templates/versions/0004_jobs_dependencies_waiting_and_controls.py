"""jobs that depend on other jobs (waiting), waiting for a job to finish (awaited), and the
controls table (paused job types)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 22:30:00.000000

Adding columns with a constant default or none rewrites nothing (PostgreSQL 11 and
later). The status CHECK is replaced NOT VALID and then validated, which reads the table
without blocking writes. On a large table, build the index first without blocking
writes, and this revision then finds it (if_not_exists):

    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_jobs_waiting ON jobs
    USING gin (depends_on) WHERE status = 'waiting';
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import sqla_jobqueue.alembic

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "'pending', 'claimed', 'running', 'completed', 'failed', 'cancelled'"


def upgrade() -> None:
    op.create_table(
        "jobs_controls",
        sa.Column("job_type", sa.String(length=50), nullable=False),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("job_type"),
    )
    op.add_column("jobs", sa.Column("depends_on", postgresql.ARRAY(sa.Uuid()), nullable=True))
    op.add_column(
        "jobs",
        sa.Column("awaited", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.execute(
        "ALTER TABLE jobs DROP CONSTRAINT jobs_status_check, ADD CONSTRAINT jobs_status_check "
        f"CHECK (status IN ('waiting', {STATUSES})) NOT VALID"
    )
    op.execute("ALTER TABLE jobs VALIDATE CONSTRAINT jobs_status_check")
    op.create_index(
        "ix_jobs_waiting",
        "jobs",
        ["depends_on"],
        unique=False,
        postgresql_using="gin",
        postgresql_where=sa.text("status = 'waiting'"),
        if_not_exists=True,
    )
    sqla_jobqueue.alembic.replace_job_queue(
        "jobs", function_name="claim_job_batch", version=3, from_version=2
    )


def downgrade() -> None:
    sqla_jobqueue.alembic.replace_job_queue(
        "jobs", function_name="claim_job_batch", version=2, from_version=3
    )
    op.drop_index(
        "ix_jobs_waiting",
        table_name="jobs",
        postgresql_using="gin",
        postgresql_where=sa.text("status = 'waiting'"),
    )
    # Jobs still waiting could never run under the older version: they end cancelled.
    op.execute(
        "UPDATE jobs SET status = 'cancelled', completed_at = statement_timestamp(), "
        "last_error = 'cancelled: the database was downgraded below jobs that wait for others' "
        "WHERE status = 'waiting'"
    )
    op.execute(
        "ALTER TABLE jobs DROP CONSTRAINT jobs_status_check, ADD CONSTRAINT jobs_status_check "
        f"CHECK (status IN ({STATUSES}))"
    )
    op.drop_column("jobs", "awaited")
    op.drop_column("jobs", "depends_on")
    op.drop_table("jobs_controls")
