"""``table_size``: does sqla_jobqueue stay fast as its table grows?

For each size of finished history (``Sizes.table_size_rows``: 0 and 1,000,000 rows by
default, ``--table-size-rows`` for more) and each variant (``table_size_variants``:
``jobs``, the history in the job table; ``archive``, the history in a
:class:`sqla_jobqueue.JobArchiveMixin` table's day partitions, made with
``Partition(day).create``, and the job table holding only the steps' own jobs), in a
fresh database cloned from the template, :func:`one_size` runs these steps, each step's
work in child processes (:func:`benchmarks.run.run_child`,
:func:`benchmarks.run.run_workers`):

1. **Fill**: ``ours.add_finished`` inserts the history (``completed_at`` spread over the
   last 30 days, some failed and cancelled), then ``VACUUM (ANALYZE)``, what autovacuum
   does after it. Records the fill's seconds and the sizes of the table and each index.
2. **Claim**: p50 and p99 of ``JobQueue.claim(batch_size=10)`` with pending jobs present
   (``ours.claim_timing``), in rounds interleaved with the same rounds on an empty
   database beside it after a warm-up round on each (:func:`claim_beside_empty`: the
   median of the rounds' ratios), and the plan of one claim with its buffers
   (``auto_explain``).
3. **Drain**: 20,000 pending jobs drained by 2 worker processes, as
   :meth:`benchmarks.run.Runner.drain_once` does, on the same clock.
4. **Burn-down**: ``depth_jobs`` pending jobs drained by 2 workers; first and last full
   ``depth_window`` window, counting only the jobs completed during the burn-down.
5. **Status**: ``JobQueue(session).stats()`` (an estimate above a million rows) and
   ``stats(exact=True)``, and ``sqla-jobqueue status --json`` run as a command.
7. **VACUUM after a drain** (run before step 6, which deletes the history): a drain of
   ``table_size_vacuum_jobs`` (200,000) jobs, then at once ``VACUUM (VERBOSE) jobs``:
   its seconds and the pages, index scans and dead rows of its report
   (:func:`vacuum_after_drain`), and the job table's size before it.
6. **Pruning while workers run** (the ``jobs`` variant only): a drain of
   ``table_size_prune_jobs`` jobs without pruning, then the same drain while
   ``sqla-jobqueue prune --older-than 7d --batch-size 10000 --json`` runs
   (``ours.prune_cli``: the command's own entry point, each of its transactions timed).
   Records rows deleted, seconds, the longest transaction, the workers' rate while the
   prune ran against the drain without it, and the longest pause between two
   completions of each drain.

Between two steps the jobs a step added are deleted and the table is vacuumed and
checkpointed (:func:`reset`), so every step meets the history alone. The workers run with
the defaults a user gets except ``retention=None``: their own pruner would otherwise
delete the backdated history in its first round (step 6 prunes it with the command).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from .run import _child_env, _child_root, rotated, run_child
from .stats import percentile, summary
from .systems import ours

if TYPE_CHECKING:
    from .run import Runner

__all__ = ["measure", "one_size", "reset"]

SYSTEM = "sqla_jobqueue"
FINISHED = "status IN ('completed', 'failed', 'cancelled')"
PLANNED_CLAIMS = 100
"""Claims run under ``auto_explain`` after the timed ones (their plans and server time)."""
MIN_OVERLAP_S = 0.5
"""The workers' rate while the prune ran is given only when the two overlapped this long."""
METRICS = (
    "fill_s",
    "vacuum_analyze_s",
    "total_mb",
    "heap_mb",
    "indexes_mb",
    "claim_p50_ms",
    "claim_p99_ms",
    "claim_server_p50_ms",
    "claim_server_p99_ms",
    "claim_empty_p50_ms",
    "claim_vs_empty",
    "archive_mb",
    "vacuum_s",
    "vacuum_pages",
    "vacuum_pages_scanned",
    "vacuum_index_scans",
    "vacuum_dead_removed",
    "jobs_mb_after_drain",
    "drain_rate",
    "drain_rate_from_release",
    "burn_down_rate",
    "burn_down_first",
    "burn_down_last",
    "burn_down_last_vs_first",
    "stats_estimated_ms",
    "stats_exact_ms",
    "cli_status_s",
    "prune_deleted",
    "prune_s",
    "prune_rows_per_s",
    "prune_transactions",
    "prune_longest_tx_ms",
    "prune_median_tx_ms",
    "drain_rate_without_prune",
    "drain_rate_with_prune",
    "rate_during_prune",
    "during_prune_vs_without",
    "pause_without_prune_ms",
    "pause_with_prune_ms",
)
"""The numbers of one size that :func:`measure` summarises over the repeats."""


