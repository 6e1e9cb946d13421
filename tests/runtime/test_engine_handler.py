"""The `lambda` handler answers the same under both engines (mlserve:engine, issue 8).

The same requests go to the predictor configured as the Pulumi program configures it: with
MODEL_ENGINE=xgboost and the model.ubj object, then with MODEL_ENGINE=onnx and the model.onnx
converted at deploy time. Bodies are identical except the engine and digest in /health, and the
predictions, which agree within the verified tolerance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components.engine import TOLERANCE, convert_to_onnx
from mlserve.train import TrainResult, load_example_data
from runtime import contract
from runtime.handlers import predict
from tests.runtime.events import FakeLambdaContext, rest_event

BUCKET = "mlserve-models-test"


def deploy(s3: Any, example_model: TrainResult, tmp_path: Path, engine: str) -> str:
    """Upload the engine's object and configure the handler; return the object's sha256."""
    if engine == contract.ENGINE_ONNX:
        conversion = convert_to_onnx(example_model.model_path, tmp_path / "model.onnx")
        key, path, digest = (
            contract.onnx_model_key("example", "v1"),
            conversion.out_path,
            conversion.sha256,
        )
    else:
        key, path = contract.model_key("example", "v1"), example_model.model_path
        digest = example_model.sha256
    s3.upload_file(str(path), BUCKET, key)
    predict.configure(
        env={
            contract.ENV_MODEL_ENGINE: engine,
            contract.ENV_MODEL_URI: f"s3://{BUCKET}/{key}",
            contract.ENV_MODEL_SHA256: digest,
            contract.ENV_MODEL_CACHE_DIR: str(tmp_path / f"cache-{engine}"),
            contract.ENV_ALLOW_MISSING: "true",
        }
    )
    return digest


def call(method: str, path: str, body: str | None = None, ctype: str = "application/json"):
    response = predict.handler(rest_event(method, path, body, ctype), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"])


def requests_to_send() -> list[tuple[str, str, str | None, str]]:
    data = load_example_data()
    rows = data.x[:40].tolist()
    with_missing = [list(r) for r in rows[:5]]
    with_missing[0][3] = None
    with_missing[1] = [None] * len(with_missing[1])
    as_csv = (
        ",".join(data.feature_names) + "\n" + "\n".join(",".join(map(repr, r)) for r in rows[:10])
    )
    return [
        ("GET", "/health", None, "application/json"),
        ("POST", "/predict", json.dumps({"instances": rows[:1]}), "application/json"),
        ("POST", "/predict", json.dumps({"instances": rows}), "application/json"),
        ("POST", "/predict", json.dumps({"instances": with_missing}), "application/json"),
        ("POST", "/predict", as_csv, "text/csv"),
        ("POST", "/predict", json.dumps({"instances": [[1.0, 2.0]]}), "application/json"),
        ("POST", "/predict", "{", "application/json"),
    ]


@pytest.fixture
def answers(s3: Any, example_model: TrainResult, tmp_path: Path) -> Any:
    result: dict[str, Any] = {}
    try:
        for engine in contract.ENGINES:
            digest = deploy(s3, example_model, tmp_path, engine)
            result[engine] = (digest, [call(*request) for request in requests_to_send()])
    finally:
        predict.configure(env={})
    return result


def test_both_engines_answer_identically_within_the_tolerance(answers: Any) -> None:
    xgb_digest, xgb_answers = answers["xgboost"]
    onnx_digest, onnx_answers = answers["onnx"]
    for (status_x, body_x), (status_o, body_o) in zip(xgb_answers, onnx_answers, strict=True):
        assert status_x == status_o
        if "model" in body_x:  # /health: the same model, served by another engine
            assert body_x["model"].pop("engine") == "xgboost"
            assert body_o["model"].pop("engine") == "onnx"
            assert body_x["model"].pop("sha256") == xgb_digest
            assert body_o["model"].pop("sha256") == onnx_digest
        if "predictions" in body_x:
            got = np.asarray(body_o.pop("predictions"), dtype=np.float64)
            want = np.asarray(body_x.pop("predictions"), dtype=np.float64)
            assert got.shape == want.shape and got.size > 0
            assert float(np.max(np.abs(got - want))) <= TOLERANCE
        assert body_x == body_o
    statuses = [status for status, _ in xgb_answers]
    assert statuses == [200, 200, 200, 200, 200, 400, 400]


def test_every_handler_imports_without_xgboost_or_scipy() -> None:
    """With engine onnx the shared layer has neither: no function may need them at import."""
    import subprocess
    import sys

    script = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("xgboost", "scipy"):
            raise ImportError(name + " is not in the onnx layer")
sys.meta_path.insert(0, Block())
import runtime.handlers.jobs, runtime.handlers.predict, runtime.handlers.steps
import runtime.handlers.trigger
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
