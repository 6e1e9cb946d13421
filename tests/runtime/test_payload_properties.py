"""Properties of runtime/payload.py (hypothesis).

- Valid rows, in any accepted form (JSON arrays in feature order, JSON objects by name in any key
  order, CSV with or without a header in any column order) and any accepted content type, give
  the same (rows, features) float32 matrix: the values the caller sent, in feature order.
- ``allow_missing``: null, absent names and empty CSV cells are NaN exactly where they were left
  out; without it the same bodies are refused.
- The row limit: 1 to ``max_rows`` rows are scored, more (or none) are refused with a 4xx.
- Anything else (any bytes, any JSON document, valid bodies with one value broken) raises
  PayloadError with a 4xx status, a code and a message: never another exception (a 500).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.payload import FeatureSchema, Limits, PayloadError, parse_body

NAMES = ("age", "income", "score", "visits")
SCHEMA = FeatureSchema.of(NAMES)
MAX_ROWS = 6
STRICT = Limits(max_rows=MAX_ROWS)
LENIENT = Limits(max_rows=MAX_ROWS, allow_missing=True)
FLOAT32_MAX = float(np.finfo(np.float32).max)

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

JSON_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.mlserve+json",
    ]
)
CSV_TYPES = st.sampled_from(["text/csv", "text/csv; charset=utf-8", "application/csv", "TEXT/CSV"])

# Values exactly representable as float32, so the expected matrix is the values themselves.
values = st.one_of(
    st.floats(-FLOAT32_MAX, FLOAT32_MAX, allow_nan=False, width=32),
    st.integers(-(2**24), 2**24),
)
rows_strategy = st.lists(
    st.lists(values, min_size=len(NAMES), max_size=len(NAMES)), min_size=1, max_size=MAX_ROWS
)


def expected(rows: list[list[Any]]) -> np.ndarray:
    """The float32 matrix of ``rows`` (None = missing = NaN), computed value by value."""
    return np.array(
        [[np.float32(math.nan if v is None else v) for v in row] for row in rows], dtype=np.float32
    ).reshape(len(rows), len(NAMES))


def csv_text(header: list[str] | None, rows: list[list[Any]]) -> str:
    cell = lambda v: "" if v is None else repr(v)  # noqa: E731 - a one-line formatter
    lines = [",".join(header)] if header is not None else []
    lines += [",".join(cell(v) for v in row) for row in rows]
    return "\r\n".join(lines) + "\n"


def assert_rejected(exc: PayloadError) -> None:
    assert 400 <= exc.status < 500
    assert exc.code and isinstance(exc.code, str)
    assert exc.message and isinstance(exc.message, str)


def parse_or_reject(body: Any, content_type: str | None, limits: Limits) -> np.ndarray | None:
    """The matrix, or None after checking the refusal is a PayloadError with a 4xx."""
    try:
        matrix = parse_body(body, content_type, SCHEMA, limits)
    except PayloadError as exc:
        assert_rejected(exc)
        return None
    assert matrix.dtype == np.float32
    assert matrix.ndim == 2 and matrix.shape[1] == len(NAMES)
    assert 1 <= matrix.shape[0] <= limits.max_rows
    if not limits.allow_missing:
        assert np.isfinite(matrix).all()
    return matrix


# --- valid bodies round-trip ---


@PROPERTY
@given(rows=rows_strategy, content_type=JSON_TYPES, as_bytes=st.booleans())
def test_json_arrays_give_the_values_in_feature_order(
    rows: list[list[Any]], content_type: str, as_bytes: bool
) -> None:
    text = json.dumps({"instances": rows})
    body = text.encode() if as_bytes else text
    matrix = parse_body(body, content_type, SCHEMA, STRICT)
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, expected(rows))


@PROPERTY
@given(rows=rows_strategy, order=st.permutations(NAMES), content_type=JSON_TYPES)
def test_json_objects_in_any_key_order_give_the_same_matrix(
    rows: list[list[Any]], order: list[str], content_type: str
) -> None:
    objects = [{name: row[NAMES.index(name)] for name in order} for row in rows]
    matrix = parse_body(json.dumps({"instances": objects}), content_type, SCHEMA, STRICT)
    np.testing.assert_array_equal(matrix, expected(rows))


@PROPERTY
@given(
    rows=rows_strategy,
    order=st.one_of(st.none(), st.permutations(NAMES)),
    content_type=CSV_TYPES,
    as_bytes=st.booleans(),
)
def test_csv_with_or_without_a_header_in_any_column_order(
    rows: list[list[Any]], order: list[str] | None, content_type: str, as_bytes: bool
) -> None:
    if order is None:
        text = csv_text(None, rows)
    else:
        text = csv_text(list(order), [[row[NAMES.index(n)] for n in order] for row in rows])
    body = text.encode() if as_bytes else text
    matrix = parse_body(body, content_type, SCHEMA, STRICT)
    np.testing.assert_array_equal(matrix, expected(rows))


@PROPERTY
@given(rows=rows_strategy)
def test_a_json_object_body_without_content_type_is_json(rows: list[list[Any]]) -> None:
    matrix = parse_body(json.dumps({"instances": rows}), None, SCHEMA, STRICT)
    np.testing.assert_array_equal(matrix, expected(rows))


# --- missing values ---

rows_with_gaps = st.lists(
    st.lists(st.one_of(st.none(), values), min_size=len(NAMES), max_size=len(NAMES)),
    min_size=1,
    max_size=MAX_ROWS,
).filter(lambda rows: any(v is None for row in rows for v in row))


@PROPERTY
@given(rows=rows_with_gaps, form=st.sampled_from(["null", "absent", "csv"]))
def test_missing_values_are_nan_where_left_out_only_with_allow_missing(
    rows: list[list[Any]], form: str
) -> None:
    if form == "null":
        body, content_type = json.dumps({"instances": rows}), "application/json"
    elif form == "absent":
        objects = [{n: v for n, v in zip(NAMES, row, strict=True) if v is not None} for row in rows]
        body, content_type = json.dumps({"instances": objects}), "application/json"
    else:
        body, content_type = csv_text(list(NAMES), rows), "text/csv"
    matrix = parse_body(body, content_type, SCHEMA, LENIENT)
    np.testing.assert_array_equal(matrix, expected(rows))  # NaN == NaN position by position
    with pytest.raises(PayloadError) as info:
        parse_body(body, content_type, SCHEMA, STRICT)
    assert_rejected(info.value)
    assert info.value.code in {"invalid_value", "missing_feature"}
    assert "allowMissing" in info.value.message


@PROPERTY
@given(
    rows=rows_strategy,
    bad=st.sampled_from([math.nan, math.inf, -math.inf]),
    where=st.tuples(st.integers(0, MAX_ROWS - 1), st.integers(0, len(NAMES) - 1)),
    csv=st.booleans(),
)
def test_non_finite_values_are_refused_unless_missing_values_are_allowed(
    rows: list[list[Any]], bad: float, where: tuple[int, int], csv: bool
) -> None:
    i, j = where[0] % len(rows), where[1]
    rows[i][j] = bad
    if csv:
        body, content_type = csv_text(None, rows), "text/csv"
    else:  # Python's json writes NaN/Infinity literals; the handler must still refuse them
        body, content_type = json.dumps({"instances": rows}), "application/json"
    with pytest.raises(PayloadError) as info:
        parse_body(body, content_type, SCHEMA, STRICT)
    assert_rejected(info.value)
    assert info.value.code == "invalid_value"
    assert repr(NAMES[j]) in info.value.message
    matrix = parse_body(body, content_type, SCHEMA, LENIENT)
    assert math.isnan(matrix[i, j])


# --- limits ---


@PROPERTY
@given(
    count=st.integers(0, 3 * MAX_ROWS),
    max_rows=st.integers(1, 2 * MAX_ROWS),
    form=st.sampled_from(["arrays", "objects", "csv", "csv-header"]),
)
def test_row_count_limits(count: int, max_rows: int, form: str) -> None:
    rows = [[float(i), 1.0, 2.0, 3.0] for i in range(count)]
    if form == "arrays":
        body, content_type = json.dumps({"instances": rows}), "application/json"
    elif form == "objects":
        objects = [dict(zip(NAMES, row, strict=True)) for row in rows]
        body, content_type = json.dumps({"instances": objects}), "application/json"
    else:
        header = list(NAMES) if form == "csv-header" else None
        body, content_type = csv_text(header, rows), "text/csv"
    limits = Limits(max_rows=max_rows)
    if 1 <= count <= max_rows:
        assert parse_body(body, content_type, SCHEMA, limits).shape == (count, len(NAMES))
        return
    with pytest.raises(PayloadError) as info:
        parse_body(body, content_type, SCHEMA, limits)
    assert_rejected(info.value)
    assert info.value.code == ("empty_batch" if count == 0 else "too_many_rows")


@PROPERTY
@given(size=st.integers(1, 400), limit=st.integers(1, 400))
def test_body_size_limit(size: int, limit: int) -> None:
    body = ('{"instances": [[1,2,3,4]]}' + " " * size)[:size]
    try:
        parse_body(body, "application/json", SCHEMA, Limits(max_rows=1, max_body_bytes=limit))
    except PayloadError as exc:
        assert_rejected(exc)
        assert (exc.code == "payload_too_large") == (size > limit)
        if size > limit:
            assert exc.status == 413
    else:
        assert size <= limit


# --- anything else is a PayloadError ---

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(2**1000, 2**1100).map(lambda v: v * (-1) ** (v % 2)),  # beyond any float
        st.floats(),
        st.text(max_size=8),
        st.sampled_from(NAMES),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(st.one_of(st.sampled_from(NAMES), st.text(max_size=4)), inner, max_size=5),
    ),
    max_leaves=30,
)
any_content_type = st.one_of(st.none(), JSON_TYPES, CSV_TYPES, st.text(max_size=20))
limits_strategy = st.sampled_from([STRICT, LENIENT])


any_number = st.one_of(
    st.integers(-(2**200), 2**200),
    st.integers(2**1030, 2**1100).map(lambda v: v * (-1) ** (v % 2)),  # beyond any float
    st.floats(),
)


def acceptable(value: float, allow_missing: bool) -> bool:
    """A number the API scores: finite within float32 range; NaN/infinity only as a missing
    value; an integer beyond any float never."""
    if isinstance(value, int) and value.bit_length() > 1024:
        return False
    number = float(value)
    if not math.isfinite(number):
        return allow_missing
    return abs(number) <= FLOAT32_MAX


@PROPERTY
@given(
    rows=st.lists(
        st.lists(any_number, min_size=len(NAMES), max_size=len(NAMES)), min_size=1, max_size=3
    ),
    as_objects=st.booleans(),
    limits=limits_strategy,
)
def test_any_numbers_are_scored_exactly_when_acceptable(
    rows: list[list[Any]], as_objects: bool, limits: Limits
) -> None:
    instances: Any = [dict(zip(NAMES, row, strict=True)) for row in rows] if as_objects else rows
    matrix = parse_or_reject(json.dumps({"instances": instances}), "application/json", limits)
    ok = all(acceptable(v, limits.allow_missing) for row in rows for v in row)
    assert (matrix is not None) == ok


def number_text(value: int | float, style: int) -> str:
    """One JSON number as clients write it: repr, exponent forms, or an integer's digits."""
    if isinstance(value, int):
        return str(value)
    return (repr(value), f"{value:.17e}", f"{value:E}", f"{value:.4f}")[style]


