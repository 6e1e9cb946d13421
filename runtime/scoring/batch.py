"""Batch mode of the scoring entrypoint: ``python -m runtime.scoring --mode batch`` (AWS Batch).

The job ``JOB_ID``'s record names ``input_uri`` (one object, or every object under a prefix
ending in ``/``, sorted by key), ``output_uri`` (a prefix), ``format`` (csv | parquet | jsonl),
``shards`` and ``id_column``. With ``AWS_BATCH_JOB_ARRAY_INDEX`` = i (an array child; a non-array
job is shard 0 of 1) this process scores shard i only:

- **by object** when there are at least as many objects as shards: shard i takes the objects
  whose position in the sorted listing is ``i mod shards``;
- **by row range** otherwise: with T the rows of all objects (Parquet: from the footers; CSV and
  JSON lines: one streaming counting pass) shard i takes global rows
  ``[T*i // shards, T*(i+1) // shards)``.

Either way every row is scored by exactly one shard, whatever the attempt. Reading streams with
pyarrow (``csv.open_csv``, ``parquet.ParquetFile.iter_batches``, ``json.open_json``) in blocks of
about :data:`BLOCK_SIZE` bytes, so memory stays flat whatever the input size; the part is written
batch by batch to a local file and uploaded (multipart) when complete.

Output: ``output_uri/part-{shard:05d}.{format}`` with the id column (``id_column`` when given,
else ``row``: the row number within its object, plus ``object`` when the input is a prefix)
beside ``prediction`` (``prediction_<k>`` per class for multi-class models). Each part carries
its rows and sha256 in its S3 metadata; the shard that finds every part present writes
``output_uri/_manifest.json`` ``{rows, model_version, parts: [{key, rows, sha256}]}`` and the
total ``rows`` on the record (the workflow records SUCCEEDED).

Every attempt adds 1 to the record's ``attempts``. Exit 0 only when this shard's part is written;
any failure exits 1 (AWS Batch retries per the job definition) without touching the status.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from aws_lambda_powertools import Logger

from runtime import contract
from runtime.context import RuntimeContext
from runtime.jobs import ACTIVE_STATUSES, Job, TransitionRejected
from runtime.model import LoadedModel, parse_s3_uri

EXIT_SUCCEEDED: Final = 0
EXIT_FAILED: Final = 1
BLOCK_SIZE: Final = 8 * 1024 * 1024  # bytes per CSV/JSON read block (rows per batch follow)
PARQUET_BATCH_ROWS: Final = 65_536
ROW_COLUMN: Final = "row"
OBJECT_COLUMN: Final = "object"
PREDICTION_COLUMN: Final = "prediction"
META_ROWS: Final = "rows"  # S3 user metadata of a part
META_SHA256: Final = "sha256"

logger = Logger(service=contract.SERVICE_NAME)


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
    """Streams record batches of S3 objects of one format (downloads Parquet to a temp file:
    it needs random access; CSV and JSON lines stream straight from the response body)."""

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
        # Types are fixed, not inferred per block: a column whose first block holds only
        # integers must still read a later 1.5 (features float64; a CSV id column text).
        self.types: dict[str, pa.DataType] = dict.fromkeys(features, pa.float64())
        if id_column and id_column not in self.types and fmt == "csv":
            self.types[id_column] = pa.string()

    def _body(self, key: str) -> Any:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        except Exception as exc:
            raise BatchFailure(f"cannot read s3://{self.bucket}/{key}: {exc}") from exc

    @contextlib.contextmanager
    def _parquet(self, key: str) -> Iterator[pq.ParquetFile]:
        fd, name = tempfile.mkstemp(dir=self.workdir, suffix=".parquet")
        os.close(fd)
        try:
            self.s3.download_file(self.bucket, key, name)
            with pq.ParquetFile(name) as pf:
                yield pf
        finally:
            Path(name).unlink(missing_ok=True)

    def count(self, key: str, size: int) -> int:
        if size == 0:
            return 0
        if self.fmt == "parquet":
            with self._parquet(key) as pf:
                return int(pf.metadata.num_rows)
        return sum(batch.num_rows for batch in self.batches(key))

    def batches(self, key: str, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        try:
            if self.fmt == "parquet":
                with self._parquet(key) as pf:
                    yield from pf.iter_batches(
                        batch_size=PARQUET_BATCH_ROWS, columns=list(columns) if columns else None
                    )
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
            for batch in reader:
                yield batch.select(list(columns)) if columns else batch
        except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError, OSError) as exc:
            raise BatchFailure(
                f"cannot read s3://{self.bucket}/{key} as {self.fmt}: {exc}"
            ) from exc

    def slice(self, part: Slice, columns: Sequence[str]) -> Iterator[tuple[int, pa.RecordBatch]]:
        """``(row number within the object, batch)`` of the rows of ``part``."""
        offset = 0
        for batch in self.batches(part.key, columns):
            n = batch.num_rows
            lo = max(part.start - offset, 0)
            hi = n if part.stop is None else min(part.stop - offset, n)
            if lo < hi:
                yield offset + lo, batch.slice(lo, hi - lo)
            offset += n
            if part.stop is not None and offset >= part.stop:
                break


# --- scoring ------------------------------------------------------------------------------------


def feature_matrix(
    batch: pa.RecordBatch, features: Sequence[str], allow_missing: bool
) -> np.ndarray:
    """The batch's feature columns (model order) as float32; nulls are NaN (missing)."""
    columns = []
    for name in features:
        try:
            column = batch.column(name)
        except KeyError:
            raise BatchFailure(f"the input has no feature column {name!r}") from None
        try:
            values = pc.cast(column, pa.float32())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise BatchFailure(f"feature column {name!r} is not numeric: {exc}") from exc
        if values.null_count and not allow_missing:
            raise BatchFailure(f"feature column {name!r} has missing values (ALLOW_MISSING is off)")
        columns.append(values.to_numpy(zero_copy_only=False))
    matrix = np.column_stack(columns).astype(np.float32, copy=False) if columns else None
    if matrix is None:
        raise BatchFailure("the model has no features")
    if not allow_missing and not np.isfinite(matrix).all():
        raise BatchFailure("the input has non-finite feature values (ALLOW_MISSING is off)")
    return matrix


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
    model: LoadedModel,
    s3: Any,
    shard: int,
    *,
    allow_missing: bool = False,
    workdir: Path | None = None,
) -> ShardResult:
    """Score shard ``shard`` of ``job`` and upload its part; see the module docstring."""
    if not job.input_uri or not job.output_uri or not job.format:
        raise BatchFailure("the job record has no input_uri, output_uri or format")
    shards = int(job.shards or 1)
    if not 0 <= shard < shards:
        raise BatchFailure(f"shard {shard} is outside the job's {shards} shard(s)")
    fmt = job.format
    out_bucket, out_prefix = parse_s3_uri(job.output_uri)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmpdir = Path(tmp)
        bucket, objects = list_input(s3, job.input_uri)
        features = list(model.info.feature_names)
        reader = Reader(s3, bucket, fmt, tmpdir, features=features, id_column=job.id_column)
        if len(objects) >= shards:
            slices = split_objects(objects, shard, shards)
        else:
            counts = [(o.key, reader.count(o.key, o.size)) for o in objects]
            slices = split_rows(counts, shard, shards)
        features = list(model.info.feature_names)
        id_column = job.id_column
        columns = [*features, id_column] if id_column and id_column not in features else features
        with_object = job.input_uri.endswith("/") and not id_column
        part_path = tmpdir / contract.part_name(shard, fmt)
        writer = PartWriter(part_path, fmt)
        for piece in slices:
            for first_row, batch in reader.slice(piece, columns):
                predictions = model.predict(feature_matrix(batch, features, allow_missing))
                if id_column:
                    try:
                        ids, id_names = [batch.column(id_column)], [id_column]
                    except KeyError:
                        raise BatchFailure(f"the input has no id column {id_column!r}") from None
                else:
                    rows = pa.array(
                        np.arange(first_row, first_row + batch.num_rows, dtype=np.int64)
                    )
                    ids, id_names = [rows], [ROW_COLUMN]
                    if with_object:
                        ids.insert(0, pa.array([piece.key] * batch.num_rows, pa.string()))
                        id_names.insert(0, OBJECT_COLUMN)
                writer.write(_output_table(ids, id_names, np.asarray(predictions)))
        empty = _output_table(
            [pa.array([], pa.string())] * (1 if id_column else 0)
            + ([pa.array([], pa.string())] if with_object else [])
            + ([] if id_column else [pa.array([], pa.int64())]),
            ([id_column] if id_column else [])
            + ([OBJECT_COLUMN] if with_object else [])
            + ([] if id_column else [ROW_COLUMN]),
            np.zeros((0,) if model.info.num_class <= 2 else (0, model.info.num_class), np.float32),
        ).schema
        writer.close(empty)
        digest = _sha256(part_path)
        key = f"{out_prefix}{contract.part_name(shard, fmt)}"
        s3.upload_file(
            str(part_path),
            out_bucket,
            key,
            ExtraArgs={"Metadata": {META_ROWS: str(writer.rows), META_SHA256: digest}},
        )
    return ShardResult(key, writer.rows, digest)


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
        model = ctx.models.get()
        s3 = ctx.client("s3")
        result = score_shard(job, model, s3, shard, allow_missing=ctx.allow_missing)
        logger.info("part written", extra={"key": result.key, "rows": result.rows})
        manifest = write_manifest_if_complete(job, s3)
        if manifest is not None:
            logger.info("manifest written", extra={"rows": manifest["rows"]})
            try:
                store.update(job_id, {"rows": manifest["rows"]}, statuses=ACTIVE_STATUSES)
            except TransitionRejected as exc:
                logger.warning("the job finished meanwhile", extra={"status": exc.current})
    except BatchFailure as exc:
        logger.error("batch scoring failed", extra={"reason": str(exc)})
        return EXIT_FAILED
    except Exception:
        logger.exception("batch scoring failed")
        return EXIT_FAILED
    return EXIT_SUCCEEDED
