"""Benchmarks of sqla_jobqueue beside PGQueuer, procrastinate and the raw-SQL limit.

Run ``python -m benchmarks run [--quick] [--only X,Y] [--database-url URL]``. The peers
come from ``benchmarks/requirements.txt``; this package installs nothing by itself. A run
starts its own embedded PostgreSQL unless ``--database-url`` names a server, writes JSON
and a markdown table under ``benchmarks/results/``, and asserts nothing: speed is reported,
never tested.
"""

from __future__ import annotations

__all__: list[str] = []
