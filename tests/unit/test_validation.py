"""Input checks, without a database."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from types import MappingProxyType

import pytest

from sqla_jobqueue.errors import InvalidJobError
from sqla_jobqueue.validation import check_json, check_progress, plain_specs


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


PLAIN = {"job_type": "t", "data": {"n": 1}}


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(OrderedDict(PLAIN), id="dict subclass"),
        pytest.param(MappingProxyType(PLAIN), id="other mapping"),
        pytest.param({"job_type": "t", "priority": 100}, id="a setting given"),
        pytest.param({"job_type": "t", "data": {}, "unique_key": None}, id="three keys"),
        pytest.param({"data": {}}, id="no job_type"),
        pytest.param({"job_type": "t", "dat": {}}, id="misspelt data"),
        pytest.param({"jobtype": "t"}, id="misspelt job_type"),
        pytest.param({"job_type": ""}, id="empty type"),
        pytest.param({"job_type": "x" * 51}, id="long type"),
        pytest.param({"job_type": "a\x00"}, id="NUL in type"),
        pytest.param({"job_type": 7}, id="type not str"),
        pytest.param({"job_type": type("S", (str,), {})("t")}, id="str subclass"),
        pytest.param({"job_type": "t", "data": [1]}, id="data not object"),
        pytest.param({"job_type": "t", "data": OrderedDict(n=1)}, id="data a dict subclass"),
        pytest.param({"job_type": "t", "data": {"x": math.nan}}, id="NaN"),
        pytest.param({"job_type": "t", "data": {"x": {1, 2}}}, id="not JSON"),
        pytest.param({"job_type": "t", "data": {"x": "a\x00"}}, id="NUL"),
        pytest.param({"job_type": "t", "data": {"x": "a\\u0000"}}, id="escaped backslash"),
        pytest.param({"job_type": "t", "data": {"x": "é" * 40}}, id="over the limit in UTF-8"),
    ],
)
def test_plain_specs_leaves_everything_else_to_the_full_checks(spec: object) -> None:
    assert plain_specs([PLAIN, spec, PLAIN], 80) is None


def test_plain_specs_encodes_exactly_like_check_json() -> None:
    payloads: list[dict[str, object]] = [
        {},
        {"n": 1, "f": 0.1, "big": 2**70, "neg": -1e-300, "t": True, "none": None},
        {"s": 'é\u2028\t"\\/ \U0001f600', "nested": {"list": [1, [2, {"k": []}]]}},
        {"é": "keys too", "": ""},
    ]
    specs = [{"job_type": "t", "data": data} for data in payloads]
    specs += [{"job_type": "t", "data": None}, {"job_type": "u"}]
    plain = plain_specs(specs, 1000)
    assert plain is not None
    job_types, encoded = plain
    assert job_types == ["t"] * (len(payloads) + 1) + ["u"]
    expected = [check_json(data, "data", 1000, require_object=True) for data in payloads]
    assert encoded == [text.encode() for text in expected] + [b"{}", b"{}"]
    assert [json.loads(text) for text in encoded[: len(payloads)]] == payloads


def test_plain_specs_limit_counts_utf8_bytes_like_check_json() -> None:
    fits = {"job_type": "t", "data": {"s": "é" * 10}}  # 28 bytes of JSON, 18 characters
    assert plain_specs([fits], 28) is not None
    assert plain_specs([fits], 27) is None


def test_a_failed_encoding_leaves_no_trace_for_the_next_batch() -> None:
    circular: dict[str, object] = {}
    circular["self"] = circular
    data = {"a": {"n": 1}, "b": circular}
    assert plain_specs([{"job_type": "t", "data": data}], 1000) is None
    # The same objects, no longer circular: an encoder that kept the markers of the
    # failed batch would take them for a cycle.
    circular.clear()
    assert plain_specs([{"job_type": "t", "data": data}], 1000) == (
        ["t"],
        [b'{"a":{"n":1},"b":{}}'],
    )
