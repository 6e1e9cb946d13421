"""mlserve: wiring only.

settings -> shared stores (model bucket, job table) -> Lambda package -> the selected
architectures -> one REST API -> stack outputs. The shared stores are created outside every
architecture component, so switching `mlserve:architecture` keeps their URNs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pulumi

from components.api import LambdaTarget, RestApi, RestApiArgs
from components.batch import BatchScoring, BatchScoringArgs
from components.capture import DataCapture, DataCaptureArgs
from components.cloudwatch import Monitoring, MonitoringArgs
from components.compatibility import (
    ModelRefused,
    check_canary,
    model_categories_env,
    model_metadata,
)
from components.ecs import EcsScoring, EcsScoringArgs, LambdaEcsPredictor, LambdaEcsPredictorArgs
from components.engine import Conversion, EngineConversionError, convert_to_onnx
from components.functions import FunctionParts
from components.image import ScoringImage, ScoringImageArgs
from components.monitoring import Monitored, Thresholds
from components.network import Network, NetworkArgs
from components.packaging import LAYER_REQUIREMENTS, LambdaPackage, LambdaPackageArgs
from components.realtime import RealtimePredictor, RealtimePredictorArgs
from components.settings import ARCHITECTURES, Settings, load_settings
from components.stepfunctions import (
    StepFunctionsBatchPredictor,
    StepFunctionsBatchPredictorArgs,
    StepFunctionsEcsPredictor,
    StepFunctionsEcsPredictorArgs,
)
from components.storage import (
    CanaryModel,
    JobTable,
    JobTableArgs,
    ModelStore,
    ModelStoreArgs,
    ServedCanary,
)
from runtime import contract

PROJECT_DIR = Path(__file__).resolve().parent


class Containers:
    """The container pieces shared by the container architectures (lambda-ecs,
    stepfunctions-ecs, stepfunctions-batch): the network, the scoring image, the ECS
    cluster/task definition and the AWS Batch compute.

    Each is created on first use, once, whatever the number of architectures asking for it; a
    stack without container architectures creates none of them.
    """

    def __init__(
        self,
        settings: Settings,
        store: ModelStore,
        table: JobTable,
        model_categories: str,
        canary: ServedCanary | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._table = table
        self._model_categories = model_categories
        self._canary = canary

    @cached_property
    def network(self) -> Network:
        s = self._settings
        return Network(
            "network",
            NetworkArgs(subnet_ids=s.subnet_ids, security_group_ids=s.security_group_ids),
        )

    @cached_property
    def image(self) -> ScoringImage:
        s = self._settings
        return ScoringImage(
            "scoring-image",
            ScoringImageArgs(
                architecture=s.lambda_architecture,
                image=s.image,
                protect_data=s.protect_data,
                source_root=PROJECT_DIR,
            ),
        )

    @cached_property
    def ecs(self) -> EcsScoring:
        s = self._settings
        return EcsScoring(
            "scoring",
            EcsScoringArgs(
                image_uri=self.image.image_uri,
                repository_arn=self.image.repository_arn,
                table_name=self._table.name,
                table_arn=self._table.arn,
                bucket_name=self._store.bucket_name,
                bucket_arn=self._store.bucket_arn,
                model_uri=self._store.model_uri,
                model_sha256=self._store.model_sha256,
                model_object_arn=self._store.model_object_arn,
                architecture=s.lambda_architecture,
                task_cpu=s.task_cpu,
                task_memory=s.task_memory,
                allow_missing=s.allow_missing,
                unknown_category=s.unknown_category,
                model_categories=self._model_categories,
                log_retention_days=s.log_retention_days,
                canary=self._canary,
            ),
        )

    @cached_property
    def batch(self) -> BatchScoring:
        s = self._settings
        return BatchScoring(
            "batch",
            BatchScoringArgs(
                image_uri=self.image.image_uri,
                repository_arn=self.image.repository_arn,
                table_name=self._table.name,
                table_arn=self._table.arn,
                bucket_name=self._store.bucket_name,
                bucket_arn=self._store.bucket_arn,
                model_uri=self._store.model_uri,
                model_sha256=self._store.model_sha256,
                model_object_arn=self._store.model_object_arn,
                subnet_ids=self.network.subnet_ids,
                security_group_ids=self.network.security_group_ids,
                assign_public_ip=self.network.assign_public_ip,
                architecture=s.lambda_architecture,
                task_cpu=s.task_cpu,
                task_memory=s.task_memory,
                compute_type=s.batch_compute_type,
                max_vcpus=s.batch_max_vcpus,
                job_attempts=s.job_attempts,
                allow_missing=s.allow_missing,
                unknown_category=s.unknown_category,
                model_categories=self._model_categories,
                log_retention_days=s.log_retention_days,
                canary=self._canary,
            ),
        )


@dataclass(frozen=True)
class Shared:
    """What every architecture builds on."""

    settings: Settings
    store: ModelStore
    table: JobTable
    package: LambdaPackage
    containers: Containers
    model_categories: str = ""  # MODEL_CATEGORIES (components/compatibility.py)
    canary_categories: str = ""  # CANARY_MODEL_CATEGORIES, the canary's
    # The canary as the job architectures serve it (None: none, or a shadow canary)
    job_canary: ServedCanary | None = None


@dataclass(frozen=True)
class Watched:
    """A function as monitoring sees it: its name and its log group's name."""

    function_name: pulumi.Output[str]
    log_group_name: pulumi.Output[str]

    @classmethod
    def of(cls, parts: FunctionParts) -> Watched:
        return cls(parts.function.name, parts.log_group.name)


