"""The queues measured side by side: sqla_jobqueue, PGQueuer, procrastinate, raw SQL.

Each system module offers the same small set of functions, called in a child process
(:mod:`benchmarks.child`) so that peers never share an interpreter, a connection pool or
an event loop with each other:

``install(conninfo)``
    Create the system's schema in an empty database (done once, in a template).
``enqueue_single(conninfo, n)`` / ``enqueue_bulk(conninfo, n, batch)``
    Enqueue ``n`` no-op jobs, one transaction per job or ``batch`` per call; return
    seconds elapsed.
``prefill(conninfo, n)``
    Enqueue ``n`` no-op jobs as fast as possible (not timed).
``drain(conninfo, params, go)``
    Work jobs until none is left, starting when ``go()`` returns; return timings, the
    same three for every system (wall-clock epoch seconds of the drain's process):
    ``start`` when ``go()`` returned (the release, after connecting where the system
    can), ``first`` at its first handler call (``None`` when it ran none; pgbench, which
    has no handler, gives its first completion) and ``end`` once it knew that no job was
    left, after its last commit. The processing rate counts from the earliest ``first``
    of the workers to the latest ``end``; the rate from the release, from the earliest
    ``start``, is kept beside it. Each module's docstring says how it takes the three.

A module may leave some out (``sqla_jobqueue_async`` has no worker yet): a measurement
runs only the systems that :func:`offers` the action it needs.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__all__ = ["PEERS", "SYSTEMS", "available", "load", "offers"]

SYSTEMS: dict[str, str] = {
    "sqla_jobqueue": "benchmarks.systems.ours",
    "sqla_jobqueue_async": "benchmarks.systems.ours_async",
    "pgqueuer": "benchmarks.systems.pgq",
    "procrastinate": "benchmarks.systems.procr",
    "pgbench": "benchmarks.systems.raw",
}
"""System name -> module implementing it."""

PEERS: dict[str, str] = {"pgqueuer": "pgqueuer", "procrastinate": "procrastinate"}
"""Peer system name -> the distribution it needs."""


def available(name: str) -> bool:
    """Whether the packages that ``name`` needs are importable here."""
    if name == "pgbench":
        from ..server import find_pgbench

        return find_pgbench() is not None
    needs = {
        "sqla_jobqueue_async": ["greenlet"],  # sqlalchemy.ext.asyncio needs it
        "pgqueuer": ["pgqueuer", "asyncpg"],
        "procrastinate": ["procrastinate"],
    }
    return all(importlib.util.find_spec(module) for module in needs.get(name, []))


def load(name: str) -> ModuleType:
    return importlib.import_module(SYSTEMS[name])


def offers(name: str, action: str) -> bool:
    """Whether system ``name``'s module implements ``action`` (``drain``, ``prefill`` …)."""
    return callable(getattr(load(name), action, None))
