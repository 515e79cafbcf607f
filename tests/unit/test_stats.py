"""How ``JobQueue.stats`` chooses between counting finished jobs and sampling them."""

from __future__ import annotations

from sqla_jobqueue.plans.reads import ESTIMATE_ABOVE_ROWS, SAMPLED_ROWS, sample_percent


def test_finished_jobs_are_counted_exactly_up_to_a_million_rows_then_sampled() -> None:
    assert sample_percent(-1, exact=False) is None, "never analyzed: count them all"
    assert sample_percent(ESTIMATE_ABOVE_ROWS, exact=False) is None
    assert sample_percent(10_000_000, exact=True) is None
    assert sample_percent(10_000_000, exact=False) == 100.0 * SAMPLED_ROWS / 10_000_000
