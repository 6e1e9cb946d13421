"""The emulator serves what the program deployed: the values its stand-ins use are the ones the
program declares (issue 13's table of differences between the old hand wiring and the program).

Expected values come from the program's declarations (Pulumi.yaml defaults, components'
constants and builders, policies.py), never from the emulator.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import xgboost as xgb

from components import batch as batch_component
from components import ecs as ecs_component
from components import policies
from components.settings import load_project_schema
from mlserve.local import Emulator, LocalFunction
from runtime import contract
from tests.infra.conftest import train_tiny_model

DEFAULTS = {key: spec["default"] for key, spec in load_project_schema().items()}
CPU_ARCHITECTURE = {"arm64": "ARM64", "x86_64": "X86_64"}  # Lambda's name -> ECS/Batch's
# The variables only the submitting functions of stepfunctions-batch need (the old hand wiring
# gave them to the job API as well).
BATCH_SUBMIT_ONLY = (
    contract.ENV_BATCH_JOB_QUEUE_HIGH,
    contract.ENV_BATCH_JOB_QUEUE_LOW,
    contract.ENV_BATCH_JOB_DEFINITION,
)


@pytest.fixture(scope="module")
def model_without_metadata(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's model.json with no metadata.json beside it."""
    trained = train_tiny_model(tmp_path_factory.mktemp("emulator-deployed"))
    alone = tmp_path_factory.mktemp("user-model") / "model.json"
    xgb.Booster(model_file=str(trained)).save_model(str(alone))
    assert not (alone.parent / contract.MODEL_METADATA_NAME).exists()
    return alone


@pytest.fixture(
    scope="module", params=["lambda,stepfunctions-batch", "lambda-ecs,stepfunctions-ecs"]
)
def emulator(request: pytest.FixtureRequest, model_without_metadata: Path) -> Iterator[Emulator]:
    with Emulator().start(str(request.param), model=model_without_metadata) as running:
        yield running


def by_handler(emulator: Emulator, handler: str, architecture: str | None = None) -> LocalFunction:
    """The stand-in of the deployed function running ``handler`` (job APIs: of ``architecture``)."""
    found = [
        function
        for function in emulator.functions
        if function.handler.__module__ + "." + function.handler.__name__ == handler
        and (architecture is None or function.env.get(contract.ENV_ARCHITECTURE) == architecture)
    ]
    assert len(found) == 1, [f.name for f in found]
    return found[0]


def test_each_function_stand_in_runs_its_deployed_configuration(emulator: Emulator) -> None:
    deployed = emulator.require_deployment().functions()
    assert {f.name for f in emulator.functions} == set(deployed)
    for function in emulator.functions:
        configuration = deployed[function.name]
        assert function.timeout_seconds == configuration["Timeout"]
        assert function.memory_mb == configuration["MemorySize"]
        env = dict(function.env)
        env.pop(contract.ENV_MODEL_CACHE_DIR)  # the execution environment's /tmp
        # Lambda adds its reserved variables to the deployed ones: the function's name
        assert env.pop("AWS_LAMBDA_FUNCTION_NAME") == configuration["FunctionName"]
        assert env == configuration["Environment"]["Variables"]


def test_the_differences_of_the_old_wiring_are_gone(emulator: Emulator) -> None:
    archs = emulator.architectures
    if contract.ARCH_LAMBDA in archs:
        predictor = by_handler(emulator, contract.HANDLER_PREDICT)
        assert predictor.timeout_seconds == DEFAULTS["lambdaTimeout"]  # 29, not 30
        assert predictor.memory_mb == DEFAULTS["lambdaMemory"]
    if contract.ARCH_LAMBDA_ECS in archs:
        job_api = by_handler(emulator, contract.HANDLER_JOBS, contract.ARCH_LAMBDA_ECS)
        assert job_api.memory_mb == DEFAULTS["lambdaMemory"]  # not 512
        assert job_api.timeout_seconds == ecs_component.job_api_timeout(DEFAULTS["syncWaitSeconds"])
    if contract.ARCH_STEPFUNCTIONS_ECS in archs:
        sfn_api = by_handler(emulator, contract.HANDLER_JOBS, contract.ARCH_STEPFUNCTIONS_ECS)
        assert sfn_api.timeout_seconds == ecs_component.job_api_timeout(0)  # 10, not 29
    if any(a in archs for a in (contract.ARCH_LAMBDA_ECS, contract.ARCH_STEPFUNCTIONS_ECS)):
        for definition in emulator.require_deployment().task_definitions().values():
            platform = definition["runtimePlatform"]["cpuArchitecture"]
            assert platform == CPU_ARCHITECTURE[DEFAULTS["lambdaArchitecture"]]
    if contract.ARCH_STEPFUNCTIONS_BATCH in archs:
        trigger = by_handler(emulator, contract.HANDLER_TRIGGER)
        assert trigger.timeout_seconds == batch_component.TRIGGER_TIMEOUT_SECONDS  # not 60
        batch_api = by_handler(emulator, contract.HANDLER_JOBS, contract.ARCH_STEPFUNCTIONS_BATCH)
        assert not set(BATCH_SUBMIT_ONLY) & set(batch_api.env)
        [definition] = emulator.require_deployment().job_definitions().values()
        assert definition["timeout"]["attemptDurationSeconds"] == (
            batch_component.DEFAULT_ATTEMPT_TIMEOUT_SECONDS  # not 3600
        )
        cpu = definition["containerProperties"]["runtimePlatform"]["cpuArchitecture"]
        assert cpu == CPU_ARCHITECTURE[DEFAULTS["lambdaArchitecture"]]


def test_the_bucket_is_the_declared_one(emulator: Emulator) -> None:
    s3 = emulator.client("s3")
    policy = json.loads(s3.get_bucket_policy(Bucket=emulator.bucket)["Policy"])
    assert policy == policies.tls_only_bucket_policy(f"arn:aws:s3:::{emulator.bucket}")
    rules = s3.get_bucket_encryption(Bucket=emulator.bucket)["ServerSideEncryptionConfiguration"]
    assert not any(rule.get("BucketKeyEnabled") for rule in rules["Rules"])  # SSE-S3, no key


def test_a_model_without_metadata_json_is_served(emulator: Emulator) -> None:
    """The program computes the metadata of a model that has none; the job API reads it."""
    response = requests.get(
        f"{emulator.url}/health", headers={contract.API_KEY_HEADER: emulator.api_key}, timeout=60
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"]["num_features"] > 0


def test_the_gateway_routes_by_the_deployed_body(emulator: Emulator) -> None:
    body = emulator.require_deployment().openapi_body()
    for item in body["paths"].values():
        for op in item.values():
            if not isinstance(op, dict) or "operationId" not in op:
                continue
            uri = op["x-amazon-apigateway-integration"]["uri"]
            assert emulator.routes[op["operationId"]].arn in uri
