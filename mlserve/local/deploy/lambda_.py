"""Lambda: layer versions, functions, aliases and invoke permissions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi

from mlserve.local.deploy.mapping import Context, Create, Invoke, compact, integer, physical

# Lambda's defaults when the program leaves a value unset.
DEFAULT_TIMEOUT = 3
DEFAULT_MEMORY = 128


def invoke_arn(ctx: Context, function_arn: str) -> str:
    """The ARN API Gateway integrations call, as the provider computes it."""
    return (
        f"arn:aws:apigateway:{ctx.region}:lambda:path/2015-03-31/functions/"
        f"{function_arn}/invocations"
    )


def _zip_bytes(archive: Any, what: str) -> bytes:
    if isinstance(archive, pulumi.FileArchive) and Path(archive.path).is_file():
        return Path(archive.path).read_bytes()
    raise ValueError(f"{what}: the local target uploads a zip FileArchive; got {archive!r}")


def _code(inputs: dict[str, Any], what: str) -> dict[str, Any]:
    if inputs.get("s3Bucket"):
        return compact(
            {
                "S3Bucket": inputs["s3Bucket"],
                "S3Key": inputs["s3Key"],
                "S3ObjectVersion": inputs.get("s3ObjectVersion"),
            }
        )
    return {"ZipFile": _zip_bytes(inputs.get("code"), what)}


def layer_version(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """PublishLayerVersion from the uploaded object (or the zip itself)."""
    layer_name = str(inputs["layerName"])
    published = ctx.client("lambda").publish_layer_version(
        **compact(
            {
                "LayerName": layer_name,
                "Description": inputs.get("description"),
                "Content": _code(inputs, f"LayerVersion {layer_name}"),
                "CompatibleRuntimes": inputs.get("compatibleRuntimes"),
                "CompatibleArchitectures": inputs.get("compatibleArchitectures"),
                "LicenseInfo": inputs.get("licenseInfo"),
            }
        )
    )
    arn = published["LayerVersionArn"]
    return arn, {
        "arn": arn,
        "layerArn": published["LayerArn"],
        "version": str(published["Version"]),
        "createdDate": published.get("CreatedDate"),
        "codeSize": published.get("Content", {}).get("CodeSize"),
    }


def _logging_config(inputs: dict[str, Any]) -> dict[str, Any] | None:
    config = inputs.get("loggingConfig")
    if not config:
        return None
    return compact(
        {
            "LogFormat": config.get("logFormat"),
            "LogGroup": config.get("logGroup"),
            "ApplicationLogLevel": config.get("applicationLogLevel"),
            "SystemLogLevel": config.get("systemLogLevel"),
        }
    )


def _function_outputs(ctx: Context, configuration: dict[str, Any]) -> dict[str, Any]:
    arn = configuration["FunctionArn"]
    version = configuration["Version"]
    qualified = f"{arn}:{version}"
    return {
        "name": configuration["FunctionName"],
        "arn": arn,
        "invokeArn": invoke_arn(ctx, arn),
        "version": version,
        "qualifiedArn": qualified,
        "qualifiedInvokeArn": invoke_arn(ctx, qualified),
        "lastModified": configuration.get("LastModified"),
        "sourceCodeHash": configuration.get("CodeSha256"),
    }


def function(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """CreateFunction with the handler, environment, memory, timeout, architectures, layers,
    logging, tracing and SnapStart the program declared; the published version when asked."""
    function_name = physical(inputs, "name", name)
    environment = (inputs.get("environment") or {}).get("variables")
    tracing = inputs.get("tracingConfig") or {}
    snap_start = inputs.get("snapStart") or {}
    client = ctx.client("lambda")
    client.create_function(
        **compact(
            {
                "FunctionName": function_name,
                "Runtime": inputs.get("runtime"),
                "Role": inputs["role"],
                "Handler": inputs.get("handler"),
                "Code": _code(inputs, f"Function {function_name}"),
                "Description": inputs.get("description"),
                "Timeout": integer(inputs.get("timeout", DEFAULT_TIMEOUT)),
                "MemorySize": integer(inputs.get("memorySize", DEFAULT_MEMORY)),
                "Publish": bool(inputs.get("publish")),
                "Environment": {"Variables": dict(environment)} if environment else None,
                "Architectures": inputs.get("architectures"),
                "Layers": inputs.get("layers"),
                "LoggingConfig": _logging_config(inputs),
                "TracingConfig": {"Mode": tracing["mode"]} if tracing.get("mode") else None,
                "SnapStart": (
                    {"ApplyOn": snap_start["applyOn"]} if snap_start.get("applyOn") else None
                ),
            }
        )
    )
    # The unqualified configuration plus the version CreateFunction published (if any).
    configuration = client.get_function_configuration(FunctionName=function_name)
    if inputs.get("publish"):
        versions = client.list_versions_by_function(FunctionName=function_name)["Versions"]
        configuration = {
            **configuration,
            "Version": max((v["Version"] for v in versions if v["Version"] != "$LATEST"), key=int),
        }
    return function_name, _function_outputs(ctx, configuration)


def alias(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    created = ctx.client("lambda").create_alias(
        **compact(
            {
                "FunctionName": inputs["functionName"],
                "Name": inputs["name"],
                "FunctionVersion": inputs["functionVersion"],
                "Description": inputs.get("description"),
            }
        )
    )
    arn = created["AliasArn"]
    return arn, {"arn": arn, "invokeArn": invoke_arn(ctx, arn)}


def permission(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """AddPermission: the resource-based policy statement letting a service invoke a function."""
    statement_id = physical(inputs, "statementId", name, max_length=100)
    ctx.client("lambda").add_permission(
        **compact(
            {
                "FunctionName": inputs["function"],
                "StatementId": statement_id,
                "Action": inputs["action"],
                "Principal": inputs["principal"],
                "SourceArn": inputs.get("sourceArn"),
                "SourceAccount": inputs.get("sourceAccount"),
                "Qualifier": inputs.get("qualifier"),
            }
        )
    )
    return statement_id, {"statementId": statement_id}


RESOURCES: dict[str, Create] = {
    "aws:lambda/layerVersion:LayerVersion": layer_version,
    "aws:lambda/function:Function": function,
    "aws:lambda/alias:Alias": alias,
    "aws:lambda/permission:Permission": permission,
}
INVOKES: dict[str, Invoke] = {}
