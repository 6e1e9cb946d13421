"""AWS Batch compute of `stepfunctions-batch`: where the sharded scoring jobs run.

:class:`BatchScoring` builds, on the network and the scoring image shared with the ECS
architectures:

* the **compute environments**: managed, Fargate, ``batchMaxVcpus`` each, in the Network's
  subnets and security groups, with Batch's service-linked role (no ``service_role``). With
  ``batchComputeType: FARGATE`` one FARGATE environment; with ``FARGATE_SPOT`` a FARGATE_SPOT
  environment first and an on-demand FARGATE one as the fallback;
* two **job queues**, ``high`` (priority 100) and ``low`` (priority 1), both ENABLED, each
  mapping the compute environments in that order;
* the **job definition**: Fargate platform, ``taskCpu``/``taskMemory`` as VCPU/MEMORY resource
  requirements, the scoring image with command ``["--mode", "batch"]``, a job role allowed
  exactly what batch mode does (``policies.batch_job_policy``), an execution role (pull the
  image, write the job's logs), ``jobAttempts`` attempts with ``evaluateOnExit`` rules (retry on
  host/Spot/infrastructure failures, a final EXIT on every exit code), and a timeout.

:class:`JobConfigTrigger` is the first step of the pipeline: the trigger Lambda
(``runtime.handlers.trigger``), the S3 notification of the store's bucket on ``jobs/*.json`` and
the permission letting S3 (this bucket, this account) invoke it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pulumi
import pulumi_aws as aws

from components import policies
from components.ecs import (
    CPU_ARCHITECTURES,
    LOG_STREAM_PREFIX,
    POWERTOOLS_ENVIRONMENT,
    task_execution_role,
)
from components.functions import FunctionParts, lambda_function
from components.settings import (
    BATCH_COMPUTE_TYPES,
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

BATCH_COMMAND: Final = ("--mode", "batch")
QUEUE_PRIORITIES: Final[Mapping[str, int]] = {"high": 100, "low": 1}
MAX_JOB_ATTEMPTS: Final = 10  # AWS Batch allows 1-10 attempts
MAX_EVALUATE_ON_EXIT: Final = 5  # ... and at most 5 evaluateOnExit conditions
MIN_ATTEMPT_TIMEOUT_SECONDS: Final = 60  # Batch's minimum attemptDurationSeconds
DEFAULT_ATTEMPT_TIMEOUT_SECONDS: Final = 6 * 3600
MAX_VCPUS_LIMIT: Final = 10_000
# Batch's onStatusReason/onReason patterns: letters, digits, periods, colons and white space,
# optionally ending in one "*" (a prefix match). A leading "*" is not allowed.
# onExitCode: digits, optionally ending in "*".
#
# The order matters (the first match wins) and the rule count is capped at 5, so the
# application rule and the final catch-all are one: {"onExitCode": "*", "action": "EXIT"}
# matches every exit code the container returned (an application error is not retried), and
# is last. A failure without an exit code that no rule matches (the container never ran) is
# retried, which is Batch's behaviour when no rule matches.
EVALUATE_ON_EXIT: Final[tuple[aws.batch.JobDefinitionRetryStrategyEvaluateOnExitArgsDict, ...]] = (
    # The EC2 host under the task went away.
    {"action": "RETRY", "on_status_reason": "Host EC2*"},
    # Fargate Spot reclaimed the capacity ("Your Spot Task was interrupted.").
    {"action": "RETRY", "on_status_reason": "Your Spot Task was interrupted*"},
    # The image could not be pulled (throttling, a network blip).
    {"action": "RETRY", "on_reason": "CannotPullContainerError*"},
    # The task's ENI, secrets or log stream could not be set up.
    {"action": "RETRY", "on_reason": "ResourceInitializationError*"},
    # Every application exit code: exit, last.
    {"action": "EXIT", "on_exit_code": "*"},
)


def vcpus(task_cpu: int) -> str:
    """ECS CPU units -> Batch's VCPU resource requirement (``1024`` -> ``"1"``, ``256`` ->
    ``"0.25"``)."""
    if task_cpu not in FARGATE_MEMORY:
        raise ValueError(f"task_cpu {task_cpu} is not a Fargate CPU size")
    value = task_cpu / 1024
    return str(int(value)) if value.is_integer() else str(value)


def compute_types(batch_compute_type: str) -> tuple[str, ...]:
    """The compute environments' types in queue order: FARGATE alone, or FARGATE_SPOT first
    with on-demand FARGATE as the fallback."""
    if batch_compute_type not in BATCH_COMPUTE_TYPES:
        raise ValueError(
            f"batch_compute_type {batch_compute_type!r} not in {', '.join(BATCH_COMPUTE_TYPES)}"
        )
    return ("FARGATE_SPOT", "FARGATE") if batch_compute_type == "FARGATE_SPOT" else ("FARGATE",)


def container_properties(
    *,
    image_uri: str,
    task_cpu: int,
    task_memory: int,
    cpu_architecture: str,
    job_role_arn: str,
    execution_role_arn: str,
    environment: Mapping[str, str],
    assign_public_ip: str,
    log_group_name: str,
    region: str,
) -> dict[str, Any]:
    """The job definition's containerProperties (pure: a JSON document)."""
    return {
        "image": image_uri,
        "command": list(BATCH_COMMAND),
        "jobRoleArn": job_role_arn,
        "executionRoleArn": execution_role_arn,
        "resourceRequirements": [
            {"type": "VCPU", "value": vcpus(task_cpu)},
            {"type": "MEMORY", "value": str(task_memory)},
        ],
        "environment": [{"name": k, "value": environment[k]} for k in sorted(environment)],
        "networkConfiguration": {"assignPublicIp": assign_public_ip},
        "fargatePlatformConfiguration": {"platformVersion": "LATEST"},
        "runtimePlatform": {"operatingSystemFamily": "LINUX", "cpuArchitecture": cpu_architecture},
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group_name,
                "awslogs-region": region,
                "awslogs-stream-prefix": LOG_STREAM_PREFIX,
            },
        },
    }


