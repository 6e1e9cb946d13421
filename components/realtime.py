"""RealtimePredictor: architecture `lambda` (API Gateway -> Lambda, synchronous predictions).

One function serves both operations of the API (``health`` and ``predict``). The model is loaded
from S3 at init (``MODEL_URI``, checked against ``MODEL_SHA256``) by the engine ``MODEL_ENGINE``
names (xgboost, or onnx: then MODEL_URI is the converted model.onnx); the dependencies come from
the layer LambdaPackage built for that engine. The execution role may do exactly two things: read
the model object (and the canary's, issue 17) and write to the function's own log group.

With a canary (``CANARY_MODEL_URI``/``CANARY_MODEL_SHA256``, ``CANARY_PERCENT``, ``CANARY_MODE``)
the function serves both versions (runtime/rollout.py); with ``CAPTURE_SAMPLE_PERCENT`` it prints a
capture line per sampled request, which components/capture.py delivers to S3.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import pulumi
import pulumi_aws as aws

from components import policies
from components.api import LambdaTarget
from components.functions import lambda_function
from components.settings import (
    API_GATEWAY_TIMEOUT_SECONDS,
    LAMBDA_ARCHITECTURES,
    LOG_RETENTION_DAYS,
)
from components.storage import ServedCanary
from runtime import contract

ALIAS_NAME: Final = "live"
OPERATIONS: Final = ("health", "predict")


@dataclass(frozen=True)
class RealtimePredictorArgs:
    code: pulumi.Archive = field(compare=False)
    layer_arn: pulumi.Input[str] = field(compare=False)
    runtime: str  # the Lambda runtime the code and layer were built for (LambdaPackage)
    model_uri: pulumi.Input[str] = field(compare=False)
    model_sha256: pulumi.Input[str] = field(compare=False)
    model_object_arn: pulumi.Input[str] = field(compare=False)
    lambda_architecture: str = "arm64"
    memory: int = 1024
    timeout: int = API_GATEWAY_TIMEOUT_SECONDS
    max_rows: int = contract.DEFAULT_MAX_ROWS
    allow_missing: bool = False
    unknown_category: str = "error"  # mlserve:unknownCategory
    # MODEL_CATEGORIES: categories recorded in metadata.json for a model that stores none
    model_categories: str = ""
    snap_start: bool = False
    provisioned_concurrency: int = 0
    log_retention_days: int = 14
    # MODEL_ENGINE: with onnx, model_uri/model_sha256/model_object_arn are the model.onnx ones.
    engine: str = contract.ENGINE_XGBOOST
    # The canary (issue 17): its object for the engine (model.ubj or model.onnx), digest, ARN,
    # categories and share of requests; canary_mode: split or shadow
    canary: ServedCanary | None = field(default=None, compare=False)
    canary_mode: str = contract.CANARY_SPLIT
    capture_sample_percent: int = 0

    def _rollout_problems(self) -> list[str]:
        problems: list[str] = []
        if self.canary_mode not in contract.CANARY_MODES:
            problems.append(f"canary_mode {self.canary_mode!r} not in {contract.CANARY_MODES}")
        if not 0 <= self.capture_sample_percent <= 100:
            problems.append(f"capture_sample_percent {self.capture_sample_percent} not in 0-100")
        return problems

    def __post_init__(self) -> None:
        problems = self._rollout_problems()
        if self.engine not in contract.ENGINES:
            problems.append(f"engine {self.engine!r} not in {contract.ENGINES}")
        if not isinstance(self.code, pulumi.Archive):
            problems.append(f"code must be a pulumi.Archive, got {type(self.code).__name__}")
        if self.lambda_architecture not in LAMBDA_ARCHITECTURES:
            problems.append(
                f"lambda_architecture {self.lambda_architecture!r} not in {LAMBDA_ARCHITECTURES}"
            )
        if not 128 <= self.memory <= 10240:
            problems.append(f"memory {self.memory} not in 128-10240 MB")
        if not 1 <= self.timeout <= API_GATEWAY_TIMEOUT_SECONDS:
            problems.append(
                f"timeout {self.timeout} not in 1-{API_GATEWAY_TIMEOUT_SECONDS} s "
                "(API Gateway's REST integration timeout)"
            )
        if not 1 <= self.max_rows <= 100_000:
            problems.append(f"max_rows {self.max_rows} not in 1-100000")
        if self.provisioned_concurrency < 0:
            problems.append(f"provisioned_concurrency {self.provisioned_concurrency} < 0")
        if self.snap_start and self.provisioned_concurrency:
            problems.append("snap_start cannot be combined with provisioned_concurrency")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            problems.append(
                f"log_retention_days {self.log_retention_days} is not a CloudWatch value"
            )
        if problems:
            raise ValueError("RealtimePredictorArgs: " + "; ".join(problems))

    @property
    def uses_alias(self) -> bool:
        """SnapStart and provisioned concurrency apply to published versions, via the alias."""
        return self.snap_start or self.provisioned_concurrency > 0

    def rollout_environment(self) -> dict[str, pulumi.Input[str]]:
        env: dict[str, pulumi.Input[str]] = {}
        if self.capture_sample_percent:
            env[contract.ENV_CAPTURE_SAMPLE_PERCENT] = str(self.capture_sample_percent)
        if self.canary is not None:
            env |= {
                **self.canary.container_environment(),  # its object, digest, categories
                **self.canary.assignment_environment(),  # and its share of the requests
                contract.ENV_CANARY_MODE: self.canary_mode,
            }
        return env

    def environment(self) -> dict[str, pulumi.Input[str]]:
        return {
            **self.rollout_environment(),
            contract.ENV_MODEL_URI: self.model_uri,
            contract.ENV_MODEL_SHA256: self.model_sha256,
            contract.ENV_MODEL_ENGINE: self.engine,
            contract.ENV_MAX_ROWS: str(self.max_rows),
            **contract.input_environment(
                self.allow_missing, self.unknown_category, self.model_categories
            ),
            contract.ENV_POWERTOOLS_SERVICE_NAME: contract.SERVICE_NAME,
            contract.ENV_POWERTOOLS_METRICS_NAMESPACE: contract.METRICS_NAMESPACE,
        }


class RealtimePredictor(pulumi.ComponentResource):
    """Log group, least-privilege role and the predictor function (+ `live` alias if needed)."""

    function_name: pulumi.Output[str]
    function_arn: pulumi.Output[str]
    invoke_target_arn: pulumi.Output[str]
    log_group_name: pulumi.Output[str]
    log_group_arn: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    routes: Mapping[str, LambdaTarget]

    def __init__(
        self, name: str, args: RealtimePredictorArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlserve:index:RealtimePredictor", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        function_args: dict[str, Any] = {}
        if args.snap_start:
            function_args["snap_start"] = {"apply_on": "PublishedVersions"}
        parts = lambda_function(
            self,
            name,
            description="mlserve predictor: GET /health, POST /predict",
            role_description="mlserve predictor: read the model object, write its own logs",
            handler=contract.HANDLER_PREDICT,
            policy=lambda log_group_arn: pulumi.Output.all(
                args.model_object_arn,
                log_group_arn,
                args.canary.object_arn if args.canary is not None else None,
            ).apply(
                lambda arns: json.dumps(
                    policies.realtime_predictor_policy(arns[0], arns[1], arns[2])
                )
            ),
            code=args.code,
            layer_arn=args.layer_arn,
            runtime=args.runtime,
            architecture=args.lambda_architecture,
            memory=args.memory,
            timeout=args.timeout,
            environment=args.environment(),
            log_retention_days=args.log_retention_days,
            publish=args.uses_alias,
            **function_args,
        )
        function, role, log_group = parts.function, parts.role, parts.log_group

        qualifier: str | None = None
        target_arn: pulumi.Output[str] = function.arn
        if args.uses_alias:
            alias = aws.lambda_.Alias(
                f"{name}-alias",
                name=ALIAS_NAME,
                description="the version API Gateway invokes",
                function_name=function.name,
                function_version=function.version,
                opts=child,
            )
            qualifier = ALIAS_NAME
            target_arn = alias.arn
            if args.provisioned_concurrency > 0:
                aws.lambda_.ProvisionedConcurrencyConfig(
                    f"{name}-provisioned-concurrency",
                    function_name=function.name,
                    qualifier=alias.name,
                    provisioned_concurrent_executions=args.provisioned_concurrency,
                    opts=child,
                )

        target = LambdaTarget(
            key=name, function_name=function.name, function_arn=target_arn, qualifier=qualifier
        )
        self.routes = dict.fromkeys(OPERATIONS, target)
        self.function_name = function.name
        self.function_arn = function.arn
        self.invoke_target_arn = target_arn
        self.log_group_name = log_group.name
        self.log_group_arn = log_group.arn
        self.role_arn = role.arn
        self.register_outputs(
            {
                "function_name": self.function_name,
                "function_arn": self.function_arn,
                "invoke_target_arn": self.invoke_target_arn,
                "log_group_name": self.log_group_name,
                "role_arn": self.role_arn,
            }
        )
