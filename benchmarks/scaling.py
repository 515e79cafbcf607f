"""``scaling``: sqla_jobqueue's throughput as worker processes are added, and behind
PgBouncer.

**Processes** (:func:`processes`): ``scaling_jobs`` no-op jobs (100,000; ``--quick``
2,000) drained by 1, 2, 4 and 8 worker processes (``scaling_processes``) of the sync
``Worker`` and of the ``AsyncWorker``, each at concurrency 200 and claims of 100
(``scaling_params``) and otherwise at its defaults, in a fresh database each; the order
of the process counts rotates from one repeat to the next (``orders``). The rate is
:func:`benchmarks.run.drain_clock`'s, from the first handler call of any worker.

**PgBouncer** (:func:`pooler`): a PgBouncer of the benchmark's own
(:mod:`sqla_jobqueue.testing.pgbouncer`: transaction mode, ``default_pool_size`` 4) in front of the
same server; ``scaling_pooler_jobs`` jobs drained by 2 and 6 sync worker processes in
three variants, rotated per repeat:

``pgbouncer``
    the workers' engine through PgBouncer with prepared statements off
    (``prepare_threshold=None``), LISTEN straight to the server
    (``Worker(listen=<direct URL>)``);
``direct``
    the same settings straight to the server (prepared statements still off);
``direct, prepared``
    straight to the server with psycopg's default (statements prepared after 5 runs).

For each: jobs/s, and the peak of the server's client backends in the run's database
(``pg_stat_activity``, sampled every 50 ms by :class:`ConnectionSampler` while the
workers run; PgBouncer's own server connections are counted there too, as client
backends of the database).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg

from sqla_jobqueue.testing.pgbouncer import find_pgbouncer, run_pgbouncer

from .run import drain_clock, rotated, run_child, run_workers
from .stats import summary

if TYPE_CHECKING:
    from .run import Runner

__all__ = ["ConnectionSampler", "measure", "pooler", "processes"]

SYSTEMS = ("sqla_jobqueue", "sqla_jobqueue_async")
SAMPLE_EVERY = 0.05
"""Seconds between two looks at ``pg_stat_activity``."""
POOLER_VARIANTS: dict[str, dict[str, Any]] = {
    "pgbouncer": {"through_pooler": True, "prepared": False},
    "direct": {"through_pooler": False, "prepared": False},
    "direct, prepared": {"through_pooler": False, "prepared": True},
}


class ConnectionSampler(threading.Thread):
    """Counts the server's client backends connected to one database every
    :data:`SAMPLE_EVERY` seconds until :meth:`finish`; :attr:`peak` is the largest count
    (the sampler's own connection left out)."""

    def __init__(self, conninfo: str) -> None:
        super().__init__(daemon=True)
        self.conninfo = conninfo
        self.samples: list[int] = []
        self._done = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while not self._done.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                    "'client backend' AND datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                ).fetchone()
                self.samples.append(int(row[0]) if row else 0)
                self._done.wait(SAMPLE_EVERY)

    def finish(self) -> int:
        """Stop sampling; the peak count."""
        self._done.set()
        self.join()
        return max(self.samples, default=0)


def drain(
    runner: Runner,
    system: str,
    n: int,
    workers: int,
    params: dict[str, Any],
    worker_url: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """Prefill ``n`` jobs in a fresh database and drain them with ``workers`` processes
    of ``system`` (connecting to ``worker_url(database URL)`` when given, e.g. the same
    database through PgBouncer; LISTEN then goes to the database itself when
    ``params["listen_direct"]``);
    the rates of :func:`drain_clock` and the peak of the database's connections."""
    with runner.fresh(system) as url:
        run_child(system, "prefill", url, {"n": n})
        target = worker_url(url) if worker_url is not None else url
        spec = {**params, "expect": n}
        if params.get("listen_direct"):
            spec["listen_url"] = url
        sampler = ConnectionSampler(url)
        sampler.start()
        try:
            results, _ = run_workers(system, target, spec, workers)
        finally:
            peak = sampler.finish()
    processed = sum(r["processed"] for r in results)
    return {
        **drain_clock(results, n),
        "workers": workers,
        "processed": processed,
        "complete": processed >= n and not any(r.get("stalled") for r in results),
        "peak_connections": peak,
        "mode": results[0].get("mode"),
    }


def processes(runner: Runner) -> dict[str, Any]:
    """The process counts of ``scaling_processes``, for each of the sync and async
    workers that were chosen; see the module."""
    sizes = runner.sizes
    n, counts = sizes.scaling_jobs, list(sizes.scaling_processes)
    params = dict(sizes.scaling_params)
    out: dict[str, Any] = {"jobs": n, "processes": counts, "params": params, "systems": {}}
    for system in [s for s in SYSTEMS if s in runner.systems]:
        runs: dict[str, list[dict[str, Any]]] = {str(c): [] for c in counts}
        orders: list[list[int]] = []
        for trial in range(sizes.repeats):
            order = rotated(counts, trial)
            orders.append(order)
            for count in order:
                result = drain(runner, system, n, count, params)
                runs[str(count)].append(result)
                runner.log(
                    f"  scaling {system} {count} process{'es' if count > 1 else ''} #{trial}: "
                    f"{result['rate']:,.0f} jobs/s ({result['peak_connections']} connections)"
                )
        one = statistics.median(r["rate"] for r in runs[str(counts[0])]) if counts else None
        out["systems"][system] = {
            "orders": orders,
            "runs": runs,
            "summary": {
                label: {
                    "rate": summary([r["rate"] for r in rs]),
                    "rate_from_release": summary([r["rate_from_release"] for r in rs]),
                    "peak_connections": summary([r["peak_connections"] for r in rs]),
                    "complete": all(r["complete"] for r in rs),
                    "vs_first": statistics.median(r["rate"] for r in rs) / one if one else None,
                }
                for label, rs in runs.items()
            },
        }
    return out


def pooler(runner: Runner) -> dict[str, Any]:
    """The sync worker through PgBouncer against direct connections; see the module."""
    sizes = runner.sizes
    if "sqla_jobqueue" not in runner.systems:
        return {"skipped": "sqla_jobqueue not selected"}
    if find_pgbouncer() is None:
        return {"skipped": "pgbouncer is not installed (apt-get install -y pgbouncer)"}
    n, counts = sizes.scaling_pooler_jobs, list(sizes.scaling_pooler_processes)
    base = dict(sizes.scaling_params)
    labels = list(POOLER_VARIANTS)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        str(c): {label: [] for label in labels} for c in counts
    }
    orders: list[list[str]] = []
    with run_pgbouncer(runner.server.conninfo, pool_size=sizes.scaling_pooler_pool_size) as bouncer:

        def through_pooler(direct: str) -> str:
            return bouncer.url(direct).render_as_string(hide_password=False)

        for trial in range(sizes.repeats):
            order = rotated(labels, trial)
            orders.append(order)
            for count in counts:
                for label in order:
                    variant = POOLER_VARIANTS[label]
                    params = {**base, "prepared": variant["prepared"]}
                    through = None
                    if variant["through_pooler"]:
                        params["listen_direct"] = True
                        through = through_pooler
                    result = drain(runner, "sqla_jobqueue", n, count, params, through)
                    runs[str(count)][label].append(result)
                    runner.log(
                        f"  scaling {label}, {count} processes #{trial}: "
                        f"{result['rate']:,.0f} jobs/s, peak {result['peak_connections']} "
                        "server connections"
                    )
    return {
        "jobs": n,
        "processes": counts,
        "pool_size": sizes.scaling_pooler_pool_size,
        "params": base,
        "variants": labels,
        "orders": orders,
        "runs": runs,
        "summary": {
            count: {
                label: {
                    "rate": summary([r["rate"] for r in rs]),
                    "peak_connections": summary([r["peak_connections"] for r in rs]),
                    "complete": all(r["complete"] for r in rs),
                }
                for label, rs in by.items()
            }
            for count, by in runs.items()
        },
    }


def measure(runner: Runner) -> dict[str, Any]:
    """:func:`processes`, then :func:`pooler` (``scaling_parts`` chooses)."""
    out: dict[str, Any] = {}
    started = time.time()
    if "processes" in runner.sizes.scaling_parts:
        out["processes"] = processes(runner)
    if "pooler" in runner.sizes.scaling_parts:
        out["pooler"] = pooler(runner)
    out["seconds"] = round(time.time() - started, 1)
    return out
