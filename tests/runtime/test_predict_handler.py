"""The `lambda` architecture's handler, called with real REST proxy events against moto's S3."""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from mlserve.train import TrainResult, load_example_data
from runtime import contract
from runtime.handlers import predict
from tests.runtime.events import FakeLambdaContext, rest_event

BUCKET = "mlserve-models-test"


@pytest.fixture
def deployed(s3: Any, example_model: TrainResult, tmp_path: Path) -> Iterator[dict[str, str]]:
    key = contract.model_key("example", "abc123")
    s3.upload_file(str(example_model.model_path), BUCKET, key)
    env = {
        contract.ENV_MODEL_URI: f"s3://{BUCKET}/{key}",
        contract.ENV_MODEL_SHA256: example_model.sha256,
        contract.ENV_MODEL_CACHE_DIR: str(tmp_path / "cache"),
        contract.ENV_MAX_ROWS: "50",
    }
    predict.configure(env=env)
    yield env
    predict.configure(env={})


def call(method: str, path: str, body: str | None = None, ctype: str | None = "application/json"):
    response = predict.handler(rest_event(method, path, body, ctype), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"])


def reference(example_model: TrainResult, rows: np.ndarray) -> np.ndarray:
    booster = xgb.Booster(model_file=str(example_model.model_path))
    return booster.predict(xgb.DMatrix(rows, feature_names=booster.feature_names))


def test_health_describes_the_model(deployed: dict[str, str], example_model: TrainResult) -> None:
    status, body = call("GET", "/health")
    assert status == 200
    assert body["status"] == "ok"
    assert body["model"]["version"] == "abc123"
    assert body["model"]["sha256"] == example_model.sha256
    assert body["model"]["num_features"] == 30
    assert len(body["model"]["feature_names"]) == 30


def test_three_input_forms_equal_booster_predict(
    deployed: dict[str, str], example_model: TrainResult
) -> None:
    data = load_example_data()
    rows = data.x[:20]
    expected = reference(example_model, rows)
    as_lists = json.dumps({"instances": rows.tolist()})
    as_objects = json.dumps(
        {
            "instances": [
                dict(zip(reversed(data.feature_names), reversed(r), strict=True))
                for r in rows.tolist()
            ]
        }
    )
    as_csv = (
        ",".join(data.feature_names)
        + "\n"
        + "\n".join(",".join(map(repr, r)) for r in rows.tolist())
    )
    for body, ctype in (
        (as_lists, "application/json"),
        (as_objects, "application/json"),
        (as_csv, "text/csv"),
    ):
        status, answer = call("POST", "/predict", body, ctype)
        assert status == 200, answer
        assert answer["model_version"] == "abc123"
        np.testing.assert_allclose(answer["predictions"], expected, atol=1e-6)


def test_bad_input_is_a_json_4xx(deployed: dict[str, str]) -> None:
    status, body = call("POST", "/predict", '{"instances": [[1, 2]]}')
    assert status == 400
    assert body["error"]["code"] == "wrong_feature_count"
    assert "expects 30" in body["error"]["message"]
    status, body = call("POST", "/predict", json.dumps({"instances": [[0.0] * 30] * 51}))
    assert (status, body["error"]["code"]) == (400, "too_many_rows")
    status, body = call("POST", "/predict", "1,2", "text/plain")
    assert (status, body["error"]["code"]) == (415, "unsupported_media_type")


def test_corrupt_model_is_503_then_recovers(
    deployed: dict[str, str], s3: Any, example_model: TrainResult
) -> None:
    key = contract.model_key("example", "abc123")
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"garbage")
    status, body = call("POST", "/predict", json.dumps({"instances": [[0.0] * 30]}))
    assert status == 503
    assert body["error"]["code"] == "model_unavailable"
    assert "sha256 mismatch" in body["error"]["message"]
    s3.upload_file(str(example_model.model_path), BUCKET, key)
    status, body = call("POST", "/predict", json.dumps({"instances": [[0.0] * 30]}))
    assert status == 200, body


