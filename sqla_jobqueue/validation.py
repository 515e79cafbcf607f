"""Checks of user input, run before anything is written.

Each check raises :class:`~sqla_jobqueue.errors.InvalidJobError` with a message that says
what was wrong and what to do instead.

A job's ``data`` and a handler's ``result`` are stored as ``jsonb``. Besides what JSON has
(``dict``, ``list``, ``tuple``, ``str``, ``int``, finite ``float``, ``bool``, ``None``;
a tuple comes back as a list and an int, float, bool or None key as a string, as with
``json.dumps``), they may hold the values applications keep in their own rows, each
written as the string that constructs it again:

- :class:`uuid.UUID` as ``str(value)``: ``"0190f2b4-…"``, read back with ``uuid.UUID(s)``;
- :class:`~datetime.datetime`, :class:`~datetime.date` and :class:`~datetime.time` as
  ``value.isoformat()``, read back with ``fromisoformat`` (a UTC offset is kept, the name
  of a ``zoneinfo`` zone is not; a naive value stays naive);
- :class:`~decimal.Decimal` as ``str(value)``: ``"12.30"``, read back exactly with
  ``Decimal(s)`` (a JSON number would come back as a ``float``).

Everything else is refused with the place it was found (``data['tags'][2]``): NaN and the
infinities, NUL characters, lone surrogates (``"\\ud800"``: half of a UTF-16 pair, which
UTF-8 cannot encode), ``bytes``, sets, keys that are not strings, circular references,
dicts and lists nested more than :data:`MAX_JSON_DEPTH` levels deep, and any other object.
Text columns (``job_type``, ``unique_key``, a progress stage) refuse NUL characters and
lone surrogates too.
"""

from __future__ import annotations

import json
import json.encoder
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, cast

from .errors import InvalidJobError

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "INT32_MAX",
    "INT32_MIN",
    "MAX_DELAY",
    "MAX_JSON_DEPTH",
    "check_batch_size",
    "check_finite_delay",
    "check_int32",
    "check_job_type",
    "check_json",
    "check_max_attempts",
    "check_positive_interval",
    "check_progress",
    "check_run_at",
    "check_stage",
    "check_text",
    "mapping_keys",
    "plain_specs",
    "storable_text",
]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
MAX_DELAY = timedelta(days=100 * 366)
"""The farthest a ``run_at`` given as a delay may reach, either way."""
DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024
"""Payloads are references, not blobs: store large data elsewhere and enqueue its key."""
MAX_JSON_DEPTH = 100
"""How many levels of dicts and lists a job's ``data`` or a ``result`` may nest (``data``
itself is the first). Python's ``json``, which writes the value and reads it back (in the
worker, through the driver), recurses once per level within the interpreter's recursion
limit (1,000 frames by default, shared with the caller's stack): a fixed limit well below
it means a value accepted here is accepted anywhere and can always be read back."""


def _as_json(value: object) -> str:
    """The string a value JSON has no type for is stored as (see the module docstring).

    The encoder calls this only for such values, so payloads of plain JSON never do.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"Decimal {value} is not a finite number")
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_ENCODER = json.JSONEncoder(
    allow_nan=False, separators=(",", ":"), ensure_ascii=False, default=_as_json
)
_encode = _ENCODER.encode
"""One encoder for every payload: ``json.dumps`` with options builds a new one per call."""

_ACCEPTED = (
    "dicts with string keys, lists, tuples, str, int, finite float, bool, None, "
    "UUID, datetime, date, time and finite Decimal"
)


def _one_shot_encoder() -> Callable[[object, int], Iterable[str]]:
    """The pieces of ``_encode(value)``, without its per-call set-up.

    ``JSONEncoder.encode`` builds the C encoder afresh for every value, which costs more
    than encoding a small payload. This is the C encoder it builds, with the same options,
    made once per batch; its ``markers`` (the guard against circular references) are the
    batch's own, so a value that failed half-way cannot leave a stale marker behind for
    another batch. Where the C accelerator is missing, it falls back to ``_encode``.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return lambda value, _level: (_encode(value),)
    return cast(
        "Callable[[object, int], Iterable[str]]",
        make(
            {},
            _as_json,
            json.encoder.encode_basestring,
            None,
            _ENCODER.key_separator,
            _ENCODER.item_separator,
            _ENCODER.sort_keys,
            _ENCODER.skipkeys,
            _ENCODER.allow_nan,
        ),
    )