@dataclass(frozen=True)
class Built:
    """What an architecture contributes: the API operations it serves, extra stack outputs, and
    what the alarms and the dashboard watch (its functions, its state machine)."""

    routes: Mapping[str, LambdaTarget]
    outputs: Mapping[str, Any] = field(default_factory=dict)
    functions: Mapping[str, Watched] = field(default_factory=dict)
    state_machines: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)


def build_lambda(shared: Shared) -> Built:
    s = shared.settings
    store = shared.store
    canary: tuple[Any, Any, Any] | None = None
    if s.engine == contract.ENGINE_ONNX:
        # The onnx engine serves the converted, verified model.onnx and may read only that.
        if store.onnx_uri is None or store.onnx_sha256 is None or store.onnx_object_arn is None:
            raise RuntimeError("mlserve:engine onnx needs the converted model in the model store")
        model_uri, model_sha256, model_object_arn = (
            store.onnx_uri,
            store.onnx_sha256,
            store.onnx_object_arn,
        )
        if s.has_canary:
            canary = (store.canary_onnx_uri, store.canary_onnx_sha256, store.canary_onnx_object_arn)
    else:
        model_uri, model_sha256, model_object_arn = (
            store.model_uri,
            store.model_sha256,
            store.model_object_arn,
        )
        if s.has_canary:
            canary = (store.canary_uri, store.canary_sha256, store.canary_object_arn)
    predictor = RealtimePredictor(
        "predictor",
        RealtimePredictorArgs(
            code=shared.package.code,
            layer_arn=shared.package.layer_arn,
            runtime=shared.package.runtime,
            model_uri=model_uri,
            model_sha256=model_sha256,
            model_object_arn=model_object_arn,
            engine=s.engine,
            lambda_architecture=s.lambda_architecture,
            memory=s.lambda_memory,
            timeout=s.lambda_timeout,
            max_rows=s.max_rows,
            allow_missing=s.allow_missing,
            unknown_category=s.unknown_category,
            model_categories=shared.model_categories,
            snap_start=s.snap_start,
            provisioned_concurrency=s.provisioned_concurrency,
            log_retention_days=s.log_retention_days,
            canary=ServedCanary(
                uri=canary[0],
                sha256=canary[1],
                object_arn=canary[2],
                categories=shared.canary_categories,
                percent=s.canary_percent,
            )
            if canary is not None
            else None,
            canary_mode=s.canary_mode,
            capture_sample_percent=s.capture_sample_percent,
        ),
    )
    outputs: dict[str, Any] = {"predictorLogGroup": predictor.log_group_name}
    if predictor_captures(s):
        capture = DataCapture(
            "capture",
            DataCaptureArgs(
                code=shared.package.code,
                layer_arn=shared.package.layer_arn,
                source_log_group_name=predictor.log_group_name,
                source_log_group_arn=predictor.log_group_arn,
                bucket_name=store.bucket_name,
                bucket_arn=store.bucket_arn,
                runtime=shared.package.runtime,
                lambda_architecture=s.lambda_architecture,
                log_retention_days=s.log_retention_days,
            ),
        )
        outputs["captureLogGroup"] = capture.log_group_name
        outputs["captureUri"] = pulumi.Output.concat(
            "s3://", store.bucket_name, "/", contract.CAPTURE_PREFIX
        )
    return Built(
        routes=predictor.routes,
        outputs=outputs,
        functions={"predictor": Watched(predictor.function_name, predictor.log_group_name)},
    )


