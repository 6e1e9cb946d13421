"""Architecture `lambda-ecs`: a job API Lambda that runs the scoring image as an ECS Fargate task.

* :class:`EcsScoring` is the compute shared by every ECS architecture (lambda-ecs and
  stepfunctions-ecs): a cluster with Container Insights, the task's log group, the task
  role (what the scoring code may do), the execution role (what ECS needs to pull the image and
  ship logs) and the Fargate task definition with one essential container,
  ``contract.SCORING_CONTAINER_NAME``.
* :class:`LambdaEcsPredictor` is the job API of this architecture (``runtime.handlers.jobs``):
  ``POST /predict`` runs a task and waits up to ``syncWaitSeconds`` for it, ``POST /jobs``
  answers 202 at once, ``GET``/``DELETE /jobs/{id}`` read and cancel. Its role may run only the
  scoring task definition in the scoring cluster and pass only the two task roles to ECS.
* :class:`JobApiArgs` holds what every ECS job API shares (inputs, checks, environment):
  :class:`LambdaEcsPredictorArgs` and ``components.stepfunctions``'s args extend it.

Names the runtime reads (environment variables, the container name) come from runtime/contract.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pulumi
import pulumi_aws as aws

from components import policies
from components.api import LambdaTarget
from components.functions import lambda_function
from components.settings import (
    API_GATEWAY_TIMEOUT_SECONDS,
    FARGATE_MEMORY,
    LAMBDA_ARCHITECTURES,
    LOG_RETENTION_DAYS,
    describe_fargate_memory,
)
from components.storage import (
    ServedCanary,
    canary_assignment_environment,
    canary_container_environment,
)
from runtime import contract

# Lambda architecture name -> ECS runtime platform CPU architecture (same CPU as the image).
CPU_ARCHITECTURES: Final = {"arm64": "ARM64", "x86_64": "X86_64"}
LOG_STREAM_PREFIX: Final = "scoring"  # streams: scoring/<container name>/<task id>
FAMILY_MAX: Final = 255

# The job API answers within syncWaitSeconds plus this margin (RunTask, the job record, a last
# DescribeTasks), never under JOB_API_MIN_TIMEOUT_SECONDS (a POST writes up to 6 MB to S3 and
# starts a task even with syncWaitSeconds 0), never over API Gateway's 29 s.
JOB_API_TIMEOUT_MARGIN_SECONDS: Final = 4
JOB_API_MIN_TIMEOUT_SECONDS: Final = 10
JOB_API_OPERATIONS: Final = contract.JOB_API_OPERATIONS
MAX_SYNC_WAIT_SECONDS: Final = 25


def task_family(stack: str, name: str) -> str:
    """``mlserve-<stack>-<name>`` limited to ECS's family alphabet [A-Za-z0-9_-], 255 chars."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"mlserve-{stack}-{name}")[:FAMILY_MAX]


def job_api_timeout(sync_wait_seconds: int) -> int:
    return min(
        API_GATEWAY_TIMEOUT_SECONDS,
        max(JOB_API_MIN_TIMEOUT_SECONDS, sync_wait_seconds + JOB_API_TIMEOUT_MARGIN_SECONDS),
    )


def container_definitions(
    *,
    image_uri: str,
    memory: int,
    environment: Mapping[str, str],
    log_group_name: str,
    region: str,
) -> list[dict[str, Any]]:
    """The task's one essential container (pure: the task definition's JSON document)."""
    return [
        {
            "name": contract.SCORING_CONTAINER_NAME,
            "image": image_uri,
            "essential": True,
            "memory": memory,
            "environment": [{"name": k, "value": environment[k]} for k in sorted(environment)],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": log_group_name,
                    "awslogs-region": region,
                    "awslogs-stream-prefix": LOG_STREAM_PREFIX,
                },
            },
        }
    ]


