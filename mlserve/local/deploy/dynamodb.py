"""DynamoDB: CreateTable (with its global secondary indexes), then its time-to-live and
point-in-time recovery."""

from __future__ import annotations

from typing import Any

from mlserve.local.deploy.mapping import Context, Create, Invoke, compact, physical


def _key_schema(hash_key: str, range_key: str | None) -> list[dict[str, str]]:
    keys = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key:
        keys.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return keys


def _global_secondary_index(index: dict[str, Any]) -> dict[str, Any]:
    projection = compact(
        {
            "ProjectionType": index.get("projectionType") or "ALL",
            "NonKeyAttributes": index.get("nonKeyAttributes") or None,
        }
    )
    return {
        "IndexName": index["name"],
        "KeySchema": _key_schema(index["hashKey"], index.get("rangeKey")),
        "Projection": projection,
    }


def table(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    table_name = physical(inputs, "name", name, max_length=255)
    keys = _key_schema(inputs["hashKey"], inputs.get("rangeKey"))
    indexes = [_global_secondary_index(i) for i in inputs.get("globalSecondaryIndexes") or []]
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
                "GlobalSecondaryIndexes": indexes or None,
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
