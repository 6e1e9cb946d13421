"""DynamoDB: CreateTable, then its time-to-live and point-in-time recovery."""

from __future__ import annotations

from typing import Any

from mlserve.local.deploy.mapping import Context, Create, Invoke, compact, physical


def table(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    table_name = physical(inputs, "name", name, max_length=255)
    keys = [{"AttributeName": inputs["hashKey"], "KeyType": "HASH"}]
    if inputs.get("rangeKey"):
        keys.append({"AttributeName": inputs["rangeKey"], "KeyType": "RANGE"})
    sse = inputs.get("serverSideEncryption") or {}
    billing = inputs.get("billingMode") or "PROVISIONED"
    dynamodb = ctx.client("dynamodb")
    created = dynamodb.create_table(
        **compact(
            {
                "TableName": table_name,
                "AttributeDefinitions": [
                    {"AttributeName": a["name"], "AttributeType": a["type"]}
                    for a in inputs["attributes"]
                ],
                "KeySchema": keys,
                "BillingMode": billing,
                "SSESpecification": (
                    compact({"Enabled": True, "KMSMasterKeyId": sse.get("kmsKeyArn")})
                    if sse.get("enabled")
                    else None
                ),
                "DeletionProtectionEnabled": inputs.get("deletionProtectionEnabled"),
            }
        )
    )["TableDescription"]
    ttl = inputs.get("ttl") or {}
    if ttl.get("enabled"):
        dynamodb.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["attributeName"]},
        )
    if (inputs.get("pointInTimeRecovery") or {}).get("enabled"):
        dynamodb.update_continuous_backups(
            TableName=table_name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    return table_name, {"name": table_name, "arn": created["TableArn"]}


RESOURCES: dict[str, Create] = {"aws:dynamodb/table:Table": table}
INVOKES: dict[str, Invoke] = {}
