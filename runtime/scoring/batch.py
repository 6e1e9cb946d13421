"""Batch mode of the scoring entrypoint: ``python -m runtime.scoring --mode batch`` (AWS Batch).

The job ``JOB_ID``'s record names ``input_uri`` (one object, or every object under a prefix
ending in ``/``, sorted by key), ``output_uri`` (a prefix), ``format`` (csv | parquet | jsonl),
``shards`` and ``id_column``. With ``AWS_BATCH_JOB_ARRAY_INDEX`` = i (an array child; a non-array
job is shard 0 of 1) this process scores shard i only:

- **by object** when there are at least as many objects as shards: shard i takes the objects
  whose position in the sorted listing is ``i mod shards``;
- **by row range** otherwise: with T the rows of all objects (Parquet: from the footers, read
  with ranged GETs; CSV and JSON lines: one streaming counting pass) shard i takes global rows
  ``[T*i // shards, T*(i+1) // shards)``; a Parquet shard downloads only the row groups that
  hold its range (one ranged GET of their byte span).

Either way every row is scored by exactly one shard, whatever the attempt. Reading streams with
pyarrow (``csv.open_csv`` and ``json.open_json`` on the GetObject body in blocks of
:data:`BLOCK_SIZE` bytes; Parquet downloaded to local disk with one GET, of the whole object or
of the byte span of the slice's row groups, then read one row group at a time in batches of at
most :data:`PARQUET_BATCH_ROWS` rows), so memory stays flat whatever the input size. The work
overlaps: the model loads in the background while the input is listed and the first Parquet
object downloads, the next object downloads while one is scored, and a read-ahead thread
decodes the next batch into a feature matrix while XGBoost scores this one.
The part is written batch by batch to a local file and uploaded (multipart) when complete.

Output: ``output_uri/part-{shard:05d}.{format}`` with the id column (``id_column`` when given,
else ``row``: the row number within its object, plus ``object`` when the input is a prefix)
beside ``prediction`` (``prediction_<k>`` per class for multi-class models). Each part carries
its rows and sha256 in its S3 metadata; the shard that finds every part present writes
``output_uri/_manifest.json`` ``{rows, model_version, parts: [{key, rows, sha256}]}`` and the
total ``rows`` on the record (the workflow records SUCCEEDED).

The model is the version the record names (``model_version``: the stable model or the canary,
chosen when the job was created), so every shard of a job scores with the same one; the manifest
names it.

Every attempt adds 1 to the record's ``attempts``. Exit 0 only when this shard's part is written;
any failure exits 1 (AWS Batch retries per the job definition) without touching the status, but
one: a record naming a version the job definition does not hold is recorded FAILED
(``model_version_unavailable``) at once, with that reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from aws_lambda_powertools import Logger

from runtime import contract
from runtime.categories import UNKNOWN_MISSING, Categories
from runtime.context import RuntimeContext, VersionNotServed
from runtime.jobs import (
    ACTIVE_STATUSES,
    Job,
    JobError,
    JobStore,
    TransitionRejected,
    encode_predictions,
    fits_inline,
)
from runtime.model import LoadedModel, parse_s3_uri

EXIT_SUCCEEDED: Final = 0
EXIT_FAILED: Final = 1
# Bytes per CSV/JSON read block (rows per batch follow). Arrow reads a few blocks ahead; with
# larger blocks (32 MB) its peak memory grew with the input (measured: 0.6 GB at 2M rows, 1.4 GB
# at 8M), with 8 MB it stays flat (0.4 GB for both).
BLOCK_SIZE: Final = 8 * 1024 * 1024
# At most this many rows are read back from the parts to be answered inline on the record (a
# prediction takes >= 4 bytes there: more rows could never fit MAX_INLINE_ITEM_BYTES).
MAX_INLINE_ROWS: Final = contract.MAX_INLINE_ITEM_BYTES // 4
# Rows per Parquet batch: XGBoost pays ~10 ms per inplace_predict call, so batches are large.
PARQUET_BATCH_ROWS: Final = 262_144
DOWNLOAD_CHUNK: Final = 4 * 1024 * 1024  # bytes per read of a Parquet object's download
FOOTER_GUESS: Final = 64 * 1024  # bytes of a Parquet object's tail read for its footer
PREFETCH_BATCHES: Final = 2  # feature matrices read ahead while the model scores
ROW_COLUMN: Final = "row"
OBJECT_COLUMN: Final = "object"
PREDICTION_COLUMN: Final = "prediction"
META_ROWS: Final = "rows"  # S3 user metadata of a part
META_SHA256: Final = "sha256"

logger = Logger(service=contract.SERVICE_NAME)
T = TypeVar("T")


class BatchFailure(Exception):
    """This shard cannot be scored (bad input, missing object, misconfiguration)."""


# --- the plan -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputObject:
    key: str
    size: int


@dataclass(frozen=True)
class Slice:
    """Rows ``[start, stop)`` of one object (stop None: to the end)."""

    key: str
    start: int = 0
    stop: int | None = None

    def overlaps(self, first_row: int, rows: int) -> bool:
        """Do rows ``[first_row, first_row + rows)`` hold any row of this slice?"""
        return first_row + rows > self.start and (self.stop is None or first_row < self.stop)


@dataclass(frozen=True)
class ParquetFooter:
    """What a Parquet object's tail says: enough to plan a partial download."""

    size: int  # of the whole object
    tail: bytes  # the object's last bytes: the footer, its length and the b"PAR1" magic
    metadata: pq.FileMetaData

    @property
    def row_group_rows(self) -> list[int]:
        return [self.metadata.row_group(i).num_rows for i in range(self.metadata.num_row_groups)]

    def span(self, piece: Slice) -> tuple[int, int] | None:
        """The bytes ``[lo, hi)`` of the row groups that hold ``piece``'s rows (a Parquet
        writer lays row groups out one after the other, each column chunk from its dictionary
        or first data page for ``total_compressed_size`` bytes); None when that is every row
        group (or none), so the whole object is the download."""
        groups, first_row = [], 0
        for i, rows in enumerate(self.row_group_rows):
            if piece.overlaps(first_row, rows):
                groups.append(i)
            first_row += rows
        if not groups or len(groups) == self.metadata.num_row_groups:
            return None
        lo, hi = self.size, 0
        for i in (groups[0], groups[-1]):
            group = self.metadata.row_group(i)
            for j in range(group.num_columns):
                chunk = group.column(j)
                start = chunk.data_page_offset
                if chunk.has_dictionary_page and chunk.dictionary_page_offset is not None:
                    start = min(start, chunk.dictionary_page_offset)
                lo, hi = min(lo, start), max(hi, start + chunk.total_compressed_size)
        return (lo, hi) if 0 <= lo < hi <= self.size - len(self.tail) else None


