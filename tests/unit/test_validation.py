"""Input checks, without a database."""

from __future__ import annotations

import json
import math
import uuid
from collections import OrderedDict
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sqla_jobqueue.errors import InvalidJobError
from sqla_jobqueue.validation import (
    MAX_JSON_DEPTH,
    check_job_type,
    check_json,
    check_progress,
    check_stage,
    check_text,
    plain_specs,
    storable_text,
)


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
        {"id": uuid.UUID(int=7), "at": [datetime(2026, 1, 2, tzinfo=timezone.utc)]},
        {"amount": Decimal("12.30"), "day": date(2026, 1, 2), "t": time(9, 30)},
    ]
    specs: list[dict[str, Any]] = [{"job_type": "t", "data": data} for data in payloads]
    specs += [{"job_type": "t", "data": None}, {"job_type": "u"}]
    plain = plain_specs(specs, 1000)
    assert plain is not None
    job_types, encoded = plain
    assert job_types == ["t"] * (len(payloads) + 1) + ["u"]
    expected = [check_json(data, "data", 1000, require_object=True) for data in payloads]
    assert encoded == [text.encode() for text in expected] + [b"{}", b"{}"]
    assert [json.loads(text) for text in encoded[:4]] == payloads[:4]


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


def test_common_values_are_stored_as_the_strings_that_rebuild_them() -> None:
    paris = datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=ZoneInfo("Europe/Paris"))
    data = {
        "id": uuid.UUID("0190f2b4-7c1e-7a3b-9a4e-2f6c1d9b8e01"),
        "at": paris,
        "naive": datetime(2026, 1, 2, 3, 4, 5),
        "day": date(2026, 1, 2),
        "time": time(23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
        "amounts": (Decimal("12.30"), Decimal("-0.000001"), Decimal("1E+30")),
    }
    stored = json.loads(check_json(data, "data", 1000, require_object=True))
    assert stored == {
        "id": "0190f2b4-7c1e-7a3b-9a4e-2f6c1d9b8e01",
        "at": "2026-03-29T01:30:00.123456+01:00",
        "naive": "2026-01-02T03:04:05",
        "day": "2026-01-02",
        "time": "23:59:59.999999-05:00",
        "amounts": ["12.30", "-0.000001", "1E+30"],
    }
    assert uuid.UUID(stored["id"]) == data["id"]
    assert datetime.fromisoformat(stored["at"]) == paris  # the same instant; the zone is an offset
    assert datetime.fromisoformat(stored["naive"]) == data["naive"]
    assert date.fromisoformat(stored["day"]) == data["day"]
    assert time.fromisoformat(stored["time"]) == data["time"]
    amounts = [Decimal(text) for text in stored["amounts"]]
    assert amounts == [Decimal("12.30"), Decimal("-0.000001"), Decimal("1E+30")]
    assert [str(a) for a in amounts] == ["12.30", "-0.000001", "1E+30"]  # exponent kept


class Colour:
    pass


def circular() -> dict[str, object]:
    loop: dict[str, object] = {"ok": 1}
    loop["again"] = [loop]
    return {"loop": loop}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"a": {"b": [1, {2, 3}]}}, r"data\['a'\]\['b'\]\[1\] is of type set; .* sorted list"),
        ({"a": frozenset()}, r"data\['a'\] is of type frozenset"),
        ({"blob": b"\x00"}, r"data\['blob'\] is of type bytes; .* base64"),
        ({"blob": [bytearray(b"x")]}, r"data\['blob'\]\[0\] is of type bytearray"),
        ({"c": Colour()}, r"data\['c'\] is of type Colour; it may hold dicts"),
        ({"d": timedelta(1)}, r"data\['d'\] is of type timedelta"),
        ({"x": [0.5, math.nan]}, r"data\['x'\]\[1\] is nan: NaN or an infinity"),
        ({"x": -math.inf}, r"data\['x'\] is -inf: NaN or an infinity"),
        ({"x": Decimal("NaN")}, r"data\['x'\] is NaN: NaN or an infinity"),
        ({"x": Decimal("-Infinity")}, r"data\['x'\] is -Infinity: NaN or an infinity"),
        ({"x": Decimal("sNaN")}, r"data\['x'\] is sNaN: NaN or an infinity"),
        ({"x": {"y": "a\x00"}}, r"data\['x'\]\['y'\] contains a NUL character"),
        ({"x": {"a\x00": 1}}, r"data\['x'\] key 'a\\x00' contains a NUL character"),
        ({"x": {(1, 2): 1}}, r"data\['x'\] has the key \(1, 2\) of type tuple"),
        ({uuid.UUID(int=1): 1}, r"data has the key UUID\(.*\) of type UUID; JSON keys are"),
        (circular(), r"data\['loop'\]\['again'\]\[0\] contains itself \(a circular"),
    ],
)
def test_refusals_name_the_place_and_the_fix(data: object, message: str) -> None:
    with pytest.raises(InvalidJobError, match=message):
        check_json(data, "data", 10_000, require_object=True)
    assert plain_specs([{"job_type": "t", "data": data}], 10_000) is None


def test_a_result_is_checked_by_the_same_rules() -> None:
    assert check_json([uuid.UUID(int=0), Decimal("1.5")], "result", 100, require_object=False) == (
        '["00000000-0000-0000-0000-000000000000","1.5"]'
    )
    with pytest.raises(InvalidJobError, match=r"result must be .* result\[0\] is of type set"):
        check_json([set()], "result", 100, require_object=False)
    with pytest.raises(InvalidJobError, match="result is of type Colour"):
        check_json(Colour(), "result", 100, require_object=False)


