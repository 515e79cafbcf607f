"""Input checks, without a database."""

from __future__ import annotations

import pytest

from sqla_jobqueue.errors import InvalidJobError
from sqla_jobqueue.validation import check_json, check_progress


@pytest.mark.parametrize(
    ("value", "is_nul"),
    [
        ({"s": "\x00"}, True),
        ({"s": "a\\u0000"}, False),  # a backslash then "u0000": text, not a NUL
        ({"s": "a\\\x00"}, True),
        ({"\x00key": 1}, True),
        ({"s": ["ok", {"deep": "x\x00"}]}, True),
    ],
)
def test_nul_detection_respects_escaping(value: object, is_nul: bool) -> None:
    if is_nul:
        with pytest.raises(InvalidJobError, match="NUL"):
            check_json(value, "data", 1000, require_object=True)
    else:
        check_json(value, "data", 1000, require_object=True)


def test_size_counts_utf8_bytes() -> None:
    check_json({"s": "é" * 10}, "data", 31, require_object=True)
    with pytest.raises(InvalidJobError, match="28 bytes"):
        check_json({"s": "é" * 10}, "data", 26, require_object=True)


def test_progress_accepts_whole_floats_only() -> None:
    assert check_progress(50.0) == 50
    with pytest.raises(InvalidJobError):
        check_progress(50.5)
    with pytest.raises(InvalidJobError):
        check_progress(True)
