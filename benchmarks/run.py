"""The measurements of issue 6, run side by side on one server.

Every measurement runs ``repeats`` times; within a repeat the systems take turns
(sqla_jobqueue, its async API, PGQueuer, procrastinate, pgbench), each in a fresh
database cloned from a template holding only its schema, so they meet the same server
state and table sizes. The order of the turns rotates from one repeat to the next
(:func:`rotated`) in every measurement that puts systems (or variants) side by side, and
each measurement records its orders in its ``orders``. Each step runs in a child process
(:mod:`benchmarks.child`). A measurement runs the systems whose module offers its action
(:func:`benchmarks.systems.offers`): a system without ``drain`` is left out of
processing.

A drain's rate (:func:`drain_clock`) counts from the first handler call of its workers
to the moment they knew that no job was left (``rate``); the rate from the release of
the workers, which includes each system's start-up, is kept beside it
(``rate_from_release``).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from .server import Server
from .stats import percentile, summary
from .systems import available, offers

__all__ = ["Runner", "Sizes"]

WORKER_TIMEOUT = 3 * 3600
"""Seconds after which a worker child is killed (the 1M burn-down of a slow system)."""
ALL_SYSTEMS = ("sqla_jobqueue", "sqla_jobqueue_async", "pgqueuer", "procrastinate", "pgbench")
ASYNC_BULK_SYSTEMS = ("sqla_jobqueue_async", "pgqueuer")
"""The async bulk enqueue measurement: ``AsyncJobQueue.enqueue_many`` against PGQueuer's
batch ``Queries.enqueue`` on asyncpg."""
MEASUREMENTS = (
    "enqueue_single",
    "enqueue_bulk",
    "enqueue_bulk_async",
    "processing",
    "latency",
    "depth",
    "progress",
    "table_size",
    "scaling",
    "batch",
)
DEFAULT_MEASUREMENTS = tuple(
    name for name in MEASUREMENTS if name not in ("table_size", "scaling", "batch")
)
"""What a run measures unless told (``--only``): all but ``table_size``, whose fills,
burn-downs and pruning of a million-row history would make a default run much longer,
and ``scaling`` and ``batch`` (tens of drains of 100,000 and 200,000 jobs each)."""


@dataclass
class Sizes:
    """How big each measurement is; ``quick()`` is for the smoke test."""

    repeats: int = 3
    enqueue_single: int = 20_000
    enqueue_bulk: int = 200_000
    bulk_batch: int = 1_000
    async_bulk_jobs: int = 200_000
    async_bulk_batches: tuple[int, ...] = (1_000, 5_000, 20_000)
    processing: tuple[int, ...] = (20_000, 200_000)
    sweep_jobs: int = 20_000
    sweep_repeats: int = 2
    # Worker(concurrency=c, batch_size=b): at most c jobs held, so b <= c; with b < c the
    # next claim runs while the jobs of the last one still do.
    sqla_jobqueue_sweep: tuple[dict[str, int], ...] = (
        {"batch": 10, "concurrency": 10},
        {"batch": 32, "concurrency": 32},
        {"batch": 100, "concurrency": 100},
        {"batch": 100, "concurrency": 200},
        {"batch": 200, "concurrency": 200},
    )
    # AsyncWorker takes the same settings as Worker, and sweeps the same ones.
    sqla_jobqueue_async_sweep: tuple[dict[str, int], ...] = (
        {"batch": 10, "concurrency": 10},
        {"batch": 32, "concurrency": 32},
        {"batch": 100, "concurrency": 100},
        {"batch": 100, "concurrency": 200},
        {"batch": 200, "concurrency": 200},
    )
    pgqueuer_sweep: tuple[dict[str, int], ...] = (
        {"batch": 10},
        {"batch": 100},
        {"batch": 500},
        {"batch": 1000},
    )
    procrastinate_sweep: tuple[dict[str, int], ...] = ({"concurrency": 10}, {"concurrency": 50})
    pgbench_sweep: tuple[dict[str, int], ...] = ({"batch": 10}, {"batch": 100}, {"batch": 200})
    slow_peer_cap: int = 20_000
    latency_jobs: int = 200
    latency_gap: float = 0.020
    depth_jobs: int = 1_000_000
    depth_window: float = 10.0
    claim_samples: int = 500
    progress_jobs: int = 20_000
    progress_updates: int = 10
    # table_size (benchmarks/table_size.py); its burn-down is depth_jobs in depth_window
    # windows (none with depth_jobs 0), its claims claim_samples.
    table_size_rows: tuple[int, ...] = (0, 1_000_000)
    table_size_history_days: float = 30.0
    table_size_drain_jobs: int = 20_000
    table_size_prune_jobs: int = 200_000
    table_size_prune_older_than: str = "7d"
    table_size_prune_batch: int = 10_000
    table_size_status_repeats: int = 5
    table_size_cli_repeats: int = 3
    table_size_variants: tuple[str, ...] = ("jobs", "archive")
    table_size_claim_rounds: int = 5
    table_size_claims_per_round: int = 100
    table_size_vacuum_jobs: int = 200_000
    # scaling (benchmarks/scaling.py)
    scaling_parts: tuple[str, ...] = ("processes", "pooler")
    scaling_jobs: int = 100_000
    scaling_processes: tuple[int, ...] = (1, 2, 4, 8)
    scaling_params: dict[str, int] = field(
        default_factory=lambda: {"concurrency": 200, "batch": 100}
    )
    scaling_pooler_jobs: int = 100_000
    scaling_pooler_processes: tuple[int, ...] = (2, 6)
    scaling_pooler_pool_size: int = 4
    # latency: CPU-burning processes during it (--latency-load), one latency run each
    latency_load: tuple[int, ...] = (0,)
    # batch (measure_batch): claims of b at concurrency c, interleaved, batch_repeats times
    batch_settings: tuple[dict[str, int], ...] = (
        {"concurrency": 200, "batch": 50},
        {"concurrency": 200, "batch": 100},
        {"concurrency": 200, "batch": 150},
        {"concurrency": 200, "batch": 200},
        {"concurrency": 50, "batch": 10},
        {"concurrency": 50, "batch": 25},
        {"concurrency": 50, "batch": 50},
    )
    batch_jobs: tuple[int, ...] = (20_000, 200_000)
    batch_repeats: int = 5

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            repeats=1,
            enqueue_single=200,
            enqueue_bulk=2_000,
            async_bulk_jobs=2_000,
            async_bulk_batches=(500, 2_000),
            processing=(300,),
            sweep_jobs=500,
            sweep_repeats=1,
            sqla_jobqueue_sweep=({"batch": 10, "concurrency": 10},),
            sqla_jobqueue_async_sweep=({"batch": 10, "concurrency": 10},),
            pgqueuer_sweep=({"batch": 10},),
            procrastinate_sweep=({"concurrency": 10},),
            pgbench_sweep=({"batch": 10},),
            slow_peer_cap=500,
            latency_jobs=10,
            latency_gap=0.02,
            depth_jobs=1_000,
            depth_window=0.5,
            claim_samples=20,
            progress_jobs=100,
            table_size_rows=(0, 20_000),
            table_size_drain_jobs=300,
            table_size_prune_jobs=2_000,
            table_size_prune_batch=2_000,
            table_size_status_repeats=2,
            table_size_cli_repeats=1,
            table_size_claim_rounds=2,
            table_size_claims_per_round=10,
            table_size_vacuum_jobs=2_000,
            scaling_jobs=2_000,
            scaling_processes=(1, 2),
            scaling_pooler_jobs=2_000,
            scaling_pooler_processes=(2,),
            batch_settings=(
                {"concurrency": 20, "batch": 10},
                {"concurrency": 20, "batch": 20},
            ),
            batch_jobs=(500,),
            batch_repeats=2,
        )


def _child_command(spec: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "benchmarks.child", json.dumps(spec)]


def _child_root(root: str | None = None) -> str:
    """The checkout a child runs the code of: ``root``, this one by default."""
    return root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child_env(root: str | None = None) -> dict[str, str]:
    """The environment of a child: ``root`` (this checkout by default) first on its path,
    so that it imports that checkout's ``benchmarks`` and ``sqla_jobqueue``. The child
    also starts in ``root`` (:func:`_child_root`): ``python -m`` puts its working
    directory before ``PYTHONPATH``, so a child started in another checkout would import
    that one's code instead."""
    env = dict(os.environ)
    root = _child_root(root)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _parse(stdout: str) -> Any:
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError("child printed no result")