def measure(runner: Runner) -> dict[str, Any]:
    """Every size of ``runner.sizes.table_size_rows`` in each of
    ``table_size_variants`` (``jobs``: the history in the job table; ``archive``: in an
    archive table's day partitions, the job table holding only the steps' own jobs; the
    archive variant at 0 rows is the jobs variant's and is not run twice), ``repeats``
    times, the order of the runs rotated from one repeat to the next (``orders``). Per
    run label (the rows for the jobs variant, ``archive <rows>`` for the other) the raw
    entries (``runs``) and the median and range of each of :data:`METRICS` (``summary``),
    with the claim's p50 against the empty table's measured beside it
    (``claim_ratio``)."""
    if SYSTEM not in runner.systems:
        return {"skipped": "sqla_jobqueue not selected"}
    sizes = runner.sizes
    best = runner.results.get("processing", {}).get("best", {}).get(SYSTEM)
    settings = dict(best or runner._sweep(SYSTEM)[-1])
    params = {**settings, "pruner": False}
    variants = list(sizes.table_size_variants)
    labels: list[str] = []
    if "jobs" in variants:
        labels += [str(rows) for rows in sizes.table_size_rows]
    if "archive" in variants:
        labels += [f"archive {rows}" for rows in sizes.table_size_rows if rows > 0]
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    orders: list[list[str]] = []
    # A fresh server's first drain and claims run slower: warm it up, results discarded.
    with runner.fresh(SYSTEM) as url:
        runner.log("  table_size: warm-up drain and claims (not counted)")
        runner.drain_in(SYSTEM, url, sizes.table_size_drain_jobs, params)
        claim(runner, url)
    for trial in range(sizes.repeats):
        order = rotated(labels, trial)
        orders.append(order)
        for label in order:
            archive = label.startswith("archive ")
            rows = int(label.split()[-1])
            with runner.fresh(SYSTEM) as url:
                runs[label].append(one_size(runner, url, rows, params, archive=archive))
    empty_p50 = [e["metrics"]["claim_empty_p50_ms"] for es in runs.values() for e in es]
    out: dict[str, Any] = {
        "rows": list(sizes.table_size_rows),
        "variants": variants,
        "labels": labels,
        "history_days": sizes.table_size_history_days,
        "drain_jobs": sizes.table_size_drain_jobs,
        "burn_down_jobs": sizes.depth_jobs,
        "window_s": sizes.depth_window,
        "claim_samples": sizes.table_size_claim_rounds * sizes.table_size_claims_per_round,
        "claim_rounds": sizes.table_size_claim_rounds,
        "claims_per_round": sizes.table_size_claims_per_round,
        "vacuum_jobs": sizes.table_size_vacuum_jobs,
        "prune_jobs": sizes.table_size_prune_jobs,
        "prune_older_than": sizes.table_size_prune_older_than,
        "prune_batch": sizes.table_size_prune_batch,
        "params": params,
        "orders": orders,
        "runs": {label: es for label, es in runs.items() if not label.startswith("archive")},
        "archive_runs": {
            label.split()[-1]: es for label, es in runs.items() if label.startswith("archive")
        },
        "summary": {},
        "archive_summary": {},
        "empty_claim_p50_ms": summary(empty_p50),
    }
    for label, entries in runs.items():
        values: dict[str, Any] = {
            key: summary([e["metrics"][key] for e in entries if e["metrics"].get(key) is not None])
            for key in METRICS
        }
        # Each run's claims against an empty table's, in interleaved rounds beside it.
        values["claim_ratio"] = values["claim_vs_empty"]["median"]
        if label.startswith("archive "):
            out["archive_summary"][label.split()[-1]] = values
        else:
            out["summary"][label] = values
    return out


