"""CloudWatch Logs: log groups and their retention (moto stores them; nothing delivers logs)."""

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


RESOURCES: dict[str, Create] = {"aws:cloudwatch/logGroup:LogGroup": log_group}
INVOKES: dict[str, Invoke] = {}