@PROPERTY
@given(
    rows=st.lists(
        st.lists(
            st.one_of(
                st.integers(-(2**200), 2**200),  # beyond 64 bits too
                st.floats(allow_nan=False, allow_infinity=False),
            ),
            min_size=len(NAMES),
            max_size=len(NAMES),
        ),
        min_size=1,
        max_size=MAX_ROWS,
    ),
    style=st.integers(0, 3),
    spaces=st.booleans(),
)
def test_a_body_of_numbers_gives_each_number_as_the_standard_library_reads_it(
    rows: list[list[Any]], style: int, spaces: bool
) -> None:
    """The fast route (orjson) reads every number as ``json`` does: the float32 of its float64."""
    sep = ", " if spaces else ","
    tokens = [[number_text(v, style) for v in row] for row in rows]
    text = '{"instances": [' + sep.join("[" + sep.join(row) + "]" for row in tokens) + "]}"
    read = [[float(json.loads(token)) for token in row] for row in tokens]
    matrix = parse_or_reject(text, "application/json", STRICT)
    assert (matrix is not None) == all(abs(v) <= FLOAT32_MAX for row in read for v in row)
    if matrix is not None:
        want = np.array(read, dtype=np.float64).astype(np.float32)
        np.testing.assert_array_equal(matrix, want)