def one_size(
    runner: Runner, url: str, rows: int, params: dict[str, Any], archive: bool = False
) -> dict[str, Any]:
    """Steps 1-7 (see the module) on a fresh database ``url`` with ``rows`` rows of
    finished history, in the job table or (``archive``) in the archive table; ``params``
    are the workers' settings. The archive variant skips pruning (step 6): its history is
    not in the job table, and its retention drops day partitions."""
    sizes = runner.sizes
    variant = "archive" if archive else "jobs"

    def log(line: str) -> None:
        runner.log(line.replace("table_size ", f"table_size {variant} ", 1))

    metrics: dict[str, Any] = {}
    entry: dict[str, Any] = {"rows": rows, "variant": variant, "metrics": metrics}

    # 1. The history, vacuumed and analyzed, and its size.
    log(f"  table_size {rows:,}: filling")
    kwargs = {"n": rows, "days": sizes.table_size_history_days, "archive": archive}
    fill = run_child(SYSTEM, "call", url, {"function": "add_finished", "kwargs": kwargs})
    marker = float(fill["marker"])
    started = time.perf_counter()
    _vacuum(url, ours.ARCHIVE_TABLE if archive else None)
    metrics["fill_s"] = fill["seconds"]
    metrics["vacuum_analyze_s"] = time.perf_counter() - started
    entry["relations"] = relation_sizes(url)
    metrics["total_mb"] = entry["relations"]["total_mb"]
    metrics["heap_mb"] = entry["relations"]["heap_mb"]
    metrics["indexes_mb"] = sum(entry["relations"]["indexes_mb"].values())
    entry["archive"] = ours.archive_sizes(url)
    metrics["archive_mb"] = entry["archive"]["archive_mb"]
    _checkpoint(url)
    log(f"  table_size {rows:,}: filled in {metrics['fill_s']:.1f} s (VACUUM ANALYZE "
        f"{metrics['vacuum_analyze_s']:.1f} s), {metrics['total_mb']:,.0f} MB")  # fmt: skip

    # 2. Claims with pending jobs present, in rounds interleaved with an empty table's.
    entry["claim"] = claim_beside_empty(runner, url)
    metrics["claim_p50_ms"] = entry["claim"]["p50_ms"]
    metrics["claim_p99_ms"] = entry["claim"]["p99_ms"]
    metrics["claim_server_p50_ms"] = entry["claim"].get("server_p50_ms")
    metrics["claim_server_p99_ms"] = entry["claim"].get("server_p99_ms")
    metrics["claim_empty_p50_ms"] = entry["claim"]["empty_p50_ms"]
    metrics["claim_vs_empty"] = entry["claim"]["vs_empty"]
    server = metrics["claim_server_p50_ms"]
    log(f"  table_size {rows:,}: claim p50 {metrics['claim_p50_ms']:.2f} ms, "
        f"p99 {metrics['claim_p99_ms']:.2f} ms (executor p50 "
        f"{'-' if server is None else f'{server:.3f}'} ms); beside an empty table "
        f"{metrics['claim_vs_empty']:.2f} x")  # fmt: skip
    reset(url, marker)

    # 3. A drain, as processing measures one.
    drained = runner.drain_in(SYSTEM, url, sizes.table_size_drain_jobs, params)
    entry["drain"] = drained
    metrics["drain_rate"] = drained["rate"]
    metrics["drain_rate_from_release"] = drained["rate_from_release"]
    log(f"  table_size {rows:,}: drain of {sizes.table_size_drain_jobs:,}: "
        f"{drained['rate']:,.0f} jobs/s")  # fmt: skip
    reset(url, marker)

    # 4. A burn-down on top of the history.
    if sizes.depth_jobs > 0:
        burn = runner._burn_down(SYSTEM, url, params, sizes.depth_jobs, sizes.depth_window)
        burn.pop("rss", None)
        entry["burn_down"] = burn
        metrics["burn_down_rate"] = burn["rate"]
        metrics["burn_down_first"] = burn["first_window"]
        metrics["burn_down_last"] = burn["last_window"]
        metrics["burn_down_last_vs_first"] = burn.get("last_vs_first")
        ratio = burn.get("last_vs_first")
        log(f"  table_size {rows:,}: burn-down of {sizes.depth_jobs:,}: {burn['rate']:,.0f} "
            f"jobs/s, last/first window {'-' if ratio is None else f'{ratio:.2f}'}")  # fmt: skip
        reset(url, marker)

    # 5. status: the API call and the command.
    entry["status"] = status(runner, url)
    metrics["stats_estimated_ms"] = entry["status"]["stats_estimated_ms"]
    metrics["stats_exact_ms"] = entry["status"]["stats_exact_ms"]
    metrics["cli_status_s"] = entry["status"]["cli_s"]
    log(f"  table_size {rows:,}: stats() {metrics['stats_estimated_ms']:.1f} ms, "
        f"stats(exact=True) {metrics['stats_exact_ms']:.1f} ms, "
        f"sqla-jobqueue status {metrics['cli_status_s']:.2f} s")  # fmt: skip

    # 7 (before 6, which deletes the history). VACUUM (VERBOSE) right after a drain.
    entry["vacuum"] = vacuum_after_drain(runner, url, params)
    v = entry["vacuum"]
    metrics["vacuum_s"] = v["seconds"]
    metrics["vacuum_pages"] = v["parsed"].get("pages_remain")
    metrics["vacuum_pages_scanned"] = v["parsed"].get("pages_scanned")
    metrics["vacuum_index_scans"] = v["parsed"].get("index_scans")
    metrics["vacuum_dead_removed"] = v["parsed"].get("tuples_removed")
    metrics["jobs_mb_after_drain"] = v["jobs_mb_before"]
    log(f"  table_size {rows:,}: VACUUM after a {sizes.table_size_vacuum_jobs:,}-job drain: "
        f"{v['seconds']:.2f} s, {v['parsed'].get('pages_scanned')} of "
        f"{v['parsed'].get('pages_remain')} pages scanned, index scans "
        f"{v['parsed'].get('index_scans')} ({v['parsed'].get('index_scan')})")  # fmt: skip
    reset(url, marker)

    if archive:
        return entry
    # 6. Pruning while workers drain, against the same drain without it.
    entry["prune"] = prune(runner, url, marker, params)
    metrics.update(entry["prune"]["metrics"])
    p = entry["prune"]["metrics"]
    during = p.get("during_prune_vs_without")
    log(f"  table_size {rows:,}: pruned {p['prune_deleted']:,} rows in {p['prune_s']:.1f} s "
        f"({p['prune_transactions']} transactions, longest {p['prune_longest_tx_ms']:.0f} ms); "
        f"workers {p['drain_rate_with_prune']:,.0f} jobs/s with, "
        f"{p['drain_rate_without_prune']:,.0f} without; while pruning "
        f"{'-' if during is None else f'{during:.2f} x'}")  # fmt: skip
    return entry


