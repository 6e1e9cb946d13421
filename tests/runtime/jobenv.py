"""Helpers shared by the job tests: the job table, the deployed model, ECS, simulated tasks.

Plain functions and classes (no fixtures), used inside moto's ``mock_aws`` (the ``aws`` fixture).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import boto3
import numpy as np
import xgboost as xgb
from moto.core.config import DefaultConfig
from moto.moto_api import state_manager

from mlserve.train import TrainResult
from runtime import contract

REGION = "us-east-1"
BUCKET = "mlserve-models-test"  # created by the ``s3`` fixture
TABLE = "mlserve-jobs-test"
VERSION = "abc123"


def create_job_table(dynamodb: Any) -> str:
    """The job table as components/storage.py JobTable declares it, for the handlers' unit
    tests (the caller index of GET /jobs included; tests/local checks the deployed one)."""
    key = contract.JOB_TABLE_HASH_KEY
    caller, created = contract.JOB_TABLE_CALLER_ATTRIBUTE, contract.JOB_TABLE_CREATED_ATTRIBUTE
    dynamodb.create_table(
        TableName=TABLE,
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": "S"} for name in (key, caller, created)
        ],
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": contract.JOB_TABLE_CALLER_INDEX,
                "KeySchema": [
                    {"AttributeName": caller, "KeyType": "HASH"},
                    {"AttributeName": created, "KeyType": "RANGE"},
                ],
                "Projection": {
                    "ProjectionType": "INCLUDE",
                    "NonKeyAttributes": list(contract.JOB_TABLE_CALLER_INDEX_ATTRIBUTES),
                },
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=TABLE,
        TimeToLiveSpecification={
            "Enabled": True,
            "AttributeName": contract.JOB_TABLE_TTL_ATTRIBUTE,
        },
    )
    return TABLE


def job_count(dynamodb: Any) -> int:
    return int(dynamodb.scan(TableName=TABLE, Select="COUNT")["Count"])


def deploy_model(s3: Any, model: TrainResult, version: str = VERSION) -> dict[str, str]:
    """Upload the model and its metadata.json as components/storage.py does; their env vars."""
    key = contract.model_key("example", version)
    s3.upload_file(str(model.model_path), BUCKET, key)
    metadata = json.loads(Path(model.metadata_path).read_text())
    metadata.update(name="example", version=version, sha256=model.sha256)
    metadata_key = contract.model_metadata_key("example", version)
    s3.put_object(Bucket=BUCKET, Key=metadata_key, Body=json.dumps(metadata).encode())
    return {
        contract.ENV_MODEL_URI: f"s3://{BUCKET}/{key}",
        contract.ENV_MODEL_SHA256: model.sha256,
        contract.ENV_MODEL_METADATA_URI: f"s3://{BUCKET}/{metadata_key}",
    }


def create_ecs() -> dict[str, str]:
    """A cluster and a Fargate task definition in moto, on the default VPC; the ECS_* vars.

    moto needs container ``memory`` and, for awsvpc, a VPC with DNS hostnames (the default VPC).
    """
    ec2 = boto3.client("ec2", region_name=REGION)
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])
    groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["default"]}])
    ecs = boto3.client("ecs", region_name=REGION)
    cluster = ecs.create_cluster(clusterName="mlserve-test")["cluster"]["clusterArn"]
    task_definition = ecs.register_task_definition(
        family="mlserve-scoring",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="1024",
        memory="2048",
        containerDefinitions=[
            {
                "name": contract.SCORING_CONTAINER_NAME,
                "image": "mlserve-scoring:test",
                "memory": 2048,
                "essential": True,
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    return {
        contract.ENV_ECS_CLUSTER: cluster,
        contract.ENV_ECS_TASK_DEFINITION: task_definition,
        contract.ENV_ECS_SUBNETS: ",".join(s["SubnetId"] for s in subnets["Subnets"][:2]),
        contract.ENV_ECS_SECURITY_GROUPS: groups["SecurityGroups"][0]["GroupId"],
        contract.ENV_ECS_ASSIGN_PUBLIC_IP: "DISABLED",
    }


@contextmanager
def tasks_stay_running() -> Iterator[None]:
    """moto steps a task towards STOPPED on every DescribeTasks; hold it RUNNING instead."""
    state_manager.set_transition(
        model_name="ecs::task", transition={"progression": "manual", "times": 10**9}
    )
    try:
        yield
    finally:
        state_manager.unset_transition("ecs::task")


def scoring_env(model_env: Mapping[str, str], cache_dir: Path) -> dict[str, str]:
    """The scoring container's environment (the task definition's, without JOB_ID)."""
    return {
        contract.ENV_JOB_TABLE: TABLE,
        contract.ENV_DATA_BUCKET: BUCKET,
        contract.ENV_MODEL_URI: model_env[contract.ENV_MODEL_URI],
        contract.ENV_MODEL_SHA256: model_env[contract.ENV_MODEL_SHA256],
        contract.ENV_ALLOW_MISSING: "false",
        contract.ENV_MODEL_CACHE_DIR: str(cache_dir),
    }


def reference(model: TrainResult, rows: np.ndarray) -> np.ndarray:
    """What ``xgboost.Booster.predict`` says for ``rows``."""
    booster = xgb.Booster(model_file=str(model.model_path))
    return booster.predict(xgb.DMatrix(rows, feature_names=booster.feature_names))


# --- DescribeTasks payloads ---------------------------------------------------------------------


def stopped_task(
    task_arn: str,
    *,
    exit_code: int | None,
    stopped_reason: str = "Essential container in task exited",
    stop_code: str = "EssentialContainerExited",
    container_reason: str | None = None,
) -> dict[str, Any]:
    """A STOPPED task as DescribeTasks returns it (shape of the boto3 ECS reference)."""
    cluster_arn = task_arn.replace(":task/", ":cluster/").rsplit("/", 1)[0]
    container: dict[str, Any] = {
        "containerArn": task_arn.replace(":task/", ":container/") + "/0d1e2f",
        "taskArn": task_arn,
        "name": contract.SCORING_CONTAINER_NAME,
        "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlserve-scoring:latest",
        "lastStatus": "STOPPED",
        "networkBindings": [],
        "networkInterfaces": [{"attachmentId": "a1b2", "privateIpv4Address": "172.31.5.6"}],
        "healthStatus": "UNKNOWN",
        "cpu": "0",
        "memory": "2048",
    }
    if exit_code is not None:
        container["exitCode"] = exit_code
    if container_reason is not None:
        container["reason"] = container_reason
    return {
        "taskArn": task_arn,
        "clusterArn": cluster_arn,
        "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/mlserve-scoring:3",
        "lastStatus": "STOPPED",
        "desiredStatus": "STOPPED",
        "launchType": "FARGATE",
        "platformVersion": "1.4.0",
        "cpu": "1024",
        "memory": "2048",
        "startedBy": "mlserve",
        "stopCode": stop_code,
        "stoppedReason": stopped_reason,
        "stoppingAt": "2026-11-25T01:02:03.123000+00:00",
        "stoppedAt": "2026-11-25T01:02:09.456000+00:00",
        "containers": [container],
        "overrides": {"containerOverrides": [{"name": contract.SCORING_CONTAINER_NAME}]},
        "version": 4,
    }


class StubEcs:
    """An ECS client answering DescribeTasks from canned payloads (a list is consumed in turn)."""

    def __init__(self, *responses: Mapping[str, Any]) -> None:
        self.responses = list(responses)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def describe_tasks(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("describe_tasks", kwargs))
        response = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        return copy.deepcopy(dict(response))

    def run_task(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("run_task", kwargs))
        return copy.deepcopy(dict(self.responses[0]))

    def stop_task(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("stop_task", kwargs))
        return {"task": {"taskArn": kwargs["task"], "lastStatus": "STOPPED"}}


EXITED = "Essential container in task exited"
PULL_FAILED = (
    "CannotPullContainerError: pull image manifest has been retried 5 time(s): "
    "failed to resolve ref mlserve-scoring:latest: not found"
)


class SimulatedEcs:
    """moto's ECS plus a simulated container: ``container(job_id)`` runs when a task starts
    (e.g. the scoring entrypoint in-process) and returns its exit code; DescribeTasks then
    reports that task STOPPED with that exit code, as ECS does. ``container=None`` leaves tasks
    RUNNING (pair with :func:`tasks_stay_running`), and so does ``stops=False`` after the
    container ran (Fargate takes a while to report STOPPED after the container exited)."""

    def __init__(
        self, container: Callable[[str], int | None] | None = None, *, stops: bool = True
    ) -> None:
        self.ecs = boto3.client("ecs", region_name=REGION)
        self.container = container
        self.stops = stops
        self.exit_codes: dict[str, int | None] = {}
        self.run_calls: list[dict[str, Any]] = []
        self.stop_calls: list[dict[str, Any]] = []

    def run_task(self, **kwargs: Any) -> dict[str, Any]:
        self.run_calls.append(kwargs)
        response = self.ecs.run_task(**kwargs)
        if self.container is not None:
            override = kwargs["overrides"]["containerOverrides"][0]
            job_id = next(e["value"] for e in override["environment"] if e["name"] == "JOB_ID")
            for task in response["tasks"]:
                exit_code = self.container(job_id)
                if self.stops:
                    self.exit_codes[task["taskArn"]] = exit_code
        return response

    def finish(self, task_arn: str, exit_code: int | None) -> None:
        """The task of ``task_arn`` stops now with ``exit_code`` (None: no exit code)."""
        self.exit_codes[task_arn] = exit_code

    def describe_tasks(self, **kwargs: Any) -> dict[str, Any]:
        response = self.ecs.describe_tasks(**kwargs)
        tasks = []
        for task in response["tasks"]:
            if task["taskArn"] in self.exit_codes:
                code = self.exit_codes[task["taskArn"]]
                exited = code is not None
                task = stopped_task(
                    task["taskArn"],
                    exit_code=code,
                    stopped_reason=EXITED if exited else PULL_FAILED,
                    stop_code="EssentialContainerExited" if exited else "TaskFailedToStart",
                )
            tasks.append(task)
        return {**response, "tasks": tasks}

    def stop_task(self, **kwargs: Any) -> dict[str, Any]:
        self.stop_calls.append(kwargs)
        return self.ecs.stop_task(**kwargs)


# --- Step Functions (stepfunctions-ecs) ---------------------------------------------------------

# moto runs executions in a thread when told to; Lambda without Docker is moto's "simple" backend.
SFN_CONFIG: Final[DefaultConfig] = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}
ACCOUNT = "123456789012"
RUN_ECS_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:mlserve-run-ecs"
CHECK_JOB_STATUS_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:mlserve-check-job-status"
SFN_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/mlserve-state-machine"


def create_state_machine(sfn: Any, definition: Mapping[str, Any], name: str = "mlserve-ecs") -> str:
    """A Standard state machine in moto; its ARN."""
    response = sfn.create_state_machine(
        name=name, definition=json.dumps(definition), roleArn=SFN_ROLE_ARN, type="STANDARD"
    )
    return str(response["stateMachineArn"])


def wait_for_execution(sfn: Any, execution_arn: str, timeout: float = 30.0) -> dict[str, Any]:
    """DescribeExecution until it is no longer RUNNING (moto runs it in a thread)."""
    deadline = time.monotonic() + timeout
    while True:
        description: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        if description["status"] != "RUNNING" or time.monotonic() > deadline:
            return description
        time.sleep(0.05)


def visited_states(sfn: Any, execution_arn: str) -> list[str]:
    """The names of the states an execution entered, in order."""
    events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    return [
        e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e
    ]


@contextmanager
def lambda_functions(
    handlers: Mapping[str, Callable[[dict[str, Any], Any], Any]],
) -> Iterator[None]:
    """Make moto's Docker-less Lambda backend call ``handlers[function ARN](event, context)``
    in-process, as Lambda would (an exception is a function error with its class as errorType).
    Without this, moto's simple backend echoes the payload back."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    def invoke(
        _backend: Any,
        function_name: str,
        _qualifier: str | None,
        body: Any,
        _headers: Any,
        response_headers: dict[str, str],
    ) -> bytes:
        handler = handlers[function_name]
        event = json.loads(body or "{}")
        try:
            result = handler(event, FakeStepContext(function_name))
        except Exception as exc:
            response_headers["x-amz-function-error"] = "Unhandled"
            result = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
        return json.dumps(result).encode()

    original = LambdaSimpleBackend.invoke
    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        LambdaSimpleBackend.invoke = original  # type: ignore[method-assign]