@dataclass(frozen=True)
class BatchScoringArgs:
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
    subnet_ids: pulumi.Input[Sequence[str]] = field(compare=False)
    security_group_ids: pulumi.Input[Sequence[str]] = field(compare=False)
    assign_public_ip: str = "ENABLED"
    architecture: str = "arm64"
    task_cpu: int = 1024
    task_memory: int = 2048
    compute_type: str = "FARGATE"
    max_vcpus: int = 16
    job_attempts: int = 3
    attempt_timeout_seconds: int = DEFAULT_ATTEMPT_TIMEOUT_SECONDS
    # Key prefixes of the bucket the jobs may read (inputs) and write (outputs): the job role
    # is scoped to them, and the trigger/job API reject configs outside them.
    input_prefixes: tuple[str, ...] = (contract.INPUTS_PREFIX,)
    output_prefixes: tuple[str, ...] = (contract.RESULTS_PREFIX,)
    allow_missing: bool = False
    unknown_category: str = "error"  # mlserve:unknownCategory
    # MODEL_CATEGORIES: categories recorded in metadata.json for a model that stores none
    model_categories: str = ""
    log_retention_days: int = 14
    # The canary (issue 17): the job may load it too, for the jobs whose record names it.
    canary: ServedCanary | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        problems = self._size_problems() + self._batch_problems()
        if problems:
            raise ValueError("BatchScoringArgs: " + "; ".join(problems))

    def _size_problems(self) -> list[str]:
        problems: list[str] = []
        if self.architecture not in LAMBDA_ARCHITECTURES:
            problems.append(f"architecture {self.architecture!r} not in {LAMBDA_ARCHITECTURES}")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            problems.append(
                f"log_retention_days {self.log_retention_days} is not a CloudWatch value"
            )
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
        if self.assign_public_ip not in ("ENABLED", "DISABLED"):
            problems.append(f"assign_public_ip {self.assign_public_ip!r} not ENABLED|DISABLED")
        return problems

    def _batch_problems(self) -> list[str]:
        problems: list[str] = []
        if self.compute_type not in BATCH_COMPUTE_TYPES:
            problems.append(
                f"compute_type {self.compute_type!r} not in {', '.join(BATCH_COMPUTE_TYPES)}"
            )
        if not 1 <= self.max_vcpus <= MAX_VCPUS_LIMIT:
            problems.append(f"max_vcpus {self.max_vcpus} not in 1-{MAX_VCPUS_LIMIT}")
        elif self.task_cpu in FARGATE_MEMORY and self.max_vcpus < self.task_cpu / 1024:
            problems.append(
                f"max_vcpus {self.max_vcpus} is below one job's {vcpus(self.task_cpu)} vCPU"
            )
        if not 1 <= self.job_attempts <= MAX_JOB_ATTEMPTS:
            problems.append(f"job_attempts {self.job_attempts} not in 1-{MAX_JOB_ATTEMPTS}")
        if self.attempt_timeout_seconds < MIN_ATTEMPT_TIMEOUT_SECONDS:
            problems.append(
                f"attempt_timeout_seconds {self.attempt_timeout_seconds} < "
                f"{MIN_ATTEMPT_TIMEOUT_SECONDS} (Batch's minimum)"
            )
        for what, prefixes in (("input", self.input_prefixes), ("output", self.output_prefixes)):
            try:
                policies.batch_job_policy(
                    table_arn="arn:check",
                    bucket_arn="arn:check",
                    model_object_arn="arn:check",
                    **{f"{what}_prefixes": prefixes},  # type: ignore[arg-type]
                )
            except ValueError as error:
                problems.append(str(error))
        return problems

    @property
    def cpu_architecture(self) -> str:
        return CPU_ARCHITECTURES[self.architecture]

    def environment(self) -> dict[str, pulumi.Input[str]]:
        """The container's environment (JOB_ID comes per job, as a container override; Batch
        adds AWS_BATCH_JOB_ARRAY_INDEX / _ATTEMPT / _ID)."""
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