def _check_common(problems: list[str], architecture: str, log_retention_days: int) -> None:
    if architecture not in LAMBDA_ARCHITECTURES:
        problems.append(f"architecture {architecture!r} not in {LAMBDA_ARCHITECTURES}")
    if log_retention_days not in LOG_RETENTION_DAYS:
        problems.append(f"log_retention_days {log_retention_days} is not a CloudWatch value")


@dataclass(frozen=True)
class EcsScoringArgs:
    image_uri: pulumi.Input[str] = field(compare=False)
    # The ECR repository of the image (the execution role may pull from it); None: not in ECR.
    repository_arn: pulumi.Input[str] | None = field(compare=False)
    table_name: pulumi.Input[str] = field(compare=False)
    table_arn: pulumi.Input[str] = field(compare=False)
    bucket_name: pulumi.Input[str] = field(compare=False)
    bucket_arn: pulumi.Input[str] = field(compare=False)
    model_uri: pulumi.Input[str] = field(compare=False)
    model_sha256: pulumi.Input[str] = field(compare=False)
    model_object_arn: pulumi.Input[str] = field(compare=False)
    architecture: str = "arm64"
    task_cpu: int = 1024
    task_memory: int = 2048
    allow_missing: bool = False
    unknown_category: str = "error"  # mlserve:unknownCategory
    # MODEL_CATEGORIES: categories recorded in metadata.json for a model that stores none
    model_categories: str = ""
    log_retention_days: int = 14
    # The canary (issue 17): the task may load it too, for the jobs whose record names it.
    canary: ServedCanary | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        problems: list[str] = []
        _check_common(problems, self.architecture, self.log_retention_days)
        if self.task_cpu not in FARGATE_MEMORY:
            problems.append(
                f"task_cpu {self.task_cpu} is not a Fargate CPU size "
                f"({', '.join(map(str, FARGATE_MEMORY))})"
            )
        elif self.task_memory not in FARGATE_MEMORY[self.task_cpu]:
            problems.append(
                f"task_memory {self.task_memory} does not fit task_cpu {self.task_cpu} "
                f"({describe_fargate_memory(self.task_cpu)} MB)"
            )
        if problems:
            raise ValueError("EcsScoringArgs: " + "; ".join(problems))

    @property
    def cpu_architecture(self) -> str:
        return CPU_ARCHITECTURES[self.architecture]

    def environment(self) -> dict[str, pulumi.Input[str]]:
        """The container's environment (JOB_ID comes per task, as a container override)."""
        return {
            contract.ENV_JOB_TABLE: self.table_name,
            contract.ENV_DATA_BUCKET: self.bucket_name,
            contract.ENV_MODEL_URI: self.model_uri,
            contract.ENV_MODEL_SHA256: self.model_sha256,
            **contract.input_environment(
                self.allow_missing, self.unknown_category, self.model_categories
            ),
            **canary_container_environment(self.canary),
        }


def task_execution_role(
    parent: pulumi.Resource,
    name: str,
    *,
    description: str,
    log_group_arn: pulumi.Input[str],
    repository_arn: pulumi.Input[str | None],
) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
    """The execution role ECS or Batch uses to start the scoring container: pull the image
    (from its ECR repository, when it is one) and write the container's log group. Children
    ``{name}-execution-role`` and ``{name}-execution-policy``."""
    child = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(
        f"{name}-execution-role",
        description=description,
        assume_role_policy=json.dumps(policies.ecs_tasks_assume_role_policy()),
        opts=child,
    )
    policy = aws.iam.RolePolicy(
        f"{name}-execution-policy",
        role=role.id,
        policy=pulumi.Output.all(log_group_arn, repository_arn).apply(
            lambda arns: json.dumps(policies.task_execution_policy(arns[0], arns[1]))
        ),
        opts=child,
    )
    return role, policy