def list_input(s3: Any, input_uri: str) -> tuple[str, list[InputObject]]:
    """The bucket and the input objects (sorted by key; a prefix lists every non-empty object
    under it, "directory" markers left out)."""
    bucket, key = parse_s3_uri(input_uri)
    if not input_uri.endswith("/"):
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise BatchFailure(f"cannot read the input object {input_uri}: {exc}") from exc
        return bucket, [InputObject(key, int(head.get("ContentLength", 0)))]
    objects: list[InputObject] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        for item in page.get("Contents") or []:
            if not item["Key"].endswith("/") and int(item.get("Size", 0)) > 0:
                objects.append(InputObject(item["Key"], int(item["Size"])))
    if not objects:
        raise BatchFailure(f"no input objects under {input_uri}")
    return bucket, sorted(objects, key=lambda o: o.key)


def split_rows(counts: Sequence[tuple[str, int]], shard: int, shards: int) -> list[Slice]:
    """Shard ``shard`` of ``shards`` by global row range over ``counts`` [(key, rows)]."""
    total = sum(rows for _key, rows in counts)
    lo, hi = total * shard // shards, total * (shard + 1) // shards
    slices: list[Slice] = []
    offset = 0
    for key, rows in counts:
        start, stop = max(lo, offset), min(hi, offset + rows)
        if start < stop:
            slices.append(Slice(key, start - offset, stop - offset))
        offset += rows
    return slices


def split_objects(objects: Sequence[InputObject], shard: int, shards: int) -> list[Slice]:
    """Shard ``shard`` of ``shards`` by object: positions ``shard mod shards``."""
    return [Slice(o.key) for i, o in enumerate(objects) if i % shards == shard]


