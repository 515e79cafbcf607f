"""One benchmark step in a process of its own: ``python -m benchmarks.child SPEC``.

``SPEC`` is JSON: ``{"system", "action", "url", "params"}``. The result is printed as
one JSON line prefixed with ``RESULT ``. A ``drain`` child first prints ``READY`` and waits
for a line on stdin, so that the parent can start all workers at the same moment; while
it works, a thread samples its resident memory once a second.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
from typing import Any

from .systems import load

__all__ = ["main"]


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Sampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.time(), rss_bytes()))
            self.stop.wait(1.0)


def _go() -> None:
    print("READY", flush=True)
    sys.stdin.readline()


def main(argv: list[str]) -> int:
    spec: dict[str, Any] = json.loads(argv[0])
    system = load(spec["system"])
    action, url, params = spec["action"], spec["url"], spec.get("params", {})
    result: Any
    if action == "install":
        system.install(url)
        result = None
    elif action == "enqueue_single":
        result = {"elapsed": system.enqueue_single(url, int(params["n"]))}
    elif action == "enqueue_bulk":
        result = {"elapsed": system.enqueue_bulk(url, int(params["n"]), int(params["batch"]))}
    elif action == "prefill":
        system.prefill(url, int(params["n"]))
        result = None
    elif action == "enqueue_timed":
        result = {"sent": system.enqueue_timed(url, int(params["n"]), float(params["gap"]))}
    elif action == "drain":
        # Every system's worker process, as `sqla-jobqueue worker` does: start-up objects
        # are left out of the collector's full passes.
        gc.collect()
        gc.freeze()
        sampler = _Sampler()
        sampler.start()
        result = system.drain(url, params, _go)
        sampler.stop.set()
        result["rss"] = [*sampler.samples, (time.time(), rss_bytes())]
    elif action == "call":
        result = getattr(system, params["function"])(url, **params.get("kwargs", {}))
    else:
        raise SystemExit(f"unknown action {action!r}")
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
