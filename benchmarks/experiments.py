"""Measured alternatives behind the proposals in ``docs/benchmarks.md``.

``python -m benchmarks.experiments [--database-url URL]`` times, on a fresh database of a
private embedded server, variants of the enqueue paths of sqla_jobqueue that a change of
``sqla_jobqueue/queue.py`` could adopt. Nothing here is used by the library; each variant
writes the same rows as the public call it stands beside.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

from sqla_jobqueue import JobQueue
from sqla_jobqueue.database import sqlalchemy_url
from sqla_jobqueue.ids import new_job_id

from .server import start_server
from .systems import ours

__all__ = ["main"]

INSERT_ONE = (
    "INSERT INTO jobs (id, job_type, data, priority, max_attempts, run_at, unique_key) "
    "VALUES (%(id)s, %(job_type)s, CAST(%(data)s AS jsonb), %(priority)s, %(max_attempts)s, "
    "statement_timestamp(), NULL)"
)
INSERT_MANY = (
    "INSERT INTO jobs (id, job_type, data, priority, max_attempts, run_at) "
    "SELECT id, job_type, CAST(data AS jsonb), priority, max_attempts, statement_timestamp() "
    "FROM unnest(CAST(%(ids){f} AS uuid[]), CAST(%(types){f} AS text[]), "
    "CAST(%(datas){f} AS text[]), CAST(%(prios){f} AS int[]), CAST(%(maxes){f} AS int[])) "
    "AS t(id, job_type, data, priority, max_attempts)"
)


def _time(label: str, n: int, run: Callable[[], None], results: dict[str, float]) -> None:
    started = time.perf_counter()
    run()
    rate = n / (time.perf_counter() - started)
    results[label] = rate
    print(f"{label:70s} {rate:>10,.0f} jobs/s", flush=True)


def single(url: str, n: int) -> dict[str, float]:
    """One job per transaction: the public call and leaner spellings of the same insert."""
    results: dict[str, float] = {}
    engine = create_engine(sqlalchemy_url(url), pool_size=2)
    factory = sessionmaker(engine, expire_on_commit=False)

    def public() -> None:
        for i in range(n):
            with factory.begin() as session:
                JobQueue(session).enqueue("noop", {"i": i})

    def core() -> None:
        statement = text(INSERT_ONE.replace("%(", ":").replace(")s", ""))
        for i in range(n):
            with engine.begin() as connection:
                connection.execute(
                    statement,
                    {"id": new_job_id(), "job_type": "noop", "data": json.dumps({"i": i}),
                     "priority": 100, "max_attempts": 3},
                )  # fmt: skip

    def driver(pipeline: bool) -> Callable[[], None]:
        def run() -> None:
            with psycopg.connect(url) as conn:
                for i in range(n):
                    params = {
                        "id": new_job_id(),
                        "job_type": "noop",
                        "data": json.dumps({"i": i}),
                        "priority": 100,
                        "max_attempts": 3,
                    }
                    if pipeline:
                        with conn.pipeline(), conn.transaction():
                            conn.execute(INSERT_ONE, params)
                    else:
                        with conn.transaction():
                            conn.execute(INSERT_ONE, params)

        return run

    _time("JobQueue.enqueue in Session.begin() (ORM, RETURNING the row)", n, public, results)
    _time("Core text() insert in engine.begin(), no RETURNING", n, core, results)
    _time("psycopg BEGIN / INSERT / COMMIT (3 round trips)", n, driver(False), results)
    _time("psycopg pipeline: BEGIN+INSERT+COMMIT in one round trip", n, driver(True), results)
    engine.dispose()
    return results


def bulk(url: str, n: int, batch: int) -> dict[str, float]:
    """1,000 jobs per call: ``enqueue_many`` beside the same unnest insert, text vs binary."""
    results: dict[str, float] = {}
    engine = create_engine(sqlalchemy_url(url), pool_size=2)
    factory = sessionmaker(engine, expire_on_commit=False)

    def public() -> None:
        for first in range(0, n, batch):
            specs = [{"job_type": "noop", "data": {"i": i}} for i in range(first, first + batch)]
            with factory.begin() as session:
                JobQueue(session).enqueue_many(specs)

    def driver(binary: bool) -> Callable[[], None]:
        sql = INSERT_MANY.format(f="b" if binary else "s")

        def run() -> None:
            with psycopg.connect(url) as conn:
                for first in range(0, n, batch):
                    rng = range(first, first + batch)
                    params: dict[str, Any] = {
                        "ids": [new_job_id() for _ in rng],
                        "types": ["noop"] * batch,
                        "datas": [json.dumps({"i": i}) for i in rng],
                        "prios": [100] * batch,
                        "maxes": [3] * batch,
                    }
                    with conn.transaction():
                        conn.execute(sql, params)

        return run

    def validation_only() -> None:
        queue = JobQueue.__new__(JobQueue)
        queue.max_payload_bytes = 65536
        for first in range(0, n, batch):
            for i in range(first, first + batch):
                queue._row({"job_type": "noop", "data": {"i": i}})

    _time("JobQueue.enqueue_many (1,000 per call)", n, public, results)
    _time("same unnest INSERT, psycopg, text-format arrays", n, driver(False), results)
    _time("same unnest INSERT, psycopg, binary arrays (%(x)b)", n, driver(True), results)
    _time("JobQueue._row checks alone (no database)", n, validation_only, results)
    engine.dispose()
    return results


CANDIDATES = (
    "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id FROM jobs WHERE status = 'pending' "
    "AND run_at <= statement_timestamp() AND attempts < max_attempts "
    "ORDER BY priority DESC, created_at, id LIMIT 200"
)
TABLE_STATS = (
    "SELECT n_live_tup, n_dead_tup, autovacuum_count, last_autovacuum IS NOT NULL "
    "FROM pg_stat_user_tables WHERE relname = 'jobs'"
)
AUTOVACUUM_EAGER = (
    "ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0, "
    "autovacuum_vacuum_threshold = 20000, autovacuum_vacuum_cost_delay = 0, "
    "autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 100000)"
)


def burndown(server: Any, template: str, n: int, table_sql: str | None) -> dict[str, Any]:
    """The depth measurement for sqla_jobqueue, optionally with table options applied first."""
    from .run import drain_clock, run_child, run_workers

    with server.scratch("burn", template=template) as url:
        if table_sql:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(table_sql)
        run_child("sqla_jobqueue", "prefill", url, {"n": n})
        probes: list[dict[str, Any]] = []

        def probe() -> None:
            for _ in range(4):
                time.sleep(12)
                with psycopg.connect(url, autocommit=True) as conn:
                    plan = [r[0] for r in conn.execute(CANDIDATES).fetchall()]
                    stats = conn.execute(TABLE_STATS).fetchone()
                probes.append({"plan": plan, "table": stats})

        params = {"batch": 200, "concurrency": 200, "expect": n}
        results, _ = run_workers("sqla_jobqueue", url, params, 2, during=probe)
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT floor(extract(epoch FROM completed_at - (SELECT min(completed_at) "
                "FROM jobs)) / 10) AS k, count(*) FROM jobs GROUP BY k ORDER BY k"
            ).fetchall()
    windows = [count / 10 for _, count in rows]
    rate = drain_clock(results, n)["rate"]
    full = windows[:-1]
    out = {"rate": rate, "windows": windows, "last_vs_first": full[-1] / full[0], "probes": probes}
    print(f"burn-down {table_sql or 'default'}: {rate:,.0f} jobs/s, windows "
          f"{[round(w) for w in windows]}, "
          f"last/first {out['last_vs_first']:.2f}", flush=True)  # fmt: skip
    for p in probes:
        print("  table", p["table"], "|", " / ".join(x.strip() for x in p["plan"] if "Buffers" in x
              or "Index" in x or "Execution" in x)[:400], flush=True)  # fmt: skip
    return out


KEYSET_CLAIM_COMPLETE = """\
WITH candidate AS MATERIALIZED (
    SELECT id FROM jobs
    WHERE status = 'pending' AND run_at <= statement_timestamp()
      AND attempts < max_attempts AND priority = 100
      AND (created_at, id) > (CAST(:lc AS timestamptz), CAST(:li AS uuid))
    ORDER BY priority DESC, created_at, id
    LIMIT CAST(:batch AS int)
    FOR NO KEY UPDATE SKIP LOCKED
), claimed AS (
    UPDATE jobs AS job SET status = 'running', worker_id = 'pgbench-' || CAST(:client_id AS text),
        claimed_at = statement_timestamp(), started_at = statement_timestamp(),
        heartbeat_at = statement_timestamp(), attempts = job.attempts + 1
    FROM candidate WHERE job.id = candidate.id
    RETURNING job.created_at, job.id
)
SELECT coalesce(max(created_at), CAST(:lc AS timestamptz)) AS lc,
       coalesce((array_agg(id ORDER BY created_at DESC, id DESC))[1], CAST(:li AS uuid)) AS li