# --- reading ------------------------------------------------------------------------------------


class Reader:
    """Streams record batches of S3 objects of one format. Parquet needs random access: each
    slice's object is downloaded (one streaming GET) to a temp file first, the next one in the
    background while the current one is scored (:meth:`prefetch`). A slice of part of an
    object whose footer was read (:meth:`parquet_rows`) downloads only the byte span of its row
    groups into a sparse file of the object's size, with the footer at its end: every byte
    pyarrow reads for those row groups is where the object has it. CSV and JSON lines stream
    straight from the response body."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        fmt: str,
        workdir: Path,
        *,
        features: Sequence[str] = (),
        id_column: str | None = None,
    ) -> None:
        if fmt not in contract.BATCH_FORMATS:
            raise BatchFailure(f"format {fmt!r} is not one of {', '.join(contract.BATCH_FORMATS)}")
        self.s3, self.bucket, self.fmt, self.workdir = s3, bucket, fmt, workdir
        self.types: dict[str, pa.DataType] = {}
        self.set_schema(features, id_column)
        self._downloads: dict[Slice, Future[Path]] = {}
        self._footers: dict[str, ParquetFooter] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="download")

    def set_schema(
        self,
        features: Sequence[str],
        id_column: str | None,
        categories: Mapping[str, Categories] | None = None,
    ) -> None:
        # Types are fixed, not inferred per block: a column whose first block holds only
        # integers must still read a later 1.5 (features float64; a CSV id column text; a
        # categorical feature with string categories text).
        self.types = dict.fromkeys(features, pa.float64())
        for name, known in (categories or {}).items():
            if known.strings:
                self.types[name] = pa.string()
        if id_column and id_column not in self.types and self.fmt == "csv":
            self.types[id_column] = pa.string()

    def close(self) -> None:
        """Stop background downloads (before the work directory goes away)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _body(self, key: str, byte_range: tuple[int, int] | None = None) -> Any:
        """The streaming body of object ``key``, or of its bytes ``[lo, hi)``."""
        extra = (
            {} if byte_range is None else {"Range": f"bytes={byte_range[0]}-{byte_range[1] - 1}"}
        )
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key, **extra)["Body"]
        except Exception as exc:
            raise BatchFailure(f"cannot read s3://{self.bucket}/{key}: {exc}") from exc

    def _download(self, piece: Slice) -> Path:
        footer = self._footers.get(piece.key)
        span = footer.span(piece) if footer is not None else None
        fd, name = tempfile.mkstemp(dir=self.workdir, suffix=".parquet")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                if span is not None and footer is not None:
                    out.truncate(footer.size)  # sparse: the other row groups are never read
                    out.seek(footer.size - len(footer.tail))
                    out.write(footer.tail)
                    out.seek(span[0])
                body = self._body(piece.key, span)
                try:
                    shutil.copyfileobj(body, out, DOWNLOAD_CHUNK)
                except Exception as exc:
                    raise BatchFailure(
                        f"cannot read s3://{self.bucket}/{piece.key}: {exc}"
                    ) from exc
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def prefetch(self, piece: Slice) -> None:
        """Start downloading the Parquet object (or row groups) of ``piece`` in the background
        (other formats stream)."""
        if self.fmt == "parquet" and piece not in self._downloads:
            self._downloads[piece] = self._pool.submit(self._download, piece)

    @contextlib.contextmanager
    def _parquet(self, piece: Slice) -> Iterator[pq.ParquetFile]:
        self.prefetch(piece)
        path = self._downloads.pop(piece).result()
        try:
            with pq.ParquetFile(path) as pf:  # no pre_buffer: it reads every row group at once
                yield pf
        finally:
            path.unlink(missing_ok=True)

    def parquet_rows(self, key: str, size: int) -> list[int]:
        """The rows of each row group of Parquet object ``key``, from its footer alone (ranged
        GETs of the object's tail; no download). The footer is kept: a later download of part of
        the object (:meth:`prefetch`) fetches only the row groups it needs."""
        if key not in self._footers:
            self._footers[key] = self._footer(key, size)
        return self._footers[key].row_group_rows

    def _footer(self, key: str, size: int) -> ParquetFooter:
        tail = self._range(key, max(0, size - FOOTER_GUESS), size)
        if len(tail) < 8 or tail[-4:] != b"PAR1":
            raise BatchFailure(f"s3://{self.bucket}/{key} is not a Parquet file")
        length = int.from_bytes(tail[-8:-4], "little") + 8
        if length > size - 4:
            raise BatchFailure(f"s3://{self.bucket}/{key} has a corrupt Parquet footer")
        if length > len(tail):
            tail = self._range(key, size - length, size)
        tail = tail[-length:]
        try:
            meta = pq.read_metadata(pa.BufferReader(b"PAR1" + tail))
        except (pa.ArrowInvalid, OSError) as exc:
            raise BatchFailure(
                f"cannot read the Parquet footer of s3://{self.bucket}/{key}: {exc}"
            ) from exc
        return ParquetFooter(size, tail, meta)

    def _range(self, key: str, start: int, stop: int) -> bytes:
        body = self._body(key, (start, stop))
        try:
            return bytes(body.read())
        except Exception as exc:
            raise BatchFailure(f"cannot read s3://{self.bucket}/{key}: {exc}") from exc

    def count(self, key: str, size: int) -> int:
        if size == 0:
            return 0
        if self.fmt == "parquet":
            return sum(self.parquet_rows(key, size))
        return sum(batch.num_rows for _offset, batch in self.numbered(Slice(key)))

    def numbered(
        self, piece: Slice, columns: Sequence[str] | None = None
    ) -> Iterator[tuple[int, pa.RecordBatch]]:
        """``(row number of its first row, batch)`` of the record batches of ``piece``'s object
        that hold its rows (CSV and JSON lines: every batch from the first; Parquet: only the
        row groups that hold them, the others neither decoded nor downloaded)."""
        key = piece.key
        try:
            if self.fmt == "parquet":
                with self._parquet(piece) as pf:
                    meta = pf.metadata
                    offset = 0
                    # One row group at a time: one iter_batches over every row group holds
                    # memory in proportion to the whole file (measured with pyarrow 26: 0.3 GB
                    # for 2M rows, 0.8 GB for 8M); per row group it stays flat.
                    for group in range(meta.num_row_groups):
                        rows = meta.row_group(group).num_rows
                        if not piece.overlaps(offset, rows):
                            offset += rows
                            continue
                        for batch in pf.iter_batches(
                            batch_size=PARQUET_BATCH_ROWS,
                            row_groups=[group],
                            columns=list(columns) if columns else None,
                        ):
                            yield offset, batch
                            offset += batch.num_rows
                return
            body = self._body(key)
            if self.fmt == "csv":
                convert = pacsv.ConvertOptions(
                    include_columns=list(columns) if columns else None, column_types=self.types
                )
                reader = pacsv.open_csv(
                    body,
                    read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE),
                    convert_options=convert,
                )
            else:
                schema = pa.schema(list(self.types.items())) if self.types else None
                reader = pajson.open_json(
                    body,
                    read_options=pajson.ReadOptions(block_size=BLOCK_SIZE),
                    parse_options=pajson.ParseOptions(
                        explicit_schema=schema, unexpected_field_behavior="infer"
                    ),
                )
            offset = 0
            for batch in reader:
                yield offset, batch.select(list(columns)) if columns else batch
                offset += batch.num_rows
        except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError, OSError) as exc:
            raise BatchFailure(
                f"cannot read s3://{self.bucket}/{key} as {self.fmt}: {exc}"
            ) from exc

    def slice(self, part: Slice, columns: Sequence[str]) -> Iterator[tuple[int, pa.RecordBatch]]:
        """``(row number within the object, batch)`` of the rows of ``part``."""
        for offset, batch in self.numbered(part, columns):
            n = batch.num_rows
            lo = max(part.start - offset, 0)
            hi = n if part.stop is None else min(part.stop - offset, n)
            if lo < hi:
                yield offset + lo, batch.slice(lo, hi - lo)
            if part.stop is not None and offset + n >= part.stop:
                break