def predictor_captures(s: Settings) -> bool:
    """Capture lines are written: sampled requests, or a shadow canary's scores."""
    shadow = s.has_canary and s.canary_mode == contract.CANARY_SHADOW and s.canary_percent > 0
    return s.capture_sample_percent > 0 or shadow


def job_api_args(shared: Shared) -> dict[str, Any]:
    """What every job API (lambda-ecs, stepfunctions-ecs) is given: code, stores, ECS, network."""
    s = shared.settings
    network, ecs = shared.containers.network, shared.containers.ecs
    return {
        "code": shared.package.code,
        "layer_arn": shared.package.layer_arn,
        "runtime": shared.package.runtime,
        "table_name": shared.table.name,
        "table_arn": shared.table.arn,
        "bucket_name": shared.store.bucket_name,
        "bucket_arn": shared.store.bucket_arn,
        "model_uri": shared.store.model_uri,
        "model_sha256": shared.store.model_sha256,
        "model_metadata_key": shared.store.metadata_key,
        "cluster_arn": ecs.cluster_arn,
        "task_definition_arn": ecs.task_definition_arn,
        "task_role_arn": ecs.task_role_arn,
        "execution_role_arn": ecs.execution_role_arn,
        "subnet_ids": network.subnet_ids,
        "security_group_ids": network.security_group_ids,
        "assign_public_ip": network.assign_public_ip,
        "lambda_architecture": s.lambda_architecture,
        "memory": s.lambda_memory,
        "max_rows": s.max_rows,
        "allow_missing": s.allow_missing,
        "presigned_url_seconds": s.presigned_url_seconds,
        "unknown_category": s.unknown_category,
        "log_retention_days": s.log_retention_days,
        "canary": shared.job_canary,
    }


def container_outputs(shared: Shared) -> dict[str, Any]:
    ecs = shared.containers.ecs
    return {
        "imageUri": shared.containers.image.image_uri,
        "ecsCluster": ecs.cluster_name,
        "scoringLogGroup": ecs.log_group_name,
    }


def build_lambda_ecs(shared: Shared) -> Built:
    job_api = LambdaEcsPredictor(
        "lambda-ecs",
        LambdaEcsPredictorArgs(
            **job_api_args(shared),
            sync_wait_seconds=shared.settings.sync_wait_seconds,
        ),
    )
    return Built(
        routes=job_api.routes,
        outputs={**container_outputs(shared), "jobApiLogGroup": job_api.log_group_name},
        functions={"lambda-ecs": Watched(job_api.function_name, job_api.log_group_name)},
    )


def build_stepfunctions_ecs(shared: Shared) -> Built:
    workflow = StepFunctionsEcsPredictor(
        "stepfunctions-ecs",
        StepFunctionsEcsPredictorArgs(
            **job_api_args(shared),
            polling=shared.settings.polling,
            poll_interval_seconds=shared.settings.poll_interval_seconds,
        ),
    )
    return Built(
        routes=workflow.routes,
        outputs={
            **container_outputs(shared),
            "stateMachineArn": workflow.state_machine_arn,
            "stepFunctionsLogGroup": workflow.state_machine_log_group_name,
            "sfnJobApiLogGroup": workflow.log_group_name,
        },
        functions={label: Watched.of(parts) for label, parts in workflow.functions.items()},
        state_machines={"stepfunctions-ecs": workflow.state_machine_arn},
    )


