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
from mlserve.local.batch import BatchStack, provision_batch
from mlserve.local.ecs import EcsStack, provision_ecs
from mlserve.local.functions import LocalFunction, Routes, RuntimeSettings
from mlserve.local.notifications import LocalS3Notifications
from mlserve.local.stepfunctions import LocalStepFunctions
from mlserve.local.stores import SharedStores, input_environment, physical_name
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
    engine: str = contract.ENGINE_XGBOOST  # mlserve:engine (the lambda architecture's predictor)

    def __post_init__(self) -> None:
        if self.engine not in contract.ENGINES:
            raise ValueError(f"engine {self.engine!r} is not one of {', '.join(contract.ENGINES)}")
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
    notifications: LocalS3Notifications | None = None
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


def upload_onnx_model(ctx: StackContext) -> tuple[str, str]:
    """mlserve:engine onnx: convert and verify the model (components/engine.py, as the Pulumi
    program does; EngineConversionError stops the start) and upload ``model.onnx`` next to the
    model with its sha256 in the object metadata. Returns (MODEL_URI, MODEL_SHA256)."""
    from components.engine import convert_to_onnx

    stores, model = ctx.stores, ctx.stores.model
    conversion = convert_to_onnx(
        model.model_path,
        ctx.scratch / contract.ONNX_OBJECT_NAME,
        name=model.name,
        version=model.version,
    )
    key = contract.onnx_model_key(model.name, model.version)
    ctx.aws.client("s3").put_object(
        Bucket=stores.bucket,
        Key=key,
        Body=conversion.out_path.read_bytes(),
        ContentType="application/octet-stream",
        Metadata={"sha256": conversion.sha256, "source-sha256": model.sha256},
    )
    return f"s3://{stores.bucket}/{key}", conversion.sha256