# --- scoring ------------------------------------------------------------------------------------


def feature_matrix(
    batch: pa.RecordBatch,
    features: Sequence[str],
    allow_missing: bool,
    categories: Mapping[str, Categories] | None = None,
    unknown_missing: bool = False,
) -> np.ndarray:
    """The batch's feature columns (model order) as a C-ordered float32 matrix; nulls are NaN
    (missing). Each column is converted into a row of a (features x rows) buffer, which one
    transposing copy turns into rows (writing columns straight into row-major memory strides
    through the whole matrix once per feature, several times slower). A categorical feature's
    values are recoded with the model's ``categories`` (as POST /predict recodes them)."""
    if not features:
        raise BatchFailure("the model has no features")
    by_feature = np.empty((len(features), batch.num_rows), dtype=np.float32)
    for j, name in enumerate(features):
        try:
            column = batch.column(name)
        except KeyError:
            raise BatchFailure(f"the input has no feature column {name!r}") from None
        known = (categories or {}).get(name)
        if known is not None:
            by_feature[j] = category_codes(column, known, allow_missing, unknown_missing)
            continue
        if not pa.types.is_floating(column.type):
            try:
                column = pc.cast(column, pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise BatchFailure(f"feature column {name!r} is not numeric: {exc}") from exc
        if column.null_count and not allow_missing:
            raise BatchFailure(f"feature column {name!r} has missing values (ALLOW_MISSING is off)")
        by_feature[j] = column.to_numpy(zero_copy_only=False)  # nulls: NaN
    numeric = [j for j, name in enumerate(features) if name not in (categories or {})]
    if not allow_missing and not np.isfinite(by_feature[numeric]).all():
        raise BatchFailure("the input has non-finite feature values (ALLOW_MISSING is off)")
    return np.ascontiguousarray(by_feature.T)


def category_codes(
    column: pa.Array, known: Categories, allow_missing: bool, unknown_missing: bool
) -> np.ndarray:
    """A categorical column's codes (the position of each value in ``known.values``): a null is
    missing (NaN, where allowed); an unknown category fails the job naming the feature and the
    value, or is missing with ``unknown_missing`` (mlserve:unknownCategory)."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    target = pa.string() if known.strings else pa.float64()
    try:
        values = pc.cast(column, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise BatchFailure(
            f"categorical feature column {known.feature!r} does not hold its categories "
            f"({known.describe()}): {exc}"
        ) from exc
    if values.null_count and not allow_missing:
        raise BatchFailure(
            f"feature column {known.feature!r} has missing values (ALLOW_MISSING is off)"
        )
    codes = pc.index_in(values, value_set=pa.array(known.values, target))
    unknown = pc.and_(pc.is_null(codes), pc.is_valid(values))
    if not unknown_missing and pc.any(unknown).as_py():
        value = values.filter(unknown)[0].as_py()
        raise BatchFailure(
            f"categorical feature column {known.feature!r} has unknown category {value!r}; "
            f"the model knows {len(known.values)}: {known.describe()} "
            "(mlserve:unknownCategory missing scores an unknown category as missing)"
        )
    result: np.ndarray = pc.cast(codes, pa.float32()).to_numpy(zero_copy_only=False)
    return result


def read_ahead(items: Iterator[T], depth: int = PREFETCH_BATCHES) -> Iterator[T]:
    """``items``, produced by a background thread at most ``depth`` ahead of the consumer:
    reading and decoding the next batch overlaps scoring this one (Arrow, the download and
    XGBoost release the GIL). An exception of the producer is raised here; leaving the loop
    early stops the producer."""
    slots: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((False, item)):
                    return
            put((True, None))
        except BaseException as exc:  # handed to the consumer
            put((True, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            done, item = slots.get()
            if done:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        thread.join()


class PartWriter:
    """Writes one part file (csv | parquet | jsonl) batch by batch."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.fmt = path, fmt
        self.rows = 0
        self._writer: Any = None
        self._jsonl: Any = None

    def write(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        if self.fmt == "jsonl":
            if self._jsonl is None:
                self._jsonl = self.path.open("w", encoding="utf-8")
            names = table.column_names
            for row in zip(*(table.column(n).to_pylist() for n in names), strict=True):
                self._jsonl.write(json.dumps(dict(zip(names, row, strict=True))) + "\n")
            return
        if self._writer is None:
            if self.fmt == "csv":
                self._writer = pacsv.CSVWriter(str(self.path), table.schema)
            else:
                self._writer = pq.ParquetWriter(str(self.path), table.schema)
        self._writer.write_table(table)

    def close(self, empty_schema: pa.Schema) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        elif self._writer is not None:
            self._writer.close()
        elif self.fmt == "jsonl":
            self.path.write_text("")
        elif self.fmt == "csv":
            pacsv.write_csv(empty_schema.empty_table(), str(self.path))
        else:
            pq.write_table(empty_schema.empty_table(), str(self.path))


def _output_table(ids: list[pa.Array], id_names: list[str], predictions: np.ndarray) -> pa.Table:
    arrays = list(ids)
    names = list(id_names)
    if predictions.ndim == 1:
        arrays.append(pa.array(predictions.astype(np.float64)))
        names.append(PREDICTION_COLUMN)
    else:
        for k in range(predictions.shape[1]):
            arrays.append(pa.array(predictions[:, k].astype(np.float64)))
            names.append(f"{PREDICTION_COLUMN}_{k}")
    return pa.Table.from_arrays(arrays, names=names)


@dataclass(frozen=True)
class ShardResult:
    key: str
    rows: int
    sha256: str


def score_shard(
    job: Job,
    model: LoadedModel | Callable[[], LoadedModel],
    s3: Any,
    shard: int,
    *,
    allow_missing: bool = False,
    unknown_missing: bool = False,
    workdir: Path | None = None,
) -> ShardResult:
    """Score shard ``shard`` of ``job`` and upload its part; see the module docstring.

    ``model`` may be a function that returns it (run_batch loads it in the background while the
    input is listed and the first Parquet object downloads); it is called once."""
    if not job.input_uri or not job.output_uri or not job.format:
        raise BatchFailure("the job record has no input_uri, output_uri or format")
    shards = int(job.shards or 1)
    if not 0 <= shard < shards:
        raise BatchFailure(f"shard {shard} is outside the job's {shards} shard(s)")
    fmt = job.format
    id_column = job.id_column
    out_bucket, out_prefix = parse_s3_uri(job.output_uri)
    loaded: LoadedModel | None = model if isinstance(model, LoadedModel) else None

    def the_model() -> LoadedModel:
        nonlocal loaded
        if loaded is None:
            assert callable(model)
            loaded = model()
        return loaded

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmpdir = Path(tmp)
        bucket, objects = list_input(s3, job.input_uri)
        reader = Reader(s3, bucket, fmt, tmpdir)
        with contextlib.closing(reader):
            if len(objects) >= shards:
                slices = split_objects(objects, shard, shards)
            else:
                if fmt != "parquet":  # counted by parsing: with the model's column types
                    info = the_model().info
                    reader.set_schema(info.feature_names, id_column, info.categories)
                counts = [(o.key, reader.count(o.key, o.size)) for o in objects]
                slices = split_rows(counts, shard, shards)
            if slices:
                reader.prefetch(slices[0])  # Parquet: downloads while the model loads
            features = list(the_model().info.feature_names)
            categories = the_model().info.categories
            reader.set_schema(features, id_column, categories)
            columns = (
                [*features, id_column] if id_column and id_column not in features else features
            )
            with_object = job.input_uri.endswith("/") and not id_column

            def prepared() -> Iterator[tuple[Slice, int, pa.RecordBatch, np.ndarray]]:
                for i, piece in enumerate(slices):
                    if i + 1 < len(slices):
                        reader.prefetch(slices[i + 1])
                    for first_row, batch in reader.slice(piece, columns):
                        yield (
                            piece,
                            first_row,
                            batch,
                            feature_matrix(
                                batch, features, allow_missing, categories, unknown_missing
                            ),
                        )

            part_path = tmpdir / contract.part_name(shard, fmt)
            writer = PartWriter(part_path, fmt)
            for piece, first_row, batch, matrix in read_ahead(prepared()):
                predictions = np.asarray(the_model().predict(matrix))
                ids, id_names = _ids(
                    batch, first_row, piece.key if with_object else None, id_column
                )
                writer.write(_output_table(ids, id_names, predictions))
        writer.close(_empty_schema(id_column, with_object, the_model().info.outputs))
        digest = _sha256(part_path)
        key = f"{out_prefix}{contract.part_name(shard, fmt)}"
        s3.upload_file(
            str(part_path),
            out_bucket,
            key,
            ExtraArgs={"Metadata": {META_ROWS: str(writer.rows), META_SHA256: digest}},
        )
    return ShardResult(key, writer.rows, digest)


def _ids(
    batch: pa.RecordBatch, first_row: int, key: str | None, id_column: str | None
) -> tuple[list[pa.Array], list[str]]:
    """The id columns of a batch's output rows: ``id_column``, else (``object`` and) ``row``."""
    if id_column:
        try:
            return [batch.column(id_column)], [id_column]
        except KeyError:
            raise BatchFailure(f"the input has no id column {id_column!r}") from None
    rows = pa.array(np.arange(first_row, first_row + batch.num_rows, dtype=np.int64))
    if key is None:
        return [rows], [ROW_COLUMN]
    return [pa.array([key] * batch.num_rows, pa.string()), rows], [OBJECT_COLUMN, ROW_COLUMN]


def _empty_schema(id_column: str | None, with_object: bool, outputs: int) -> pa.Schema:
    """The columns of a part without rows."""
    ids: list[pa.Array] = [pa.array([], pa.string())] * (1 if id_column or with_object else 0)
    names = [id_column] if id_column else [OBJECT_COLUMN] if with_object else []
    if not id_column:
        ids.append(pa.array([], pa.int64()))
        names.append(ROW_COLUMN)
    shape = (0,) if outputs == 1 else (0, outputs)
    return _output_table(ids, names, np.zeros(shape, np.float32)).schema


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest_if_complete(job: Job, s3: Any) -> dict[str, Any] | None:
    """When every part of ``job`` exists: write ``_manifest.json`` and return it (else None).
    Its content depends only on the parts, so two shards finishing together write the same."""
    assert job.output_uri and job.format
    bucket, prefix = parse_s3_uri(job.output_uri)
    shards = int(job.shards or 1)
    wanted = {f"{prefix}{contract.part_name(i, job.format)}" for i in range(shards)}
    present: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        present.update(item["Key"] for item in page.get("Contents") or [] if item["Key"] in wanted)
    if present != wanted:
        return None
    parts = []
    for key in sorted(wanted):
        meta = s3.head_object(Bucket=bucket, Key=key).get("Metadata") or {}
        parts.append(
            {"key": key, "rows": int(meta.get(META_ROWS, 0)), "sha256": meta.get(META_SHA256, "")}
        )
    manifest = {
        "rows": sum(p["rows"] for p in parts),
        "model_version": job.model_version,
        "parts": parts,
    }
    s3.put_object(
        Bucket=bucket,
        Key=f"{prefix}{contract.MANIFEST_NAME}",
        Body=json.dumps(manifest, indent=1).encode(),
        ContentType="application/json",
    )
    return manifest


def inline_predictions(job: Job, manifest: dict[str, Any], s3: Any) -> str | None:
    """The job's predictions in input row order as compact JSON (runtime.jobs
    encode_predictions), when the job is small enough to answer them inline on its record
    (GET /jobs/{id} ``predictions``, as the other architectures do) and its output order is its
    input's: one input object (the staged rows of POST /predict or POST /jobs, or an upload) and
    no id column. None otherwise: the parts stay the only result (``result_url``)."""
    rows = int(manifest.get("rows") or 0)
    prefix = (job.input_uri or "/").endswith("/")
    if prefix or job.id_column or not 0 < rows <= MAX_INLINE_ROWS or not job.format:
        return None
    columns: list[np.ndarray] = []
    for part in manifest.get("parts") or []:
        if not int(part.get("rows") or 0):
            continue  # an empty part (more shards than rows)
        bucket, _ = parse_s3_uri(job.output_uri or "")
        body = s3.get_object(Bucket=bucket, Key=part["key"])["Body"].read()
        table = _read_part(body, job.format)
        names = [n for n in table.column_names if n.startswith(PREDICTION_COLUMN)]
        if not names:
            return None
        values = np.column_stack([table.column(n).to_numpy() for n in sorted(names, key=_k)])
        columns.append(values[:, 0] if names == [PREDICTION_COLUMN] else values)
    if not columns:
        return None
    encoded = encode_predictions(np.concatenate(columns))
    final = {"status": contract.STATUS_SUCCEEDED, "rows": rows}
    return encoded if fits_inline(job, predictions=encoded, **final) else None


def _k(name: str) -> int:
    """``prediction`` -> 0, ``prediction_3`` -> 3 (class order of the part's columns)."""
    return int(name.rsplit("_", 1)[1]) if "_" in name else 0


def _read_part(body: bytes, fmt: str) -> pa.Table:
    import io

    if fmt == "parquet":
        return pq.read_table(io.BytesIO(body))
    if fmt == "csv":
        return pacsv.read_csv(io.BytesIO(body))
    return pajson.read_json(io.BytesIO(body))


def _shard_index(ctx: RuntimeContext, job: Job) -> int:
    raw = ctx.get(contract.ENV_BATCH_ARRAY_INDEX)
    if raw is None or not raw.strip():
        if int(job.shards or 1) > 1:
            raise BatchFailure(
                f"the job has {job.shards} shards but {contract.ENV_BATCH_ARRAY_INDEX} is not set"
            )
        return 0
    try:
        return int(raw)
    except ValueError:
        raise BatchFailure(f"{contract.ENV_BATCH_ARRAY_INDEX}={raw!r} is not an integer") from None


def _fail_job(store: JobStore, job_id: str, error: JobError) -> int:
    """Record FAILED with ``error`` now: a failure no retry of the Batch job could mend (its
    record then says why, not only Batch's exit code); a record already final stays as it is."""
    logger.error("batch scoring failed", extra={"code": error.code, "reason": error.message})
    try:
        store.transition(job_id, contract.STATUS_FAILED, expected=ACTIVE_STATUSES, error=error)
    except TransitionRejected as exc:
        logger.warning("the job is already final", extra={"status": exc.current})
    return EXIT_FAILED


def run_batch(job_id: str, ctx: RuntimeContext) -> int:
    """Score this process's shard of job ``job_id``; the process exit code."""
    logger.append_keys(job_id=job_id)
    try:
        store = ctx.jobs
        try:
            job = store.update(job_id, {}, increment={"attempts": 1}, statuses=ACTIVE_STATUSES)
        except TransitionRejected as exc:
            logger.warning("the job is not active; nothing to do", extra={"status": exc.current})
            return EXIT_FAILED
        shard = _shard_index(ctx, job)
        logger.append_keys(
            shard=shard, shards=job.shards, attempt=ctx.get(contract.ENV_BATCH_ATTEMPT)
        )
        try:
            models = ctx.models_for(job.model_version)  # the version chosen at creation
        except VersionNotServed as exc:
            return _fail_job(store, job_id, JobError(exc.code, str(exc)))
        started = time.monotonic()
        s3 = ctx.client("s3")
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="model") as pool:
            loading = pool.submit(models.get)  # importing XGBoost and loading take a while
            result = score_shard(
                job,
                loading.result,
                s3,
                shard,
                allow_missing=ctx.allow_missing,
                unknown_missing=ctx.unknown_category == UNKNOWN_MISSING,
            )
        seconds = time.monotonic() - started
        logger.info(
            "part written",
            extra={"key": result.key, "rows": result.rows, "seconds": round(seconds, 3)},
        )
        manifest = write_manifest_if_complete(job, s3)
        if manifest is not None:
            logger.info("manifest written", extra={"rows": manifest["rows"]})
            values: dict[str, Any] = {"rows": manifest["rows"]}
            try:
                predictions = inline_predictions(job, manifest, s3)
            except Exception:  # the parts are the result; the inline copy only a convenience
                logger.exception("cannot read the parts back for inline predictions")
                predictions = None
            if predictions is not None:
                values["predictions"] = predictions
            try:
                store.update(job_id, values, statuses=ACTIVE_STATUSES)
            except TransitionRejected as exc:
                logger.warning("the job finished meanwhile", extra={"status": exc.current})
    except BatchFailure as exc:
        logger.error("batch scoring failed", extra={"reason": str(exc)})
        return EXIT_FAILED
    except Exception:
        logger.exception("batch scoring failed")
        return EXIT_FAILED
    return EXIT_SUCCEEDED
