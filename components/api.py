"""RestApi: the HTTP API of runtime/openapi.yaml deployed as an API Gateway REST API.

runtime/openapi.yaml is the single source of the routes, request validation and gateway
responses. :func:`render_openapi` (pure) adds what only the deployment knows: the Lambda proxy
integration of each served operation and the auth of `mlserve:apiAuth`. Operations no function
serves are removed, so the API never exposes a path that nothing answers.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pulumi
import pulumi_aws as aws
import yaml

from components.settings import API_AUTH, LOG_RETENTION_DAYS
from runtime import contract

OPENAPI_PATH: Final = Path(__file__).resolve().parent.parent / "runtime" / "openapi.yaml"
HTTP_METHODS: Final = frozenset({"get", "put", "post", "delete", "options", "head", "patch"})
API_KEY_SCHEME: Final = "api_key"
AUTH_API_KEY: Final = "api-key"
AUTH_IAM: Final = "iam"
AUTH_NONE: Final = "none"
_TARGET_KEY: Final = re.compile(r"[a-z0-9][a-z0-9-]*")
ACCESS_LOG_FORMAT: Final = json.dumps(
    {
        "requestId": "$context.requestId",
        "extendedRequestId": "$context.extendedRequestId",
        "ip": "$context.identity.sourceIp",
        "requestTime": "$context.requestTime",
        "httpMethod": "$context.httpMethod",
        "resourcePath": "$context.resourcePath",
        "status": "$context.status",
        "responseLength": "$context.responseLength",
        "integrationLatency": "$context.integrationLatency",
        "errorType": "$context.error.responseType",
    }
)


def load_openapi(path: Path = OPENAPI_PATH) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict) or "paths" not in document:
        raise ValueError(f"{path}: not an OpenAPI document (no paths)")
    return document


# --- the API Gateway import rules (runtime/openapi.yaml's header) -------------------------------
# Schema keywords API Gateway's REST import ignores or refuses (its models are JSON Schema draft
# 4; "Amazon API Gateway important notes for REST APIs"): with failOnWarnings a warning stops the
# deployment, without it part of a model would silently not be validated.
UNSUPPORTED_SCHEMA_KEYWORDS: Final = (
    "anyOf",
    "oneOf",
    "not",
    "discriminator",
    "additionalProperties",
    "example",
    "readOnly",
    "writeOnly",
    "exclusiveMinimum",
    "exclusiveMaximum",
)
UNSUPPORTED_FORMATS: Final = frozenset({"int32", "int64", "decimal"})
_SCHEMA_REF: Final = re.compile(r"#/components/schemas/[A-Za-z0-9]+")
_STATUS_CODE: Final = re.compile(r"[1-5][0-9]{2}")
_PATH_SEGMENT: Final = re.compile(r"\{[A-Za-z0-9_.+-]+\}|[A-Za-z0-9._,-]+")


def import_problems(document: Mapping[str, Any]) -> list[str]:
    """What API Gateway's REST import of ``document`` would warn about or refuse, one line each
    with where it is ("" for none). Works on the source and on the rendered document."""
    problems: list[str] = []

    def walk(node: Any, where: str, in_schema: bool) -> None:
        if isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{where}/{index}", in_schema)
            return
        if not isinstance(node, Mapping):
            return
        ref = node.get("$ref")
        if isinstance(ref, str) and not _SCHEMA_REF.fullmatch(ref):
            problems.append(
                f"{where}: $ref {ref!r}: API Gateway imports $ref to #/components/schemas/<Name> "
                "(alphanumeric Name) only; inline it (a YAML anchor repeats it)"
            )
        if in_schema:
            for keyword in UNSUPPORTED_SCHEMA_KEYWORDS:
                if keyword in node:
                    problems.append(f"{where}: schema keyword {keyword!r} is not imported")
            if node.get("format") in UNSUPPORTED_FORMATS:
                problems.append(f"{where}: format {node['format']!r} is not imported")
        for key, value in node.items():
            if key == "$ref" or (isinstance(key, str) and key.startswith("x-amazon")):
                continue
            # "properties" maps names to schemas: a property may be called "example"
            child_is_schema = in_schema or key in ("schema", "schemas")
            if in_schema and key == "properties" and isinstance(value, Mapping):
                for name, schema in value.items():
                    walk(schema, f"{where}/properties/{name}", True)
                continue
            walk(value, f"{where}/{key}", child_is_schema)

    walk({k: v for k, v in document.items() if k != "components"}, "", False)
    components = document.get("components") or {}
    for section in components:
        if section not in ("schemas", "securitySchemes"):
            problems.append(
                f"/components/{section}: API Gateway imports components/schemas (and "
                "securitySchemes) only; inline these where they are used"
            )
    for name, schema in (components.get("schemas") or {}).items():
        if not re.fullmatch(r"[A-Za-z0-9]+", str(name)):
            problems.append(f"/components/schemas/{name}: a model name must be alphanumeric")
        walk(schema, f"/components/schemas/{name}", True)
    responses = document.get("x-amazon-apigateway-gateway-responses") or {}
    for response_type, response in responses.items():
        code = response.get("statusCode") if isinstance(response, Mapping) else None
        if code is not None and not (isinstance(code, str) and _STATUS_CODE.fullmatch(code)):
            problems.append(
                f"/x-amazon-apigateway-gateway-responses/{response_type}: statusCode {code!r} "
                'must be a string such as "400"'
            )
    for path in document.get("paths") or {}:
        for segment in str(path).strip("/").split("/"):
            if segment and not _PATH_SEGMENT.fullmatch(segment):
                problems.append(
                    f"/paths/{path}: segment {segment!r}: a path parameter must be a whole "
                    "segment, and segments hold letters, digits, '-', '.', ',' and '_'"
                )
    return problems


def operation_ids(spec: Mapping[str, Any]) -> list[str]:
    """Every operationId of the document, in document order."""
    return [
        op["operationId"]
        for item in spec.get("paths", {}).values()
        for method, op in item.items()
        if method in HTTP_METHODS and "operationId" in op
    ]


def lambda_integration_uri(function_arn: str, region: str) -> str:
    """The API Gateway URI invoking a Lambda function (or alias) ARN, in its partition."""
    parts = function_arn.split(":")
    if len(parts) < 7 or parts[0] != "arn" or parts[2] != "lambda":
        raise ValueError(f"not a Lambda function ARN: {function_arn!r}")
    partition = parts[1]
    return (
        f"arn:{partition}:apigateway:{region}:lambda:path/2015-03-31/functions/"
        f"{function_arn}/invocations"
    )


def render_openapi(
    spec: Mapping[str, Any], integrations: Mapping[str, str], auth: str, region: str
) -> dict[str, Any]:
    """The deployable document: ``spec`` plus integrations and auth (``spec`` is not modified).

    ``integrations`` maps operationId -> the Lambda function (or alias) ARN serving it. Every
    operation without one is removed (and a path left without operations with it).
    """
    if auth not in API_AUTH:
        raise ValueError(f"unknown auth {auth!r}; allowed: {', '.join(API_AUTH)}")
    if not region:
        raise ValueError("region is required")
    known = operation_ids(spec)
    unknown = sorted(set(integrations) - set(known))
    if unknown:
        raise ValueError(f"integrations for unknown operations {unknown}; the document has {known}")
    doc = copy.deepcopy(dict(spec))
    paths: dict[str, Any] = doc.get("paths", {})
    for path in list(paths):
        item = paths[path]
        for method in [m for m in item if m in HTTP_METHODS]:
            op = item[method]
            function_arn = integrations.get(op.get("operationId", ""))
            if function_arn is None:
                del item[method]
                continue
            op["x-amazon-apigateway-integration"] = {
                "type": "aws_proxy",
                "httpMethod": "POST",
                "uri": lambda_integration_uri(function_arn, region),
                "passthroughBehavior": "when_no_match",
            }
            _drop_non_json_models(op)
            if auth == AUTH_API_KEY:
                op["security"] = [{API_KEY_SCHEME: []}]
            elif auth == AUTH_IAM:
                op["x-amazon-apigateway-auth"] = {"type": "AWS_IAM"}
        if not any(m in HTTP_METHODS for m in item):
            del paths[path]
    if not paths:
        raise ValueError("no operation is served: the API would have no routes")
    if auth == AUTH_API_KEY:
        schemes = doc.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[API_KEY_SCHEME] = {
            "type": "apiKey",
            "name": contract.API_KEY_HEADER,
            "in": "header",
        }
        doc["x-amazon-apigateway-api-key-source"] = "HEADER"
    return doc


def _drop_non_json_models(op: dict[str, Any]) -> None:
    """API Gateway models are JSON schemas: a schema on text/csv would make its request
    validator parse CSV bodies as JSON and reject them. Non-JSON bodies reach the handler
    unvalidated (it checks them itself); the media type stays declared."""
    content = op.get("requestBody", {}).get("content", {})
    for media, spec in content.items():
        if "json" not in media.lower():
            spec.pop("schema", None)


def document_hash(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class LambdaTarget:
    """A Lambda function, or one of its aliases, serving API operations.

    ``key`` names the target in child resource names (``{api}-invoke-{key}``);
    ``function_arn`` is the ARN API Gateway invokes: the alias ARN when ``qualifier`` is set.
    """

    key: str
    function_name: pulumi.Input[str]
    function_arn: pulumi.Input[str]
    qualifier: str | None = None

    def __post_init__(self) -> None:
        if not _TARGET_KEY.fullmatch(self.key):
            raise ValueError(f"LambdaTarget.key must match [a-z0-9][a-z0-9-]*, got {self.key!r}")
        if self.qualifier is not None and not self.qualifier:
            raise ValueError("LambdaTarget.qualifier must be None or a non-empty alias name")


@dataclass(frozen=True)
class RestApiArgs:
    routes: Mapping[str, LambdaTarget]  # operationId -> the function serving it
    api_auth: str = AUTH_API_KEY
    throttle_rate: int = 50
    throttle_burst: int = 100
    log_retention_days: int = 14
    # Stage access logs need API Gateway's account-level CloudWatch role (a region-wide
    # singleton this stack does not own), so they are opt-in.
    access_logs: bool = False
    spec_path: Path = OPENAPI_PATH
    region: str | None = None  # default: the provider's region

    def __post_init__(self) -> None:
        if not self.routes:
            raise ValueError("RestApiArgs.routes: at least one operation must be served")
        known = operation_ids(load_openapi(self.spec_path))
        unknown = sorted(set(self.routes) - set(known))
        if unknown:
            raise ValueError(f"RestApiArgs.routes: unknown operations {unknown}; allowed: {known}")
        by_key: dict[str, LambdaTarget] = {}
        for target in self.routes.values():
            if by_key.setdefault(target.key, target) is not target:
                raise ValueError(f"RestApiArgs.routes: two different targets named {target.key!r}")
        if self.api_auth not in API_AUTH:
            raise ValueError(
                f"RestApiArgs.api_auth: unknown {self.api_auth!r}; allowed: {', '.join(API_AUTH)}"
            )
        if self.throttle_rate <= 0:
            raise ValueError(f"RestApiArgs.throttle_rate must be > 0, got {self.throttle_rate}")
        if self.throttle_burst < 1:
            raise ValueError(f"RestApiArgs.throttle_burst must be >= 1, got {self.throttle_burst}")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ValueError(
                f"RestApiArgs.log_retention_days: {self.log_retention_days} is not a CloudWatch "
                "retention value"
            )

    @property
    def targets(self) -> list[LambdaTarget]:
        """The distinct targets, in route order."""
        seen: dict[str, LambdaTarget] = {}
        for target in self.routes.values():
            seen.setdefault(target.key, target)
        return list(seen.values())


class RestApi(pulumi.ComponentResource):
    """REST API + deployment + stage (throttled) + auth, invoking the routed Lambda functions."""

    url: pulumi.Output[str]
    api_key_value: pulumi.Output[str] | None
    rest_api_id: pulumi.Output[str]
    api_name: pulumi.Output[str]
    stage_name: pulumi.Output[str]
    execution_arn: pulumi.Output[str]
    body: pulumi.Output[str]

    def __init__(
        self, name: str, args: RestApiArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlserve:index:RestApi", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        spec = load_openapi(args.spec_path)
        # At preview already: what API Gateway's import would refuse (failOnWarnings below).
        problems = import_problems(spec)
        if problems:
            raise ValueError(
                f"{args.spec_path} would not import into API Gateway: " + "; ".join(problems)
            )
        region: pulumi.Input[str] = (
            args.region
            if args.region is not None
            else aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        )
        operations = list(args.routes)
        auth = args.api_auth

        def render(values: list[Any]) -> str:
            resolved_region, *arns = values
            integrations = dict(zip(operations, arns, strict=True))
            doc = render_openapi(spec, integrations, auth, resolved_region)
            rendered = import_problems(doc)
            if rendered:
                raise ValueError("the rendered API would not import: " + "; ".join(rendered))
            return json.dumps(doc, sort_keys=True, separators=(",", ":"))

        self.body = pulumi.Output.all(
            region, *(args.routes[op].function_arn for op in operations)
        ).apply(render)

        api = aws.apigateway.RestApi(
            f"{name}-api",
            body=self.body,
            description="mlserve: predictions from an XGBoost model",
            endpoint_configuration={"types": "REGIONAL"},
            # A warning of the OpenAPI import (a feature API Gateway ignores) stops the
            # deployment instead of silently dropping part of a model or route.
            fail_on_warnings=True,
            opts=child,
        )
        deployment = aws.apigateway.Deployment(
            f"{name}-deployment",
            rest_api=api.id,
            description="mlserve API deployment",
            # A new deployment whenever the document changes; the stage moves to it before the
            # old one is deleted (Pulumi replaces create-before-delete).
            triggers={"redeployment": self.body.apply(document_hash)},
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=False),
        )
        stage_args: dict[str, Any] = {}
        if args.access_logs:
            access_log_group = aws.cloudwatch.LogGroup(
                f"{name}-access-logs", retention_in_days=args.log_retention_days, opts=child
            )
            stage_args["access_log_settings"] = {
                "destination_arn": access_log_group.arn,
                "format": ACCESS_LOG_FORMAT,
            }
        stage = aws.apigateway.Stage(
            f"{name}-stage",
            rest_api=api.id,
            deployment=deployment.id,
            stage_name=contract.STAGE_NAME,
            opts=child,
            **stage_args,
        )
        aws.apigateway.MethodSettings(
            f"{name}-method-settings",
            rest_api=api.id,
            stage_name=stage.stage_name,
            method_path="*/*",
            settings={
                "metrics_enabled": True,
                "throttling_rate_limit": float(args.throttle_rate),
                "throttling_burst_limit": args.throttle_burst,
            },
            opts=child,
        )

        self.api_key_value = None
        if auth == AUTH_API_KEY:
            key = aws.apigateway.ApiKey(
                f"{name}-key", description="mlserve API key", enabled=True, opts=child
            )
            plan = aws.apigateway.UsagePlan(
                f"{name}-usage-plan",
                description="mlserve API usage plan",
                api_stages=[{"api_id": api.id, "stage": stage.stage_name}],
                throttle_settings={
                    "rate_limit": float(args.throttle_rate),
                    "burst_limit": args.throttle_burst,
                },
                opts=child,
            )
            aws.apigateway.UsagePlanKey(
                f"{name}-usage-plan-key",
                key_id=key.id,
                key_type="API_KEY",
                usage_plan_id=plan.id,
                opts=child,
            )
            self.api_key_value = pulumi.Output.secret(key.value)

        for target in args.targets:
            aws.lambda_.Permission(
                f"{name}-invoke-{target.key}",
                action="lambda:InvokeFunction",
                function=target.function_name,
                qualifier=target.qualifier,
                principal="apigateway.amazonaws.com",
                source_arn=pulumi.Output.concat(api.execution_arn, "/*/*"),
                opts=child,
            )

        self.url = stage.invoke_url
        self.rest_api_id = api.id
        self.api_name = api.name  # CloudWatch's ApiName dimension
        self.stage_name = stage.stage_name
        self.execution_arn = api.execution_arn
        self.register_outputs(
            {
                "url": self.url,
                "api_key_value": self.api_key_value,
                "rest_api_id": self.rest_api_id,
                "api_name": self.api_name,
                "execution_arn": self.execution_arn,
            }
        )
