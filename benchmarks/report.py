"""The JSON and markdown a run writes: numbers, the machine, versions, ratios to targets."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["environment", "markdown", "write"]

PEER_LABELS = {
    "sqla_jobqueue": "sqla_jobqueue",
    "sqla_jobqueue_async": "sqla_jobqueue (async)",
    "pgqueuer": "PGQueuer",
    "procrastinate": "procrastinate",
    "pgbench": "pgbench (raw SQL)",
}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(server: dict[str, Any], command: str) -> dict[str, Any]:
    """Machine, versions, date and command of this run."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    dirty = _git("status", "--porcelain", "--", "sqla_jobqueue")
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "machine": {
            "cpu": _cpu(),
            "cores": os.cpu_count(),
            "memory_gib": round(memory / 2**30, 1),
            "os": platform.platform(),
        },
        "versions": {
            "python": platform.python_version(),
            "sqla_jobqueue": f"{_version('sqla-jobqueue')} @ {_git('rev-parse', '--short', 'HEAD')}"
            + (" (+ uncommitted changes)" if dirty else ""),
            "SQLAlchemy": _version("SQLAlchemy"),
            "psycopg": _version("psycopg"),
            "pgqueuer": _version("pgqueuer"),
            "asyncpg": _version("asyncpg"),
            "procrastinate": _version("procrastinate"),
            "postgresql": server.get("version"),
        },
        "server": server,
    }


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _cell(s: dict[str, Any] | None, digits: int = 0) -> str:
    if not s or s.get("median") is None:
        return "-"
    if s["n"] == 1:
        return _fmt(s["median"], digits)
    return f"{_fmt(s['median'], digits)} ({_fmt(s['min'], digits)}-{_fmt(s['max'], digits)})"


def _median(s: dict[str, Any] | None) -> float | None:
    return None if not s else s.get("median")


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return a / b


def _percent(s: dict[str, Any]) -> dict[str, Any]:
    """A summary of fractions as percentages."""
    return {k: (v * 100 if k in ("median", "min", "max") and v is not None else v)
            for k, v in s.items()}  # fmt: skip


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "**missed**")


