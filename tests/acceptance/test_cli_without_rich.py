"""The command line without rich (a plain ``pip install sqla-jobqueue``): the worker and
every ``--json`` report run; only tables and live views ask for the ``cli`` extra."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import JobQueue
from tests.helpers import wait_for

from .running import assert_one_line_error, running_worker

WITHOUT_RICH = [
    sys.executable,
    "-c",
    # rich is not installed: every import of it fails, as on a plain install.
    "import sys; sys.modules['rich'] = None\nfrom sqla_jobqueue.cli import main\nsys.exit(main())",
]

GREETER = """
from sqla_jobqueue.handlers import JobContext, Registry

registry = Registry()


@registry.handler("greet")
def greet(ctx: JobContext) -> dict[str, str]:
    return {"greeting": "hello " + ctx.data["name"]}
"""


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WITHOUT_RICH, *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_json_reports_run_and_tables_ask_for_the_cli_extra(cli_env: dict[str, str]) -> None:
    made = run("enqueue", "hello", "--json", env=cli_env)
    assert made.returncode == 0, made.stderr
    job_id = json.loads(made.stdout)["id"]
    report = run("status", "--json", env=cli_env)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["totals"]["pending"] == 1
    cancelled = run("cancel", job_id, env=cli_env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"Job {job_id} (hello) is now cancelled." in cancelled.stdout
    for table in (["status"], ["list"], ["show", job_id]):
        line = assert_one_line_error(run(*table, env=cli_env), 1)
        assert "pip install 'sqla-jobqueue[cli]'" in line and "--json" in line


def test_the_worker_runs_jobs_without_rich(
    tmp_path: Path,
    cli_env: dict[str, str],
    engine: Engine,
    session_factory: sessionmaker[Session],
) -> None:
    (tmp_path / "greeter.py").write_text(GREETER)
    with session_factory.begin() as session:
        JobQueue(session).enqueue("greet", {"name": "ada"})

    def result() -> object:
        with engine.connect() as connection:
            return connection.execute(text("SELECT result FROM jobs")).scalar_one()

    with running_worker(
        "greeter:registry", "--concurrency", "1", env=cli_env, cwd=tmp_path, command=WITHOUT_RICH
    ) as worker:
        assert wait_for(result, timeout=60, what="the job to complete") == {"greeting": "hello ada"}
        exited = worker.stop()
    assert exited.returncode == 0, exited.stderr
    assert "Traceback" not in exited.stderr