def build_stepfunctions_batch(shared: Shared) -> Built:
    s = shared.settings
    batch = shared.containers.batch
    workflow = StepFunctionsBatchPredictor(
        "stepfunctions-batch",
        StepFunctionsBatchPredictorArgs(
            code=shared.package.code,
            layer_arn=shared.package.layer_arn,
            runtime=shared.package.runtime,
            table_name=shared.table.name,
            table_arn=shared.table.arn,
            bucket_name=shared.store.bucket_name,
            bucket_arn=shared.store.bucket_arn,
            model_uri=shared.store.model_uri,
            model_sha256=shared.store.model_sha256,
            model_metadata_key=shared.store.metadata_key,
            job_queue_high_arn=batch.job_queue_arns["high"],
            job_queue_low_arn=batch.job_queue_arns["low"],
            job_definition_arn=batch.job_definition_arn,
            lambda_architecture=s.lambda_architecture,
            memory=s.lambda_memory,
            max_rows=s.max_rows,
            allow_missing=s.allow_missing,
            presigned_url_seconds=s.presigned_url_seconds,
            unknown_category=s.unknown_category,
            log_retention_days=s.log_retention_days,
            polling=s.polling,
            poll_interval_seconds=s.poll_interval_seconds,
            canary=shared.job_canary,
        ),
    )
    return Built(
        routes=workflow.routes,
        outputs={
            "imageUri": shared.containers.image.image_uri,
            "batchJobQueueHigh": batch.job_queue_arns["high"],
            "batchJobQueueLow": batch.job_queue_arns["low"],
            "batchJobDefinition": batch.job_definition_arn,
            "batchLogGroup": batch.log_group_name,
            "batchStateMachineArn": workflow.state_machine_arn,
            "batchStepFunctionsLogGroup": workflow.state_machine_log_group_name,
            "batchJobApiLogGroup": workflow.log_group_name,
            "triggerLogGroup": workflow.trigger.log_group_name,
        },
        functions={
            **{label: Watched.of(parts) for label, parts in workflow.functions.items()},
            "stepfunctions-batch-trigger": Watched(
                workflow.trigger.function_name, workflow.trigger.log_group_name
            ),
        },
        state_machines={"stepfunctions-batch": workflow.state_machine_arn},
    )


# name -> builder. Its names must be exactly settings.ARCHITECTURES (the names config accepts).
BUILDERS: dict[str, Callable[[Shared], Built]] = {
    contract.ARCH_LAMBDA: build_lambda,
    contract.ARCH_LAMBDA_ECS: build_lambda_ecs,
    contract.ARCH_STEPFUNCTIONS_ECS: build_stepfunctions_ecs,
    contract.ARCH_STEPFUNCTIONS_BATCH: build_stepfunctions_batch,
}
if set(BUILDERS) != set(ARCHITECTURES):
    raise RuntimeError(
        f"architecture registry mismatch: builders {sorted(BUILDERS)} vs settings "
        f"{sorted(ARCHITECTURES)}"
    )


def convert_model(
    settings: Settings,
    model_path: Path | None = None,
    name: str | None = None,
    version: str | None = None,
    sha256: str | None = None,
) -> Conversion | None:
    """With mlserve:engine onnx: convert and verify the model before any resource exists.

    A model the onnx engine cannot serve (or a conversion that disagrees with XGBoost) stops the
    deployment here with the reason and the measured difference.
    """
    if (
        settings.engine != contract.ENGINE_ONNX
        or contract.ARCH_LAMBDA not in settings.architectures
    ):
        return None  # the engine is the lambda predictor's; the containers score with XGBoost
    model_path = model_path or settings.model_path
    out = PROJECT_DIR / "build" / "onnx" / f"{sha256 or settings.model_sha256}.onnx"
    try:
        conversion = convert_to_onnx(
            model_path,
            out,
            name=name or settings.model_name,
            version=version or settings.model_version,
        )
    except EngineConversionError as exc:
        message = f"mlserve:engine onnx: cannot serve this model with onnxruntime: {exc}"
        pulumi.log.error(message)
        raise pulumi.RunError(message) from exc
    pulumi.log.info(
        f"mlserve:engine onnx: {model_path.name} converted to ONNX and verified on "
        f"{conversion.rows_checked} rows: max |onnx - xgboost| = {conversion.max_abs_diff:.3g} "
        f"(tolerance {conversion.tolerance:g} x max(1, |xgboost|))"
    )
    return conversion


