"""DataCapture: the predictor's capture log lines -> capture/ objects in the model bucket.

The predictor prints one capture line per sampled request (runtime/capture.py) to its own log
group. This component subscribes a small function to that group: a subscription filter with
``contract.CAPTURE_FILTER_PATTERN`` (only the capture lines) whose destination is the capture
function (``runtime.handlers.capture.handler``), and the resource-based permission that lets
CloudWatch Logs invoke it for that log group only. The function may write objects under
``capture/`` of the model bucket and its own logs, nothing else.

Why a log subscription (docs/operations.md, "Data capture"): the request path makes no AWS call
(a Firehose PutRecord or an S3 PutObject would add a network round trip to every sampled
answer); Lambda ships the function's stdout to CloudWatch Logs after the fact, and the
subscription delivers the lines in batches within seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components import policies
from components.functions import lambda_function
from components.settings import LAMBDA_ARCHITECTURES, LOG_RETENTION_DAYS
from runtime import contract

LOGS_SERVICE = "logs.amazonaws.com"
CAPTURE_MEMORY_MB = 256
CAPTURE_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class DataCaptureArgs:
    code: pulumi.Archive = field(compare=False)
    layer_arn: pulumi.Input[str] = field(compare=False)
    source_log_group_name: pulumi.Input[str] = field(compare=False)
    source_log_group_arn: pulumi.Input[str] = field(compare=False)
    bucket_name: pulumi.Input[str] = field(compare=False)
    bucket_arn: pulumi.Input[str] = field(compare=False)
    runtime: str  # the Lambda runtime the code and layer were built for (LambdaPackage)
    lambda_architecture: str = "arm64"
    log_retention_days: int = 14

    def __post_init__(self) -> None:
        if self.lambda_architecture not in LAMBDA_ARCHITECTURES:
            raise ValueError(
                f"DataCaptureArgs: lambda_architecture {self.lambda_architecture!r} not in "
                f"{LAMBDA_ARCHITECTURES}"
            )
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ValueError(
                f"DataCaptureArgs: log_retention_days {self.log_retention_days} is not a "
                "CloudWatch value"
            )


class DataCapture(pulumi.ComponentResource):
    """The capture function, its role and log group, the invoke permission, the filter."""

    function_name: pulumi.Output[str]
    function_arn: pulumi.Output[str]
    log_group_name: pulumi.Output[str]
    role_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: DataCaptureArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlserve:index:DataCapture", name, None, opts)
        parts = lambda_function(
            self,
            name,
            description="mlserve data capture: the predictor's capture records -> capture/ in S3",
            role_description="mlserve data capture: write capture/ objects, write its own logs",
            handler=contract.HANDLER_CAPTURE,
            policy=lambda log_group_arn: pulumi.Output.all(args.bucket_arn, log_group_arn).apply(
                lambda arns: json.dumps(policies.capture_writer_policy(arns[0], arns[1]))
            ),
            code=args.code,
            layer_arn=args.layer_arn,
            runtime=args.runtime,
            architecture=args.lambda_architecture,
            memory=CAPTURE_MEMORY_MB,
            timeout=CAPTURE_TIMEOUT_SECONDS,
            environment={
                contract.ENV_DATA_BUCKET: args.bucket_name,
                contract.ENV_POWERTOOLS_SERVICE_NAME: contract.SERVICE_NAME,
                contract.ENV_POWERTOOLS_METRICS_NAMESPACE: contract.METRICS_NAMESPACE,
            },
            log_retention_days=args.log_retention_days,
        )
        function = parts.function
        # CloudWatch Logs may invoke the function for the predictor's log group only.
        permission = aws.lambda_.Permission(
            f"{name}-logs-permission",
            action="lambda:InvokeFunction",
            function=function.name,
            principal=LOGS_SERVICE,
            source_arn=pulumi.Output.concat(args.source_log_group_arn, ":*"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.cloudwatch.LogSubscriptionFilter(
            f"{name}-subscription",
            log_group=args.source_log_group_name,
            filter_pattern=contract.CAPTURE_FILTER_PATTERN,
            destination_arn=function.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[permission]),
        )
        self.function_name = function.name
        self.function_arn = function.arn
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