def markdown(data: dict[str, Any]) -> str:
    """The tables of one run, for docs/benchmarks.md."""
    env, res = data["environment"], data["results"]
    systems: list[str] = data["systems"]
    head = "| measure | " + " | ".join(PEER_LABELS[s] for s in systems) + " |"
    lines = [head, "|---|" + "---:|" * len(systems)]
    targets: list[tuple[str, str, str, str]] = []

    def row(label: str, cells: dict[str, str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells.get(s, "-") for s in systems) + " |")

    for key, label in (("enqueue_single", "enqueue, one per transaction"),
                       ("enqueue_bulk", "enqueue, bulk")):  # fmt: skip
        if key not in res:
            continue
        rates = res[key]["rate"]
        extra = f" ({res[key]['batch']:,} per call)" if key == "enqueue_bulk" else ""
        row(
            f"{label}{extra}, {res[key]['jobs']:,} jobs, jobs/s",
            {s: _cell(rates.get(s)) for s in systems},
        )
        if res[key].get("pgbench_explicit_transaction"):
            row(
                "… pgbench with the insert inside BEGIN … COMMIT",
                {"pgbench": _cell(res[key]["pgbench_explicit_transaction"])},
            )
        ours, pgq = _median(rates.get("sqla_jobqueue")), _median(rates.get("pgqueuer"))
        factor, floor = (1.5, 150_000) if key == "enqueue_bulk" else (1.3, 5_000)
        r = _ratio(ours, pgq)
        targets.append((
            label,
            f"≥ {factor} x PGQueuer and ≥ {floor:,}/s",
            f"{_fmt(r, 2)} x PGQueuer; {_fmt(ours)}/s",
            _verdict(None if r is None or ours is None else (r >= factor and ours >= floor)),
        ))  # fmt: skip
    bulk_async = res.get("enqueue_bulk_async")
    if bulk_async:
        for batch, rates in bulk_async["rate"].items():
            row(
                f"async enqueue, bulk ({int(batch):,} per call), {bulk_async['jobs']:,} jobs, "
                "jobs/s",
                {s: _cell(rates.get(s)) for s in systems},
            )
            ours = _median(rates.get("sqla_jobqueue_async"))
            r = _ratio(ours, _median(rates.get("pgqueuer")))
            targets.append((
                f"async enqueue, bulk ({int(batch):,} per call)",
                "≥ 1.5 x PGQueuer's batch enqueue",
                f"{_fmt(r, 2)} x PGQueuer; {_fmt(ours)}/s",
                _verdict(None if r is None else r >= 1.5),
            ))  # fmt: skip
    proc = res.get("processing")
    # Results written before the rates counted from the first handler call hold only the
    # rate from the release, as "rate".
    from_first = bool(proc) and any(
        "rate_from_release" in entry for runs in proc["runs"].values() for entry in runs.values()
    )
    if proc:
        for size, runs in proc["runs"].items():
            cells = {}
            for s in systems:
                if s in runs:
                    jobs = runs[s]["jobs"]
                    note = "" if jobs == int(size) else f" [{jobs:,} jobs]"
                    cells[s] = _cell(runs[s]["rate"]) + note
            clock = "from the first handler" if from_first else "from the release"
            row(f"processing {int(size):,} jobs, 2 workers, jobs/s {clock}", cells)
            if from_first:
                row(
                    f"… jobs/s from the release, start-up included ({int(size):,})",
                    {s: _cell(runs[s]["rate_from_release"]) for s in systems if s in runs},
                )
            row(
                f"… commits per job ({int(size):,})",
                {s: _cell(runs[s]["commits_per_job"], 2) for s in systems if s in runs},
            )
        row("… best settings (sweep below)", {s: _params(proc["best"].get(s)) for s in systems})
        first = next(iter(proc["runs"].values()))
        ours = _median(first.get("sqla_jobqueue", {}).get("rate"))
        pgq = _median(first.get("pgqueuer", {}).get("rate"))
        raw = _median(first.get("pgbench", {}).get("rate"))
        r1, r2 = _ratio(ours, pgq), _ratio(ours, raw)
        size = next(iter(proc["runs"]))
        targets.append((
            f"processing, 2 processes, {int(size):,} no-op jobs",
            "≥ 2 x PGQueuer, ≥ 75 % of pgbench at equal batch",
            f"{_fmt(r1, 2)} x PGQueuer; {_fmt(None if r2 is None else r2 * 100)} % of pgbench",
            _verdict(None if r1 is None or r2 is None else (r1 >= 2.0 and r2 >= 0.75)),
        ))  # fmt: skip
        if "sqla_jobqueue_async" in first:
            ours_async = _median(first["sqla_jobqueue_async"]["rate"])
            r3 = _ratio(ours_async, pgq)
            targets.append((
                f"async worker, 2 processes, {int(size):,} no-op async handlers",
                "≥ 1.5 x PGQueuer",
                f"{_fmt(r3, 2)} x PGQueuer; {_fmt(ours_async)}/s",
                _verdict(None if r3 is None else r3 >= 1.5),
            ))  # fmt: skip
    lat = res.get("latency")
    if lat:
        by_mode: dict[str, dict[str, str]] = {}
        for key, value in lat["ms"].items():
            system, _, how = key.partition(" ")
            how, _, base = how.partition(")")
            label = f"latency ({how.strip('(')}), " + (
                "enqueue commit → handler start" if base.strip() else "enqueue call → handler start"
            )
            by_mode.setdefault(label, {})[system] = (
                f"{_cell(value['p50'], 2)} / {_cell(value['p99'], 2)}"
            )
        for label, cells in by_mode.items():
            row(f"{label}, p50 / p99 ms", cells)
        variants = (("sqla_jobqueue (notify)", "from the enqueue call"),
                    ("sqla_jobqueue (notify) from commit", "from the enqueue commit"))  # fmt: skip
        for key, what in variants:
            ours = lat["ms"].get(key)
            if not ours:
                continue
            p50, p99 = _median(ours["p50"]), _median(ours["p99"])
            targets.append((
                f"latency p50 / p99 (LISTEN/NOTIFY), {what}",
                "≤ 2 ms / ≤ 4 ms",
                f"{_fmt(p50, 2)} / {_fmt(p99, 2)} ms",
                _verdict(None if p50 is None or p99 is None else (p50 <= 2 and p99 <= 4)),
            ))  # fmt: skip
        if "sqla_jobqueue (notify)" not in lat["ms"]:
            targets.append(("latency p50 / p99", "≤ 2 ms / ≤ 4 ms", "not measured", "-"))
    depth = res.get("depth")
    if depth:
        cells = {}
        for s, entry in depth["summary"].items():
            if _median(entry["last_vs_first"]) is None:
                cells[s] = f"{_fmt(_median(entry['first_window']))}/s (one full window)"
                continue
            cells[s] = (
                f"{_fmt(_median(entry['first_window']))} → "
                f"{_fmt(_median(entry['last_window']))}/s, "
                f"{_cell(_percent(entry['last_vs_first']))} %"
            )
        row(f"burn-down {depth['jobs']:,} jobs: first → last {depth['window_s']:g}-s window",
            cells)  # fmt: skip
        ours = depth["summary"].get("sqla_jobqueue")
        if ours:
            r = _median(ours["last_vs_first"])
            targets.append((f"{depth['jobs']:,}-job burn-down, last window vs first", "≥ 70 %",
                            f"{_fmt(None if r is None else r * 100)} %",
                            _verdict(None if r is None else r >= 0.7)))  # fmt: skip
        claim = depth.get("claim_ms") or {}
        if claim:
            rows = claim["finished_rows"]
            for key, label in (("vacuumed", "after VACUUM"), ("drained", "just drained")):
                row(
                    f"claim of 10, p50 ms: {rows:,} finished rows ({label}) vs empty table",
                    {"sqla_jobqueue": f"{_cell(claim[key], 2)} vs {_cell(claim['empty'], 2)}"},
                )
            ratio = claim["ratio"]
            targets.append((
                f"claim with {rows:,} finished rows vs empty (just drained: "
                f"{ratio['drained']:.2f} x)", "≤ 1.5 x",
                f"{ratio['vacuumed']:.2f} x", _verdict(ratio["vacuumed"] <= 1.5),
            ))  # fmt: skip
        rss = depth.get("rss")
        if rss and rss.get("max_growth") is not None:
            peaks = ", ".join(f"{w['warm_mb']:.0f}→{w['peak_mb']:.0f} MB" for w in rss["workers"])
            row("worker RSS over the burn-down (warm → peak, largest growth)",
                {"sqla_jobqueue": peaks})  # fmt: skip
            g = rss["max_growth"]
            targets.append((f"worker RSS growth over {depth['jobs']:,} jobs", "≤ 10 %",
                            f"{g * 100:.1f} %", _verdict(g <= 0.10)))  # fmt: skip
    progress = res.get("progress")
    if progress and "rate" in progress:
        rate = progress["rate"]
        row(
            f"progress x{progress['updates_per_job']} per job: jobs/s with vs without",
            {"sqla_jobqueue": f"{_cell(rate['with'])} vs {_cell(rate['without'])}"},
        )
        cost = progress.get("cost")
        targets.append(("progress reporting cost", "≤ 10 % throughput",
                        f"{_fmt(None if cost is None else cost * 100)} %",
                        _verdict(None if cost is None else cost <= 0.10)))  # fmt: skip
    table_size = res.get("table_size")
    size_lines: list[str] = []
    if table_size and "summary" in table_size:
        size_lines, size_targets = _table_size(table_size)
        targets += size_targets
    out = [
        f"Run of {env['date']} on {env['machine']['cpu']} ({env['machine']['cores']} cores, "
        f"{env['machine']['memory_gib']} GiB), PostgreSQL {env['versions']['postgresql']} "
        f"({env['server']['source']}).",
        "",
        f"Command: `{env['command']}`",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v) + ".",
        "",
        "Cells: median (min-max) of the repeats."
        + (
            " Processing rates count from the first handler call of the workers (pgbench: "
            "its first completion) to the moment they saw no job left, after the last "
            "commit; the rates from the release of the workers, start-up included, are in "
            "their own row. Within a repeat the systems take turns in an order that rotates "
            "from one repeat to the next (`orders` in the JSON)."
            if from_first
            else ""
        ),
        *(["", *lines] if len(lines) > 2 else []),
        "",
        "| target | wanted | this run | |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in targets],
    ]
    out += size_lines
    if res.get("latency", {}).get("by_load"):
        out += _latency_by_load(res["latency"])
    if res.get("scaling"):
        out += _scaling(res["scaling"])
    if res.get("batch") and "summary" in res["batch"]:
        out += _batch(res["batch"])
    if proc:
        out += [
            "", f"Processing sweep (median of {_sweep_runs(proc)} interleaved runs each):", "",
            "| system | settings | jobs/s from the first handler | jobs/s from the release "
            "| commits/job |", "|---|---|---:|---:|---:|",
        ]  # fmt: skip
        for s, entries in proc["sweep"].items():
            for e in entries:
                out.append(
                    f"| {PEER_LABELS[s]} | {_params(e['params'])} | {_fmt(e['rate'])} | "
                    f"{_fmt(e.get('rate_from_release'))} | {e['commits_per_job']:.2f} |"
                )
        first_runs = next(iter(proc["runs"].values()))
        for s in ("sqla_jobqueue", "sqla_jobqueue_async"):
            mode = first_runs.get(s, {}).get("mode")
            if mode:
                rest = ", every other setting at its default" if from_first else ""
                out += ["", f"{PEER_LABELS[s]} processing ran as: {mode}{rest}."]
    return "\n".join(out) + "\n"