# json.dumps writes U+0000 as the six characters \u0000; an even run of backslashes before
# them would mean the backslash itself was escaped and the text is not a NUL.
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def check_text(value: object, what: str, max_length: int, *, allow_empty: bool = False) -> str:
    """A string of at most ``max_length`` characters without NUL."""
    if not isinstance(value, str):
        raise InvalidJobError(f"{what} must be a string, got {type(value).__name__}")
    if not value and not allow_empty:
        raise InvalidJobError(f"{what} must not be empty")
    if len(value) > max_length:
        raise InvalidJobError(
            f"{what} is {len(value)} characters long; the column holds at most {max_length}"
        )
    if "\x00" in value:
        raise InvalidJobError(f"{what} contains a NUL character, which PostgreSQL cannot store")
    at = _lone_surrogate_at(value)
    if at is not None:
        raise InvalidJobError(f"{what} {_surrogate_problem(value, at)}")
    return value


def _lone_surrogate_at(text: str) -> int | None:
    """The index of the first lone surrogate in ``text`` (a code point U+D800..U+DFFF,
    which UTF-8 cannot encode), or ``None``. Free for ASCII text."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _surrogate_problem(text: str, at: int) -> str:
    """The end of the error for a lone surrogate at ``at``; the message itself stays
    encodable (the surrogate is written as its escape)."""
    return (
        f"contains a lone surrogate {text[at]!r} at index {at}: half of a UTF-16 pair, not "
        "a character, which UTF-8 and PostgreSQL cannot store; repair or remove it (e.g. "
        "text.encode('utf-8', 'replace').decode())"
    )


def storable_text(text: str) -> str:
    """``text`` as a ``text`` column can hold it, for diagnostics that must be written
    whatever they contain (a handler's exception, a cancellation's reason): each NUL
    becomes the two characters ``\\0`` and each lone surrogate its escape (``\\ud800``).
    Other text is returned as it is, without a copy."""
    if "\x00" in text:
        text = text.replace("\x00", "\\0")
    if _lone_surrogate_at(text) is not None:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def check_job_type(value: object) -> str:
    """A job type: a non-empty string of at most 50 characters."""
    return check_text(value, "job_type", 50)


def check_stage(value: object) -> str:
    """A progress stage label of at most 100 characters."""
    return check_text(value, "stage", 100, allow_empty=True)


def check_int32(value: object, what: str) -> int:
    """An int (not a bool) that fits PostgreSQL's ``integer``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJobError(f"{what} must be an int, got {type(value).__name__}")
    if not INT32_MIN <= value <= INT32_MAX:
        raise InvalidJobError(f"{what} {value} is outside the int32 range {INT32_MIN}..{INT32_MAX}")
    return int(value)


def check_max_attempts(value: object) -> int:
    """How many times a job may be claimed: at least 1."""
    attempts = check_int32(value, "max_attempts")
    if attempts < 1:
        raise InvalidJobError(f"max_attempts must be at least 1, got {attempts}")
    return attempts


def check_batch_size(value: object) -> int:
    """How many jobs one claim may take: at least 1."""
    size = check_int32(value, "batch_size")
    if size < 1:
        raise InvalidJobError(f"batch_size must be at least 1, got {size}")
    return size


