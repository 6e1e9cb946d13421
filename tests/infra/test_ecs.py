"""Architecture `lambda-ecs` under mocks: ECS compute, the job API, its grants and wiring."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components.api import HTTP_METHODS
from components.ecs import (
    JOB_API_OPERATIONS,
    EcsScoringArgs,
    LambdaEcsPredictorArgs,
    container_definitions,
    job_api_timeout,
    task_family,
)
from components.settings import SettingsError, default_lambda_runtime
from runtime import contract
from tests.infra.conftest import ACCOUNT, REGION, REPO, StackRun, run_stack

CLUSTER = "aws:ecs/cluster:Cluster"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
FUNCTION = "aws:lambda/function:Function"
PERMISSION = "aws:lambda/permission:Permission"
LAYER = "aws:lambda/layerVersion:LayerVersion"
REST_API = "aws:apigateway/restApi:RestApi"
TABLE = "aws:dynamodb/table:Table"
BUCKET = "aws:s3/bucket:Bucket"
REPOSITORY = "aws:ecr/repository:Repository"
LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
IMAGE = "docker-build:index:Image"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"

# component -> (type, logical name) of every child, for `architecture: lambda-ecs`.
EXPECTED = {
    ("mlserve:index:Network", "network"): {(SECURITY_GROUP, "network-tasks")},
    ("mlserve:index:ScoringImage", "scoring-image"): {
        (REPOSITORY, "scoring-image-repository"),
        (LIFECYCLE, "scoring-image-lifecycle"),
        (IMAGE, "scoring-image-image"),
    },
    ("mlserve:index:EcsScoring", "scoring"): {
        (CLUSTER, "scoring-cluster"),
        (LOG_GROUP, "scoring-logs"),
        (ROLE, "scoring-task-role"),
        (ROLE_POLICY, "scoring-task-policy"),
        (ROLE, "scoring-execution-role"),
        (ROLE_POLICY, "scoring-execution-policy"),
        (TASK_DEFINITION, "scoring-task"),
    },
    ("mlserve:index:LambdaEcsPredictor", "lambda-ecs"): {
        (LOG_GROUP, "lambda-ecs-logs"),
        (ROLE, "lambda-ecs-role"),
        (ROLE_POLICY, "lambda-ecs-policy"),
        (FUNCTION, "lambda-ecs-function"),
    },
}
CONTAINER_COMPONENTS = {typ for typ, _ in EXPECTED}


@pytest.fixture(scope="module")
def ecs_run(base_config: dict[str, str]) -> StackRun:
    return run_stack({**base_config, "architecture": "lambda-ecs"})


@pytest.fixture(scope="module")
def both_run(base_config: dict[str, str]) -> StackRun:
    return run_stack({**base_config, "architecture": "lambda,lambda-ecs"})


def statements(run: StackRun, name: str) -> list[dict[str, Any]]:
    return json.loads(run.named(name).inputs["policy"])["Statement"]


def container(run: StackRun) -> dict[str, Any]:
    (definition,) = json.loads(run.one(TASK_DEFINITION).inputs["containerDefinitions"])
    return definition


def operations(run: StackRun) -> dict[str, dict[str, Any]]:
    doc = json.loads(run.one(REST_API).inputs["body"])
    return {
        op["operationId"]: op
        for item in doc["paths"].values()
        for method, op in item.items()
        if method in HTTP_METHODS
    }


def integrated_function(op: dict[str, Any]) -> str:
    uri = op["x-amazon-apigateway-integration"]["uri"]
    return uri.split("/functions/", 1)[1].removesuffix("/invocations")


def arn_of(run: StackRun, name: str) -> str:
    return run.named(name).outputs["arn"]


# --- what is built --------------------------------------------------------------------------------
def test_every_resource_exists_and_is_parented(ecs_run: StackRun) -> None:
    stack = ecs_run.stack
    for (typ, name), children in EXPECTED.items():
        component = ecs_run.one(typ, name)
        assert component.parent == stack.urn, name
        assert {(c.type, c.name) for c in ecs_run.children(component)} == children, name
        for child in ecs_run.children(component):
            assert child.name.startswith(f"{name}-"), child.name
            assert child.urn == f"urn:pulumi:test::mlserve::{typ}${child.type}::{child.name}"
    assert all(r.is_component for r in ecs_run.children(stack))
    # no predictor of the `lambda` architecture
    assert ecs_run.of_type("mlserve:index:RealtimePredictor") == []
    assert {r.name for r in ecs_run.of_type(PERMISSION)} == {"api-invoke-lambda-ecs"}


def test_container_pieces_are_built_once_and_only_when_asked(
    default_run: StackRun, both_run: StackRun
) -> None:
    for typ in CONTAINER_COMPONENTS:
        assert default_run.of_type(typ) == [], typ
        assert len(both_run.of_type(typ)) == 1, typ
    assert len(both_run.of_type(TASK_DEFINITION)) == 1


def test_no_hard_coded_physical_names(ecs_run: StackRun) -> None:
    for r in ecs_run.resources:
        if r.type in {CLUSTER, LOG_GROUP, ROLE, FUNCTION, REPOSITORY, SECURITY_GROUP}:
            assert "name" not in r.inputs and "namePrefix" not in r.inputs, r.name
    # the task definition family is derived from the stack and the logical name
    assert ecs_run.one(TASK_DEFINITION).inputs["family"] == "mlserve-test-scoring"


def test_task_family_is_valid_for_any_stack_name() -> None:
    assert task_family("dev", "scoring") == "mlserve-dev-scoring"
    assert task_family("org/proj.dev", "scoring") == "mlserve-org-proj-dev-scoring"
    assert len(task_family("x" * 300, "scoring")) == 255


def test_components_register_their_outputs(ecs_run: StackRun) -> None:
    def outputs(typ: str) -> dict[str, Any]:
        return ecs_run.component_outputs[ecs_run.one(typ).urn]

    scoring = outputs("mlserve:index:EcsScoring")
    assert scoring == {
        "cluster_arn": ecs_run.one(CLUSTER).outputs["arn"],
        "cluster_name": ecs_run.one(CLUSTER).outputs["name"],
        "task_definition_arn": ecs_run.one(TASK_DEFINITION).outputs["arn"],
        "task_role_arn": arn_of(ecs_run, "scoring-task-role"),
        "execution_role_arn": arn_of(ecs_run, "scoring-execution-role"),
        "log_group_name": ecs_run.named("scoring-logs").outputs["name"],
    }
    job_api = outputs("mlserve:index:LambdaEcsPredictor")
    assert job_api == {
        "function_name": ecs_run.named("lambda-ecs-function").outputs["name"],
        "function_arn": arn_of(ecs_run, "lambda-ecs-function"),
        "log_group_name": ecs_run.named("lambda-ecs-logs").outputs["name"],
        "role_arn": arn_of(ecs_run, "lambda-ecs-role"),
    }
    assert set(outputs("mlserve:index:Network")) >= {
        "subnet_ids",
        "security_group_ids",
        "assign_public_ip",
    }
    assert set(outputs("mlserve:index:ScoringImage")) >= {"image_uri", "repository_arn"}


def test_stack_outputs(ecs_run: StackRun) -> None:
    exports = ecs_run.exports
    assert set(exports) == {
        "apiUrl", "apiKey", "modelBucket", "modelUri", "jobTable", "architecture",
        "dashboardUrl", "alarmTopicArn",
        "imageUri", "ecsCluster", "jobApiLogGroup", "scoringLogGroup",
    }  # fmt: skip
    assert exports["architecture"] == ["lambda-ecs"]
    assert exports["ecsCluster"] == ecs_run.one(CLUSTER).outputs["name"]
    assert exports["scoringLogGroup"] == ecs_run.named("scoring-logs").outputs["name"]
    assert exports["jobApiLogGroup"] == ecs_run.named("lambda-ecs-logs").outputs["name"]
    assert exports["imageUri"].endswith("@" + ecs_run.one(IMAGE).outputs["digest"])
    assert ecs_run.secret_exports == {"apiKey"}


# --- ECS compute ----------------------------------------------------------------------------------
def test_cluster_has_container_insights(ecs_run: StackRun) -> None:
    assert ecs_run.one(CLUSTER).inputs == {
        "settings": [{"name": "containerInsights", "value": "enabled"}]
    }


def test_task_definition(ecs_run: StackRun) -> None:
    task = ecs_run.one(TASK_DEFINITION)
    inputs = task.inputs
    assert inputs["requiresCompatibilities"] == ["FARGATE"]
    assert inputs["networkMode"] == "awsvpc"
    assert (inputs["cpu"], inputs["memory"]) == ("1024", "2048")
    assert inputs["runtimePlatform"] == {
        "operatingSystemFamily": "LINUX",
        "cpuArchitecture": "ARM64",
    }
    assert inputs["taskRoleArn"] == arn_of(ecs_run, "scoring-task-role")
    assert inputs["executionRoleArn"] == arn_of(ecs_run, "scoring-execution-role")
    # no task can start before both roles hold their grants
    assert ecs_run.named("scoring-task-policy").urn in task.dependencies
    assert ecs_run.named("scoring-execution-policy").urn in task.dependencies


def test_the_one_container(ecs_run: StackRun, tiny_model: Path) -> None:
    digest = hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    bucket = ecs_run.one(BUCKET).outputs["bucket"]
    assert container(ecs_run) == {
        "name": contract.SCORING_CONTAINER_NAME,
        "image": ecs_run.exports["imageUri"],
        "essential": True,
        "memory": 2048,
        "environment": [
            {"name": "ALLOW_MISSING", "value": "false"},
            {"name": "DATA_BUCKET", "value": bucket},
            {"name": "JOB_TABLE", "value": ecs_run.one(TABLE).outputs["name"]},
            {"name": "MODEL_SHA256", "value": digest},
            {"name": "MODEL_URI", "value": ecs_run.exports["modelUri"]},
            {"name": "UNKNOWN_CATEGORY", "value": "error"},
        ],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": ecs_run.named("scoring-logs").outputs["name"],
                "awslogs-region": REGION,
                "awslogs-stream-prefix": "scoring",
            },
        },
    }
    assert contract.SCORING_CONTAINER_NAME == "scoring"


def test_task_settings_reach_the_task_definition(base_config: dict[str, str]) -> None:
    run = run_stack(
        {
            **base_config,
            "architecture": "lambda-ecs",
            "taskCpu": 4096,
            "taskMemory": 16384,
            "lambdaArchitecture": "x86_64",
            "allowMissing": True,
            "logRetentionDays": 30,
        }
    )
    inputs = run.one(TASK_DEFINITION).inputs
    assert (inputs["cpu"], inputs["memory"]) == ("4096", "16384")
    assert inputs["runtimePlatform"]["cpuArchitecture"] == "X86_64"
    assert container(run)["memory"] == 16384
    env = {e["name"]: e["value"] for e in container(run)["environment"]}
    assert env["ALLOW_MISSING"] == "true"
    for name in ("scoring-logs", "lambda-ecs-logs"):
        assert run.named(name).inputs["retentionInDays"] == 30
    function = run.named("lambda-ecs-function").inputs
    assert function["architectures"] == ["x86_64"]
    assert function["environment"]["variables"]["ALLOW_MISSING"] == "true"


def test_log_groups_keep_the_default_retention(ecs_run: StackRun) -> None:
    for name in ("scoring-logs", "lambda-ecs-logs"):
        assert ecs_run.named(name).inputs == {"retentionInDays": 14}


def test_container_definitions_is_pure_and_sorted() -> None:
    (definition,) = container_definitions(
        image_uri="img", memory=512, environment={"B": "2", "A": "1"}, log_group_name="g",
        region="eu-west-1",
    )  # fmt: skip
    assert definition["environment"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]


# --- roles ----------------------------------------------------------------------------------------
def test_task_roles_are_assumed_by_ecs_tasks_only(ecs_run: StackRun) -> None:
    for name in ("scoring-task-role", "scoring-execution-role"):
        role = ecs_run.named(name)
        assert json.loads(role.inputs["assumeRolePolicy"])["Statement"] == [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ]
        assert "managedPolicyArns" not in role.inputs and "inlinePolicies" not in role.inputs
    assert not any("PolicyAttachment" in r.type for r in ecs_run.resources)


def test_task_role_statements(ecs_run: StackRun) -> None:
    bucket_arn = ecs_run.one(BUCKET).outputs["arn"]
    model_key = ecs_run.named("model-store-model").inputs["key"]
    policy = ecs_run.named("scoring-task-policy")
    assert policy.inputs["role"] == ecs_run.named("scoring-task-role").outputs["name"]
    assert statements(ecs_run, "scoring-task-policy") == [
        {
            "Sid": "JobRecord",
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
            "Resource": [ecs_run.one(TABLE).outputs["arn"]],
        },
        {
            "Sid": "ReadModelAndInputs",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"{bucket_arn}/{model_key}", f"{bucket_arn}/inputs/*"],
        },
        {
            "Sid": "WriteResults",
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": [f"{bucket_arn}/results/*"],
        },
    ]


def test_execution_role_statements(ecs_run: StackRun) -> None:
    policy = ecs_run.named("scoring-execution-policy")
    assert policy.inputs["role"] == ecs_run.named("scoring-execution-role").outputs["name"]
    assert statements(ecs_run, "scoring-execution-policy") == [
        {
            "Sid": "EcrAuthentication",
            "Effect": "Allow",
            "Action": ["ecr:GetAuthorizationToken"],
            "Resource": ["*"],
        },
        {
            "Sid": "PullScoringImage",
            "Effect": "Allow",
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Resource": [ecs_run.one(REPOSITORY).outputs["arn"]],
        },
        {
            "Sid": "WriteTaskLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [f"{arn_of(ecs_run, 'scoring-logs')}:*"],
        },
    ]


def test_job_api_role_statements(ecs_run: StackRun) -> None:
    role = ecs_run.named("lambda-ecs-role")
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]
    assert ecs_run.named("lambda-ecs-policy").inputs["role"] == role.outputs["name"]
    bucket_arn = ecs_run.one(BUCKET).outputs["arn"]
    metadata_key = ecs_run.named("model-store-metadata").inputs["key"]
    cluster = ecs_run.one(CLUSTER).outputs
    family = ecs_run.one(TASK_DEFINITION).inputs["family"]
    assert statements(ecs_run, "lambda-ecs-policy") == [
        {
            "Sid": "JobRecords",
            "Effect": "Allow",
            "Action": ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"],
            "Resource": [ecs_run.one(TABLE).outputs["arn"]],
        },
        {
            "Sid": "ListCallerJobs",
            "Effect": "Allow",
            "Action": ["dynamodb:Query"],
            "Resource": [ecs_run.one(TABLE).outputs["arn"] + "/index/by-caller"],
        },
        {
            "Sid": "ReadMetadataInputsAndResults",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [
                f"{bucket_arn}/{metadata_key}",
                f"{bucket_arn}/inputs/*",
                f"{bucket_arn}/results/*",
            ],
        },
        {
            "Sid": "WriteInputs",
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": [f"{bucket_arn}/inputs/*"],
        },
        {
            "Sid": "RunScoringTask",
            "Effect": "Allow",
            "Action": ["ecs:RunTask"],
            "Resource": [f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:*"],
            "Condition": {"ArnEquals": {"ecs:cluster": cluster["arn"]}},
        },
        {
            "Sid": "WatchScoringTasks",
            "Effect": "Allow",
            "Action": ["ecs:DescribeTasks", "ecs:StopTask"],
            "Resource": [f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster['name']}/*"],
        },
        {
            "Sid": "PassScoringRoles",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": [
                arn_of(ecs_run, "scoring-task-role"),
                arn_of(ecs_run, "scoring-execution-role"),
            ],
            "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        },
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [f"{arn_of(ecs_run, 'lambda-ecs-logs')}:*"],
        },
    ]


@pytest.mark.parametrize(
    "config",
    [
        {"architecture": "lambda-ecs"},
        {"architecture": "lambda,lambda-ecs"},
        {"architecture": "lambda-ecs", "image": "ghcr.example/org/scoring:1"},
        {"architecture": "lambda-ecs", "image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/s:1"},
    ],
)
def test_no_wildcard_action_and_no_wildcard_resource_but_ecr_auth(
    base_config: dict[str, str], config: dict[str, str]
) -> None:
    run = run_stack({**base_config, **config})
    assert run.of_type(ROLE_POLICY)
    for policy in run.of_type(ROLE_POLICY):
        for statement in json.loads(policy.inputs["policy"])["Statement"]:
            assert statement["Effect"] == "Allow"
            assert all("*" not in action for action in statement["Action"]), policy.name
            if "*" in statement["Resource"]:
                assert policy.name == "scoring-execution-policy"
                assert statement["Action"] == ["ecr:GetAuthorizationToken"]
                assert statement["Resource"] == ["*"]


# --- the job API function -------------------------------------------------------------------------
def test_job_api_function(ecs_run: StackRun, tiny_model: Path) -> None:
    function = ecs_run.named("lambda-ecs-function")
    inputs = function.inputs
    digest = hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    bucket = ecs_run.one(BUCKET).outputs["bucket"]
    metadata_key = ecs_run.named("model-store-metadata").inputs["key"]
    log_group = ecs_run.named("lambda-ecs-logs")
    assert inputs["handler"] == contract.HANDLER_JOBS == "runtime.handlers.jobs.handler"
    assert inputs["runtime"] == default_lambda_runtime()  # mlserve:lambdaRuntime empty
    assert inputs["architectures"] == ["arm64"]
    assert inputs["memorySize"] == 1024
    assert inputs["timeout"] == 29
    assert inputs["role"] == arn_of(ecs_run, "lambda-ecs-role")
    assert inputs["layers"] == [ecs_run.one(LAYER).outputs["arn"]]
    assert isinstance(inputs["code"], pulumi.FileArchive)
    assert inputs["loggingConfig"] == {"logFormat": "JSON", "logGroup": log_group.outputs["name"]}
    assert "name" not in inputs and "publish" not in inputs
    assert ecs_run.named("lambda-ecs-policy").urn in function.dependencies
    security_group = ecs_run.one(SECURITY_GROUP).id
    assert inputs["environment"]["variables"] == {
        "ARCHITECTURE": "lambda-ecs",
        "JOB_TABLE": ecs_run.one(TABLE).outputs["name"],
        "DATA_BUCKET": bucket,
        "MODEL_URI": ecs_run.exports["modelUri"],
        "MODEL_SHA256": digest,
        "MODEL_METADATA_URI": f"s3://{bucket}/{metadata_key}",
        "MAX_ROWS": "10000",
        "ALLOW_MISSING": "false",
        "UNKNOWN_CATEGORY": "error",
        "SYNC_WAIT_SECONDS": "25",
        "JOB_TTL_DAYS": str(contract.DEFAULT_JOB_TTL_DAYS),
        "PRESIGNED_URL_SECONDS": str(contract.DEFAULT_PRESIGNED_URL_SECONDS),
        "ECS_CLUSTER": ecs_run.one(CLUSTER).outputs["arn"],
        "ECS_TASK_DEFINITION": ecs_run.one(TASK_DEFINITION).outputs["arn"],
        "ECS_SUBNETS": "subnet-0a1b2c3d4e5f60001,subnet-0a1b2c3d4e5f60002",
        "ECS_SECURITY_GROUPS": security_group,
        "ECS_ASSIGN_PUBLIC_IP": "ENABLED",
        "POWERTOOLS_SERVICE_NAME": "mlserve",
        "POWERTOOLS_METRICS_NAMESPACE": "mlserve",
    }
    # the task definition ARN carries its revision
    assert inputs["environment"]["variables"]["ECS_TASK_DEFINITION"].endswith(":1")


@pytest.mark.parametrize(("wait", "timeout"), [(0, 10), (5, 10), (10, 14), (20, 24), (25, 29)])
def test_job_api_timeout_leaves_a_margin_over_the_wait(
    base_config: dict[str, str], wait: int, timeout: int
) -> None:
    assert job_api_timeout(wait) == timeout
    if wait in (0, 10):
        run = run_stack({**base_config, "architecture": "lambda-ecs", "syncWaitSeconds": wait})
        inputs = run.named("lambda-ecs-function").inputs
        assert inputs["timeout"] == timeout
        assert inputs["environment"]["variables"]["SYNC_WAIT_SECONDS"] == str(wait)


def test_job_api_settings_reach_the_function(base_config: dict[str, str]) -> None:
    run = run_stack(
        {**base_config, "architecture": "lambda-ecs", "lambdaMemory": 512, "maxRows": 77}
    )
    inputs = run.named("lambda-ecs-function").inputs
    assert inputs["memorySize"] == 512
    assert inputs["environment"]["variables"]["MAX_ROWS"] == "77"


# --- one API for both architectures ---------------------------------------------------------------
def test_lambda_ecs_serves_every_operation(ecs_run: StackRun) -> None:
    job_api = arn_of(ecs_run, "lambda-ecs-function")
    ops = operations(ecs_run)
    assert set(ops) == set(JOB_API_OPERATIONS)
    assert {integrated_function(op) for op in ops.values()} == {job_api}
    for op in ops.values():
        assert op["security"] == [{"api_key": []}]


def test_lambda_and_lambda_ecs_share_one_api(both_run: StackRun) -> None:
    assert len(both_run.of_type(REST_API)) == 1
    predictor = arn_of(both_run, "predictor-function")
    job_api = arn_of(both_run, "lambda-ecs-function")
    served = {op_id: integrated_function(op) for op_id, op in operations(both_run).items()}
    assert served == {
        "health": predictor,
        "predict": predictor,
        "submit_job": job_api,
        "list_jobs": job_api,
        "get_job": job_api,
        "cancel_job": job_api,
        "start_job": job_api,
    }
    permissions = {p.name: p.inputs["function"] for p in both_run.of_type(PERMISSION)}
    assert permissions == {
        "api-invoke-predictor": both_run.named("predictor-function").outputs["name"],
        "api-invoke-lambda-ecs": both_run.named("lambda-ecs-function").outputs["name"],
    }
    assert both_run.exports["architecture"] == ["lambda", "lambda-ecs"]
    assert {"predictorLogGroup", "jobApiLogGroup", "imageUri", "ecsCluster"} <= set(
        both_run.exports
    )


def test_the_first_listed_architecture_serves_predict(base_config: dict[str, str]) -> None:
    run = run_stack({**base_config, "architecture": "lambda-ecs,lambda"})
    job_api = arn_of(run, "lambda-ecs-function")
    served = {op_id: integrated_function(op) for op_id, op in operations(run).items()}
    assert served == dict.fromkeys(JOB_API_OPERATIONS, job_api)


# --- stability ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "architecture", ["lambda", "lambda-ecs", "lambda,lambda-ecs", "lambda-ecs,lambda"]
)
def test_switching_architecture_keeps_bucket_and_table(
    base_config: dict[str, str], default_run: StackRun, architecture: str
) -> None:
    run = run_stack({**base_config, "architecture": architecture})
    for typ in (BUCKET, TABLE):
        assert run.one(typ).urn == default_run.one(typ).urn, typ
        assert run.one(typ).retain_on_delete is True
        assert run.one(typ).inputs == default_run.one(typ).inputs
    for name in ("model-store-model", "model-store-metadata"):
        assert run.named(name).urn == default_run.named(name).urn


def test_shared_container_urns_do_not_depend_on_the_companions(
    ecs_run: StackRun, both_run: StackRun
) -> None:
    def urns(run: StackRun) -> set[str]:
        parents = {run.one(typ).urn for typ in CONTAINER_COMPONENTS}
        return {r.urn for r in run.resources if r.parent in parents} | parents

    assert urns(ecs_run) == urns(both_run)


def test_lambda_ecs_program_is_deterministic_and_previews_the_same(
    base_config: dict[str, str], ecs_run: StackRun
) -> None:
    config = {**base_config, "architecture": "lambda-ecs"}
    again = run_stack(config)

    def plain(value: Any) -> Any:
        if isinstance(value, pulumi.FileAsset | pulumi.FileArchive):
            return f"{type(value).__name__}({value.path})"
        raise TypeError(value)

    def snapshot(run: StackRun) -> list[tuple[str, str]]:
        return sorted(
            (r.urn, json.dumps(r.inputs, sort_keys=True, default=plain)) for r in run.resources
        )

    assert snapshot(again) == snapshot(ecs_run)
    preview = run_stack(config, preview=True)
    assert sorted(r.urn for r in preview.resources) == sorted(r.urn for r in ecs_run.resources)


# --- config errors --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cpu", "memory", "expected"),
    [
        (256, 4096, "mlserve:taskMemory: 4096 does not fit taskCpu 256; allowed: 512, 1024, 2048"),
        (
            1024,
            1024,
            "mlserve:taskMemory: 1024 does not fit taskCpu 1024; "
            "allowed: 2048-8192 in steps of 1024 (MB)",
        ),
        (3000, 2048, "mlserve:taskCpu: 3000 is not a Fargate CPU size; allowed: 256, 512"),
    ],
)
def test_invalid_task_size_fails_before_anything_is_built(
    base_config: dict[str, str], cpu: int, memory: int, expected: str
) -> None:
    runs: list[StackRun] = []
    with pytest.raises(SettingsError) as err:
        run_stack(
            {**base_config, "architecture": "lambda-ecs", "taskCpu": cpu, "taskMemory": memory},
            runs=runs,
        )
    assert expected in str(err.value)
    assert [r.type for r in runs[0].resources] == ["pulumi:pulumi:Stack"]


def test_example_stack_files_deploy(base_config: dict[str, str]) -> None:
    stack_files = sorted(REPO.glob("Pulumi.*.yaml"))
    assert REPO / "Pulumi.lambda-ecs.yaml" in stack_files
    for path in stack_files:
        config = yaml.safe_load(path.read_text())["config"]
        run = run_stack({**config, "modelPath": base_config["modelPath"]})
        assert run.exports["architecture"] == config["mlserve:architecture"].split(","), path


# --- args validation ------------------------------------------------------------------------------
def ecs_args(**overrides: Any) -> EcsScoringArgs:
    arguments: dict[str, Any] = {
        "image_uri": "img",
        "repository_arn": None,
        "table_name": "t",
        "table_arn": "arn:aws:dynamodb:us-east-1:1:table/t",
        "bucket_name": "b",
        "bucket_arn": "arn:aws:s3:::b",
        "model_uri": "s3://b/models/m/v/model.ubj",
        "model_sha256": "0" * 64,
        "model_object_arn": "arn:aws:s3:::b/models/m/v/model.ubj",
        **overrides,
    }
    return EcsScoringArgs(**arguments)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"architecture": "arm"}, "architecture 'arm'"),
        ({"task_cpu": 300}, "task_cpu 300 is not a Fargate CPU size"),
        ({"task_cpu": 256, "task_memory": 1536}, r"task_memory 1536 does not fit task_cpu 256"),
        ({"log_retention_days": 2}, "log_retention_days 2"),
    ],
)
def test_ecs_scoring_args_reject(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ecs_args(**overrides)


def test_ecs_scoring_args_cpu_architecture() -> None:
    assert ecs_args().cpu_architecture == "ARM64"
    assert ecs_args(architecture="x86_64").cpu_architecture == "X86_64"


def job_api_args(**overrides: Any) -> LambdaEcsPredictorArgs:
    arguments: dict[str, Any] = {
        "code": pulumi.AssetArchive({}),
        "layer_arn": "arn:aws:lambda:us-east-1:1:layer:l:1",
        "runtime": "python3.13",
        "table_name": "t",
        "table_arn": "arn:aws:dynamodb:us-east-1:1:table/t",
        "bucket_name": "b",
        "bucket_arn": "arn:aws:s3:::b",
        "model_uri": "s3://b/models/m/v/model.ubj",
        "model_sha256": "0" * 64,
        "model_metadata_key": "models/m/v/metadata.json",
        "cluster_arn": "arn:aws:ecs:us-east-1:1:cluster/c",
        "task_definition_arn": "arn:aws:ecs:us-east-1:1:task-definition/f:1",
        "task_role_arn": "arn:aws:iam::1:role/t",
        "execution_role_arn": "arn:aws:iam::1:role/e",
        "subnet_ids": ["subnet-01234567"],
        "security_group_ids": ["sg-01234567"],
        **overrides,
    }
    return LambdaEcsPredictorArgs(**arguments)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"code": "runtime.zip"}, "code must be a pulumi.Archive"),
        ({"model_metadata_key": "metadata.json"}, "model_metadata_key 'metadata.json'"),
        ({"assign_public_ip": "YES"}, "assign_public_ip 'YES'"),
        ({"memory": 64}, "memory 64"),
        ({"max_rows": 0}, "max_rows 0"),
        ({"sync_wait_seconds": 26}, "sync_wait_seconds 26 not in 0-25"),
        ({"sync_wait_seconds": -1}, "sync_wait_seconds -1"),
        ({"job_ttl_days": 0}, "job_ttl_days 0"),
        ({"lambda_architecture": "aarch64"}, "architecture 'aarch64'"),
    ],
)
def test_job_api_args_reject(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        job_api_args(**overrides)


def test_job_api_args_timeout_follows_the_wait() -> None:
    assert job_api_args().timeout == 29
    assert job_api_args(sync_wait_seconds=3).timeout == 10
