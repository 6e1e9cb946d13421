"""Every substitution the local target makes, named in one place with its reason.

The local target deploys the program's own resources into the embedded moto with the calls the
provider would make (the mapper modules). What cannot be deployed that way is substituted here,
and what moto accepts but does not act on is listed here, so nothing is silently skipped:

* :data:`IMAGE` - the scoring image: no Docker engine, so no build and no push;
* :data:`LAYER` - the Lambda layer: its contents are this venv, so nothing is downloaded;
* :data:`FUNCTION_BYTECODE` - the function archive holds no byte code, so no Python of the
  Lambda runtime's version is needed;
* :data:`PROVISIONED_CONCURRENCY` - moto has no PutProvisionedConcurrencyConfig;
* :data:`NOT_EMULATED` - what moto stores but does not do.

``RESOURCES`` maps the substituted resource types (as a mapper module does) and
``ENVIRONMENT`` holds the variables the program reads to switch to a substitute.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from components.image import ENV_IMAGE_BUILD, IMAGE_BUILD_NONE
from components.packaging import (
    ENV_FUNCTION_BYTECODE,
    ENV_LAYER_SOURCE,
    FUNCTION_BYTECODE_NONE,
    LAYER_SOURCE_VENV,
)
from mlserve.local.deploy.mapping import Context, Create, Invoke, integer
from runtime import contract


@dataclass(frozen=True)
class Substitution:
    """What the program declares, what the local target does instead, and why."""

    subject: str
    local: str
    reason: str


IMAGE: Final = Substitution(
    subject="docker-build:index:Image (images/scoring built and pushed to ECR)",
    local=(
        f"${ENV_IMAGE_BUILD}={IMAGE_BUILD_NONE}: no build, no push and no check of this host's "
        "Docker, Buildx or QEMU; the image gets a digest, so the definitions name the program's "
        "digest reference into the ECR repository (created with its lifecycle policy); the "
        f"stand-ins run that image as `python -m {contract.SCORING_MODULE}`, a local process "
        "with the deployed task/job definition's command and environment"
    ),
    reason="there is no Docker engine here: nothing can build, push or run an image",
)
LAYER: Final = Substitution(
    subject="the Lambda layer (runtime/requirements*.txt pip-installed for Lambda)",
    local=(
        f"${ENV_LAYER_SOURCE}={LAYER_SOURCE_VENV}: components/packaging.build_venv_layer zips a "
        "marker naming this venv; the layer version is published in moto from it"
    ),
    reason=(
        "local functions run in this Python environment, which already has every dependency; "
        "the local target must not download wheels"
    ),
)
FUNCTION_BYTECODE: Final = Substitution(
    subject="the function archive's byte code (compiled by a Python of the Lambda runtime)",
    local=(
        f"${ENV_FUNCTION_BYTECODE}={FUNCTION_BYTECODE_NONE}: the archive holds runtime/'s sources "
        "only"
    ),
    reason=(
        "no function runs from the archive locally (the stand-ins import runtime/ in this "
        "process), and a user with only this Python must be able to run the local target"
    ),
)
PROVISIONED_CONCURRENCY: Final = Substitution(
    subject="aws:lambda/provisionedConcurrencyConfig:ProvisionedConcurrencyConfig",
    local="recorded in the deployment (its inputs), not created",
    reason="moto implements no PutProvisionedConcurrencyConfig; a local function is always warm",
)
NOT_EMULATED: Final[tuple[Substitution, ...]] = (
    Substitution(
        "IAM enforcement",
        "roles and policies are created and read back; the least-privilege check evaluates them",
        "moto stores IAM policies but authorizes every call",
    ),
    Substitution(
        "API Gateway throttling and usage-plan limits",
        "the stage method settings and usage plan are created with the declared limits",
        "moto stores the limits and enforces none",
    ),
    Substitution(
        "log delivery (Lambda, ECS awslogs, Batch, Step Functions, API access logs)",
        "the log groups are created with their retention; a function's stdout lines that a "
        "deployed subscription filter selects are delivered to its destination function "
        "(mlserve/local/logs.py, data capture), the other lines are printed",
        "nothing in moto writes to CloudWatch Logs on a service's behalf, and moto runs a "
        "subscription's Lambda destination in Docker, not as the emulator's stand-in",
    ),
    Substitution(
        "CloudWatch alarms and SNS delivery",
        "the alarms, the dashboard, the alarm topic, its policy and subscription are created as "
        "declared",
        "moto evaluates no alarm (no metrics arrive: EMF needs log delivery) and sends no email",
    ),
    Substitution(
        "X-Ray tracing",
        "the tracing settings are deployed as declared",
        "moto has no trace delivery",
    ),
    Substitution(
        "`.sync` service integrations' EventBridge rules",
        "the state machine definition is deployed as rendered",
        "AWS waits on managed EventBridge rules for ecs:runTask.sync / batch:submitJob.sync; "
        "moto creates none",
    ),
)
SUBSTITUTIONS: Final[tuple[Substitution, ...]] = (
    IMAGE,
    LAYER,
    FUNCTION_BYTECODE,
    PROVISIONED_CONCURRENCY,
    *NOT_EMULATED,
)

# The process environment while the program runs locally.
ENVIRONMENT: Final[dict[str, str]] = {
    ENV_IMAGE_BUILD: IMAGE_BUILD_NONE,
    ENV_LAYER_SOURCE: LAYER_SOURCE_VENV,
    ENV_FUNCTION_BYTECODE: FUNCTION_BYTECODE_NONE,
}


def scoring_image(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """:data:`IMAGE`: no build; a digest derived from the tag stands for the pushed one."""
    tag = str(inputs["tags"][0])
    digest = f"sha256:{hashlib.sha256(tag.encode()).hexdigest()}"
    return digest, {"ref": f"{tag}@{digest}", "digest": digest, "contextHash": ""}


def provisioned_concurrency(
    ctx: Context, name: str, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """:data:`PROVISIONED_CONCURRENCY`: recorded, not created."""
    integer(inputs["provisionedConcurrentExecutions"])  # a malformed value still fails
    return f"{inputs['functionName']},{inputs['qualifier']}", {}


RESOURCES: dict[str, Create] = {
    "docker-build:index:Image": scoring_image,
    "aws:lambda/provisionedConcurrencyConfig:ProvisionedConcurrencyConfig": (
        provisioned_concurrency
    ),
}
INVOKES: dict[str, Invoke] = {}