def run_child(
    system: str,
    action: str,
    url: str,
    params: dict[str, Any] | None = None,
    root: str | None = None,
) -> Any:
    spec = {"system": system, "action": action, "url": url, "params": params or {}}
    out = subprocess.run(
        _child_command(spec),
        capture_output=True,
        text=True,
        env=_child_env(root),
        cwd=_child_root(root),
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{system} {action} failed:\n{out.stderr[-3000:]}")
    return _parse(out.stdout)


def run_workers(
    system: str,
    url: str,
    params: dict[str, Any],
    workers: int,
    during: Callable[[], Any] | None = None,
    root: str | None = None,
) -> tuple[list[dict[str, Any]], Any]:
    """Start ``workers`` drain children, release them together, collect their results
    (the children run the code of checkout ``root``, this one by default)."""
    spec = {"system": system, "action": "drain", "url": url, "params": params}
    procs = [
        subprocess.Popen(
            _child_command(spec),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_child_env(root),
            cwd=_child_root(root),
        )
        for _ in range(workers)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "READY":
                err = proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"{system} worker did not start: {line!r}\n{err[-3000:]}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        extra = during() if during else None
        results = []
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=WORKER_TIMEOUT)
            if proc.returncode != 0:
                raise RuntimeError(f"{system} worker failed:\n{stderr[-3000:]}")
            results.append(_parse(stdout))
        return results, extra
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def drain_clock(results: list[dict[str, Any]], n: int) -> dict[str, float]:
    """The rates of one drain of ``n`` jobs from its workers' ``start``, ``first`` and
    ``end`` (:mod:`benchmarks.systems`).

    ``rate`` counts from the earliest first handler call (the earliest release when no
    worker reports one) to the latest end; ``rate_from_release`` from the earliest
    release to the same end; ``startup_s`` is the time between the two starts.
    """
    released = min(r["start"] for r in results)
    firsts = [r["first"] for r in results if r.get("first") is not None]
    first = min(firsts) if firsts else released
    end = max(r["end"] for r in results)
    seconds = max(end - first, 1e-9)
    from_release = max(end - released, 1e-9)
    return {
        "rate": n / seconds,
        "rate_from_release": n / from_release,
        "seconds": seconds,
        "seconds_from_release": from_release,
        "startup_s": first - released,
    }


def rotated(systems: list[str], trial: int) -> list[str]:
    """``systems`` starting at the ``trial``-th: each takes every place in turn over the
    repeats, so none always runs first (on a cold server) or right after the same one."""
    if not systems:
        return []
    shift = trial % len(systems)
    return systems[shift:] + systems[:shift]


def _commits(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def _settle_stats() -> None:
    # Backends flush their statistics when they exit; give the exits a moment.
    time.sleep(0.5)


@dataclass
class Runner:
    """Runs the chosen measurements for the chosen systems and collects raw results."""

    server: Server
    sizes: Sizes
    systems: list[str]
    only: set[str] = field(default_factory=lambda: set(DEFAULT_MEASUREMENTS))
    log: Callable[[str], None] = print
    templates: dict[str, str] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    # ----------------------------------------------------------------- setup

    def prepare(self) -> None:
        for system in self.systems:
            url = self.server.create_database(f"tpl_{system}")
            run_child(system, "install", url)
            name = url.rsplit("/", 1)[1].split("?", 1)[0]
            self.templates[system] = name

    def cleanup(self) -> None:
        for name in self.templates.values():
            self.server.drop_database(self.server.database(name))

    def fresh(self, system: str) -> Any:
        return self.server.scratch(system.replace("_", ""), template=self.templates[system])

    def offering(self, action: str) -> list[str]:
        """The chosen systems whose module implements ``action``."""
        return [s for s in self.systems if offers(s, action)]

    # ----------------------------------------------------------- measurements

    def run(self) -> dict[str, Any]:
        self.prepare()
        try:
            for name in MEASUREMENTS:
                if name in self.only:
                    self.log(f"== {name}")
                    started = time.time()
                    self.results[name] = getattr(self, f"measure_{name}")()
                    self.results[name]["seconds"] = round(time.time() - started, 1)
        finally:
            self.cleanup()
        return self.results

    def measure_enqueue_single(self) -> dict[str, Any]:
        """One job per transaction; pgbench also inside ``BEGIN … COMMIT`` (right after
        its autocommit run). The order of the systems rotates (``orders``)."""
        n = self.sizes.enqueue_single
        systems = self.offering("enqueue_single")
        rates: dict[str, list[float]] = {s: [] for s in systems}
        explicit: list[float] = []
        orders: list[list[str]] = []
        for trial in range(self.sizes.repeats):
            order = rotated(systems, trial)
            orders.append(order)
            for system in order:
                with self.fresh(system) as url:
                    elapsed = run_child(system, "enqueue_single", url, {"n": n})["elapsed"]
                rates[system].append(n / elapsed)
                self.log(f"  enqueue_single #{trial} {system}: {n / elapsed:,.0f} jobs/s")
                if system == "pgbench":
                    with self.fresh(system) as url:
                        spec = {"function": "enqueue_single_tx", "kwargs": {"n": n}}
                        tx = n / run_child(system, "call", url, spec)
                    explicit.append(tx)
                    self.log(f"  enqueue_single #{trial} pgbench BEGIN/COMMIT: {tx:,.0f} jobs/s")
        out: dict[str, Any] = {
            "jobs": n,
            "orders": orders,
            "rate": {s: summary(v) for s, v in rates.items()},
        }
        if explicit:
            out["pgbench_explicit_transaction"] = summary(explicit)
        return out

    def measure_enqueue_bulk(self) -> dict[str, Any]:
        """``batch`` jobs per call; the order of the systems rotates (``orders``)."""
        n, batch = self.sizes.enqueue_bulk, self.sizes.bulk_batch
        systems = self.offering("enqueue_bulk")
        rates: dict[str, list[float]] = {s: [] for s in systems}
        orders: list[list[str]] = []
        for trial in range(self.sizes.repeats):
            order = rotated(systems, trial)
            orders.append(order)
            for system in order:
                with self.fresh(system) as url:
                    params = {"n": n, "batch": batch}
                    elapsed = run_child(system, "enqueue_bulk", url, params)["elapsed"]
                rates[system].append(n / elapsed)
                self.log(f"  enqueue_bulk #{trial} {system}: {n / elapsed:,.0f} jobs/s")
        return {
            "jobs": n,
            "batch": batch,
            "orders": orders,
            "rate": {s: summary(v) for s, v in rates.items()},
        }

    def measure_enqueue_bulk_async(self) -> dict[str, Any]:
        """Async bulk enqueue at each batch size: ``AsyncJobQueue.enqueue_many`` on an
        ``AsyncSession`` (psycopg async, binary ``COPY``) against PGQueuer's batch
        ``Queries.enqueue`` on asyncpg. The same jobs, timed the same way (the child's
        ``perf_counter`` around the loop, connected before), the order of the systems
        rotated from one repeat to the next."""
        n = self.sizes.async_bulk_jobs
        batches = list(self.sizes.async_bulk_batches)
        systems = [s for s in ASYNC_BULK_SYSTEMS if s in self.offering("enqueue_bulk")]
        rates: dict[int, dict[str, list[float]]] = {b: {s: [] for s in systems} for b in batches}
        orders: list[list[str]] = []
        for trial in range(self.sizes.repeats):
            order = rotated(systems, trial)
            orders.append(order)
            for batch in batches:
                for system in order:
                    with self.fresh(system) as url:
                        params = {"n": n, "batch": batch}
                        elapsed = run_child(system, "enqueue_bulk", url, params)["elapsed"]
                    rates[batch][system].append(n / elapsed)
                    self.log(
                        f"  enqueue_bulk_async #{trial} {system} ({batch:,} per call): "
                        f"{n / elapsed:,.0f} jobs/s"
                    )
        return {
            "jobs": n,
            "batches": batches,
            "orders": orders,
            "rate": {str(b): {s: summary(v) for s, v in by.items()} for b, by in rates.items()},
        }

    def drain_once(self, system: str, n: int, params: dict[str, Any]) -> dict[str, Any]:
        """Prefill ``n`` jobs in a fresh database, drain them with 2 workers (pgbench: 2
        clients of one process); the rates of :func:`drain_clock`, commits per job."""
        with self.fresh(system) as url:
            return self.drain_in(system, url, n, params)

    def drain_in(
        self,
        system: str,
        url: str,
        n: int,
        params: dict[str, Any],
        during: Callable[[], Any] | None = None,
    ) -> dict[str, Any]:
        """:meth:`drain_once` in database ``url`` as it is; ``during`` runs in this process
        once the workers are released (its result is ``during``), and the returned
        ``results`` are the workers' own."""
        run_child(system, "prefill", url, {"n": n})
        _settle_stats()
        before = _commits(url)
        workers = 1 if system == "pgbench" else 2
        results, extra = run_workers(system, url, {**params, "expect": n}, workers, during)
        _settle_stats()
        commits = _commits(url) - before
        processed = sum(r["processed"] for r in results)
        out = {
            **drain_clock(results, n),
            "processed": processed,
            "complete": processed >= n and not any(r.get("stalled") for r in results),
            "commits_per_job": commits / n,
            "mode": results[0].get("mode"),
        }
        if during is not None:
            out["during"] = extra
            out["results"] = [{k: r.get(k) for k in ("start", "first", "end")} for r in results]
        return out

    def _sweep(self, system: str) -> list[dict[str, int]]:
        return list(getattr(self.sizes, f"{system}_sweep"))

    def measure_processing(self) -> dict[str, Any]:
        """Sweep each system's settings, then drain each size at each one's best, the
        order of the systems rotated from one repeat to the next (``orders``). Rates are
        :func:`drain_clock`'s: ``rate`` from the first handler call (the best settings
        are picked by it), ``rate_from_release`` beside it."""
        out: dict[str, Any] = {"sweep": {}, "best": {}, "runs": {}}
        n = self.sizes.sweep_jobs
        systems = self.offering("drain")
        for system in systems:
            # Settings interleaved, each run sweep_repeats times: one slow moment of a
            # shared machine does not pick the settings of the measurement.
            settings = self._sweep(system)
            tried: list[list[dict[str, Any]]] = [[] for _ in settings]
            for _ in range(self.sizes.sweep_repeats):
                for params, results in zip(settings, tried, strict=True):
                    result = self.drain_once(system, min(n, self._cap(system, n)), params)
                    results.append(result)
                    self.log(f"  sweep {system} {params}: {_rates(result)}")
            out["sweep"][system] = [
                {
                    "params": params,
                    "rate": statistics.median(r["rate"] for r in results),
                    "rates": [r["rate"] for r in results],
                    "rate_from_release": statistics.median(r["rate_from_release"] for r in results),
                    "commits_per_job": statistics.median(r["commits_per_job"] for r in results),
                }
                for params, results in zip(settings, tried, strict=True)
            ]
            best = max(out["sweep"][system], key=lambda entry: entry["rate"])
            out["best"][system] = best["params"]
        if "pgbench" in self.systems and "sqla_jobqueue" in self.systems:
            # The target compares with pgbench at the batch size sqla_jobqueue runs best at.
            out["best"]["pgbench"] = {"batch": out["best"]["sqla_jobqueue"]["batch"]}
        out["orders"] = {}
        for size in self.sizes.processing:
            runs: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
            orders: list[list[str]] = []
            for trial in range(self.sizes.repeats):
                order = rotated(systems, trial)
                orders.append(order)
                for system in order:
                    if trial > 0 and self._cap(system, size) < size:
                        continue
                    jobs = self._cap(system, size)
                    result = self.drain_once(system, jobs, out["best"][system])
                    runs[system].append(result)
                    self.log(f"  processing {size} #{trial} {system}: {_rates(result)}")
            out["runs"][str(size)] = {
                system: {
                    "jobs": self._cap(system, size),
                    "rate": summary([r["rate"] for r in rs]),
                    "rate_from_release": summary([r["rate_from_release"] for r in rs]),
                    "startup_s": summary([r["startup_s"] for r in rs]),
                    "commits_per_job": summary([r["commits_per_job"] for r in rs]),
                    "complete": all(r["complete"] for r in rs),
                    "mode": rs[0]["mode"] if rs else None,
                }
                for system, rs in runs.items()
            }
            out["orders"][str(size)] = orders
        return out

    def _cap(self, system: str, size: int) -> int:
        """procrastinate drains ~1.4k jobs/s: its big runs are capped, and said so."""
        if system == "procrastinate":
            return min(size, self.sizes.slow_peer_cap)
        return size

    def measure_latency(self) -> dict[str, Any]:
        """:meth:`latency_at` each of ``latency_load`` (CPU-burning processes running
        meanwhile, :func:`burning`); with more than one, the first one's result with
        every one's under ``by_load``."""
        loads = list(self.sizes.latency_load) or [0]
        by_load: dict[str, dict[str, Any]] = {}
        for load in loads:
            with burning(load):
                if load:
                    self.log(f"  latency with {load} CPU-burning processes")
                by_load[str(load)] = self.latency_at()
                by_load[str(load)]["load"] = load
        first = dict(by_load[str(loads[0])])
        if len(loads) > 1:
            first["by_load"] = by_load
        return first

    def latency_at(self) -> dict[str, Any]:
        """Enqueue-to-handler latency of one idle worker per variant, the order of the
        variants rotated from one repeat to the next (``orders``). Every worker is given
        concurrency 1 and claims of 10 (what each system takes of these) and is otherwise
        at its defaults; "polling" turns LISTEN off and keeps the default poll interval
        (sqla_jobqueue 2 s, procrastinate 5 s). PGQueuer always listens; its fallback
        wait (``dequeue_timeout``) is 1 s, as in its drains."""
        from .systems import ours

        out: dict[str, Any] = {}
        variants: list[tuple[str, str, dict[str, Any]]] = []
        if "sqla_jobqueue" in self.systems and ours.worker_available():
            variants += [
                ("sqla_jobqueue", "notify", {}),
                ("sqla_jobqueue", "polling", {"listen_notify": False}),
            ]
        if "sqla_jobqueue_async" in self.systems and ours.worker_available():
            variants.append(("sqla_jobqueue_async", "notify", {}))
        if "pgqueuer" in self.systems:
            variants.append(("pgqueuer", "notify", {}))
        if "procrastinate" in self.systems:
            variants += [
                ("procrastinate", "notify", {}),
                ("procrastinate", "polling", {"listen_notify": False}),
            ]
        n, gap = self.sizes.latency_jobs, self.sizes.latency_gap
        by_key = {f"{system} ({label})": (system, params) for system, label, params in variants}
        orders: list[list[str]] = []
        for trial in range(self.sizes.repeats):
            order = rotated(list(by_key), trial)
            orders.append(order)
            for key in order:
                system, params = by_key[key]
                with self.fresh(system) as url:

                    def enqueue(system: str = system, url: str = url) -> Any:
                        time.sleep(1.0)
                        return run_child(system, "enqueue_timed", url, {"n": n, "gap": gap})

                    params = {**params, "latency": True, "expect": n, "concurrency": 1, "batch": 10}
                    results, sent = run_workers(system, url, params, 1, during=enqueue)
                committed = {before: after for before, after in sent["sent"]}
                seen = results[0].get("latencies", [])
                lat = [(started - before) * 1000 for before, started in seen]
                from_commit = [
                    (started - committed[before]) * 1000
                    for before, started in seen
                    if before in committed
                ]
                for name, values in (("", lat), ("from commit ", from_commit)):
                    entry = out.setdefault(f"{key} {name}".strip(), {"p50": [], "p99": []})
                    if values:
                        entry["p50"].append(percentile(values, 50))
                        entry["p99"].append(percentile(values, 99))
                if lat:
                    p50, p99 = percentile(from_commit, 50), percentile(from_commit, 99)
                    self.log(
                        f"  latency #{trial} {key}: p50 {percentile(lat, 50):.2f} ms "
                        f"p99 {percentile(lat, 99):.2f} ms ({len(lat)} jobs); "
                        f"from commit p50 {p50:.2f} p99 {p99:.2f}"
                    )
        return {
            "jobs": n,
            "gap_ms": gap * 1000,
            "orders": orders,
            "ms": {k: {"p50": summary(v["p50"]), "p99": summary(v["p99"])} for k, v in out.items()},
            "skipped": [] if ours.worker_available() else ["sqla_jobqueue: no Worker yet"],
        }

    def _windows(self, url: str, width: float, since: Any = None) -> list[float]:
        """Jobs completed per second in each ``width``-second window, by the DB clock,
        counting only the jobs completed at or after ``since`` (a ``timestamptz`` of the
        database clock; every completed job when ``None``): a table with a backdated
        history holds completed jobs that the burn-down did not complete."""
        completed = "status = 'completed'" + (
            "" if since is None else " AND completed_at >= %(since)s"
        )
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "WITH w AS (SELECT floor(extract(epoch FROM completed_at - "
                f"(SELECT min(completed_at) FROM jobs WHERE {completed})) / %(width)s) AS k "
                f"FROM jobs WHERE {completed}) "
                "SELECT k, count(*) FROM w GROUP BY k ORDER BY k",
                {"width": width, "since": since},
            ).fetchall()
        return [count / width for _, count in rows]

    def measure_depth(self) -> dict[str, Any]:
        """Burn-downs of ``depth_jobs`` (ours and pgbench, the order rotated from one repeat
        to the next: ``orders``), claim time on the drained table (before and after
        VACUUM) vs an empty one, worker RSS."""
        n, width = self.sizes.depth_jobs, self.sizes.depth_window
        best = self.results.get("processing", {}).get("best", {})
        systems: list[str] = [s for s in ("sqla_jobqueue", "pgbench") if s in self.systems]
        runs: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
        claims: dict[str, list[float]] = {"drained": [], "vacuumed": [], "empty": []}
        orders: list[list[str]] = []
        for trial in range(self.sizes.repeats):
            order = rotated(systems, trial)
            orders.append(order)
            for system in order:
                params = best.get(system) or self._sweep(system)[-1]
                with self.fresh(system) as url:
                    entry = self._burn_down(system, url, params, n, width)
                    if system == "sqla_jobqueue":
                        for key, p50 in self._claim_p50s(url).items():
                            claims[key].append(p50)
                runs[system].append(entry)
                self.log(
                    f"  depth #{trial} {system}: {_rates(entry)}, last/first window "
                    f"{entry.get('last_vs_first', float('nan')):.2f}"
                )
        out: dict[str, Any] = {
            "jobs": n,
            "window_s": width,
            "orders": orders,
            "runs": runs,
            "summary": {},
        }
        for system, entries in runs.items():
            out["summary"][system] = {
                key: summary([e[key] for e in entries if e.get(key) is not None])
                for key in (
                    "rate", "rate_from_release", "first_window", "last_window", "last_vs_first"
                )
            }  # fmt: skip
        rss = [e["rss"] for e in runs.get("sqla_jobqueue", []) if e.get("rss")]
        if rss:
            out["rss"] = max(rss, key=lambda r: r["max_growth"] or 0)
        if claims["empty"]:
            out["claim_ms"] = {key: summary(values) for key, values in claims.items()}
            out["claim_ms"]["finished_rows"] = n
            empty = statistics.median(claims["empty"])
            out["claim_ms"]["ratio"] = {
                "vacuumed": statistics.median(claims["vacuumed"]) / empty,
                "drained": statistics.median(claims["drained"]) / empty,
            }
        return out

    def _burn_down(
        self, system: str, url: str, params: dict[str, int], n: int, width: float
    ) -> dict[str, Any]:
        run_child(system, "prefill", url, {"n": n})
        # Every burn-down starts right after a checkpoint, so the prefill's WAL does not
        # start one at a different moment of each run (its full-page writes slow whatever
        # runs then).
        with psycopg.connect(url, autocommit=True) as conn:
            try:
                conn.execute("CHECKPOINT")
            except psycopg.errors.InsufficientPrivilege:
                self.log("  (no CHECKPOINT before the burn-down: not allowed for this role)")
            row = conn.execute("SELECT clock_timestamp()").fetchone()
        since = row[0] if row else None
        workers = 1 if system == "pgbench" else 2
        results, _ = run_workers(system, url, {**params, "expect": n}, workers)
        windows = self._windows(url, width, since)
        full = windows[:-1] if len(windows) > 1 else windows
        clock = drain_clock(results, n)
        entry: dict[str, Any] = {
            "params": params,
            "rate": clock["rate"],
            "rate_from_release": clock["rate_from_release"],
            "startup_s": clock["startup_s"],
            "windows": windows,
            "first_window": full[0] if full else None,
            "last_window": full[-1] if full else None,
        }
        # The last window is cut short by the end of the run; first vs last needs two others.
        if len(full) >= 2 and full[0]:
            entry["last_vs_first"] = full[-1] / full[0]
        if system != "pgbench" and any(r.get("rss") for r in results):
            entry["rss"] = _rss_growth(results)
        return entry

    def _claim_p50s(self, drained: str) -> dict[str, float]:
        """p50 ms of ``JobQueue.claim`` on the table a burn-down just drained (its claimed
        rows' index entries not yet vacuumed), on the same table after VACUUM (what
        autovacuum leaves within about a minute), and on an empty table."""
        samples = self.sizes.claim_samples
        timing = {"function": "claim_timing", "kwargs": {"claims": samples, "batch": 10}}

        def p50(url: str) -> float:
            run_child("sqla_jobqueue", "prefill", url, {"n": samples * 10})
            return percentile(run_child("sqla_jobqueue", "call", url, timing), 50) * 1000

        out = {"drained": p50(drained)}
        with psycopg.connect(drained, autocommit=True) as conn:
            conn.execute("VACUUM jobs")
        out["vacuumed"] = p50(drained)
        with self.fresh("sqla_jobqueue") as empty:
            out["empty"] = p50(empty)
        return out

    def measure_table_size(self) -> dict[str, Any]:
        """Does sqla_jobqueue stay fast as the table grows? Claims, a drain, a burn-down,
        ``status`` and pruning on top of each size of finished history
        (:mod:`benchmarks.table_size`)."""
        from . import table_size

        return table_size.measure(self)

    def measure_scaling(self) -> dict[str, Any]:
        """Worker processes 1, 2, 4, 8 and PgBouncer against direct connections
        (:mod:`benchmarks.scaling`)."""
        from . import scaling

        return scaling.measure(self)

    def measure_batch(self) -> dict[str, Any]:
        """sqla_jobqueue's sync Worker at each of ``batch_settings`` (claims of ``batch``
        at ``concurrency``), draining each of ``batch_jobs`` with 2 processes,
        ``batch_repeats`` times, the settings interleaved and their order rotated from one
        repeat to the next (``orders``); medians and ranges of :func:`drain_clock`'s rate."""
        if "sqla_jobqueue" not in self.systems:
            return {"skipped": "sqla_jobqueue not selected"}
        settings = [dict(s) for s in self.sizes.batch_settings]
        labels = [f"c{s['concurrency']} b{s['batch']}" for s in settings]
        by_label = dict(zip(labels, settings, strict=True))
        out: dict[str, Any] = {
            "settings": settings,
            "labels": labels,
            "jobs": list(self.sizes.batch_jobs),
            "repeats": self.sizes.batch_repeats,
            "orders": [],
            "runs": {},
            "summary": {},
        }
        orders: list[list[str]] = []
        for trial in range(self.sizes.batch_repeats):
            orders.append(rotated(labels, trial))
        out["orders"] = orders
        for n in self.sizes.batch_jobs:
            runs: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
            for trial, order in enumerate(orders):
                for label in order:
                    result = self.drain_once("sqla_jobqueue", n, by_label[label])
                    runs[label].append(result)
                    self.log(f"  batch {n:,} {label} #{trial}: {_rates(result)}")
            out["runs"][str(n)] = runs
            out["summary"][str(n)] = {
                label: {
                    "rate": summary([r["rate"] for r in rs]),
                    "rate_from_release": summary([r["rate_from_release"] for r in rs]),
                    "commits_per_job": summary([r["commits_per_job"] for r in rs]),
                    "complete": all(r["complete"] for r in rs),
                }
                for label, rs in runs.items()
            }
        return out

    def measure_progress(self) -> dict[str, Any]:
        """sqla_jobqueue's drain with handlers reporting progress and without, in an order
        rotated from one repeat to the next (``orders``)."""
        if "sqla_jobqueue" not in self.systems:
            return {"skipped": "sqla_jobqueue not selected"}
        n = self.sizes.progress_jobs
        best = self.results.get("processing", {}).get("best", {}).get("sqla_jobqueue")
        params = best or self._sweep("sqla_jobqueue")[0]
        rates: dict[str, list[float]] = {"without": [], "with": []}
        updates_of = {"without": 0, "with": self.sizes.progress_updates}
        orders: list[list[str]] = []
        for trial in range(self.sizes.repeats):
            order = rotated(list(updates_of), trial)
            orders.append(order)
            for label in order:
                updates = updates_of[label]
                result = self.drain_once(
                    "sqla_jobqueue", n, {**params, "progress_updates": updates}
                )
                rates[label].append(result["rate"])
                self.log(f"  progress #{trial} {label}: {_rates(result)}")
        out: dict[str, Any] = {
            "jobs": n,
            "updates_per_job": self.sizes.progress_updates,
            "params": params,
            "orders": orders,
        }
        out["rate"] = {k: summary(v) for k, v in rates.items()}
        if rates["without"] and rates["with"]:
            out["cost"] = 1 - summary(rates["with"])["median"] / summary(rates["without"])["median"]
        return out


@contextlib.contextmanager
def burning(processes: int) -> Iterator[None]:
    """``processes`` processes each running a busy Python loop, for a loaded machine;
    killed on the way out."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def _rates(result: dict[str, Any]) -> str:
    """A drain's rates for the log: from the first handler call, and from the release."""
    line = f"{result['rate']:,.0f} jobs/s (from release {result['rate_from_release']:,.0f}"
    if result.get("startup_s") is not None:
        line += f"; first handler {result['startup_s'] * 1000:,.0f} ms after it"
    return line + ")"


def _rss_growth(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per worker: RSS once warmed up (10 % into the run) and the peak after it."""
    growth = []
    for r in results:
        samples = r.get("rss", [])
        if len(samples) < 2:
            continue
        t0, t1 = samples[0][0], samples[-1][0]
        warm_at = t0 + (t1 - t0) * 0.1
        warm = next((rss for t, rss in samples if t >= warm_at), samples[0][1])
        peak = max(rss for t, rss in samples if t >= warm_at)
        growth.append({"warm_mb": warm / 2**20, "peak_mb": peak / 2**20, "growth": peak / warm - 1})
    return {"workers": growth, "max_growth": max((g["growth"] for g in growth), default=None)}


def asdict_sizes(sizes: Sizes) -> dict[str, Any]:
    return asdict(sizes)


def usable_systems(requested: list[str]) -> tuple[list[str], list[str]]:
    """Split ``requested`` into (installed, missing) systems."""
    ok = [s for s in requested if available(s)]
    return ok, [s for s in requested if s not in ok]
