"""AWS Batch: compute environments, job queues, the job definition."""

from __future__ import annotations

import json
from typing import Any

from mlserve.local.deploy import moto_fixes
from mlserve.local.deploy.mapping import (
    Context,
    Create,
    Invoke,
    compact,
    integer,
    physical,
    revisioned,
)

# Provider input -> Batch API field of an evaluateOnExit rule.
EVALUATE_ON_EXIT_FIELDS = {
    "action": "action",
    "onExitCode": "onExitCode",
    "onReason": "onReason",
    "onStatusReason": "onStatusReason",
}


def compute_environment(
    ctx: Context, name: str, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    env_name = physical(inputs, "name", name, max_length=128)
    resources = inputs.get("computeResources") or {}
    client = ctx.client("batch")
    created = client.create_compute_environment(
        **compact(
            {
                "computeEnvironmentName": env_name,
                "type": inputs["type"],
                "state": inputs.get("state"),
                "serviceRole": inputs.get("serviceRole")
                or moto_fixes.batch_service_role(ctx.client("iam")),
                "computeResources": (
                    compact(
                        {
                            "type": resources["type"],
                            "maxvCpus": integer(resources["maxVcpus"]),
                            "subnets": list(resources.get("subnets") or []),
                            "securityGroupIds": list(resources.get("securityGroupIds") or []),
                        }
                    )
                    if resources
                    else None
                ),
            }
        )
    )
    arn = created["computeEnvironmentArn"]
    described = client.describe_compute_environments(computeEnvironments=[arn])
    environment = described["computeEnvironments"][0]
    return arn, {
        "name": env_name,
        "arn": arn,
        "ecsClusterArn": environment.get("ecsClusterArn", ""),
        "status": environment.get("status"),
    }


def job_queue(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    queue_name = physical(inputs, "name", name, max_length=128)
    created = ctx.client("batch").create_job_queue(
        jobQueueName=queue_name,
        state=inputs.get("state") or "ENABLED",
        priority=integer(inputs["priority"]),
        computeEnvironmentOrder=[
            {"order": integer(o["order"]), "computeEnvironment": o["computeEnvironment"]}
            for o in inputs["computeEnvironmentOrders"]
        ],
    )
    arn = created["jobQueueArn"]
    return arn, {"name": queue_name, "arn": arn}


def _retry_strategy(strategy: dict[str, Any] | None) -> dict[str, Any] | None:
    if not strategy:
        return None
    return compact(
        {
            "attempts": integer(strategy["attempts"]) if "attempts" in strategy else None,
            "evaluateOnExit": [
                {EVALUATE_ON_EXIT_FIELDS[k]: v for k, v in rule.items()}
                for rule in strategy.get("evaluateOnExits") or []
            ]
            or None,
        }
    )


def job_definition(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """RegisterJobDefinition: containerProperties JSON as rendered, retries, attempt timeout."""
    definition_name = physical(inputs, "name", name, max_length=128)
    timeout = inputs.get("timeout") or {}
    registered = ctx.client("batch").register_job_definition(
        **compact(
            {
                "jobDefinitionName": definition_name,
                "type": inputs["type"],
                "containerProperties": (
                    json.loads(str(inputs["containerProperties"]))
                    if inputs.get("containerProperties")
                    else None
                ),
                "platformCapabilities": inputs.get("platformCapabilities"),
                "retryStrategy": _retry_strategy(inputs.get("retryStrategy")),
                "timeout": (
                    {"attemptDurationSeconds": integer(timeout["attemptDurationSeconds"])}
                    if timeout.get("attemptDurationSeconds")
                    else None
                ),
                "propagateTags": inputs.get("propagateTags"),
                "parameters": inputs.get("parameters") or None,
            }
        )
    )
    arn = registered["jobDefinitionArn"]
    return arn, {"name": definition_name, **revisioned(arn, registered["revision"], "arnPrefix")}


RESOURCES: dict[str, Create] = {
    "aws:batch/computeEnvironment:ComputeEnvironment": compute_environment,
    "aws:batch/jobQueue:JobQueue": job_queue,
    "aws:batch/jobDefinition:JobDefinition": job_definition,
}
INVOKES: dict[str, Invoke] = {}
