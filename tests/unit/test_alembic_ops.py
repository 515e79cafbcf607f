"""The job-queue operations render, reverse and diff without a database."""

from __future__ import annotations

import io
from typing import Any

import pytest
from alembic.autogenerate import render_python_code
from alembic.autogenerate.api import AutogenContext
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.operations.ops import UpgradeOps

from sqla_jobqueue.alembic import CreateJobQueueOp, DropJobQueueOp, ReplaceJobQueueOp
from sqla_jobqueue.alembic.ops import GrantJobQueueOp, RevokeJobQueueOp
from sqla_jobqueue.alembic.render import render_job_queue_op
from sqla_jobqueue.grants import CURRENT_GRANTS_VERSION
from sqla_jobqueue.sql import CURRENT_VERSION


def test_each_operation_renders_as_a_typed_call_with_its_arguments() -> None:
    ops = [
        CreateJobQueueOp("jobs"),
        DropJobQueueOp("tasks", schema="work", function_name="take_tasks", version=1),
        ReplaceJobQueueOp("jobs", from_version=1, version=2),
    ]
    code = render_python_code(UpgradeOps(ops=ops))
    lines = [line.strip() for line in code.splitlines() if "job_queue" in line]
    assert lines == [
        "sqla_jobqueue.alembic.create_job_queue('jobs', function_name='claim_job_batch', "
        f"version={CURRENT_VERSION})",
        "sqla_jobqueue.alembic.drop_job_queue('tasks', schema='work', function_name='take_tasks', "
        "version=1)",
        "sqla_jobqueue.alembic.replace_job_queue('jobs', function_name='claim_job_batch', "
        "version=2, from_version=1)",
    ]


def test_reverse_and_diff_tuples() -> None:
    create = CreateJobQueueOp("tasks", schema="work")
    drop = create.reverse()
    assert isinstance(drop, DropJobQueueOp) and drop.reverse().to_diff_tuple() == (
        create.to_diff_tuple()
    )
    assert create.to_diff_tuple() == (
        "create_job_queue", "tasks", "work", "claim_tasks_batch", CURRENT_VERSION,
    )  # fmt: skip
    replace = ReplaceJobQueueOp("jobs", from_version=1, version=2)
    back = replace.reverse()
    assert (back.from_version, back.version) == (2, 1)
    assert back.to_diff_tuple()[0] == "replace_job_queue"


def test_the_rendered_call_brings_its_import() -> None:
    context = AutogenContext(
        MigrationContext.configure(dialect_name="postgresql"), autogenerate=False
    )
    render_job_queue_op(context, CreateJobQueueOp("jobs"))
    assert context.imports == {"import sqla_jobqueue.alembic"}


def test_the_grant_operations_write_their_sql_offline_and_reverse() -> None:
    output = io.StringIO()
    context = MigrationContext.configure(
        dialect_name="postgresql", opts={"as_sql": True, "output_buffer": output}
    )
    operations = Operations(context)
    grant = GrantJobQueueOp("tasks", enqueuer="web", worker="work", schema="app")
    operations.invoke(grant)
    operations.invoke(grant.reverse())
    assert output.getvalue().split(";\n\n") == [
        "GRANT SELECT (id, job_type, status, unique_key, created_at, run_at), INSERT (id, "
        "job_type, data, priority, max_attempts, run_at, unique_key) ON TABLE app.tasks TO web",
        "GRANT SELECT, UPDATE (status, worker_id, claimed_at, started_at, heartbeat_at, "
        "completed_at, attempts, max_attempts, run_at, progress, current_stage, events_count, "
        "last_error, result, crashes), DELETE ON TABLE app.tasks TO work",
        "GRANT EXECUTE ON FUNCTION app.claim_tasks_batch(varchar, varchar[], integer) TO work",
        "REVOKE SELECT (id, job_type, status, unique_key, created_at, run_at), INSERT (id, "
        "job_type, data, priority, max_attempts, run_at, unique_key) ON TABLE app.tasks FROM web",
        "REVOKE EXECUTE ON FUNCTION app.claim_tasks_batch(varchar, varchar[], integer) FROM work",
        "REVOKE SELECT, UPDATE (status, worker_id, claimed_at, started_at, heartbeat_at, "
        "completed_at, attempts, max_attempts, run_at, progress, current_stage, events_count, "
        "last_error, result, crashes), DELETE ON TABLE app.tasks FROM work",
        "",
    ]
    back = grant.reverse()
    assert isinstance(back, RevokeJobQueueOp)
    assert back.reverse().to_diff_tuple() == grant.to_diff_tuple() == (
        "grant_job_queue", "tasks", "web", "work", "app", "claim_tasks_batch",
        CURRENT_GRANTS_VERSION,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        ({}, "name at least one role"),
        ({"worker": ""}, "must be a role name"),
        ({"worker": "w" * 64}, "at most 63 bytes"),
    ],
)
def test_a_grant_without_a_valid_role_is_refused(roles: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GrantJobQueueOp("jobs", **roles)
