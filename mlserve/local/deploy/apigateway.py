"""API Gateway (REST): the API from its rendered OpenAPI body, deployment, stage, method
settings, API key and usage plan."""

from __future__ import annotations

import json
from typing import Any

from mlserve.local.deploy import moto_fixes
from mlserve.local.deploy.mapping import Context, Create, Invoke, compact, integer, physical

# MethodSettings input -> the stage patch path suffix (UpdateStage /{resource}/{method}/...).
METHOD_SETTINGS_PATHS = {
    "metricsEnabled": "metrics/enabled",
    "loggingLevel": "logging/loglevel",
    "dataTraceEnabled": "logging/dataTrace",
    "throttlingBurstLimit": "throttling/burstLimit",
    "throttlingRateLimit": "throttling/rateLimit",
    "cachingEnabled": "caching/enabled",
    "cacheTtlInSeconds": "caching/ttlInSeconds",
    "cacheDataEncrypted": "caching/dataEncrypted",
}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def execution_arn(ctx: Context, api_id: str) -> str:
    return f"arn:aws:execute-api:{ctx.region}:{ctx.account}:{api_id}"


def rest_api(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """CreateRestApi, then PutRestApi (mode overwrite) with the body, as the provider does."""
    api_name = physical(inputs, "name", name, max_length=1024)
    endpoint = inputs.get("endpointConfiguration") or {}
    types = endpoint.get("types")
    client = ctx.client("apigateway")
    created = client.create_rest_api(
        **compact(
            {
                "name": api_name,
                "description": inputs.get("description"),
                "endpointConfiguration": (
                    {"types": [types] if isinstance(types, str) else list(types)} if types else None
                ),
                "apiKeySource": inputs.get("apiKeySource"),
                "binaryMediaTypes": inputs.get("binaryMediaTypes"),
            }
        )
    )
    api_id = created["id"]
    body = inputs.get("body")
    if body:
        client.put_rest_api(
            restApiId=api_id,
            mode="overwrite",
            failOnWarnings=bool(inputs.get("failOnWarnings")),
            body=json.dumps(moto_fixes.openapi_for_moto(json.loads(str(body)))).encode(),
        )
    root = next(
        r["id"] for r in client.get_resources(restApiId=api_id)["items"] if r["path"] == "/"
    )
    return api_id, {
        "name": api_name,
        "rootResourceId": root,
        "arn": f"arn:aws:apigateway:{ctx.region}::/restapis/{api_id}",
        "executionArn": execution_arn(ctx, api_id),
        "createdDate": str(created.get("createdDate", "")),
    }


def deployment(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    api_id = str(inputs["restApi"])
    created = ctx.client("apigateway").create_deployment(
        **compact(
            {
                "restApiId": api_id,
                "description": inputs.get("description"),
                "variables": inputs.get("variables"),
            }
        )
    )
    return created["id"], {"createdDate": str(created.get("createdDate", ""))}


def stage(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """CreateStage on the deployment, then its access-log settings (UpdateStage).

    ``invokeUrl`` is AWS's URL of the stage, as the provider reports it: moto serves no stage
    there; the emulator's gateway serves the deployed API on 127.0.0.1."""
    api_id, stage_name = str(inputs["restApi"]), str(inputs["stageName"])
    client = ctx.client("apigateway")
    client.create_stage(
        **compact(
            {
                "restApiId": api_id,
                "stageName": stage_name,
                "deploymentId": inputs["deployment"],
                "description": inputs.get("description"),
                "variables": inputs.get("variables"),
                "tracingEnabled": inputs.get("xrayTracingEnabled"),
            }
        )
    )
    access = inputs.get("accessLogSettings")
    if access:
        client.update_stage(
            restApiId=api_id,
            stageName=stage_name,
            patchOperations=[
                {"op": "replace", "path": "/accessLogSettings/destinationArn",
                 "value": access["destinationArn"]},
                {"op": "replace", "path": "/accessLogSettings/format", "value": access["format"]},
            ],
        )  # fmt: skip
    stage_execution_arn = f"{execution_arn(ctx, api_id)}/{stage_name}"
    return f"ags-{api_id}-{stage_name}", {
        "invokeUrl": f"https://{api_id}.execute-api.{ctx.region}.amazonaws.com/{stage_name}",
        "executionArn": stage_execution_arn,
        "arn": f"arn:aws:apigateway:{ctx.region}::/restapis/{api_id}/stages/{stage_name}",
    }


def method_settings(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """UpdateStage with one patch operation per declared method setting."""
    api_id, stage_name, path = inputs["restApi"], inputs["stageName"], inputs["methodPath"]
    settings = inputs.get("settings") or {}
    unknown = sorted(set(settings) - set(METHOD_SETTINGS_PATHS))
    if unknown:
        raise ValueError(f"MethodSettings {name}: unmapped settings {unknown}")
    operations = [
        {"op": "replace", "path": f"/{path}/{METHOD_SETTINGS_PATHS[key]}", "value": _text(value)}
        for key, value in settings.items()
    ]
    ctx.client("apigateway").update_stage(
        restApiId=api_id, stageName=stage_name, patchOperations=operations
    )
    return f"{api_id}-{stage_name}-{path}", {}


def api_key(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    key_name = physical(inputs, "name", name, max_length=1024)
    created = ctx.client("apigateway").create_api_key(
        **compact(
            {
                "name": key_name,
                "description": inputs.get("description"),
                "enabled": bool(inputs.get("enabled", True)),
                "value": inputs.get("value"),
            }
        )
    )
    return created["id"], {
        "name": key_name,
        "value": created["value"],
        "arn": f"arn:aws:apigateway:{ctx.region}::/apikeys/{created['id']}",
    }


def usage_plan(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    plan_name = physical(inputs, "name", name, max_length=1024)
    throttle = inputs.get("throttleSettings") or {}
    quota = inputs.get("quotaSettings") or {}
    created = ctx.client("apigateway").create_usage_plan(
        **compact(
            {
                "name": plan_name,
                "description": inputs.get("description"),
                "apiStages": [
                    {"apiId": s["apiId"], "stage": s["stage"]} for s in inputs.get("apiStages", [])
                ],
                "throttle": (
                    compact(
                        {
                            "burstLimit": (
                                integer(throttle["burstLimit"])
                                if "burstLimit" in throttle
                                else None
                            ),
                            "rateLimit": throttle.get("rateLimit"),
                        }
                    )
                    if throttle
                    else None
                ),
                "quota": (
                    compact(
                        {
                            "limit": integer(quota["limit"]),
                            "offset": integer(quota.get("offset", 0)),
                            "period": quota["period"],
                        }
                    )
                    if quota
                    else None
                ),
            }
        )
    )
    return created["id"], {
        "name": plan_name,
        "arn": f"arn:aws:apigateway:{ctx.region}::/usageplans/{created['id']}",
    }


def usage_plan_key(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    created = ctx.client("apigateway").create_usage_plan_key(
        usagePlanId=inputs["usagePlanId"], keyId=inputs["keyId"], keyType=inputs["keyType"]
    )
    return created["id"], {"name": created.get("name"), "value": created.get("value")}


def openapi_body(inputs: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document a RestApi was deployed with."""
    return dict(json.loads(str(inputs["body"])))


RESOURCES: dict[str, Create] = {
    "aws:apigateway/restApi:RestApi": rest_api,
    "aws:apigateway/deployment:Deployment": deployment,
    "aws:apigateway/stage:Stage": stage,
    "aws:apigateway/methodSettings:MethodSettings": method_settings,
    "aws:apigateway/apiKey:ApiKey": api_key,
    "aws:apigateway/usagePlan:UsagePlan": usage_plan,
    "aws:apigateway/usagePlanKey:UsagePlanKey": usage_plan_key,
}
INVOKES: dict[str, Invoke] = {}
