"""The `lambda` architecture's handler, called with real REST proxy events against moto's S3."""

from __future__ import annotations

import io
import json
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


def test_missing_configuration_is_503_not_a_crash(aws: None) -> None:
    predict.configure(env={})
    status, body = call("GET", "/health")
    assert status == 503
    assert "MODEL_URI" in body["error"]["message"]


def test_our_own_fault_is_500_without_a_stack_trace(
    deployed: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = io.StringIO()
    previous = predict.logger.registered_handler.setStream(log)

    def boom(self: Any, rows: np.ndarray) -> np.ndarray:
        raise RuntimeError("secret internals")

    monkeypatch.setattr("runtime.model.LoadedModel.predict", boom)
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