def claim(runner: Runner, url: str) -> dict[str, Any]:
    """p50 and p99 ms of ``claim_samples`` claims of 10 with pending jobs present (each
    batch completed after its claim); then, on :data:`PLANNED_CLAIMS` more, the
    executor's p50 and p99 ms (``auto_explain``) and the plan of the median claim."""
    samples = runner.sizes.claim_samples
    run_child(SYSTEM, "prefill", url, {"n": samples * 10})
    timing = {"function": "claim_timing", "kwargs": {"claims": samples, "batch": 10}}
    seconds = run_child(SYSTEM, "call", url, timing)
    ms = [s * 1000 for s in seconds]
    out: dict[str, Any] = {"p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "ms": ms}
    # The same claims on the database's side, with their plans, for the why.
    run_child(SYSTEM, "prefill", url, {"n": PLANNED_CLAIMS * 10})
    kwargs = {"claims": PLANNED_CLAIMS, "batch": 10}
    plans = run_child(SYSTEM, "call", url, {"function": "claim_plans", "kwargs": kwargs})
    if plans:
        out["server_p50_ms"] = percentile(plans["server_ms"], 50)
        out["server_p99_ms"] = percentile(plans["server_ms"], 99)
        out["plan"] = plans["plan"]
    return out


def claim_beside_empty(runner: Runner, url: str) -> dict[str, Any]:
    """Claims of 10 on ``url`` and on an empty database beside it, in
    ``table_size_claim_rounds`` interleaved rounds of ``table_size_claims_per_round``
    (the first of each pair alternating), after a warm-up round on each that is not
    counted: a slow start right after the fill would otherwise count against the big
    table only. p50/p99 of every counted claim on ``url``, the empty table's p50, and
    ``vs_empty``: the median over the rounds of p50(url) / p50(empty). Then the server's
    side of :func:`claim` (plans and executor times) on ``url``."""
    sizes = runner.sizes
    rounds, per = sizes.table_size_claim_rounds, sizes.table_size_claims_per_round
    timing = {"function": "claim_timing", "kwargs": {"claims": per, "batch": 10}}
    ours_ms: list[float] = []
    empty_ms: list[float] = []
    ratios: list[float] = []
    with runner.fresh(SYSTEM) as empty:
        for target in (url, empty):
            run_child(SYSTEM, "prefill", target, {"n": (rounds + 1) * per * 10})
            run_child(SYSTEM, "call", target, timing)  # warm-up, not counted
        for index in range(rounds):
            pair: dict[str, list[float]] = {}
            for target in (url, empty) if index % 2 == 0 else (empty, url):
                pair[target] = [s * 1000 for s in run_child(SYSTEM, "call", target, timing)]
            ours_ms += pair[url]
            empty_ms += pair[empty]
            ratios.append(percentile(pair[url], 50) / percentile(pair[empty], 50))
    out: dict[str, Any] = {
        "p50_ms": percentile(ours_ms, 50),
        "p99_ms": percentile(ours_ms, 99),
        "empty_p50_ms": percentile(empty_ms, 50),
        "empty_p99_ms": percentile(empty_ms, 99),
        "vs_empty": statistics.median(ratios),
        "round_ratios": ratios,
        "ms": ours_ms,
        "empty_ms": empty_ms,
    }
    run_child(SYSTEM, "prefill", url, {"n": PLANNED_CLAIMS * 10})
    kwargs = {"claims": PLANNED_CLAIMS, "batch": 10}
    plans = run_child(SYSTEM, "call", url, {"function": "claim_plans", "kwargs": kwargs})
    if plans:
        out["server_p50_ms"] = percentile(plans["server_ms"], 50)
        out["server_p99_ms"] = percentile(plans["server_ms"], 99)
        out["plan"] = plans["plan"]
    return out


_VACUUM_PATTERNS = {
    "index_scans": r"index scans: (\d+)",
    "pages_removed": r"pages: (\d+) removed",
    "pages_remain": r"pages: \d+ removed, (\d+) remain",
    "pages_scanned": r"pages: \d+ removed, \d+ remain, (\d+) scanned",
    "tuples_removed": r"tuples: (\d+) removed",
    "tuples_remain": r"tuples: \d+ removed, (\d+) remain",
    "elapsed_s": r"elapsed: ([\d.]+) s",
}


def parse_vacuum(message: str) -> dict[str, Any]:
    """The numbers of the job table's ``finished vacuuming`` message of ``VACUUM
    (VERBOSE)``: index scans, pages removed / remaining / scanned, dead tuples removed,
    tuples remaining, the elapsed seconds it reports, and what it did with the indexes
    (``index_scan``: "needed", "bypassed", "not needed" or None)."""
    import re

    out: dict[str, Any] = {}
    for key, pattern in _VACUUM_PATTERNS.items():
        found = re.search(pattern, message)
        if found:
            out[key] = float(found.group(1)) if "." in found.group(1) else int(found.group(1))
    how = re.search(r"index scan (needed|bypassed|not needed)", message)
    out["index_scan"] = how.group(1) if how else None
    return out


def vacuum_after_drain(runner: Runner, url: str, params: dict[str, Any]) -> dict[str, Any]:
    """Drain ``table_size_vacuum_jobs`` jobs with 2 workers, then at once ``VACUUM
    (VERBOSE) jobs``: its seconds, its ``finished vacuuming`` message (``message``) and
    the numbers in it (:func:`parse_vacuum`), and the job table's MB before it."""
    n = runner.sizes.table_size_vacuum_jobs
    drained = runner.drain_in(SYSTEM, url, n, params)
    messages: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.add_notice_handler(lambda diag: messages.append(diag.message_primary or ""))
        row = conn.execute("SELECT pg_total_relation_size('jobs')").fetchone()
        before = float(row[0]) / 2**20 if row else None
        started = time.perf_counter()
        conn.execute("VACUUM (VERBOSE) jobs")
        seconds = time.perf_counter() - started
        row = conn.execute("SELECT pg_total_relation_size('jobs')").fetchone()
        after = float(row[0]) / 2**20 if row else None
    table = next(
        (m for m in messages if m.startswith("finished vacuuming") and '.jobs"' in m),
        next((m for m in messages if m.startswith("finished vacuuming")), ""),
    )
    return {
        "jobs": n,
        "drain_rate": drained["rate"],
        "seconds": seconds,
        "jobs_mb_before": before,
        "jobs_mb_after": after,
        "parsed": parse_vacuum(table),
        "message": table,
        "messages": messages,
    }


def status(runner: Runner, url: str) -> dict[str, Any]:
    """Median ms of ``stats()`` and of ``stats(exact=True)`` over
    ``table_size_status_repeats`` calls, and median seconds of ``sqla-jobqueue status
    --json --database-url URL`` as a command (Python's start-up included) over
    ``table_size_cli_repeats`` runs."""
    sizes = runner.sizes
    kwargs = {"repeats": sizes.table_size_status_repeats}
    timed = run_child(SYSTEM, "call", url, {"function": "stats_timing", "kwargs": kwargs})
    command = [*_cli(), "status", "--json", "--database-url", url]
    cli_seconds: list[float] = []
    report: Any = None
    for _ in range(sizes.table_size_cli_repeats):
        started = time.perf_counter()
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=_child_env(),
            cwd=_child_root(),
            check=False,
        )
        cli_seconds.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"sqla-jobqueue status failed:\n{done.stderr[-3000:]}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "stats_estimated_ms": statistics.median(timed["estimated"]["seconds"]) * 1000,
        "stats_exact_ms": statistics.median(timed["exact"]["seconds"]) * 1000,
        "stats": timed,
        "cli_s": statistics.median(cli_seconds),
        "cli_seconds": cli_seconds,
        "cli_command": "sqla-jobqueue status --json --database-url URL",
        "cli_finished_estimated": None if report is None else report.get("finished_estimated"),
        "cli_totals": None if report is None else report.get("totals"),
    }


