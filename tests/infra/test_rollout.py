"""Canary rollouts and data capture (issue 17) under Pulumi mocks: the canary's objects and the
predictor's grants, and the capture resources with their exact IAM."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import xgboost as xgb

from runtime import contract
from tests.infra.conftest import REGION, Registered, StackRun, run_stack

BUCKET = "aws:s3/bucket:Bucket"
OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"
FUNCTION = "aws:lambda/function:Function"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
PERMISSION = "aws:lambda/permission:Permission"
SUBSCRIPTION = "aws:cloudwatch/logSubscriptionFilter:LogSubscriptionFilter"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"


@pytest.fixture(scope="module")
def canary(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another version of the tiny model: the same features, other bytes."""
    path = tmp_path_factory.mktemp("canary") / "model.json"
    xgb.Booster(model_file=str(tiny_model)).save_model(str(path))
    return path


def policy_of(run: StackRun, function: Registered) -> dict[str, Any]:
    role_arn = function.inputs["role"]
    (role,) = [r for r in run.of_type(ROLE) if r.outputs["arn"] == role_arn]
    (policy,) = [p for p in run.of_type(ROLE_POLICY) if p.inputs["role"] == role.outputs["name"]]
    document: dict[str, Any] = json.loads(policy.inputs["policy"])
    return document


def by_handler(run: StackRun, handler: str) -> Registered:
    (found,) = [f for f in run.of_type(FUNCTION) if f.inputs["handler"] == handler]
    return found


def group_of(run: StackRun, function: Registered) -> Registered:
    name = function.inputs["loggingConfig"]["logGroup"]
    (group,) = [g for g in run.of_type(LOG_GROUP) if g.outputs["name"] == name]
    return group


def test_the_canary_is_uploaded_beside_the_stable_model_and_only_both_are_readable(
    base_config: dict[str, str], canary: Path
) -> None:
    run = run_stack(
        {**base_config, "canaryModelPath": str(canary), "canaryPercent": 10, "canaryMode": "split"}
    )
    digest = hashlib.sha256(canary.read_bytes()).hexdigest()
    version = digest[:12]
    model = run.named("model-store-canary-model").inputs
    assert model["key"] == f"models/example/{version}/model.ubj"
    assert model["metadata"] == {"sha256": digest}
    metadata = json.loads(run.named("model-store-canary-metadata").inputs["content"])
    assert (metadata["name"], metadata["version"], metadata["sha256"]) == (
        "example",
        version,
        digest,
    )
    bucket_arn = run.one(BUCKET).outputs["arn"]
    predictor = by_handler(run, contract.HANDLER_PREDICT)
    env = predictor.inputs["environment"]["variables"]
    assert (
        env[contract.ENV_CANARY_MODEL_URI]
        == f"s3://{run.one(BUCKET).outputs['bucket']}/" + (model["key"])
    )
    assert env[contract.ENV_CANARY_MODEL_SHA256] == digest
    assert (env[contract.ENV_CANARY_PERCENT], env[contract.ENV_CANARY_MODE]) == ("10", "split")
    assert contract.ENV_CAPTURE_SAMPLE_PERCENT not in env
    (read, logs) = policy_of(run, predictor)["Statement"]
    stable_key = run.named("model-store-model").inputs["key"]
    assert read == {
        "Sid": "ReadModel",
        "Effect": "Allow",
        "Action": ["s3:GetObject"],
        "Resource": [f"{bucket_arn}/{stable_key}", f"{bucket_arn}/{model['key']}"],
    }
    assert logs["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert run.exports["canaryModelUri"] == env[contract.ENV_CANARY_MODEL_URI]
    # split mode without sampling writes no capture lines: no capture resources
    assert run.of_type(SUBSCRIPTION) == []


def test_capture_resources_and_their_exact_grants(base_config: dict[str, str]) -> None:
    run = run_stack({**base_config, "captureSamplePercent": 5})
    predictor = by_handler(run, contract.HANDLER_PREDICT)
    assert predictor.inputs["environment"]["variables"][contract.ENV_CAPTURE_SAMPLE_PERCENT] == "5"
    writer = by_handler(run, contract.HANDLER_CAPTURE)
    bucket = run.one(BUCKET)
    assert writer.inputs["environment"]["variables"] == {
        "DATA_BUCKET": bucket.outputs["bucket"],
        "POWERTOOLS_SERVICE_NAME": "mlserve",
        "POWERTOOLS_METRICS_NAMESPACE": "mlserve",
    }
    writer_logs = group_of(run, writer)
    assert writer_logs.inputs["retentionInDays"] == 14
    assert policy_of(run, writer) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WriteCapture",
                "Effect": "Allow",
                "Action": ["s3:PutObject"],
                "Resource": [f"{bucket.outputs['arn']}/capture/*"],
            },
            {
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [f"{writer_logs.outputs['arn']}:*"],
            },
        ],
    }
    # the predictor gets no new grant: it only writes lines to its own log
    predictor_policy = policy_of(run, predictor)["Statement"]
    assert [s["Action"] for s in predictor_policy] == [
        ["s3:GetObject"],
        ["logs:CreateLogStream", "logs:PutLogEvents"],
    ]
    predictor_logs = group_of(run, predictor)
    (permission,) = [
        p for p in run.of_type(PERMISSION) if p.inputs["function"] == writer.outputs["name"]
    ]
    assert permission.inputs["action"] == "lambda:InvokeFunction"
    assert permission.inputs["principal"] == "logs.amazonaws.com"
    assert permission.inputs["sourceArn"] == f"{predictor_logs.outputs['arn']}:*"
    subscription = run.one(SUBSCRIPTION)
    assert subscription.inputs["logGroup"] == predictor_logs.outputs["name"]
    assert subscription.inputs["filterPattern"] == "{ $.mlserve_capture = 1 }"
    assert subscription.inputs["destinationArn"] == writer.outputs["arn"]
    assert permission.urn in subscription.dependencies  # invocable before it is subscribed
    assert run.exports["captureUri"] == f"s3://{bucket.outputs['bucket']}/capture/"
    assert run.exports["captureLogGroup"] == writer_logs.outputs["name"]
    assert REGION in permission.inputs["sourceArn"]