class EcsScoring(pulumi.ComponentResource):
    """Cluster, log group, task and execution roles, and the Fargate scoring task definition."""

    cluster_arn: pulumi.Output[str]
    cluster_name: pulumi.Output[str]
    task_definition_arn: pulumi.Output[str]
    task_role_arn: pulumi.Output[str]
    execution_role_arn: pulumi.Output[str]
    log_group_name: pulumi.Output[str]
    log_group_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: EcsScoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlserve:index:EcsScoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            settings=[{"name": "containerInsights", "value": "enabled"}],
            opts=child,
        )
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", retention_in_days=args.log_retention_days, opts=child
        )
        assume = json.dumps(policies.ecs_tasks_assume_role_policy())

        task_role = aws.iam.Role(
            f"{name}-task-role",
            description="mlserve scoring task: its job record, the model, inputs/ and results/",
            assume_role_policy=assume,
            opts=child,
        )
        task_policy = aws.iam.RolePolicy(
            f"{name}-task-policy",
            role=task_role.id,
            policy=pulumi.Output.all(
                args.table_arn,
                args.bucket_arn,
                args.model_object_arn,
                args.canary.object_arn if args.canary is not None else None,
            ).apply(lambda arns: json.dumps(policies.scoring_task_policy(*arns))),
            opts=child,
        )

        execution_role, execution_policy = task_execution_role(
            self,
            name,
            description="ECS agent for the mlserve scoring task: pull the image, write its logs",
            log_group_arn=log_group.arn,
            repository_arn=args.repository_arn,
        )

        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        environment = args.environment()
        env_names = list(environment)
        memory = args.task_memory

        def render(values: list[Any]) -> str:
            image_uri, group_name, resolved_region, *env_values = values
            return json.dumps(
                container_definitions(
                    image_uri=image_uri,
                    memory=memory,
                    environment=dict(zip(env_names, env_values, strict=True)),
                    log_group_name=group_name,
                    region=resolved_region,
                )
            )

        task_definition = aws.ecs.TaskDefinition(
            f"{name}-task",
            family=task_family(pulumi.get_stack(), name),
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            cpu=str(args.task_cpu),
            memory=str(args.task_memory),
            runtime_platform={
                "operating_system_family": "LINUX",
                "cpu_architecture": args.cpu_architecture,
            },
            task_role_arn=task_role.arn,
            execution_role_arn=execution_role.arn,
            container_definitions=pulumi.Output.all(
                args.image_uri, log_group.name, region, *environment.values()
            ).apply(render),
            # No task can start before its roles may do their work.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[task_policy, execution_policy]),
        )

        self.cluster_arn = cluster.arn
        self.cluster_name = cluster.name
        self.task_definition_arn = task_definition.arn
        self.task_role_arn = task_role.arn
        self.execution_role_arn = execution_role.arn
        self.log_group_name = log_group.name
        self.log_group_arn = log_group.arn
        self.register_outputs(
            {
                "cluster_arn": self.cluster_arn,
                "cluster_name": self.cluster_name,
                "task_definition_arn": self.task_definition_arn,
                "task_role_arn": self.task_role_arn,
                "execution_role_arn": self.execution_role_arn,
                "log_group_name": self.log_group_name,
            }
        )


