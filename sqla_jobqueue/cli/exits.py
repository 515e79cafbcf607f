"""How a command ends: its exit code, and the two errors a command raises for an operator.

0 done, 1 failure (a job that does not exist or is in the wrong state, a database that
cannot be reached), 2 bad input (one line saying what to write instead), 130 interrupted.
"""

from __future__ import annotations

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "BadInput", "Failure"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class BadInput(Exception):
    """Input found wrong after parsing: a module that fails to import, a URL that is not
    PostgreSQL, an id that names several jobs (exit code 2)."""


class Failure(Exception):
    """The command could not do its work; the message says why (exit code 1)."""
