"""CloudWatch Logs: log groups and their retention, subscription filters (moto stores them; the
emulator's log delivery, mlserve/local/logs.py, delivers what the deployed filters select)."""

from __future__ import annotations

from typing import Any

from mlserve.local.deploy.mapping import Context, Create, Invoke, compact, integer, physical


def log_group(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    group = physical(inputs, "name", name, max_length=512)
    logs = ctx.client("logs")
    logs.create_log_group(**compact({"logGroupName": group, "kmsKeyId": inputs.get("kmsKeyId")}))
    retention = integer(inputs.get("retentionInDays") or 0)
    if retention:  # 0 = never expire: no retention policy
        logs.put_retention_policy(logGroupName=group, retentionInDays=retention)
    described = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    arn = next(g["arn"] for g in described if g["logGroupName"] == group)
    # The provider reports the ARN without the ":*" the API appends.
    return group, {"name": group, "arn": arn.removesuffix(":*")}


def subscription_filter(
    ctx: Context, name: str, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """PutSubscriptionFilter: the log group's events matching the pattern go to the destination."""
    filter_name = physical(inputs, "name", name, max_length=512)
    group = str(inputs["logGroup"])
    ctx.client("logs").put_subscription_filter(
        **compact(
            {
                "logGroupName": group,
                "filterName": filter_name,
                "filterPattern": str(inputs.get("filterPattern") or ""),
                "destinationArn": inputs["destinationArn"],
                "roleArn": inputs.get("roleArn"),
                "distribution": inputs.get("distribution"),
            }
        )
    )
    # The provider's id: "cwlsf-<hash of filter name + log group>"; any stable id serves here.
    return f"cwlsf-{filter_name}", {"name": filter_name}


RESOURCES: dict[str, Create] = {
    "aws:cloudwatch/logGroup:LogGroup": log_group,
    "aws:cloudwatch/logSubscriptionFilter:LogSubscriptionFilter": subscription_filter,
}
INVOKES: dict[str, Invoke] = {}
