"""The reliability battery's two tiers and its figures.

The quick tier runs in CI. ``SQLA_JOBQUEUE_SOAK=1`` runs the same tests bigger and longer:
:func:`sized` picks each test's numbers for the tier. Every battery test records its figures
(jobs, kills, restarts, duplicates, lost, seconds, ...) with the ``figures`` fixture, which
writes them as one JSON line to the file named by ``SQLA_JOBQUEUE_FIGURES`` (by default
``reliability-figures.jsonl`` in pytest's base temporary directory); the end of the run
names the file. docs/reliability.md shows the figures of the last soak run.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

__all__ = ["FIGURES_FILE", "FIGURES_VARIABLE", "SOAK", "SOAK_VARIABLE", "sized", "write_figures"]

SOAK_VARIABLE = "SQLA_JOBQUEUE_SOAK"
FIGURES_VARIABLE = "SQLA_JOBQUEUE_FIGURES"
SOAK = os.environ.get(SOAK_VARIABLE, "").strip() not in ("", "0")
FIGURES_FILE = pytest.StashKey[Path]()
"""Where this run's figures went (set once a battery test wrote some)."""


def sized(quick: int, soak: int) -> int:
    """``quick`` in the quick tier, ``soak`` in the soak tier."""
    return soak if SOAK else quick


def write_figures(path: Path, test: str, figures: dict[str, Any]) -> None:
    """Append one JSON line: the test, its tier, when and where it ran, and its figures."""
    line = {
        "test": test,
        "tier": "soak" if SOAK else "quick",
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({os.cpu_count()} cores)",
        **figures,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(line, default=str) + "\n")
