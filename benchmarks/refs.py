"""One system's processing at two checkouts, alternating: ``python -m benchmarks.refs DIR``.

``DIR`` holds another checkout of this repository (for one commit:
``git archive REF | tar -x -C DIR``). Each repeat drains ``--jobs`` prefilled no-op jobs
with 2 worker processes once with the code of ``DIR`` and once with this checkout's, the
order alternating from one repeat to the next, each in a fresh database cloned from a
template that the checkout's own code installed. The children import ``benchmarks`` and
``sqla_jobqueue`` from their checkout (it comes first on their ``PYTHONPATH``), so the
other checkout needs no install of its own when its dependencies are those installed
here. Prints each rate and the medians, and writes them as JSON.

Each checkout's drain children are its own ``benchmarks.systems`` code, so a checkout
from before the harness reported ``first`` (the first handler call) is timed from the
release only. The rates compared (``rates``, ``medians``) are those from the first
handler call when both checkouts report it and from the release otherwise
(``rate_basis`` says which); ``rates_from_release`` are kept either way. Such a
checkout also builds its worker as its own harness did (before, with maintenance off
and a 50 ms poll interval) and ends its drains as it did (``max(completed_at)``), so
across that change the two sides are not timed alike.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from .run import drain_clock, rotated, run_child, run_workers
from .server import Server, start_server

__all__ = ["main"]

HERE = str(Path(__file__).resolve().parents[1])
WORKERS = 2


def _describe(root: str) -> str:
    """The commit of checkout ``root`` when it is a git checkout, else its path."""
    done = subprocess.run(
        ["git", "-C", root, "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else root


def _template(server: Server, system: str, root: str, label: str) -> str:
    url = server.create_database(f"tpl_refs_{label}")
    run_child(system, "install", url, root=root)
    return url.rsplit("/", 1)[1].split("?", 1)[0]


def _drain(
    server: Server, template: str, system: str, root: str, n: int, params: dict[str, Any]
) -> dict[str, Any]:
    with server.scratch("refs", template=template) as url:
        run_child(system, "prefill", url, {"n": n}, root=root)
        results, _ = run_workers(system, url, {**params, "expect": n}, WORKERS, root=root)
    clock = drain_clock(results, n)
    processed = sum(r["processed"] for r in results)
    return {
        # None from a checkout whose drain does not report its first handler call.
        "rate": clock["rate"] if all("first" in r for r in results) else None,
        "rate_from_release": clock["rate_from_release"],
        "complete": processed >= n and not any(r.get("stalled") for r in results),
        "mode": results[0].get("mode"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.refs")
    parser.add_argument("before", help="directory of the other checkout")
    parser.add_argument("--after", default=HERE, help="checkout compared (default: this one)")
    parser.add_argument(
        "--before-name", help="what DIR holds, for the JSON (a commit of an exported tree)"
    )
    parser.add_argument(
        "--after-name", help="what --after holds, for the JSON (a commit of an exported tree)"
    )
    parser.add_argument("--system", default="sqla_jobqueue")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--database-url", help="use this server instead of an embedded one")
    parser.add_argument("--output", type=Path, help="JSON file for the results")
    args = parser.parse_args(argv)
    roots = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    params = {"batch": args.batch, "concurrency": args.concurrency}
    from_first: dict[str, list[float | None]] = {label: [] for label in roots}
    from_release: dict[str, list[float]] = {label: [] for label in roots}
    orders: list[list[str]] = []
    modes: dict[str, Any] = {}
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with start_server(args.database_url) as server:
        templates = {
            label: _template(server, args.system, root, label) for label, root in roots.items()
        }
        try:
            for trial in range(args.repeats):
                order = rotated(list(roots), trial)
                orders.append(order)
                for label in order:
                    result = _drain(
                        server, templates[label], args.system, roots[label], args.jobs, params
                    )
                    if not result["complete"]:
                        raise SystemExit(f"{label}: the drain did not finish every job")
                    from_first[label].append(result["rate"])
                    from_release[label].append(result["rate_from_release"])
                    modes[label] = result["mode"]
                    first = "-" if result["rate"] is None else f"{result['rate']:,.0f}"
                    print(
                        f"  #{trial} {label}: {first} jobs/s from the first handler, "
                        f"{result['rate_from_release']:,.0f} from the release",
                        flush=True,
                    )
        finally:
            for name in templates.values():
                server.drop_database(server.database(name))
    basis = "first handler"
    rates: dict[str, list[float]] = {}
    for label, values in from_first.items():
        known = [v for v in values if v is not None]
        if len(known) != len(values):
            basis = "release"
        rates[label] = known
    if basis == "release":
        rates = from_release
    medians = {label: statistics.median(values) for label, values in rates.items()}
    out = {
        "command": " ".join(
            ["python -m benchmarks.refs", *(sys.argv[1:] if argv is None else argv)]
        ),
        "date": started,
        "system": args.system,
        "jobs": args.jobs,
        "workers": WORKERS,
        "params": params,
        "commits": {
            "before": args.before_name or _describe(roots["before"]),
            "after": args.after_name or _describe(roots["after"]),
        },
        "modes": modes,
        "orders": orders,
        "rate_basis": basis,
        "rates": rates,
        "rates_from_release": from_release,
        "medians": medians,
        "after_over_before": medians["after"] / medians["before"],
        "per_repeat": [a / b for a, b in zip(rates["after"], rates["before"], strict=True)],
    }
    text = json.dumps(out, indent=2)
    if args.output:
        args.output.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