def describe_model(settings: Settings) -> dict[str, Any]:
    """The metadata.json of the model (components/compatibility.py), before any resource
    exists: a model mlserve cannot serve stops the deployment here, with the reason."""
    try:
        return model_metadata(
            settings.model_path, settings.model_name, settings.model_version, settings.model_sha256
        )
    except ModelRefused as exc:
        message = f"mlserve:modelPath: cannot serve this model: {exc}"
        pulumi.log.error(message)
        raise pulumi.RunError(message) from exc


def describe_canary(settings: Settings, stable: dict[str, Any]) -> CanaryModel | None:
    """The canary (mlserve:canaryModelPath) with its metadata.json and, for the onnx engine, its
    converted model; refused with the reason when it cannot stand beside the stable model."""
    if settings.canary_model_path is None or settings.canary_model_sha256 is None:
        return None
    path, name, version = (
        settings.canary_model_path,
        settings.canary_model_name,
        settings.canary_model_version,
    )
    try:
        metadata = model_metadata(path, name, version, settings.canary_model_sha256)
        check_canary(stable, metadata)
    except ModelRefused as exc:
        message = f"mlserve:canaryModelPath: cannot serve this canary: {exc}"
        pulumi.log.error(message)
        raise pulumi.RunError(message) from exc
    onnx = convert_model(settings, path, name, version, settings.canary_model_sha256)
    return CanaryModel(
        model_path=path,
        model_name=name,
        model_version=version,
        model_sha256=settings.canary_model_sha256,
        metadata=metadata,
        onnx_path=onnx.out_path if onnx else None,
        onnx_sha256=onnx.sha256 if onnx else None,
    )


def served_canary(settings: Settings, store: ModelStore, categories: str) -> ServedCanary | None:
    """The canary as the job architectures serve it: in ``split`` mode, its model.ubj (the
    scoring containers score with XGBoost, whatever mlserve:engine) and the share of new jobs.
    A ``shadow`` canary beside lambda is the predictor's alone: said at deploy, not silently."""
    if not settings.has_canary or all(a == contract.ARCH_LAMBDA for a in settings.architectures):
        return None
    if not settings.jobs_serve_canary:
        pulumi.log.warn(
            "mlserve:canaryMode shadow: only the lambda architecture's POST /predict shadows the "
            "canary; the job architectures ("
            + ", ".join(a for a in settings.architectures if a != contract.ARCH_LAMBDA)
            + ") score every job with the stable model (docs/configuration.md, canaryMode)"
        )
        return None
    if store.canary_uri is None or store.canary_sha256 is None or store.canary_object_arn is None:
        raise RuntimeError("a canary needs its model object in the model store")
    return ServedCanary(
        uri=store.canary_uri,
        sha256=store.canary_sha256,
        object_arn=store.canary_object_arn,
        categories=categories,
        percent=settings.canary_percent,
    )


