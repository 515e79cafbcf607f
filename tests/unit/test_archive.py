"""The archive's days, as plain functions: which partitions a span of time needs, their
names and their bounds."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from sqlalchemy import MetaData, Table

from sqla_jobqueue.archive import Partition, partition_days

TOKYO = timezone(timedelta(hours=9))


def test_the_days_of_a_span_are_counted_in_utc() -> None:
    # 08:30 in Tokyo on the 5th is 23:30 UTC on the 4th.
    first = datetime(2026, 12, 5, 8, 30, tzinfo=TOKYO)
    last = datetime(2026, 12, 6, 0, 0, tzinfo=timezone.utc)
    assert partition_days(first, last) == [
        Partition(date(2026, 12, 4)),
        Partition(date(2026, 12, 5)),
        Partition(date(2026, 12, 6)),
    ]
    assert partition_days(last, first) == []


def test_a_partition_is_named_and_bounded_by_its_day() -> None:
    archive = Table("jobs_archive", MetaData(), schema="queue")
    day = Partition(date(2026, 12, 4))
    assert day.name(archive) == "jobs_archive_p20261204"
    assert day.create(archive) == (
        "CREATE TABLE IF NOT EXISTS queue.jobs_archive_p20261204 PARTITION OF "
        "queue.jobs_archive FOR VALUES FROM ('2026-12-04T00:00:00+00:00') "
        "TO ('2026-12-05T00:00:00+00:00')"
    )
    assert day.drop(archive) == "DROP TABLE IF EXISTS queue.jobs_archive_p20261204"
    assert Partition.named(day.name(archive)) == day


def test_a_long_archive_name_keeps_the_day_in_its_partitions_names() -> None:
    archive = Table("a" * 60, MetaData())
    name = Partition(date(2026, 1, 31)).name(archive)
    assert len(name) == 63 and name.endswith("_p20260131")
    assert Partition.named(name) == Partition(date(2026, 1, 31))


def test_tables_that_are_not_days_are_not_partitions_of_ours() -> None:
    assert Partition.named("jobs_archive_default") is None
    assert Partition.named("jobs_archive_p20261399") is None