def _realtime(ctx: StackContext) -> Routes:
    """Architecture ``lambda``: API Gateway -> the predictor (GET /health, POST /predict)."""
    from runtime.handlers import predict

    stores = ctx.stores
    engine = ctx.options.engine
    model_uri, model_sha256 = stores.model_uri, stores.model.sha256
    if engine == contract.ENGINE_ONNX:
        # as __main__.py does: convert + verify at deployment, upload model.onnx next to the model
        model_uri, model_sha256 = upload_onnx_model(ctx)
        ctx.outputs["onnxModelUri"] = model_uri
    ctx.outputs["engine"] = engine

    def environment(settings: RuntimeSettings) -> Mapping[str, str]:
        return {
            **function_base_env(),
            contract.ENV_MODEL_ENGINE: engine,
            contract.ENV_MODEL_URI: model_uri,
            contract.ENV_MODEL_SHA256: model_sha256,
            contract.ENV_MAX_ROWS: str(settings.max_rows),
            **input_environment(settings, stores),
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
JOB_API_OPERATIONS = contract.JOB_API_OPERATIONS
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
        **input_environment(settings, stores, loader=False),
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


# --- stepfunctions-batch -------------------------------------------------------------------------


def _call_with(function: Callable[..., Any], pool: Mapping[str, Any]) -> Any:
    """Call ``function`` with the keyword arguments of ``pool`` it takes (the workflow builders
    of components/ are called by keyword; the pool holds every name they may use)."""
    import inspect

    parameters = inspect.signature(function).parameters
    missing = [
        name
        for name, parameter in parameters.items()
        if name not in pool
        and parameter.default is inspect.Parameter.empty
        and parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    if missing:
        raise RuntimeError(f"{function.__qualname__}: the emulator has no value for {missing}")
    return function(**{name: pool[name] for name in parameters if name in pool})


def batch_workflow_definition(
    stores: SharedStores,
    batch: BatchStack,
    options: ArchitectureOptions,
    *,
    submit_batch_job_arn: str | None,
    check_batch_status_arn: str | None,
) -> dict[str, Any]:
    """The definition components/workflows.py builds for stepfunctions-batch (rendered by
    components/stepfunctions.py when it has a renderer for it), given the emulator's ARNs."""
    from components import stepfunctions as component
    from components import workflows

    native = options.polling == POLLING_NATIVE
    timeout = component.DEFAULT_EXECUTION_TIMEOUT_SECONDS
    if not native:
        timeout = min(timeout, component.MAX_POLL_ROUNDS * options.poll_interval_seconds)
    pool: dict[str, Any] = {
        "native": native,
        "table_name": stores.table,
        "submit_batch_job_arn": submit_batch_job_arn,
        "submit_batch_job_function_arn": submit_batch_job_arn,
        "check_batch_status_arn": check_batch_status_arn,
        "check_batch_status_function_arn": check_batch_status_arn,
        "job_queue_high_arn": batch.queue_high_arn,
        "job_queue_low_arn": batch.queue_low_arn,
        "queue_high_arn": batch.queue_high_arn,
        "queue_low_arn": batch.queue_low_arn,
        "job_queue_arns": {"high": batch.queue_high_arn, "low": batch.queue_low_arn},
        "job_queues": {"high": batch.queue_high_arn, "low": batch.queue_low_arn},
        "job_definition_arn": batch.job_definition_arn,
        "poll_interval_seconds": options.poll_interval_seconds,
        "execution_timeout_seconds": timeout,
        "step_timeout_seconds": getattr(component, "STEP_TIMEOUT_SECONDS", None),
    }
    renderer = getattr(component, "render_batch_definition", None)
    if renderer is not None:
        definition: dict[str, Any] = _call_with(renderer, pool)
        return definition
    builder = getattr(
        workflows, "batch_native_definition" if native else "batch_lambda_polling_definition", None
    )
    if builder is None:
        raise RuntimeError(
            "components/workflows.py has no stepfunctions-batch definition yet "
            "(batch_lambda_polling_definition / batch_native_definition)"
        )
    built: dict[str, Any] = _call_with(builder, pool)
    return built


def batch_container_environment(stores: SharedStores, settings: RuntimeSettings) -> dict[str, str]:
    """The job definition's container environment (components/batch.py environment())."""
    return {
        contract.ENV_JOB_TABLE: stores.table,
        contract.ENV_DATA_BUCKET: stores.bucket,
        contract.ENV_MODEL_URI: stores.model_uri,
        contract.ENV_MODEL_SHA256: stores.model.sha256,
        **input_environment(settings, stores),
    }


def _stepfunctions_batch(ctx: StackContext) -> Routes:
    """Architecture ``stepfunctions-batch``: a job config uploaded to ``jobs/*.json`` (S3 event
    -> the trigger Lambda) or ``POST /jobs`` with an ``input_uri`` starts one execution per job;
    the execution submits an AWS Batch job (an array job when ``shards > 1``; here local
    processes of ``python -m runtime.scoring --mode batch``) through the SubmitBatchJob Lambda
    and polls it with CheckBatchStatus (``polling: lambda``), or runs ``batch:submitJob.sync``
    (``polling: native``)."""
    from runtime.handlers import jobs, steps, trigger

    if ctx.stepfunctions is None or ctx.notifications is None:
        raise RuntimeError("stepfunctions-batch needs the local Step Functions and S3 events")
    stores, options = ctx.stores, ctx.options
    batch = provision_batch(
        ctx.aws, lambda settings: batch_container_environment(stores, settings), ctx.settings
    )
    arns: dict[str, str | None] = {"submit_batch_job": None, "check_batch_status": None}
    from components import stepfunctions as component

    def step_environment(settings: RuntimeSettings) -> dict[str, str]:
        return {
            **function_base_env(),
            contract.ENV_JOB_TABLE: stores.table,
            contract.ENV_DATA_BUCKET: stores.bucket,
            **batch.environment(settings),
        }

    function_role = _role(ctx.aws, "batch-steps-role", "lambda.amazonaws.com")
    if options.polling == POLLING_LAMBDA:
        for key, handler_name in (
            ("submit_batch_job", contract.HANDLER_SUBMIT_BATCH_JOB),
            ("check_batch_status", contract.HANDLER_CHECK_BATCH_STATUS),
        ):
            handler = getattr(steps, key, None)
            if handler is None:
                raise RuntimeError(f"runtime/handlers/steps.py has no {key} yet")
            function = LocalFunction(
                name=physical_name(key.replace("_", "-")),
                handler=handler,
                configure=steps.configure,
                environment=step_environment,
                memory_mb=component.STEP_FUNCTION_MEMORY,
                timeout_seconds=component.STEP_FUNCTION_TIMEOUT_SECONDS,
            )
            arns[key] = _deploy_function(ctx.aws, function, handler_name, function_role)
            ctx.stepfunctions.register(function)
            ctx.functions.append(function)

    def definition(settings: RuntimeSettings) -> str:
        batch.job_definition(settings)  # registers the revision the settings need
        return json.dumps(
            batch_workflow_definition(
                stores,
                batch,
                options,
                submit_batch_job_arn=arns["submit_batch_job"],
                check_batch_status_arn=arns["check_batch_status"],
            )
        )

    sfn = ctx.aws.client("stepfunctions")
    name = physical_name("batch-jobs")
    machine_arn = str(
        sfn.create_state_machine(
            name=name,
            definition=definition(ctx.settings),
            roleArn=_role(ctx.aws, "batch-workflow-role", "states.amazonaws.com"),
            type="STANDARD",
        )["stateMachineArn"]
    )
    ctx.outputs.setdefault("stateMachineArn", machine_arn)
    ctx.outputs["batchStateMachineArn"] = machine_arn
    ctx.outputs.setdefault("stateMachineName", name)
    ctx.outputs.setdefault("polling", options.polling)
    ctx.outputs["batchJobQueueHigh"] = batch.queue_high_arn
    ctx.outputs["batchJobQueueLow"] = batch.queue_low_arn
    ctx.outputs["batchJobDefinition"] = batch.job_definition_arn
    ctx.outputs["batchComputeEnvironment"] = batch.compute_environment_arn
    for key, output in (
        ("submit_batch_job", "submitBatchJobFunctionArn"),
        ("check_batch_status", "checkBatchStatusFunctionArn"),
    ):
        arn = arns[key]
        if arn is not None:
            ctx.outputs[output] = arn

    def update_definition(settings: RuntimeSettings) -> None:
        # a new job definition revision (image, allowMissing) is named by the definitions
        sfn.update_state_machine(stateMachineArn=machine_arn, definition=definition(settings))

    ctx.on_settings.append(update_definition)

    # The trigger: S3 ObjectCreated on jobs/*.json -> the trigger Lambda (components/batch.py
    # JobConfigTrigger: the function, S3's permission to invoke it, the bucket notification).
    def trigger_environment(settings: RuntimeSettings) -> dict[str, str]:
        return {
            **function_base_env(),
            contract.ENV_ARCHITECTURE: contract.ARCH_STEPFUNCTIONS_BATCH,
            contract.ENV_JOB_TABLE: stores.table,
            contract.ENV_DATA_BUCKET: stores.bucket,
            contract.ENV_STATE_MACHINE_ARN: machine_arn,
            contract.ENV_JOB_TTL_DAYS: str(contract.DEFAULT_JOB_TTL_DAYS),
            contract.ENV_MODEL_URI: stores.model_uri,
        }

    trigger_function = LocalFunction(
        name=physical_name("job-trigger"),
        handler=trigger.handler,
        configure=trigger.configure,
        environment=trigger_environment,
        memory_mb=256,
        timeout_seconds=60,
    )
    trigger_arn = _deploy_function(
        ctx.aws, trigger_function, contract.HANDLER_TRIGGER, function_role
    )
    ctx.functions.append(trigger_function)
    ctx.notifications.register(trigger_function, trigger_arn)
    ctx.aws.client("lambda").add_permission(
        FunctionName=trigger_function.name,
        StatementId="s3-job-configs",
        Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com",
        SourceArn=f"arn:aws:s3:::{stores.bucket}",
        SourceAccount=ACCOUNT_ID,
    )
    ctx.aws.client("s3").put_bucket_notification_configuration(
        Bucket=stores.bucket,
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [
                {
                    "Id": "job-configs",
                    "LambdaFunctionArn": trigger_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {
                        "Key": {
                            "FilterRules": [
                                {"Name": "prefix", "Value": contract.JOBS_PREFIX},
                                {"Name": "suffix", "Value": ".json"},
                            ]
                        }
                    },
                }
            ]
        },
    )
    ctx.outputs["triggerFunctionArn"] = trigger_arn

    def environment(settings: RuntimeSettings) -> dict[str, str]:
        return {
            **function_base_env(),
            contract.ENV_ARCHITECTURE: contract.ARCH_STEPFUNCTIONS_BATCH,
            contract.ENV_JOB_TABLE: stores.table,
            contract.ENV_DATA_BUCKET: stores.bucket,
            contract.ENV_MODEL_URI: stores.model_uri,
            contract.ENV_MODEL_SHA256: stores.model.sha256,
            contract.ENV_MODEL_METADATA_URI: f"s3://{stores.bucket}/{stores.metadata_key}",
            contract.ENV_MAX_ROWS: str(settings.max_rows),
            **input_environment(settings, stores, loader=False),
            contract.ENV_JOB_TTL_DAYS: str(contract.DEFAULT_JOB_TTL_DAYS),
            contract.ENV_STATE_MACHINE_ARN: machine_arn,
            **batch.environment(settings),
        }

    job_api = LocalFunction(
        name=physical_name("batch-job-api"),
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
    contract.ARCH_STEPFUNCTIONS_BATCH: _stepfunctions_batch,
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
