"""Data drift: reference statistics of the training data, and captured requests against them.

**Reference** (:func:`profile`), stored in the model's ``metadata.json`` under
:data:`REFERENCE_KEY` by ``mlserve train-example`` and ``mlserve profile``: per numeric feature,
the interior bin edges at the training data's quantiles (deciles by default; repeated quantiles
of a discrete feature merge into one edge), the share of non-missing training values in each
bin, the missing-value rate and the count of values. A value ``x`` falls in bin ``i`` when
``edges[i-1] < x <= edges[i]`` (the first and last bins are open-ended).

**Drift** (:func:`compare`): the population stability index of each feature,
``PSI = sum((a - e) * ln(a / e))`` over the bins plus one bin of missing values, ``e`` the
reference shares and ``a`` the captured ones (both floored at :data:`EPSILON`, so an empty bin
counts as a small share instead of an infinite term). A feature drifts when its PSI exceeds the
threshold (0.2 by default: the usual reading is < 0.1 stable, 0.1-0.2 moderate, > 0.2 shifted).

**Captured requests** (:func:`read_capture`): JSON lines, one record per request, as the
predictor's data capture writes them under ``s3://{bucket}/capture/{model}/{version}/dt=
YYYY-MM-DD/*.jsonl``: ``features`` (rows of floats or null, in ``feature_names`` order),
``feature_names``, ``served_version``, ``time`` ... A record is matched to the reference by
feature name; a line that is not such a record is counted as skipped, never fatal.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

REFERENCE_KEY: Final = "reference"
REFERENCE_FORMAT: Final = 1
DEFAULT_BINS: Final = 10
DEFAULT_PSI_THRESHOLD: Final = 0.2
EPSILON: Final = 1e-4
CAPTURE_SUFFIX: Final = ".jsonl"
PARTITION: Final = re.compile(r"(?:^|/)dt=(\d{4}-\d{2}-\d{2})(?:/|$)")


class DriftError(ValueError):
    """A problem with the inputs of a profile or a drift report, worded for the user."""


# --- reference statistics -------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureReference:
    """One feature's reference: bin edges, the share of values per bin, missing rate, count."""

    edges: tuple[float, ...]
    proportions: tuple[float, ...]
    missing_rate: float
    count: int

    def __post_init__(self) -> None:
        if len(self.proportions) != len(self.edges) + 1:
            raise DriftError(
                f"{len(self.edges)} edges need {len(self.edges) + 1} proportions, "
                f"got {len(self.proportions)}"
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "edges": list(self.edges),
            "proportions": list(self.proportions),
            "missing_rate": self.missing_rate,
            "count": self.count,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> FeatureReference:
        return cls(
            edges=tuple(float(e) for e in doc["edges"]),
            proportions=tuple(float(p) for p in doc["proportions"]),
            missing_rate=float(doc["missing_rate"]),
            count=int(doc["count"]),
        )


def _as_float(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def bin_shares(values: np.ndarray, edges: Sequence[float]) -> tuple[np.ndarray, float, int]:
    """(share of the non-missing values per bin, missing rate, non-missing count)."""
    values = _as_float(values)
    missing = ~np.isfinite(values)
    present = values[~missing]
    counts = np.bincount(
        np.searchsorted(np.asarray(edges, dtype=np.float64), present, side="left"),
        minlength=len(edges) + 1,
    )
    shares = counts / present.size if present.size else np.zeros(len(edges) + 1)
    rate = float(missing.mean()) if values.size else 0.0
    return shares, rate, int(present.size)


def profile_feature(values: Any, bins: int = DEFAULT_BINS) -> FeatureReference:
    """The reference of one feature from its training values (NaN/inf/None are missing)."""
    if bins < 2:
        raise DriftError(f"bins must be at least 2, got {bins}")
    values = _as_float(values)
    present = values[np.isfinite(values)]
    if present.size:
        quantiles = np.quantile(present, np.arange(1, bins) / bins)
        edges = tuple(float(e) for e in np.unique(quantiles))
    else:
        edges = ()
    shares, rate, count = bin_shares(values, edges)
    return FeatureReference(
        edges=edges,
        proportions=tuple(round(float(s), 6) for s in shares),
        missing_rate=round(rate, 6),
        count=count,
    )


def profile(matrix: Any, feature_names: Sequence[str], bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """The reference document (metadata.json's :data:`REFERENCE_KEY`) of a training matrix whose
    columns are ``feature_names``."""
    data = _as_float(matrix)
    if data.ndim != 2 or data.shape[1] != len(feature_names):
        raise DriftError(
            f"expected a matrix of {len(feature_names)} columns, got shape {data.shape}"
        )
    if data.shape[0] == 0:
        raise DriftError("no rows to profile")
    return {
        "format": REFERENCE_FORMAT,
        "bins": bins,
        "rows": int(data.shape[0]),
        "features": {
            name: profile_feature(data[:, i], bins).as_dict()
            for i, name in enumerate(feature_names)
        },
    }


def reference_of(metadata: Mapping[str, Any]) -> dict[str, FeatureReference]:
    """The per-feature references recorded in a metadata.json, by feature name."""
    doc = metadata.get(REFERENCE_KEY)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("features"), Mapping):
        raise DriftError(
            "the model's metadata.json has no reference statistics; record them with "
            "`mlserve profile --data TRAINING_FILE` (train-example records them itself)"
        )
    try:
        return {str(k): FeatureReference.from_dict(v) for k, v in doc["features"].items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise DriftError(f"the reference statistics in metadata.json are malformed: {exc}") from exc


# --- training data files --------------------------------------------------------------------------


def read_table(path: Path, feature_names: Sequence[str]) -> np.ndarray:
    """The ``feature_names`` columns of a CSV or Parquet file (pyarrow), as float64 with NaN
    for missing values, in that order. Other columns (a label, an id) are ignored."""
    import pyarrow as pa
    import pyarrow.compute as pc

    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        elif suffix == ".csv":
            from pyarrow import csv

            table = csv.read_csv(path)
        else:
            raise DriftError(f"{path}: unsupported file type {suffix!r}; allowed: .csv, .parquet")
    except (pa.ArrowInvalid, OSError) as exc:
        raise DriftError(f"{path}: cannot read it: {exc}") from exc
    missing = [name for name in feature_names if name not in table.column_names]
    if missing:
        raise DriftError(
            f"{path} has no column for feature(s) {', '.join(missing)} "
            f"(columns: {', '.join(table.column_names)})"
        )
    columns = []
    for name in feature_names:
        column = table.column(name)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
                or pa.types.is_null(column.type)):  # fmt: skip
            raise DriftError(
                f"{path}: feature {name!r} is {column.type}, not numeric; drift statistics are "
                "computed for numeric features"
            )
        columns.append(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False))
    return np.column_stack(columns) if columns else np.empty((table.num_rows, 0))


# --- captured requests ----------------------------------------------------------------------------


@dataclass
class Capture:
    """Rows of captured requests in the reference's feature order (NaN: missing or absent)."""

    feature_names: tuple[str, ...]
    rows: list[list[float]] = field(default_factory=list)
    records: int = 0
    skipped: int = 0  # lines that are not a capture record of these features
    files: int = 0

    def matrix(self) -> np.ndarray:
        if not self.rows:
            return np.empty((0, len(self.feature_names)))
        return np.asarray(self.rows, dtype=np.float64)


def _number(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return math.nan
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(f"not a number: {value!r}")


def add_records(capture: Capture, lines: Iterable[str], served_version: str | None = None) -> None:
    """Add the rows of each JSON-lines record to ``capture``: columns matched by name (a
    feature the record does not carry is missing); a line that is not a record with
    ``features`` rows matching its ``feature_names`` is counted in ``skipped``."""
    index = {name: i for i, name in enumerate(capture.feature_names)}
    for line in lines:
        text = line.strip()
        if not text:
            continue
        try:
            record = json.loads(text)
            names = record.get("feature_names") or list(capture.feature_names)
            rows = record["features"]
            if not isinstance(rows, list) or not all(isinstance(n, str) for n in names):
                raise TypeError("features must be a list of rows")
            positions = [index.get(name) for name in names]
            converted = []
            for row in rows:
                if not isinstance(row, list) or len(row) != len(names):
                    raise TypeError("a row does not match feature_names")
                out = [math.nan] * len(capture.feature_names)
                for position, value in zip(positions, row, strict=True):
                    if position is not None:
                        out[position] = _number(value)
                converted.append(out)
        except (ValueError, TypeError, KeyError, AttributeError):
            capture.skipped += 1
            continue
        if served_version is not None and record.get("served_version") != served_version:
            continue
        capture.rows.extend(converted)
        capture.records += 1


def partition_date(key: str) -> str | None:
    """The ``dt=YYYY-MM-DD`` partition of a capture object's key or path, if any."""
    match = PARTITION.search(key)
    return match.group(1) if match else None


def _wanted(key: str, since: str | None) -> bool:
    if not key.endswith(CAPTURE_SUFFIX):
        return False
    if since is None:
        return True
    day = partition_date(key)
    return day is None or day >= since


def local_capture_files(path: Path, since: str | None = None) -> list[Path]:
    """The ``*.jsonl`` files at ``path`` (a file, or a directory searched recursively)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DriftError(f"{path}: no such file or directory")
    return sorted(p for p in path.rglob(f"*{CAPTURE_SUFFIX}") if _wanted(p.as_posix(), since))


def s3_capture_lines(
    s3: Any, uri: str, since: str | None = None, counter: Capture | None = None
) -> Iterator[str]:
    """The lines of every ``*.jsonl`` object under an ``s3://bucket/prefix``."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise DriftError(f"{uri!r} is not an s3://bucket/prefix URI")
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents") or []:
            key = item["Key"]
            if not _wanted(key, since):
                continue
            if counter is not None:
                counter.files += 1
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
            yield from body.splitlines()


def read_capture(
    source: str,
    feature_names: Sequence[str],
    *,
    s3: Any = None,
    since: str | None = None,
    served_version: str | None = None,
) -> Capture:
    """Every captured record at ``source``: a local file or directory, or an ``s3://`` prefix
    (read with the boto3 client ``s3``)."""
    capture = Capture(tuple(feature_names))
    if source.startswith("s3://"):
        if s3 is None:
            raise DriftError("an s3:// source needs an S3 client")
        add_records(capture, s3_capture_lines(s3, source, since, capture), served_version)
    else:
        for path in local_capture_files(Path(source), since):
            capture.files += 1
            with path.open(encoding="utf-8") as fh:
                add_records(capture, fh, served_version)
    return capture


# --- drift ---------------------------------------------------------------------------------------


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two distributions over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPSILON)
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    psi: float
    reference_missing_rate: float
    missing_rate: float
    rows: int
    drifted: bool


def compare(
    reference: Mapping[str, FeatureReference],
    capture: Capture,
    threshold: float = DEFAULT_PSI_THRESHOLD,
) -> list[FeatureDrift]:
    """Each reference feature's PSI (its bins plus a missing bin) and missing rates."""
    if capture.records == 0 or not capture.rows:
        raise DriftError("no captured rows to compare (no record read)")
    matrix = capture.matrix()
    results = []
    for i, name in enumerate(capture.feature_names):
        ref = reference[name]
        shares, rate, _count = bin_shares(matrix[:, i], ref.edges)
        expected = [*(p * (1 - ref.missing_rate) for p in ref.proportions), ref.missing_rate]
        actual = [*(s * (1 - rate) for s in shares), rate]
        value = psi(expected, actual)
        results.append(
            FeatureDrift(
                name=name,
                psi=value,
                reference_missing_rate=ref.missing_rate,
                missing_rate=rate,
                rows=int(matrix.shape[0]),
                drifted=value > threshold,
            )
        )
    return results


def write_chart(results: Sequence[FeatureDrift], threshold: float, path: Path) -> Path:
    """A PNG bar chart of each feature's PSI (drifted ones highlighted) with the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    names = [r.name for r in results]
    height = max(3.0, 0.28 * len(results) + 1.5)
    figure, axes = plt.subplots(figsize=(9, height), dpi=110)
    try:
        colours = ["#c0392b" if r.drifted else "#2e86c1" for r in results]
        axes.barh(names, [r.psi for r in results], color=colours)
        axes.axvline(threshold, color="#555555", linestyle="--", label=f"threshold {threshold:g}")
        axes.invert_yaxis()
        axes.set_xlabel("population stability index (PSI)")
        drifted = sum(r.drifted for r in results)
        rows = results[0].rows if results else 0
        axes.set_title(f"Feature drift: {drifted} of {len(results)} drifted ({rows} rows)")
        axes.legend(loc="lower right")
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)
    return path