class BatchScoring(pulumi.ComponentResource):
    """Compute environments, the high/low job queues, the job definition and its two roles."""

    compute_environment_arns: list[pulumi.Output[str]]
    job_queue_arns: dict[str, pulumi.Output[str]]  # "high" / "low" -> queue ARN
    job_definition_arn: pulumi.Output[str]  # with its revision
    job_definition_name: pulumi.Output[str]
    job_role_arn: pulumi.Output[str]
    execution_role_arn: pulumi.Output[str]
    log_group_name: pulumi.Output[str]
    log_group_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: BatchScoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlserve:index:BatchScoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        # --- compute environments ----------------------------------------------------------------
        # Replacement plan (the pulumi-aws pitfall "CLIENT_EXCEPTION: Cannot delete, found existing
        # JobQueue relationship"): a job queue keeps a compute environment from being deleted
        # while it refers to it, so a compute environment must never be deleted before its
        # replacement exists and the queues have been moved to it. Hence:
        # * every environment is auto-named (no `name`): the replacement can exist beside the
        #   old one, and Pulumi's default create-before-delete order applies;
        # * delete_before_replace=False, stated explicitly so nobody "fixes" a failed replace
        #   by flipping it (that is exactly the order that fails);
        # * the queues refer to the environments' ARNs, so on a replacement Pulumi creates the new
        #   environment, updates the queues in place (compute_environment_orders is not a
        #   replacing property), and only then disables and deletes the old environment;
        # * each environment's logical name is its type, so switching batchComputeType adds or
        #   removes the Spot environment instead of replacing the on-demand one.
        environments: list[aws.batch.ComputeEnvironment] = []
        for compute_type in compute_types(args.compute_type):
            environments.append(
                aws.batch.ComputeEnvironment(
                    f"{name}-{compute_type.lower().replace('_', '-')}",
                    type="MANAGED",
                    state="ENABLED",
                    # No service_role: Batch uses its service-linked role.
                    compute_resources={
                        "type": compute_type,
                        "max_vcpus": args.max_vcpus,
                        "subnets": args.subnet_ids,
                        "security_group_ids": args.security_group_ids,
                    },
                    opts=pulumi.ResourceOptions(parent=self, delete_before_replace=False),
                )
            )

        # --- job queues -------------------------------------------------------------------------
        queues: dict[str, aws.batch.JobQueue] = {}
        for queue_name, priority in QUEUE_PRIORITIES.items():
            queues[queue_name] = aws.batch.JobQueue(
                f"{name}-{queue_name}",
                state="ENABLED",
                priority=priority,
                compute_environment_orders=[
                    {"order": order, "compute_environment": environment.arn}
                    for order, environment in enumerate(environments, start=1)
                ],
                opts=child,
            )

        # --- roles --------------------------------------------------------------------------------
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", retention_in_days=args.log_retention_days, opts=child
        )
        assume = json.dumps(policies.ecs_tasks_assume_role_policy())
        job_role = aws.iam.Role(
            f"{name}-job-role",
            description=(
                "mlserve Batch scoring job: its job record, the model, its input and output "
                "prefixes"
            ),
            assume_role_policy=assume,
            opts=child,
        )
        input_prefixes, output_prefixes = args.input_prefixes, args.output_prefixes
        job_policy = aws.iam.RolePolicy(
            f"{name}-job-policy",
            role=job_role.id,
            policy=pulumi.Output.all(
                table_arn=args.table_arn,
                bucket_arn=args.bucket_arn,
                model_object_arn=args.model_object_arn,
                canary_object_arn=args.canary.object_arn if args.canary is not None else None,
            ).apply(
                lambda r: json.dumps(
                    policies.batch_job_policy(
                        **r, input_prefixes=input_prefixes, output_prefixes=output_prefixes
                    )
                )
            ),
            opts=child,
        )
        execution_role, execution_policy = task_execution_role(
            self,
            name,
            description="ECS agent for the mlserve Batch scoring job: pull the image, write logs",
            log_group_arn=log_group.arn,
            repository_arn=args.repository_arn,
        )

        # --- job definition -----------------------------------------------------------------------
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        environment = args.environment()
        env_names = list(environment)
        task_cpu, task_memory = args.task_cpu, args.task_memory
        cpu_architecture, assign_public_ip = args.cpu_architecture, args.assign_public_ip

        def render(values: list[Any]) -> str:
            image_uri, job_role_arn, execution_role_arn, group_name, resolved_region, *env = values
            return json.dumps(
                container_properties(
                    image_uri=image_uri,
                    task_cpu=task_cpu,
                    task_memory=task_memory,
                    cpu_architecture=cpu_architecture,
                    job_role_arn=job_role_arn,
                    execution_role_arn=execution_role_arn,
                    environment=dict(zip(env_names, env, strict=True)),
                    assign_public_ip=assign_public_ip,
                    log_group_name=group_name,
                    region=resolved_region,
                )
            )

        job_definition = aws.batch.JobDefinition(
            f"{name}-job",
            type="container",
            platform_capabilities=["FARGATE"],
            container_properties=pulumi.Output.all(
                args.image_uri,
                job_role.arn,
                execution_role.arn,
                log_group.name,
                region,
                *environment.values(),
            ).apply(render),
            retry_strategy={
                "attempts": args.job_attempts,
                "evaluate_on_exits": list(EVALUATE_ON_EXIT),
            },
            timeout={"attempt_duration_seconds": args.attempt_timeout_seconds},
            propagate_tags=True,
            # No job can start before its roles may do their work.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[job_policy, execution_policy]),
        )

        self.compute_environment_arns = [environment.arn for environment in environments]
        self.job_queue_arns = {queue_name: queue.arn for queue_name, queue in queues.items()}
        self.job_definition_arn = job_definition.arn
        self.job_definition_name = job_definition.name
        self.job_role_arn = job_role.arn
        self.execution_role_arn = execution_role.arn
        self.log_group_name = log_group.name
        self.log_group_arn = log_group.arn
        self.register_outputs(
            {
                "compute_environment_arns": self.compute_environment_arns,
                "job_queue_arns": self.job_queue_arns,
                "job_definition_arn": self.job_definition_arn,
                "job_definition_name": self.job_definition_name,
                "job_role_arn": self.job_role_arn,
                "execution_role_arn": self.execution_role_arn,
                "log_group_name": self.log_group_name,
            }
        )