def check_progress(value: object) -> int:
    """A percentage from 0 to 100."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    percent = check_int32(value, "progress")
    if not 0 <= percent <= 100:
        raise InvalidJobError(f"progress must be between 0 and 100, got {percent}")
    return percent


def check_json(value: object, what: str, max_bytes: int, *, require_object: bool) -> str:
    """Serialise ``value`` as JSON after checking it; return the text.

    Accepts the values listed in the module docstring. Refuses, naming where it was found,
    what ``jsonb`` cannot hold or would not give back: NaN and infinities, NUL characters,
    lone surrogates, other types, circular references, nesting deeper than
    :data:`MAX_JSON_DEPTH`; and payloads larger than ``max_bytes``.
    """
    if require_object and not isinstance(value, Mapping):
        raise InvalidJobError(f"{what} must be a JSON object (a dict), got {type(value).__name__}")
    try:
        text = _encode(value)
    except (TypeError, ValueError) as exc:
        # _too_deep first: _refusal recurses, once per level.
        problem = _too_deep(value, what) or _refusal(value, what)
        raise InvalidJobError(problem or f"{what} cannot be stored: {exc}") from None
    except RecursionError:
        problem = _too_deep(value, what)
        if problem is None:  # not the value's depth: the caller's stack was nearly spent
            raise
        raise InvalidJobError(problem) from None
    if "\\u0000" in text and _ESCAPED_NUL.search(text):
        raise InvalidJobError(_refusal(value, what) or f"{what} contains a NUL character")
    if _nests_too_deep(text):
        raise InvalidJobError(_too_deep(value, what) or f"{what} is nested too deeply")
    if text.isascii():
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            at = _lone_surrogate_at(text) or 0
            found = _refusal(value, what)
            raise InvalidJobError(found or f"{what} {_surrogate_problem(text, at)}") from None
    if size > max_bytes:
        raise InvalidJobError(
            f"{what} is {size} bytes of JSON, over the limit of {max_bytes}; store large data "
            "elsewhere and enqueue a reference to it (or raise max_payload_bytes)"
        )
    return text


# A string of JSON text as the encoder writes it: its brackets are not structure.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_SQUARE_BRACKETS = str.maketrans("{}", "[]")


def _nests_too_deep(text: str) -> bool:
    """Whether the JSON ``text`` nests arrays and objects more than
    :data:`MAX_JSON_DEPTH` levels deep.

    A payload with no more opening brackets than that cannot (one ``count`` each, the
    common case). Otherwise the brackets outside strings are kept and the innermost pairs
    removed, one level per pass, at most ``MAX_JSON_DEPTH`` passes.
    """
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return False
    brackets = _NOT_A_BRACKET.sub("", _JSON_STRING.sub("", text)).translate(_SQUARE_BRACKETS)
    for _ in range(MAX_JSON_DEPTH):
        brackets = brackets.replace("[]", "")
        if not brackets:
            return False
    return True


def _too_deep(value: object, what: str) -> str | None:
    """Where ``value`` nests dicts and lists more than :data:`MAX_JSON_DEPTH` levels
    deep, in the words of the error; ``None`` when it does not.

    Walks without recursion (the value may be deeper than the interpreter's recursion
    limit) and goes no deeper than the limit. A circular reference is not followed:
    :func:`_refusal` names it.
    """
    containers = (dict, list, tuple)
    if not isinstance(value, containers):
        return None
    pending: list[tuple[object, tuple[object, ...]] | int] = [(value, ())]
    open_ids: set[int] = set()  # the containers on the path being walked
    while pending:
        item = pending.pop()
        if isinstance(item, int):  # every container below this one was walked
            open_ids.discard(item)
            continue
        node, keys = item
        if id(node) in open_ids:
            continue
        if len(keys) >= MAX_JSON_DEPTH:
            return (
                f"{what} nests dicts and lists more than {MAX_JSON_DEPTH} levels deep "
                f"(at {_short_path(what, keys)}); flatten it, or store it elsewhere and "
                "enqueue a reference to it"
            )
        open_ids.add(id(node))
        pending.append(id(node))
        children = node.items() if isinstance(node, dict) else enumerate(cast("list[Any]", node))
        for key, child in children:
            if isinstance(child, containers):
                pending.append((child, (*keys, key)))
    return None


def _short_path(what: str, keys: tuple[object, ...]) -> str:
    """``data['a'][0]…['z']``: a path of many levels, its first and last few shown."""
    steps = [f"[{key!r}]" for key in keys]
    if len(steps) > 6:
        steps = [*steps[:3], f"…({len(steps) - 5} more)…", *steps[-2:]]
    return what + "".join(steps)


def _refusal(value: object, path: str, parents: tuple[int, ...] = ()) -> str | None:
    """What the encoder refused in ``value`` and where, in the words of the error; ``None``
    when nothing is wrong. Walks the value as the encoder does (only once it failed)."""
    if isinstance(value, str):
        if "\x00" in value:
            return f"{path} contains a NUL character (\\u0000), which jsonb cannot store"
        at = _lone_surrogate_at(value)
        return None if at is None else f"{path} {_surrogate_problem(value, at)}"
    if isinstance(value, (float, Decimal)):
        if value.is_finite() if isinstance(value, Decimal) else math.isfinite(value):
            return None
        return (
            f"{path} is {value}: NaN or an infinity, which JSON cannot represent; "
            "store None or a string instead"
        )
    if isinstance(value, (int, type(None), uuid.UUID, datetime, date, time)):
        return None
    if id(value) in parents:
        return f"{path} contains itself (a circular reference), which JSON cannot represent"
    inner = (*parents, id(value))
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int, float, type(None))):
                return (
                    f"{path} has the key {key!r} of type {type(key).__name__}; JSON keys are "
                    "strings: convert it with str() before enqueueing"
                )
            found = _refusal(key, f"{path} key {key!r}") or _refusal(
                item, f"{path}[{key!r}]", inner
            )
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _refusal(item, f"{path}[{index}]", inner)
            if found:
                return found
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        advice = "encode it as text (e.g. base64), or store it elsewhere and enqueue a reference"
    elif isinstance(value, (set, frozenset)):
        advice = "pass a sorted list instead"
    else:
        advice = "convert it to one of those before enqueueing"
    root = re.split(r"[\[ ]", path, maxsplit=1)[0]
    return (
        f"{root} must be JSON-serialisable, but {path} is of type {type(value).__name__}; "
        f"it may hold {_ACCEPTED}: {advice}"
    )


def check_run_at(value: object) -> datetime | timedelta | None:
    """An aware datetime, a delay from the database's clock, or ``None`` for now."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        if abs(value) > MAX_DELAY:
            raise InvalidJobError(
                f"run_at delay {value} is more than {MAX_DELAY.days} days away; "
                "pass an aware datetime for a fixed time"
            )
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidJobError(
                f"run_at {value.isoformat()} has no time zone; pass an aware datetime "
                "(e.g. datetime.now(timezone.utc)) or a timedelta from now"
            )
        return value
    raise InvalidJobError(f"run_at must be a datetime or a timedelta, got {type(value).__name__}")