FROM claimed
\\gset
UPDATE jobs SET status = 'completed', progress = 100, completed_at = statement_timestamp(),
    result = NULL
WHERE status IN ('claimed', 'running') AND worker_id = 'pgbench-' || CAST(:client_id AS text);
"""


def keyset(server: Any, template: str, n: int, batch: int = 200) -> dict[str, Any]:
    """pgbench burn-down: the shipped claim against one bounded below by the last key."""
    import math

    from .run import run_child
    from .systems import raw

    out: dict[str, Any] = {}
    rounds = math.ceil(n / (2 * batch)) + 2
    variants = (("claim_job_batch", raw.CLAIM_COMPLETE, {}),
                ("keyset lower bound", KEYSET_CLAIM_COMPLETE,
                 {"lc": "-infinity", "li": "00000000-0000-0000-0000-000000000000"}))  # fmt: skip
    for label, script, defines in variants:
        with server.scratch("keyset", template=template) as url:
            run_child("sqla_jobqueue", "prefill", url, {"n": n})
            elapsed = raw._pgbench(url, script, 2, rounds, batch, defines)
            with psycopg.connect(url) as conn:
                rows = conn.execute(
                    "SELECT floor(extract(epoch FROM completed_at - (SELECT min(completed_at) "
                    "FROM jobs)) / 5) AS k, count(*) FROM jobs WHERE status = 'completed' "
                    "GROUP BY k ORDER BY k"
                ).fetchall()
                done = conn.execute("SELECT count(*) FROM jobs WHERE status = 'completed'")
                completed = done.fetchone()[0]  # type: ignore[index]
        windows = [count / 5 for _, count in rows]
        full = windows[:-1] or windows
        out[label] = {"rate": completed / elapsed, "completed": completed, "windows": windows,
                      "last_vs_first": full[-1] / full[0]}  # fmt: skip
        rounded = [round(w) for w in windows]
        print(f"pgbench {label}: {completed:,} jobs at {completed / elapsed:,.0f}/s, 5-s windows "
              f"{rounded}, last/first {full[-1] / full[0]:.2f}", flush=True)  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.experiments")
    parser.add_argument("--database-url")
    parser.add_argument("--single", type=int, default=5_000)
    parser.add_argument("--bulk", type=int, default=100_000)
    parser.add_argument("--burndown", type=int, default=0, help="jobs; 0 skips it")
    parser.add_argument("--keyset", type=int, default=0, help="jobs; 0 skips it")
    args = parser.parse_args(argv)
    out: dict[str, Any] = {}
    with start_server(args.database_url) as server:
        template = server.create_database("tpl_exp")
        ours.install(template)
        name = template.rsplit("/", 1)[1].split("?", 1)[0]
        for label, call in (("single", lambda u: single(u, args.single)),
                            ("bulk", lambda u: bulk(u, args.bulk, 1_000))):  # fmt: skip
            if (args.single if label == "single" else args.bulk) <= 0:
                continue
            with server.scratch("exp", template=name) as url:
                out[label] = call(url)
        if args.keyset:
            out["keyset"] = keyset(server, name, args.keyset)
        if args.burndown:
            out["burndown_default"] = burndown(server, name, args.burndown, None)
            out["burndown_autovacuum"] = burndown(server, name, args.burndown, AUTOVACUUM_EAGER)
        server.drop_database(template)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
