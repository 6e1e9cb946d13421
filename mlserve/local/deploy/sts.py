"""The account, region and partition data sources (aws:index/*), answered by moto's STS."""

from __future__ import annotations

from typing import Any

from mlserve.local.deploy.mapping import Context, Create, Invoke


def get_region(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": ctx.region,
        "name": ctx.region,
        "region": ctx.region,
        "endpoint": f"ec2.{ctx.region}.amazonaws.com",
    }


def get_caller_identity(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    identity = ctx.client("sts").get_caller_identity()
    return {
        "id": identity["Account"],
        "accountId": identity["Account"],
        "arn": identity["Arn"],
        "userId": identity["UserId"],
    }


def get_partition(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return {"id": "aws", "partition": "aws", "dnsSuffix": "amazonaws.com"}


RESOURCES: dict[str, Create] = {}
INVOKES: dict[str, Invoke] = {
    "aws:index/getRegion:getRegion": get_region,
    "aws:index/getCallerIdentity:getCallerIdentity": get_caller_identity,
    "aws:index/getPartition:getPartition": get_partition,
}