# --- the trigger ----------------------------------------------------------------------------------
TRIGGER_MEMORY: Final = 256
TRIGGER_TIMEOUT_SECONDS: Final = 30
JOB_CONFIG_SUFFIX: Final = ".json"


@dataclass(frozen=True)
class JobConfigTriggerArgs:
    code: pulumi.Archive = field(compare=False)
    layer_arn: pulumi.Input[str] = field(compare=False)
    runtime: str  # the Lambda runtime the code and layer were built for (LambdaPackage)
    table_name: pulumi.Input[str] = field(compare=False)
    table_arn: pulumi.Input[str] = field(compare=False)
    bucket_name: pulumi.Input[str] = field(compare=False)
    bucket_arn: pulumi.Input[str] = field(compare=False)
    # The model's s3:// URI: the trigger records the model version (parsed from the key).
    model_uri: pulumi.Input[str] = field(compare=False)
    state_machine_arn: pulumi.Input[str] = field(compare=False)
    lambda_architecture: str = "arm64"
    job_ttl_days: int = contract.DEFAULT_JOB_TTL_DAYS
    log_retention_days: int = 14
    # The canary (issue 17): the trigger decides which version scores a config's job.
    canary: ServedCanary | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not isinstance(self.code, pulumi.Archive):
            problems.append(f"code must be a pulumi.Archive, got {type(self.code).__name__}")
        if self.lambda_architecture not in LAMBDA_ARCHITECTURES:
            problems.append(f"lambda_architecture {self.lambda_architecture!r} unknown")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            problems.append(
                f"log_retention_days {self.log_retention_days} is not a CloudWatch value"
            )
        if self.job_ttl_days < 1:
            problems.append(f"job_ttl_days {self.job_ttl_days} < 1")
        if problems:
            raise ValueError("JobConfigTriggerArgs: " + "; ".join(problems))

    def environment(self) -> dict[str, pulumi.Input[str]]:
        return {
            contract.ENV_ARCHITECTURE: contract.ARCH_STEPFUNCTIONS_BATCH,
            contract.ENV_JOB_TABLE: self.table_name,
            contract.ENV_DATA_BUCKET: self.bucket_name,
            contract.ENV_MODEL_URI: self.model_uri,
            contract.ENV_STATE_MACHINE_ARN: self.state_machine_arn,
            contract.ENV_JOB_TTL_DAYS: str(self.job_ttl_days),
            **canary_assignment_environment(self.canary),
            **POWERTOOLS_ENVIRONMENT,
        }


