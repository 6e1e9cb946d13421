"""Architecture `stepfunctions-ecs`: a Step Functions (Standard) workflow runs and watches the
scoring task, so no Lambda waits on ECS.

:class:`StepFunctionsEcsPredictor` builds, on top of the ECS compute shared with lambda-ecs
(:class:`components.ecs.EcsScoring`, the network, the scoring image; never copied):

* with ``polling: lambda`` (the default, the seed's design) the **RunECS** and
  **CheckJobStatus** Lambdas (``runtime.handlers.steps``), each with its own log group and a
  role allowed exactly what its code does;
* the state machine: Standard, every event logged to its own CloudWatch log group (with the
  stack's retention), X-Ray tracing on. Its definition is rendered by
  ``components.workflows`` with every ARN and name written into it (nothing is passed at run
  time but the job id); the execution as a whole has a timeout;
* the state machine's role: invoke the two Lambdas, update the job table; with ``polling:
  native`` (``ecs:runTask.sync``) instead run/stop/describe the scoring task, pass its two roles
  and manage the EventBridge rule Step Functions uses for .sync;
* the job API (``runtime.handlers.jobs`` with ``ARCHITECTURE=stepfunctions-ecs``): ``POST
  /jobs`` and ``POST /predict`` record the job and start an execution named after the job id
  (answering 202), ``GET /jobs/{id}`` reads it, ``DELETE`` stops the execution and the task.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import pulumi
import pulumi_aws as aws

from components import policies, workflows
from components.api import LambdaTarget
from components.batch import JobConfigTrigger, JobConfigTriggerArgs
from components.ecs import JOB_API_OPERATIONS, POWERTOOLS_ENVIRONMENT, JobApiArgs, job_api_timeout
from components.functions import FunctionParts, lambda_function
from components.settings import LAMBDA_ARCHITECTURES, LOG_RETENTION_DAYS, POLLING
from components.storage import ServedCanary, canary_assignment_environment
from runtime import contract

POLL_INTERVAL_MAX_SECONDS: Final = 3600
# The RunECS and CheckJobStatus functions make one or two AWS calls each (RunTask or
# DescribeTasks, and a DynamoDB item): small and short.
STEP_FUNCTION_MEMORY: Final = 256
STEP_FUNCTION_TIMEOUT_SECONDS: Final = 30
# TimeoutSeconds of the workflow's Lambda and DynamoDB Task states: above the step functions'
# own timeout (plus the Invoke call and a cold start), so a slow function fails as Lambda's
# error, retried by the state's Retry, rather than as States.Timeout.
STEP_TIMEOUT_SECONDS: Final = workflows.DEFAULT_STEP_TIMEOUT_SECONDS
if STEP_TIMEOUT_SECONDS < 2 * STEP_FUNCTION_TIMEOUT_SECONDS:
    raise AssertionError("step timeout must leave room above the step functions' timeout")
# The execution timeout (the definition's top-level TimeoutSeconds): a job that has not ended by
# then is failed by Step Functions (and reconciled to FAILED by the job API).
DEFAULT_EXECUTION_TIMEOUT_SECONDS: Final = 6 * 3600
# Standard workflows allow at most one year per execution.
MAX_EXECUTION_TIMEOUT_SECONDS: Final = 365 * 24 * 3600
# A Standard execution's history holds at most 25,000 events, and each Wait -> CheckJobStatus
# -> Choice round of `polling: lambda` adds about ten. With this many rounds at most, an
# execution ends (times out) before it can hit the history limit.
MAX_POLL_ROUNDS: Final = 2000


def execution_timeout(
    *,
    native: bool,
    poll_interval_seconds: int,
    execution_timeout_seconds: int = DEFAULT_EXECUTION_TIMEOUT_SECONDS,
) -> int:
    """The definition's top-level TimeoutSeconds (pure; the local emulator uses it too):
    ``execution_timeout_seconds``, lowered with ``polling: lambda`` to ``MAX_POLL_ROUNDS`` poll
    intervals so an execution times out before its history can reach 25,000 events."""
    if native:
        return execution_timeout_seconds
    return min(execution_timeout_seconds, MAX_POLL_ROUNDS * poll_interval_seconds)


@dataclass(frozen=True)
class StepFunctionsEcsPredictorArgs(JobApiArgs):
    """The job API's inputs (:class:`components.ecs.JobApiArgs`) plus the workflow's."""

    polling: str = "lambda"
    poll_interval_seconds: int = 10
    execution_timeout_seconds: int = DEFAULT_EXECUTION_TIMEOUT_SECONDS

    def _problems(self) -> list[str]:
        problems = super()._problems()
        if self.polling not in POLLING:
            problems.append(f"polling {self.polling!r} not in {POLLING}")
        if not 1 <= self.poll_interval_seconds <= POLL_INTERVAL_MAX_SECONDS:
            problems.append(
                f"poll_interval_seconds {self.poll_interval_seconds} not in "
                f"1-{POLL_INTERVAL_MAX_SECONDS}"
            )
        if not 60 <= self.execution_timeout_seconds <= MAX_EXECUTION_TIMEOUT_SECONDS:
            problems.append(
                f"execution_timeout_seconds {self.execution_timeout_seconds} not in "
                f"60-{MAX_EXECUTION_TIMEOUT_SECONDS} (a Standard execution lasts at most a year)"
            )
        return problems

    @property
    def native(self) -> bool:
        return self.polling == "native"

    @property
    def execution_timeout(self) -> int:
        """The definition's top-level TimeoutSeconds: ``execution_timeout_seconds``, lowered
        with ``polling: lambda`` to ``MAX_POLL_ROUNDS`` poll intervals (history limit)."""
        return execution_timeout(
            native=self.native,
            poll_interval_seconds=self.poll_interval_seconds,
            execution_timeout_seconds=self.execution_timeout_seconds,
        )

    @property
    def job_api_timeout(self) -> int:
        # The job API never waits for the task: the shortest lambda-ecs timeout (no sync wait).
        return job_api_timeout(0)

    def step_environment(self) -> dict[str, pulumi.Input[str]]:
        """RunECS and CheckJobStatus: the job table, where the task runs, Powertools."""
        return {
            contract.ENV_JOB_TABLE: self.table_name,
            **self.ecs_environment(),
            **POWERTOOLS_ENVIRONMENT,
        }

    def environment(self, state_machine_arn: pulumi.Input[str]) -> dict[str, pulumi.Input[str]]:
        """The job API's: as lambda-ecs's without SYNC_WAIT_SECONDS, plus the state machine."""
        return {
            **self.job_api_environment(contract.ARCH_STEPFUNCTIONS_ECS),
            contract.ENV_STATE_MACHINE_ARN: state_machine_arn,
        }


def render_definition(
    *,
    native: bool,
    table_name: str,
    run_ecs_arn: str | None,
    check_job_status_arn: str | None,
    cluster_arn: str,
    task_definition_arn: str,
    subnets: list[str],
    security_groups: list[str],
    assign_public_ip: str,
    poll_interval_seconds: int,
    execution_timeout_seconds: int,
) -> dict[str, Any]:
    """The ASL document of either polling mode (``components.workflows``), every ARN and name
    resolved (pure: called inside ``Output.apply``)."""
    if native:
        # The RunTask state's own timeout defaults to the execution timeout.
        return workflows.ecs_native_definition(
            table_name=table_name,
            cluster_arn=cluster_arn,
            task_definition_arn=task_definition_arn,
            subnets=subnets,
            security_groups=security_groups,
            assign_public_ip=assign_public_ip,
            container_name=contract.SCORING_CONTAINER_NAME,
            execution_timeout_seconds=execution_timeout_seconds,
            step_timeout_seconds=STEP_TIMEOUT_SECONDS,
        )
    if run_ecs_arn is None or check_job_status_arn is None:
        raise ValueError("polling: lambda needs the RunECS and CheckJobStatus function ARNs")
    return workflows.ecs_lambda_polling_definition(
        table_name=table_name,
        run_ecs_function_arn=run_ecs_arn,
        check_job_status_function_arn=check_job_status_arn,
        poll_interval_seconds=poll_interval_seconds,
        execution_timeout_seconds=execution_timeout_seconds,
        step_timeout_seconds=STEP_TIMEOUT_SECONDS,
    )


# Where vended log groups go (Step Functions logging: "Logging using CloudWatch Logs").
VENDED_LOGS_PREFIX: Final = "/aws/vendedlogs/states/"


@dataclass(frozen=True)
class StateMachineParts:
    state_machine: aws.sfn.StateMachine
    role: aws.iam.Role
    log_group: aws.cloudwatch.LogGroup


def state_machine_parts(
    parent: pulumi.Resource,
    name: str,
    *,
    role_description: str,
    policy: pulumi.Input[str],
    definition: pulumi.Input[str],
    log_retention_days: int,
) -> StateMachineParts:
    """A Standard state machine the mlserve way: its own log group (ALL events with their data),
    X-Ray tracing, and a role with exactly ``policy``; children ``{name}-state-machine-*``."""
    child = pulumi.ResourceOptions(parent=parent)
    log_group = aws.cloudwatch.LogGroup(
        f"{name}-state-machine-logs",
        # AWS advises /aws/vendedlogs/ for vended log groups: for any other name, Step Functions
        # adds the group to the account's CloudWatch Logs resource policy, whose 5,120
        # characters run out after a few dozen state machines. Auto-named after the prefix.
        name_prefix=f"{VENDED_LOGS_PREFIX}{name}-",
        retention_in_days=log_retention_days,
        opts=child,
    )
    role = aws.iam.Role(
        f"{name}-state-machine-role",
        description=role_description,
        assume_role_policy=json.dumps(policies.states_assume_role_policy()),
        opts=child,
    )
    role_policy = aws.iam.RolePolicy(
        f"{name}-state-machine-policy", role=role.id, policy=policy, opts=child
    )
    state_machine = aws.sfn.StateMachine(
        f"{name}-state-machine",
        type="STANDARD",
        role_arn=role.arn,
        definition=definition,
        logging_configuration={
            "level": "ALL",
            "include_execution_data": True,
            "log_destination": log_group.arn.apply(lambda arn: f"{arn}:*"),
        },
        tracing_configuration={"enabled": True},
        # Step Functions checks at creation that the role may do what the definition does.
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[role_policy]),
    )
    return StateMachineParts(state_machine=state_machine, role=role, log_group=log_group)


class StepFunctionsEcsPredictor(pulumi.ComponentResource):
    """The stepfunctions-ecs workflow, its step Lambdas and its job API."""

    state_machine_arn: pulumi.Output[str]
    state_machine_name: pulumi.Output[str]
    state_machine_log_group_name: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    function_name: pulumi.Output[str]
    function_arn: pulumi.Output[str]
    log_group_name: pulumi.Output[str]
    # every function of the workflow by its name prefix: the job API and the step functions
    functions: Mapping[str, FunctionParts]
    routes: Mapping[str, LambdaTarget]

    def __init__(
        self,
        name: str,
        args: StepFunctionsEcsPredictorArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlserve:index:StepFunctionsEcsPredictor", name, None, opts)

        # --- the step Lambdas (polling: lambda only; native needs none) --------------------------
        steps: dict[str, FunctionParts] = {}
        if not args.native:
            steps = self._step_functions(name, args)
        run_ecs_arn: pulumi.Input[str | None] = steps["run-ecs"].function.arn if steps else None
        check_arn: pulumi.Input[str | None] = (
            steps["check-job-status"].function.arn if steps else None
        )

        # --- the state machine --------------------------------------------------------------------
        native = args.native
        policy = pulumi.Output.all(
            table_arn=args.table_arn,
            run_ecs_arn=run_ecs_arn,
            check_arn=check_arn,
            task_definition_arn=args.task_definition_arn,
            cluster_arn=args.cluster_arn,
            task_role_arn=args.task_role_arn,
            execution_role_arn=args.execution_role_arn,
        ).apply(
            lambda r: json.dumps(
                policies.state_machine_policy(
                    table_arn=r["table_arn"],
                    function_arns=[
                        arn for arn in (r["run_ecs_arn"], r["check_arn"]) if arn is not None
                    ],
                    native=native,
                    task_definition_arn=r["task_definition_arn"] if native else None,
                    cluster_arn=r["cluster_arn"] if native else None,
                    task_role_arn=r["task_role_arn"] if native else None,
                    execution_role_arn=r["execution_role_arn"] if native else None,
                )
            )
        )

        poll_interval = args.poll_interval_seconds
        execution_timeout = args.execution_timeout
        assign_public_ip = args.assign_public_ip
        definition = pulumi.Output.all(
            table_name=args.table_name,
            run_ecs_arn=run_ecs_arn,
            check_job_status_arn=check_arn,
            cluster_arn=args.cluster_arn,
            task_definition_arn=args.task_definition_arn,
            subnets=args.subnet_ids,
            security_groups=args.security_group_ids,
        ).apply(
            lambda r: json.dumps(
                render_definition(
                    native=native,
                    table_name=r["table_name"],
                    run_ecs_arn=r["run_ecs_arn"],
                    check_job_status_arn=r["check_job_status_arn"],
                    cluster_arn=r["cluster_arn"],
                    task_definition_arn=r["task_definition_arn"],
                    subnets=list(r["subnets"]),
                    security_groups=list(r["security_groups"]),
                    assign_public_ip=assign_public_ip,
                    poll_interval_seconds=poll_interval,
                    execution_timeout_seconds=execution_timeout,
                ),
                indent=2,
            )
        )
        machine = state_machine_parts(
            self,
            name,
            role_description=(
                "mlserve stepfunctions-ecs workflow: its step Lambdas or the scoring task, the "
                "job records, log delivery and X-Ray"
            ),
            policy=policy,
            definition=definition,
            log_retention_days=args.log_retention_days,
        )
        state_machine = machine.state_machine

        # --- the job API ------------------------------------------------------------------------
        api_arns = {
            "table_arn": args.table_arn,
            "bucket_arn": args.bucket_arn,
            "metadata_object_arn": args.metadata_object_arn,
            "state_machine_arn": state_machine.arn,
            "cluster_arn": args.cluster_arn,
        }
        job_api = lambda_function(
            self,
            f"{name}-api",
            description="mlserve stepfunctions-ecs job API: /health, /predict, /jobs (workflow)",
            role_description=(
                "mlserve stepfunctions-ecs job API: job records, inputs/ and results/, start and "
                "stop the workflow, stop the scoring task"
            ),
            handler=contract.HANDLER_JOBS,
            policy=lambda log_group_arn: pulumi.Output.all(
                log_group_arn=log_group_arn, **api_arns
            ).apply(lambda resolved: json.dumps(policies.job_api_sfn_policy(**resolved))),
            code=args.code,
            layer_arn=args.layer_arn,
            runtime=args.runtime,
            architecture=args.lambda_architecture,
            memory=args.memory,
            timeout=args.job_api_timeout,
            environment=args.environment(state_machine.arn),
            log_retention_days=args.log_retention_days,
        )

        _publish(self, name, machine, job_api, steps, extra_outputs={})

    def _step_functions(
        self, name: str, args: StepFunctionsEcsPredictorArgs
    ) -> dict[str, FunctionParts]:
        """RunECS and CheckJobStatus, each with exactly its grants."""
        environment = args.step_environment()
        run_arns = {
            "table_arn": args.table_arn,
            "task_definition_arn": args.task_definition_arn,
            "cluster_arn": args.cluster_arn,
            "task_role_arn": args.task_role_arn,
            "execution_role_arn": args.execution_role_arn,
        }
        check_arns = {"table_arn": args.table_arn, "cluster_arn": args.cluster_arn}
        common: dict[str, Any] = {
            "code": args.code,
            "layer_arn": args.layer_arn,
            "runtime": args.runtime,
            "architecture": args.lambda_architecture,
            "memory": STEP_FUNCTION_MEMORY,
            "timeout": STEP_FUNCTION_TIMEOUT_SECONDS,
            "environment": environment,
            "log_retention_days": args.log_retention_days,
        }
        run_ecs = lambda_function(
            self,
            f"{name}-run-ecs",
            description="mlserve stepfunctions-ecs RunECS step: start the scoring task",
            role_description="mlserve RunECS step: run the scoring task, record it on the job",
            handler=contract.HANDLER_RUN_ECS,
            policy=lambda log_group_arn: pulumi.Output.all(
                log_group_arn=log_group_arn, **run_arns
            ).apply(lambda resolved: json.dumps(policies.run_ecs_policy(**resolved))),
            **common,
        )
        check = lambda_function(
            self,
            f"{name}-check-job-status",
            description="mlserve stepfunctions-ecs CheckJobStatus step: the scoring task's state",
            role_description="mlserve CheckJobStatus step: describe the task, read the job",
            handler=contract.HANDLER_CHECK_JOB_STATUS,
            policy=lambda log_group_arn: pulumi.Output.all(
                log_group_arn=log_group_arn, **check_arns
            ).apply(lambda resolved: json.dumps(policies.check_job_status_policy(**resolved))),
            **common,
        )
        return {"run-ecs": run_ecs, "check-job-status": check}


# --- stepfunctions-batch --------------------------------------------------------------------------


@dataclass(frozen=True)
class StepFunctionsBatchPredictorArgs:
    """The stepfunctions-batch workflow's inputs: the job API's, the trigger's and where the
    Batch jobs go (:class:`components.batch.BatchScoring`'s queues and job definition)."""

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
    job_queue_high_arn: pulumi.Input[str] = field(compare=False)
    job_queue_low_arn: pulumi.Input[str] = field(compare=False)
    job_definition_arn: pulumi.Input[str] = field(compare=False)
    lambda_architecture: str = "arm64"
    memory: int = 1024
    max_rows: int = contract.DEFAULT_MAX_ROWS
    allow_missing: bool = False
    unknown_category: str = "error"  # mlserve:unknownCategory
    job_ttl_days: int = contract.DEFAULT_JOB_TTL_DAYS
    presigned_url_seconds: int = contract.DEFAULT_PRESIGNED_URL_SECONDS
    log_retention_days: int = 14
    polling: str = "lambda"
    poll_interval_seconds: int = 30
    execution_timeout_seconds: int = DEFAULT_EXECUTION_TIMEOUT_SECONDS
    # The canary (issue 17): the job API and the trigger decide which version scores a job.
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
        if not self.model_metadata_key.startswith(contract.MODEL_PREFIX) or not (
            self.model_metadata_key.endswith(f"/{contract.MODEL_METADATA_NAME}")
        ):
            problems.append(f"model_metadata_key {self.model_metadata_key!r} is not a metadata key")
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
        if self.polling not in POLLING:
            problems.append(f"polling {self.polling!r} not in {POLLING}")
        if not 1 <= self.poll_interval_seconds <= POLL_INTERVAL_MAX_SECONDS:
            problems.append(
                f"poll_interval_seconds {self.poll_interval_seconds} not in "
                f"1-{POLL_INTERVAL_MAX_SECONDS}"
            )
        if not 60 <= self.execution_timeout_seconds <= MAX_EXECUTION_TIMEOUT_SECONDS:
            problems.append(
                f"execution_timeout_seconds {self.execution_timeout_seconds} not in "
                f"60-{MAX_EXECUTION_TIMEOUT_SECONDS} (a Standard execution lasts at most a year)"
            )
        if problems:
            raise ValueError("StepFunctionsBatchPredictorArgs: " + "; ".join(problems))

    @property
    def native(self) -> bool:
        return self.polling == "native"

    @property
    def execution_timeout(self) -> int:
        return execution_timeout(
            native=self.native,
            poll_interval_seconds=self.poll_interval_seconds,
            execution_timeout_seconds=self.execution_timeout_seconds,
        )

    @property
    def metadata_uri(self) -> pulumi.Output[str]:
        return pulumi.Output.concat("s3://", self.bucket_name, "/", self.model_metadata_key)

    @property
    def metadata_object_arn(self) -> pulumi.Output[str]:
        return pulumi.Output.concat(self.bucket_arn, "/", self.model_metadata_key)

    def batch_environment(self) -> dict[str, pulumi.Input[str]]:
        """Where the Batch job goes (``runtime.compute.BatchTarget`` reads these)."""
        return {
            contract.ENV_BATCH_JOB_QUEUE_HIGH: self.job_queue_high_arn,
            contract.ENV_BATCH_JOB_QUEUE_LOW: self.job_queue_low_arn,
            contract.ENV_BATCH_JOB_DEFINITION: self.job_definition_arn,
        }

    def step_environment(self) -> dict[str, pulumi.Input[str]]:
        """SubmitBatchJob and CheckBatchStatus: the job table, the Batch target, Powertools."""
        return {
            contract.ENV_JOB_TABLE: self.table_name,
            **self.batch_environment(),
            **POWERTOOLS_ENVIRONMENT,
        }

    def environment(self, state_machine_arn: pulumi.Input[str]) -> dict[str, pulumi.Input[str]]:
        """The job API's (``ARCHITECTURE=stepfunctions-batch`` selects its launcher)."""
        return {
            contract.ENV_ARCHITECTURE: contract.ARCH_STEPFUNCTIONS_BATCH,
            contract.ENV_JOB_TABLE: self.table_name,
            contract.ENV_DATA_BUCKET: self.bucket_name,
            contract.ENV_MODEL_URI: self.model_uri,
            contract.ENV_MODEL_SHA256: self.model_sha256,
            contract.ENV_MODEL_METADATA_URI: self.metadata_uri,
            contract.ENV_MAX_ROWS: str(self.max_rows),
            **contract.input_environment(self.allow_missing, self.unknown_category),
            contract.ENV_JOB_TTL_DAYS: str(self.job_ttl_days),
            contract.ENV_PRESIGNED_URL_SECONDS: str(self.presigned_url_seconds),
            contract.ENV_STATE_MACHINE_ARN: state_machine_arn,
            **canary_assignment_environment(self.canary),
            **POWERTOOLS_ENVIRONMENT,
        }


def render_batch_definition(
    *,
    native: bool,
    table_name: str,
    submit_batch_job_arn: str | None,
    check_batch_status_arn: str | None,
    job_queue_high_arn: str,
    job_queue_low_arn: str,
    job_definition_arn: str,
    poll_interval_seconds: int,
    execution_timeout_seconds: int,
) -> dict[str, Any]:
    """The ASL document of either polling mode (``components.workflows``), every ARN and name
    resolved (pure: called inside ``Output.apply``)."""
    if native:
        return workflows.batch_native_definition(
            table_name=table_name,
            job_queue_high_arn=job_queue_high_arn,
            job_queue_low_arn=job_queue_low_arn,
            job_definition_arn=job_definition_arn,
            execution_timeout_seconds=execution_timeout_seconds,
            step_timeout_seconds=STEP_TIMEOUT_SECONDS,
        )
    if submit_batch_job_arn is None or check_batch_status_arn is None:
        raise ValueError("polling: lambda needs the SubmitBatchJob and CheckBatchStatus ARNs")
    return workflows.batch_lambda_polling_definition(
        table_name=table_name,
        submit_batch_job_function_arn=submit_batch_job_arn,
        check_batch_status_function_arn=check_batch_status_arn,
        poll_interval_seconds=poll_interval_seconds,
        execution_timeout_seconds=execution_timeout_seconds,
        step_timeout_seconds=STEP_TIMEOUT_SECONDS,
    )


class StepFunctionsBatchPredictor(pulumi.ComponentResource):
    """The stepfunctions-batch workflow, its step Lambdas, the S3 trigger and the job API."""

    state_machine_arn: pulumi.Output[str]
    state_machine_name: pulumi.Output[str]
    state_machine_log_group_name: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    function_name: pulumi.Output[str]
    function_arn: pulumi.Output[str]
    log_group_name: pulumi.Output[str]
    trigger: JobConfigTrigger
    # every function of the workflow by its name prefix: the job API and the step functions
    functions: Mapping[str, FunctionParts]
    routes: Mapping[str, LambdaTarget]

    def __init__(
        self,
        name: str,
        args: StepFunctionsBatchPredictorArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlserve:index:StepFunctionsBatchPredictor", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        # --- the step Lambdas (polling: lambda only) ---------------------------------------------
        steps: dict[str, FunctionParts] = {}
        if not args.native:
            steps = self._step_functions(name, args)
        submit_arn: pulumi.Input[str | None] = (
            steps["submit-batch-job"].function.arn if steps else None
        )
        check_arn: pulumi.Input[str | None] = (
            steps["check-batch-status"].function.arn if steps else None
        )

        # --- the state machine --------------------------------------------------------------------
        native = args.native
        policy = pulumi.Output.all(
            table_arn=args.table_arn,
            submit_arn=submit_arn,
            check_arn=check_arn,
            high=args.job_queue_high_arn,
            low=args.job_queue_low_arn,
            job_definition_arn=args.job_definition_arn,
        ).apply(
            lambda r: json.dumps(
                policies.batch_state_machine_policy(
                    table_arn=r["table_arn"],
                    function_arns=[
                        arn for arn in (r["submit_arn"], r["check_arn"]) if arn is not None
                    ],
                    native=native,
                    job_queue_arns=[r["high"], r["low"]] if native else (),
                    job_definition_arn=r["job_definition_arn"] if native else None,
                )
            )
        )
        poll_interval = args.poll_interval_seconds
        timeout = args.execution_timeout
        definition = pulumi.Output.all(
            table_name=args.table_name,
            submit_arn=submit_arn,
            check_arn=check_arn,
            high=args.job_queue_high_arn,
            low=args.job_queue_low_arn,
            job_definition_arn=args.job_definition_arn,
        ).apply(
            lambda r: json.dumps(
                render_batch_definition(
                    native=native,
                    table_name=r["table_name"],
                    submit_batch_job_arn=r["submit_arn"],
                    check_batch_status_arn=r["check_arn"],
                    job_queue_high_arn=r["high"],
                    job_queue_low_arn=r["low"],
                    job_definition_arn=r["job_definition_arn"],
                    poll_interval_seconds=poll_interval,
                    execution_timeout_seconds=timeout,
                ),
                indent=2,
            )
        )
        machine = state_machine_parts(
            self,
            name,
            role_description=(
                "mlserve stepfunctions-batch workflow: its step Lambdas or the Batch job, the "
                "job records, log delivery and X-Ray"
            ),
            policy=policy,
            definition=definition,
            log_retention_days=args.log_retention_days,
        )
        state_machine = machine.state_machine

        # --- the S3 trigger ---------------------------------------------------------------------
        self.trigger = JobConfigTrigger(
            f"{name}-trigger",
            JobConfigTriggerArgs(
                code=args.code,
                layer_arn=args.layer_arn,
                runtime=args.runtime,
                table_name=args.table_name,
                table_arn=args.table_arn,
                bucket_name=args.bucket_name,
                bucket_arn=args.bucket_arn,
                model_uri=args.model_uri,
                state_machine_arn=state_machine.arn,
                lambda_architecture=args.lambda_architecture,
                job_ttl_days=args.job_ttl_days,
                log_retention_days=args.log_retention_days,
                canary=args.canary,
            ),
            opts=child,
        )

        # --- the job API ------------------------------------------------------------------------
        api_arns = {
            "table_arn": args.table_arn,
            "bucket_arn": args.bucket_arn,
            "metadata_object_arn": args.metadata_object_arn,
            "state_machine_arn": state_machine.arn,
            "job_queue_arn": args.job_queue_low_arn,
        }
        job_api = lambda_function(
            self,
            f"{name}-api",
            description="mlserve stepfunctions-batch job API: /health, /predict, /jobs (Batch)",
            role_description=(
                "mlserve stepfunctions-batch job API: job records, inputs/ and results/, start "
                "and stop the workflow, terminate the Batch job"
            ),
            handler=contract.HANDLER_JOBS,
            policy=lambda log_group_arn: pulumi.Output.all(
                log_group_arn=log_group_arn, **api_arns
            ).apply(lambda resolved: json.dumps(policies.job_api_batch_policy(**resolved))),
            code=args.code,
            layer_arn=args.layer_arn,
            runtime=args.runtime,
            architecture=args.lambda_architecture,
            memory=args.memory,
            timeout=job_api_timeout(0),
            environment=args.environment(state_machine.arn),
            log_retention_days=args.log_retention_days,
        )

        _publish(
            self,
            name,
            machine,
            job_api,
            steps,
            extra_outputs={"trigger_function_name": self.trigger.function_name},
        )

    def _step_functions(
        self, name: str, args: StepFunctionsBatchPredictorArgs
    ) -> dict[str, FunctionParts]:
        """SubmitBatchJob and CheckBatchStatus, each with exactly its grants."""
        submit_arns = {
            "table_arn": args.table_arn,
            "high": args.job_queue_high_arn,
            "low": args.job_queue_low_arn,
            "job_definition_arn": args.job_definition_arn,
        }
        common: dict[str, Any] = {
            "code": args.code,
            "layer_arn": args.layer_arn,
            "runtime": args.runtime,
            "architecture": args.lambda_architecture,
            "memory": STEP_FUNCTION_MEMORY,
            "timeout": STEP_FUNCTION_TIMEOUT_SECONDS,
            "environment": args.step_environment(),
            "log_retention_days": args.log_retention_days,
        }
        submit = lambda_function(
            self,
            f"{name}-submit-batch-job",
            description="mlserve stepfunctions-batch SubmitBatchJob step: submit the Batch job",
            role_description="mlserve SubmitBatchJob step: submit the Batch job, record its id",
            handler=contract.HANDLER_SUBMIT_BATCH_JOB,
            policy=lambda log_group_arn: pulumi.Output.all(
                log_group_arn=log_group_arn, **submit_arns
            ).apply(
                lambda r: json.dumps(
                    policies.submit_batch_job_policy(
                        table_arn=r["table_arn"],
                        job_queue_arns=[r["high"], r["low"]],
                        job_definition_arn=r["job_definition_arn"],
                        log_group_arn=r["log_group_arn"],
                    )
                )
            ),
            **common,
        )
        check = lambda_function(
            self,
            f"{name}-check-batch-status",
            description="mlserve stepfunctions-batch CheckBatchStatus step: the Batch job's state",
            role_description="mlserve CheckBatchStatus step: describe the Batch job, its progress",
            handler=contract.HANDLER_CHECK_BATCH_STATUS,
            policy=lambda log_group_arn: pulumi.Output.all(
                log_group_arn=log_group_arn, table_arn=args.table_arn
            ).apply(lambda resolved: json.dumps(policies.check_batch_status_policy(**resolved))),
            **common,
        )
        return {"submit-batch-job": submit, "check-batch-status": check}


def _publish(
    component: StepFunctionsEcsPredictor | StepFunctionsBatchPredictor,
    name: str,
    machine: StateMachineParts,
    job_api: FunctionParts,
    steps: dict[str, FunctionParts],
    *,
    extra_outputs: Mapping[str, Any],
) -> None:
    """What both Step Functions predictors expose: routes to the job API, the state machine's
    and functions' names and ARNs as attributes, and the same as component outputs."""
    component.functions = {
        f"{name}-api": job_api,
        **{f"{name}-{step}": parts for step, parts in steps.items()},
    }
    component.routes = dict.fromkeys(
        JOB_API_OPERATIONS,
        LambdaTarget(
            key=name, function_name=job_api.function.name, function_arn=job_api.function.arn
        ),
    )
    component.state_machine_arn = machine.state_machine.arn
    component.state_machine_name = machine.state_machine.name
    component.state_machine_log_group_name = machine.log_group.name
    component.role_arn = machine.role.arn
    component.function_name = job_api.function.name
    component.function_arn = job_api.function.arn
    component.log_group_name = job_api.log_group.name
    outputs: dict[str, Any] = {
        "state_machine_arn": component.state_machine_arn,
        "state_machine_name": component.state_machine_name,
        "state_machine_log_group_name": component.state_machine_log_group_name,
        "role_arn": component.role_arn,
        "function_name": component.function_name,
        "function_arn": component.function_arn,
        "log_group_name": component.log_group_name,
        **extra_outputs,
    }
    for step, parts in steps.items():
        key = step.replace("-", "_")
        outputs[f"{key}_function_arn"] = parts.function.arn
        outputs[f"{key}_log_group_name"] = parts.log_group.name
    component.register_outputs(outputs)