def test_a_shadow_canary_is_captured_without_sampling(
    base_config: dict[str, str], canary: Path
) -> None:
    run = run_stack(
        {**base_config, "canaryModelPath": str(canary), "canaryMode": "shadow", "canaryPercent": 20}
    )
    assert by_handler(run, contract.HANDLER_CAPTURE)
    assert len(run.of_type(SUBSCRIPTION)) == 1


def test_no_capture_resources_by_default(default_run: StackRun) -> None:
    assert default_run.of_type(SUBSCRIPTION) == []
    assert [f.inputs["handler"] for f in default_run.of_type(FUNCTION)] == [
        contract.HANDLER_PREDICT
    ]
    assert "captureUri" not in default_run.exports


def test_a_canary_of_other_features_stops_the_deployment(
    base_config: dict[str, str], tmp_path: Path
) -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    other = xgb.train(
        {"objective": "binary:logistic"},
        xgb.DMatrix(rng.random((40, 2)), label=rng.integers(0, 2, 40)),
        num_boost_round=2,
    )
    path = tmp_path / "model.json"
    other.save_model(str(path))
    with pytest.raises(Exception, match="canary's feature names"):
        run_stack({**base_config, "canaryModelPath": str(path)})


# --- the canary on the job architectures -------------------------------------------------------

TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
JOB_DEFINITION = "aws:batch/jobDefinition:JobDefinition"
JOB_CREATORS = (contract.HANDLER_JOBS, contract.HANDLER_TRIGGER)
CANARY_CONTAINER_ENV = (contract.ENV_CANARY_MODEL_URI, contract.ENV_CANARY_MODEL_SHA256)


def container_env(definition: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in definition["environment"]}


def scoring_reads(run: StackRun, role_name: str) -> list[str]:
    """The model objects and prefixes a scoring role may GetObject (its ReadModelAndInputs)."""
    (policy,) = [p for p in run.of_type(ROLE_POLICY) if p.inputs["role"] == role_name]
    (read,) = [
        s
        for s in json.loads(policy.inputs["policy"])["Statement"]
        if s["Sid"] == "ReadModelAndInputs"
    ]
    assert read["Action"] == ["s3:GetObject"]
    resources: list[str] = read["Resource"]
    return resources


def role_name_of(run: StackRun, role_arn: str) -> str:
    (role,) = [r for r in run.of_type(ROLE) if r.outputs["arn"] == role_arn]
    name: str = role.outputs["name"]
    return name


