"""``module:attribute`` targets of the application: ``--app``, ``--model`` and the worker's
registry. Modules are looked up from the current directory too, as ``python -m`` would;
an error raised by the application's own module is told in one line.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

from ..archive import JobArchiveMixin
from ..errors import JobQueueError
from ..model import Job, JobMixin
from .exits import BadInput

if TYPE_CHECKING:
    from ..handlers import Registry

__all__ = ["archive_model", "exception_line", "import_object", "job_model", "load_registry"]


def _import_from_cwd() -> None:
    # A console script's sys.path starts at its own directory, not the current one.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())


def exception_line(error: BaseException) -> str:
    """``Type: message`` of an exception raised by the application's own code."""
    message = str(error).strip()
    return type(error).__name__ + (f": {message}" if message else "")


def import_object(spec: str, what: str) -> Any:
    """The object ``spec`` (``module:attribute``, dotted attributes allowed) names, for the
    option ``what``.

    Raises
    ------
    BadInput
        When ``spec`` is malformed, its module fails to import or lacks the attribute.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise BadInput(f"{what} {spec!r} must be written module:attribute, e.g. myapp.jobs:Job")
    _import_from_cwd()
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BadInput(f"cannot import {module_name!r} for {what} {spec!r}: {error}") from None
    except Exception as error:
        raise BadInput(
            f"importing {module_name!r} for {what} {spec!r} failed: {exception_line(error)}"
        ) from None
    try:
        value = module
        for name in attribute.split("."):
            value = getattr(value, name)
    except AttributeError:
        raise BadInput(f"{module_name!r} has no {attribute!r} (for {what} {spec!r})") from None
    return value


def job_model(spec: str | None) -> type[JobMixin]:
    """The model ``--model`` names, or :class:`~sqla_jobqueue.model.Job` without it."""
    if not spec:
        return Job
    model = import_object(spec, "--model")
    if not (isinstance(model, type) and issubclass(model, JobMixin)) or issubclass(
        model, JobArchiveMixin
    ):
        raise BadInput(f"--model {spec!r} is not a mapped JobMixin class")
    return model


def archive_model(spec: str) -> type[JobArchiveMixin]:
    """The model ``--archive`` names."""
    model = import_object(spec, "--archive")
    if not (isinstance(model, type) and issubclass(model, JobArchiveMixin)):
        raise BadInput(f"--archive {spec!r} is not a mapped JobArchiveMixin class")
    return model


def load_registry(target: str) -> Registry:
    """The worker's registry (see :func:`sqla_jobqueue.worker.load_registry`)."""
    from ..worker import load_registry

    _import_from_cwd()
    try:
        return load_registry(target)
    except JobQueueError:
        raise
    except Exception as error:
        raise BadInput(f"loading the registry {target!r} failed: {exception_line(error)}") from None
