"""The registry of emulated architectures.

Each entry sets up, in the embedded AWS, what the architecture's component creates on top of the
shared stores, and returns its route table: operationId (runtime/openapi.yaml) -> the function
API Gateway integrates that operation with. Later architectures add an entry here; the gateway
and the emulator need no change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mlserve.local.aws import MotoServer
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
    """What an architecture's setup gets: the embedded AWS, the shared stores, a scratch dir."""

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


ARCHITECTURES: dict[str, ArchitectureSetup] = {
    contract.ARCH_LAMBDA: _realtime,
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
