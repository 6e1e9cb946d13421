"""Architecture ``lambda`` through the local emulator, over HTTP: what a caller of the API sees.

The whole contract runs once per engine (mlserve:engine xgboost and onnx, issue 8): every answer
must be the same, predictions equal to XGBoost's own within TOLERANCE.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import requests
import xgboost as xgb

from mlserve.local import Emulator
from mlserve.train import TrainResult
from runtime import contract

from .helpers import Api, Example, assert_error, reference

TOLERANCE = 1e-6


def csv_text(header: list[str] | None, rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header is not None:
        writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def predictions(response: requests.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["predictions"], dtype=np.float64)


@pytest.fixture(scope="module", params=contract.ENGINES)
def emulator(request: pytest.FixtureRequest, emulators: Any) -> Emulator:
    """Architecture ``lambda`` with each engine; module scope groups the tests by engine."""
    return emulators.get("lambda", engine=request.param)


def served(emulator: Emulator, trained: TrainResult) -> tuple[str, str]:
    """(key, sha256) of the object the predictor loads: model.ubj, or model.onnx (onnx engine)."""
    if emulator.outputs["engine"] == contract.ENGINE_ONNX:
        key = emulator.outputs["onnxModelUri"].removeprefix(f"s3://{emulator.bucket}/")
        head = emulator.client("s3").head_object(Bucket=emulator.bucket, Key=key)
        return key, head["Metadata"]["sha256"]
    return emulator.stores.model_key, trained.sha256


@pytest.fixture
def reconfigure(emulator: Emulator) -> Iterator[Emulator]:
    """Change function settings for one test; the defaults come back afterwards."""
    yield emulator
    emulator.reconfigure(allow_missing=False, max_rows=10_000)


# --- happy paths -----------------------------------------------------------------------------


def test_health_describes_the_served_model(
    api: Api, emulator: Emulator, trained: TrainResult, example: Example
) -> None:
    response = api.get("/health")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    model = body["model"]
    assert model["name"] == "example"
    assert model["engine"] == emulator.outputs["engine"]
    assert model["sha256"] == served(emulator, trained)[1]
    assert model["version"] == trained.sha256[:12] == emulator.model.version
    assert model["num_features"] == 30
    assert model["feature_names"] == example.names
    assert model["objective"] == "binary:logistic"


def test_the_model_is_stored_like_the_pulumi_program_stores_it(
    emulator: Emulator, trained: TrainResult
) -> None:
    s3 = emulator.client("s3")
    key = f"models/example/{trained.sha256[:12]}/model.ubj"
    head = s3.head_object(Bucket=emulator.bucket, Key=key)
    assert head["Metadata"]["sha256"] == trained.sha256
    assert emulator.model_uri == f"s3://{emulator.bucket}/{key}"
    metadata = json.loads(
        s3.get_object(Bucket=emulator.bucket, Key=key.replace("model.ubj", "metadata.json"))[
            "Body"
        ].read()
    )
    assert metadata["sha256"] == trained.sha256
    assert s3.get_bucket_versioning(Bucket=emulator.bucket)["Status"] == "Enabled"
    block = s3.get_public_access_block(Bucket=emulator.bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    table = emulator.client("dynamodb").describe_table(TableName=emulator.table)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "job_id", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    if emulator.outputs["engine"] == contract.ENGINE_ONNX:
        # the converted model sits next to the XGBoost one, its own digest in its metadata
        onnx_key, onnx_sha256 = served(emulator, trained)
        assert onnx_key == key.replace("model.ubj", "model.onnx")
        body = s3.get_object(Bucket=emulator.bucket, Key=onnx_key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == onnx_sha256 != trained.sha256


def test_predict_rows_as_lists(api: Api, booster: xgb.Booster, example: Example) -> None:
    rows = example.rows(25)

    response = api.predict_json({"instances": rows.tolist()})

    got = predictions(response)
    assert response.json()["model_version"] == booster_version(api)
    np.testing.assert_allclose(got, reference(booster, rows), rtol=0, atol=TOLERANCE)


def test_predict_rows_as_objects_in_any_key_order(
    api: Api, booster: xgb.Booster, example: Example
) -> None:
    rows = example.rows(12)
    shuffled = random.Random(3).sample(example.names, k=len(example.names))
    instances = [{name: float(row[example.names.index(name)]) for name in shuffled} for row in rows]

    got = predictions(api.predict_json({"instances": instances}))

    np.testing.assert_allclose(got, reference(booster, rows), rtol=0, atol=TOLERANCE)


def test_predict_csv_with_a_header_row_in_any_column_order(
    api: Api, booster: xgb.Booster, example: Example
) -> None:
    rows = example.rows(9)
    order = random.Random(5).sample(range(30), k=30)
    header = [example.names[j] for j in order]
    body = csv_text(header, [[repr(float(row[j])) for j in order] for row in rows])

    got = predictions(api.predict_csv(body))

    np.testing.assert_allclose(got, reference(booster, rows), rtol=0, atol=TOLERANCE)


def test_predict_csv_without_a_header(api: Api, booster: xgb.Booster, example: Example) -> None:
    rows = example.rows(7)
    body = csv_text(None, [[repr(float(v)) for v in row] for row in rows])

    got = predictions(api.predict_csv(body))

    np.testing.assert_allclose(got, reference(booster, rows), rtol=0, atol=TOLERANCE)


def test_concurrent_callers_each_get_their_own_answer(
    api: Api, booster: xgb.Booster, example: Example
) -> None:
    rows = example.rows(16)
    expected = reference(booster, rows)

    def one(i: int) -> float:
        with Api(api.url, api.session.headers.get("x-api-key")) as client:
            return float(predictions(client.predict_json({"instances": [rows[i].tolist()]}))[0])

    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(one, range(len(rows))))

    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def booster_version(api: Api) -> str:
    return str(api.get("/health").json()["model"]["version"])


# --- bad input: every one a 4xx JSON error that says what is wrong ---------------------------


def test_malformed_json(api: Api) -> None:
    response = api.post(
        "/predict", data=b'{"instances": [[1.0, 2.0', headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_body", "instances")


@pytest.mark.parametrize(
    "document",
    [{"rows": [[1.0] * 30]}, {"instances": "1,2,3"}, [[1.0] * 30], {"instances": [1.0, 2.0]}],
    ids=["no-instances", "instances-not-a-list", "bare-list", "rows-not-lists-or-objects"],
)
def test_a_json_body_that_is_not_instances(api: Api, document: object) -> None:
    assert_error(api.predict_json(document), 400, "invalid_body")


def test_a_csv_body_that_is_not_rows_of_numbers(api: Api) -> None:
    response = api.predict_csv("hello world\nthis is not csv data\n")
    assert_error(response, 400, "unknown_feature", "hello world")


@pytest.mark.parametrize("count", [29, 31])
def test_wrong_feature_count_names_expected_and_received(
    api: Api, example: Example, count: int
) -> None:
    row = [1.0] * count
    message = assert_error(
        api.predict_json({"instances": [example.rows(1)[0].tolist(), row]}),
        400,
        "wrong_feature_count",
        "30",
        str(count),
    )
    assert "instances[1]" in message


def test_wrong_feature_count_in_csv(api: Api) -> None:
    response = api.predict_csv(csv_text(None, [["1.0"] * 28]))
    assert_error(response, 400, "wrong_feature_count", "28", "30")


def test_unknown_feature_name(api: Api, example: Example) -> None:
    row = dict(zip(example.names, example.rows(1)[0].tolist(), strict=True))
    row["mean_radius_typo"] = 1.0
    assert_error(api.predict_json({"instances": [row]}), 400, "unknown_feature", "mean_radius_typo")


def test_missing_feature_name(api: Api, example: Example) -> None:
    row = dict(zip(example.names, example.rows(1)[0].tolist(), strict=True))
    del row["worst_symmetry"]
    assert_error(api.predict_json({"instances": [row]}), 400, "missing_feature", "worst_symmetry")


@pytest.mark.parametrize(
    "value", ["abc", True, [1.0], {"x": 1}], ids=["str", "bool", "list", "obj"]
)
def test_non_numeric_value(api: Api, value: object) -> None:
    row: list[object] = [1.0] * 30
    row[4] = value
    assert_error(
        api.predict_json({"instances": [row]}), 400, "invalid_value", "mean_smoothness", "number"
    )


def test_non_numeric_value_in_csv(api: Api) -> None:
    cells = ["1.0"] * 30
    cells[2] = "twelve"
    response = api.predict_csv(csv_text(None, [["1.0"] * 30, cells]))
    assert_error(response, 400, "invalid_value", "line 2", "mean_perimeter", "twelve")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(api: Api, literal: str) -> None:
    # JSON (RFC 8259) has no NaN/Infinity: API Gateway's validator refuses the body before the
    # function sees it. Missing values in JSON are null (accepted when allowMissing is on).
    body = '{"instances": [[' + ", ".join(["1.0"] * 29 + [literal]) + "]]}"
    response = api.post("/predict", data=body, headers={"content-type": "application/json"})
    assert_error(response, 400, "invalid_body")


@pytest.mark.parametrize(("cell", "name"), [("nan", "NaN"), ("inf", "Infinity"), ("", "empty")])
def test_nan_infinity_and_empty_cells_are_rejected_by_default(
    api: Api, cell: str, name: str
) -> None:
    cells = ["1.0"] * 30
    cells[0] = cell
    assert_error(
        api.predict_csv(csv_text(None, [cells])), 400, "invalid_value", "mean_radius", name
    )


def test_null_is_rejected_by_default(api: Api) -> None:
    row: list[float | None] = [1.0] * 30
    row[3] = None
    assert_error(api.predict_json({"instances": [row]}), 400, "invalid_value", "mean_area", "null")


def test_with_allow_missing_nan_infinity_null_and_gaps_are_missing_values(
    reconfigure: Emulator, api: Api, booster: xgb.Booster, example: Example
) -> None:
    reconfigure.reconfigure(allow_missing=True)
    rows = example.rows(4).copy()
    cells = [[repr(float(v)) for v in row] for row in rows]
    cells[0][0], cells[1][5], cells[2][29], cells[3][10] = "nan", "inf", "-Infinity", ""
    rows[0, 0] = rows[1, 5] = rows[2, 29] = rows[3, 10] = np.nan
    expected = reference(booster, rows)

    from_csv = predictions(api.predict_csv(csv_text(None, cells)))
    as_json = [[None if np.isnan(v) else float(v) for v in row] for row in rows]
    from_json = predictions(api.predict_json({"instances": as_json}))
    partial = [
        {n: float(v) for n, v in zip(example.names, row, strict=True) if not np.isnan(v)}
        for row in rows
    ]
    from_objects = predictions(api.predict_json({"instances": partial}))

    for got in (from_csv, from_json, from_objects):
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def test_empty_instances(api: Api) -> None:
    assert_error(api.predict_json({"instances": []}), 400, "invalid_body")


def test_empty_csv(api: Api) -> None:
    assert_error(api.predict_csv("\n"), 400, "empty_batch")


def test_more_rows_than_max_rows(reconfigure: Emulator, api: Api, example: Example) -> None:
    reconfigure.reconfigure(max_rows=5)
    response = api.predict_json({"instances": example.rows(6).tolist()})
    assert_error(response, 400, "too_many_rows", "6", "5")
    assert predictions(api.predict_json({"instances": example.rows(5).tolist()})).shape == (5,)


def test_a_body_over_6_mb_is_refused(api: Api) -> None:
    row = ", ".join(["1.0000000000000002"] * 30)
    body = '{"instances": [' + ", ".join(f"[{row}]" for _ in range(12_000)) + "]}"
    assert 6 * 1024 * 1024 < len(body) < 10 * 1024 * 1024
    response = api.post("/predict", data=body, headers={"content-type": "application/json"})
    assert_error(response, 413, "payload_too_large")


def test_a_body_over_api_gateways_10_mb_is_refused(api: Api) -> None:
    body = b"1.0," * (3 * 1024 * 1024)
    response = api.post("/predict", data=body, headers={"content-type": "text/csv"})
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "image/png"])
def test_wrong_content_type(api: Api, content_type: str) -> None:
    response = api.post("/predict", data=b"1,2,3", headers={"content-type": content_type})
    assert_error(response, 415, "unsupported_media_type", content_type)


def test_missing_api_key(emulator: Emulator, example: Example) -> None:
    response = requests.post(
        f"{emulator.url}/predict", json={"instances": example.rows(1).tolist()}, timeout=30
    )
    assert_error(response, 403, "forbidden", "x-api-key")


def test_wrong_api_key(emulator: Emulator) -> None:
    response = requests.get(f"{emulator.url}/health", headers={"x-api-key": "nope"}, timeout=30)
    assert_error(response, 403, "forbidden", "x-api-key")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/nope"), ("GET", "/v1/predict"), ("POST", "/v1/health"), ("GET", "/health")],
    ids=["unknown-path", "wrong-method", "wrong-method-2", "no-stage"],
)
def test_unknown_route(api: Api, emulator: Emulator, method: str, path: str) -> None:
    base = emulator.url.removesuffix("/v1")
    response = api.session.request(method, base + path, timeout=30)
    assert_error(response, 403, "forbidden", "Unknown route")


# --- a corrupt model --------------------------------------------------------------------------


def test_a_corrupt_model_is_a_503_and_the_load_is_retried_after_a_restore(
    reconfigure: Emulator, api: Api, trained: TrainResult, example: Example
) -> None:
    s3 = reconfigure.client("s3")
    bucket = reconfigure.bucket
    key, digest = served(reconfigure, trained)
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=b'{"not": "the model"}')
    try:
        reconfigure.reconfigure()  # a new execution environment: nothing cached
        for path in ("/health", "/predict"):
            kwargs = {"json": {"instances": example.rows(1).tolist()}} if path == "/predict" else {}
            response = api.post(path, **kwargs) if path == "/predict" else api.get(path)
            assert_error(response, 503, "model_unavailable", "sha256", digest)
    finally:
        s3.put_object(Bucket=bucket, Key=key, Body=original, Metadata={"sha256": digest})

    response = api.predict_json({"instances": example.rows(2).tolist()})
    assert predictions(response).shape == (2,)