class FakeStepContext:
    """The Lambda context a Step Functions invocation gets (what Powertools reads)."""

    function_version = "$LATEST"
    memory_limit_in_mb = 256
    aws_request_id = "req-sfn"
    log_group_name = "/aws/lambda/step"
    log_stream_name = "stream"

    def __init__(self, function_arn: str) -> None:
        self.invoked_function_arn = function_arn
        self.function_name = function_arn.rsplit(":", 1)[-1]

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


# --- AWS Batch (stepfunctions-batch) ------------------------------------------------------------

# moto runs Batch jobs without Docker ("batch_simple"): every job SUCCEEDS at once.
BATCH_CONFIG: Final[DefaultConfig] = {"batch": {"use_docker": False}}
SUBMIT_BATCH_JOB_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:mlserve-submit-batch-job"
CHECK_BATCH_STATUS_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:mlserve-check-batch-status"


def create_batch() -> dict[str, str]:
    """A Fargate compute environment, the high/low queues and a job definition in moto; the
    BATCH_* variables."""
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="mlserve-batch-test", AssumeRolePolicyDocument="{}")["Role"]
    ec2 = boto3.client("ec2", region_name=REGION)
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    groups = [g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]][:1]
    batch = boto3.client("batch", region_name=REGION)
    environment = batch.create_compute_environment(
        computeEnvironmentName="mlserve-fargate",
        type="MANAGED",
        state="ENABLED",
        serviceRole=role["Arn"],  # moto insists; AWS uses the service-linked role
        computeResources={
            "type": "FARGATE",
            "maxvCpus": 16,
            "subnets": subnets,
            "securityGroupIds": groups,
        },
    )["computeEnvironmentArn"]
    queues = {
        name: batch.create_job_queue(
            jobQueueName=f"mlserve-{name}",
            state="ENABLED",
            priority=priority,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}],
        )["jobQueueArn"]
        for name, priority in (("high", 100), ("low", 1))
    }
    definition = batch.register_job_definition(
        jobDefinitionName="mlserve-scoring",
        type="container",
        platformCapabilities=["FARGATE"],
        containerProperties={
            "image": "mlserve-scoring:test",
            "command": ["--mode", "batch"],
            "resourceRequirements": [
                {"type": "VCPU", "value": "1"},
                {"type": "MEMORY", "value": "2048"},
            ],
            "executionRoleArn": role["Arn"],
        },
        retryStrategy={"attempts": 2},
    )["jobDefinitionArn"]
    return {
        contract.ENV_BATCH_JOB_QUEUE_HIGH: queues["high"],
        contract.ENV_BATCH_JOB_QUEUE_LOW: queues["low"],
        contract.ENV_BATCH_JOB_DEFINITION: definition,
    }


