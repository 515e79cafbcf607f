"""What the command line loads: nothing of it for enqueueing, no rich for the worker."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.unit.test_import_cost import loaded_after


@pytest.mark.parametrize(
    "statement",
    [
        "import sqla_jobqueue",
        "from sqla_jobqueue import Job, JobMixin, JobQueue, JobStatus, Priority, metadata",
        "from sqla_jobqueue.queue import JobQueue",
    ],
)
def test_enqueueing_loads_neither_click_nor_the_command_line(statement: str) -> None:
    loaded = loaded_after(statement)
    assert not {"click", "sqla_jobqueue.cli"} & loaded


def test_the_command_line_loads_no_rich_until_it_prints_a_table() -> None:
    loaded = loaded_after("from sqla_jobqueue.cli import cli, main")
    assert "click" in loaded
    assert not [name for name in loaded if name == "rich" or name.startswith("rich.")]


def test_python_m_runs_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sqla_jobqueue.cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("sqla-jobqueue ")
