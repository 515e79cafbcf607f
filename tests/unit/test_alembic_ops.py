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


def offline_sql(*operations_to_run: GrantJobQueueOp | RevokeJobQueueOp) -> list[str]:
    """The statements the operations write in offline mode (``alembic upgrade --sql``)."""
    output = io.StringIO()
    context = MigrationContext.configure(
        dialect_name="postgresql", opts={"as_sql": True, "output_buffer": output}
    )
    operations = Operations(context)
    for operation in operations_to_run:
        operations.invoke(operation)
    statements = output.getvalue().split(";\n\n")
    assert statements[-1] == ""
    return statements[:-1]


WORKER_UPDATES = (
    "UPDATE (status, worker_id, claimed_at, started_at, heartbeat_at, completed_at, attempts, "
    "max_attempts, run_at, progress, current_stage, events_count, last_error, result, crashes)"
)


def test_the_grant_operations_write_their_sql_offline_and_reverse() -> None:
    grant = GrantJobQueueOp("tasks", enqueuer="web", worker="work", schema="app")
    enqueuer = (
        "SELECT (id, job_type, status, unique_key, created_at, run_at), INSERT (id, job_type, "
        "data, priority, max_attempts, run_at, unique_key, depends_on, concurrency_key), "
        "UPDATE (awaited) ON TABLE app.tasks"
    )
    limited = "app.tasks_claim_within_limits(varchar, varchar[], integer, varchar, boolean)"
    controls = "SELECT, UPDATE (rate_tokens, rate_refilled_at) ON TABLE app.tasks_controls"
    assert offline_sql(grant, grant.reverse()) == [
        f"GRANT {enqueuer} TO web",
        f"GRANT SELECT, {WORKER_UPDATES}, DELETE ON TABLE app.tasks TO work",
        "GRANT EXECUTE ON FUNCTION app.claim_tasks_batch(varchar, varchar[], integer) TO work",
        f"GRANT EXECUTE ON FUNCTION {limited} TO work",
        "GRANT EXECUTE ON FUNCTION app.tasks_settle_waiting(uuid, integer) TO work",
        f"GRANT {controls} TO work",
        f"REVOKE {enqueuer} FROM web",
        "REVOKE EXECUTE ON FUNCTION app.claim_tasks_batch(varchar, varchar[], integer) FROM work",
        f"REVOKE EXECUTE ON FUNCTION {limited} FROM work",
        "REVOKE EXECUTE ON FUNCTION app.tasks_settle_waiting(uuid, integer) FROM work",
        f"REVOKE {controls} FROM work",
        f"REVOKE SELECT, {WORKER_UPDATES}, DELETE ON TABLE app.tasks FROM work",
    ]
    back = grant.reverse()
    assert isinstance(back, RevokeJobQueueOp)
    assert back.reverse().to_diff_tuple() == grant.to_diff_tuple() == (
        "grant_job_queue", "tasks", "web", "work", "app", "claim_tasks_batch",
        CURRENT_GRANTS_VERSION,
    )  # fmt: skip


def test_a_grant_of_version_2_writes_what_it_always_wrote() -> None:
    """A revision written before version 3 keeps granting version 2: no settle function
    and no controls table, which its database does not have."""
    grant = GrantJobQueueOp("tasks", enqueuer="web", worker="work", schema="app", version=2)
    enqueuer = (
        "SELECT (id, job_type, status, unique_key, created_at, run_at), INSERT (id, job_type, "
        "data, priority, max_attempts, run_at, unique_key) ON TABLE app.tasks"
    )
    assert offline_sql(grant, grant.reverse()) == [
        f"GRANT {enqueuer} TO web",
        f"GRANT SELECT, {WORKER_UPDATES}, DELETE ON TABLE app.tasks TO work",
        "GRANT EXECUTE ON FUNCTION app.claim_tasks_batch(varchar, varchar[], integer) TO work",
        f"REVOKE {enqueuer} FROM web",
        "REVOKE EXECUTE ON FUNCTION app.claim_tasks_batch(varchar, varchar[], integer) FROM work",
        f"REVOKE SELECT, {WORKER_UPDATES}, DELETE ON TABLE app.tasks FROM work",
    ]


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
