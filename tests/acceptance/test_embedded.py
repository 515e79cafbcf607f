"""The embedded PostgreSQL default: one line saying so, reuse, keep, stop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .running import assert_one_line_error, run_cli

pytestmark = pytest.mark.slow


def test_kept_server_is_reused_then_stopped(
    embedded_root: Path, embedded_env: dict[str, str]
) -> None:
    data_dir = embedded_root / "pg"
    env = embedded_env
    where = ["--data-dir", str(data_dir)]

    started = run_cli("server", *where, "--json", env=env)
    assert started.returncode == 0, started.stderr
    assert f"Using the embedded PostgreSQL in {data_dir} (started; kept running;" in started.stderr
    url = json.loads(started.stdout)["url"]
    assert (data_dir / "postmaster.pid").exists()

    try:
        fresh = run_cli("status", "--json", env={**env, "DATABASE_URL": url})
        assert fresh.returncode == 0, fresh.stderr
        # Another command finds it running, reuses it and leaves it running.
        enqueued = run_cli("enqueue", "hello", *where, "--json", env=env)
        assert enqueued.returncode == 0, enqueued.stderr
        assert "(already running, reused; kept running;" in enqueued.stderr
        assert (data_dir / "postmaster.pid").exists()

        # Its URL works as DATABASE_URL, from any command and for workers: it is migrated.
        by_url = run_cli("list", "--json", env={**env, "DATABASE_URL": url})
        assert by_url.returncode == 0, by_url.stderr
        assert [job["job_type"] for job in json.loads(by_url.stdout)] == ["hello"]
        assert "embedded" not in by_url.stderr
    finally:
        stopped = run_cli("server", "--stop", *where, env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert f"Stopped the embedded PostgreSQL in {data_dir}." in stopped.stdout
    assert not (data_dir / "postmaster.pid").exists()
    again = run_cli("server", "--stop", *where, env=env)
    assert f"No embedded PostgreSQL is running in {data_dir}." in again.stdout

    # The data stays for the next run, and a command that starts the server stops it.
    status = run_cli("status", "--json", *where, env=env)
    assert status.returncode == 0, status.stderr
    assert "(started; stops when the last command using it exits;" in status.stderr
    assert json.loads(status.stdout)["totals"]["pending"] == 1
    assert not (data_dir / "postmaster.pid").exists()


def test_unusable_data_directory_is_a_bad_argument(
    tmp_path: Path, embedded_env: dict[str, str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    for data_dir in (blocker / "pg", blocker):
        line = assert_one_line_error(
            run_cli("status", "--data-dir", str(data_dir), env=embedded_env), 2
        )
        assert str(blocker) in line
    assert blocker.read_text() == "not a directory"
