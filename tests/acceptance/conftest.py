"""Fixtures of the acceptance tests: the command line against this test's own database.

Each test's database is handed over through ``DATABASE_URL``; tests of the embedded
default remove it and pass a private ``--data-dir`` (and ``XDG_DATA_HOME``), so they never
touch the user's own embedded server.
"""

from __future__ import annotations

import subprocess

import pytest
from sqlalchemy.engine import URL

from .running import CliRunner, base_environment, run_cli, url_text


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
