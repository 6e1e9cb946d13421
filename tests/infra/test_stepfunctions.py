"""Architecture `stepfunctions-ecs` under mocks: the workflow, its Lambdas, grants and wiring."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components import workflows
from components.ecs import JOB_API_OPERATIONS
from components.settings import default_lambda_runtime
from components.stepfunctions import (
    DEFAULT_EXECUTION_TIMEOUT_SECONDS,
    MAX_POLL_ROUNDS,
    STEP_FUNCTION_TIMEOUT_SECONDS,
    STEP_TIMEOUT_SECONDS,
    StepFunctionsEcsPredictorArgs,
    execution_timeout,
    render_definition,
)
from runtime import contract
from tests.infra.conftest import ACCOUNT, REGION, StackRun, run_stack

STATE_MACHINE = "aws:sfn/stateMachine:StateMachine"
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
IMAGE = "docker-build:index:Image"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
COMPONENT = "mlserve:index:StepFunctionsEcsPredictor"
SHARED_CONTAINERS = (
    "mlserve:index:Network",
    "mlserve:index:ScoringImage",
    "mlserve:index:EcsScoring",
)

NAME = "stepfunctions-ecs"
API = f"{NAME}-api"
RUN_ECS = f"{NAME}-run-ecs"
CHECK = f"{NAME}-check-job-status"
MACHINE = f"{NAME}-state-machine"


def function_children(prefix: str) -> set[tuple[str, str]]:
    return {
        (LOG_GROUP, f"{prefix}-logs"),
        (ROLE, f"{prefix}-role"),
        (ROLE_POLICY, f"{prefix}-policy"),
        (FUNCTION, f"{prefix}-function"),
    }


MACHINE_CHILDREN = {
    (LOG_GROUP, f"{MACHINE}-logs"),
    (ROLE, f"{MACHINE}-role"),
    (ROLE_POLICY, f"{MACHINE}-policy"),
    (STATE_MACHINE, MACHINE),
}
NATIVE_CHILDREN = MACHINE_CHILDREN | function_children(API)
LAMBDA_CHILDREN = NATIVE_CHILDREN | function_children(RUN_ECS) | function_children(CHECK)

LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}


@pytest.fixture(scope="module")
def sfn_run(base_config: dict[str, str]) -> StackRun:
    return run_stack({**base_config, "architecture": NAME})


@pytest.fixture(scope="module")
def native_run(base_config: dict[str, str]) -> StackRun:
    return run_stack({**base_config, "architecture": NAME, "polling": "native"})


@pytest.fixture(scope="module")
def with_lambda_run(base_config: dict[str, str]) -> StackRun:
    return run_stack({**base_config, "architecture": f"lambda,{NAME}"})


@pytest.fixture(scope="module")
def with_lambda_ecs_run(base_config: dict[str, str]) -> StackRun:
    return run_stack({**base_config, "architecture": f"lambda-ecs,{NAME}"})


def statements(run: StackRun, name: str) -> list[dict[str, Any]]:
    return json.loads(run.named(name).inputs["policy"])["Statement"]


def definition(run: StackRun) -> dict[str, Any]:
    return json.loads(run.one(STATE_MACHINE).inputs["definition"])


def arn_of(run: StackRun, name: str) -> str:
    return run.named(name).outputs["arn"]


def operations(run: StackRun) -> dict[str, str]:
    """operationId -> the function ARN API Gateway invokes for it."""
    doc = json.loads(run.one(REST_API).inputs["body"])
    served = {}
    for item in doc["paths"].values():
        for method, op in item.items():
            if method.startswith("x-") or method == "parameters":
                continue
            uri = op["x-amazon-apigateway-integration"]["uri"]
            served[op["operationId"]] = uri.split("/functions/", 1)[1].removesuffix("/invocations")
    return served


# --- what is built --------------------------------------------------------------------------------
@pytest.mark.parametrize(("polling", "children"), [("lambda", LAMBDA_CHILDREN), ("native", None)])
def test_every_resource_exists_and_is_parented(
    sfn_run: StackRun, native_run: StackRun, polling: str, children: set[Any] | None
) -> None:
    run = sfn_run if polling == "lambda" else native_run
    expected = children or NATIVE_CHILDREN
    component = run.one(COMPONENT, NAME)
    assert component.parent == run.stack.urn
    assert {(c.type, c.name) for c in run.children(component)} == expected
    for child in run.children(component):
        assert child.name.startswith(f"{NAME}-"), child.name
        assert child.urn == f"urn:pulumi:test::mlserve::{COMPONENT}${child.type}::{child.name}"
    # the shared container components, once each, parented to the stack
    for typ in SHARED_CONTAINERS:
        assert run.one(typ).parent == run.stack.urn
    assert all(r.is_component for r in run.children(run.stack))
    assert run.of_type("mlserve:index:LambdaEcsPredictor") == []
    assert {r.name for r in run.of_type(PERMISSION)} == {f"api-invoke-{NAME}"}


def test_native_polling_builds_no_step_lambdas(native_run: StackRun) -> None:
    assert {f.name for f in native_run.of_type(FUNCTION)} == {f"{API}-function"}


def test_no_hard_coded_physical_names(sfn_run: StackRun) -> None:
    for r in sfn_run.resources:
        if r.type in {STATE_MACHINE, LOG_GROUP, ROLE, FUNCTION}:
            assert "name" not in r.inputs, r.name
            # only the state machine's vended log group has a prefix (test_hardening.py)
            prefix = r.inputs.get("namePrefix", "/aws/vendedlogs/states/")
            assert prefix.startswith("/aws/vendedlogs/states/"), r.name


def test_component_registers_its_outputs(sfn_run: StackRun, native_run: StackRun) -> None:
    common = {
        "state_machine_arn": arn_of(sfn_run, MACHINE),
        "state_machine_name": sfn_run.named(MACHINE).outputs["name"],
        "state_machine_log_group_name": sfn_run.named(f"{MACHINE}-logs").outputs["name"],
        "role_arn": arn_of(sfn_run, f"{MACHINE}-role"),
        "function_name": sfn_run.named(f"{API}-function").outputs["name"],
        "function_arn": arn_of(sfn_run, f"{API}-function"),
        "log_group_name": sfn_run.named(f"{API}-logs").outputs["name"],
    }
    assert sfn_run.component_outputs[sfn_run.one(COMPONENT).urn] == {
        **common,
        "run_ecs_function_arn": arn_of(sfn_run, f"{RUN_ECS}-function"),
        "run_ecs_log_group_name": sfn_run.named(f"{RUN_ECS}-logs").outputs["name"],
        "check_job_status_function_arn": arn_of(sfn_run, f"{CHECK}-function"),
        "check_job_status_log_group_name": sfn_run.named(f"{CHECK}-logs").outputs["name"],
    }
    assert native_run.component_outputs[native_run.one(COMPONENT).urn] == common


def test_stack_outputs(sfn_run: StackRun) -> None:
    exports = sfn_run.exports
    assert set(exports) == {
        "apiUrl", "apiKey", "modelBucket", "modelUri", "jobTable", "architecture",
        "dashboardUrl", "alarmTopicArn", "imageUri", "ecsCluster", "scoringLogGroup",
        "stateMachineArn", "stepFunctionsLogGroup", "sfnJobApiLogGroup",
    }  # fmt: skip
    assert exports["architecture"] == [NAME]
    assert exports["stateMachineArn"] == arn_of(sfn_run, MACHINE)
    assert exports["stateMachineArn"].startswith(f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:")
    assert exports["stepFunctionsLogGroup"] == sfn_run.named(f"{MACHINE}-logs").outputs["name"]
    assert exports["sfnJobApiLogGroup"] == sfn_run.named(f"{API}-logs").outputs["name"]
    assert exports["ecsCluster"] == sfn_run.one(CLUSTER).outputs["name"]
    assert exports["scoringLogGroup"] == sfn_run.named("scoring-logs").outputs["name"]
    assert exports["imageUri"].endswith("@" + sfn_run.one(IMAGE).outputs["digest"])
    assert sfn_run.secret_exports == {"apiKey"}


# --- the state machine ----------------------------------------------------------------------------
@pytest.mark.parametrize("polling", ["lambda", "native"])
def test_state_machine_is_standard_logged_and_traced(
    sfn_run: StackRun, native_run: StackRun, polling: str
) -> None:
    run = sfn_run if polling == "lambda" else native_run
    machine = run.one(STATE_MACHINE)
    inputs = machine.inputs
    assert set(inputs) == {
        "type", "roleArn", "definition", "loggingConfiguration", "tracingConfiguration",
    }  # fmt: skip
    assert inputs["type"] == "STANDARD"
    assert inputs["roleArn"] == arn_of(run, f"{MACHINE}-role")
    assert inputs["loggingConfiguration"] == {
        "level": "ALL",
        "includeExecutionData": True,
        "logDestination": f"{arn_of(run, f'{MACHINE}-logs')}:*",
    }
    assert inputs["tracingConfiguration"] == {"enabled": True}
    # its own log group, with the stack's retention
    assert run.named(f"{MACHINE}-logs").inputs == {
        "retentionInDays": 14,
        "namePrefix": f"/aws/vendedlogs/states/{NAME}-",
    }
    # Step Functions validates the role's grants at creation: the policy exists first
    assert run.named(f"{MACHINE}-policy").urn in machine.dependencies


def test_the_state_machine_role_is_assumed_by_step_functions_only(sfn_run: StackRun) -> None:
    role = sfn_run.named(f"{MACHINE}-role")
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "states.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]
    assert sfn_run.named(f"{MACHINE}-policy").inputs["role"] == role.outputs["name"]
    assert "managedPolicyArns" not in role.inputs and "inlinePolicies" not in role.inputs


def assert_every_task_is_guarded(document: dict[str, Any]) -> None:
    tasks = workflows.task_states(document)
    assert tasks
    for name, state in tasks.items():
        assert isinstance(state["TimeoutSeconds"], int) and state["TimeoutSeconds"] > 0, name
        assert state["Retry"], name
        for retrier in state["Retry"]:
            assert "States.ALL" not in retrier["ErrorEquals"], name
            assert 1 <= retrier["MaxAttempts"] <= 3, name
            assert retrier["BackoffRate"] >= 1 and retrier["IntervalSeconds"] >= 1, name
        catches = state["Catch"]
        assert any(c["ErrorEquals"] == ["States.ALL"] for c in catches), name
        assert catches[-1]["ErrorEquals"] == ["States.ALL"], name  # the catch-all comes last
        if state["Resource"] == workflows.LAMBDA_INVOKE:
            # a status check (a read) is also asked again when it outlives its timeout
            polls = name in (workflows.CHECK_JOB_STATUS, workflows.CHECK_BATCH_STATUS)
            expected = LAMBDA_ERRORS | ({"States.Timeout"} if polls else set())
            assert set(state["Retry"][0]["ErrorEquals"]) == expected, name
    # every state a Catch or Next names exists
    states = document["States"]
    for name, state in states.items():
        targets = [state.get("Next"), state.get("Default")]
        targets += [c["Next"] for c in state.get("Catch", []) + state.get("Choices", [])]
        assert all(t in states for t in targets if t is not None), name


def test_lambda_polling_definition(sfn_run: StackRun) -> None:
    document = definition(sfn_run)
    assert_every_task_is_guarded(document)
    assert document["StartAt"] == workflows.RECORD_RUNNING
    # the top-level execution timeout: 6 h, capped at MAX_POLL_ROUNDS poll intervals
    assert document["TimeoutSeconds"] == min(
        DEFAULT_EXECUTION_TIMEOUT_SECONDS, MAX_POLL_ROUNDS * 10
    )
    states = document["States"]
    run_ecs, check = states[workflows.RUN_ECS], states[workflows.CHECK_JOB_STATUS]
    # the ARNs are written into the definition, never passed at run time
    assert run_ecs["Resource"] == check["Resource"] == "arn:aws:states:::lambda:invoke"
    assert run_ecs["Parameters"]["FunctionName"] == arn_of(sfn_run, f"{RUN_ECS}-function")
    assert check["Parameters"]["FunctionName"] == arn_of(sfn_run, f"{CHECK}-function")
    assert states[workflows.WAIT_FOR_TASK] == {
        "Type": "Wait",
        "Seconds": 10,
        "Next": workflows.CHECK_JOB_STATUS,
    }
    table = sfn_run.one(TABLE).outputs["name"]
    for name in (workflows.RECORD_RUNNING, workflows.MARK_SUCCEEDED, workflows.MARK_FAILED):
        assert states[name]["Resource"] == "arn:aws:states:::dynamodb:updateItem"
        assert states[name]["Parameters"]["TableName"] == table
    # every Task state outlives the functions' own timeout
    for state in workflows.task_states(document).values():
        assert state["TimeoutSeconds"] == STEP_TIMEOUT_SECONDS > STEP_FUNCTION_TIMEOUT_SECONDS
    # no ecs:runTask.sync, no unresolved value
    text = sfn_run.one(STATE_MACHINE).inputs["definition"]
    assert "runTask" not in text and "arn:aws:mock" not in text


def test_native_definition(native_run: StackRun) -> None:
    document = definition(native_run)
    assert_every_task_is_guarded(document)
    assert document["TimeoutSeconds"] == DEFAULT_EXECUTION_TIMEOUT_SECONDS
    run_task = document["States"][workflows.RUN_TASK]
    assert run_task["Resource"] == "arn:aws:states:::ecs:runTask.sync"
    assert run_task["TimeoutSeconds"] == DEFAULT_EXECUTION_TIMEOUT_SECONDS
    security_group = native_run.one(SECURITY_GROUP).id
    assert run_task["Parameters"] == {
        "Cluster": native_run.one(CLUSTER).outputs["arn"],
        "TaskDefinition": native_run.one(TASK_DEFINITION).outputs["arn"],
        "LaunchType": "FARGATE",
        "NetworkConfiguration": {
            "AwsvpcConfiguration": {
                "Subnets": ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"],
                "SecurityGroups": [security_group],
                "AssignPublicIp": "ENABLED",
            }
        },
        "Overrides": {
            "ContainerOverrides": [
                {
                    "Name": contract.SCORING_CONTAINER_NAME,
                    "Environment": [{"Name": "JOB_ID", "Value.$": "$.job_id"}],
                }
            ]
        },
    }
    text = native_run.one(STATE_MACHINE).inputs["definition"]
    assert "lambda:invoke" not in text and ":function:" not in text


def test_polling_settings_reach_the_definition(base_config: dict[str, str]) -> None:
    run = run_stack(
        {**base_config, "architecture": NAME, "pollIntervalSeconds": 30, "logRetentionDays": 30}
    )
    document = definition(run)
    assert document["States"][workflows.WAIT_FOR_TASK]["Seconds"] == 30
    assert document["TimeoutSeconds"] == DEFAULT_EXECUTION_TIMEOUT_SECONDS  # 2000 * 30 s > 6 h
    for name in (f"{MACHINE}-logs", f"{API}-logs", f"{RUN_ECS}-logs", f"{CHECK}-logs"):
        assert run.named(name).inputs["retentionInDays"] == 30
    fast = definition(run_stack({**base_config, "architecture": NAME, "pollIntervalSeconds": 1}))
    assert fast["TimeoutSeconds"] == MAX_POLL_ROUNDS  # capped: the execution history limit


# --- roles ----------------------------------------------------------------------------------------
DELIVER_LOGS = {
    "Sid": "DeliverLogs",
    "Effect": "Allow",
    "Action": [
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    ],
    "Resource": ["*"],
}
XRAY = {
    "Sid": "XRayTracing",
    "Effect": "Allow",
    "Action": [
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
    ],
    "Resource": ["*"],
}


def ecs_facts(run: StackRun) -> dict[str, str]:
    cluster = run.one(CLUSTER).outputs
    family = run.one(TASK_DEFINITION).inputs["family"]
    return {
        "cluster_arn": cluster["arn"],
        "tasks": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster['name']}/*",
        "family": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:*",
        "table_arn": run.one(TABLE).outputs["arn"],
    }


def run_scoring_task(run: StackRun) -> dict[str, Any]:
    facts = ecs_facts(run)
    return {
        "Sid": "RunScoringTask",
        "Effect": "Allow",
        "Action": ["ecs:RunTask"],
        "Resource": [facts["family"]],
        "Condition": {"ArnEquals": {"ecs:cluster": facts["cluster_arn"]}},
    }


def pass_scoring_roles(run: StackRun) -> dict[str, Any]:
    return {
        "Sid": "PassScoringRoles",
        "Effect": "Allow",
        "Action": ["iam:PassRole"],
        "Resource": [arn_of(run, "scoring-task-role"), arn_of(run, "scoring-execution-role")],
        "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
    }


def own_logs(run: StackRun, prefix: str) -> dict[str, Any]:
    return {
        "Sid": "WriteOwnLogs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": [f"{arn_of(run, f'{prefix}-logs')}:*"],
    }


def test_lambda_state_machine_role_statements(sfn_run: StackRun) -> None:
    run_ecs, check = arn_of(sfn_run, f"{RUN_ECS}-function"), arn_of(sfn_run, f"{CHECK}-function")
    assert statements(sfn_run, f"{MACHINE}-policy") == [
        {
            "Sid": "InvokeStepFunctions",
            "Effect": "Allow",
            "Action": ["lambda:InvokeFunction"],
            "Resource": [run_ecs, check],
        },
        {
            "Sid": "UpdateJobRecords",
            "Effect": "Allow",
            "Action": ["dynamodb:UpdateItem"],
            "Resource": [ecs_facts(sfn_run)["table_arn"]],
        },
        DELIVER_LOGS,
        XRAY,
    ]


def test_native_state_machine_role_statements(native_run: StackRun) -> None:
    facts = ecs_facts(native_run)
    assert statements(native_run, f"{MACHINE}-policy") == [
        {
            "Sid": "UpdateJobRecords",
            "Effect": "Allow",
            "Action": ["dynamodb:UpdateItem"],
            "Resource": [facts["table_arn"]],
        },
        run_scoring_task(native_run),
        {
            "Sid": "WatchScoringTasks",
            "Effect": "Allow",
            "Action": ["ecs:StopTask", "ecs:DescribeTasks"],
            "Resource": [facts["tasks"]],
        },
        pass_scoring_roles(native_run),
        {
            "Sid": "ManageEcsSyncRule",
            "Effect": "Allow",
            "Action": ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            "Resource": [
                f"arn:aws:events:{REGION}:{ACCOUNT}:rule/StepFunctionsGetEventsForECSTaskRule"
            ],
        },
        DELIVER_LOGS,
        XRAY,
    ]


def test_run_ecs_role_statements(sfn_run: StackRun) -> None:
    assert statements(sfn_run, f"{RUN_ECS}-policy") == [
        run_scoring_task(sfn_run),
        pass_scoring_roles(sfn_run),
        {
            "Sid": "StopCancelledTask",
            "Effect": "Allow",
            "Action": ["ecs:StopTask"],
            "Resource": [ecs_facts(sfn_run)["tasks"]],
        },
        {
            "Sid": "RecordTask",
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
            "Resource": [ecs_facts(sfn_run)["table_arn"]],
        },
        own_logs(sfn_run, RUN_ECS),
    ]


def test_check_job_status_role_statements(sfn_run: StackRun) -> None:
    facts = ecs_facts(sfn_run)
    assert statements(sfn_run, f"{CHECK}-policy") == [
        {
            "Sid": "DescribeScoringTasks",
            "Effect": "Allow",
            "Action": ["ecs:DescribeTasks"],
            "Resource": [facts["tasks"]],
        },
        {
            "Sid": "ReadJobRecord",
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem"],
            "Resource": [facts["table_arn"]],
        },
        own_logs(sfn_run, CHECK),
    ]


@pytest.mark.parametrize("polling", ["lambda", "native"])
def test_job_api_role_statements(sfn_run: StackRun, native_run: StackRun, polling: str) -> None:
    run = sfn_run if polling == "lambda" else native_run
    bucket_arn = run.one(BUCKET).outputs["arn"]
    metadata_key = run.named("model-store-metadata").inputs["key"]
    machine = run.named(MACHINE).outputs["name"]
    assert statements(run, f"{API}-policy") == [
        {
            "Sid": "JobRecords",
            "Effect": "Allow",
            "Action": ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"],
            "Resource": [ecs_facts(run)["table_arn"]],
        },
        {
            "Sid": "ListCallerJobs",
            "Effect": "Allow",
            "Action": ["dynamodb:Query"],
            "Resource": [ecs_facts(run)["table_arn"] + "/index/by-caller"],
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
            "Sid": "StartWorkflow",
            "Effect": "Allow",
            "Action": ["states:StartExecution"],
            "Resource": [arn_of(run, MACHINE)],
        },
        {
            "Sid": "WatchWorkflows",
            "Effect": "Allow",
            "Action": ["states:StopExecution", "states:DescribeExecution"],
            "Resource": [f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{machine}:*"],
        },
        {
            "Sid": "StopScoringTasks",
            "Effect": "Allow",
            "Action": ["ecs:StopTask"],
            "Resource": [ecs_facts(run)["tasks"]],
        },
        own_logs(run, API),
    ]


def test_function_roles_are_assumed_by_lambda_only(sfn_run: StackRun) -> None:
    for prefix in (API, RUN_ECS, CHECK):
        role = sfn_run.named(f"{prefix}-role")
        assert json.loads(role.inputs["assumeRolePolicy"])["Statement"] == [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ]
        assert sfn_run.named(f"{prefix}-policy").inputs["role"] == role.outputs["name"]
    assert not any("PolicyAttachment" in r.type for r in sfn_run.resources)


WILDCARD_RESOURCE = {
    ("scoring-execution-policy", "EcrAuthentication"),
    (f"{MACHINE}-policy", "DeliverLogs"),
    (f"{MACHINE}-policy", "XRayTracing"),
}


@pytest.mark.parametrize("polling", ["lambda", "native"])
def test_no_wildcard_action_and_wildcard_resources_only_where_aws_requires(
    sfn_run: StackRun, native_run: StackRun, polling: str
) -> None:
    run = sfn_run if polling == "lambda" else native_run
    seen = set()
    for policy in run.of_type(ROLE_POLICY):
        for statement in json.loads(policy.inputs["policy"])["Statement"]:
            assert statement["Effect"] == "Allow"
            assert all("*" not in action for action in statement["Action"]), policy.name
            if "*" in statement["Resource"]:
                assert statement["Resource"] == ["*"], policy.name
                seen.add((policy.name, statement["Sid"]))
    assert seen == WILDCARD_RESOURCE


# --- the functions --------------------------------------------------------------------------------
def test_job_api_function(sfn_run: StackRun, tiny_model: Path) -> None:
    function = sfn_run.named(f"{API}-function")
    inputs = function.inputs
    digest = hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    bucket = sfn_run.one(BUCKET).outputs["bucket"]
    metadata_key = sfn_run.named("model-store-metadata").inputs["key"]
    assert inputs["handler"] == contract.HANDLER_JOBS
    assert inputs["runtime"] == default_lambda_runtime()  # mlserve:lambdaRuntime empty
    assert inputs["architectures"] == ["arm64"]
    assert inputs["memorySize"] == 1024
    assert inputs["timeout"] == 10  # never waits for the task
    assert inputs["role"] == arn_of(sfn_run, f"{API}-role")
    assert inputs["layers"] == [sfn_run.one(LAYER).outputs["arn"]]
    assert isinstance(inputs["code"], pulumi.FileArchive)
    assert inputs["loggingConfig"] == {
        "logFormat": "JSON",
        "logGroup": sfn_run.named(f"{API}-logs").outputs["name"],
    }
    assert sfn_run.named(f"{API}-policy").urn in function.dependencies
    assert inputs["environment"]["variables"] == {
        "ARCHITECTURE": "stepfunctions-ecs",
        "STATE_MACHINE_ARN": arn_of(sfn_run, MACHINE),
        "JOB_TABLE": sfn_run.one(TABLE).outputs["name"],
        "DATA_BUCKET": bucket,
        "MODEL_URI": sfn_run.exports["modelUri"],
        "MODEL_SHA256": digest,
        "MODEL_METADATA_URI": f"s3://{bucket}/{metadata_key}",
        "MAX_ROWS": "10000",
        "ALLOW_MISSING": "false",
        "UNKNOWN_CATEGORY": "error",
        "JOB_TTL_DAYS": str(contract.DEFAULT_JOB_TTL_DAYS),
        "PRESIGNED_URL_SECONDS": str(contract.DEFAULT_PRESIGNED_URL_SECONDS),
        "ECS_CLUSTER": sfn_run.one(CLUSTER).outputs["arn"],
        "ECS_TASK_DEFINITION": sfn_run.one(TASK_DEFINITION).outputs["arn"],
        "ECS_SUBNETS": "subnet-0a1b2c3d4e5f60001,subnet-0a1b2c3d4e5f60002",
        "ECS_SECURITY_GROUPS": sfn_run.one(SECURITY_GROUP).id,
        "ECS_ASSIGN_PUBLIC_IP": "ENABLED",
        "POWERTOOLS_SERVICE_NAME": "mlserve",
        "POWERTOOLS_METRICS_NAMESPACE": "mlserve",
    }
    assert contract.ENV_SYNC_WAIT_SECONDS not in inputs["environment"]["variables"]


@pytest.mark.parametrize(
    ("prefix", "handler"),
    [(RUN_ECS, contract.HANDLER_RUN_ECS), (CHECK, contract.HANDLER_CHECK_JOB_STATUS)],
)
def test_step_functions(sfn_run: StackRun, prefix: str, handler: str) -> None:
    function = sfn_run.named(f"{prefix}-function")
    inputs = function.inputs
    assert inputs["handler"] == handler
    assert handler.startswith("runtime.handlers.steps.")
    assert inputs["runtime"] == default_lambda_runtime()  # mlserve:lambdaRuntime empty
    assert inputs["architectures"] == ["arm64"]
    assert inputs["memorySize"] == 256
    assert inputs["timeout"] == STEP_FUNCTION_TIMEOUT_SECONDS
    assert inputs["role"] == arn_of(sfn_run, f"{prefix}-role")
    assert inputs["layers"] == [sfn_run.one(LAYER).outputs["arn"]]
    assert inputs["loggingConfig"] == {
        "logFormat": "JSON",
        "logGroup": sfn_run.named(f"{prefix}-logs").outputs["name"],
    }
    assert sfn_run.named(f"{prefix}-policy").urn in function.dependencies
    assert inputs["environment"]["variables"] == {
        "JOB_TABLE": sfn_run.one(TABLE).outputs["name"],
        "ECS_CLUSTER": sfn_run.one(CLUSTER).outputs["arn"],
        "ECS_TASK_DEFINITION": sfn_run.one(TASK_DEFINITION).outputs["arn"],
        "ECS_SUBNETS": "subnet-0a1b2c3d4e5f60001,subnet-0a1b2c3d4e5f60002",
        "ECS_SECURITY_GROUPS": sfn_run.one(SECURITY_GROUP).id,
        "ECS_ASSIGN_PUBLIC_IP": "ENABLED",
        "POWERTOOLS_SERVICE_NAME": "mlserve",
        "POWERTOOLS_METRICS_NAMESPACE": "mlserve",
    }


def test_function_settings_reach_the_functions(base_config: dict[str, str]) -> None:
    run = run_stack(
        {
            **base_config,
            "architecture": NAME,
            "lambdaArchitecture": "x86_64",
            "lambdaMemory": 512,
            "maxRows": 77,
            "allowMissing": True,
        }
    )
    api = run.named(f"{API}-function").inputs
    assert (api["architectures"], api["memorySize"]) == (["x86_64"], 512)
    assert api["environment"]["variables"]["MAX_ROWS"] == "77"
    assert api["environment"]["variables"]["ALLOW_MISSING"] == "true"
    for prefix in (RUN_ECS, CHECK):
        assert run.named(f"{prefix}-function").inputs["architectures"] == ["x86_64"]
    assert run.one(TASK_DEFINITION).inputs["runtimePlatform"]["cpuArchitecture"] == "X86_64"


# --- one API, several architectures ---------------------------------------------------------------
def test_stepfunctions_ecs_serves_every_operation(sfn_run: StackRun) -> None:
    job_api = arn_of(sfn_run, f"{API}-function")
    assert operations(sfn_run) == dict.fromkeys(JOB_API_OPERATIONS, job_api)


def test_with_lambda_the_predictor_keeps_predict(with_lambda_run: StackRun) -> None:
    predictor = arn_of(with_lambda_run, "predictor-function")
    job_api = arn_of(with_lambda_run, f"{API}-function")
    assert operations(with_lambda_run) == {
        "health": predictor,
        "predict": predictor,
        "submit_job": job_api,
        "list_jobs": job_api,
        "get_job": job_api,
        "cancel_job": job_api,
        "start_job": job_api,
    }
    assert {p.name for p in with_lambda_run.of_type(PERMISSION)} == {
        "api-invoke-predictor",
        f"api-invoke-{NAME}",
    }
    assert with_lambda_run.exports["architecture"] == ["lambda", NAME]
    assert {"predictorLogGroup", "stateMachineArn", "sfnJobApiLogGroup"} <= set(
        with_lambda_run.exports
    )


def test_with_lambda_ecs_the_containers_are_shared(
    with_lambda_ecs_run: StackRun, sfn_run: StackRun
) -> None:
    run = with_lambda_ecs_run
    for typ in SHARED_CONTAINERS:
        assert len(run.of_type(typ)) == 1, typ
    assert len(run.of_type(TASK_DEFINITION)) == 1
    assert len(run.of_type(CLUSTER)) == 1
    # both job APIs run the one task definition in the one cluster
    task_definition = run.one(TASK_DEFINITION).outputs["arn"]
    for name in ("lambda-ecs-function", f"{API}-function"):
        env = run.named(name).inputs["environment"]["variables"]
        assert env["ECS_TASK_DEFINITION"] == task_definition
    # distinct logical names, distinct exports; the first listed serves every operation
    names = [r.name for r in run.resources]
    assert len(names) == len(set(names))
    assert {"jobApiLogGroup", "sfnJobApiLogGroup", "stateMachineArn"} <= set(run.exports)
    assert run.exports["jobApiLogGroup"] != run.exports["sfnJobApiLogGroup"]
    lambda_ecs = arn_of(run, "lambda-ecs-function")
    assert operations(run) == dict.fromkeys(JOB_API_OPERATIONS, lambda_ecs)

    # the shared containers keep their URNs whoever else is deployed
    def urns(r: StackRun) -> set[str]:
        parents = {r.one(typ).urn for typ in SHARED_CONTAINERS}
        return {x.urn for x in r.resources if x.parent in parents} | parents

    assert urns(run) == urns(sfn_run)

    # and the workflow's resources are the same as alone
    def workflow_urns(r: StackRun) -> set[str]:
        return {x.urn for x in r.children(r.one(COMPONENT))}

    assert workflow_urns(run) == workflow_urns(sfn_run)


# --- stability ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "config",
    [
        {"architecture": NAME},
        {"architecture": NAME, "polling": "native"},
        {"architecture": f"lambda,{NAME}"},
        {"architecture": f"lambda-ecs,{NAME}"},
    ],
)
def test_switching_to_stepfunctions_ecs_keeps_bucket_and_table(
    base_config: dict[str, str], default_run: StackRun, config: dict[str, str]
) -> None:
    run = run_stack({**base_config, **config})
    for typ in (BUCKET, TABLE):
        assert run.one(typ).urn == default_run.one(typ).urn, typ
        assert run.one(typ).retain_on_delete is True
        assert run.one(typ).inputs == default_run.one(typ).inputs
    for name in ("model-store-model", "model-store-metadata"):
        assert run.named(name).urn == default_run.named(name).urn


def test_program_is_deterministic_and_previews_the_same(
    base_config: dict[str, str], sfn_run: StackRun
) -> None:
    config = {**base_config, "architecture": NAME}

    def plain(value: Any) -> Any:
        if isinstance(value, pulumi.FileAsset | pulumi.FileArchive):
            return f"{type(value).__name__}({value.path})"
        raise TypeError(value)

    def snapshot(run: StackRun) -> list[tuple[str, str]]:
        return sorted(
            (r.urn, json.dumps(r.inputs, sort_keys=True, default=plain)) for r in run.resources
        )

    assert snapshot(run_stack(config)) == snapshot(sfn_run)
    preview = run_stack(config, preview=True)
    assert sorted(r.urn for r in preview.resources) == sorted(r.urn for r in sfn_run.resources)


# --- args and the pure renderer -------------------------------------------------------------------
def sfn_args(**overrides: Any) -> StepFunctionsEcsPredictorArgs:
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
    return StepFunctionsEcsPredictorArgs(**arguments)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"polling": "sync"}, "polling 'sync'"),
        ({"poll_interval_seconds": 0}, "poll_interval_seconds 0 not in 1-3600"),
        ({"poll_interval_seconds": 3601}, "poll_interval_seconds 3601"),
        ({"execution_timeout_seconds": 59}, "execution_timeout_seconds 59"),
        ({"execution_timeout_seconds": 366 * 86400}, "at most a year"),
        ({"code": "runtime.zip"}, "code must be a pulumi.Archive"),
        ({"assign_public_ip": "YES"}, "assign_public_ip 'YES'"),
        ({"model_metadata_key": "metadata.json"}, "model_metadata_key 'metadata.json'"),
        ({"lambda_architecture": "aarch64"}, "architecture 'aarch64'"),
        ({"job_ttl_days": 0}, "job_ttl_days 0"),
    ],
)
def test_args_reject(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^StepFunctionsEcsPredictorArgs: .*{message}"):
        sfn_args(**overrides)


def test_args_execution_timeout() -> None:
    assert sfn_args().execution_timeout == MAX_POLL_ROUNDS * 10
    assert sfn_args(poll_interval_seconds=60).execution_timeout == 6 * 3600
    assert sfn_args(execution_timeout_seconds=600).execution_timeout == 600
    native = sfn_args(polling="native", poll_interval_seconds=1)
    assert native.native and native.execution_timeout == 6 * 3600
    assert execution_timeout(native=False, poll_interval_seconds=1) == MAX_POLL_ROUNDS
    assert execution_timeout(native=True, poll_interval_seconds=1) == 6 * 3600


def test_args_environment_has_no_sync_wait() -> None:
    environment = sfn_args().environment("arn:aws:states:us-east-1:1:stateMachine:m")
    assert environment[contract.ENV_ARCHITECTURE] == contract.ARCH_STEPFUNCTIONS_ECS
    assert (
        environment[contract.ENV_STATE_MACHINE_ARN] == "arn:aws:states:us-east-1:1:stateMachine:m"
    )
    assert contract.ENV_SYNC_WAIT_SECONDS not in environment
    assert set(sfn_args().step_environment()) == {
        "JOB_TABLE", "ECS_CLUSTER", "ECS_TASK_DEFINITION", "ECS_SUBNETS", "ECS_SECURITY_GROUPS",
        "ECS_ASSIGN_PUBLIC_IP", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE",
    }  # fmt: skip


RENDER: dict[str, Any] = {
    "table_name": "jobs",
    "run_ecs_arn": "arn:aws:lambda:us-east-1:1:function:run",
    "check_job_status_arn": "arn:aws:lambda:us-east-1:1:function:check",
    "cluster_arn": "arn:aws:ecs:us-east-1:1:cluster/c",
    "task_definition_arn": "arn:aws:ecs:us-east-1:1:task-definition/f:3",
    "subnets": ["subnet-01234567"],
    "security_groups": ["sg-01234567"],
    "assign_public_ip": "DISABLED",
    "poll_interval_seconds": 5,
    "execution_timeout_seconds": 900,
}


def test_render_definition_is_the_workflows_definition() -> None:
    assert render_definition(native=False, **RENDER) == workflows.ecs_lambda_polling_definition(
        table_name="jobs",
        run_ecs_function_arn=RENDER["run_ecs_arn"],
        check_job_status_function_arn=RENDER["check_job_status_arn"],
        poll_interval_seconds=5,
        execution_timeout_seconds=900,
        step_timeout_seconds=STEP_TIMEOUT_SECONDS,
    )
    native = render_definition(native=True, **{**RENDER, "run_ecs_arn": None})
    assert native["TimeoutSeconds"] == 900
    assert native["States"][workflows.RUN_TASK]["Parameters"]["TaskDefinition"].endswith("f:3")
    for document in (native, render_definition(native=False, **RENDER)):
        assert_every_task_is_guarded(document)


def test_render_definition_needs_the_step_arns_with_lambda_polling() -> None:
    with pytest.raises(ValueError, match="needs the RunECS and CheckJobStatus function ARNs"):
        render_definition(native=False, **{**RENDER, "check_job_status_arn": None})
