"""Batch mode of the scoring entrypoint (runtime/scoring/batch.py): ``main(["--mode", "batch"])``
in-process against moto, once per shard as AWS Batch array children would run it."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest

from mlserve.train import TrainResult, load_example_data
from runtime import contract, jobs
from runtime.jobs import Job, JobStore
from runtime.scoring import batch as scoring_batch
from runtime.scoring import main
from tests.runtime.jobenv import (
    BUCKET,
    REGION,
    TABLE,
    create_job_table,
    deploy_model,
    reference,
    scoring_env,
)

FEATURES = [name for name in load_example_data().feature_names]


def make_rows(n: int, seed: int = 7) -> np.ndarray:
    """``n`` float32 rows around the example data (exactly representable in every format)."""
    data = load_example_data().x
    rng = np.random.default_rng(seed)
    picked = data[rng.integers(0, len(data), n)]
    noise = rng.normal(1.0, 0.05, picked.shape)
    return (picked * noise).astype(np.float32)


def table(rows: np.ndarray, ids: np.ndarray | None = None) -> pa.Table:
    columns = {name: pa.array(rows[:, i].astype(np.float64)) for i, name in enumerate(FEATURES)}
    if ids is not None:
        columns = {"id": pa.array([f"r{i}" for i in ids]), **columns}
    return pa.table(columns)


def encode(tbl: pa.Table, fmt: str, row_group_size: int = 1000) -> bytes:
    sink = io.BytesIO()
    if fmt == "csv":
        pacsv.write_csv(tbl, sink)
    elif fmt == "parquet":
        pq.write_table(tbl, sink, row_group_size=row_group_size)
    else:
        for row in tbl.to_pylist():
            sink.write((json.dumps(row) + "\n").encode())
    return sink.getvalue()


def decode(body: bytes, fmt: str) -> pa.Table:
    if fmt == "csv":
        return pacsv.read_csv(io.BytesIO(body))
    if fmt == "parquet":
        return pq.read_table(io.BytesIO(body))
    if not body:
        return pa.table({})
    return pajson.read_json(io.BytesIO(body))


@dataclass
class Deployed:
    env: dict[str, str]
    store: JobStore
    s3: Any
    model: TrainResult

    def submit(self, **attributes: Any) -> Job:
        job = self.store.new_job(
            jobs.new_job_id(),
            architecture="stepfunctions-batch",
            model_version="abc123",
            **attributes,
        )
        self.store.create(job)
        self.store.transition(job.job_id, contract.STATUS_RUNNING)
        return job

    def run(
        self, job: Job, shard: int | None, clients: dict[str, Any] | None = None, **env: str
    ) -> int:
        extra = {} if shard is None else {contract.ENV_BATCH_ARRAY_INDEX: str(shard)}
        return main(
            ["--mode", "batch"],
            env={**self.env, contract.ENV_JOB_ID: job.job_id, **extra, **env},
            clients=clients,
        )

    def put(self, key: str, body: bytes) -> str:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        return f"s3://{BUCKET}/{key}"

    def get(self, key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    def parts(self, job: Job, shards: int) -> list[pa.Table]:
        prefix = jobs.parse_s3_uri(job.output_uri or "")[1]
        fmt = job.format or ""
        return [
            decode(self.get(f"{prefix}{contract.part_name(i, fmt)}"), fmt) for i in range(shards)
        ]

    def manifest(self, job: Job) -> dict[str, Any]:
        prefix = jobs.parse_s3_uri(job.output_uri or "")[1]
        return dict(json.loads(self.get(f"{prefix}{contract.MANIFEST_NAME}")))

    def has_manifest(self, job: Job) -> bool:
        prefix = jobs.parse_s3_uri(job.output_uri or "")[1]
        listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix + contract.MANIFEST_NAME)
        return bool(listed.get("KeyCount"))


@pytest.fixture
def deployed(s3: Any, example_model: TrainResult, tmp_path: Path) -> Deployed:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_job_table(dynamodb)
    env = scoring_env(deploy_model(s3, example_model), tmp_path / "cache")
    return Deployed(env, JobStore(dynamodb, TABLE), s3, example_model)


def union(parts: Sequence[pa.Table]) -> pa.Table:
    return pa.concat_tables([p for p in parts if p.num_rows], promote_options="default")


# --- the split ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shards", [1, 2, 3, 7, 10, 64])
def test_row_ranges_cover_every_row_exactly_once(shards: int) -> None:
    counts = [("a", 10), ("b", 0), ("c", 33), ("d", 1)]
    seen: list[tuple[str, int]] = []
    for shard in range(shards):
        for piece in scoring_batch.split_rows(counts, shard, shards):
            assert piece.stop is not None
            seen.extend((piece.key, r) for r in range(piece.start, piece.stop))
    assert sorted(seen) == sorted((k, r) for k, n in counts for r in range(n))
    assert scoring_batch.split_rows(counts, 0, shards) == scoring_batch.split_rows(
        counts, 0, shards
    )


def test_objects_are_dealt_round_robin() -> None:
    objects = [scoring_batch.InputObject(f"k{i}", 1) for i in range(5)]
    dealt = [[s.key for s in scoring_batch.split_objects(objects, i, 2)] for i in range(2)]
    assert dealt == [["k0", "k2", "k4"], ["k1", "k3"]]


# --- end to end, per format ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_a_single_object_split_by_rows_keeps_ids_and_matches_booster_predict(
    deployed: Deployed, fmt: str
) -> None:
    n, shards = 2500, 4
    rows = make_rows(n)
    ids = np.random.default_rng(1).permutation(n)
    uri = deployed.put(f"inputs/data.{fmt}", encode(table(rows, ids), fmt, row_group_size=300))
    job = deployed.submit(
        input_uri=uri,
        output_uri=f"s3://{BUCKET}/results/out-{fmt}/",
        format=fmt,
        shards=shards,
        id_column="id",
    )
    for shard in range(shards):
        assert deployed.run(job, shard) == 0
    parts = deployed.parts(job, shards)
    assert [p.num_rows for p in parts] == [625] * 4
    scored = union(parts)
    assert scored.column_names == ["id", "prediction"]
    got = dict(
        zip(scored.column("id").to_pylist(), scored.column("prediction").to_pylist(), strict=True)
    )
    assert len(got) == n == scored.num_rows  # every id exactly once
    expected = reference(deployed.model, rows)
    want = {f"r{i}": float(p) for i, p in zip(ids, expected, strict=True)}
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[k] for k in want], list(want.values()), atol=1e-6)
    manifest = deployed.manifest(job)
    assert manifest["rows"] == n and manifest["model_version"] == "abc123"
    assert [p["rows"] for p in manifest["parts"]] == [625] * 4
    import hashlib

    prefix = f"results/out-{fmt}/"
    for i, part in enumerate(manifest["parts"]):
        assert part["key"] == f"{prefix}{contract.part_name(i, fmt)}"
        assert part["sha256"] == hashlib.sha256(deployed.get(part["key"])).hexdigest()
    record = deployed.store.require(job.job_id)
    assert record.rows == n and record.attempts == shards
    assert record.status == contract.STATUS_RUNNING  # SUCCEEDED is the workflow's to record


def test_a_prefix_split_by_object_keeps_object_and_row_number(deployed: Deployed) -> None:
    sizes = [100, 250, 50]
    all_rows = []
    for i, size in enumerate(sizes):
        rows = make_rows(size, seed=i)
        all_rows.append(rows)
        deployed.put(f"inputs/day/part-{i}.parquet", encode(table(rows), "parquet"))
    deployed.put("inputs/day/", b"")  # a "directory" marker is not an input
    job = deployed.submit(
        input_uri=f"s3://{BUCKET}/inputs/day/",
        output_uri=f"s3://{BUCKET}/results/day/",
        format="parquet",
        shards=2,
    )
    assert deployed.run(job, 1) == 0
    assert not deployed.has_manifest(job)  # shard 0 is not done yet
    assert deployed.run(job, 0) == 0
    parts = deployed.parts(job, 2)
    assert [p.num_rows for p in parts] == [150, 250]
    scored = union(parts)
    assert scored.column_names == ["object", "row", "prediction"]
    keys = list(
        zip(scored.column("object").to_pylist(), scored.column("row").to_pylist(), strict=True)
    )
    assert sorted(keys) == sorted(
        (f"inputs/day/part-{i}.parquet", r) for i, size in enumerate(sizes) for r in range(size)
    )
    for obj, row, pred in zip(
        *(scored.column(c).to_pylist() for c in scored.column_names), strict=True
    ):
        i = int(obj.rsplit("-", 1)[1].split(".")[0])
        assert abs(pred - float(reference(deployed.model, all_rows[i][row : row + 1])[0])) < 1e-6
    assert deployed.manifest(job)["rows"] == 400


def test_more_shards_than_rows_writes_empty_parts_and_the_manifest(deployed: Deployed) -> None:
    rows = make_rows(3)
    uri = deployed.put("inputs/tiny.jsonl", encode(table(rows), "jsonl"))
    job = deployed.submit(
        input_uri=uri, output_uri=f"s3://{BUCKET}/results/tiny/", format="jsonl", shards=5
    )
    for shard in range(5):
        assert deployed.run(job, shard) == 0
    assert [p["rows"] for p in deployed.manifest(job)["parts"]] == [0, 1, 0, 1, 1]
    scored = union(deployed.parts(job, 5))
    assert sorted(scored.column("row").to_pylist()) == [0, 1, 2]


def test_a_non_array_job_is_shard_0_of_1(deployed: Deployed) -> None:
    uri = deployed.put("inputs/one.csv", encode(table(make_rows(10)), "csv"))
    job = deployed.submit(
        input_uri=uri, output_uri=f"s3://{BUCKET}/results/one/", format="csv", shards=1
    )
    assert deployed.run(job, None) == 0
    assert deployed.manifest(job)["rows"] == 10


def test_a_retried_shard_rewrites_the_same_part_and_counts_the_attempt(deployed: Deployed) -> None:
    uri = deployed.put("inputs/r.csv", encode(table(make_rows(40)), "csv"))
    job = deployed.submit(
        input_uri=uri, output_uri=f"s3://{BUCKET}/results/r/", format="csv", shards=2
    )
    assert deployed.run(job, 0, AWS_BATCH_JOB_ATTEMPT="1") == 0
    first = deployed.get("results/r/part-00000.csv")
    assert deployed.run(job, 0, AWS_BATCH_JOB_ATTEMPT="2") == 0
    assert deployed.get("results/r/part-00000.csv") == first
    assert deployed.run(job, 1) == 0
    assert deployed.store.require(job.job_id).attempts == 3
    assert deployed.manifest(job)["rows"] == 40


# --- failures -----------------------------------------------------------------------------------


def test_a_missing_feature_column_fails_the_shard_without_a_part(deployed: Deployed) -> None:
    tbl = table(make_rows(20)).drop_columns([FEATURES[3]])
    uri = deployed.put("inputs/bad.csv", encode(tbl, "csv"))
    job = deployed.submit(
        input_uri=uri, output_uri=f"s3://{BUCKET}/results/bad/", format="csv", shards=1
    )
    assert deployed.run(job, 0) == 1
    assert "Contents" not in deployed.s3.list_objects_v2(Bucket=BUCKET, Prefix="results/bad/")
    assert deployed.store.require(job.job_id).status == contract.STATUS_RUNNING


@pytest.mark.parametrize(
    ("attributes", "shard"),
    [
        ({"input_uri": f"s3://{BUCKET}/inputs/absent.csv"}, 0),
        ({"input_uri": f"s3://{BUCKET}/inputs/empty/"}, 0),
        ({}, 2),  # outside the shards
        ({}, None),  # an array job without AWS_BATCH_JOB_ARRAY_INDEX
    ],
)
def test_unusable_inputs_exit_1(
    deployed: Deployed, attributes: dict[str, Any], shard: int | None
) -> None:
    uri = deployed.put("inputs/ok.csv", encode(table(make_rows(5)), "csv"))
    values = {
        "input_uri": uri,
        "output_uri": f"s3://{BUCKET}/results/x/",
        "format": "csv",
        "shards": 2,
    }
    job = deployed.submit(**{**values, **attributes})
    assert deployed.run(job, shard) == 1


def test_a_cancelled_job_is_not_scored(deployed: Deployed) -> None:
    uri = deployed.put("inputs/c.csv", encode(table(make_rows(5)), "csv"))
    job = deployed.submit(
        input_uri=uri, output_uri=f"s3://{BUCKET}/results/c/", format="csv", shards=1
    )
    deployed.store.transition(job.job_id, contract.STATUS_CANCELLED)
    assert deployed.run(job, 0) == 1
    assert "Contents" not in deployed.s3.list_objects_v2(Bucket=BUCKET, Prefix="results/c/")


def test_missing_values_need_allow_missing(deployed: Deployed) -> None:
    rows = make_rows(6)
    rows[2, 4] = np.nan
    uri = deployed.put("inputs/m.parquet", encode(table(rows), "parquet"))
    job = deployed.submit(
        input_uri=uri, output_uri=f"s3://{BUCKET}/results/m/", format="parquet", shards=1
    )
    assert deployed.run(job, 0) == 1
    assert deployed.run(job, 0, ALLOW_MISSING="true") == 0
    scored = union(deployed.parts(job, 1))
    np.testing.assert_allclose(
        scored.column("prediction").to_pylist(), reference(deployed.model, rows), atol=1e-6
    )


# --- memory -------------------------------------------------------------------------------------


def test_memory_stays_flat_on_a_large_csv(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300,000 rows (~70 MB of CSV) in 256 KiB read blocks: Arrow never holds more than a few
    blocks, and each prediction call sees one block's rows."""
    n = 300_000
    rows = np.tile(make_rows(1000), (n // 1000, 1))
    body = encode(table(rows, np.arange(n)), "csv")
    uri = deployed.put("inputs/large.csv", body)
    job = deployed.submit(
        input_uri=uri,
        output_uri=f"s3://{BUCKET}/results/large/",
        format="csv",
        shards=2,
        id_column="id",
    )
    monkeypatch.setattr(scoring_batch, "BLOCK_SIZE", 256 * 1024)
    peaks: list[int] = []
    batch_rows: list[int] = []
    original = scoring_batch.feature_matrix

    def watched(batch: pa.RecordBatch, *args: Any) -> np.ndarray:
        peaks.append(pa.total_allocated_bytes())
        batch_rows.append(batch.num_rows)
        return original(batch, *args)

    monkeypatch.setattr(scoring_batch, "feature_matrix", watched)
    for shard in range(2):
        assert deployed.run(job, shard) == 0
    assert deployed.manifest(job)["rows"] == n
    assert len(batch_rows) > 50 and max(batch_rows) < 5000
    assert max(peaks) < len(body) // 10, (max(peaks), len(body))
    ids = union(deployed.parts(job, 2)).column("id").to_pylist()
    assert len(ids) == n and len(set(ids)) == n


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_types_do_not_change_between_blocks(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """Integers only in the first read block, fractions later: the columns stay float64."""
    rows = make_rows(3000)
    rows[:1500] = np.round(rows[:1500])
    uri = deployed.put(f"inputs/mixed.{fmt}", encode(table(rows, np.arange(3000)), fmt))
    monkeypatch.setattr(scoring_batch, "BLOCK_SIZE", 64 * 1024)
    job = deployed.submit(
        input_uri=uri,
        output_uri=f"s3://{BUCKET}/results/mixed-{fmt}/",
        format=fmt,
        shards=1,
        id_column="id",
    )
    assert deployed.run(job, 0) == 0
    scored = union(deployed.parts(job, 1))
    np.testing.assert_allclose(
        scored.column("prediction").to_pylist(), reference(deployed.model, rows), atol=1e-6
    )


# --- streaming: batch boundaries, row groups, headers -------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_row_numbers_and_predictions_survive_batch_and_row_group_boundaries(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """1000 rows in row groups of 300 (Parquet) or ~8 KiB blocks (CSV), batches of 70 rows,
    3 shards: each shard starts inside a row group/block; every row is scored once, under its
    own row number, with the prediction XGBoost gives that row."""
    n, shards = 1000, 3
    rows = make_rows(n, seed=11)
    monkeypatch.setattr(scoring_batch, "PARQUET_BATCH_ROWS", 70)
    monkeypatch.setattr(scoring_batch, "BLOCK_SIZE", 8 * 1024)
    uri = deployed.put(f"inputs/bounds.{fmt}", encode(table(rows), fmt, row_group_size=300))
    job = deployed.submit(
        input_uri=uri, output_uri=f"s3://{BUCKET}/results/bounds/", format=fmt, shards=shards
    )
    for shard in range(shards):
        assert deployed.run(job, shard) == 0
    parts = deployed.parts(job, shards)
    assert [p.num_rows for p in parts] == [333, 333, 334]
    assert [p.column("row").to_pylist() for p in parts] == [
        list(range(0, 333)),
        list(range(333, 666)),
        list(range(666, 1000)),
    ]
    scored = union(parts)
    np.testing.assert_allclose(
        scored.column("prediction").to_pylist(), reference(deployed.model, rows), atol=1e-6
    )


class CountingS3:
    """The moto S3 client, counting the bytes each GetObject of ``key`` returned."""

    def __init__(self, s3: Any, key: str) -> None:
        self._s3, self._key = s3, key
        self.fetched: list[int] = []

    def get_object(self, **kwargs: Any) -> Any:
        response = self._s3.get_object(**kwargs)
        if kwargs["Key"] == self._key:
            self.fetched.append(int(response["ContentLength"]))
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)


def test_a_parquet_shard_downloads_only_the_row_groups_of_its_rows(deployed: Deployed) -> None:
    """Split by row range, each of 4 shards fetches the footer and the byte span of its own row
    groups (about a quarter of the object), not the whole object, and scores exactly its rows."""
    n, shards = 4000, 4
    rows = make_rows(n, seed=13)
    body = encode(table(rows), "parquet", row_group_size=250)
    key = "inputs/spans.parquet"
    uri = deployed.put(key, body)
    job = deployed.submit(
        input_uri=uri, output_uri=f"s3://{BUCKET}/results/spans/", format="parquet", shards=shards
    )
    for shard in range(shards):
        s3 = CountingS3(deployed.s3, key)
        assert deployed.run(job, shard, clients={"s3": s3}) == 0
        footer_read, span = s3.fetched  # a ranged GET of the tail, then one of the row groups
        assert footer_read <= scoring_batch.FOOTER_GUESS
        assert span < 0.3 * len(body), (shard, s3.fetched, len(body))
    parts = deployed.parts(job, shards)
    assert [p.column("row").to_pylist() for p in parts] == [
        list(range(i * 1000, (i + 1) * 1000)) for i in range(shards)
    ]
    np.testing.assert_allclose(
        union(parts).column("prediction").to_pylist(), reference(deployed.model, rows), atol=1e-6
    )


def test_a_parquet_footer_plans_the_byte_span_of_a_slice(tmp_path: Path) -> None:
    """The span of a slice covers its row groups' column chunks and nothing of the others; a
    slice of every row group (or of none) downloads the whole object."""
    body = encode(table(make_rows(1000, seed=2)), "parquet", row_group_size=300)
    meta = pq.read_metadata(pa.BufferReader(body))
    tail_length = int.from_bytes(body[-8:-4], "little") + 8
    footer = scoring_batch.ParquetFooter(len(body), body[-tail_length:], meta)

    def group_bytes(i: int) -> tuple[int, int]:
        chunks = [meta.row_group(i).column(j) for j in range(meta.row_group(i).num_columns)]
        starts = [
            min(c.data_page_offset, c.dictionary_page_offset or c.data_page_offset) for c in chunks
        ]
        ends = [s + c.total_compressed_size for s, c in zip(starts, chunks, strict=True)]
        return min(starts), max(ends)

    Slice = scoring_batch.Slice
    assert footer.row_group_rows == [300, 300, 300, 100]
    assert footer.span(Slice("k", 300, 600)) == group_bytes(1)
    assert footer.span(Slice("k", 299, 601)) == (group_bytes(0)[0], group_bytes(2)[1])
    assert footer.span(Slice("k", 650)) == (group_bytes(2)[0], group_bytes(3)[1])
    assert footer.span(Slice("k")) is None
    assert footer.span(Slice("k", 0, 1000)) is None
    assert footer.span(Slice("k", 1000, 1000)) is None


def test_csv_columns_are_found_by_header_name_whatever_their_order(deployed: Deployed) -> None:
    """Features in reverse order, an extra column, and text ids that look like numbers ("007"):
    columns are matched by header name and the ids come back exactly as written."""
    rows = make_rows(50, seed=3)
    reversed_features = {name: rows[:, i] for i, name in reversed(list(enumerate(FEATURES)))}
    tbl = pa.table(
        {
            "note": pa.array(['x, "quoted"'] * 50),
            **{k: pa.array(v.astype(np.float64)) for k, v in reversed_features.items()},
            "id": pa.array([f"{i:03d}" for i in range(50)]),
        }
    )
    uri = deployed.put("inputs/order.csv", encode(tbl, "csv"))
    job = deployed.submit(
        input_uri=uri,
        output_uri=f"s3://{BUCKET}/results/order/",
        format="csv",
        shards=1,
        id_column="id",
    )
    assert deployed.run(job, 0) == 0
    body = deployed.get(f"results/order/{contract.part_name(0, 'csv')}").decode()
    header, first = body.splitlines()[:2]
    assert header == '"id","prediction"'
    assert first.startswith('"000",')
    scored = pacsv.read_csv(
        io.BytesIO(body.encode()),
        convert_options=pacsv.ConvertOptions(column_types={"id": pa.string()}),
    )
    assert scored.column("id").to_pylist() == [f"{i:03d}" for i in range(50)]
    np.testing.assert_allclose(
        scored.column("prediction").to_pylist(), reference(deployed.model, rows), atol=1e-6
    )


def test_parquet_row_counts_come_from_the_footer(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The row-range split of a Parquet object reads its footer with ranged GETs (a footer
    longer than the first guess takes a second read) and counts what the footer says."""
    rows = make_rows(1234, seed=5)
    body = encode(table(rows), "parquet", row_group_size=200)
    uri = deployed.put("inputs/footer.parquet", body)
    monkeypatch.setattr(scoring_batch, "FOOTER_GUESS", 64)
    reader = scoring_batch.Reader(deployed.s3, BUCKET, "parquet", tmp_path)
    try:
        sizes = reader.parquet_rows(uri.split("/", 3)[3], len(body))
        assert sizes == [200] * 6 + [34]
        assert reader.count("inputs/footer.parquet", len(body)) == 1234
        not_parquet = deployed.put("inputs/not.parquet", b"a,b\n1,2\n")
        with pytest.raises(scoring_batch.BatchFailure, match="not a Parquet file"):
            reader.parquet_rows(not_parquet.split("/", 3)[3], 8)
    finally:
        reader.close()
    assert list(tmp_path.iterdir()) == []  # nothing downloaded


def test_feature_matrix_orders_converts_and_checks_columns() -> None:
    batch = pa.record_batch(
        {
            "b": pa.array([1, 2, None], pa.int64()),
            "a": pa.array([0.5, 1.5, 2.5], pa.float64()),
            "c": pa.array([0.25, None, 1.0], pa.float32()),
        }
    )
    matrix = scoring_batch.feature_matrix(batch, ["a", "b", "c"], True)
    assert matrix.dtype == np.float32 and matrix.flags.c_contiguous
    np.testing.assert_array_equal(
        matrix, np.array([[0.5, 1, 0.25], [1.5, 2, np.nan], [2.5, np.nan, 1.0]], np.float32)
    )
    with pytest.raises(scoring_batch.BatchFailure, match="'b' has missing values"):
        scoring_batch.feature_matrix(batch, ["a", "b"], False)
    with pytest.raises(scoring_batch.BatchFailure, match="no feature column 'z'"):
        scoring_batch.feature_matrix(batch, ["a", "z"], True)
    text = pa.record_batch({"a": pa.array(["1.5", "oops"])})
    with pytest.raises(scoring_batch.BatchFailure, match="'a' is not numeric"):
        scoring_batch.feature_matrix(text, ["a"], False)


def test_read_ahead_keeps_order_raises_producer_errors_and_stops_early() -> None:
    assert list(scoring_batch.read_ahead(iter(range(100)), depth=2)) == list(range(100))

    def failing() -> Any:
        yield 1
        raise scoring_batch.BatchFailure("bad block")

    got: list[int] = []
    with pytest.raises(scoring_batch.BatchFailure, match="bad block"):
        for item in scoring_batch.read_ahead(failing()):
            got.append(item)
    assert got == [1]

    produced: list[int] = []
    closed: list[bool] = []

    def endless() -> Any:
        try:
            for i in range(10**9):
                produced.append(i)
                yield i
        finally:
            closed.append(True)

    for item in scoring_batch.read_ahead(endless(), depth=2):
        if item == 5:
            break
    assert closed == [True]  # the producer was stopped and its generator closed
    assert len(produced) <= 5 + 1 + 2 + 1  # at most the queue's depth ahead


# --- small jobs answered inline (issue 16) -------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_a_small_one_object_job_records_its_predictions_inline_in_row_order(
    deployed: Deployed, fmt: str
) -> None:
    rows = make_rows(7)
    uri = deployed.put(f"inputs/small.{fmt}", encode(table(rows), fmt))
    job = deployed.submit(
        input_uri=uri, output_uri=f"s3://{BUCKET}/results/small-{fmt}/", format=fmt, shards=3
    )
    for shard in (2, 0, 1):  # the shard that completes the manifest reads every part back
        assert deployed.run(job, shard) == 0
    record = deployed.store.require(job.job_id)
    assert record.rows == 7 and record.predictions is not None
    np.testing.assert_allclose(
        json.loads(record.predictions), reference(deployed.model, rows), atol=1e-6
    )


def test_an_id_column_or_a_prefix_keeps_the_result_in_the_parts_only(deployed: Deployed) -> None:
    rows = make_rows(5)
    uri = deployed.put("inputs/ided.csv", encode(table(rows, np.arange(5)), "csv"))
    ided = deployed.submit(
        input_uri=uri, output_uri=f"s3://{BUCKET}/results/ided/", format="csv", id_column="id"
    )
    deployed.put("inputs/dir/a.csv", encode(table(rows), "csv"))
    prefix = deployed.submit(
        input_uri=f"s3://{BUCKET}/inputs/dir/",
        output_uri=f"s3://{BUCKET}/results/dir/",
        format="csv",
    )
    for job in (ided, prefix):
        assert deployed.run(job, None) == 0
        record = deployed.store.require(job.job_id)
        assert record.rows == 5 and record.predictions is None
