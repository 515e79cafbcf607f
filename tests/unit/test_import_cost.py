"""Enqueueing imports nothing of the worker, the command line or rich.

Each import runs in a fresh interpreter and the test reads its ``sys.modules``: what was
loaded, not how long it took.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

WORKER_SIDE = (
    "sqla_jobqueue.worker",
    "sqlalchemy.ext.asyncio",
    "sqla_jobqueue.listener",
    "sqla_jobqueue.maintenance",
    "sqla_jobqueue.cli",
    "sqla_jobqueue.demo",
    "click",
    "rich",
)


def loaded_after(statement: str) -> set[str]:
    """The modules of ``sys.modules`` after ``statement`` in a fresh interpreter."""
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout))


def worker_side(modules: set[str]) -> list[str]:
    return sorted(
        name for name in modules if any(name == m or name.startswith(m + ".") for m in WORKER_SIDE)
    )


@pytest.mark.parametrize(
    "statement",
    [
        "import sqla_jobqueue",
        "from sqla_jobqueue import Job, JobMixin, JobQueue, JobStatus, Priority, metadata",
        "from sqla_jobqueue import Backoff, Registry, Snooze, Cancel, JobContext, QueueStats",
        "from sqla_jobqueue.queue import JobQueue",
        "from sqla_jobqueue.handlers import Registry",
        "import sqla_jobqueue.errors, sqla_jobqueue.validation",
    ],
)
def test_enqueue_only_imports_leave_the_worker_out(statement: str) -> None:
    assert worker_side(loaded_after(statement)) == []


def test_worker_is_still_importable_from_the_package() -> None:
    statement = (
        "from sqla_jobqueue import Worker\n"
        "import sqla_jobqueue, sqla_jobqueue.worker\n"
        "assert Worker is sqla_jobqueue.worker.Worker is sqla_jobqueue.Worker\n"
        "assert 'Worker' in dir(sqla_jobqueue)"
    )
    assert "sqla_jobqueue.worker" in loaded_after(statement)


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    code = "import sqla_jobqueue\nsqla_jobqueue.Wroker"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "AttributeError: module 'sqla_jobqueue' has no attribute 'Wroker'" in done.stderr
