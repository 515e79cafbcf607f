"""``pause``, ``resume``, ``limit``, ``unlimit``, ``enqueue --depends-on`` and
``enqueue --concurrency-key``, run as an operator runs them."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from sqlalchemy import Engine, text

from .running import CliRunner, assert_one_line_error


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result
    return json.loads(result.stdout)


def test_pause_and_resume(cli: CliRunner, engine: Engine) -> None:
    paused = ok_json(cli("pause", "report", "export", "--reason", "upstream down", "--json"))
    assert [row["job_type"] for row in paused["paused"]] == ["export", "report"]
    assert {row["reason"] for row in paused["paused"]} == {"upstream down"}
    human = cli("pause", "report")
    assert human.returncode == 0, human.stderr
    assert "Paused report since " in human.stdout
    assert "sqla-jobqueue resume report" in human.stdout
    status = ok_json(cli("status", "--json"))
    assert [row["job_type"] for row in status["paused"]] == ["export", "report"]
    shown = " ".join(cli("status").stdout.split())
    assert "Paused (no worker claims them; `sqla-jobqueue resume TYPE`): export, report" in shown
    resumed = ok_json(cli("resume", "report", "other", "--json"))
    assert resumed == {"resumed": ["report"], "not_paused": ["other"]}
    human = cli("resume", "export")
    assert human.stdout.strip() == "Resumed export."
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT count(*) FROM jobs_controls WHERE paused_at IS NOT NULL")
        )
        assert rows.scalar_one() == 0


def test_bad_pauses_exit_2_and_write_nothing(cli: CliRunner, engine: Engine) -> None:
    assert "name at least one job type" in assert_one_line_error(cli("pause"), 2)
    assert "--reason is 501 characters long" in assert_one_line_error(
        cli("pause", "report", "--reason", "r" * 501), 2
    )
    assert "job_type" in assert_one_line_error(cli("resume", "x" * 51), 2)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM jobs_controls")).scalar_one() == 0


def test_enqueue_a_job_that_depends_on_others(cli: CliRunner) -> None:
    first = ok_json(cli("enqueue", "extract", "--json"))
    second = ok_json(cli("enqueue", "extract", "--json"))
    last = ok_json(
        cli(
            "enqueue",
            "load",
            "--depends-on",
            str(first["id"])[-8:],
            "--depends-on",
            str(second["id"]),
            "--json",
        )
    )
    assert last["status"] == "waiting"
    assert last["depends_on"] == [first["id"], second["id"]]
    unknown = assert_one_line_error(
        cli("enqueue", "load", "--depends-on", "00000000-0000-0000-0000-000000000000"), 2
    )
    assert "which does not exist" in unknown
    assert ok_json(cli("cancel", str(first["id"]), "--json"))["status"] == "cancelled"
    shown = ok_json(cli("show", str(last["id"]), "--json"))
    assert shown["status"] == "cancelled"
    assert (
        shown["last_error"] == f"cancelled: it depends on job {first['id']}, which ended cancelled"
    )


def test_limit_enqueue_with_a_key_and_unlimit(cli: CliRunner, engine: Engine) -> None:
    limited = ok_json(cli("limit", "sync", "--per-key", "1", "--rate", "30/m", "--json"))
    assert limited == {
        "limited": {
            "job_type": "sync",
            "max_running": None,
            "max_running_per_key": 1,
            "rate_limit": 30,
            "rate_period_seconds": 60.0,
        }
    }
    human = cli("limit", "export", "--max-running", "3")
    assert human.returncode == 0, human.stderr
    assert human.stdout.startswith("Limited export: at most 3 running.")
    job = ok_json(cli("enqueue", "sync", "--concurrency-key", "customer:42", "--json"))
    assert job["concurrency_key"] == "customer:42"
    status = ok_json(cli("status", "--json"))
    assert [row["job_type"] for row in status["limits"]] == ["export", "sync"]
    shown = " ".join(cli("status").stdout.split())
    assert (
        "Limited sync: at most 1 running per concurrency key, at most 30 claimed per 1m." in shown
    )
    removed = ok_json(cli("unlimit", "export", "other", "--json"))
    assert removed == {"unlimited": ["export"], "not_limited": ["other"]}
    assert cli("unlimit", "sync").stdout.strip() == "Removed the limits of sync."
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT count(*) FROM jobs_controls WHERE rate_limit > 0"))
        assert rows.scalar_one() == 0


def test_bad_limits_exit_2_and_write_nothing(cli: CliRunner, engine: Engine) -> None:
    assert "give --max-running, --per-key or --rate" in assert_one_line_error(
        cli("limit", "sync"), 2
    )
    assert "is not N/PERIOD" in assert_one_line_error(cli("limit", "sync", "--rate", "5"), 2)
    assert "must be at least 1, got 0" in assert_one_line_error(
        cli("limit", "sync", "--max-running", "0"), 2
    )
    assert "concurrency_key" in assert_one_line_error(
        cli("enqueue", "sync", "--concurrency-key", "k" * 256), 2
    )
    assert "name at least one job type" in assert_one_line_error(cli("unlimit"), 2)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM jobs_controls")).scalar_one() == 0
        assert connection.execute(text("SELECT count(*) FROM jobs")).scalar_one() == 0