class JobConfigTrigger(pulumi.ComponentResource):
    """The trigger Lambda, S3's permission to invoke it and the bucket's notification on
    ``jobs/*.json``."""

    function_name: pulumi.Output[str]
    function_arn: pulumi.Output[str]
    log_group_name: pulumi.Output[str]
    role_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: JobConfigTriggerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlserve:index:JobConfigTrigger", name, None, opts)
        arns = {
            "table_arn": args.table_arn,
            "bucket_arn": args.bucket_arn,
            "state_machine_arn": args.state_machine_arn,
        }
        parts: FunctionParts = lambda_function(
            self,
            name,
            description="mlserve stepfunctions-batch trigger: a jobs/*.json config starts a job",
            role_description=(
                "mlserve job config trigger: read/reject configs under jobs/, record the job, "
                "start the workflow"
            ),
            handler=contract.HANDLER_TRIGGER,
            policy=lambda log_group_arn: pulumi.Output.all(
                log_group_arn=log_group_arn, **arns
            ).apply(lambda resolved: json.dumps(policies.job_config_trigger_policy(**resolved))),
            code=args.code,
            layer_arn=args.layer_arn,
            runtime=args.runtime,
            architecture=args.lambda_architecture,
            memory=TRIGGER_MEMORY,
            timeout=TRIGGER_TIMEOUT_SECONDS,
            environment=args.environment(),
            log_retention_days=args.log_retention_days,
        )
        account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).account_id
        permission = aws.lambda_.Permission(
            f"{name}-s3-permission",
            action="lambda:InvokeFunction",
            function=parts.function.name,
            principal="s3.amazonaws.com",
            source_arn=args.bucket_arn,
            source_account=account,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # One notification configuration per bucket (S3 keeps a single document): this stack
        # owns it, and only the stepfunctions-batch architecture creates it.
        aws.s3.BucketNotification(
            f"{name}-notification",
            bucket=args.bucket_name,
            lambda_functions=[
                {
                    "lambda_function_arn": parts.function.arn,
                    "events": ["s3:ObjectCreated:*"],
                    "filter_prefix": contract.JOBS_PREFIX,
                    "filter_suffix": JOB_CONFIG_SUFFIX,
                }
            ],
            # S3 checks at creation that it may invoke the function.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[permission]),
        )
        self.function_name = parts.function.name
        self.function_arn = parts.function.arn
        self.log_group_name = parts.log_group.name
        self.role_arn = parts.role.arn
        self.register_outputs(
            {
                "function_name": self.function_name,
                "function_arn": self.function_arn,
                "log_group_name": self.log_group_name,
                "role_arn": self.role_arn,
            }
        )
