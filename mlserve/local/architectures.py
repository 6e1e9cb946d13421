"""The registry of emulated architectures.

Each entry sets up, in the embedded AWS, what the architecture's component creates on top of the
shared stores, and returns its route table: operationId (runtime/openapi.yaml) -> the function
API Gateway integrates that operation with. Later architectures add an entry here; the gateway
and the emulator need no change. With several architectures, the first one (in the configured
order) serving an operation gets it, as in the Pulumi program (__main__.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mlserve.local.aws import MotoServer
from mlserve.local.ecs import EcsStack, provision_ecs
from mlserve.local.functions import LocalFunction, Routes, RuntimeSettings
from mlserve.local.stores import SharedStores, physical_name
from runtime import contract

KNOWN_ARCHITECTURES = (
    contract.ARCH_LAMBDA,
    contract.ARCH_LAMBDA_ECS,
    contract.ARCH_STEPFUNCTIONS_ECS,
    contract.ARCH_STEPFUNCTIONS_BATCH,
)


@dataclass(frozen=True)
class StackContext:
    """What an architecture's setup gets: the embedded AWS, the shared stores, a scratch dir.
    (ECS tasks started in the embedded AWS run locally: mlserve.local.fargate.)"""

    aws: MotoServer
    stores: SharedStores
    scratch: Path


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
    stores: SharedStores, ecs: EcsStack, settings: RuntimeSettings
) -> dict[str, str]:
    """The job API function's variables, as components/ecs.py sets them."""
    return {
        **function_base_env(),
        contract.ENV_ARCHITECTURE: contract.ARCH_LAMBDA_ECS,
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


ARCHITECTURES: dict[str, ArchitectureSetup] = {
    contract.ARCH_LAMBDA: _realtime,
    contract.ARCH_LAMBDA_ECS: _lambda_ecs,
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
