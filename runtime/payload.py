"""Parse and validate /predict request bodies into a float32 matrix in the model's feature order.

Accepted forms (DESIGN.md §4):
- JSON ``{"instances": [[f1, ..., fn], ...]}``: values in the model's feature order;
- JSON ``{"instances": [{"<feature name>": value, ...}, ...]}``: any order, by name;
- ``text/csv``: rows of values, with an optional header row of feature names.

A categorical feature whose categories the model records takes a category (a string, or a
number for number categories) in any of these forms; it is recoded to the code XGBoost splits
on (runtime/categories.py). An unknown category is a 400 naming the feature and the value, or a
missing value with ``Limits.unknown_category_missing`` (mlserve:unknownCategory missing).

Every problem raises :class:`PayloadError` carrying an HTTP status, a stable error code and a
message that says exactly what is wrong and where. Nothing here touches AWS.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from runtime.categories import Categories, CategoryError
from runtime.contract import MAX_BODY_BYTES

if TYPE_CHECKING:
    from runtime.model import ModelInfo

JSON_TYPES = ("application/json",)
CSV_TYPES = ("text/csv", "application/csv")
_NUMBER_TYPES = frozenset({int, float})
_NUMBER_OR_NULL = frozenset({int, float, type(None)})
_MISSING_HINT = "set mlserve:allowMissing to true to pass missing values"
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_MAX_FLOAT_INT = int(np.finfo(np.float64).max)  # larger ints cannot even become a float


class PayloadError(Exception):
    """The caller's mistake: answered with a 4xx and a JSON error body."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class FeatureSchema:
    names: tuple[str, ...]
    index: Mapping[str, int]
    # column -> the categories of a categorical feature the model records them for
    categories: Mapping[int, Categories] = field(default_factory=dict)

    @classmethod
    def of(
        cls, names: Sequence[str], categories: Mapping[str, Categories] | None = None
    ) -> FeatureSchema:
        index = {n: i for i, n in enumerate(names)}
        by_column = {index[name]: c for name, c in (categories or {}).items()}
        return cls(tuple(names), index, by_column)

    @classmethod
    def of_model(cls, info: ModelInfo) -> FeatureSchema:
        return cls.of(info.feature_names, info.categories)

    @property
    def count(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Limits:
    max_rows: int
    allow_missing: bool = False
    max_body_bytes: int = MAX_BODY_BYTES
    unknown_category_missing: bool = False  # mlserve:unknownCategory missing


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_body(
    body: str | bytes | None, content_type: str | None, schema: FeatureSchema, limits: Limits
) -> np.ndarray:
    """Return a (rows, features) float32 matrix or raise :class:`PayloadError`."""
    raw = body if body is not None else ""
    # An ASCII str (every JSON body of numbers) is as many bytes as characters: no copy.
    size = len(raw) if not isinstance(raw, str) or raw.isascii() else len(raw.encode())
    if size > limits.max_body_bytes:
        raise PayloadError(
            "payload_too_large",
            f"request body is {size} bytes; the limit is {limits.max_body_bytes} bytes "
            "(Lambda's 6 MB): send larger inputs with POST /jobs and an upload (or an input_uri)",
            413,
        )
    kind = media_type(content_type)
    if not kind:  # no Content-Type: accept an obvious JSON object, nothing else
        kind = "application/json" if _text(raw).lstrip().startswith("{") else ""
    if kind in JSON_TYPES or kind.endswith("+json"):
        return parse_json(_text(raw), schema, limits)
    if kind in CSV_TYPES:
        return parse_csv(_text(raw), schema, limits)
    raise PayloadError(
        "unsupported_media_type",
        f"unsupported Content-Type {content_type or '(none)'!r}: send application/json or text/csv",
        415,
    )


def _text(raw: str | bytes) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PayloadError("invalid_encoding", f"request body is not UTF-8: {exc}") from exc


# --- JSON -------------------------------------------------------------------------------------


def parse_json(text: str, schema: FeatureSchema, limits: Limits) -> np.ndarray:
    if not schema.categories and _only_numbers(text):
        matrix = _numeric_matrix(text, schema.count, limits)
        if matrix is not None:
            return matrix
    try:
        doc = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, and RecursionError-free for valid depth
        raise PayloadError("malformed_json", f"request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise PayloadError("malformed_json", "request body is nested too deeply") from exc
    if not isinstance(doc, dict) or "instances" not in doc:
        raise PayloadError(
            "invalid_body",
            'expected a JSON object with an "instances" array, e.g. {"instances": [[...]]}',
        )
    instances = doc["instances"]
    if not isinstance(instances, list):
        raise PayloadError("invalid_body", '"instances" must be an array of rows')
    _check_row_count(len(instances), limits)
    if all(type(row) is list for row in instances):
        return _from_lists(instances, schema, limits)
    if all(type(row) is dict for row in instances):
        return _from_objects(instances, schema, limits)
    bad = next((i for i, row in enumerate(instances) if type(row) not in (list, dict)), None)
    if bad is not None:
        raise PayloadError(
            "invalid_body",
            f"instances[{bad}] must be an array of feature values or an object of "
            f"feature name -> value, got {_json_type(instances[bad])}",
        )
    raise PayloadError(
        "invalid_body", "instances mixes arrays and objects: use one form for every row"
    )


def _only_numbers(text: str) -> bool:
    """True if the document's only string is its one key and it holds no JSON literal.

    A string takes two '"' characters (an escaped quote is still one), so two of them mean the
    document's one key (``"instances"``, checked after parsing) is its only string, and hence
    it holds no object but the top-level one. Every literal has a character that no number and
    not "instances" has: tr(u)e, fa(l)se, n(u)ll, (N)aN, (I)nfinity. What is left are numbers
    and arrays. Scanning the text is ~10x faster than checking the type of every parsed value.
    """
    return text.count('"') == 2 and not ("u" in text or "l" in text or "N" in text or "I" in text)


def _numeric_matrix(text: str, n: int, limits: Limits) -> np.ndarray | None:
    """The fast route for a body of numbers only, or None: the general route then parses it
    again with the standard library, decides and words the error.

    orjson parses such a body ~10x faster than ``json`` (about 90 us against 1 ms for 100 rows
    of 30 features). It accepts exactly what the general route accepts for it: an object whose
    "instances" holds 1 to max_rows rows of n values, each finite and within float32 range (a
    NaN compares false, so it fails the check). Where orjson differs from ``json`` (it refuses
    numbers beyond float64, it reads integers beyond 64 bits as floats) the value is out of
    range, or becomes the same float64 ``json``'s integer becomes, so the answer is the same.
    """
    try:
        doc = orjson.loads(text)
    except ValueError:  # orjson.JSONDecodeError: json decides, and words the error
        return None
    instances = doc.get("instances") if type(doc) is dict else None
    if type(instances) is not list or not 0 < len(instances) <= limits.max_rows:
        return None
    try:
        matrix = np.array(instances, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):  # ragged rows, an int beyond float64
        return None
    if matrix.ndim != 2 or matrix.shape[1] != n or not np.abs(matrix).max() <= _FLOAT32_MAX:
        return None
    return matrix.astype(np.float32)


def _check_row_count(rows: int, limits: Limits) -> None:
    if rows == 0:
        raise PayloadError("empty_batch", "no rows to score: instances is empty")
    if rows > limits.max_rows:
        raise PayloadError(
            "too_many_rows",
            f"{rows} rows is more than the {limits.max_rows} rows accepted inline; "
            'use POST /jobs with {"upload": {"format": ...}} (or an input_uri) for larger batches',
        )


def _from_lists(rows: list[list[Any]], schema: FeatureSchema, limits: Limits) -> np.ndarray:
    n = schema.count
    for i, row in enumerate(rows):
        if len(row) != n:
            raise PayloadError(
                "wrong_feature_count",
                f"instances[{i}] has {len(row)} values; the model expects {n} features",
            )
    if schema.categories:
        codes = _codes(((f"instances[{i}]", row) for i, row in enumerate(rows)), schema, limits)
        numeric = [[0 if j in schema.categories else v for j, v in enumerate(r)] for r in rows]
        return _with_codes(_from_lists(numeric, _numeric(schema), limits), codes)
    allowed = _NUMBER_OR_NULL if limits.allow_missing else _NUMBER_TYPES
    if not set(map(type, itertools.chain.from_iterable(rows))) <= allowed:
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                _check_value(value, i, schema.names[j], limits)
    try:
        matrix = np.array(rows, dtype=np.float64)
    except OverflowError:  # a JSON integer beyond any float: _check_value names it
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                _check_value(value, i, schema.names[j], limits)
        raise
    return _finish(matrix, schema, limits)


def _from_objects(rows: list[dict[str, Any]], schema: FeatureSchema, limits: Limits) -> np.ndarray:
    n = schema.count
    matrix = np.full((len(rows), n), np.nan, dtype=np.float64)
    index = schema.index
    for i, row in enumerate(rows):
        unknown = [k for k in row if k not in index]
        if unknown:
            raise PayloadError(
                "unknown_feature",
                f"instances[{i}] has unknown feature {_names(unknown)}; the model's features "
                f"are {_names(schema.names[:5])}... ({n} in all, see GET /health)",
            )
        if len(row) != n and not limits.allow_missing:
            missing = [name for name in schema.names if name not in row]
            raise PayloadError(
                "missing_feature",
                f"instances[{i}] is missing feature {_names(missing)} ({len(row)} of {n} "
                f"given); {_MISSING_HINT}",
            )
        for name, value in row.items():
            column = index[name]
            if column in schema.categories:
                continue
            _check_value(value, i, name, limits)
            if value is not None:
                matrix[i, column] = value
    if not schema.categories:
        return _finish(matrix, schema, limits)
    given = (
        (f"instances[{i}]", [row.get(name) for name in schema.names]) for i, row in enumerate(rows)
    )
    codes = _codes(given, schema, limits)
    for column in schema.categories:
        matrix[:, column] = 0.0
    return _with_codes(_finish(matrix, schema, limits), codes)


def _numeric(schema: FeatureSchema) -> FeatureSchema:
    """The schema without its categories: what the numerical columns are checked with."""
    return FeatureSchema(schema.names, schema.index)


def _codes(
    rows: Iterator[tuple[str, Sequence[Any]]], schema: FeatureSchema, limits: Limits
) -> dict[int, np.ndarray]:
    """Column -> the codes of that categorical feature's values (a row's missing feature or
    null is NaN where allowed). ``rows`` gives each row's label for messages and its values in
    the model's feature order."""
    codes: dict[int, list[float]] = {column: [] for column in schema.categories}
    for where, values in rows:
        for column, categories in schema.categories.items():
            value = values[column]
            if value is None:
                if not limits.allow_missing:
                    raise PayloadError(
                        "invalid_value",
                        f"{where} feature {schema.names[column]!r} is null or missing; "
                        f"{_MISSING_HINT}",
                    )
                codes[column].append(math.nan)
                continue
            try:
                codes[column].append(
                    categories.code(value, unknown_missing=limits.unknown_category_missing)
                )
            except CategoryError as exc:
                raise PayloadError(
                    exc.code, f"{where} feature {schema.names[column]!r} {exc.message}"
                ) from None
    return {column: np.array(values, dtype=np.float32) for column, values in codes.items()}


def _with_codes(matrix: np.ndarray, codes: Mapping[int, np.ndarray]) -> np.ndarray:
    for column, values in codes.items():
        matrix[:, column] = values
    return matrix


def _check_value(value: Any, row: int, feature: str, limits: Limits) -> None:
    kind = type(value)
    if kind in _NUMBER_TYPES:
        if kind is int and abs(value) > _MAX_FLOAT_INT:  # JSON integers have no size limit
            raise PayloadError(
                "invalid_value",
                f"instances[{row}] feature {feature!r} is {_short(value)}, outside float32 range",
            )
        return
    if value is None:
        if limits.allow_missing:
            return
        raise PayloadError(
            "invalid_value", f"instances[{row}] feature {feature!r} is null; {_MISSING_HINT}"
        )
    raise PayloadError(
        "invalid_value",
        f"instances[{row}] feature {feature!r} is {_json_type(value)} {_short(value)}, "
        "not a number",
    )


def _finish(matrix: np.ndarray, schema: FeatureSchema, limits: Limits) -> np.ndarray:
    finite = np.isfinite(matrix)
    if not finite.all():
        if not limits.allow_missing:
            i, j = (int(v) for v in np.argwhere(~finite)[0])
            raise PayloadError(
                "invalid_value",
                f"row {i} feature {schema.names[j]!r} is {_float_name(matrix[i, j])}, which is "
                f"not a finite number; {_MISSING_HINT}",
            )
        matrix[~finite] = np.nan
    too_big = np.abs(np.where(finite, matrix, 0.0)) > np.finfo(np.float32).max
    if too_big.any():
        i, j = (int(v) for v in np.argwhere(too_big)[0])
        raise PayloadError(
            "invalid_value",
            f"row {i} feature {schema.names[j]!r} is {matrix[i, j]:g}, outside float32 range",
        )
    return matrix.astype(np.float32)


# --- CSV --------------------------------------------------------------------------------------


def parse_csv(text: str, schema: FeatureSchema, limits: Limits) -> np.ndarray:
    try:
        lines = [
            row
            for row in csv.reader(io.StringIO(text, newline=""))
            # a blank line is no row; a line of empty cells (",,,") is a row of missing values
            if len(row) > 1 or (row and row[0].strip())
        ]
    except csv.Error as exc:  # e.g. a field over the csv module's limit (128 KiB)
        raise PayloadError("invalid_csv", f"the CSV body cannot be read: {exc}") from None
    if not lines:
        raise PayloadError("empty_batch", "no rows to score: the CSV body is empty")
    columns: list[int] | None = None
    first = lines[0]
    if _is_header(first, schema):
        columns = _header_columns(first, schema, limits)
        lines = lines[1:]
    _check_row_count(len(lines), limits)
    n = schema.count
    width = len(columns) if columns is not None else n
    matrix = np.full((len(lines), n), np.nan, dtype=np.float64)
    for i, row in enumerate(lines):
        line_no = i + (2 if columns is not None else 1)
        if len(row) != width:
            raise PayloadError(
                "wrong_feature_count",
                f"CSV line {line_no} has {len(row)} values; expected {width}"
                + ("" if columns is not None else f" (the model expects {n} features)"),
            )
        for j, cell in enumerate(row):
            target = columns[j] if columns is not None else j
            if target not in schema.categories:
                matrix[i, target] = _csv_value(cell, line_no, schema.names[target], limits)
    if not schema.categories:
        return _finish(matrix, schema, limits)
    codes = _codes(_csv_category_cells(lines, columns, schema), schema, limits)
    for column in schema.categories:
        matrix[:, column] = 0.0
    return _with_codes(_finish(matrix, schema, limits), codes)


def _csv_category_cells(
    lines: list[list[str]], columns: list[int] | None, schema: FeatureSchema
) -> Iterator[tuple[str, list[Any]]]:
    """Each CSV row's values in the model's feature order (an empty cell or an absent column:
    None, a missing value), for :func:`_codes`."""
    offset = 2 if columns is not None else 1
    for i, row in enumerate(lines):
        values: list[Any] = [None] * schema.count
        for j, cell in enumerate(row):
            target = columns[j] if columns is not None else j
            values[target] = cell if cell.strip() else None
        yield f"CSV line {i + offset}", values


def _is_header(first: list[str], schema: FeatureSchema) -> bool:
    """A first row with a cell that is no number is a header, except a row of data whose only
    such cells are values of categorical features (a row of feature names is a header)."""
    cells = [cell.strip() for cell in first]
    if not schema.categories:
        return not all(_is_number(cell) for cell in cells)
    if all(cell in schema.index for cell in cells):
        return True
    return any(
        not _is_number(cell) and (j >= schema.count or j not in schema.categories)
        for j, cell in enumerate(cells)
    )


def _header_columns(header: list[str], schema: FeatureSchema, limits: Limits) -> list[int]:
    names = [h.strip() for h in header]
    unknown = [h for h in names if h not in schema.index]
    if unknown:
        raise PayloadError(
            "unknown_feature",
            f"CSV header has unknown feature {_names(unknown)}; the model's features are "
            f"{_names(schema.names[:5])}... ({schema.count} in all, see GET /health)",
        )
    duplicated = sorted({h for h in names if names.count(h) > 1})
    if duplicated:
        raise PayloadError("invalid_csv", f"CSV header repeats {_names(duplicated)}")
    missing = [n for n in schema.names if n not in names]
    if missing and not limits.allow_missing:
        raise PayloadError(
            "missing_feature",
            f"CSV header is missing feature {_names(missing)}; {_MISSING_HINT}",
        )
    return [schema.index[h] for h in names]


def _csv_value(cell: str, line_no: int, feature: str, limits: Limits) -> float:
    text = cell.strip()
    if not text:
        if limits.allow_missing:
            return math.nan
        raise PayloadError(
            "invalid_value", f"CSV line {line_no} feature {feature!r} is empty; {_MISSING_HINT}"
        )
    try:
        return float(text)
    except ValueError:
        raise PayloadError(
            "invalid_value",
            f"CSV line {line_no} feature {feature!r} is {_short(text)}, not a number",
        ) from None


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return not cell.strip()  # an empty cell is a missing value, not a header name
    return True


def non_finite_prediction(predictions: np.ndarray) -> PayloadError:
    """The 422 for a prediction JSON cannot carry (NaN or +-Infinity): the model's output
    overflowed for these inputs (a linear model given values near float32's limits, the exp of
    a huge margin). Names the first such row and value."""
    values = np.asarray(predictions, dtype=np.float64).reshape(len(predictions), -1)
    bad = np.argwhere(~np.isfinite(values))
    row, column = (int(v) for v in bad[0]) if bad.size else (0, 0)
    return PayloadError(
        "non_finite_prediction",
        f"the model's prediction for row {row} is {_float_name(values[row, column])}, which "
        "JSON cannot carry: the row's values are outside the range the model can score",
        422,
    )


# --- messages ---------------------------------------------------------------------------------


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in list(names)[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if value is None:
        return "null"
    return type(value).__name__


def _float_name(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"