def main() -> None:
    settings = load_settings()
    metadata = describe_model(settings)
    conversion = convert_model(settings)
    canary = describe_canary(settings, metadata)

    store = ModelStore(
        "model-store",
        ModelStoreArgs(
            model_path=settings.model_path,
            model_name=settings.model_name,
            model_version=settings.model_version,
            model_sha256=settings.model_sha256,
            protect_data=settings.protect_data,
            onnx_path=conversion.out_path if conversion else None,
            onnx_sha256=conversion.sha256 if conversion else None,
            metadata=metadata,
            canary=canary,
        ),
    )
    table = JobTable("job-table", JobTableArgs(protect_data=settings.protect_data))
    package = LambdaPackage(
        "lambda-package",
        LambdaPackageArgs(
            architecture=settings.lambda_architecture,
            requirements_file=LAYER_REQUIREMENTS[
                contract.ENGINE_ONNX if conversion else contract.ENGINE_XGBOOST
            ],
            source_root=PROJECT_DIR,
            runtime=settings.lambda_runtime,
            artifact_bucket=store.bucket_name,
        ),
    )
    canary_categories = model_categories_env(dict(canary.metadata)) if canary else ""
    job_canary = served_canary(settings, store, canary_categories)
    shared = Shared(
        settings=settings,
        store=store,
        table=table,
        package=package,
        containers=Containers(settings, store, table, model_categories_env(metadata), job_canary),
        model_categories=model_categories_env(metadata),
        canary_categories=canary_categories,
        job_canary=job_canary,
    )

    # Architectures in the configured order; the first one serving an operation gets it.
    routes: dict[str, LambdaTarget] = {}
    outputs: dict[str, Any] = {}
    functions: dict[str, Watched] = {}
    state_machines: dict[str, pulumi.Output[str]] = {}
    for name in settings.architectures:
        built = BUILDERS[name](shared)
        for operation, target in built.routes.items():
            routes.setdefault(operation, target)
        outputs.update(built.outputs)
        functions.update(built.functions)
        state_machines.update(built.state_machines)

    api = RestApi(
        "api",
        RestApiArgs(
            routes=routes,
            api_auth=settings.api_auth,
            throttle_rate=settings.throttle_rate,
            throttle_burst=settings.throttle_burst,
            log_retention_days=settings.log_retention_days,
        ),
    )

    monitoring = Monitoring(
        "monitoring",
        MonitoringArgs(
            monitored=Monitored(
                api_name=api.api_name,
                stage=contract.STAGE_NAME,
                functions={label: f.function_name for label, f in functions.items()},
                state_machines=state_machines,
                log_groups=[f.log_group_name for f in functions.values()],
                realtime=contract.ARCH_LAMBDA in settings.architectures,
                jobs=any(a != contract.ARCH_LAMBDA for a in settings.architectures),
                batch=contract.ARCH_STEPFUNCTIONS_BATCH in settings.architectures,
                # the model versions served, the stable one first (a canary second)
                versions=(
                    (settings.model_version, settings.canary_model_version)
                    if settings.has_canary
                    else (settings.model_version,)
                ),
                # the versions jobs are scored with (a shadow canary is the predictor's alone)
                job_versions=(
                    (settings.model_version, settings.canary_model_version)
                    if job_canary is not None
                    else (settings.model_version,)
                ),
            ),
            thresholds=Thresholds(
                latency_p99_ms=settings.latency_p99_threshold_ms,
                api_5xx_percent=settings.api5xx_rate_percent,
            ),
            alarms=settings.alarms,
            alarm_email=settings.alarm_email,
        ),
    )

    pulumi.export("apiUrl", api.url)
    if api.api_key_value is not None:
        pulumi.export("apiKey", api.api_key_value)
    pulumi.export("modelBucket", store.bucket_name)
    pulumi.export("modelUri", store.model_uri)
    if contract.ARCH_LAMBDA in settings.architectures:  # the engine serves the lambda predictor
        pulumi.export("engine", settings.engine)
    if store.onnx_uri is not None:
        pulumi.export("onnxModelUri", store.onnx_uri)
    if store.canary_uri is not None:
        pulumi.export("canaryModelUri", store.canary_uri)
    pulumi.export("jobTable", table.name)
    pulumi.export("architecture", list(settings.architectures))
    pulumi.export("dashboardUrl", monitoring.dashboard_url)
    if monitoring.topic_arn is not None:
        pulumi.export("alarmTopicArn", monitoring.topic_arn)
    for key, value in outputs.items():
        pulumi.export(key, value)


main()
