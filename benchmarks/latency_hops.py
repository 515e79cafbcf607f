"""Where the sync Worker's wake-up time goes: a one-off instrumented latency run.

``python -m benchmarks.latency_hops --database-url URL [--jobs 1000] [--load 2]
[--switch-interval 0.005]`` runs one idle :class:`sqla_jobqueue.Worker` (concurrency 1,
claims of 10, LISTEN on) in this process, with its methods wrapped from the outside (the
package is not changed), while a child process enqueues ``--jobs`` jobs 20 ms apart
(:func:`benchmarks.systems.ours.enqueue_timed`). For every job it takes the wall time of
each hop of the wake path:

``commit``
    the enqueue's commit returned (in the enqueuing process);
``notified``
    the listener thread's ``on_notify`` callback was called with the notification;
``round``
    the dispatcher loop (woken by the listener through an ``Event``) began its claim;
``claimed``
    that claim returned, and the job went on the handlers' queue;
``handler``
    a handler thread called the handler.

and prints (and with ``--output`` writes) the p50 / p90 / p99 / max ms of each hop and of
the whole. ``--load N`` runs N CPU-burning processes meanwhile; ``--switch-interval``
sets ``sys.setswitchinterval`` (5 ms by default in CPython) in the worker's process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .run import _child_command, _child_env, _child_root, _parse, burning
from .server import Server, start_server
from .stats import percentile

__all__ = ["main", "measure"]

HOPS = (("commit", "notified"), ("notified", "round"), ("round", "claimed"),
        ("claimed", "handler"))  # fmt: skip


def measure(url: str, jobs: int, gap: float) -> dict[str, Any]:
    """Run the instrumented worker on database ``url`` while ``jobs`` jobs are enqueued
    ``gap`` seconds apart; the per-job hop times (see the module)."""
    from sqla_jobqueue.handlers import JobContext, Registry
    from sqla_jobqueue.worker import Worker

    from .systems import ours

    notified: list[float] = []
    rounds: list[tuple[float, float, int]] = []
    handled: dict[float, float] = {}
    lock = threading.Lock()

    original_notify = Worker._on_notify
    original_round = Worker._record_and_claim

    def on_notify(self: Any, job_type: str | None) -> None:
        if job_type is not None:
            with lock:
                notified.append(time.time())
        original_notify(self, job_type)

    def record_and_claim(self: Any, *args: Any, **kwargs: Any) -> Any:
        began = time.time()
        result = original_round(self, *args, **kwargs)
        with lock:
            rounds.append((began, time.time(), len(result.claimed)))
        return result

    def noop(ctx: JobContext) -> None:
        handled[float(ctx.data["t"])] = time.time()

    Worker._on_notify = on_notify  # type: ignore[method-assign]
    Worker._record_and_claim = record_and_claim  # type: ignore[method-assign]
    registry = Registry()
    registry.register(ours.JOB_TYPE, noop)
    engine = ours._engine(url, pool_size=5)
    worker = Worker(engine, registry, concurrency=1, batch_size=10)
    try:
        worker.start()
        time.sleep(1.0)
        spec = {"system": "sqla_jobqueue", "action": "enqueue_timed", "url": url,
                "params": {"n": jobs, "gap": gap}}  # fmt: skip
        done = subprocess.run(_child_command(spec), capture_output=True, text=True,
                              env=_child_env(), cwd=_child_root(), check=True)  # fmt: skip
        sent = _parse(done.stdout)["sent"]
        deadline = time.monotonic() + 30
        while len(handled) < jobs and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
        worker.join(10)
        Worker._on_notify = original_notify  # type: ignore[method-assign]
        Worker._record_and_claim = original_round  # type: ignore[method-assign]
        engine.dispose()
    per_job: list[dict[str, float]] = []
    for before, commit in sent:
        handler = handled.get(before)
        if handler is None:
            continue
        # The first of each event after the one before it, and no later than the handler.
        note = next((t for t in notified if t >= before), None)
        claim = next(((b, e) for b, e, n in rounds if n and e <= handler + 1e-6 and
                      b >= (note or before) - 1e-6), None)  # fmt: skip
        if note is None or claim is None or note > handler:
            continue
        per_job.append({"enqueue": before, "commit": commit, "notified": note,
                        "round": claim[0], "claimed": claim[1], "handler": handler})  # fmt: skip
    return {"jobs": jobs, "matched": len(per_job), "per_job": per_job}


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values),
    }


def summarise(per_job: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """p50 / p90 / p99 / max ms of each hop, of commit → handler and enqueue → handler."""
    out: dict[str, dict[str, float]] = {}
    for a, b in (*HOPS, ("commit", "handler"), ("enqueue", "handler")):
        out[f"{a} → {b}"] = _stats([(j[b] - j[a]) * 1000 for j in per_job])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency_hops")
    parser.add_argument("--database-url", help="a server to use (default: an embedded one)")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--gap", type=float, default=0.020)
    parser.add_argument("--load", type=int, default=0, help="CPU-burning processes")
    parser.add_argument("--switch-interval", type=float, help="sys.setswitchinterval(s)")
    parser.add_argument("--output", type=Path, help="write the summary (JSON) here")
    args = parser.parse_args(argv)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    with start_server(args.database_url) as server:
        result = _run(server, args.jobs, args.gap, args.load)
    result["switch_interval_s"] = sys.getswitchinterval()
    result["load"] = args.load
    for hop, values in result["summary"].items():
        print(f"{hop:22s} " + "  ".join(f"{k} {v:7.2f}" for k, v in values.items()))
    print(f"matched {result['matched']} of {result['jobs']} jobs; switch interval "
          f"{result['switch_interval_s'] * 1000:g} ms; load {args.load}")  # fmt: skip
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _run(server: Server, jobs: int, gap: float, load: int) -> dict[str, Any]:
    from .systems import ours

    with server.scratch("hops") as url:
        ours.install(url)
        with burning(load):
            measured = measure(url, jobs, gap)
    per_job = measured.pop("per_job")
    return {**measured, "summary": summarise(per_job)}


if __name__ == "__main__":
    raise SystemExit(main())