def test_the_job_architectures_hold_the_canary_and_assign_it(
    base_config: dict[str, str], canary: Path
) -> None:
    """Every scoring task and job definition holds both versions (declared once, by the
    program), its role reads exactly both objects, and every function that creates jobs knows
    the canary's version and share: the job API of each architecture and the S3 trigger."""
    run = run_stack(
        {
            **base_config,
            "architecture": "lambda-ecs,stepfunctions-ecs,stepfunctions-batch",
            "canaryModelPath": str(canary),
            "canaryPercent": 30,
        }
    )
    bucket, bucket_arn = run.one(BUCKET).outputs["bucket"], run.one(BUCKET).outputs["arn"]
    stable_key = run.named("model-store-model").inputs["key"]
    canary_key = run.named("model-store-canary-model").inputs["key"]
    digest = hashlib.sha256(canary.read_bytes()).hexdigest()
    inputs = f"{bucket_arn}/{contract.INPUTS_PREFIX}*"

    (task,) = run.of_type(TASK_DEFINITION)  # one, shared by lambda-ecs and stepfunctions-ecs
    (container,) = json.loads(task.inputs["containerDefinitions"])
    (job_definition,) = run.of_type(JOB_DEFINITION)
    properties = json.loads(job_definition.inputs["containerProperties"])
    for env in (container_env(container), container_env(properties)):
        assert env[contract.ENV_CANARY_MODEL_URI] == f"s3://{bucket}/{canary_key}"
        assert env[contract.ENV_CANARY_MODEL_SHA256] == digest
        # who scores a job is in its record: the containers get no share to decide with
        assert contract.ENV_CANARY_PERCENT not in env
    for role_arn in (task.inputs["taskRoleArn"], properties["jobRoleArn"]):
        assert scoring_reads(run, role_name_of(run, role_arn)) == [
            f"{bucket_arn}/{stable_key}",
            inputs,
            f"{bucket_arn}/{canary_key}",
        ]

    creators = [f for f in run.of_type(FUNCTION) if f.inputs["handler"] in JOB_CREATORS]
    assert len(creators) == 4  # three job APIs and the trigger
    for function in creators:
        env = function.inputs["environment"]["variables"]
        assert env[contract.ENV_CANARY_MODEL_URI] == f"s3://{bucket}/{canary_key}"
        assert env[contract.ENV_CANARY_PERCENT] == "30"
        # they never read the canary's object: its version is in its key
        assert f"{bucket_arn}/{canary_key}" not in json.dumps(policy_of(run, function))
    # the steps and the state machines know nothing of versions
    for function in run.of_type(FUNCTION):
        if function.inputs["handler"] not in JOB_CREATORS:
            assert contract.ENV_CANARY_MODEL_URI not in function.inputs["environment"]["variables"]
    assert run.exports["canaryModelUri"] == f"s3://{bucket}/{canary_key}"
    # the canary's jobs failing more than the stable version's alarms (no predictor: no
    # predictor alarm)
    alarms = {a.name for a in run.of_type(ALARM)}
    assert "monitoring-canary-jobs-failed-rate" in alarms
    assert "monitoring-canary-error-rate" not in alarms


def test_a_shadow_canary_stays_with_the_lambda_predictor(
    base_config: dict[str, str], canary: Path
) -> None:
    run = run_stack(
        {
            **base_config,
            "architecture": "lambda,lambda-ecs",
            "canaryModelPath": str(canary),
            "canaryMode": "shadow",
            "canaryPercent": 20,
        }
    )
    bucket_arn = run.one(BUCKET).outputs["arn"]
    stable_key = run.named("model-store-model").inputs["key"]
    (task,) = run.of_type(TASK_DEFINITION)
    (container,) = json.loads(task.inputs["containerDefinitions"])
    assert not set(CANARY_CONTAINER_ENV) & set(container_env(container))
    assert scoring_reads(run, role_name_of(run, task.inputs["taskRoleArn"])) == [
        f"{bucket_arn}/{stable_key}",
        f"{bucket_arn}/{contract.INPUTS_PREFIX}*",
    ]
    job_api = by_handler(run, contract.HANDLER_JOBS)
    assert contract.ENV_CANARY_MODEL_URI not in job_api.inputs["environment"]["variables"]
    predictor = by_handler(run, contract.HANDLER_PREDICT)
    assert predictor.inputs["environment"]["variables"][contract.ENV_CANARY_MODE] == "shadow"
    alarms = {a.name for a in run.of_type(ALARM)}
    assert "monitoring-canary-error-rate" in alarms
    assert "monitoring-canary-jobs-failed-rate" not in alarms
