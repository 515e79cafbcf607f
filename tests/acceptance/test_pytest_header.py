"""The suite's pytest header says which PostgreSQL it found, and never its password."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import URL

from sqla_jobqueue.testing.server import TEST_URL_VARIABLE, server_version, shown_url

ROOT = Path(__file__).resolve().parents[2]


def test_the_header_names_the_server_and_its_version_and_hides_the_password(
    server_url: URL,
) -> None:
    secret = "not-to-be-printed"
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    env.pop("SQLA_JOBQUEUE_TEST_SERVER", None)  # the URL below names the server
    # Trust authentication ignores the password; the report must not show it anyway.
    env[TEST_URL_VARIABLE] = server_url.set(password=secret).render_as_string(hide_password=False)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
    run = subprocess.run(
        [*command, "tests/integration/test_smoke.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    version = server_version(server_url)
    where = f"PostgreSQL {version} at {shown_url(server_url)}"
    assert f"sqla_jobqueue: {where} (from ${TEST_URL_VARIABLE})" in output.splitlines()
    assert f"sqla_jobqueue: the tests ran against {where} (environment)" in output
    assert secret not in output
