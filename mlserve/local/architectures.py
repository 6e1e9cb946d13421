"""The registry of emulated architectures.

Each entry sets up, in the embedded AWS, what the architecture's component creates on top of the
shared stores, and returns its route table: operationId (runtime/openapi.yaml) -> the function
API Gateway integrates that operation with. Later architectures add an entry here; the gateway
and the emulator need no change. With several architectures, the first one (in the configured
order) serving an operation gets it, as in the Pulumi program (__main__.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlserve.local.aws import ACCOUNT_ID, REGION, MotoServer
from mlserve.local.ecs import EcsStack, provision_ecs
from mlserve.local.functions import LocalFunction, Routes, RuntimeSettings
from mlserve.local.stepfunctions import LocalStepFunctions
from mlserve.local.stores import SharedStores, physical_name
from runtime import contract

KNOWN_ARCHITECTURES = (
    contract.ARCH_LAMBDA,
    contract.ARCH_LAMBDA_ECS,
    contract.ARCH_STEPFUNCTIONS_ECS,
    contract.ARCH_STEPFUNCTIONS_BATCH,
)


# stepfunctions-ecs: how the workflow watches the task (the mlserve:polling setting)
POLLING_LAMBDA = "lambda"  # Wait + the CheckJobStatus Lambda, in a loop (the default)
POLLING_NATIVE = "native"  # ecs:runTask.sync: Step Functions waits for the task itself
POLLING_MODES = (POLLING_LAMBDA, POLLING_NATIVE)
# Seconds between two CheckJobStatus calls, locally: a task here takes about 1.5 s, and a long
# Wait would only slow the demo and the tests down (the stack setting pollIntervalSeconds).
LOCAL_POLL_INTERVAL_SECONDS = 1


@dataclass(frozen=True)
class ArchitectureOptions:
    """Emulator options some architectures read (stack settings that are not runtime ones)."""

    polling: str = POLLING_LAMBDA
    poll_interval_seconds: int = LOCAL_POLL_INTERVAL_SECONDS

    def __post_init__(self) -> None:
        if self.polling not in POLLING_MODES:
            raise ValueError(f"polling {self.polling!r} is not one of {', '.join(POLLING_MODES)}")
        if self.poll_interval_seconds < 1:
            raise ValueError(
                f"poll_interval_seconds must be at least 1, got {self.poll_interval_seconds}"
            )


SettingsListener = Callable[[RuntimeSettings], None]


@dataclass(frozen=True)
class StackContext:
    """What an architecture's setup gets: the embedded AWS, the shared stores, a scratch dir.
    (ECS tasks started in the embedded AWS run locally: mlserve.local.fargate; Step Functions
    executions run in moto's engine with Lambda tasks served in-process:
    mlserve.local.stepfunctions.)

    Besides its routes, a setup may register ``functions`` that no route serves (invoked by
    other services), ``outputs`` (stack outputs such as a state machine ARN) and
    ``on_settings`` callbacks: what ``pulumi up`` changes beyond the functions' environment
    when a setting changes (e.g. a definition that names the task definition revision)."""

    aws: MotoServer
    stores: SharedStores
    scratch: Path
    stepfunctions: LocalStepFunctions | None = None
    options: ArchitectureOptions = field(default_factory=ArchitectureOptions)
    settings: RuntimeSettings = field(default_factory=RuntimeSettings)  # at deployment
    functions: list[LocalFunction] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    on_settings: list[SettingsListener] = field(default_factory=list)


ArchitectureSetup = Callable[[StackContext], Routes]


def function_base_env() -> dict[str, str]:
    """Variables the Pulumi program sets on every function."""
    return {
        contract.ENV_POWERTOOLS_SERVICE_NAME: contract.SERVICE_NAME,
        contract.ENV_POWERTOOLS_METRICS_NAMESPACE: contract.METRICS_NAMESPACE,
    }


def _realtime(ctx: StackContext) -> Routes:
    """Architecture ``lambda``: API Gateway -> the predictor (GET /health, POST /predict)."""
    from runtime.handlers import predict

    stores = ctx.stores

    def environment(settings: RuntimeSettings) -> Mapping[str, str]:
        return {
            **function_base_env(),
            contract.ENV_MODEL_URI: stores.model_uri,
            contract.ENV_MODEL_SHA256: stores.model.sha256,
            contract.ENV_MAX_ROWS: str(settings.max_rows),
            contract.ENV_ALLOW_MISSING: "true" if settings.allow_missing else "false",
        }

    predictor = LocalFunction(
        name=physical_name("predictor"),
        handler=predict.handler,
        configure=predict.configure,
        environment=environment,
        memory_mb=1024,
        timeout_seconds=30,
    )
    return {"health": predictor, "predict": predictor}


# The operations of the job API (components/ecs.py JOB_API_OPERATIONS).
JOB_API_OPERATIONS = ("health", "predict", "submit_job", "get_job", "cancel_job")
# API Gateway's integration timeout bounds the job API's (components/ecs.py job_api_timeout).
JOB_API_TIMEOUT_SECONDS = 29


def job_api_environment(
    stores: SharedStores,
    ecs: EcsStack,
    settings: RuntimeSettings,
    architecture: str = contract.ARCH_LAMBDA_ECS,
) -> dict[str, str]:
    """The job API function's variables, as components/ecs.py sets them."""
    return {
        **function_base_env(),
        contract.ENV_ARCHITECTURE: architecture,
        contract.ENV_JOB_TABLE: stores.table,
        contract.ENV_DATA_BUCKET: stores.bucket,
        contract.ENV_MODEL_URI: stores.model_uri,
        contract.ENV_MODEL_SHA256: stores.model.sha256,
        contract.ENV_MODEL_METADATA_URI: f"s3://{stores.bucket}/{stores.metadata_key}",
        contract.ENV_MAX_ROWS: str(settings.max_rows),
        contract.ENV_ALLOW_MISSING: "true" if settings.allow_missing else "false",
        contract.ENV_SYNC_WAIT_SECONDS: str(settings.sync_wait_seconds),
        contract.ENV_JOB_TTL_DAYS: str(contract.DEFAULT_JOB_TTL_DAYS),
        **ecs.job_api_environment(settings),
    }


