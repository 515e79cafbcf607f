"""Finding the registry a worker runs, from ``"package.module:attribute"``."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import InvalidJobError
from ..handlers import Registry

__all__ = ["load_registry"]


def load_registry(target: str) -> Registry:
    """Import ``"package.module:attribute"`` and return the :class:`Registry` it names.

    The attribute may be a dotted path inside the module (``"app.jobs:tasks.registry"``).

    Raises
    ------
    InvalidJobError
        When the target is malformed, cannot be imported, or is not a Registry.
    """
    if not isinstance(target, str) or target.count(":") != 1:
        raise InvalidJobError(
            f"registry target must look like 'package.module:attribute', got {target!r}"
        )
    module_name, attribute = target.split(":")
    if not module_name or not attribute:
        raise InvalidJobError(
            f"registry target must look like 'package.module:attribute', got {target!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidJobError(f"cannot import {module_name!r} for {target!r}: {exc}") from exc
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise InvalidJobError(f"{module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(value, Registry):
        raise InvalidJobError(f"{target!r} is a {type(value).__name__}, not a Registry")
    return value
