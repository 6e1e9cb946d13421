"""mlserve:engine in the Pulumi program (under mocks): what the onnx engine deploys, and that a
model it cannot serve stops the deployment before any resource exists."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pulumi
import pytest
import xgboost as xgb

from runtime import contract

from .conftest import REGION, StackRun, run_stack

FUNCTION = "aws:lambda/function:Function"
OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
LAYER = "aws:lambda/layerVersion:LayerVersion"


@pytest.fixture(scope="module")
def onnx_run(base_config: dict[str, str]) -> StackRun:
    return run_stack({**base_config, "engine": "onnx"})


def env(run: StackRun, name: str = "predictor-function") -> dict[str, str]:
    variables: dict[str, str] = run.named(name).inputs["environment"]["variables"]
    return variables


def onnx_object(run: StackRun) -> Any:
    return run.named("model-store-onnx-model")


def test_onnx_predictor_serves_the_converted_model_with_its_own_digest(
    onnx_run: StackRun, tiny_model: Path
) -> None:
    variables = env(onnx_run)
    uploaded = onnx_object(onnx_run)
    path = Path(uploaded.inputs["source"].path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    model_sha = hashlib.sha256(tiny_model.read_bytes()).hexdigest()

    assert variables[contract.ENV_MODEL_ENGINE] == "onnx"
    key = f"models/example/{model_sha[:12]}/model.onnx"
    assert uploaded.inputs["key"] == key
    assert variables[contract.ENV_MODEL_URI] == f"s3://{uploaded.inputs['bucket']}/{key}"
    assert variables[contract.ENV_MODEL_SHA256] == digest
    assert uploaded.inputs["metadata"] == {"sha256": digest, "source-sha256": model_sha}
    assert path.read_bytes()[:1] == b"\x08"  # an ONNX protobuf, not the XGBoost model
    # The XGBoost model and its metadata stay where they were: the onnx one sits next to them.
    assert onnx_run.named("model-store-model").inputs["key"] == key.replace(
        "model.onnx", "model.ubj"
    )
    assert onnx_run.exports["onnxModelUri"] == variables[contract.ENV_MODEL_URI]
    assert onnx_run.exports["engine"] == "onnx"


def test_onnx_predictor_may_read_exactly_the_onnx_object(onnx_run: StackRun) -> None:
    bucket = onnx_object(onnx_run).inputs["bucket"]
    key = onnx_object(onnx_run).inputs["key"]
    policy = json.loads(onnx_run.named("predictor-policy").inputs["policy"])
    reads = [s for s in policy["Statement"] if "s3:GetObject" in s["Action"]]
    assert reads == [
        {
            "Sid": "ReadModel",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"arn:aws:s3:::{bucket}/{key}"],
        }
    ]


def test_onnx_layer_is_built_from_the_onnx_requirements(
    onnx_run: StackRun, default_run: StackRun
) -> None:
    onnx_layer = onnx_run.of_type(LAYER)[0].inputs["description"]
    default_layer = default_run.of_type(LAYER)[0].inputs["description"]
    assert "requirements-onnx.txt" in onnx_layer
    assert "requirements.txt" in default_layer and "onnx" not in default_layer


def test_the_default_engine_is_xgboost_with_no_onnx_object(default_run: StackRun) -> None:
    variables = env(default_run)
    assert variables[contract.ENV_MODEL_ENGINE] == "xgboost"
    assert variables[contract.ENV_MODEL_URI].endswith("/model.ubj")
    assert not [r for r in default_run.of_type(OBJECT) if r.name == "model-store-onnx-model"]
    assert "onnxModelUri" not in default_run.exports
    assert default_run.exports["engine"] == "xgboost"


def test_container_architectures_keep_scoring_with_xgboost(base_config: dict[str, str]) -> None:
    run = run_stack({**base_config, "engine": "onnx", "architecture": "lambda,lambda-ecs"})
    assert env(run)[contract.ENV_MODEL_URI].endswith("/model.onnx")
    job_api = env(run, "lambda-ecs-function")
    assert job_api[contract.ENV_MODEL_URI].endswith("/model.ubj")
    assert contract.ENV_MODEL_ENGINE not in job_api


def save_unsupported(tmp_path: Path, objective: str) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4))
    dtrain = xgb.DMatrix(x, label=(x[:, 0] > 0).astype(int), feature_names=list("abcd"))
    if objective.startswith("rank:"):
        dtrain.set_group([60, 60])
    booster = xgb.train({"objective": objective, "nthread": 1, "max_depth": 2}, dtrain, 3)
    path = tmp_path / "model.ubj"
    booster.save_model(path)
    return path


@pytest.mark.parametrize("objective", ["rank:pairwise", "reg:logistic"])
def test_a_model_the_onnx_engine_cannot_serve_stops_the_deployment(
    tmp_path: Path, objective: str
) -> None:
    model = save_unsupported(tmp_path, objective)
    runs: list[StackRun] = []
    with pytest.raises(pulumi.RunError) as caught:
        run_stack({"aws:region": REGION, "modelPath": str(model), "engine": "onnx"}, runs=runs)
    message = str(caught.value)
    assert message.startswith("mlserve:engine onnx: cannot serve this model with onnxruntime")
    assert f"objective '{objective}' is not supported by the onnx engine" in message
    assert "use mlserve:engine xgboost" in message
    # Nothing was deployed: the conversion runs before any resource is created.
    assert [r.type for r in runs[0].resources if r.custom] == []


def test_the_same_unsupported_model_deploys_with_the_xgboost_engine(tmp_path: Path) -> None:
    model = save_unsupported(tmp_path, "rank:pairwise")
    run = run_stack({"aws:region": REGION, "modelPath": str(model)})
    assert env(run)[contract.ENV_MODEL_ENGINE] == "xgboost"


def test_without_the_lambda_architecture_the_engine_changes_nothing(
    base_config: dict[str, str], tmp_path: Path
) -> None:
    # even a model the onnx engine cannot serve deploys: nothing would serve it with onnx
    model = save_unsupported(tmp_path, "rank:pairwise")
    run = run_stack(
        {**base_config, "modelPath": str(model), "engine": "onnx", "architecture": "lambda-ecs"}
    )
    assert not [r for r in run.of_type(OBJECT) if r.name == "model-store-onnx-model"]
    assert "requirements.txt" in run.of_type(LAYER)[0].inputs["description"]
    assert "onnx" not in run.of_type(LAYER)[0].inputs["description"]
    assert "engine" not in run.exports


def test_model_store_refuses_an_onnx_digest_of_another_file(
    tiny_model: Path, tmp_path: Path
) -> None:
    from components.storage import ModelStoreArgs

    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"\x08\x08")
    with pytest.raises(ValueError, match=r"onnx_sha256: 0+ is not the sha256 of"):
        ModelStoreArgs(tiny_model, "example", "v1", onnx_path=onnx_path, onnx_sha256="0" * 64)
    with pytest.raises(ValueError, match="onnx_sha256 is given without onnx_path"):
        ModelStoreArgs(tiny_model, "example", "v1", onnx_sha256="0" * 64)
    with pytest.raises(ValueError, match="no ONNX model at"):
        ModelStoreArgs(tiny_model, "example", "v1", onnx_path=tmp_path / "missing.onnx")
