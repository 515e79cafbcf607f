"""``sqla-jobqueue worker`` runs a registry with ``async def`` handlers on the AsyncWorker."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, text

from tests.helpers import wait_for

from .running import CliRunner, running_worker

ASYNC_MODULE = """
import asyncio

from sqla_jobqueue import AsyncJobContext, JobContext, Registry

registry = Registry()


@registry.handler("fetch")
async def fetch(ctx: AsyncJobContext) -> dict[str, int]:
    await asyncio.sleep(0.01)
    value = (await ctx.session.execute(__import__("sqlalchemy").text("SELECT 41"))).scalar_one()
    return {"answer": value + 1}


@registry.handler("plain")
def plain(ctx: JobContext) -> str:
    return "from a thread"
"""


def test_a_registry_with_async_handlers_runs_on_the_async_worker(
    tmp_path: Path, cli: CliRunner, cli_env: dict[str, str], engine: Engine
) -> None:
    (tmp_path / "async_jobs.py").write_text(ASYNC_MODULE)
    for job_type in ("fetch", "plain"):
        assert cli("enqueue", job_type).returncode == 0

    def results() -> dict[str, object]:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT job_type, result FROM jobs WHERE status = 'completed'")
            )
            return {job_type: result for job_type, result in rows}

    with running_worker("async_jobs:registry", env=cli_env, cwd=tmp_path) as worker:
        started = worker.stderr_line(" started: ")
        wait_for(lambda: len(results()) == 2, timeout=60, what="both jobs completed")
        exited = worker.stop()
    assert started.split(" started: ")[0].endswith(worker_id_of(started)), started
    assert "async worker " in started, started
    assert exited.returncode == 0, exited.stderr
    assert results() == {"fetch": {"answer": 42}, "plain": "from a thread"}


def worker_id_of(line: str) -> str:
    """The worker id in a start line (``... worker ID started: ...``)."""
    return line.split(" started: ")[0].rsplit(" ", 1)[-1]
