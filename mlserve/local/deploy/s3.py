"""S3: the bucket and its sub-resources, objects and event notifications."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi

from mlserve.local.deploy.mapping import Context, Create, Invoke, compact, physical

BUCKET_NAME_MAX = 63


def bucket(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """CreateBucket (us-east-1 takes no location constraint)."""
    bucket_name = physical(inputs, "bucket", name, max_length=BUCKET_NAME_MAX, lower=True)
    s3 = ctx.client("s3")
    params: dict[str, Any] = {"Bucket": bucket_name}
    if ctx.region != "us-east-1":
        params["CreateBucketConfiguration"] = {"LocationConstraint": ctx.region}
    s3.create_bucket(**params)
    return bucket_name, {
        "bucket": bucket_name,
        "arn": f"arn:aws:s3:::{bucket_name}",
        "bucketDomainName": f"{bucket_name}.s3.amazonaws.com",
        "bucketRegionalDomainName": f"{bucket_name}.s3.{ctx.region}.amazonaws.com",
        "region": s3.get_bucket_location(Bucket=bucket_name).get("LocationConstraint")
        or "us-east-1",
    }


def versioning(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    config = inputs["versioningConfiguration"]
    ctx.client("s3").put_bucket_versioning(
        Bucket=inputs["bucket"],
        VersioningConfiguration=compact(
            {"Status": config["status"], "MFADelete": config.get("mfaDelete")}
        ),
    )
    return str(inputs["bucket"]), {}


def encryption(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    rules = []
    for rule in inputs["rules"]:
        default = rule.get("applyServerSideEncryptionByDefault") or {}
        rules.append(
            compact(
                {
                    "ApplyServerSideEncryptionByDefault": compact(
                        {
                            "SSEAlgorithm": default.get("sseAlgorithm"),
                            "KMSMasterKeyID": default.get("kmsMasterKeyId"),
                        }
                    ),
                    "BucketKeyEnabled": rule.get("bucketKeyEnabled"),
                }
            )
        )
    ctx.client("s3").put_bucket_encryption(
        Bucket=inputs["bucket"], ServerSideEncryptionConfiguration={"Rules": rules}
    )
    return str(inputs["bucket"]), {}


def public_access_block(
    ctx: Context, name: str, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    ctx.client("s3").put_public_access_block(
        Bucket=inputs["bucket"],
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": bool(inputs.get("blockPublicAcls")),
            "IgnorePublicAcls": bool(inputs.get("ignorePublicAcls")),
            "BlockPublicPolicy": bool(inputs.get("blockPublicPolicy")),
            "RestrictPublicBuckets": bool(inputs.get("restrictPublicBuckets")),
        },
    )
    return str(inputs["bucket"]), {}


def ownership_controls(
    ctx: Context, name: str, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    ctx.client("s3").put_bucket_ownership_controls(
        Bucket=inputs["bucket"],
        OwnershipControls={"Rules": [{"ObjectOwnership": inputs["rule"]["objectOwnership"]}]},
    )
    return str(inputs["bucket"]), {}


def bucket_policy(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ctx.client("s3").put_bucket_policy(Bucket=inputs["bucket"], Policy=str(inputs["policy"]))
    return str(inputs["bucket"]), {}


def _object_body(inputs: dict[str, Any]) -> bytes:
    source = inputs.get("source")
    if isinstance(source, pulumi.FileAsset):
        return Path(source.path).read_bytes()
    if isinstance(source, pulumi.StringAsset):
        return source.text.encode()
    if "content" in inputs and inputs["content"] is not None:
        return str(inputs["content"]).encode()
    raise ValueError(
        f"BucketObjectv2 {inputs.get('key')!r}: the local target reads a FileAsset, a "
        f"StringAsset or content; got source {type(source).__name__}"
    )


def bucket_object(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """PutObject of the source asset (or content), with its content type and metadata."""
    bucket_name, key = str(inputs["bucket"]), str(inputs["key"])
    response = ctx.client("s3").put_object(
        **compact(
            {
                "Bucket": bucket_name,
                "Key": key,
                "Body": _object_body(inputs),
                "ContentType": inputs.get("contentType"),
                "Metadata": inputs.get("metadata") or None,
                "ServerSideEncryption": inputs.get("serverSideEncryption"),
            }
        )
    )
    return key, compact(
        {
            "arn": f"arn:aws:s3:::{bucket_name}/{key}",
            "etag": str(response.get("ETag", "")).strip('"'),
            "versionId": response.get("VersionId"),
        }
    )


def _filter(config: dict[str, Any]) -> dict[str, Any]:
    rules = [
        {"Name": rule, "Value": config[key]}
        for rule, key in (("prefix", "filterPrefix"), ("suffix", "filterSuffix"))
        if config.get(key)
    ]
    return {"Filter": {"Key": {"FilterRules": rules}}} if rules else {}


def notification(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """PutBucketNotificationConfiguration: the whole configuration, as the provider writes it."""
    unsupported = [key for key in ("queues", "topics", "eventbridge") if inputs.get(key)]
    if unsupported:
        raise ValueError(
            f"BucketNotification {name}: the local target maps Lambda notifications only; "
            f"this one also has {', '.join(unsupported)}"
        )
    configuration = {
        "LambdaFunctionConfigurations": [
            compact(
                {
                    "Id": entry.get("id"),
                    "LambdaFunctionArn": entry["lambdaFunctionArn"],
                    "Events": list(entry["events"]),
                    **_filter(entry),
                }
            )
            for entry in inputs.get("lambdaFunctions") or []
        ]
    }
    ctx.client("s3").put_bucket_notification_configuration(
        Bucket=inputs["bucket"], NotificationConfiguration=configuration
    )
    return str(inputs["bucket"]), {}


RESOURCES: dict[str, Create] = {
    "aws:s3/bucket:Bucket": bucket,
    "aws:s3/bucketVersioning:BucketVersioning": versioning,
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        encryption
    ),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": public_access_block,
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": ownership_controls,
    "aws:s3/bucketPolicy:BucketPolicy": bucket_policy,
    "aws:s3/bucketObjectv2:BucketObjectv2": bucket_object,
    "aws:s3/bucketNotification:BucketNotification": notification,
}
INVOKES: dict[str, Invoke] = {}
