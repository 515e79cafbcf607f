"""The benchmark harness still runs end to end (tiny sizes; no speed is asserted).

``python -m benchmarks run --quick`` runs against the suite's server. Peers that are not
installed (PGQueuer, procrastinate) are left out by the harness itself, so in the test
environment it measures sqla_jobqueue (its sync and async APIs) and, where a ``pgbench``
binary exists, raw SQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import URL, make_url

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_quick_run_writes_json_and_markdown(server_url: URL, tmp_path: Path) -> None:
    url = server_url.set(drivername="postgresql").render_as_string(hide_password=False)
    command = [
        sys.executable, "-m", "benchmarks", "run", "--quick",
        "--database-url", url, "--output", str(tmp_path), "--name", "smoke",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]

    data = json.loads((tmp_path / "smoke.json").read_text())
    assert {"sqla_jobqueue", "sqla_jobqueue_async"} <= set(data["systems"])
    results = data["results"]
    assert set(results) == {
        "enqueue_single", "enqueue_bulk", "enqueue_bulk_async", "processing", "latency",
        "depth", "progress",
    }  # fmt: skip
    processing = results["processing"]
    for system in data["systems"]:
        assert results["enqueue_single"]["rate"][system]["n"] == 1
        assert results["enqueue_bulk"]["rate"][system]["n"] == 1
        # Every system has a drain now, the async API's through AsyncWorker.
        run = processing["runs"]["300"][system]
        assert run["complete"], system
        # Two rates of one drain: from the first handler call and from the release, which
        # starts earlier (the system's start-up in between).
        assert run["rate"]["n"] == run["rate_from_release"]["n"] == 1, system
        assert run["rate"]["median"] >= run["rate_from_release"]["median"] > 0, system
        assert run["startup_s"]["median"] >= 0, system
        for entry in processing["sweep"][system]:
            assert entry["rate"] >= entry["rate_from_release"] > 0, system
    assert "AsyncWorker" in processing["runs"]["300"]["sqla_jobqueue_async"]["mode"]
    # Every side-by-side measurement records the order its systems took, per repeat (one
    # here, in the order given).
    assert processing["orders"]["300"] == [data["systems"]]
    assert results["enqueue_single"]["orders"] == [data["systems"]]
    assert results["enqueue_bulk"]["orders"] == [data["systems"]]
    latency = results["latency"]
    assert len(latency["orders"]) == 1
    assert {"sqla_jobqueue (notify)", "sqla_jobqueue (polling)",
            "sqla_jobqueue_async (notify)"} <= set(latency["orders"][0])  # fmt: skip
    assert set(latency["orders"][0]) <= set(latency["ms"])
    depth_systems = [s for s in ("sqla_jobqueue", "pgbench") if s in data["systems"]]
    assert results["depth"]["orders"] == [depth_systems]
    for system in depth_systems:
        entry = results["depth"]["runs"][system][0]
        assert entry["rate"] >= entry["rate_from_release"] > 0, system
    assert results["progress"]["orders"] == [["without", "with"]]
    bulk_async = results["enqueue_bulk_async"]
    assert bulk_async["batches"] == [500, 2_000]
    compared = {"sqla_jobqueue_async", "pgqueuer"} & set(data["systems"])
    for batch in ("500", "2000"):
        assert set(bulk_async["rate"][batch]) == compared
        assert all(bulk_async["rate"][batch][s]["n"] == 1 for s in compared)
    markdown = (tmp_path / "smoke.md").read_text()
    assert markdown.startswith("Run of ")
    assert "processing 300 jobs, 2 workers, jobs/s from the first handler" in markdown
    assert "… jobs/s from the release, start-up included (300)" in markdown
    assert "async enqueue, bulk (2,000 per call)" in markdown
    assert "async worker, 2 processes, 300 no-op async handlers" in markdown


def test_the_table_size_measurement_runs_on_tiny_sizes(server_url: URL, tmp_path: Path) -> None:
    """``--only table_size`` (left out of the default measurements, and so of the quick run
    above) fills each size of history, claims, drains, burns down, times ``status`` and
    prunes with the command while workers run; tiny sizes here, nothing asserted on speed."""
    url = server_url.set(drivername="postgresql").render_as_string(hide_password=False)
    command = [
        sys.executable, "-m", "benchmarks", "run", "--quick", "--only", "table_size",
        "--systems", "sqla_jobqueue", "--table-size-rows", "0,5000",
        "--database-url", url, "--output", str(tmp_path), "--name", "table-size",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]

    data = json.loads((tmp_path / "table-size.json").read_text())
    assert set(data["results"]) == {"table_size"}
    table_size = data["results"]["table_size"]
    assert table_size["rows"] == [0, 5_000]
    # Both variants: the history in the job table, and in the archive (not at 0 rows,
    # which is the same database as the job table's).
    assert table_size["orders"] == [["0", "5000", "archive 5000"]]
    # The workers' own pruner is off, so that the history stays as filled until step 6.
    assert table_size["params"]["pruner"] is False
    for label, rows in (("0", 0), ("5000", 5_000)):
        (entry,) = table_size["runs"][label]
        metrics = entry["metrics"]
        assert entry["rows"] == rows
        assert metrics["claim_p99_ms"] >= metrics["claim_p50_ms"] > 0
        assert entry["drain"]["complete"]
        assert metrics["drain_rate"] >= metrics["drain_rate_from_release"] > 0
        assert metrics["burn_down_rate"] > 0
        assert metrics["stats_estimated_ms"] > 0 and metrics["stats_exact_ms"] > 0
        assert metrics["cli_status_s"] > 0
        # Finished counts: the history alone, every step's own jobs deleted after it.
        finished = entry["status"]["stats"]["exact"]["finished"]
        assert sum(finished.values()) == rows
        assert entry["status"]["cli_totals"]["pending"] == 0
        prune = entry["prune"]
        assert prune["output"]["deleted"] == metrics["prune_deleted"]
        assert metrics["prune_transactions"] == prune["output"]["transactions"]
        assert metrics["prune_longest_tx_ms"] > 0
        assert prune["without"]["complete"] and prune["with"]["complete"]
    history = table_size["runs"]["5000"][0]
    assert history["relations"]["total_mb"] > 0
    finished = history["status"]["stats"]["exact"]["finished"]
    assert finished["failed"] > 0 and finished["cancelled"] > 0
    # completed_at spreads over 30 days: those older than 7 days are about 23/30 of them.
    assert 3_600 <= history["metrics"]["prune_deleted"] <= 4_100
    assert table_size["runs"]["0"][0]["metrics"]["prune_deleted"] == 0
    # Claims measured in rounds beside an empty table, their ratio per size.
    assert table_size["summary"]["0"]["claim_ratio"] > 0
    assert len(history["claim"]["round_ratios"]) == table_size["claim_rounds"]
    # VACUUM (VERBOSE) of the job table right after a drain, parsed, in both variants.
    (archived,) = table_size["archive_runs"]["5000"]
    for entry in (history, archived):
        parsed = entry["vacuum"]["parsed"]
        assert parsed["pages_remain"] >= parsed["pages_scanned"] > 0
        assert parsed["index_scans"] >= 0
        assert entry["metrics"]["vacuum_s"] > 0
    # The archive variant's history is in the archive's day partitions, not the job table.
    assert archived["archive"]["partitions"] >= 30
    assert archived["metrics"]["archive_mb"] > 0
    assert sum(archived["status"]["stats"]["exact"]["finished"].values()) == 0
    assert "prune" not in archived
    assert table_size["archive_summary"]["5000"]["claim_ratio"] > 0
    markdown = (tmp_path / "table-size.md").read_text()
    assert "| finished rows | fill s | table MB | claim p50 / p99 ms |" in markdown
    assert "| 5k |" in markdown
    assert "claim with 5k finished rows vs an empty table (p50)" in markdown
    assert "`sqla-jobqueue status --json` (a command, start-up included)" in markdown
    assert "| history in | finished rows | job table MB | archive MB |" in markdown
    assert "| archive | 5k |" in markdown


def test_scaling_batch_and_loaded_latency_run_on_tiny_sizes(
    server_url: URL, tmp_path: Path
) -> None:
    """``--only scaling,batch,latency`` (scaling and batch are left out of the default
    measurements): worker processes 1 and 2 of both workers, PgBouncer against direct
    connections (when PgBouncer is installed), the claim sizes interleaved, and the
    latency of the async worker too, quiet and with a CPU-burning process."""
    from sqla_jobqueue.testing.pgbouncer import find_pgbouncer

    url = server_url.set(drivername="postgresql").render_as_string(hide_password=False)
    command = [
        sys.executable, "-m", "benchmarks", "run", "--quick",
        "--only", "scaling,batch,latency", "--systems", "sqla_jobqueue,sqla_jobqueue_async",
        "--latency-load", "0,1", "--database-url", url, "--output", str(tmp_path),
        "--name", "scaling",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]

    data = json.loads((tmp_path / "scaling.json").read_text())
    results = data["results"]
    assert set(results) == {"scaling", "batch", "latency"}
    processes = results["scaling"]["processes"]
    assert processes["processes"] == [1, 2]
    assert processes["params"] == {"concurrency": 200, "batch": 100}
    for system in ("sqla_jobqueue", "sqla_jobqueue_async"):
        entry = processes["systems"][system]
        assert entry["orders"] == [[1, 2]]
        for count in ("1", "2"):
            (run,) = entry["runs"][count]
            assert run["complete"] and run["workers"] == int(count), (system, count)
            assert run["rate"] >= run["rate_from_release"] > 0
            assert run["peak_connections"] > 0
    pooler = results["scaling"]["pooler"]
    if find_pgbouncer() is None:
        assert "skipped" in pooler
    else:
        assert pooler["orders"] == [["pgbouncer", "direct", "direct, prepared"]]
        runs = pooler["runs"]["2"]
        for label in ("pgbouncer", "direct", "direct, prepared"):
            (run,) = runs[label]
            assert run["complete"], label
        # Through PgBouncer: its pool (4) and the two listeners, straight to the server.
        assert runs["pgbouncer"][0]["peak_connections"] <= pooler["pool_size"] + 2
    batch = results["batch"]
    assert batch["orders"] == [["c20 b10", "c20 b20"], ["c20 b20", "c20 b10"]]
    for label in batch["labels"]:
        rate = batch["summary"]["500"][label]["rate"]
        assert rate["n"] == 2 and rate["median"] > 0
    latency = results["latency"]
    assert set(latency["by_load"]) == {"0", "1"}
    for load in ("0", "1"):
        ms = latency["by_load"][load]["ms"]
        assert ms["sqla_jobqueue_async (notify)"]["p50"]["n"] == 1
        assert ms["sqla_jobqueue (notify)"]["p99"]["n"] == 1
    markdown = (tmp_path / "scaling.md").read_text()
    assert "| worker | processes | jobs/s | x | jobs/s from the release | connections |" in markdown
    assert "| concurrency | batch | 500 jobs |" in markdown
    assert "| variant | load 0: p50 / p99 ms | load 1: p50 / p99 ms |" in markdown


def test_the_order_of_the_systems_rotates_from_one_repeat_to_the_next(
    server_url: URL, tmp_path: Path
) -> None:
    """With two repeats, each side-by-side measurement runs its systems (or its latency
    variants) in the given order first and then starting from the second, and says so."""
    url = server_url.set(drivername="postgresql").render_as_string(hide_password=False)
    command = [
        sys.executable, "-m", "benchmarks", "run", "--quick", "--repeats", "2",
        "--only", "enqueue_single,enqueue_bulk,latency,depth,progress",
        "--systems", "sqla_jobqueue,sqla_jobqueue_async,pgbench",
        "--database-url", url, "--output", str(tmp_path), "--name", "rotation",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]

    data = json.loads((tmp_path / "rotation.json").read_text())
    results = data["results"]
    systems = data["systems"]
    assert {"sqla_jobqueue", "sqla_jobqueue_async"} <= set(systems)
    depth_systems = [s for s in ("sqla_jobqueue", "pgbench") if s in systems]
    expected = {
        "enqueue_single": systems,
        "enqueue_bulk": systems,
        "latency": [
            "sqla_jobqueue (notify)",
            "sqla_jobqueue (polling)",
            "sqla_jobqueue_async (notify)",
        ],
        "depth": depth_systems,
        "progress": ["without", "with"],
    }
    for name, first in expected.items():
        assert results[name]["orders"] == [first, first[1:] + first[:1]], name


def test_two_checkouts_are_compared_alternating(server_url: URL, tmp_path: Path) -> None:
    """``python -m benchmarks.refs`` runs the sync worker of another checkout (here this
    one again) and of this one, in turns, and writes both rates of every repeat."""
    url = server_url.set(drivername="postgresql").render_as_string(hide_password=False)
    output = tmp_path / "refs.json"
    command = [
        sys.executable, "-m", "benchmarks.refs", str(ROOT), "--jobs", "200", "--repeats", "2",
        "--batch", "10", "--concurrency", "10", "--database-url", url, "--output", str(output),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]

    data = json.loads(output.read_text())
    assert data["orders"] == [["before", "after"], ["after", "before"]]
    # Both checkouts report their first handler call, so their rates count from it.
    assert data["rate_basis"] == "first handler"
    for label in ("before", "after"):
        assert len(data["rates"][label]) == len(data["rates_from_release"][label]) == 2
        for rate, from_release in zip(
            data["rates"][label], data["rates_from_release"][label], strict=True
        ):
            assert rate >= from_release > 0
    assert data["modes"]["after"] == "Worker (concurrency 10, batch 10)"


def test_a_killed_runs_databases_are_dropped_by_the_next_run(server_url: URL) -> None:
    """A run killed before its clean-up leaves ``bench_*`` databases; the next run against
    the same server drops those of dead processes on this host, and no others."""
    from benchmarks.server import Server

    conninfo = server_url.set(drivername="postgresql").render_as_string(hide_password=False)
    killed = subprocess.run(
        [sys.executable, "-c",
         "import os, sys; from benchmarks.server import Server;"
         "print(Server(sys.argv[1], 'given').create_database('killed')); os._exit(9)",
         conninfo],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert killed.returncode == 9, killed.stderr
    leftover = make_url(killed.stdout.strip()).database
    server = Server(conninfo, "given")
    alive = make_url(server.create_database("alive")).database
    try:

        def names() -> set[str]:
            with psycopg.connect(conninfo) as conn:
                rows = conn.execute("SELECT datname FROM pg_database").fetchall()
            return {name for (name,) in rows}

        assert {leftover, alive} <= names()
        assert leftover in server.drop_leftovers()
        assert leftover not in names() and alive in names()
    finally:
        server.drop_database(server.database(str(leftover)))
        server.drop_database(server.database(str(alive)))