def prune(runner: Runner, url: str, marker: float, params: dict[str, Any]) -> dict[str, Any]:
    """Drain ``table_size_prune_jobs`` jobs without pruning; reset; drain as many again
    while ``sqla-jobqueue prune`` deletes the history older than
    ``table_size_prune_older_than`` (released with the workers, in its own process)."""
    sizes = runner.sizes
    n = sizes.table_size_prune_jobs
    without = runner.drain_in(SYSTEM, url, n, params)
    pause_without = longest_pause(url, marker)
    reset(url, marker)
    kwargs = {
        "older_than": sizes.table_size_prune_older_than,
        "batch_size": sizes.table_size_prune_batch,
    }

    def pruning() -> Any:
        return run_child(SYSTEM, "call", url, {"function": "prune_cli", "kwargs": kwargs})

    with_prune = runner.drain_in(SYSTEM, url, n, params, during=pruning)
    pause_with = longest_pause(url, marker)
    done = with_prune.pop("during")
    if done["exit"] != 0 or not done["output"]:
        raise RuntimeError(f"sqla-jobqueue prune failed: {done}")
    spans = [end - begin for begin, end in done["transactions"]]
    seconds = done["end"] - done["start"]
    deleted = int(done["output"]["deleted"])
    # The workers' rate while the prune ran: the jobs they completed in the overlap.
    results = with_prune.pop("results")
    firsts = [r["first"] for r in results if r.get("first") is not None]
    first = min(firsts) if firsts else min(r["start"] for r in results)
    last = max(r["end"] for r in results)
    low, high = max(first, done["start"]), min(last, done["end"])
    overlap = high - low
    during_rate = None
    if overlap >= MIN_OVERLAP_S:
        during_rate = completed_between(url, low, high) / overlap
    metrics = {
        "prune_deleted": deleted,
        "prune_s": seconds,
        "prune_rows_per_s": deleted / seconds if seconds > 0 else None,
        "prune_transactions": len(spans),
        "prune_longest_tx_ms": max(spans) * 1000 if spans else None,
        "prune_median_tx_ms": statistics.median(spans) * 1000 if spans else None,
        "drain_rate_without_prune": without["rate"],
        "drain_rate_with_prune": with_prune["rate"],
        "rate_during_prune": during_rate,
        "during_prune_vs_without": None if during_rate is None else during_rate / without["rate"],
        "pause_without_prune_ms": None if pause_without is None else pause_without * 1000,
        "pause_with_prune_ms": None if pause_with is None else pause_with * 1000,
    }
    return {
        "metrics": metrics,
        "command": (
            f"sqla-jobqueue prune --older-than {kwargs['older_than']} --batch-size "
            f"{kwargs['batch_size']} --json"
        ),
        "output": done["output"],
        "transactions_ms": [s * 1000 for s in spans],
        "overlap_s": overlap,
        "prune_started_after_release_s": done["start"] - min(r["start"] for r in results),
        "without": without,
        "with": with_prune,
    }


