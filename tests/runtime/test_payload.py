"""runtime/payload.py: every accepted form, every rejected one, with the message a user reads."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from runtime.payload import FeatureSchema, Limits, PayloadError, parse_body

SCHEMA = FeatureSchema.of(["a", "b", "c"])
STRICT = Limits(max_rows=5)
LENIENT = Limits(max_rows=5, allow_missing=True)


def parse(body: str | bytes, content_type: str | None = "application/json", limits=STRICT):
    return parse_body(body, content_type, SCHEMA, limits)


def error(body: str | bytes, content_type: str | None = "application/json", limits=STRICT):
    with pytest.raises(PayloadError) as info:
        parse(body, content_type, limits)
    return info.value


def test_list_rows_keep_feature_order_as_float32() -> None:
    out = parse(json.dumps({"instances": [[1, 2.5, -3], [4, 5, 6]]}))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[1, 2.5, -3], [4, 5, 6]])


def test_object_rows_are_placed_by_name_whatever_the_key_order() -> None:
    out = parse(json.dumps({"instances": [{"c": 3, "a": 1, "b": 2}]}))
    np.testing.assert_array_equal(out, [[1, 2, 3]])


@pytest.mark.parametrize("header", [True, False])
def test_csv_with_and_without_header(header: bool) -> None:
    body = ("c,a,b\n3,1,2\n6,4,5\n" if header else "1,2,3\n4,5,6\n").encode()
    np.testing.assert_array_equal(parse(body, "text/csv; charset=utf-8"), [[1, 2, 3], [4, 5, 6]])


def test_content_type_parameters_and_json_suffix_are_understood() -> None:
    assert parse('{"instances": [[1,2,3]]}', "application/json; charset=utf-8").shape == (1, 3)
    assert parse('{"instances": [[1,2,3]]}', "application/vnd.api+json").shape == (1, 3)
    assert parse('{"instances": [[1,2,3]]}', None).shape == (1, 3)


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ('{"instances": [[1,2,3]', "malformed_json", "not valid JSON"),
        ('{"rows": [[1,2,3]]}', "invalid_body", '"instances"'),
        ("[[1,2,3]]", "invalid_body", '"instances"'),
        ('{"instances": {"a": 1}}', "invalid_body", "array of rows"),
        ('{"instances": [5]}', "invalid_body", "instances[0]"),
        ('{"instances": [[1,2,3], {"a":1,"b":2,"c":3}]}', "invalid_body", "mixes"),
        ('{"instances": []}', "empty_batch", "empty"),
        ('{"instances": [[1,2,3],[1,2]]}', "wrong_feature_count", "instances[1] has 2 values"),
        ('{"instances": [{"a":1,"b":2,"c":3,"z":4}]}', "unknown_feature", "'z'"),
        ('{"instances": [{"a":1,"b":2}]}', "missing_feature", "'c'"),
        ('{"instances": [[1,"x",3]]}', "invalid_value", "feature 'b' is a string 'x'"),
        ('{"instances": [[1,true,3]]}', "invalid_value", "a boolean"),
        ('{"instances": [[1,[2],3]]}', "invalid_value", "an array"),
        ('{"instances": [[1,null,3]]}', "invalid_value", "null"),
        ('{"instances": [[1,NaN,3]]}', "invalid_value", "NaN"),
        ('{"instances": [[1,Infinity,3]]}', "invalid_value", "Infinity"),
        ('{"instances": [{"a":1,"b":-Infinity,"c":3}]}', "invalid_value", "-Infinity"),
        ('{"instances": [[1,1e300,3]]}', "invalid_value", "float32"),
    ],
)
def test_bad_json_is_rejected_with_a_precise_message(body: str, code: str, fragment: str) -> None:
    exc = error(body)
    assert (exc.status, exc.code) == (400, code)
    assert fragment in exc.message


def test_wrong_feature_count_names_expected_and_received() -> None:
    exc = error('{"instances": [[1,2]]}')
    assert "2 values" in exc.message
    assert "expects 3 features" in exc.message


def test_too_many_rows_points_to_the_jobs_api() -> None:
    exc = error(json.dumps({"instances": [[1, 2, 3]] * 6}))
    assert exc.code == "too_many_rows"
    assert "5 rows" in exc.message
    assert "/jobs" in exc.message


def test_body_over_the_limit_is_413() -> None:
    exc = error(b"x" * 101, limits=Limits(max_rows=5, max_body_bytes=100))
    assert (exc.status, exc.code) == (413, "payload_too_large")


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "image/png"])
def test_unsupported_content_type_is_415(ctype: str) -> None:
    exc = error('{"instances": [[1,2,3]]}', ctype)
    assert (exc.status, exc.code) == (415, "unsupported_media_type")
    assert ctype in exc.message


def test_missing_values_pass_as_nan_when_allowed() -> None:
    out = parse('{"instances": [[1,null,NaN], [Infinity,2,3]]}', limits=LENIENT)
    assert math.isnan(out[0, 1]) and math.isnan(out[0, 2]) and math.isnan(out[1, 0])
    assert out[1, 1] == 2
    partial = parse('{"instances": [{"b": 2}]}', limits=LENIENT)
    assert np.isnan(partial[0, [0, 2]]).all() and partial[0, 1] == 2
    csv_out = parse(b"a,c\n1,\n", "text/csv", LENIENT)
    assert csv_out[0, 0] == 1 and np.isnan(csv_out[0, 1:]).all()


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ("", "empty_batch", "empty"),
        ("a,b,zz\n1,2,3\n", "unknown_feature", "'zz'"),
        ("a,a,b\n1,2,3\n", "invalid_csv", "repeats"),
        ("a,b\n1,2\n", "missing_feature", "'c'"),
        ("1,2,3\n4,5\n", "wrong_feature_count", "line 2 has 2 values"),
        ("a,b,c\n1,2,3\n1,2\n", "wrong_feature_count", "line 3"),
        ("1,2,3\n4,abc,6\n", "invalid_value", "line 2 feature 'b' is 'abc'"),
        ("1,,3\n", "invalid_value", "empty"),
        ("1,nan,3\n", "invalid_value", "NaN"),
        ("1,inf,3\n", "invalid_value", "Infinity"),
    ],
)
def test_bad_csv_is_rejected_with_a_precise_message(body: str, code: str, fragment: str) -> None:
    exc = error(body.encode(), "text/csv")
    assert (exc.status, exc.code) == (400, code)
    assert fragment in exc.message


def test_csv_that_is_not_utf8_is_rejected() -> None:
    exc = error(b"\xff\xfe1,2,3", "text/csv")
    assert exc.code == "invalid_encoding"


def test_csv_row_limit_applies_after_the_header() -> None:
    assert parse(b"a,b,c\n" + b"1,2,3\n" * 5, "text/csv").shape == (5, 3)
    assert error(b"1,2,3\n" * 6, "text/csv").code == "too_many_rows"


FLOAT32_MAX = float(np.finfo(np.float32).max)


@pytest.mark.parametrize(
    "body",
    [
        '{"instances": [[1, 2.5, -3e-5], [4e10, -0.0, 6]]}',  # numbers only
        '{"instances": [[1, 2.5, -3e-5], [4e10, -0.0, 6]], "note": "x"}',  # another key
        '{\n  "instances": [\n    [1, 2.5, -3e-5],\n    [4e10, -0.0, 6]\n  ]\n}',  # pretty
        '{"instances": [[1, 2.5, -3e-5], [4e10, -0.0, 6.0]]}',  # ints and floats alike
    ],
)
def test_rows_of_numbers_are_float32_in_every_layout(body: str) -> None:
    expected = np.array([[1, 2.5, -3e-5], [4e10, -0.0, 6]], dtype=np.float32)
    np.testing.assert_array_equal(parse(body), expected)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("1e400", "Infinity"),  # parses as an infinite float
        ("-1e400", "-Infinity"),
        ("3.4028236e38", "outside float32 range"),  # just above float32's largest
        ("1" + "0" * 400, "outside float32 range"),  # an integer beyond any float
    ],
)
def test_numbers_beyond_float32_are_rejected_where_they_are(value: str, fragment: str) -> None:
    exc = error('{"instances": [[1, 2, 3], [4, ' + value + ", 6]]}")
    assert (exc.status, exc.code) == (400, "invalid_value")
    assert fragment in exc.message
    assert "'b'" in exc.message  # the feature: second column


def test_float32_extremes_are_accepted() -> None:
    out = parse(json.dumps({"instances": [[FLOAT32_MAX, -FLOAT32_MAX, 1e-45]]}))
    assert out[0, 0] == np.float32(FLOAT32_MAX) and out[0, 1] == -np.float32(FLOAT32_MAX)


def test_booleans_and_strings_among_numbers_are_still_rejected() -> None:
    assert "a boolean" in error('{"instances": [[1, 2, 3], [4, false, 6]]}').message
    assert "a string" in error('{"instances": [[1, 2, 3], [4, "5", 6]]}').message
    assert "null" in error('{"instances": [[1, 2, 3], [4, 5, null]]}').message


def test_nested_arrays_are_not_values() -> None:
    assert error('{"instances": [[1, 2, [3]]]}').message.endswith("not a number")
    assert error('{"instances": [[[1, 2, 3]]]}').code == "wrong_feature_count"
