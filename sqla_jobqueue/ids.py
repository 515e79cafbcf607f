"""Job ids: time-ordered UUIDs (RFC 9562 version 7) made on the client.

Ids made here keep the primary-key index append-mostly instead of scattering inserts over
every leaf page, let ``enqueue_many`` know its ids before the INSERT runs, and break ties
between jobs of one transaction (which share ``created_at``) in the order they were
enqueued. The embedded clock only orders ids; no state change reads it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from uuid import UUID, SafeUUID

__all__ = ["new_job_id", "new_job_ids", "reserve_job_ids"]

_lock = threading.Lock()
# The last id's 48-bit millisecond and 12-bit counter as one number (ms << 12 | counter):
# a counter that runs past 0xFFF carries into the millisecond by plain addition.
_last = 0

_VERSION_AND_VARIANT = 0x7 << 76 | 0b10 << 62
_bits = random.getrandbits
_new = object.__new__
_set = object.__setattr__
_UNKNOWN = SafeUUID.unknown


def _uuid(value: int) -> UUID:
    # UUID(int=...) re-validates its argument on every call; these values are made in
    # range here, and this is how the uuid module itself builds a UUID from a trusted int.
    made: UUID = _new(UUID)
    _set(made, "int", value)
    _set(made, "is_safe", _UNKNOWN)
    return made


def _reserve(count: int) -> int:
    """Take ``count`` consecutive (ms, counter) stamps; return the first."""
    global _last
    with _lock:
        now = (time.time_ns() // 1_000_000) << 12
        # A new millisecond starts its counter at a random 11-bit value (RFC 9562,
        # method 1): ids stay unguessable in their low bits yet leave room to count up.
        first = now | _bits(11) if now > _last else _last + 1
        _last = first + count - 1
    return first


def _value(stamp: int) -> int:
    # Ids must be unique and ordered, not secret: the Mersenne Twister (reseeded after
    # fork) is enough and much cheaper than a system call per id.
    return (stamp >> 12) << 80 | (stamp & 0xFFF) << 64 | _VERSION_AND_VARIANT | _bits(62)


def new_job_id() -> UUID:
    """Return a new version-7 UUID, strictly increasing within this process.

    The 12-bit ``rand_a`` field is a counter seeded at random each millisecond
    (RFC 9562, method 1), so ids made in the same millisecond still sort in order.
    """
    return _uuid(_value(_reserve(1)))


def new_job_ids(count: int) -> list[UUID]:
    """Return ``count`` new ids in increasing order, as many calls of :func:`new_job_id`
    would, with one look at the clock and one take of the lock."""
    return list(reserve_job_ids(count))


def reserve_job_ids(count: int) -> Iterator[UUID]:
    """Reserve ``count`` ids now, in one take of the lock; make each as it is iterated.

    The ids are the ones :func:`new_job_ids` would return. A bulk enqueue makes them
    while it streams the rows, so the server loads the rows sent already meanwhile.
    """
    if count <= 0:
        return iter(())
    return _made(_reserve(count), count)


def _made(first: int, count: int) -> Iterator[UUID]:
    # _uuid(_value(stamp)) inlined, with locals: this loop runs once per job of a bulk
    # enqueue.
    new, set_, bits, fixed, unknown = _new, _set, _bits, _VERSION_AND_VARIANT, _UNKNOWN
    for stamp in range(first, first + count):
        job_id: UUID = new(UUID)
        set_(job_id, "int", (stamp >> 12) << 80 | (stamp & 0xFFF) << 64 | fixed | bits(62))
        set_(job_id, "is_safe", unknown)
        yield job_id
