"""Fixtures of the acceptance tests: the command line against this test's own database.

Each test's database is handed over through ``DATABASE_URL``; tests of the embedded
default use ``embedded_env``: no DATABASE_URL, a private ``XDG_DATA_HOME`` and
``XDG_RUNTIME_DIR`` (and a private ``--data-dir``), so they never touch the user's own
embedded server nor wait for another one, and every server they start is stopped at the end.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from .running import (
    CliRunner,
    base_environment,
    embedded_environment,
    run_cli,
    stop_embedded_servers,
    url_text,
)


@pytest.fixture
def cli_env(database_url: URL) -> dict[str, str]:
    """An environment whose DATABASE_URL is this test's own migrated database."""
    return base_environment(DATABASE_URL=url_text(database_url))


@pytest.fixture
def cli(cli_env: dict[str, str]) -> CliRunner:
    """``cli("status", "--json")`` runs the command against this test's database."""

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=cli_env, timeout=timeout)

    return run


@pytest.fixture
def embedded_root() -> Iterator[Path]:
    """A directory of this test's own for embedded servers' data, outside pytest's
    ``tmp_path``: every pytest process that starts makes its temporary root private to
    root again, which the server's own user (when tests run as root) must traverse."""
    with tempfile.TemporaryDirectory(prefix="sqla_jobqueue_embedded_") as directory:
        yield Path(directory)


@pytest.fixture
def embedded_env(embedded_root: Path) -> Iterator[dict[str, str]]:
    """An environment for the embedded default, private to this test (see
    :func:`embedded_environment`); embedded servers left under its root are stopped."""
    env = embedded_environment(embedded_root)
    try:
        yield env
    finally:
        stop_embedded_servers(embedded_root, env)
