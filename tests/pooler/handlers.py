"""The handler of the pooler tests: a no-op that records each run outside the database.

Each run appends ``<job id>\\n`` to ``$SQLA_JOBQUEUE_RUNS/<pid>``, one ``write`` per line on
a file opened for appending, so the test counts the runs of every job without adding a
transaction per job to the pool it measures.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqla_jobqueue import JobContext, Registry

RUNS_VARIABLE = "SQLA_JOBQUEUE_RUNS"

registry = Registry()


@registry.handler("noop")
def noop(ctx: JobContext) -> None:
    record = Path(os.environ[RUNS_VARIABLE]) / str(os.getpid())
    descriptor = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, f"{ctx.job_id}\n".encode())
    finally:
        os.close(descriptor)


def runs(directory: Path) -> list[str]:
    """Every run recorded in ``directory``: a job id per run."""
    return [line for path in directory.iterdir() for line in path.read_text().splitlines()]
