"""Run ``mypy --strict`` on files an application would own (its models, its revisions)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqla_jobqueue

PACKAGE_ROOT = Path(sqla_jobqueue.__file__).resolve().parents[1]


def mypy_strict(*files: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``mypy --strict`` on ``files``, finding sqla_jobqueue in the source tree under test.

    How an editable install exposes the package to mypy is tested on its own
    (``test_editable_install.py``); here only the files' own types matter.
    """
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(cwd / ".mypy_cache"),
            *map(str, files),
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MYPYPATH": str(PACKAGE_ROOT)},
    )