def reset(url: str, marker: float) -> None:
    """Delete every job but the history (finished before the epoch ``marker``), then
    VACUUM (ANALYZE) and CHECKPOINT: the next step meets the history alone."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DELETE FROM jobs WHERE {FINISHED} AND completed_at >= to_timestamp(%s)",
                     (marker,))  # fmt: skip
        conn.execute("DELETE FROM jobs WHERE status = 'pending'")
        conn.execute("DELETE FROM jobs WHERE status IN ('claimed', 'running')")
    _vacuum(url)
    _checkpoint(url)


def relation_sizes(url: str) -> dict[str, Any]:
    """MB of the job table with everything (``pg_total_relation_size``), of its heap and
    of each of its indexes, and the planner's row count."""
    mb = 2.0**20
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT pg_total_relation_size('jobs'), pg_relation_size('jobs'), "
            "(SELECT reltuples FROM pg_class WHERE oid = 'jobs'::regclass)"
        ).fetchone()
        indexes = conn.execute(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'jobs'::regclass "
            "ORDER BY c.relname"
        ).fetchall()
    assert row is not None
    return {
        "total_mb": row[0] / mb,
        "heap_mb": row[1] / mb,
        "reltuples": row[2],
        "indexes_mb": {name: size / mb for name, size in indexes},
    }


