"""Client-made job ids are version-7 UUIDs that sort in the order they were made."""

from __future__ import annotations

import pickle
import threading
import time
import uuid

import pytest

from sqla_jobqueue.ids import new_job_id, new_job_ids, reserve_job_ids


def test_ids_are_version_7_and_strictly_increasing() -> None:
    ids = [new_job_id() for _ in range(20_000)]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_ids_embed_the_millisecond_they_were_made() -> None:
    before = time.time_ns() // 1_000_000
    made = new_job_id()
    after = time.time_ns() // 1_000_000
    assert before <= made.int >> 80 <= after + 1


def test_ids_are_unique_across_threads() -> None:
    results: list[list[uuid.UUID]] = [[] for _ in range(4)]

    def make(out: list[uuid.UUID]) -> None:
        out.extend(new_job_id() for _ in range(5_000))

    threads = [threading.Thread(target=make, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for out in results for i in out]
    assert len(set(everything)) == len(everything)
    assert all(out == sorted(out) for out in results)


def test_batches_of_ids_continue_the_same_order() -> None:
    made = [new_job_id()]
    for count in (1, 5_000, 0, 3):
        batch = new_job_ids(count)
        assert len(batch) == count
        made.extend(batch)
    made.append(new_job_id())
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in made)


def test_a_counter_that_runs_out_carries_into_the_next_millisecond() -> None:
    # Far more ids than one millisecond's 12-bit counter holds, in one take of the clock.
    batch = new_job_ids(20_000)
    stamps = [(i.int >> 80, i.int >> 64 & 0xFFF) for i in batch]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert stamps[-1][0] > stamps[0][0]


def test_ids_are_ordinary_uuids() -> None:
    made = new_job_id()
    same = uuid.UUID(int=made.int)
    assert made == same and hash(made) == hash(same) and str(made) == str(same)
    assert made.is_safe is uuid.SafeUUID.unknown
    assert pickle.loads(pickle.dumps(made)) == made
    with pytest.raises(TypeError, match="immutable"):
        made.int = 0  # type: ignore[misc]


def test_reserved_ids_are_taken_when_reserved_not_when_made() -> None:
    reserved = reserve_job_ids(3)
    later = new_job_id()
    made = list(reserved)
    assert len(made) == 3 and made == sorted(made) and made[-1] < later
