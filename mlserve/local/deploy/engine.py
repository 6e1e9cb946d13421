"""The local deployment engine: run __main__.py and create every resource in the embedded moto.

:func:`deploy` runs the real program with the stack's configuration (:mod:`.config`) under
Pulumi's runtime (:mod:`.runner`) with :class:`LocalProvider` as the provider: each custom
resource's registration is dispatched on its type token to the mapper module of its AWS service,
which makes the AWS call(s) the provider would make against moto and answers with moto's ids and
ARNs, so every ``Output.apply`` of the program (environments, policies, definitions) resolves to
what was deployed. The engine knows resource types, not architectures. A type no mapper knows
fails the deployment, naming the type.

Resource options: the SDK registers a resource only once its inputs and ``depends_on`` resources
have resolved, so resources are created in dependency order; ``retainOnDelete`` and ``protect``
are recorded on each resource record (:class:`.runner.Registered`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import pulumi
from botocore.exceptions import BotoCoreError, ClientError

from mlserve.local.aws import EnvironmentPatch
from mlserve.local.deploy import (
    apigateway,
    batch,
    cloudwatch,
    dynamodb,
    ec2,
    ecr,
    ecs,
    iam,
    lambda_,
    logs,
    moto_fixes,
    s3,
    sfn,
    sns,
    sts,
    substitutions,
)
from mlserve.local.deploy.config import DEFAULT_REGION, REGION_KEY, stack_config
from mlserve.local.deploy.deployment import Deployment
from mlserve.local.deploy.mapping import Context, Create, Invoke
from mlserve.local.deploy.runner import PROJECT, REPO, Registered, run_main

# One mapper module per AWS service, plus the substitutions.
MAPPERS: Final[tuple[ModuleType, ...]] = (
    s3,
    dynamodb,
    iam,
    logs,
    lambda_,
    apigateway,
    sfn,
    ecs,
    batch,
    ecr,
    ec2,
    cloudwatch,
    sns,
    sts,
    substitutions,
)
# The stack name when none is given (it appears in names the program derives from it).
LOCAL_STACK: Final = "local"


class DeploymentError(RuntimeError):
    """A resource could not be created locally (unmapped type, or moto refused the call)."""


def _merge(tables: list[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for module, table in tables:
        for token, fn in table.items():
            if token in merged:
                raise RuntimeError(f"{token} is mapped twice (again in {module})")
            merged[token] = fn
    return merged


RESOURCES: Final[dict[str, Create]] = _merge([(m.__name__, m.RESOURCES) for m in MAPPERS])
INVOKES: Final[dict[str, Invoke]] = _merge([(m.__name__, m.INVOKES) for m in MAPPERS])


def _comparable(value: Any) -> Any:
    """An input value in a form ``==`` compares by content (assets and archives by what they
    hold, which their classes do not compare)."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_comparable(v) for v in value]
    if isinstance(value, pulumi.Asset | pulumi.Archive):
        return (type(value).__name__, _comparable(dict(vars(value))))
    return value


