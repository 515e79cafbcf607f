"""The job-queue operations render, reverse and diff without a database."""

from __future__ import annotations

from alembic.autogenerate import render_python_code
from alembic.operations.ops import UpgradeOps

from sqla_jobqueue.alembic import CreateJobQueueOp, DropJobQueueOp, ReplaceJobQueueOp


def test_each_operation_renders_with_its_arguments() -> None:
    ops = [
        CreateJobQueueOp("jobs"),
        DropJobQueueOp("tasks", schema="work", function_name="take_tasks", version=1),
        ReplaceJobQueueOp("jobs", from_version=1, version=2),
    ]
    code = render_python_code(UpgradeOps(ops=ops))
    assert "op.create_job_queue('jobs', function_name='claim_job_batch', version=1)" in code
    assert (
        "op.drop_job_queue('tasks', schema='work', function_name='take_tasks', version=1)" in code
    )
    assert (
        "op.replace_job_queue('jobs', function_name='claim_job_batch', version=2, "
        "from_version=1)" in code
    )


def test_reverse_and_diff_tuples() -> None:
    create = CreateJobQueueOp("tasks", schema="work")
    drop = create.reverse()
    assert isinstance(drop, DropJobQueueOp) and drop.reverse().to_diff_tuple() == (
        create.to_diff_tuple()
    )
    assert create.to_diff_tuple() == (
        "create_job_queue", "tasks", "work", "claim_tasks_batch", 1,
    )  # fmt: skip
    replace = ReplaceJobQueueOp("jobs", from_version=1, version=2)
    back = replace.reverse()
    assert (back.from_version, back.version) == (2, 1)
    assert back.to_diff_tuple()[0] == "replace_job_queue"