def check_positive_interval(value: object, what: str) -> timedelta:
    """A strictly positive :class:`~datetime.timedelta`."""
    if not isinstance(value, timedelta):
        raise InvalidJobError(f"{what} must be a timedelta, got {type(value).__name__}")
    if value <= timedelta(0):
        raise InvalidJobError(f"{what} must be positive, got {value}")
    return value


def check_finite_delay(value: object, what: str) -> timedelta:
    """A :class:`~datetime.timedelta` of zero or more."""
    if not isinstance(value, timedelta):
        raise InvalidJobError(f"{what} must be a timedelta, got {type(value).__name__}")
    if value < timedelta(0) or not math.isfinite(value.total_seconds()):
        raise InvalidJobError(f"{what} must be zero or more, got {value}")
    return value


def mapping_keys(spec: object, allowed: frozenset[str], index: int) -> Mapping[str, Any]:
    """A job specification of ``enqueue_many``: a mapping with known keys only."""
    if not isinstance(spec, Mapping):
        raise InvalidJobError(f"job #{index} must be a mapping, got {type(spec).__name__}")
    unknown = set(spec) - allowed
    if unknown:
        raise InvalidJobError(
            f"job #{index} has unknown keys {sorted(unknown)}; allowed are {sorted(allowed)}"
        )
    if "job_type" not in spec:
        raise InvalidJobError(f"job #{index} has no job_type")
    return spec


def plain_specs(specs: Sequence[object], max_bytes: int) -> tuple[list[str], list[bytes]] | None:
    """The job types and UTF-8 JSON payloads of ``enqueue_many`` specs, column by column,
    when every spec is the common kind: a ``dict`` of a valid ``job_type`` and optionally
    a JSON-object ``data`` (or ``None``), every other setting left to its default.

    Returns ``None`` as soon as one spec is anything else, valid or not. The caller then
    checks every spec with the full checks, which accept the rest and explain what is
    wrong in the usual words; this pass only accepts what those checks accept, and never
    raises.
    """
    encode = _one_shot_encoder()
    seen: set[str] = set()
    job_types: list[str] = []
    payloads: list[bytes] = []
    add_type = job_types.append
    add_payload = payloads.append
    for spec in specs:
        if type(spec) is not dict:
            return None
        job_type = spec.get("job_type")
        if type(job_type) is not str:
            return None
        if job_type not in seen:
            if not 0 < len(job_type) <= 50 or "\x00" in job_type:
                return None
            if _lone_surrogate_at(job_type) is not None:
                return None
            seen.add(job_type)
        size = len(spec)
        if size == 1:
            add_type(job_type)
            add_payload(b"{}")
            continue
        if size != 2 or "data" not in spec:
            return None
        data = spec["data"]
        if data is None:
            text = "{}"
        elif type(data) is dict:
            try:
                text = "".join(encode(data, 0))
            except (TypeError, ValueError, RecursionError):
                return None
            # Possibly a NUL: let check_json tell an escaped backslash from one.
            if "\\u0000" in text or _nests_too_deep(text):
                return None
        else:
            return None
        try:
            payload = text.encode()
        except UnicodeEncodeError:  # a lone surrogate: check_json names it
            return None
        if len(payload) > max_bytes:
            return None
        add_type(job_type)
        add_payload(payload)
    return job_types, payloads