def longest_pause(url: str, marker: float) -> float | None:
    """Seconds of the longest gap between two successive completions after ``marker``
    (the drain just run), by ``completed_at``."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM max(gap)) FROM (SELECT completed_at - "
            "lag(completed_at) OVER (ORDER BY completed_at) AS gap FROM jobs "
            "WHERE status = 'completed' AND completed_at >= to_timestamp(%s)) AS g",
            (marker,),
        ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def completed_between(url: str, low: float, high: float) -> int:
    """Jobs completed between the epoch seconds ``low`` and ``high``."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM jobs WHERE status = 'completed' "
            "AND completed_at >= to_timestamp(%s) AND completed_at < to_timestamp(%s)",
            (low, high),
        ).fetchone()
    return int(row[0]) if row else 0


def _vacuum(url: str, also: str | None = None) -> None:
    """``VACUUM (ANALYZE)`` of the job table (and of table ``also``: its partitions)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) jobs")
        if also:
            conn.execute(f"VACUUM (ANALYZE) {also}")


def _checkpoint(url: str) -> None:
    with (
        psycopg.connect(url, autocommit=True) as conn,
        contextlib.suppress(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("CHECKPOINT")


def _cli() -> list[str]:
    """The ``sqla-jobqueue`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("sqla-jobqueue")
    if script.exists():
        return [str(script)]
    found = shutil.which("sqla-jobqueue")
    return [found] if found else [sys.executable, "-m", "sqla_jobqueue.cli"]