def _lambda_ecs(ctx: StackContext) -> Routes:
    """Architecture ``lambda-ecs``: API Gateway -> the job API function, which runs one Fargate
    task of the scoring image per job (here a local process of ``python -m runtime.scoring``)."""
    from runtime.handlers import jobs

    stores = ctx.stores
    ecs = provision_ecs(ctx.aws, stores)
    job_api = LocalFunction(
        name=physical_name("job-api"),
        handler=jobs.handler,
        configure=jobs.configure,
        environment=lambda settings: job_api_environment(stores, ecs, settings),
        memory_mb=512,
        timeout_seconds=JOB_API_TIMEOUT_SECONDS,
    )
    return dict.fromkeys(JOB_API_OPERATIONS, job_api)


# --- stepfunctions-ecs ---------------------------------------------------------------------------

# What moto's Lambda stores as each function's code: a valid, empty zip archive. Invoke never
# runs it (mlserve.local.stepfunctions serves the registered functions in-process).
_EMPTY_ZIP = b"PK\x05\x06" + b"\x00" * 18


def step_function_environment(ecs: EcsStack, settings: RuntimeSettings) -> dict[str, str]:
    """The variables of RunECS and CheckJobStatus: the job table and where tasks run."""
    return {
        **function_base_env(),
        contract.ENV_JOB_TABLE: ecs.stores.table,
        **ecs.job_api_environment(settings),
    }


def _role(aws: MotoServer, name: str, service: str) -> str:
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
        ],
    }
    role = aws.client("iam").create_role(
        RoleName=physical_name(name), AssumeRolePolicyDocument=json.dumps(trust)
    )
    return str(role["Role"]["Arn"])


def _deploy_function(aws: MotoServer, function: LocalFunction, handler: str, role: str) -> str:
    """Create the function in moto's Lambda (so its ARN exists, as the definition names it);
    return its ARN."""
    response = aws.client("lambda").create_function(
        FunctionName=function.name,
        Runtime=contract.LAMBDA_RUNTIME,
        Role=role,
        Handler=handler,
        Code={"ZipFile": _EMPTY_ZIP},
        MemorySize=function.memory_mb,
        Timeout=function.timeout_seconds,
    )
    return str(response["FunctionArn"])


def workflow_definition(
    ecs: EcsStack,
    settings: RuntimeSettings,
    options: ArchitectureOptions,
    *,
    run_ecs_arn: str | None,
    check_job_status_arn: str | None,
) -> dict[str, Any]:
    """The very definition components/workflows.py builds, rendered by the function the
    Pulumi component renders it with (components/stepfunctions.render_definition), given the
    emulator's ARNs and the component's default execution timeout."""
    from components import stepfunctions as component

    native = options.polling == POLLING_NATIVE
    timeout = component.DEFAULT_EXECUTION_TIMEOUT_SECONDS
    if not native:  # StepFunctionsEcsPredictorArgs.execution_timeout
        timeout = min(timeout, component.MAX_POLL_ROUNDS * options.poll_interval_seconds)
    definition: dict[str, Any] = component.render_definition(
        native=native,
        table_name=ecs.stores.table,
        run_ecs_arn=run_ecs_arn,
        check_job_status_arn=check_job_status_arn,
        cluster_arn=ecs.cluster_arn,
        task_definition_arn=ecs.task_definition(settings),
        subnets=list(ecs.subnets),
        security_groups=list(ecs.security_groups),
        assign_public_ip=ecs.assign_public_ip,
        poll_interval_seconds=options.poll_interval_seconds,
        execution_timeout_seconds=timeout,
    )
    return definition