@dataclass(frozen=True)
class JobApiArgs:
    """What every ECS job API function (``runtime.handlers.jobs``) is built from, whatever
    launches its tasks: lambda-ecs (the function itself) or stepfunctions-ecs (a workflow).
    Subclasses add their own fields and checks (:meth:`_problems`)."""

    code: pulumi.Archive = field(compare=False)
    layer_arn: pulumi.Input[str] = field(compare=False)
    runtime: str  # the Lambda runtime the code and layer were built for (LambdaPackage)
    table_name: pulumi.Input[str] = field(compare=False)
    table_arn: pulumi.Input[str] = field(compare=False)
    bucket_name: pulumi.Input[str] = field(compare=False)
    bucket_arn: pulumi.Input[str] = field(compare=False)
    model_uri: pulumi.Input[str] = field(compare=False)
    model_sha256: pulumi.Input[str] = field(compare=False)
    model_metadata_key: str
    cluster_arn: pulumi.Input[str] = field(compare=False)
    task_definition_arn: pulumi.Input[str] = field(compare=False)
    task_role_arn: pulumi.Input[str] = field(compare=False)
    execution_role_arn: pulumi.Input[str] = field(compare=False)
    subnet_ids: pulumi.Input[Sequence[str]] = field(compare=False)
    security_group_ids: pulumi.Input[Sequence[str]] = field(compare=False)
    assign_public_ip: str = "ENABLED"
    lambda_architecture: str = "arm64"
    memory: int = 1024
    max_rows: int = contract.DEFAULT_MAX_ROWS
    allow_missing: bool = False
    unknown_category: str = "error"  # mlserve:unknownCategory
    job_ttl_days: int = contract.DEFAULT_JOB_TTL_DAYS
    presigned_url_seconds: int = contract.DEFAULT_PRESIGNED_URL_SECONDS
    log_retention_days: int = 14
    # The canary (issue 17): which version scores a new job is decided by the job API.
    canary: ServedCanary | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ValueError(f"{type(self).__name__}: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        problems: list[str] = []
        if not isinstance(self.code, pulumi.Archive):
            problems.append(f"code must be a pulumi.Archive, got {type(self.code).__name__}")
        _check_common(problems, self.lambda_architecture, self.log_retention_days)
        if not self.model_metadata_key.startswith(contract.MODEL_PREFIX) or not (
            self.model_metadata_key.endswith(f"/{contract.MODEL_METADATA_NAME}")
        ):
            problems.append(
                f"model_metadata_key {self.model_metadata_key!r} is not "
                f"{contract.MODEL_PREFIX}<name>/<version>/{contract.MODEL_METADATA_NAME}"
            )
        if self.assign_public_ip not in ("ENABLED", "DISABLED"):
            problems.append(f"assign_public_ip {self.assign_public_ip!r} not ENABLED|DISABLED")
        if not 128 <= self.memory <= 10240:
            problems.append(f"memory {self.memory} not in 128-10240 MB")
        if not 1 <= self.max_rows <= 100_000:
            problems.append(f"max_rows {self.max_rows} not in 1-100000")
        if self.job_ttl_days < 1:
            problems.append(f"job_ttl_days {self.job_ttl_days} < 1")
        if not 1 <= self.presigned_url_seconds <= contract.MAX_PRESIGNED_URL_SECONDS:
            problems.append(
                f"presigned_url_seconds {self.presigned_url_seconds} not in "
                f"1-{contract.MAX_PRESIGNED_URL_SECONDS}"
            )
        return problems

    @property
    def metadata_uri(self) -> pulumi.Output[str]:
        return pulumi.Output.concat("s3://", self.bucket_name, "/", self.model_metadata_key)

    @property
    def metadata_object_arn(self) -> pulumi.Output[str]:
        return pulumi.Output.concat(self.bucket_arn, "/", self.model_metadata_key)

    def ecs_environment(self) -> dict[str, pulumi.Input[str]]:
        """Where and how the scoring task runs (``runtime.compute.EcsTarget`` reads these)."""
        return {
            contract.ENV_ECS_CLUSTER: self.cluster_arn,
            contract.ENV_ECS_TASK_DEFINITION: self.task_definition_arn,
            contract.ENV_ECS_SUBNETS: pulumi.Output.from_input(self.subnet_ids).apply(",".join),
            contract.ENV_ECS_SECURITY_GROUPS: pulumi.Output.from_input(
                self.security_group_ids
            ).apply(",".join),
            contract.ENV_ECS_ASSIGN_PUBLIC_IP: self.assign_public_ip,
        }

    def job_api_environment(self, architecture: str) -> dict[str, pulumi.Input[str]]:
        """The job API's environment shared by every ECS architecture (``architecture`` is
        what the function serves: it selects the launcher)."""
        return {
            contract.ENV_ARCHITECTURE: architecture,
            contract.ENV_JOB_TABLE: self.table_name,
            contract.ENV_DATA_BUCKET: self.bucket_name,
            contract.ENV_MODEL_URI: self.model_uri,
            contract.ENV_MODEL_SHA256: self.model_sha256,
            contract.ENV_MODEL_METADATA_URI: self.metadata_uri,
            contract.ENV_MAX_ROWS: str(self.max_rows),
            **contract.input_environment(self.allow_missing, self.unknown_category),
            contract.ENV_JOB_TTL_DAYS: str(self.job_ttl_days),
            contract.ENV_PRESIGNED_URL_SECONDS: str(self.presigned_url_seconds),
            **canary_assignment_environment(self.canary),
            **self.ecs_environment(),
            **POWERTOOLS_ENVIRONMENT,
        }


POWERTOOLS_ENVIRONMENT: Final[Mapping[str, str]] = {
    contract.ENV_POWERTOOLS_SERVICE_NAME: contract.SERVICE_NAME,
    contract.ENV_POWERTOOLS_METRICS_NAMESPACE: contract.METRICS_NAMESPACE,
}


@dataclass(frozen=True)
class LambdaEcsPredictorArgs(JobApiArgs):
    sync_wait_seconds: int = MAX_SYNC_WAIT_SECONDS

    def _problems(self) -> list[str]:
        problems = super()._problems()
        if not 0 <= self.sync_wait_seconds <= MAX_SYNC_WAIT_SECONDS:
            problems.append(
                f"sync_wait_seconds {self.sync_wait_seconds} not in 0-{MAX_SYNC_WAIT_SECONDS} "
                f"(API Gateway's {API_GATEWAY_TIMEOUT_SECONDS} s integration timeout)"
            )
        return problems

    @property
    def timeout(self) -> int:
        return job_api_timeout(self.sync_wait_seconds)

    def environment(self) -> dict[str, pulumi.Input[str]]:
        return {
            **self.job_api_environment(contract.ARCH_LAMBDA_ECS),
            contract.ENV_SYNC_WAIT_SECONDS: str(self.sync_wait_seconds),
        }


class LambdaEcsPredictor(pulumi.ComponentResource):
    """The lambda-ecs job API function: its log group, least-privilege role and routes."""

    function_name: pulumi.Output[str]
    function_arn: pulumi.Output[str]
    log_group_name: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    routes: Mapping[str, LambdaTarget]

    def __init__(
        self, name: str, args: LambdaEcsPredictorArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlserve:index:LambdaEcsPredictor", name, None, opts)

        arns = {
            "table_arn": args.table_arn,
            "bucket_arn": args.bucket_arn,
            "metadata_object_arn": args.metadata_object_arn,
            "task_definition_arn": args.task_definition_arn,
            "cluster_arn": args.cluster_arn,
            "task_role_arn": args.task_role_arn,
            "execution_role_arn": args.execution_role_arn,
        }
        parts = lambda_function(
            self,
            name,
            description="mlserve lambda-ecs job API: /health, /predict, /jobs (ECS Fargate)",
            role_description=(
                "mlserve lambda-ecs job API: job records, inputs/ and results/, run and watch "
                "the scoring task"
            ),
            handler=contract.HANDLER_JOBS,
            policy=lambda log_group_arn: pulumi.Output.all(
                log_group_arn=log_group_arn, **arns
            ).apply(lambda resolved: json.dumps(policies.job_api_ecs_policy(**resolved))),
            code=args.code,
            layer_arn=args.layer_arn,
            runtime=args.runtime,
            architecture=args.lambda_architecture,
            memory=args.memory,
            timeout=args.timeout,
            environment=args.environment(),
            log_retention_days=args.log_retention_days,
        )
        function, role, log_group = parts.function, parts.role, parts.log_group

        target = LambdaTarget(key=name, function_name=function.name, function_arn=function.arn)
        self.routes = dict.fromkeys(JOB_API_OPERATIONS, target)
        self.function_name = function.name
        self.function_arn = function.arn
        self.log_group_name = log_group.name
        self.role_arn = role.arn
        self.register_outputs(
            {
                "function_name": self.function_name,
                "function_arn": self.function_arn,
                "log_group_name": self.log_group_name,
                "role_arn": self.role_arn,
            }
        )
