"""One Lambda function the mlserve way: its own log group, a role with exactly the grants its
code uses, and the function logging into that group. Every architecture builds its functions
with :func:`lambda_function`, so the shape (names, logging, ordering) exists once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components import policies


@dataclass(frozen=True)
class FunctionParts:
    function: aws.lambda_.Function
    role: aws.iam.Role
    log_group: aws.cloudwatch.LogGroup


def lambda_function(
    parent: pulumi.Resource,
    name: str,
    *,
    description: str,
    role_description: str,
    handler: str,
    policy: Callable[[pulumi.Output[str]], pulumi.Input[str]],
    code: pulumi.Archive,
    layer_arn: pulumi.Input[str],
    runtime: str,
    architecture: str,
    memory: int,
    timeout: int,
    environment: Mapping[str, pulumi.Input[str]],
    log_retention_days: int,
    **function_args: Any,
) -> FunctionParts:
    """Children of ``parent`` named ``{name}-logs``, ``-role``, ``-policy``, ``-function``.

    ``runtime`` is the one the code and layer were built for (``LambdaPackage.runtime``).

    ``policy`` receives the log group's ARN and returns the role's policy document (JSON), so
    the function may write its own logs and nothing else beyond what the caller grants.
    """
    child = pulumi.ResourceOptions(parent=parent)
    log_group = aws.cloudwatch.LogGroup(
        f"{name}-logs", retention_in_days=log_retention_days, opts=child
    )
    role = aws.iam.Role(
        f"{name}-role",
        description=role_description,
        assume_role_policy=json.dumps(policies.lambda_assume_role_policy()),
        opts=child,
    )
    role_policy = aws.iam.RolePolicy(
        f"{name}-policy", role=role.id, policy=policy(log_group.arn), opts=child
    )
    function = aws.lambda_.Function(
        f"{name}-function",
        description=description,
        role=role.arn,
        runtime=runtime,
        handler=handler,
        architectures=[architecture],
        memory_size=memory,
        timeout=timeout,
        code=code,
        layers=[layer_arn],
        logging_config={"log_format": "JSON", "log_group": log_group.name},
        environment={"variables": dict(environment)},
        # The grants exist before the first invocation can need them.
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[role_policy]),
        **function_args,
    )
    return FunctionParts(function=function, role=role, log_group=log_group)
