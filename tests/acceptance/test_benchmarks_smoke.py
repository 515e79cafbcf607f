"""The benchmark harness still runs end to end (tiny sizes; no speed is asserted).

``python -m benchmarks run --quick`` runs against the suite's server. Peers that are not
installed (PGQueuer, procrastinate) are left out by the harness itself, so in the test
environment it measures sqla_jobqueue and, where a ``pgbench`` binary exists, raw SQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

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
    assert "sqla_jobqueue" in data["systems"]
    results = data["results"]
    assert set(results) == {
        "enqueue_single", "enqueue_bulk", "processing", "latency", "depth", "progress",
    }  # fmt: skip
    for system in data["systems"]:
        assert results["enqueue_single"]["rate"][system]["n"] == 1
        assert results["processing"]["runs"]["300"][system]["complete"], system
    assert (tmp_path / "smoke.md").read_text().startswith("Run of ")
