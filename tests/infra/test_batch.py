"""stepfunctions-batch infrastructure under Pulumi mocks: components/batch.py.

The components are built directly (``run_program``) with fixed ARNs, so every property and every
role's statements can be compared whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pulumi
import pytest

from components import policies, workflows
from components.batch import (
    EVALUATE_ON_EXIT,
    MAX_EVALUATE_ON_EXIT,
    BatchScoring,
    BatchScoringArgs,
    JobConfigTrigger,
    JobConfigTriggerArgs,
    compute_types,
    vcpus,
)
from components.settings import ARCHITECTURES, SettingsError
from components.stepfunctions import StepFunctionsBatchPredictor, StepFunctionsBatchPredictorArgs
from runtime import contract
from tests.infra.conftest import (
    ACCOUNT,
    DEFAULT_SUBNET_IDS,
    REGION,
    StackRun,
    run_program,
    run_stack,
)

TABLE_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/jobs-abc"
BUCKET = "models-abc"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
MODEL_KEY = "models/m/v1/model.ubj"
MODEL_ARN = f"{BUCKET_ARN}/{MODEL_KEY}"
REPOSITORY_ARN = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/scoring"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/scoring@sha256:{'a' * 64}"
SUBNETS = ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"]
GROUPS = ["sg-0123456789abcdef0"]
STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:batch-sm"
CE = "aws:batch/computeEnvironment:ComputeEnvironment"
QUEUE = "aws:batch/jobQueue:JobQueue"
JOB_DEFINITION = "aws:batch/jobDefinition:JobDefinition"


def scoring_args(**overrides: Any) -> BatchScoringArgs:
    values: dict[str, Any] = {
        "image_uri": IMAGE,
        "repository_arn": REPOSITORY_ARN,
        "table_name": "jobs-abc",
        "table_arn": TABLE_ARN,
        "bucket_name": BUCKET,
        "bucket_arn": BUCKET_ARN,
        "model_uri": f"s3://{BUCKET}/{MODEL_KEY}",
        "model_sha256": "f" * 64,
        "model_object_arn": MODEL_ARN,
        "subnet_ids": SUBNETS,
        "security_group_ids": GROUPS,
    }
    values.update(overrides)
    return BatchScoringArgs(**values)


def build(**overrides: Any) -> Callable[[], None]:
    def body() -> None:
        BatchScoring("batch", scoring_args(**overrides))

    return body


@pytest.fixture(scope="module")
def default_batch() -> StackRun:
    return run_program(build())


@pytest.fixture(scope="module")
def spot_batch() -> StackRun:
    return run_program(build(compute_type="FARGATE_SPOT", max_vcpus=64, job_attempts=5))


@pytest.fixture(scope="module")
def trigger_run() -> StackRun:
    def body() -> None:
        JobConfigTrigger(
            "trigger",
            JobConfigTriggerArgs(
                code=pulumi.AssetArchive({}),
                layer_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:deps:1",
                runtime="python3.13",
                table_name="jobs-abc",
                table_arn=TABLE_ARN,
                bucket_name=BUCKET,
                bucket_arn=BUCKET_ARN,
                model_uri=f"s3://{BUCKET}/{MODEL_KEY}",
                state_machine_arn=STATE_MACHINE_ARN,
            ),
        )

    return run_program(body)


def policy_of(run: StackRun, name: str) -> dict[str, Any]:
    return json.loads(run.one("aws:iam/rolePolicy:RolePolicy", name).inputs["policy"])


def container(run: StackRun) -> dict[str, Any]:
    return json.loads(run.one(JOB_DEFINITION).inputs["containerProperties"])


# --- compute environments -------------------------------------------------------------------------
def test_default_is_one_fargate_environment(default_batch: StackRun) -> None:
    (ce,) = default_batch.of_type(CE)
    assert ce.name == "batch-fargate"
    assert ce.inputs["type"] == "MANAGED"
    assert ce.inputs["state"] == "ENABLED"
    assert ce.inputs["computeResources"] == {
        "type": "FARGATE",
        "maxVcpus": 16,
        "subnets": SUBNETS,
        "securityGroupIds": GROUPS,
    }
    assert "serviceRole" not in ce.inputs  # Batch's service-linked role


def test_spot_first_then_on_demand_fallback(spot_batch: StackRun) -> None:
    by_name = {ce.name: ce for ce in spot_batch.of_type(CE)}
    assert set(by_name) == {"batch-fargate-spot", "batch-fargate"}
    assert by_name["batch-fargate-spot"].inputs["computeResources"]["type"] == "FARGATE_SPOT"
    assert by_name["batch-fargate"].inputs["computeResources"]["type"] == "FARGATE"
    for ce in by_name.values():
        assert ce.inputs["computeResources"]["maxVcpus"] == 64
    for queue in spot_batch.of_type(QUEUE):
        assert queue.inputs["computeEnvironmentOrders"] == [
            {"order": 1, "computeEnvironment": by_name["batch-fargate-spot"].outputs["arn"]},
            {"order": 2, "computeEnvironment": by_name["batch-fargate"].outputs["arn"]},
        ]


def test_compute_types() -> None:
    assert compute_types("FARGATE") == ("FARGATE",)
    assert compute_types("FARGATE_SPOT") == ("FARGATE_SPOT", "FARGATE")
    with pytest.raises(ValueError, match="EC2"):
        compute_types("EC2")


def test_compute_environment_replacement_plan(
    default_batch: StackRun, spot_batch: StackRun
) -> None:
    """The pulumi-aws pitfall: a queue blocks deleting the environment it refers to. The plan:
    auto-named environments (replacement beside the old one), create-before-delete, queues
    depending on (and updated to) the new environment before the old one is deleted."""
    for run in (default_batch, spot_batch):
        environments = run.of_type(CE)
        for ce in environments:
            assert ce.delete_before_replace is False
            assert "name" not in ce.inputs and "namePrefix" not in ce.inputs
        for queue in run.of_type(QUEUE):
            assert {ce.urn for ce in environments} <= set(queue.dependencies)
    # Switching the compute type keeps the on-demand environment's identity (no replacement).
    assert default_batch.one(CE).urn in {ce.urn for ce in spot_batch.of_type(CE)}


# --- queues ---------------------------------------------------------------------------------------
def test_high_and_low_queues(default_batch: StackRun) -> None:
    queues = {q.name: q for q in default_batch.of_type(QUEUE)}
    assert set(queues) == {"batch-high", "batch-low"}
    assert queues["batch-high"].inputs["priority"] == 100
    assert queues["batch-low"].inputs["priority"] == 1
    ce_arn = default_batch.one(CE).outputs["arn"]
    for queue in queues.values():
        assert queue.inputs["state"] == "ENABLED"
        assert queue.inputs["computeEnvironmentOrders"] == [
            {"order": 1, "computeEnvironment": ce_arn}
        ]


# --- job definition -------------------------------------------------------------------------------
def test_job_definition(default_batch: StackRun) -> None:
    job = default_batch.one(JOB_DEFINITION)
    assert job.inputs["type"] == "container"
    assert job.inputs["platformCapabilities"] == ["FARGATE"]
    assert job.inputs["timeout"] == {"attemptDurationSeconds": 6 * 3600}
    props = container(default_batch)
    assert props["image"] == IMAGE
    assert props["command"] == ["--mode", "batch"]
    assert props["resourceRequirements"] == [
        {"type": "VCPU", "value": "1"},
        {"type": "MEMORY", "value": "2048"},
    ]
    assert (
        props["jobRoleArn"]
        == default_batch.one("aws:iam/role:Role", "batch-job-role").outputs["arn"]
    )
    assert (
        props["executionRoleArn"]
        == default_batch.one("aws:iam/role:Role", "batch-execution-role").outputs["arn"]
    )
    assert props["networkConfiguration"] == {"assignPublicIp": "ENABLED"}
    assert props["runtimePlatform"] == {
        "operatingSystemFamily": "LINUX",
        "cpuArchitecture": "ARM64",
    }
    assert props["fargatePlatformConfiguration"] == {"platformVersion": "LATEST"}
    log_group = default_batch.one("aws:cloudwatch/logGroup:LogGroup", "batch-logs")
    assert props["logConfiguration"] == {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": log_group.outputs["name"],
            "awslogs-region": REGION,
            "awslogs-stream-prefix": "scoring",
        },
    }
    env = {e["name"]: e["value"] for e in props["environment"]}
    assert env == {
        contract.ENV_JOB_TABLE: "jobs-abc",
        contract.ENV_DATA_BUCKET: BUCKET,
        contract.ENV_MODEL_URI: f"s3://{BUCKET}/{MODEL_KEY}",
        contract.ENV_MODEL_SHA256: "f" * 64,
        contract.ENV_ALLOW_MISSING: "false",
        contract.ENV_UNKNOWN_CATEGORY: "error",
    }
    assert contract.ENV_JOB_ID not in env  # per job, a container override
    # The roles' grants exist before any job can run.
    policies_urns = {p.urn for p in default_batch.of_type("aws:iam/rolePolicy:RolePolicy")}
    assert policies_urns <= set(job.dependencies)


def test_retry_strategy(default_batch: StackRun, spot_batch: StackRun) -> None:
    assert default_batch.one(JOB_DEFINITION).inputs["retryStrategy"]["attempts"] == 3
    strategy = spot_batch.one(JOB_DEFINITION).inputs["retryStrategy"]
    assert strategy["attempts"] == 5
    rules = strategy["evaluateOnExits"]
    assert rules == [
        {"action": "RETRY", "onStatusReason": "Host EC2*"},
        {"action": "RETRY", "onStatusReason": "Your Spot Task was interrupted*"},
        {"action": "RETRY", "onReason": "CannotPullContainerError*"},
        {"action": "RETRY", "onReason": "ResourceInitializationError*"},
        {"action": "EXIT", "onExitCode": "*"},
    ]
    assert rules[-1] == {"action": "EXIT", "onExitCode": "*"}  # ends in EXIT on "*"


def test_evaluate_on_exit_patterns_are_valid_for_batch() -> None:
    import re

    assert len(EVALUATE_ON_EXIT) <= MAX_EVALUATE_ON_EXIT
    text = re.compile(r"[A-Za-z0-9.: \t]+\*?")
    for rule in EVALUATE_ON_EXIT:
        assert rule["action"] in ("RETRY", "EXIT")
        for key in ("on_status_reason", "on_reason"):
            if key in rule:
                assert text.fullmatch(rule[key]), rule  # no leading "*", no "-"
        if "on_exit_code" in rule:
            assert re.fullmatch(r"[0-9]*\*?", rule["on_exit_code"]), rule


@pytest.mark.parametrize(
    ("cpu", "expected"),
    [(256, "0.25"), (512, "0.5"), (1024, "1"), (2048, "2"), (4096, "4"), (16384, "16")],
)
def test_vcpus(cpu: int, expected: str) -> None:
    assert vcpus(cpu) == expected


def test_task_size_and_settings_reach_the_job_definition() -> None:
    run = run_program(
        build(
            task_cpu=4096,
            task_memory=16384,
            architecture="x86_64",
            assign_public_ip="DISABLED",
            attempt_timeout_seconds=900,
            allow_missing=True,
        )
    )
    props = container(run)
    assert props["resourceRequirements"] == [
        {"type": "VCPU", "value": "4"},
        {"type": "MEMORY", "value": "16384"},
    ]
    assert props["runtimePlatform"]["cpuArchitecture"] == "X86_64"
    assert props["networkConfiguration"] == {"assignPublicIp": "DISABLED"}
    assert {"name": contract.ENV_ALLOW_MISSING, "value": "true"} in props["environment"]
    assert run.one(JOB_DEFINITION).inputs["timeout"] == {"attemptDurationSeconds": 900}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"compute_type": "EC2"}, "compute_type"),
        ({"max_vcpus": 0}, "max_vcpus"),
        ({"task_cpu": 4096, "task_memory": 16384, "max_vcpus": 2}, "below one job"),
        ({"job_attempts": 0}, "job_attempts"),
        ({"job_attempts": 11}, "job_attempts"),
        ({"task_cpu": 1000}, "task_cpu"),
        ({"task_memory": 512}, "task_memory"),
        ({"attempt_timeout_seconds": 59}, "attempt_timeout_seconds"),
        ({"output_prefixes": ("results",)}, "output_prefixes"),
        ({"input_prefixes": ()}, "input_prefixes"),
    ],
)
def test_invalid_args_are_rejected(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scoring_args(**overrides)


# --- roles ----------------------------------------------------------------------------------------
def test_job_roles_are_assumed_by_ecs_tasks_only(default_batch: StackRun) -> None:
    for name in ("batch-job-role", "batch-execution-role"):
        role = default_batch.one("aws:iam/role:Role", name)
        assert (
            json.loads(role.inputs["assumeRolePolicy"]) == policies.ecs_tasks_assume_role_policy()
        )


def test_job_role_statements(default_batch: StackRun) -> None:
    assert policy_of(default_batch, "batch-job-policy")["Statement"] == [
        {
            "Sid": "JobRecord",
            "Effect": "Allow",
            "Action": ["dynamodb:UpdateItem"],
            "Resource": [TABLE_ARN],
        },
        {
            "Sid": "ReadModelAndInputs",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [MODEL_ARN, f"{BUCKET_ARN}/inputs/*"],
        },
        {
            "Sid": "ListInputsAndParts",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [BUCKET_ARN],
            "Condition": {"StringLike": {"s3:prefix": ["inputs/*", "results/*"]}},
        },
        {
            "Sid": "WriteAndReadParts",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject"],
            "Resource": [f"{BUCKET_ARN}/results/*"],
        },
    ]


def test_configured_prefixes_scope_the_job_role() -> None:
    run = run_program(
        build(input_prefixes=("inputs/", "data/in/"), output_prefixes=("results/", "data/out/"))
    )
    statements = {s["Sid"]: s for s in policy_of(run, "batch-job-policy")["Statement"]}
    assert statements["ReadModelAndInputs"]["Resource"] == [
        MODEL_ARN,
        f"{BUCKET_ARN}/inputs/*",
        f"{BUCKET_ARN}/data/in/*",
    ]
    assert statements["ListInputsAndParts"]["Condition"] == {
        "StringLike": {"s3:prefix": ["inputs/*", "data/in/*", "results/*", "data/out/*"]}
    }
    assert statements["WriteAndReadParts"]["Resource"] == [
        f"{BUCKET_ARN}/results/*",
        f"{BUCKET_ARN}/data/out/*",
    ]


def test_execution_role_statements(default_batch: StackRun) -> None:
    log_group_arn = default_batch.one("aws:cloudwatch/logGroup:LogGroup", "batch-logs").outputs[
        "arn"
    ]
    assert policy_of(default_batch, "batch-execution-policy")["Statement"] == [
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
            "Resource": [REPOSITORY_ARN],
        },
        {
            "Sid": "WriteTaskLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [f"{log_group_arn}:*"],
        },
    ]


def test_image_outside_ecr_gets_no_ecr_grant() -> None:
    run = run_program(build(repository_arn=None, image_uri="public.ecr.aws/x/scoring:1"))
    sids = [s["Sid"] for s in policy_of(run, "batch-execution-policy")["Statement"]]
    assert sids == ["WriteTaskLogs"]


def test_everything_is_parented_and_outputs_registered(default_batch: StackRun) -> None:
    component = default_batch.one("mlserve:index:BatchScoring")
    for resource in default_batch.resources:
        if resource.custom:
            assert resource.parent == component.urn, resource.name
    outputs = default_batch.component_outputs[component.urn]
    assert set(outputs["job_queue_arns"]) == {"high", "low"}
    assert outputs["job_definition_arn"].endswith(":1")


# --- the trigger ----------------------------------------------------------------------------------
def test_trigger_function(trigger_run: StackRun) -> None:
    function = trigger_run.one("aws:lambda/function:Function")
    assert function.inputs["handler"] == contract.HANDLER_TRIGGER
    assert function.inputs["timeout"] == 30
    assert function.inputs["environment"]["variables"] == {
        contract.ENV_ARCHITECTURE: contract.ARCH_STEPFUNCTIONS_BATCH,
        contract.ENV_JOB_TABLE: "jobs-abc",
        contract.ENV_DATA_BUCKET: BUCKET,
        contract.ENV_MODEL_URI: f"s3://{BUCKET}/{MODEL_KEY}",
        contract.ENV_STATE_MACHINE_ARN: STATE_MACHINE_ARN,
        contract.ENV_JOB_TTL_DAYS: str(contract.DEFAULT_JOB_TTL_DAYS),
        contract.ENV_POWERTOOLS_SERVICE_NAME: contract.SERVICE_NAME,
        contract.ENV_POWERTOOLS_METRICS_NAMESPACE: contract.METRICS_NAMESPACE,
    }


def test_s3_notification_filter(trigger_run: StackRun) -> None:
    notification = trigger_run.one("aws:s3/bucketNotification:BucketNotification")
    function = trigger_run.one("aws:lambda/function:Function")
    permission = trigger_run.one("aws:lambda/permission:Permission")
    assert notification.inputs["bucket"] == BUCKET
    assert notification.inputs["lambdaFunctions"] == [
        {
            "lambdaFunctionArn": function.outputs["arn"],
            "events": ["s3:ObjectCreated:*"],
            "filterPrefix": "jobs/",
            "filterSuffix": ".json",
        }
    ]
    # S3 validates the destination when the notification is created.
    assert permission.urn in notification.dependencies
    assert contract.JOBS_PREFIX == policies.JOBS_PREFIX == "jobs/"
    assert contract.JOBS_REJECTED_PREFIX == policies.JOBS_REJECTED_PREFIX


def test_s3_may_invoke_the_trigger_only_from_this_bucket(trigger_run: StackRun) -> None:
    permission = trigger_run.one("aws:lambda/permission:Permission")
    function = trigger_run.one("aws:lambda/function:Function")
    assert permission.inputs == {
        "action": "lambda:InvokeFunction",
        "function": function.outputs["name"],
        "principal": "s3.amazonaws.com",
        "sourceArn": BUCKET_ARN,
        "sourceAccount": ACCOUNT,
    }


def test_trigger_role_statements(trigger_run: StackRun) -> None:
    log_group_arn = trigger_run.one("aws:cloudwatch/logGroup:LogGroup").outputs["arn"]
    assert policy_of(trigger_run, "trigger-policy")["Statement"] == [
        {
            "Sid": "RecordJobs",
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            "Resource": [TABLE_ARN],
        },
        {
            "Sid": "ReadAndRemoveJobConfigs",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:DeleteObject"],
            "Resource": [f"{BUCKET_ARN}/jobs/*"],
        },
        {
            "Sid": "RejectJobConfigs",
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": [f"{BUCKET_ARN}/jobs/rejected/*"],
        },
        {
            "Sid": "StartWorkflow",
            "Effect": "Allow",
            "Action": ["states:StartExecution"],
            "Resource": [STATE_MACHINE_ARN],
        },
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [f"{log_group_arn}:*"],
        },
    ]


# --- the workflow, its step Lambdas and the job API -----------------------------------------------
QUEUE_HIGH = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/high-abc"
QUEUE_LOW = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/low-abc"
JOB_DEFINITION_ARN = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/scoring-abc:3"
METADATA_KEY = "models/m/v1/metadata.json"
MACHINE = "stepfunctions-batch"
needs_workflows = pytest.mark.skipif(
    not hasattr(workflows, "batch_lambda_polling_definition")
    or not hasattr(workflows, "batch_native_definition"),
    reason="components/workflows.py batch_*_definition not landed yet",
)


def predictor_args(**overrides: Any) -> StepFunctionsBatchPredictorArgs:
    values: dict[str, Any] = {
        "code": pulumi.AssetArchive({}),
        "layer_arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:deps:1",
        "runtime": "python3.13",
        "table_name": "jobs-abc",
        "table_arn": TABLE_ARN,
        "bucket_name": BUCKET,
        "bucket_arn": BUCKET_ARN,
        "model_uri": f"s3://{BUCKET}/{MODEL_KEY}",
        "model_sha256": "f" * 64,
        "model_metadata_key": METADATA_KEY,
        "job_queue_high_arn": QUEUE_HIGH,
        "job_queue_low_arn": QUEUE_LOW,
        "job_definition_arn": JOB_DEFINITION_ARN,
    }
    values.update(overrides)
    return StepFunctionsBatchPredictorArgs(**values)


def run_predictor(**overrides: Any) -> StackRun:
    def body() -> None:
        StepFunctionsBatchPredictor(MACHINE, predictor_args(**overrides))

    return run_program(body)


@pytest.fixture(scope="module")
def lambda_workflow() -> StackRun:
    return run_predictor()


@pytest.fixture(scope="module")
def native_workflow() -> StackRun:
    return run_predictor(polling="native")


def log_streams(run: StackRun, name: str) -> str:
    return f"{run.one('aws:cloudwatch/logGroup:LogGroup', name).outputs['arn']}:*"


def function_arn(run: StackRun, name: str) -> str:
    return str(run.one("aws:lambda/function:Function", name).outputs["arn"])


FAMILY = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/scoring-abc:*"
BATCH_JOBS = f"arn:aws:batch:{REGION}:{ACCOUNT}:job/*"


def submit_statements() -> list[dict[str, Any]]:
    return [
        {
            "Sid": "SubmitScoringJob",
            "Effect": "Allow",
            "Action": ["batch:SubmitJob"],
            "Resource": [QUEUE_HIGH, QUEUE_LOW, FAMILY, BATCH_JOBS],
        },
        {
            "Sid": "TagScoringJobs",
            "Effect": "Allow",
            "Action": ["batch:TagResource"],
            "Resource": [BATCH_JOBS],
        },
    ]


def logs_statements() -> list[dict[str, Any]]:
    return [
        {
            "Sid": "DeliverLogs",
            "Effect": "Allow",
            "Action": list(policies.LOG_DELIVERY_ACTIONS),
            "Resource": ["*"],
        },
        {
            "Sid": "XRayTracing",
            "Effect": "Allow",
            "Action": list(policies.XRAY_ACTIONS),
            "Resource": ["*"],
        },
    ]


@needs_workflows
def test_step_functions_and_their_roles(lambda_workflow: StackRun) -> None:
    run = lambda_workflow
    submit = run.one("aws:lambda/function:Function", f"{MACHINE}-submit-batch-job-function")
    check = run.one("aws:lambda/function:Function", f"{MACHINE}-check-batch-status-function")
    assert submit.inputs["handler"] == contract.HANDLER_SUBMIT_BATCH_JOB
    assert check.inputs["handler"] == contract.HANDLER_CHECK_BATCH_STATUS
    for function in (submit, check):
        assert function.inputs["timeout"] == 30
        assert function.inputs["environment"]["variables"] == {
            contract.ENV_JOB_TABLE: "jobs-abc",
            contract.ENV_BATCH_JOB_QUEUE_HIGH: QUEUE_HIGH,
            contract.ENV_BATCH_JOB_QUEUE_LOW: QUEUE_LOW,
            contract.ENV_BATCH_JOB_DEFINITION: JOB_DEFINITION_ARN,
            contract.ENV_POWERTOOLS_SERVICE_NAME: contract.SERVICE_NAME,
            contract.ENV_POWERTOOLS_METRICS_NAMESPACE: contract.METRICS_NAMESPACE,
        }
    record = {
        "Sid": "JobRecord",
        "Effect": "Allow",
        "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
        "Resource": [TABLE_ARN],
    }
    assert policy_of(run, f"{MACHINE}-submit-batch-job-policy")["Statement"] == [
        *submit_statements(),
        {
            "Sid": "TerminateScoringJobs",
            "Effect": "Allow",
            "Action": ["batch:TerminateJob"],
            "Resource": [BATCH_JOBS],
        },
        record,
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [log_streams(run, f"{MACHINE}-submit-batch-job-logs")],
        },
    ]
    assert policy_of(run, f"{MACHINE}-check-batch-status-policy")["Statement"] == [
        {
            "Sid": "DescribeScoringJobs",
            "Effect": "Allow",
            "Action": ["batch:DescribeJobs"],
            "Resource": ["*"],
        },
        record,
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [log_streams(run, f"{MACHINE}-check-batch-status-logs")],
        },
    ]


@needs_workflows
def test_state_machine_role_with_lambda_polling(lambda_workflow: StackRun) -> None:
    run = lambda_workflow
    submit = function_arn(run, f"{MACHINE}-submit-batch-job-function")
    check = function_arn(run, f"{MACHINE}-check-batch-status-function")
    assert policy_of(run, f"{MACHINE}-state-machine-policy")["Statement"] == [
        {
            "Sid": "InvokeStepFunctions",
            "Effect": "Allow",
            "Action": ["lambda:InvokeFunction"],
            "Resource": [submit, check],
        },
        {
            "Sid": "UpdateJobRecords",
            "Effect": "Allow",
            "Action": ["dynamodb:UpdateItem"],
            "Resource": [TABLE_ARN],
        },
        *logs_statements(),
    ]


@needs_workflows
def test_state_machine_role_with_native_polling(native_workflow: StackRun) -> None:
    run = native_workflow
    assert not [f for f in run.of_type("aws:lambda/function:Function") if "batch-job" in f.name]
    assert policy_of(run, f"{MACHINE}-state-machine-policy")["Statement"] == [
        {
            "Sid": "UpdateJobRecords",
            "Effect": "Allow",
            "Action": ["dynamodb:UpdateItem"],
            "Resource": [TABLE_ARN],
        },
        submit_statements()[0],  # the native definition's SubmitJob passes no tags
        {
            "Sid": "DescribeScoringJobs",
            "Effect": "Allow",
            "Action": ["batch:DescribeJobs"],
            "Resource": ["*"],
        },
        {
            "Sid": "TerminateScoringJobs",
            "Effect": "Allow",
            "Action": ["batch:TerminateJob"],
            "Resource": [BATCH_JOBS],
        },
        {
            "Sid": "ManageBatchSyncRule",
            "Effect": "Allow",
            "Action": ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            "Resource": [
                f"arn:aws:events:{REGION}:{ACCOUNT}:rule/StepFunctionsGetEventsForBatchJobsRule"
            ],
        },
        *logs_statements(),
    ]


@needs_workflows
@pytest.mark.parametrize("polling", ["lambda", "native"])
def test_state_machine(polling: str, lambda_workflow: StackRun, native_workflow: StackRun) -> None:
    run = lambda_workflow if polling == "lambda" else native_workflow
    machine = run.one("aws:sfn/stateMachine:StateMachine")
    assert machine.inputs["type"] == "STANDARD"
    assert machine.inputs["tracingConfiguration"] == {"enabled": True}
    assert machine.inputs["loggingConfiguration"]["level"] == "ALL"
    role = run.one("aws:iam/role:Role", f"{MACHINE}-state-machine-role")
    assert machine.inputs["roleArn"] == role.outputs["arn"]
    assert run.one("aws:iam/rolePolicy:RolePolicy", f"{MACHINE}-state-machine-policy").urn in (
        machine.dependencies
    )
    document = json.loads(machine.inputs["definition"])
    text = json.dumps(document)
    assert "jobs-abc" in text
    if polling == "lambda":
        assert document["TimeoutSeconds"] == min(6 * 3600, 2000 * 30)
        assert function_arn(run, f"{MACHINE}-submit-batch-job-function") in text
        assert function_arn(run, f"{MACHINE}-check-batch-status-function") in text
    else:
        assert document["TimeoutSeconds"] == 6 * 3600
        assert "arn:aws:states:::batch:submitJob.sync" in text
        assert QUEUE_HIGH in text and QUEUE_LOW in text and "scoring-abc" in text


@needs_workflows
def test_job_api(lambda_workflow: StackRun) -> None:
    run = lambda_workflow
    api = run.one("aws:lambda/function:Function", f"{MACHINE}-api-function")
    machine = run.one("aws:sfn/stateMachine:StateMachine")
    assert api.inputs["handler"] == contract.HANDLER_JOBS
    assert api.inputs["environment"]["variables"] == {
        contract.ENV_ARCHITECTURE: contract.ARCH_STEPFUNCTIONS_BATCH,
        contract.ENV_JOB_TABLE: "jobs-abc",
        contract.ENV_DATA_BUCKET: BUCKET,
        contract.ENV_MODEL_URI: f"s3://{BUCKET}/{MODEL_KEY}",
        contract.ENV_MODEL_SHA256: "f" * 64,
        contract.ENV_MODEL_METADATA_URI: f"s3://{BUCKET}/{METADATA_KEY}",
        contract.ENV_MAX_ROWS: str(contract.DEFAULT_MAX_ROWS),
        contract.ENV_ALLOW_MISSING: "false",
        contract.ENV_UNKNOWN_CATEGORY: "error",
        contract.ENV_JOB_TTL_DAYS: str(contract.DEFAULT_JOB_TTL_DAYS),
        contract.ENV_PRESIGNED_URL_SECONDS: str(contract.DEFAULT_PRESIGNED_URL_SECONDS),
        contract.ENV_STATE_MACHINE_ARN: machine.outputs["arn"],
        contract.ENV_POWERTOOLS_SERVICE_NAME: contract.SERVICE_NAME,
        contract.ENV_POWERTOOLS_METRICS_NAMESPACE: contract.METRICS_NAMESPACE,
    }
    arn = machine.outputs["arn"]
    executions = arn.replace(":stateMachine:", ":execution:") + ":*"
    assert policy_of(run, f"{MACHINE}-api-policy")["Statement"] == [
        {
            "Sid": "JobRecords",
            "Effect": "Allow",
            "Action": ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"],
            "Resource": [TABLE_ARN],
        },
        {
            "Sid": "ListCallerJobs",
            "Effect": "Allow",
            "Action": ["dynamodb:Query"],
            "Resource": [f"{TABLE_ARN}/index/by-caller"],
        },
        {
            # inputs/*: also a request spilled to inputs/{id}.json, read back to be staged
            "Sid": "ReadMetadataInputsAndResults",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [
                f"{BUCKET_ARN}/{METADATA_KEY}",
                f"{BUCKET_ARN}/inputs/*",
                f"{BUCKET_ARN}/results/*",
            ],
        },
        {
            "Sid": "WriteInputs",
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": [f"{BUCKET_ARN}/inputs/*"],
        },
        {
            "Sid": "StartWorkflow",
            "Effect": "Allow",
            "Action": ["states:StartExecution"],
            "Resource": [arn],
        },
        {
            "Sid": "WatchWorkflows",
            "Effect": "Allow",
            "Action": ["states:StopExecution", "states:DescribeExecution"],
            "Resource": [executions],
        },
        {
            "Sid": "TerminateScoringJobs",
            "Effect": "Allow",
            "Action": ["batch:TerminateJob"],
            "Resource": [BATCH_JOBS],
        },
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [log_streams(run, f"{MACHINE}-api-logs")],
        },
    ]


@needs_workflows
def test_trigger_belongs_to_the_workflow(lambda_workflow: StackRun) -> None:
    run = lambda_workflow
    predictor = run.one("mlserve:index:StepFunctionsBatchPredictor")
    trigger = run.one("mlserve:index:JobConfigTrigger")
    assert trigger.parent == predictor.urn
    function = run.one("aws:lambda/function:Function", f"{MACHINE}-trigger-function")
    machine = run.one("aws:sfn/stateMachine:StateMachine")
    variables = function.inputs["environment"]["variables"]
    assert variables[contract.ENV_STATE_MACHINE_ARN] == machine.outputs["arn"]
    statements = {s["Sid"]: s for s in policy_of(run, f"{MACHINE}-trigger-policy")["Statement"]}
    assert statements["StartWorkflow"]["Resource"] == [machine.outputs["arn"]]


def test_batch_arn_helpers() -> None:
    assert policies.batch_jobs_arn(QUEUE_LOW) == BATCH_JOBS
    assert policies.batch_job_definition_family_arn(JOB_DEFINITION_ARN) == FAMILY
    assert policies.batch_job_definition_family_arn(JOB_DEFINITION_ARN[:-2]) == FAMILY
    with pytest.raises(ValueError, match="job-queue"):
        policies.batch_jobs_arn(JOB_DEFINITION_ARN)
    with pytest.raises(ValueError, match="job-definition"):
        policies.batch_job_definition_family_arn(QUEUE_LOW)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"polling": "sometimes"}, "polling"),
        ({"poll_interval_seconds": 0}, "poll_interval_seconds"),
        ({"execution_timeout_seconds": 59}, "execution_timeout_seconds"),
        ({"model_metadata_key": "metadata.json"}, "model_metadata_key"),
        ({"lambda_architecture": "sparc"}, "lambda_architecture"),
    ],
)
def test_invalid_predictor_args(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        predictor_args(**overrides)


# --- the whole program ----------------------------------------------------------------------------
needs_registration = pytest.mark.skipif(
    contract.ARCH_STEPFUNCTIONS_BATCH not in ARCHITECTURES,
    reason="stepfunctions-batch is not registered in components/settings.py yet",
)


@pytest.fixture(scope="module")
def batch_stack(base_config: dict[str, str]) -> StackRun:
    return run_stack({**base_config, "architecture": "stepfunctions-batch"})


@needs_workflows
@needs_registration
def test_program_builds_the_architecture(batch_stack: StackRun) -> None:
    run = batch_stack
    for typ in (
        "mlserve:index:Network",
        "mlserve:index:ScoringImage",
        "mlserve:index:BatchScoring",
        "mlserve:index:StepFunctionsBatchPredictor",
        "mlserve:index:JobConfigTrigger",
        "aws:s3/bucketNotification:BucketNotification",
        JOB_DEFINITION,
    ):
        assert len(run.of_type(typ)) == 1, typ
    assert len(run.of_type(QUEUE)) == 2
    assert run.of_type("mlserve:index:EcsScoring") == []  # no ECS cluster for Batch
    notification = run.one("aws:s3/bucketNotification:BucketNotification")
    assert notification.inputs["bucket"] == run.exports["modelBucket"]
    assert container(run)["image"] == run.exports["imageUri"]
    ce = run.one(CE)
    assert ce.inputs["computeResources"]["subnets"] == sorted(DEFAULT_SUBNET_IDS)
    group = run.one("aws:ec2/securityGroup:SecurityGroup")
    assert ce.inputs["computeResources"]["securityGroupIds"] == [group.id]
    queues = {q.name: q.outputs["arn"] for q in run.of_type(QUEUE)}
    assert run.exports["batchJobQueueHigh"] == queues["batch-high"]
    assert run.exports["batchJobQueueLow"] == queues["batch-low"]
    assert run.exports["architecture"] == ["stepfunctions-batch"]
    machine = run.one("aws:sfn/stateMachine:StateMachine")
    assert run.exports["batchStateMachineArn"] == machine.outputs["arn"]


@needs_workflows
@needs_registration
def test_settings_reach_the_batch_resources(base_config: dict[str, str]) -> None:
    run = run_stack(
        {
            **base_config,
            "architecture": "stepfunctions-batch",
            "batchComputeType": "FARGATE_SPOT",
            "batchMaxVcpus": 256,
            "jobAttempts": 7,
            "taskCpu": 2048,
            "taskMemory": 8192,
            "polling": "native",
        }
    )
    types = sorted(ce.inputs["computeResources"]["type"] for ce in run.of_type(CE))
    assert types == ["FARGATE", "FARGATE_SPOT"]
    assert {ce.inputs["computeResources"]["maxVcpus"] for ce in run.of_type(CE)} == {256}
    assert run.one(JOB_DEFINITION).inputs["retryStrategy"]["attempts"] == 7
    assert container(run)["resourceRequirements"] == [
        {"type": "VCPU", "value": "2"},
        {"type": "MEMORY", "value": "8192"},
    ]
    assert "submitJob.sync" in run.one("aws:sfn/stateMachine:StateMachine").inputs["definition"]


@needs_workflows
@needs_registration
def test_ecs_and_batch_share_network_and_image(base_config: dict[str, str]) -> None:
    run = run_stack({**base_config, "architecture": "stepfunctions-ecs,stepfunctions-batch"})
    for typ in ("mlserve:index:Network", "mlserve:index:ScoringImage"):
        assert len(run.of_type(typ)) == 1, typ
    assert len(run.of_type("aws:sfn/stateMachine:StateMachine")) == 2


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("batchComputeType", "EC2", "mlserve:batchComputeType: unknown compute type 'EC2'"),
        ("batchMaxVcpus", 0, "mlserve:batchMaxVcpus: 0 is out of range"),
        ("jobAttempts", 0, "mlserve:jobAttempts: 0 is out of range"),
        ("jobAttempts", 11, "mlserve:jobAttempts: 11 is out of range"),
    ],
)
def test_batch_settings_are_validated(
    base_config: dict[str, str], key: str, value: object, message: str
) -> None:
    with pytest.raises(SettingsError) as err:
        run_stack({**base_config, key: value})
    assert message in str(err.value)
