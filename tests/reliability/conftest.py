"""Fixtures of the reliability tests: worker processes and the ``effects`` table."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from tests.reliability.battery import FIGURES_FILE, FIGURES_VARIABLE, write_figures
from tests.reliability.worker_process import effects, executions

ROOT = Path(__file__).resolve().parents[2]
Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def effects_table(engine: Engine) -> None:
    effects.metadata.create_all(engine)
    executions.metadata.create_all(engine)


@pytest.fixture
def figures(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The test's figures, written as one JSON line when it ends (see battery.py)."""
    recorded: dict[str, Any] = {}
    yield recorded
    path = os.environ.get(FIGURES_VARIABLE, "").strip()
    target = Path(path) if path else tmp_path_factory.getbasetemp() / "reliability-figures.jsonl"
    write_figures(target, request.node.nodeid, recorded)
    request.config.stash[FIGURES_FILE] = target


def spawner(
    url: URL, logs: Path, kind: str = "threads"
) -> tuple[Spawn, list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    chosen = ["--asyncio"] if kind == "asyncio" else []

    def spawn(*options: str) -> subprocess.Popen[bytes]:
        log = (logs / f"worker-{len(started)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.worker_process",
             url.render_as_string(hide_password=False), *chosen, *options],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        started.append(process)
        return process

    return spawn, started


def reap(started: list[subprocess.Popen[bytes]], logs: Path) -> None:
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
    for log in sorted(logs.glob("worker-*.log")):
        lines = log.read_text(errors="replace").splitlines()
        notable = [line for line in lines if " completed in " not in line]
        print(f"----- {log.name}: {len(lines) - len(notable)} completions, and:")
        print("\n".join(notable[-60:]))


@pytest.fixture(params=["threads", "asyncio"])
def spawn(request: pytest.FixtureRequest, database_url: URL, tmp_path: Path) -> Iterator[Spawn]:
    """Start worker processes on this test's database, of the sync ``Worker`` or of the
    ``AsyncWorker`` (each test runs with both); all are killed at the end."""
    function, started = spawner(database_url, tmp_path, request.param)
    yield function
    reap(started, tmp_path)