def batch_attempt(
    exit_code: int | None, status_reason: str, reason: str | None = None
) -> dict[str, Any]:
    """One ``attempts`` entry of a DescribeJobs job (shape of the boto3 Batch reference)."""
    container: dict[str, Any] = {
        "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/AWSBatch-mlserve/0a1b2c",
        "logStreamName": "mlserve-scoring/default/0a1b2c",
    }
    if exit_code is not None:
        container["exitCode"] = exit_code
    if reason is not None:
        container["reason"] = reason
    return {
        "container": container,
        "startedAt": 1764036000000,
        "stoppedAt": 1764036060000,
        "statusReason": status_reason,
    }


def batch_job(
    job_id: str,
    status: str,
    *,
    status_reason: str | None = None,
    attempts: list[dict[str, Any]] | None = None,
    array_size: int | None = None,
    summary: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """A job as DescribeJobs returns it (an array parent with ``array_size`` + ``summary``)."""
    job: dict[str, Any] = {
        "jobArn": f"arn:aws:batch:us-east-1:123456789012:job/{job_id}",
        "jobName": "mlserve-job",
        "jobId": job_id,
        "jobQueue": "arn:aws:batch:us-east-1:123456789012:job-queue/mlserve-low",
        "status": status,
        "attempts": attempts or [],
        "createdAt": 1764035990000,
        "dependsOn": [],
        "jobDefinition": "arn:aws:batch:us-east-1:123456789012:job-definition/mlserve-scoring:1",
        "container": {"image": "mlserve-scoring:latest", "command": ["--mode", "batch"]},
        "platformCapabilities": ["FARGATE"],
    }
    if status_reason is not None:
        job["statusReason"] = status_reason
    if array_size is not None:
        base = dict.fromkeys(
            ("STARTING", "FAILED", "RUNNING", "SUCCEEDED", "RUNNABLE", "SUBMITTED", "PENDING"), 0
        )
        job["arrayProperties"] = {"statusSummary": {**base, **(summary or {})}, "size": array_size}
    return job


class StubBatch:
    """A Batch client answering DescribeJobs from canned jobs (a list is consumed in turn)."""

    def __init__(self, *jobs: Mapping[str, Any]) -> None:
        self.jobs = list(jobs)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def describe_jobs(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("describe_jobs", kwargs))
        job = self.jobs.pop(0) if len(self.jobs) > 1 else self.jobs[0]
        return {"jobs": [copy.deepcopy(dict(job))] if job else []}

    def submit_job(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("submit_job", kwargs))
        return {"jobId": "b-1", "jobName": kwargs["jobName"], "jobArn": "arn:aws:batch:job/b-1"}

    def terminate_job(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("terminate_job", kwargs))
        return {}