def _rows(rows: int) -> str:
    """``10M``, ``1M``, ``20k``, ``0``: a size of history for a table heading."""
    if rows >= 1_000_000 and rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    if rows >= 1_000 and rows % 1_000 == 0:
        return f"{rows // 1_000}k"
    return f"{rows:,}"


def _table_size(ts: dict[str, Any]) -> tuple[list[str], list[tuple[str, str, str, str]]]:
    """The table_size section (one row per size of history) and its targets."""
    summ: dict[str, dict[str, Any]] = ts["summary"]

    def m(label: str, key: str) -> float | None:
        return _median(summ[label].get(key))

    def pair(label: str, a: str, b: str, digits: int) -> str:
        return f"{_fmt(m(label, a), digits)} / {_fmt(m(label, b), digits)}"

    jobs = ts.get("burn_down_jobs") or 0
    settings = {k: v for k, v in ts["params"].items() if k != "pruner"}
    lines = [
        "",
        "Table size (sqla_jobqueue): each size of finished history (`completed_at` spread "
        f"over the last {ts['history_days']:g} days, one job in ten failed or cancelled) in "
        "a fresh database, vacuumed and analyzed; each step then meets the history alone "
        f"(the jobs of the step before deleted, vacuumed). Claims: {ts['claim_samples']:,} "
        "claims of 10 with pending jobs present. Drain: "
        f"{ts['drain_jobs']:,} jobs, 2 workers ({_params(settings)}, their pruner off so "
        "that it leaves the history alone), jobs/s from the first handler. Burn-down: "
        f"{jobs:,} jobs, last / first full {ts['window_s']:g}-s window. Status: "
        "`JobQueue.stats()` (estimated above a million rows) / `stats(exact=True)`, and "
        "`sqla-jobqueue status --json` as a command, start-up included. Pruning: "
        f"`sqla-jobqueue prune --older-than {ts['prune_older_than']} --batch-size "
        f"{ts['prune_batch']} --json` while 2 workers drain {ts['prune_jobs']:,} jobs; their "
        "rate while it ran against the same drain without it.",
        "",
        "| finished rows | fill s | table MB | claim p50 / p99 ms | claim vs empty "
        "| drain jobs/s | burn-down last/first | stats ms estimated / exact "
        "| CLI status s | prune rows/s | longest prune transaction ms "
        "| workers during prune vs without |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label in summ:
        ratio = summ[label].get("claim_ratio")
        during = m(label, "during_prune_vs_without")
        deleted = m(label, "prune_deleted")
        lines.append(
            f"| {_rows(int(label))} | {_fmt(m(label, 'fill_s'), 1)} "
            f"| {_fmt(m(label, 'total_mb'))} "
            f"| {pair(label, 'claim_p50_ms', 'claim_p99_ms', 2)} "
            f"| {_fmt(ratio, 2)} x "
            f"| {_fmt(m(label, 'drain_rate'))} "
            f"| {_fmt(m(label, 'burn_down_last_vs_first'), 2)} "
            f"| {pair(label, 'stats_estimated_ms', 'stats_exact_ms', 1)} "
            f"| {_fmt(m(label, 'cli_status_s'), 2)} "
            f"| {_fmt(m(label, 'prune_rows_per_s'))} ({_fmt(deleted)} rows) "
            f"| {_fmt(m(label, 'prune_longest_tx_ms'))} "
            f"| {_fmt(m(label, 'rate_during_prune'))} vs "
            f"{_fmt(m(label, 'drain_rate_without_prune'))} jobs/s"
            + ("" if during is None else f" ({during:.2f} x)")
            + " |"
        )
    names = list(next(iter(ts["runs"].values()))[0]["relations"]["indexes_mb"])
    lines += [
        "",
        "Sizes after the fill (MB); the claim's time in the executor (without planning and "
        "the round trip); the pruning transactions, and the longest pause between two "
        "completions of the drains of the pruning step:",
        "",
        "| finished rows | heap | " + " | ".join(f"`{name}`" for name in names)
        + " | VACUUM ANALYZE s | claim executor p50 / p99 ms (auto_explain) | pruned rows "
        "| prune transactions, median / longest ms | longest pause, ms: without / with "
        "prune |",
        "|---:|---:|" + "---:|" * len(names) + "---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for label, entries in ts["runs"].items():
        relations = entries[0]["relations"]
        indexes = " | ".join(_fmt(relations["indexes_mb"].get(name), 1) for name in names)
        lines.append(
            f"| {_rows(int(label))} | {_fmt(relations['heap_mb'], 1)} | {indexes} "
            f"| {_fmt(m(label, 'vacuum_analyze_s'), 1)} "
            f"| {pair(label, 'claim_server_p50_ms', 'claim_server_p99_ms', 3)} "
            f"| {_fmt(m(label, 'prune_deleted'))} "
            f"in {_fmt(m(label, 'prune_transactions'))} transactions "
            f"| {pair(label, 'prune_median_tx_ms', 'prune_longest_tx_ms', 0)} "
            f"| {pair(label, 'pause_without_prune_ms', 'pause_with_prune_ms', 0)} |"
        )
    lines += _table_size_variants(ts)
    targets: list[tuple[str, str, str, str]] = []
    labels = [label for label in summ if int(label) > 0]
    if not labels:
        return lines, targets
    largest = max(labels, key=int)
    ratio = summ[largest].get("claim_ratio")
    targets.append((
        f"claim with {_rows(int(largest))} finished rows vs an empty table (p50)",
        "≤ 1.2 x",
        f"{_fmt(ratio, 2)} x ({_fmt(m(largest, 'claim_p50_ms'), 2)} vs "
        f"{_fmt(_median(ts['empty_claim_p50_ms']), 2)} ms)",
        _verdict(None if ratio is None else ratio <= 1.2),
    ))  # fmt: skip
    burns = {label: m(label, "burn_down_last_vs_first") for label in summ}
    if any(value is not None for value in burns.values()):
        targets.append((
            f"{jobs:,}-job burn-down on each history, last window vs first",
            "≥ 0.8",
            ", ".join(f"{_fmt(v, 2)} at {_rows(int(k))}" for k, v in burns.items()),
            _verdict(None if None in burns.values()
                     else all(v is not None and v >= 0.8 for v in burns.values())),
        ))  # fmt: skip
    cli = {label: m(label, "cli_status_s") for label in summ}
    targets.append((
        "`sqla-jobqueue status --json` (a command, start-up included)",
        "< 1 s",
        ", ".join(f"{_fmt(v, 2)} s at {_rows(int(k))}" for k, v in cli.items()),
        _verdict(all(v is not None and v < 1 for v in cli.values())),
    ))  # fmt: skip
    longest = m(largest, "prune_longest_tx_ms")
    pause = m(largest, "pause_with_prune_ms")
    during = m(largest, "during_prune_vs_without")
    targets.append((
        f"pruning {_rows(int(largest))} finished rows while workers run",
        "short transactions (< 1 s), workers not stalled (no pause in completions ≥ 1 s)",
        f"longest transaction {_fmt(longest)} ms; workers' rate {_fmt(during, 2)} x "
        f"without; longest pause {_fmt(pause)} ms",
        _verdict(None if longest is None or pause is None
                 else longest < 1000 and pause < 1000),
    ))  # fmt: skip
    return lines, targets


def _table_size_variants(ts: dict[str, Any]) -> list[str]:
    """The history in the job table against in the archive, with VACUUM after a drain;
    empty for results written before the archive variant."""
    rows: list[tuple[str, str, dict[str, Any]]] = [
        ("job table", label, values) for label, values in ts["summary"].items()
    ] + [("archive", label, values) for label, values in ts.get("archive_summary", {}).items()]
    if not any("vacuum_s" in values for _, _, values in rows):
        return []

    def m(values: dict[str, Any], key: str, digits: int = 0) -> str:
        return _fmt(_median(values.get(key)), digits)

    lines = [
        "",
        "Where the history lives: in the job table, or in an archive table "
        "(`JobArchiveMixin`, one partition a day) with the job table holding only the "
        "steps' own jobs. Claims: "
        f"{ts.get('claim_rounds', '-')} rounds of {ts.get('claims_per_round', '-')} claims "
        "of 10, interleaved with the same rounds on an empty database beside it after a "
        "warm-up round on each; vs empty: the median of the rounds' p50 ratios. VACUUM: "
        f"`VACUUM (VERBOSE) jobs` right after {ts.get('vacuum_jobs', 0):,} jobs were "
        "drained by 2 workers; its seconds, the job table's pages scanned of those "
        "remaining, its index scans (and whether it needed, bypassed or skipped them).",
        "",
        "| history in | finished rows | job table MB | archive MB | claim p50 / p99 ms "
        "| vs empty | drain jobs/s | burn-down jobs/s | stats ms estimated / exact "
        "| job table MB after the drain | VACUUM s | pages scanned / remaining "
        "| index scans | dead rows removed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for where, label, values in rows:
        index_scan = None
        runs = (ts["runs"] if where == "job table" else ts.get("archive_runs", {})).get(label)
        if runs and runs[0].get("vacuum"):
            index_scan = runs[0]["vacuum"]["parsed"].get("index_scan")
        lines.append(
            f"| {where} | {_rows(int(label))} | {m(values, 'total_mb')} "
            f"| {m(values, 'archive_mb')} "
            f"| {m(values, 'claim_p50_ms', 2)} / {m(values, 'claim_p99_ms', 2)} "
            f"| {_fmt(values.get('claim_ratio'), 2)} x | {m(values, 'drain_rate')} "
            f"| {m(values, 'burn_down_rate')} "
            f"| {m(values, 'stats_estimated_ms', 1)} / {m(values, 'stats_exact_ms', 1)} "
            f"| {m(values, 'jobs_mb_after_drain')} | {m(values, 'vacuum_s', 2)} "
            f"| {m(values, 'vacuum_pages_scanned')} / {m(values, 'vacuum_pages')} "
            f"| {m(values, 'vacuum_index_scans')}"
            + ("" if index_scan is None else f" ({index_scan})")
            + f" | {m(values, 'vacuum_dead_removed')} |"
        )
    return lines


def _latency_by_load(lat: dict[str, Any]) -> list[str]:
    """Latency of each variant on a quiet machine and with CPU-burning processes."""
    loads = list(lat["by_load"])
    keys = list(next(iter(lat["by_load"].values()))["ms"])
    out = [
        "",
        f"Latency, quiet and loaded: {lat['jobs']:,} jobs {lat['gap_ms']:g} ms apart to one "
        "idle worker (concurrency 1, claims of 10) per variant, p50 / p99 ms (median "
        "(min-max) over the repeats); load N: N processes each running a busy Python loop "
        "meanwhile, on this 2-core machine.",
        "",
        "| variant | " + " | ".join(f"load {load}: p50 / p99 ms" for load in loads) + " |",
        "|---|" + "---:|" * len(loads),
    ]
    for key in keys:
        cells = []
        for load in loads:
            value = lat["by_load"][load]["ms"].get(key)
            cells.append(
                "-" if not value else f"{_cell(value['p50'], 2)} / {_cell(value['p99'], 2)}"
            )
        out.append(f"| {key} | " + " | ".join(cells) + " |")
    return out


def _scaling(sc: dict[str, Any]) -> list[str]:
    """The scaling section: jobs/s by worker processes, and PgBouncer vs direct."""
    out: list[str] = []
    procs = sc.get("processes")
    if procs and procs.get("systems"):
        counts = [str(c) for c in procs["processes"]]
        out += [
            "",
            f"Scaling: {procs['jobs']:,} no-op jobs drained by N worker processes "
            f"({_params(procs['params'])}, every other setting at its default), jobs/s "
            "from the first handler; x: the median against 1 process; connections: the "
            "peak of the database's client backends (every 50 ms). The order of the "
            "process counts rotates per repeat.",
            "",
            "| worker | processes | jobs/s | x | jobs/s from the release | connections |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for system, entry in procs["systems"].items():
            for count in counts:
                e = entry["summary"][count]
                out.append(
                    f"| {PEER_LABELS.get(system, system)} | {count} | {_cell(e['rate'])} | "
                    f"{_fmt(e.get('vs_first'), 2)} | {_cell(e['rate_from_release'])} | "
                    f"{_cell(e['peak_connections'])} |"
                )
    pool = sc.get("pooler")
    if pool and pool.get("skipped"):
        out += ["", f"Scaling behind PgBouncer: skipped ({pool['skipped']})."]
    elif pool and pool.get("summary"):
        out += [
            "",
            f"PgBouncer (transaction mode, default_pool_size {pool['pool_size']}) vs "
            f"direct: {pool['jobs']:,} jobs, sync Worker ({_params(pool['params'])}); "
            "through PgBouncer with prepared statements off (prepare_threshold=None) and "
            "LISTEN straight to the server; direct with the same settings, and direct with "
            "psycopg's prepared statements. Server connections: the peak of the database's "
            "client backends (every 50 ms), PgBouncer's own and the listeners included.",
            "",
            "| processes | connection | jobs/s | server connections |",
            "|---:|---|---:|---:|",
        ]
        for count, by in pool["summary"].items():
            for label, e in by.items():
                out.append(
                    f"| {count} | {label} | {_cell(e['rate'])} | {_cell(e['peak_connections'])} |"
                )
    return out


def _batch(bt: dict[str, Any]) -> list[str]:
    """The batch section: jobs/s of each claim size at each concurrency."""
    sizes = list(bt["summary"])
    out = [
        "",
        f"Claim size: the sync Worker, 2 processes, at each concurrency and claim size "
        f"(median (min-max) of {bt['repeats']} interleaved runs, jobs/s from the first "
        "handler; the order rotates per repeat).",
        "",
        "| concurrency | batch | " + " | ".join(f"{int(n):,} jobs" for n in sizes) + " |",
        "|---:|---:|" + "---:|" * len(sizes),
    ]
    for label, setting in zip(bt["labels"], bt["settings"], strict=True):
        cells = [_cell(bt["summary"][n][label]["rate"]) for n in sizes]
        out.append(f"| {setting['concurrency']} | {setting['batch']} | " + " | ".join(cells) + " |")
    return out


def _sweep_runs(proc: dict[str, Any]) -> int:
    entries = [e for es in proc["sweep"].values() for e in es]
    # Results written before the sweep was repeated hold one rate and no list of them.
    return max((len(e.get("rates", [e["rate"]])) for e in entries), default=1)


def _params(params: dict[str, Any] | None) -> str:
    if not params:
        return "-"
    return ", ".join(f"{k} {v}" for k, v in params.items())


def write(data: dict[str, Any], directory: Path, name: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{name}.json"
    md_path = directory / f"{name}.md"
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    md_path.write_text(markdown(data))
    return json_path, md_path