class LocalProvider(pulumi.runtime.Mocks):
    """The provider of the local target: each registration becomes moto API calls.

    With the resources of a ``previous`` deployment into the same moto (an update, as after
    ``pulumi config set``), a resource whose inputs did not change is kept as it is (its id and
    outputs, no AWS call), so the bucket and the table keep their data; a changed one is
    created anew (the old one is left, unused: nothing local reads it again)."""

    def __init__(self, ctx: Context, previous: tuple[Registered, ...] = ()) -> None:
        self.ctx = ctx
        self._previous = {(r.type, r.name): r for r in previous if r.custom}
        self.kept: list[str] = []
        # The SDK registers resources from a thread pool; moto calls are made one at a time.
        self._lock = threading.Lock()
        self.failures: list[DeploymentError] = []

    def _fail(self, message: str, cause: Exception | None = None) -> DeploymentError:
        error = DeploymentError(message)
        error.__cause__ = cause
        self.failures.append(error)
        return error

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        if not args.custom:  # a ComponentResource: nothing to create
            return "", {}
        create = RESOURCES.get(args.typ)
        if create is None:
            raise self._fail(
                f"the local target has no mapper for resource type {args.typ!r} (resource "
                f"{args.name!r}); add it to the mapper module of its service in "
                "mlserve/local/deploy/"
            )
        inputs = dict(args.inputs)
        before = self._previous.get((args.typ, args.name))
        if before is not None and _comparable(before.inputs) == _comparable(inputs):
            self.kept.append(args.name)
            return before.id, dict(before.outputs)
        with self._lock:
            try:
                resource_id, outputs = create(self.ctx, args.name, inputs)
            except (BotoCoreError, ClientError, ValueError, KeyError, TypeError) as exc:
                raise self._fail(f"{args.typ} {args.name!r}: {exc}", exc) from exc
        return resource_id, {**inputs, **outputs}

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:  # type: ignore[override]
        invoke = INVOKES.get(args.token)
        if invoke is None:
            raise self._fail(f"the local target has no mapper for invoke {args.token!r}")
        with self._lock:
            try:
                # A bare dict: the mock monitor reads a tuple's second item as check failures.
                return invoke(self.ctx, dict(args.args))
            except (BotoCoreError, ClientError, ValueError, KeyError, TypeError) as exc:
                raise self._fail(f"{args.token}: {exc}", exc) from exc


def deploy(
    stack: str | None,
    overrides: Mapping[str, Any],
    endpoint_url: str,
    *,
    project_dir: Path = REPO,
    previous: Deployment | None = None,
) -> Deployment:
    """Deploy the program with ``stack``'s configuration into the moto at ``endpoint_url``.

    ``endpoint_url`` is this process's embedded moto (:class:`mlserve.local.aws.MotoServer`):
    the workarounds of :mod:`.moto_fixes` patch the moto running in this process. Raises the
    program's own errors (``SettingsError`` for bad configuration, ``ModelRefused`` and
    ``EngineConversionError`` for a model it cannot serve) and :class:`DeploymentError`
    when a resource cannot be created. ``previous``: the deployment this one updates (same
    moto): its unchanged resources are kept (:class:`LocalProvider`).
    """
    started = time.perf_counter()
    moto_fixes.apply()
    config = stack_config(stack, overrides, project_dir)
    stack_name = stack or LOCAL_STACK
    ctx = Context(
        endpoint_url=endpoint_url,
        region=config.get(REGION_KEY, DEFAULT_REGION),
        stack=stack_name,
        project=PROJECT,
    )
    if previous is not None and previous.endpoint_url != endpoint_url:
        raise ValueError("an update deploys into the moto of the deployment it updates")
    provider = LocalProvider(ctx, tuple(previous.resources) if previous is not None else ())
    environment = EnvironmentPatch()
    environment.apply(substitutions.ENVIRONMENT)
    try:
        run = run_main(config, mocks=provider, stack=stack_name)
    except Exception as exc:
        if provider.failures:  # the SDK's own error hides which resource failed
            raise provider.failures[0] from exc
        if isinstance(exc, pulumi.RunError) and isinstance(exc.__cause__, ValueError):
            # the program's refusal (ModelRefused, EngineConversionError), reported by
            # pulumi.RunError for the CLI: raised as itself, as the docstring promises
            raise exc.__cause__ from None
        raise
    finally:
        environment.restore()
    if provider.failures:
        raise provider.failures[0]
    return Deployment(
        stack=stack_name,
        config=config,
        endpoint_url=endpoint_url,
        outputs=dict(run.exports),
        secret_outputs=frozenset(run.secret_exports),
        resources=run.resources,
        invocations=list(run.invocations),
        substitutions=substitutions.SUBSTITUTIONS,
        seconds=time.perf_counter() - started,
        _ctx=ctx,
        kept=tuple(provider.kept),
    )