def test_missing_configuration_is_503_not_a_crash(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    predict.configure(env={})
    capsys.readouterr()
    status, body = call("GET", "/health")
    assert status == 503
    assert "MODEL_URI" in body["error"]["message"]
    (record,) = emf_records(capsys.readouterr().out)  # a 5xx of ours is counted
    assert record[contract.METRIC_SERVER_ERRORS] == [1.0]
    assert record["_aws"]["CloudWatchMetrics"][0]["Namespace"] == contract.METRICS_NAMESPACE


def test_our_own_fault_is_500_without_a_stack_trace(
    deployed: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = io.StringIO()
    previous = predict.logger.registered_handler.setStream(log)

    def boom(self: Any, rows: np.ndarray) -> np.ndarray:
        raise RuntimeError("secret internals")

    # whatever engine serves the model: its class's predict fails
    # a warm function (the model loaded, predictions served) fails the same way as a fresh one
    assert call("POST", "/predict", json.dumps({"instances": [[0.0] * 30]}))[0] == 200
    # whatever engine serves the model: its class's predict fails
    monkeypatch.setattr(type(predict.runtime_context().models.get()), "predict", boom)
    status, body = call("POST", "/predict", json.dumps({"instances": [[0.0] * 30]}))
    assert status == 500
    assert body["error"]["code"] == "internal"
    assert "req-1" in body["error"]["message"]
    assert "secret" not in json.dumps(body)
    predict.logger.registered_handler.setStream(previous)
    line = json.loads(log.getvalue().strip().splitlines()[-1])
    assert line["level"] == "ERROR"
    assert line["function_request_id"] == "req-1"
    assert "secret internals" in line["exception"], "the log line carries the cause"


def test_unknown_route_is_json_404(deployed: dict[str, str]) -> None:
    status, body = call("GET", "/nope")
    assert (status, body["error"]["code"]) == (404, "not_found")


def emf_records(out: str) -> list[dict[str, Any]]:
    """The CloudWatch EMF records among the lines the function printed."""
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [r for r in records if "_aws" in r]


def test_every_prediction_answers_alike_and_publishes_its_metrics(
    deployed: dict[str, str], example_model: TrainResult, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = load_example_data().x[:3]
    event = rest_event("POST", "/predict", json.dumps({"instances": rows.tolist()}))
    capsys.readouterr()
    answers = [predict.handler(event, FakeLambdaContext()) for _ in range(3)]  # cold, then warm
    records = emf_records(capsys.readouterr().out)

    first = answers[0]
    for answer in answers:
        assert answer["statusCode"] == 200
        assert answer["body"] == first["body"]
        assert dict(answer["multiValueHeaders"]) == {"Content-Type": ["application/json"]}
        assert answer["isBase64Encoded"] is False
    np.testing.assert_allclose(
        json.loads(first["body"])["predictions"], reference(example_model, rows), atol=1e-6
    )
    assert len(records) == 3, "one EMF record per prediction"
    for record in records:
        (directive,) = record["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == contract.METRICS_NAMESPACE
        # per model version (issue 17), and service-wide as before
        assert directive["Dimensions"] == [["service", "model_version"], ["service"]]
        assert [m["Name"] for m in directive["Metrics"]] == ["PredictRows", "PredictLatency"]
        assert record["service"] == contract.SERVICE_NAME
        assert record["model_version"] == json.loads(first["body"])["model_version"]
        assert record["PredictRows"] == [3.0]
        assert record["PredictLatency"][0] > 0
        assert abs(record["_aws"]["Timestamp"] / 1000 - time.time()) < 60


def test_a_warm_function_rejects_bad_input_with_a_log_line_and_a_metric(
    deployed: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert call("POST", "/predict", json.dumps({"instances": [[0.0] * 30]}))[0] == 200
    log = io.StringIO()
    previous = predict.logger.registered_handler.setStream(log)
    try:
        capsys.readouterr()
        status, body = call("POST", "/predict", json.dumps({"instances": [[0.0] * 29]}))
    finally:
        predict.logger.registered_handler.setStream(previous)
    assert (status, body["error"]["code"]) == (400, "wrong_feature_count")
    (line,) = [json.loads(text) for text in log.getvalue().splitlines()]
    assert line["message"] == "rejected request"
    assert line["function_request_id"] == "req-1"
    (record,) = emf_records(capsys.readouterr().out)
    assert record["RejectedRequests"] == [1.0]
    assert "PredictRows" not in record


@pytest.mark.parametrize(
    ("headers", "base64"),
    [
        ({"content-type": "application/json; charset=utf-8"}, False),
        ({"CONTENT-TYPE": "application/json"}, False),
        ({"Content-Type": "application/json"}, True),
        ({}, False),  # no Content-Type: a JSON object is still understood
    ],
)
def test_headers_in_any_case_and_base64_bodies_are_understood(
    deployed: dict[str, str], headers: dict[str, str], base64: bool
) -> None:
    import base64 as b64

    body = json.dumps({"instances": [[0.0] * 30]})
    expected = predict.handler(rest_event("POST", "/predict", body), FakeLambdaContext())
    event = rest_event("POST", "/predict", body)
    event["headers"] = headers
    event["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    if base64:
        event["body"], event["isBase64Encoded"] = b64.b64encode(body.encode()).decode(), True
    answer = predict.handler(event, FakeLambdaContext())
    assert (answer["statusCode"], answer["body"]) == (200, expected["body"])


def test_disabled_metrics_print_nothing(
    deployed: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    for _ in range(2):
        assert call("POST", "/predict", json.dumps({"instances": [[0.0] * 30]}))[0] == 200
    assert emf_records(capsys.readouterr().out) == []


# --- a canary beside the stable model (issue 17) -------------------------------------------------
@pytest.fixture
def with_canary(s3: Any, example_model: TrainResult, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The example model as version v1, and a 2-tree model of the same features as v2."""
    stable, canary = contract.model_key("example", "v1"), contract.model_key("example", "v2")
    s3.upload_file(str(example_model.model_path), BUCKET, stable)
    data = load_example_data()
    small = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2},
        xgb.DMatrix(data.x, label=data.y, feature_names=data.feature_names),
        num_boost_round=2,
    )
    path = tmp_path / "canary.ubj"
    small.save_model(str(path))
    s3.upload_file(str(path), BUCKET, canary)
    env = {
        contract.ENV_MODEL_URI: f"s3://{BUCKET}/{stable}",
        contract.ENV_MODEL_SHA256: example_model.sha256,
        contract.ENV_CANARY_MODEL_URI: f"s3://{BUCKET}/{canary}",
        contract.ENV_CANARY_MODEL_SHA256: hashlib.sha256(path.read_bytes()).hexdigest(),
        contract.ENV_CANARY_PERCENT: "50",
        contract.ENV_CANARY_MODE: "shadow",
        contract.ENV_MODEL_CACHE_DIR: str(tmp_path / "cache"),
    }
    predict.configure(env=env)
    yield env
    predict.configure(env={})


def _pinned(version: str, rows: np.ndarray) -> dict[str, Any]:
    event = rest_event("POST", "/predict", json.dumps({"instances": rows.tolist()}))
    event["headers"][contract.MODEL_VERSION_HEADER] = version
    return predict.handler(event, FakeLambdaContext())


def test_each_version_publishes_its_metrics_under_its_version(
    with_canary: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    rows = load_example_data().x[:2]
    capsys.readouterr()
    answers = {v: json.loads(_pinned(v, rows)["body"]) for v in ("v2", "v1", "v2")}
    records = emf_records(capsys.readouterr().out)
    assert {v: a["model_version"] for v, a in answers.items()} == {"v1": "v1", "v2": "v2"}
    assert [r["model_version"] for r in records] == ["v2", "v1", "v2"]
    assert all(r["PredictRows"] == [2.0] for r in records)


def test_a_failing_shadow_canary_is_recorded_and_never_reaches_the_client(
    with_canary: dict[str, str],
    example_model: TrainResult,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = load_example_data().x[:3]
    assert call("GET", "/health")[1]["rollout"]["versions"] == ["v1", "v2"]
    canary = predict.serving().versions[1]

    def broken(_rows: np.ndarray) -> np.ndarray:
        raise RuntimeError("the canary crashed")

    monkeypatch.setattr(canary.model, "predict", broken)
    capsys.readouterr()
    shadowed = 0
    for i in range(20):
        event = rest_event("POST", "/predict", json.dumps({"instances": rows.tolist()}))
        event["requestContext"]["requestId"] = f"req-{i}"
        answer = predict.handler(event, FakeLambdaContext())
        assert answer["statusCode"] == 200
        body = json.loads(answer["body"])
        assert body["model_version"] == "v1"
        np.testing.assert_allclose(body["predictions"], reference(example_model, rows), 1e-6)
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if "mlserve_capture" in line]
    errors = [r for r in emf_records(out) if "PredictErrors" in r]
    for line in lines:
        shadowed += 1
        assert line["errors"] == {"v2": "RuntimeError"}
        assert list(line["versions"]) == ["v1"]
    assert 0 < shadowed < 20  # about half of the keys are shadowed
    assert [r["model_version"] for r in errors] == ["v2"] * shadowed