def _stepfunctions_ecs(ctx: StackContext) -> Routes:
    """Architecture ``stepfunctions-ecs``: API Gateway -> the job API function, which starts
    one execution of the state machine per job (named after the job id). The execution runs the
    Fargate task (here a local process of ``python -m runtime.scoring``) through the RunECS
    Lambda and polls it with the CheckJobStatus Lambda (``polling: lambda``), or runs it with
    ``ecs:runTask.sync`` (``polling: native``); both record the outcome in the job table."""
    from runtime.handlers import jobs, steps

    if ctx.stepfunctions is None:
        raise RuntimeError("stepfunctions-ecs needs the local Step Functions engine")
    stores, options = ctx.stores, ctx.options
    ecs = provision_ecs(ctx.aws, stores)
    arns: dict[str, str | None] = {"run_ecs": None, "check_job_status": None}
    if options.polling == POLLING_LAMBDA:  # native: Step Functions runs the task itself
        from components import stepfunctions as component

        function_role = _role(ctx.aws, "steps-role", "lambda.amazonaws.com")
        for key, handler_name, handler in (
            ("run_ecs", contract.HANDLER_RUN_ECS, steps.run_ecs),
            ("check_job_status", contract.HANDLER_CHECK_JOB_STATUS, steps.check_job_status),
        ):
            function = LocalFunction(
                name=physical_name(key.replace("_", "-")),
                handler=handler,
                # one module, one context: both functions get the same variables
                configure=steps.configure,
                environment=lambda settings: step_function_environment(ecs, settings),
                memory_mb=component.STEP_FUNCTION_MEMORY,
                timeout_seconds=component.STEP_FUNCTION_TIMEOUT_SECONDS,
            )
            arns[key] = _deploy_function(ctx.aws, function, handler_name, function_role)
            ctx.stepfunctions.register(function)
            ctx.functions.append(function)

    def definition(settings: RuntimeSettings) -> str:
        return json.dumps(
            workflow_definition(
                ecs,
                settings,
                options,
                run_ecs_arn=arns["run_ecs"],
                check_job_status_arn=arns["check_job_status"],
            )
        )

    sfn = ctx.aws.client("stepfunctions")
    name = physical_name("jobs")
    machine_arn = str(
        sfn.create_state_machine(
            name=name,
            definition=definition(ctx.settings),
            roleArn=_role(ctx.aws, "workflow-role", "states.amazonaws.com"),
            type="STANDARD",
        )["stateMachineArn"]
    )
    ctx.outputs["stateMachineArn"] = machine_arn
    ctx.outputs["stateMachineName"] = name
    ctx.outputs["polling"] = options.polling
    for key, output in (
        ("run_ecs", "runEcsFunctionArn"),
        ("check_job_status", "checkJobStatusFunctionArn"),
    ):
        arn = arns[key]
        if arn is not None:
            ctx.outputs[output] = arn
    ctx.outputs["executionArnPrefix"] = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:execution:{name}:"

    def update_definition(settings: RuntimeSettings) -> None:
        # the native definition names the task definition revision: pulumi up updates it
        sfn.update_state_machine(stateMachineArn=machine_arn, definition=definition(settings))

    ctx.on_settings.append(update_definition)

    def environment(settings: RuntimeSettings) -> dict[str, str]:
        env = job_api_environment(stores, ecs, settings, contract.ARCH_STEPFUNCTIONS_ECS)
        env.pop(contract.ENV_SYNC_WAIT_SECONDS, None)
        env[contract.ENV_STATE_MACHINE_ARN] = machine_arn
        return env

    job_api = LocalFunction(
        name=physical_name("sfn-job-api"),
        handler=jobs.handler,
        configure=jobs.configure,
        environment=environment,
        memory_mb=512,
        timeout_seconds=JOB_API_TIMEOUT_SECONDS,
    )
    return dict.fromkeys(JOB_API_OPERATIONS, job_api)


ARCHITECTURES: dict[str, ArchitectureSetup] = {
    contract.ARCH_LAMBDA: _realtime,
    contract.ARCH_LAMBDA_ECS: _lambda_ecs,
    contract.ARCH_STEPFUNCTIONS_ECS: _stepfunctions_ecs,
}


def available() -> list[str]:
    return sorted(ARCHITECTURES)


def parse_architectures(value: str) -> tuple[str, ...]:
    """``"lambda"`` or ``"lambda,stepfunctions-batch"`` -> names, each one that is emulated."""
    names = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    if not names:
        raise ValueError(f"no architecture given (available: {', '.join(available())})")
    for name in names:
        if name in ARCHITECTURES:
            continue
        if name in KNOWN_ARCHITECTURES:
            raise ValueError(
                f"architecture {name!r} is not emulated yet (available: {', '.join(available())})"
            )
        raise ValueError(
            f"unknown architecture {name!r} (known: {', '.join(KNOWN_ARCHITECTURES)}; "
            f"emulated: {', '.join(available())})"
        )
    return names
