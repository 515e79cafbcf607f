"""The cost of issue 15's flow control: ``python -m benchmarks.flow_control MEASURE``.

Four measurements the processing harness cannot take (``benchmarks.refs`` compares
the processing rates of two checkouts):

``claim``
    The claim's cost at two checkouts, alternating: a loop of
    ``JobQueue.claim(batch_size=1)`` and ``complete`` (one transaction each) timed
    client-side, then a drain by 2 ``Worker`` processes; with ``pg_stat_statements``
    loaded on the server, the mean execution time of each statement as well.
``wait``
    From the commit that finishes a job to ``wait()`` returning, ``JobQueue`` and
    ``AsyncJobQueue``: a waiter process enqueues a job, hands its id to a finisher
    process and waits; the finisher claims it, waits until it is ``awaited``, lets 5 ms
    pass (the waiter is then listening) and completes it. The ``poll`` variants disable
    the table's finished trigger, so ``wait`` finds the job by its default polling.
``deps``
    2 ``Worker`` processes draining independent jobs, fan-ins (9 parents, 1 child) and
    chains of 10, in rotated order.
``limits``
    2 ``Worker`` processes draining jobs of one type in rotated variants: ``unlimited``
    (no key, no limit), ``keyed`` (each job one of ``--keys`` concurrency keys, drawn at
    random with a fixed seed, no limit), ``per_key_1`` (the same keys,
    ``max_running_per_key=1``), ``type_limit`` (no keys, ``max_running=100``) and
    ``rate_limit`` (no keys, ``rate_limit=1_000_000``: a limit that never binds, what the
    limited claim costs by itself). Jobs and limits are written before the workers start.

Each side's children run the code of their checkout (``PYTHONPATH``); they are this file
run with ``python -P`` so that this directory is not put on their path. Timings use
``time.monotonic()``, one clock for every process of the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

HERE = str(Path(__file__).resolve().parents[1])
JOB_TYPE = "noop"
CONCURRENCY, BATCH_SIZE = 200, 100
"""The processing sweep's best setting (docs/benchmarks.md)."""


# ----------------------------------------------------------------------- children


def _engine(url: str, pool_size: int = 2) -> Any:
    from sqlalchemy import create_engine

    from sqla_jobqueue.database import sqlalchemy_url

    return create_engine(sqlalchemy_url(url), pool_size=pool_size, max_overflow=4)


def _child_claim_loop(url: str, n: int) -> dict[str, Any]:
    """``n`` rounds of claim (one job) and complete, each in its own transaction."""
    from sqlalchemy import text
    from sqlalchemy.orm import sessionmaker

    from sqla_jobqueue import JobQueue

    engine = _engine(url)
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory.begin() as warm:
        warm.execute(text("SELECT 1"))
    claims, completes = [], []
    for _ in range(n):
        started = time.perf_counter()
        with factory.begin() as session:
            jobs = JobQueue(session, worker_id="bench").claim(batch_size=1)
        claimed = time.perf_counter()
        with factory.begin() as session:
            JobQueue(session, worker_id="bench").complete(jobs[0])
        claims.append((claimed - started) * 1000)
        completes.append((time.perf_counter() - claimed) * 1000)
    engine.dispose()
    return {"claim_ms": claims, "complete_ms": completes}


def _child_finisher(url: str, spread: float) -> None:
    """For each job id read on stdin: claim it, wait for its ``awaited`` mark, let 5 ms
    and a random part of ``spread`` seconds pass, complete it; write the monotonic times
    before and after the commit."""
    from sqlalchemy import text
    from sqlalchemy.orm import sessionmaker

    from sqla_jobqueue import JobQueue

    engine = _engine(url)
    factory = sessionmaker(engine, expire_on_commit=False)
    awaited = text("SELECT awaited FROM jobs WHERE id = CAST(:id AS uuid)")
    for line in sys.stdin:
        job_id = line.strip()
        claimed: list[Any] = []
        while not claimed:  # the waiter's awaited mark may hold the row (SKIP LOCKED)
            with factory.begin() as session:
                claimed = JobQueue(session, worker_id="finisher").claim(batch_size=1)
        (job,) = claimed
        assert str(job.id) == job_id
        with engine.connect() as connection:
            while not connection.execute(awaited, {"id": job_id}).scalar_one():
                connection.rollback()
                time.sleep(0.0002)
        time.sleep(0.005 + random.uniform(0, spread))
        with factory() as session:
            session.begin()
            JobQueue(session, worker_id="finisher").complete(job)
            sent = time.monotonic()
            session.commit()
            returned = time.monotonic()
        print(f"{sent} {returned}", flush=True)
    engine.dispose()