@PROPERTY
@given(document=json_values, limits=limits_strategy)
def test_any_json_document_is_parsed_or_refused_with_a_4xx(document: Any, limits: Limits) -> None:
    parse_or_reject(json.dumps(document), "application/json", limits)


@PROPERTY
@given(
    instances=st.lists(
        st.one_of(
            st.lists(json_values, min_size=len(NAMES), max_size=len(NAMES)),
            st.dictionaries(st.sampled_from(NAMES), json_values, max_size=len(NAMES)),
            json_values,
        ),
        max_size=MAX_ROWS + 1,
    ),
    limits=limits_strategy,
)
def test_any_instances_are_parsed_or_refused_with_a_4xx(instances: Any, limits: Limits) -> None:
    parse_or_reject(json.dumps({"instances": instances}), "application/json", limits)


@PROPERTY
@given(
    body=st.one_of(st.binary(max_size=200), st.text(max_size=200)), content_type=any_content_type
)
def test_any_body_and_content_type_is_parsed_or_refused_with_a_4xx(
    body: bytes | str, content_type: str | None
) -> None:
    for limits in (STRICT, LENIENT):
        parse_or_reject(body, content_type, limits)


csv_cells = st.one_of(
    values.map(repr),
    st.sampled_from(["", " ", "nan", "inf", "-Infinity", "1e999", "1_000", "0x10", '"', '""']),
    st.sampled_from(NAMES),
    st.text(max_size=6),
)


