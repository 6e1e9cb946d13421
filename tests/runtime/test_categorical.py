"""Categorical features: category values in every request form and in batch files are recoded
with the categories the model stores (or metadata.json records), as XGBoost recodes a DataFrame.

The reference is always XGBoost itself: ``Booster.predict`` on an Arrow table whose
dictionary-encoded column holds the category strings (XGBoost's own re-coding).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import xgboost as xgb

from components.compatibility import model_metadata
from runtime import contract, jobs
from runtime.categories import Categories, model_categories
from runtime.context import version_of_uri
from runtime.jobs import JobStore, parse_job_request
from runtime.model import describe_booster, model_info
from runtime.payload import FeatureSchema, Limits, PayloadError, parse_body
from runtime.scoring import batch as scoring_batch
from runtime.scoring import main
from runtime.scoring.job import load_rows
from tests import model_zoo
from tests.runtime.jobenv import BUCKET, REGION, TABLE, create_job_table, scoring_env

LIMITS = Limits(max_rows=100)


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    return model_zoo.train_categorical()


@pytest.fixture(scope="module")
def schema(booster: xgb.Booster) -> FeatureSchema:
    info = model_info(describe_booster(booster), "m", "v", "0" * 64, contract.ENGINE_XGBOOST)
    return FeatureSchema.of_model(info)


def xgboost_says(booster: xgb.Booster, x: list[float], color: list[str | None]) -> np.ndarray:
    table = pa.table({"x": x, "color": pa.array(color, pa.string()).dictionary_encode()})
    return np.asarray(booster.predict(xgb.DMatrix(table, enable_categorical=True)))


def test_the_categories_read_from_the_model_are_those_xgboost_stores(
    booster: xgb.Booster,
) -> None:
    document = json.loads(bytes(booster.save_raw("json")))
    stored = dict(booster.get_categories(export_to_arrow=True).to_arrow())
    assert model_categories(document, booster.feature_names or []) == {
        "color": stored["color"].to_pylist()
    }
    assert stored["x"] is None


@pytest.mark.parametrize("form", ["lists", "objects", "csv", "csv-no-header"])
def test_every_request_form_recodes_like_xgboost(
    booster: xgb.Booster, schema: FeatureSchema, form: str
) -> None:
    x = [0.3, -1.2, 2.0, 0.0, -0.1]
    color = ["red", "blue", "violet", "green", "red"]
    if form == "lists":
        body = json.dumps({"instances": [[a, b] for a, b in zip(x, color, strict=True)]})
    elif form == "objects":
        body = json.dumps(
            {"instances": [{"color": b, "x": a} for a, b in zip(x, color, strict=True)]}
        )
    elif form == "csv":  # a header, columns in another order
        body = "\n".join(["color,x", *(f"{b},{a}" for a, b in zip(x, color, strict=True))])
    else:
        body = "\n".join(f"{a},{b}" for a, b in zip(x, color, strict=True))
    kind = "text/csv" if form.startswith("csv") else "application/json"
    rows = parse_body(body, kind, schema, LIMITS)
    served = booster.inplace_predict(rows)
    np.testing.assert_array_equal(served, xgboost_says(booster, x, color))


@pytest.mark.parametrize(
    ("body", "code", "fragments"),
    [
        (
            '{"instances": [{"x": 1, "color": "purple"}]}',
            "unknown_category",
            ["'color'", "'purple'"],
        ),
        ('{"instances": [[1, "Red"]]}', "unknown_category", ["instances[0]", "'Red'"]),
        ('{"instances": [[1, 0]]}', "invalid_value", ["'color'", "not a category name"]),
        ('{"instances": [[1, true]]}', "invalid_value", ["'color'", "a boolean"]),
        ('{"instances": [{"x": 1, "color": null}]}', "invalid_value", ["null or missing"]),
        ('{"instances": [{"x": "1", "color": "red"}]}', "invalid_value", ["'x'", "not a number"]),
    ],
)
def test_a_bad_category_is_a_400_naming_the_feature_and_the_value(
    schema: FeatureSchema, body: str, code: str, fragments: list[str]
) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_body(body, "application/json", schema, LIMITS)
    assert caught.value.status == 400 and caught.value.code == code
    for fragment in fragments:
        assert fragment in caught.value.message


def test_unknown_categories_and_nulls_are_missing_where_configured(
    booster: xgb.Booster, schema: FeatureSchema
) -> None:
    body = json.dumps({"instances": [{"x": 0.5, "color": "purple"}, {"x": -0.5}]})
    limits = Limits(max_rows=10, allow_missing=True, unknown_category_missing=True)
    rows = parse_body(body, "application/json", schema, limits)
    assert np.isnan(rows[:, 1]).all()
    reference = model_zoo.predict_codes(booster, np.array([[0.5, np.nan], [-0.5, np.nan]]))
    np.testing.assert_array_equal(booster.inplace_predict(rows), reference)
    with pytest.raises(PayloadError, match="unknown category 'purple'"):
        parse_body(body, "application/json", schema, Limits(max_rows=10, allow_missing=True))


def test_a_first_csv_row_of_categories_is_data_and_a_row_of_names_a_header(
    schema: FeatureSchema,
) -> None:
    assert parse_body("1.5,red\n", "text/csv", schema, LIMITS).shape == (1, 2)
    assert parse_body("x,color\n1.5,red\n", "text/csv", schema, LIMITS).shape == (1, 2)
    with pytest.raises(PayloadError, match="unknown feature 'colour'"):
        parse_body("x,colour\n1.5,red\n", "text/csv", schema, LIMITS)


def test_number_categories_take_numbers_and_numeric_text() -> None:
    levels = Categories("zip", (10.0, 75.0, 99.0))
    schema = FeatureSchema.of(["a", "zip"], {"zip": levels})
    rows = parse_body('{"instances": [[1, 75], [2, "99"]]}', None, schema, LIMITS)
    assert rows[:, 1].tolist() == [1.0, 2.0]
    with pytest.raises(PayloadError, match="unknown category 11"):
        parse_body('{"instances": [[1, 11]]}', None, schema, LIMITS)


def test_stored_job_rows_score_what_the_job_api_validated(
    booster: xgb.Booster, schema: FeatureSchema
) -> None:
    """POST /jobs recodes and stores the rows; the scoring task reads them back unchanged."""
    body = json.dumps({"instances": [{"x": 0.2, "color": "green"}, {"x": 1.0, "color": "blue"}]})
    request = parse_job_request(body, "application/json", schema, LIMITS, BUCKET)
    job = jobs.Job(
        job_id="j",
        status=contract.STATUS_RUNNING,
        architecture=contract.ARCH_LAMBDA_ECS,
        created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
        model_version="v",
        instances=request.instances,
    )
    rows = load_rows(job, None, schema, LIMITS)  # type: ignore[arg-type]
    np.testing.assert_array_equal(
        booster.inplace_predict(rows), xgboost_says(booster, [0.2, 1.0], ["green", "blue"])
    )


# --- batch mode -------------------------------------------------------------------------------


def encode(table: pa.Table, fmt: str) -> bytes:
    sink = io.BytesIO()
    if fmt == "csv":
        pacsv.write_csv(table, sink)
    elif fmt == "parquet":
        pq.write_table(table, sink)
    else:
        for row in table.to_pylist():
            sink.write((json.dumps(row) + "\n").encode())
    return sink.getvalue()


def deploy(s3: Any, model_dir: Path) -> dict[str, str]:
    """The model and the metadata.json the program computes, in moto; the scoring env."""
    path = model_dir / "model.json"
    from runtime.modelfile import sha256_file

    digest = sha256_file(path)
    key = contract.model_key("cat", digest[:12])
    s3.upload_file(str(path), BUCKET, key)
    metadata = model_metadata(path, "cat", digest[:12], digest)
    s3.put_object(
        Bucket=BUCKET,
        Key=contract.model_metadata_key("cat", digest[:12]),
        Body=json.dumps(metadata).encode(),
    )
    return scoring_env(
        {contract.ENV_MODEL_URI: f"s3://{BUCKET}/{key}", contract.ENV_MODEL_SHA256: digest},
        model_dir / "cache",
    )


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_batch_files_score_categories_like_xgboost(s3: Any, tmp_path: Path, fmt: str) -> None:
    booster = model_zoo.save("categorical", tmp_path)
    env = deploy(s3, tmp_path)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_job_table(dynamodb)
    store = JobStore(dynamodb, TABLE)
    table, _ = model_zoo.categorical_table(rows=50, seed=3)
    if fmt != "parquet":
        table = table.set_column(1, "color", table.column("color").cast(pa.string()))
    key = f"inputs/cat.{fmt}"
    s3.put_object(Bucket=BUCKET, Key=key, Body=encode(table, fmt))
    job = store.new_job(
        jobs.new_job_id(),
        architecture=contract.ARCH_STEPFUNCTIONS_BATCH,
        model_version=version_of_uri(env[contract.ENV_MODEL_URI]),  # the deployed one
        input_uri=f"s3://{BUCKET}/{key}",
        output_uri=f"s3://{BUCKET}/results/cat/",
        format=fmt,
        shards=1,
    )
    store.create(job)
    store.transition(job.job_id, contract.STATUS_RUNNING)
    assert main(["--mode", "batch"], env={**env, contract.ENV_JOB_ID: job.job_id}) == 0
    part = s3.get_object(Bucket=BUCKET, Key=f"results/cat/{contract.part_name(0, fmt)}")
    body = part["Body"].read()
    scored = (
        pacsv.read_csv(io.BytesIO(body))
        if fmt == "csv"
        else pq.read_table(io.BytesIO(body))
        if fmt == "parquet"
        else pa.Table.from_pylist([json.loads(line) for line in body.splitlines()])
    )
    expected = xgboost_says(
        booster, table.column("x").to_pylist(), table.column("color").cast(pa.string()).to_pylist()
    )
    np.testing.assert_allclose(scored.column("prediction").to_pylist(), expected, atol=1e-7)


def test_an_unknown_category_in_a_batch_file_fails_the_shard_naming_it(
    booster: xgb.Booster,
) -> None:
    levels = Categories("color", ("green", "red"))
    batch = pa.record_batch({"x": [1.0, 2.0], "color": ["red", "mauve"]})
    with pytest.raises(scoring_batch.BatchFailure, match="'color' has unknown category 'mauve'"):
        scoring_batch.feature_matrix(batch, ["x", "color"], False, {"color": levels})
    matrix = scoring_batch.feature_matrix(
        batch, ["x", "color"], False, {"color": levels}, unknown_missing=True
    )
    assert matrix[0].tolist() == [1.0, 1.0] and np.isnan(matrix[1, 1])