def nested(levels: int, *, as_list: bool = False) -> Any:
    """A value of ``levels`` dicts (or lists) within each other: ``{"a": {"a": {}}}`` is 3."""
    value: Any = [] if as_list else {}
    for _ in range(levels - 1):
        value = [value] if as_list else {"a": value}
    return value


LONE = "\ud800"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"s": LONE}, r"data\['s'\] contains a lone surrogate '\\ud800' at index 0"),
        (
            {"s": ["ok", "ab\udfff"]},
            r"data\['s'\]\[1\] contains a lone surrogate '\\udfff' at index 2",
        ),
        ({"x": {LONE: 1}}, r"data\['x'\] key '\\ud800' contains a lone surrogate"),
        ({"pair": "\ud83d\ude00"}, r"data\['pair'\] contains a lone surrogate '\\ud83d'"),
    ],
)
def test_a_lone_surrogate_is_refused_where_it_is(data: object, message: str) -> None:
    with pytest.raises(InvalidJobError, match=message) as refused:
        check_json(data, "data", 10_000, require_object=True)
    str(refused.value).encode("utf-8")  # the message can be logged and stored
    assert plain_specs([{"job_type": "t", "data": data}], 10_000) is None
    with pytest.raises(InvalidJobError, match=r"result.* contains a lone surrogate"):
        check_json([data], "result", 10_000, require_object=False)


def test_a_lone_surrogate_is_refused_near_the_size_limit_too() -> None:
    # Over a quarter of the limit in characters: the size is counted in UTF-8 bytes.
    with pytest.raises(InvalidJobError, match="lone surrogate"):
        check_json({"s": "é" * 100 + LONE}, "data", 300, require_object=True)


@pytest.mark.parametrize(
    ("check", "what"),
    [
        (check_job_type, "job_type"),
        (check_stage, "stage"),
        (lambda value: check_text(value, "unique_key", 255), "unique_key"),
    ],
    ids=["job_type", "stage", "unique_key"],
)
def test_text_columns_refuse_a_lone_surrogate(check: Any, what: str) -> None:
    with pytest.raises(InvalidJobError, match=rf"^{what} contains a lone surrogate '\\ud800' at"):
        check("ab" + LONE)
    assert check("é\U0001f600") == "é\U0001f600"  # a character outside the BMP is fine
    assert plain_specs([{"job_type": "t"}, {"job_type": LONE}], 1000) is None


@pytest.mark.parametrize("as_list", [False, True], ids=["dicts", "lists"])
def test_nesting_is_limited_to_max_json_depth(as_list: bool) -> None:
    deepest = {"d": nested(MAX_JSON_DEPTH - 1, as_list=as_list)}
    text = check_json(deepest, "data", 10_000, require_object=True)
    assert plain_specs([{"job_type": "t", "data": deepest}], 10_000) == (["t"], [text.encode()])
    assert json.loads(text) == deepest
    too_deep = {"d": nested(MAX_JSON_DEPTH, as_list=as_list)}
    step = r"\[0\]" if as_list else r"\['a'\]"
    message = (
        rf"data nests dicts and lists more than {MAX_JSON_DEPTH} levels deep "
        rf"\(at data\['d'\]{step}{step}…\(95 more\)…{step}{step}\); flatten it"
    )
    with pytest.raises(InvalidJobError, match=message):
        check_json(too_deep, "data", 10_000, require_object=True)
    assert plain_specs([{"job_type": "t", "data": too_deep}], 10_000) is None


@pytest.mark.parametrize("levels", [5_000, 100_000])
def test_data_deeper_than_the_interpreter_recursion_is_refused(levels: int) -> None:
    for as_list in (False, True):
        value = nested(levels, as_list=as_list)
        with pytest.raises(InvalidJobError, match=r"^result nests .* more than 100 levels"):
            check_json(value, "result", 10**9, require_object=False)
        with pytest.raises(InvalidJobError, match=r"^data nests .* more than 100 levels"):
            check_json({"x": value}, "data", 10**9, require_object=True)
        assert plain_specs([{"job_type": "t", "data": {"x": value}}], 10**9) is None


def test_depth_is_refused_before_naming_what_lies_below() -> None:
    # A set 500 levels down: the depth is the problem named, not a RecursionError while
    # looking for the set.
    value: Any = {"s": {1}}
    for _ in range(500):
        value = {"a": value}
    with pytest.raises(InvalidJobError, match="more than 100 levels deep"):
        check_json(value, "data", 10**6, require_object=True)


def test_brackets_in_strings_and_wide_values_are_not_depth() -> None:
    data = {
        "text": "[[[{{{" * 100,
        "quoted": '\\"[[[' * 50,
        "rows": [{"id": n, "tags": [[n]]} for n in range(200)],
    }
    text = check_json(data, "data", 100_000, require_object=True)
    assert json.loads(text) == data
    assert plain_specs([{"job_type": "t", "data": data}], 100_000) == (["t"], [text.encode()])


def test_a_circular_reference_is_named_even_when_deep() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(InvalidJobError, match=r"data\['x'\]\[0\] contains itself"):
        check_json({"x": loop}, "data", 1000, require_object=True)


def test_storable_text_escapes_what_a_text_column_cannot_hold() -> None:
    plain = "RuntimeError: é \U0001f600"
    assert storable_text(plain) is plain
    assert storable_text("a\x00b" + LONE + "c") == "a\\0b\\ud800c"
    storable_text("x\udfff").encode("utf-8")