@PROPERTY
@given(
    lines=st.lists(st.lists(csv_cells, min_size=1, max_size=6), max_size=MAX_ROWS + 2),
    separator=st.sampled_from(["\n", "\r\n", "\r"]),
    limits=limits_strategy,
)
def test_any_csv_is_parsed_or_refused_with_a_4xx(
    lines: list[list[str]], separator: str, limits: Limits
) -> None:
    text = separator.join(",".join(cells) for cells in lines)
    parse_or_reject(text, "text/csv", limits)


# --- regressions found by the properties ---


@pytest.mark.parametrize(
    "body",
    [
        '{"instances": [[1' + "0" * 400 + ", 1, 2, 3]]}",
        '{"instances": [{"age": 1' + "0" * 400 + ', "income": 1, "score": 2, "visits": 3}]}',
    ],
)
def test_an_integer_beyond_any_float_is_a_400(body: str) -> None:
    """Was an OverflowError (a 500): JSON integers have no size limit."""
    with pytest.raises(PayloadError) as info:
        parse_body(body, "application/json", SCHEMA, STRICT)
    assert info.value.status == 400
    assert info.value.code == "invalid_value"
    assert "'age'" in info.value.message


def test_a_csv_cell_beyond_the_csv_module_field_limit_is_a_400() -> None:
    """Was csv.Error "field larger than field limit" (a 500)."""
    body = "age,income,score,visits\n" + "1" * 200_000 + ",1,2,3\n"
    with pytest.raises(PayloadError) as info:
        parse_body(body, "text/csv", SCHEMA, STRICT)
    assert info.value.status == 400


def test_a_csv_line_of_empty_cells_is_a_row_of_missing_values_not_skipped() -> None:
    """Was skipped like a blank line: 3 rows in, 2 predictions out, misaligned with the input."""
    body = "age,income,score,visits\n1,2,3,4\n,,,\n\n5,6,7,8\n"
    matrix = parse_body(body, "text/csv", SCHEMA, LENIENT)
    np.testing.assert_array_equal(matrix, expected([[1, 2, 3, 4], [None] * 4, [5, 6, 7, 8]]))
    with pytest.raises(PayloadError) as info:
        parse_body(body, "text/csv", SCHEMA, STRICT)
    assert info.value.code == "invalid_value"
    assert "line 3" in info.value.message
