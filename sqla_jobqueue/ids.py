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
from uuid import UUID

__all__ = ["new_job_id"]

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def new_job_id() -> UUID:
    """Return a new version-7 UUID, strictly increasing within this process.

    The 12-bit ``rand_a`` field is a counter seeded at random each millisecond
    (RFC 9562, method 1), so ids made in the same millisecond still sort in order.
    """
    global _last_ms, _counter
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms = now_ms
            _counter = random.getrandbits(11)
        else:
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
        ms, counter = _last_ms, _counter
    # Ids must be unique and ordered, not secret: the Mersenne Twister (reseeded after
    # fork) is enough and much cheaper than a system call per id.
    rand_b = random.getrandbits(62)
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return UUID(int=value)
