"""Command line: ``python -m benchmarks run [--quick] [--only X] [--database-url URL]``."""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import signal
import sys
import time
from pathlib import Path

from . import report
from .run import ALL_SYSTEMS, DEFAULT_MEASUREMENTS, MEASUREMENTS, Runner, Sizes, usable_systems
from .server import start_server

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the measurements and write JSON + markdown")
    run.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (smoke test)")
    run.add_argument(
        "--only",
        default=",".join(DEFAULT_MEASUREMENTS),
        help=f"comma-separated measurements, from {', '.join(MEASUREMENTS)} (default: all "
        "but table_size)",
    )
    run.add_argument(
        "--systems", default=",".join(ALL_SYSTEMS), help="comma-separated systems to compare"
    )
    run.add_argument("--database-url", help="use this server instead of an embedded one")
    run.add_argument("--repeats", type=int, help="repeats of each measurement (default 3)")
    run.add_argument(
        "--depth-jobs",
        type=int,
        help="jobs in the burn-downs of depth and table_size (default 1,000,000; 0: "
        "table_size runs none)",
    )
    run.add_argument(
        "--table-size-rows",
        help="comma-separated sizes of finished history for table_size (default "
        "0,1000000; --quick 0,20000), e.g. 0,1000000,10000000",
    )
    run.add_argument(
        "--processing-jobs", help="comma-separated processing sizes (default 20000,200000)"
    )
    run.add_argument(
        "--table-size-variants",
        help="comma-separated table_size variants: jobs (the history in the job table), "
        "archive (in a JobArchiveMixin table's day partitions); default both",
    )
    run.add_argument("--scaling-jobs", type=int, help="jobs per scaling drain (default 100,000)")
    run.add_argument(
        "--scaling-parts", help="comma-separated parts of scaling: processes, pooler (default both)"
    )
    run.add_argument(
        "--scaling-processes", help="comma-separated worker process counts (default 1,2,4,8)"
    )
    run.add_argument("--latency-jobs", type=int, help="jobs per latency run (default 200)")
    run.add_argument(
        "--latency-load",
        help="CPU-burning processes (a busy Python loop each) running during the latency "
        "measurement (default 0); comma-separated for one latency run at each, e.g. 0,2",
    )
    run.add_argument("--batch-jobs", help="comma-separated drain sizes of batch (default "
                     "20000,200000)")  # fmt: skip
    run.add_argument("--batch-repeats", type=int, help="repeats of batch (default 5)")
    run.add_argument("--output", type=Path, default=RESULTS, help="directory for the results")
    run.add_argument("--name", help="file name stem (default: latest or quick)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.repeats:
        sizes.repeats = args.repeats
    if args.depth_jobs is not None:
        sizes.depth_jobs = args.depth_jobs
    if args.table_size_rows:
        sizes.table_size_rows = tuple(int(x) for x in args.table_size_rows.split(","))
    if args.table_size_variants:
        sizes.table_size_variants = tuple(x.strip() for x in args.table_size_variants.split(","))
    if args.scaling_jobs:
        sizes.scaling_jobs = sizes.scaling_pooler_jobs = args.scaling_jobs
    if args.scaling_parts:
        sizes.scaling_parts = tuple(x.strip() for x in args.scaling_parts.split(","))
    if args.scaling_processes:
        sizes.scaling_processes = tuple(int(x) for x in args.scaling_processes.split(","))
    if args.latency_jobs:
        sizes.latency_jobs = args.latency_jobs
    if args.latency_load:
        sizes.latency_load = tuple(int(x) for x in args.latency_load.split(","))
    if args.batch_jobs:
        sizes.batch_jobs = tuple(int(x) for x in args.batch_jobs.split(","))
    if args.batch_repeats:
        sizes.batch_repeats = args.batch_repeats
    if args.processing_jobs:
        sizes.processing = tuple(int(x) for x in args.processing_jobs.split(","))
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = only - set(MEASUREMENTS)
    if unknown:
        print(f"unknown measurements: {sorted(unknown)}", file=sys.stderr)
        return 2
    systems, missing = usable_systems([s.strip() for s in args.systems.split(",") if s.strip()])
    for name in missing:
        print(f"skipping {name}: its package is not installed (pip install -r "
              "benchmarks/requirements.txt)", file=sys.stderr)  # fmt: skip
    command = "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else argv)
    started = time.time()
    # A terminated run still drops its databases and stops its server on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with start_server(args.database_url) as server:
        description = server.describe()
        print(f"PostgreSQL {description['version']} ({server.source}); systems: {systems}")
        runner = Runner(server=server, sizes=sizes, systems=systems, only=only)
        results = runner.run()
    data = {
        "environment": report.environment(description, command),
        "systems": systems,
        "missing": missing,
        "sizes": {k: v for k, v in vars(sizes).items()},
        "results": results,
        "seconds": round(time.time() - started, 1),
    }
    name = args.name or ("quick" if args.quick else "latest")
    json_path, md_path = report.write(data, args.output, name)
    print(report.markdown(data))
    print(f"wrote {json_path} and {md_path} in {data['seconds']} s "
          f"({dt.timedelta(seconds=int(data['seconds']))})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