def _finisher(url: str, spread: float) -> subprocess.Popen[str]:
    spec = {"action": "finisher", "url": url, "spread": spread}
    return subprocess.Popen(
        [sys.executable, "-P", __file__, "--child", json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _finished(finisher: subprocess.Popen[str], job_id: Any) -> None:
    assert finisher.stdin is not None
    finisher.stdin.write(f"{job_id}\n")
    finisher.stdin.flush()


def _commit_times(finisher: subprocess.Popen[str]) -> tuple[float, float]:
    assert finisher.stdout is not None
    sent, returned = finisher.stdout.readline().split()
    return float(sent), float(returned)


def _child_wait_sync(url: str, n: int, spread: float) -> list[tuple[float, float, float]]:
    from sqlalchemy.orm import sessionmaker

    from sqla_jobqueue import JobQueue

    engine = _engine(url)
    factory = sessionmaker(engine, expire_on_commit=False)
    finisher = _finisher(url, spread)
    times = []
    try:
        for i in range(n):
            with factory.begin() as session:
                job = JobQueue(session).enqueue(JOB_TYPE, {"i": i})
            _finished(finisher, job.id)
            with factory() as session:
                JobQueue(session).wait(job, timeout=30)
            returned = time.monotonic()
            times.append((*_commit_times(finisher), returned))
    finally:
        assert finisher.stdin is not None
        finisher.stdin.close()
        finisher.wait()
        engine.dispose()
    return times


async def _wait_async(url: str, n: int, spread: float) -> list[tuple[float, float, float]]:
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from sqla_jobqueue import AsyncJobQueue
    from sqla_jobqueue.database import sqlalchemy_url

    engine = create_async_engine(sqlalchemy_url(url), pool_size=2)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    finisher = _finisher(url, spread)
    times = []
    try:
        for i in range(n):
            async with factory.begin() as session:
                job = await AsyncJobQueue(session).enqueue(JOB_TYPE, {"i": i})
            _finished(finisher, job.id)
            async with factory() as session:
                await AsyncJobQueue(session).wait(job, timeout=30)
            returned = time.monotonic()
            times.append((*_commit_times(finisher), returned))
    finally:
        assert finisher.stdin is not None
        finisher.stdin.close()
        finisher.wait()
        await engine.dispose()
    return times


def _child_deps_prefill(url: str, shape: str, n: int) -> dict[str, Any]:
    """``n`` no-op jobs: independent, fan-ins of 9 parents and 1 child, or chains of 10.
    ``enqueue_many`` takes no ``depends_on``: dependent jobs go one ``enqueue`` each."""
    from sqlalchemy import text
    from sqlalchemy.orm import sessionmaker

    from sqla_jobqueue import JobQueue

    engine = _engine(url)
    factory = sessionmaker(engine, expire_on_commit=False)
    groups = n // 10

    def bulk(count: int) -> list[Any]:
        with factory.begin() as session:
            return JobQueue(session).enqueue_many([{"job_type": JOB_TYPE}] * count)

    def dependents(parents: list[list[Any]]) -> list[Any]:
        with factory.begin() as session:
            queue = JobQueue(session)
            return [queue.enqueue(JOB_TYPE, depends_on=ids).id for ids in parents]

    if shape == "independent":
        bulk(n)
    elif shape == "fanin":
        parents = bulk(groups * 9)
        dependents([parents[g * 9 : (g + 1) * 9] for g in range(groups)])
    elif shape == "chain":
        level = bulk(groups)
        for _ in range(9):
            level = dependents([[job_id] for job_id in level])
    else:
        raise ValueError(shape)
    with engine.begin() as connection:
        connection.execute(text("ANALYZE jobs"))
        counts = dict(
            connection.execute(text("SELECT status, count(*) FROM jobs GROUP BY 1")).all()
        )
    engine.dispose()
    return {"statuses": counts}


LIMIT_VARIANTS = ["unlimited", "keyed", "per_key_1", "type_limit", "rate_limit"]
LIMIT_SETTINGS: dict[str, dict[str, int]] = {
    "per_key_1": {"max_running_per_key": 1},
    "type_limit": {"max_running": 100},
    "rate_limit": {"rate_limit": 1_000_000},
}
"""The keywords of ``JobQueue.limit`` for each limited variant."""
KEYED_VARIANTS = ("keyed", "per_key_1")
KEY_SEED = 15


def _child_limits_prefill(url: str, variant: str, n: int, keys: int) -> dict[str, Any]:
    """``n`` no-op jobs of one type, with one of ``keys`` concurrency keys each (drawn at
    random, seed ``KEY_SEED``) for the keyed variants, and the variant's limit set."""
    from sqlalchemy import text
    from sqlalchemy.orm import sessionmaker

    from sqla_jobqueue import JobQueue

    engine = _engine(url)
    factory = sessionmaker(engine, expire_on_commit=False)
    if variant in KEYED_VARIANTS:
        draw = random.Random(KEY_SEED)
        specs = [
            {"job_type": JOB_TYPE, "concurrency_key": f"customer:{draw.randrange(keys)}"}
            for _ in range(n)
        ]
    else:
        specs = [{"job_type": JOB_TYPE}] * n
    with factory.begin() as session:
        JobQueue(session).enqueue_many(specs)
    with factory.begin() as session:
        if variant in LIMIT_SETTINGS:
            JobQueue(session).limit(JOB_TYPE, **LIMIT_SETTINGS[variant])
        limits = [str(limit) for limit in JobQueue(session).limits()]
    with engine.begin() as connection:
        connection.execute(text("ANALYZE jobs"))
        row = connection.execute(
            text("SELECT count(*), count(DISTINCT concurrency_key) FROM jobs")
        ).one()
    engine.dispose()
    return {"jobs": row[0], "keys": row[1], "limits": limits}


REMAINING_SQL = (
    "SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'pending') "
    "OR EXISTS (SELECT 1 FROM jobs WHERE status IN ('claimed', 'running')) "
    "OR EXISTS (SELECT 1 FROM jobs WHERE status = 'waiting')"
)


def _child_deps_drain(url: str) -> dict[str, Any]:
    """A ``Worker`` at the processing sweep's best setting, everything else at its
    defaults, until no job is pending, held or waiting; prints ``ready``, starts on a line
    of stdin. Ends as ``benchmarks.systems.ours`` does, counting waiting jobs as left."""
    from sqlalchemy import text

    from sqla_jobqueue.handlers import JobContext, Registry
    from sqla_jobqueue.worker import Worker

    done = [0]
    first: list[float] = []

    def noop(ctx: JobContext) -> None:
        if not first:
            first.append(time.monotonic())
        done[0] += 1

    registry = Registry()
    registry.register(JOB_TYPE, noop)
    engine = _engine(url, pool_size=CONCURRENCY + 4)
    worker = Worker(engine, registry, concurrency=CONCURRENCY, batch_size=BATCH_SIZE)
    with engine.connect(), engine.connect():
        pass
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    worker.start()
    last, last_change = -1, time.monotonic()
    while True:
        time.sleep(0.005)
        if done[0] != last:
            last, last_change = done[0], time.monotonic()
        elif time.monotonic() - last_change >= 0.02:
            with engine.connect() as connection:
                if not connection.execute(text(REMAINING_SQL)).scalar():
                    break
    end = time.monotonic()
    worker.stop()
    worker.join()
    engine.dispose()
    return {"start": start, "first": first[0] if first else None, "end": end, "done": done[0]}


def _child(spec: dict[str, Any]) -> Any:
    action, url = spec["action"], spec["url"]
    if action == "claim_loop":
        return _child_claim_loop(url, spec["n"])
    if action == "finisher":
        return _child_finisher(url, spec["spread"])
    if action == "wait_sync":
        return _child_wait_sync(url, spec["n"], spec["spread"])
    if action == "wait_async":
        return asyncio.run(_wait_async(url, spec["n"], spec["spread"]))
    if action == "deps_prefill":
        return _child_deps_prefill(url, spec["shape"], spec["n"])
    if action == "deps_drain":
        return _child_deps_drain(url)
    if action == "limits_prefill":
        return _child_limits_prefill(url, spec["variant"], spec["n"], spec["keys"])
    raise ValueError(action)


# ------------------------------------------------------------------------- parent


def _command(root: str) -> list[str]:
    return [sys.executable, "-P", __file__, "--child"]


def _env(root: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": root}


def _run(root: str, spec: dict[str, Any]) -> Any:
    done = subprocess.run(
        [*_command(root), json.dumps(spec)],
        capture_output=True,
        text=True,
        env=_env(root),
        cwd=root,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{spec['action']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(values: list[float]) -> dict[str, float]:
    return {"p50": _pct(values, 0.5), "p99": _pct(values, 0.99), "mean": statistics.fmean(values)}


class _Stats:
    """``pg_stat_statements`` of one database, when the server loaded it."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        with psycopg.connect(url, autocommit=True) as conn:
            loaded = conn.execute("SHOW shared_preload_libraries").fetchone()
            self.on = bool(loaded and "pg_stat_statements" in str(loaded[0]))
            if self.on:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def reset(self) -> None:
        import psycopg

        if self.on:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database"
                    " WHERE datname = current_database()), 0)"
                )

    def top(self, least_calls: int) -> list[dict[str, Any]]:
        import psycopg

        if not self.on:
            return []
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT calls, rows, total_exec_time, mean_exec_time, left(query, 120)"
                " FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database"
                " WHERE datname = current_database()) AND calls >= %s"
                " ORDER BY total_exec_time DESC LIMIT 6",
                (least_calls,),
            ).fetchall()
        keys = ("calls", "rows", "total_ms", "mean_ms", "query")
        return [dict(zip(keys, row, strict=True)) for row in rows]


def _template(server: Any, root: str, label: str, prefix: str = "tpl_flow") -> str:
    from .run import run_child

    url: str = server.create_database(f"{prefix}_{label}")
    run_child("sqla_jobqueue", "install", url, root=root)
    _Stats(url)
    return url.rsplit("/", 1)[1].split("?", 1)[0]


def _drain_workers(url: str, root: str, n: int) -> dict[str, Any]:
    """2 ``deps_drain`` children released together; their stderr (the workers' log) is
    kept in a file and its ``database error`` lines counted."""
    import tempfile

    spec = json.dumps({"action": "deps_drain", "url": url})
    with tempfile.TemporaryFile("w+") as log:
        procs = [
            subprocess.Popen(
                [*_command(root), spec],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=_env(root),
                cwd=root,
            )
            for _ in range(2)
        ]
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [json.loads(proc.communicate()[0].strip().splitlines()[-1]) for proc in procs]
        log.seek(0)
        errors = [line.rstrip() for line in log if line.startswith("database error")]
    first = min(r["first"] for r in results if r["first"] is not None)
    end = max(r["end"] for r in results)
    return {
        "rate": n / (end - first),
        "seconds": end - first,
        "handled": sum(r["done"] for r in results),
        "database_errors": len(errors),
        "database_error_kinds": sorted({line.split(";")[0] for line in errors}),
    }


def _completion_gaps(url: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'completed'), count(*),"
            " extract(epoch FROM max(gap)) * 1000 FROM (SELECT status, completed_at"
            " - lag(completed_at) OVER (ORDER BY completed_at) AS gap FROM jobs) AS g"
        ).fetchone()
    assert row is not None
    return {"completed": row[0], "rows": row[1], "largest_gap_ms": float(row[2] or 0)}


def _measure_claim(server: Any, args: argparse.Namespace, out: dict[str, Any]) -> None:
    from .run import rotated, run_child

    roots = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    templates = {label: _template(server, root, label) for label, root in roots.items()}
    trials: list[dict[str, Any]] = []
    try:
        for trial in range(args.repeats):
            for label in rotated(list(roots), trial):
                root = roots[label]
                row: dict[str, Any] = {"trial": trial, "side": label}
                with server.scratch("flow", template=templates[label]) as url:
                    run_child("sqla_jobqueue", "prefill", url, {"n": args.jobs}, root=root)
                    stats = _Stats(url)
                    stats.reset()
                    loop = _run(root, {"action": "claim_loop", "url": url, "n": args.jobs})
                    row["claim_ms"] = _summary(loop["claim_ms"])
                    row["complete_ms"] = _summary(loop["complete_ms"])
                    row["loop_statements"] = stats.top(args.jobs)
                with server.scratch("flow", template=templates[label]) as url:
                    run_child("sqla_jobqueue", "prefill", url, {"n": args.drain_jobs}, root=root)
                    stats = _Stats(url)
                    stats.reset()
                    drain = _drain_workers(url, root, args.drain_jobs)
                    row["drain_rate"] = drain["rate"]
                    row["drain_statements"] = stats.top(10)
                trials.append(row)
                print(
                    f"  #{trial} {label}: claim p50 {row['claim_ms']['p50']:.3f} ms, complete p50 "
                    f"{row['complete_ms']['p50']:.3f} ms, drain {row['drain_rate']:,.0f} jobs/s",
                    flush=True,
                )
    finally:
        for name in templates.values():
            server.drop_database(server.database(name))
    out["trials"] = trials
    out["commits"] = {"before": args.before_name, "after": args.after_name}


def _measure_wait(server: Any, args: argparse.Namespace, out: dict[str, Any]) -> None:
    import psycopg

    from .run import rotated

    root = os.path.abspath(args.after)
    template = _template(server, root, "wait")
    variants = ["sync", "async", "sync_poll", "async_poll"]
    trials: list[dict[str, Any]] = []
    try:
        for trial in range(args.repeats):
            for variant in rotated(variants, trial):
                poll = variant.endswith("_poll")
                n = args.poll_jobs if poll else args.jobs
                with server.scratch("flow", template=template) as url:
                    if poll:
                        with psycopg.connect(url, autocommit=True) as conn:
                            for (name,) in conn.execute(
                                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'jobs'::regclass"
                                " AND NOT tgisinternal AND tgname LIKE '%finished%'"
                            ).fetchall():
                                conn.execute(f'ALTER TABLE jobs DISABLE TRIGGER "{name}"')
                    action = "wait_async" if variant.startswith("async") else "wait_sync"
                    spread = 1.0 if poll else 0.0
                    times = _run(root, {"action": action, "url": url, "n": n, "spread": spread})
                from_sent = [(r - s) * 1000 for s, _, r in times]
                from_returned = [(r - c) * 1000 for _, c, r in times]
                row = {
                    "trial": trial,
                    "variant": variant,
                    "jobs": n,
                    "from_commit_sent_ms": _summary(from_sent),
                    "from_commit_returned_ms": _summary(from_returned),
                }
                trials.append(row)
                print(
                    f"  #{trial} {variant}: from the commit sent p50 "
                    f"{row['from_commit_sent_ms']['p50']:.2f} / p99 "
                    f"{row['from_commit_sent_ms']['p99']:.2f} ms",
                    flush=True,
                )
    finally:
        server.drop_database(server.database(template))
    out["trials"] = trials
    out["commits"] = {"after": args.after_name}


def _measure_deps(server: Any, args: argparse.Namespace, out: dict[str, Any]) -> None:
    from .run import rotated

    root = os.path.abspath(args.after)
    template = _template(server, root, "deps")
    shapes = ["independent", "fanin", "chain"]
    trials: list[dict[str, Any]] = []
    try:
        for trial in range(args.repeats):
            for shape in rotated(shapes, trial):
                with server.scratch("flow", template=template) as url:
                    filled = _run(
                        root, {"action": "deps_prefill", "url": url, "shape": shape, "n": args.jobs}
                    )
                    stats = _Stats(url)
                    stats.reset()
                    drain = _drain_workers(url, root, args.jobs)
                    row = {
                        "trial": trial,
                        "shape": shape,
                        "prefilled": filled["statuses"],
                        **drain,
                        **_completion_gaps(url),
                        "statements": stats.top(5),
                    }
                trials.append(row)
                print(
                    f"  #{trial} {shape}: {row['rate']:,.0f} jobs/s, largest gap between two "
                    f"completions {row['largest_gap_ms']:.0f} ms",
                    flush=True,
                )
    finally:
        server.drop_database(server.database(template))
    out["trials"] = trials
    out["commits"] = {"after": args.after_name}


def _measure_limits(server: Any, args: argparse.Namespace, out: dict[str, Any]) -> None:
    from .run import rotated

    root = os.path.abspath(args.after)
    template = _template(server, root, "tpl", prefix="limits")
    trials: list[dict[str, Any]] = []
    try:
        for trial in range(args.repeats):
            for variant in rotated(LIMIT_VARIANTS, trial):
                with server.scratch("limits", template=template) as url:
                    spec = {"action": "limits_prefill", "url": url, "variant": variant}
                    filled = _run(root, {**spec, "n": args.jobs, "keys": args.keys})
                    stats = _Stats(url)
                    stats.reset()
                    drain = _drain_workers(url, root, args.jobs)
                    gaps = _completion_gaps(url)
                    row = {
                        "trial": trial,
                        "variant": variant,
                        "prefilled": filled,
                        **drain,
                        **gaps,
                        "statements": stats.top(5),
                    }
                if gaps["completed"] != args.jobs:
                    raise SystemExit(f"{variant}: {gaps['completed']} of {args.jobs} completed")
                trials.append(row)
                print(
                    f"  #{trial} {variant}: {row['rate']:,.0f} jobs/s, "
                    f"{row['completed']:,} completed, {row['database_errors']} database errors "
                    "logged by the workers",
                    flush=True,
                )
    finally:
        server.drop_database(server.database(template))
    medians = {
        variant: statistics.median(r["rate"] for r in trials if r["variant"] == variant)
        for variant in LIMIT_VARIANTS
    }
    out["jobs"] = args.jobs
    out["keys"] = args.keys
    out["trials"] = trials
    out["medians"] = medians
    out["over_unlimited"] = {v: rate / medians["unlimited"] for v, rate in medians.items()}
    out["per_repeat_over_unlimited"] = {
        variant: [
            r["rate"] / u["rate"]
            for r in trials
            for u in trials
            if r["variant"] == variant and u["variant"] == "unlimited" and r["trial"] == u["trial"]
        ]
        for variant in LIMIT_VARIANTS
    }
    out["commits"] = {"after": args.after_name}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.flow_control")
    parser.add_argument("measure", choices=["claim", "wait", "deps", "limits"])
    parser.add_argument("--before", help="checkout compared against (claim)")
    parser.add_argument("--before-name")
    parser.add_argument("--after", default=HERE, help="checkout measured (default: this one)")
    parser.add_argument("--after-name")
    parser.add_argument(
        "--jobs", type=int, help="jobs per repeat (default 20,000 for limits, else 2,000)"
    )
    parser.add_argument("--drain-jobs", type=int, default=20_000, help="claim: jobs drained")
    parser.add_argument("--poll-jobs", type=int, default=40, help="wait: jobs per poll variant")
    parser.add_argument("--keys", type=int, default=1_000, help="limits: concurrency keys")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--database-url", help="use this server instead of an embedded one")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    if args.jobs is None:
        args.jobs = 20_000 if args.measure == "limits" else 2_000
    from .server import start_server

    out: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.flow_control", *(argv or sys.argv[1:])]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_before": os.getloadavg(),
    }
    measure = {
        "claim": _measure_claim,
        "wait": _measure_wait,
        "deps": _measure_deps,
        "limits": _measure_limits,
    }
    with start_server(args.database_url) as server:
        out["server"] = server.describe()
        measure[args.measure](server, args, out)
    out["loadavg_after"] = os.getloadavg()
    text = json.dumps(out, indent=2, default=str)
    if args.output:
        args.output.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        result = _child(json.loads(sys.argv[2]))
        if result is not None:
            print(json.dumps(result), flush=True)
        raise SystemExit(0)
    raise SystemExit(main())
