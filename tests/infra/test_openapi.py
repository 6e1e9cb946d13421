"""components/api.py's pure parts: render_openapi and the component's argument checks."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.api import (
    LambdaTarget,
    RestApiArgs,
    import_problems,
    lambda_integration_uri,
    load_openapi,
    operation_ids,
    render_openapi,
)

REGION = "eu-west-1"
FN = "arn:aws:lambda:eu-west-1:123456789012:function:predictor-function-1a2b"
ALIAS = f"{FN}:live"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_openapi()


def operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        op["operationId"]: op
        for item in doc["paths"].values()
        for method, op in item.items()
        if method in {"get", "post", "put", "delete", "patch", "head", "options"}
    }


def uri(arn: str) -> str:
    return f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{arn}/invocations"


def test_the_document_has_the_operations_of_the_design(spec: dict[str, Any]) -> None:
    assert operation_ids(spec) == [
        "health",
        "predict",
        "submit_job",
        "list_jobs",
        "get_job",
        "cancel_job",
        "start_job",
    ]


def test_every_served_operation_gets_a_lambda_proxy_integration(spec: dict[str, Any]) -> None:
    doc = render_openapi(spec, {"health": FN, "predict": ALIAS}, "none", REGION)
    ops = operations(doc)
    assert ops["health"]["x-amazon-apigateway-integration"] == {
        "type": "aws_proxy",
        "httpMethod": "POST",
        "uri": uri(FN),
        "passthroughBehavior": "when_no_match",
    }
    assert ops["predict"]["x-amazon-apigateway-integration"]["uri"] == uri(ALIAS)


def test_unserved_operations_and_their_paths_are_removed(spec: dict[str, Any]) -> None:
    doc = render_openapi(spec, {"predict": FN}, "api-key", REGION)
    assert list(doc["paths"]) == ["/predict"]
    assert list(operations(doc)) == ["predict"]


def test_api_key_auth(spec: dict[str, Any]) -> None:
    doc = render_openapi(spec, {"health": FN, "predict": FN}, "api-key", REGION)
    assert doc["components"]["securitySchemes"] == {
        "api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"}
    }
    assert doc["x-amazon-apigateway-api-key-source"] == "HEADER"
    for op in operations(doc).values():
        assert op["security"] == [{"api_key": []}]
        assert "x-amazon-apigateway-auth" not in op


def test_iam_auth(spec: dict[str, Any]) -> None:
    doc = render_openapi(spec, {"health": FN, "predict": FN}, "iam", REGION)
    assert "securitySchemes" not in doc["components"]
    for op in operations(doc).values():
        assert op["x-amazon-apigateway-auth"] == {"type": "AWS_IAM"}
        assert "security" not in op


def test_no_auth(spec: dict[str, Any]) -> None:
    doc = render_openapi(spec, {"health": FN, "predict": FN}, "none", REGION)
    assert "securitySchemes" not in doc["components"]
    assert "x-amazon-apigateway-api-key-source" not in doc
    for op in operations(doc).values():
        assert "security" not in op and "x-amazon-apigateway-auth" not in op


def test_the_rest_of_the_document_is_kept_and_the_input_untouched(spec: dict[str, Any]) -> None:
    before = copy.deepcopy(spec)
    doc = render_openapi(spec, {"health": FN, "predict": FN}, "api-key", REGION)
    assert spec == before
    for key in (
        "x-amazon-apigateway-request-validators",
        "x-amazon-apigateway-request-validator",
        "x-amazon-apigateway-gateway-responses",
        "info",
        "openapi",
    ):
        assert doc[key] == spec[key]
    assert doc["components"]["schemas"] == spec["components"]["schemas"]
    rendered, source = operations(doc)["predict"], operations(spec)["predict"]
    assert (
        rendered["requestBody"]["content"]["application/json"]
        == (source["requestBody"]["content"]["application/json"])
    )


def test_integration_uri_keeps_the_functions_partition() -> None:
    arn = "arn:aws-cn:lambda:cn-north-1:123456789012:function:f"
    assert lambda_integration_uri(arn, "cn-north-1") == (
        f"arn:aws-cn:apigateway:cn-north-1:lambda:path/2015-03-31/functions/{arn}/invocations"
    )


@pytest.mark.parametrize(
    ("integrations", "auth", "region", "message"),
    [
        ({"predict": FN, "score": FN}, "none", REGION, r"unknown operations \['score'\]"),
        ({}, "none", REGION, "no operation is served"),
        ({"predict": FN}, "cognito", REGION, "unknown auth 'cognito'"),
        ({"predict": FN}, "none", "", "region is required"),
        ({"predict": "arn:aws:s3:::bucket/key"}, "none", REGION, "not a Lambda function ARN"),
    ],
)
def test_render_rejects(
    spec: dict[str, Any], integrations: dict[str, str], auth: str, region: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        render_openapi(spec, integrations, auth, region)


# --- argument checks ------------------------------------------------------------------------------
def target(key: str = "predictor") -> LambdaTarget:
    return LambdaTarget(key=key, function_name="fn", function_arn=FN)


def test_rest_api_args_defaults_are_secure() -> None:
    args = RestApiArgs(routes={"predict": target()})
    assert args.api_auth == "api-key"
    assert args.targets == [args.routes["predict"]]


def test_rest_api_args_dedupe_targets_by_key() -> None:
    shared = target()
    args = RestApiArgs(routes={"health": shared, "predict": shared})
    assert args.targets == [shared]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"routes": {}}, "at least one operation"),
        ({"routes": {"score": target()}}, r"unknown operations \['score'\]"),
        ({"routes": {"health": target(), "predict": target()}}, "two different targets named"),
        ({"api_auth": "basic"}, "unknown 'basic'"),
        ({"throttle_rate": 0}, "throttle_rate must be > 0"),
        ({"throttle_burst": 0}, "throttle_burst must be >= 1"),
        ({"log_retention_days": 2}, "not a CloudWatch retention value"),
    ],
)
def test_rest_api_args_reject(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"routes": {"predict": target()}, **kwargs}
    with pytest.raises(ValueError, match=message):
        RestApiArgs(**arguments)


@pytest.mark.parametrize(("key", "qualifier"), [("Predictor", None), ("p", "")])
def test_lambda_target_rejects(key: str, qualifier: str | None) -> None:
    with pytest.raises(ValueError, match="LambdaTarget"):
        LambdaTarget(key=key, function_name="fn", function_arn=FN, qualifier=qualifier)


def test_only_json_bodies_carry_a_model(spec: dict[str, Any]) -> None:
    # A schema on text/csv would make API Gateway's validator parse CSV as JSON and reject it.
    doc = render_openapi(spec, {"predict": FN, "health": FN}, "api-key", REGION)
    content = operations(doc)["predict"]["requestBody"]["content"]
    assert "schema" in content["application/json"]
    assert "text/csv" in content
    assert "schema" not in content["text/csv"]


# --- the API Gateway import rules (runtime/openapi.yaml's header) ---------------------------------
ALL_OPERATIONS = ("health", "predict", "submit_job", "get_job", "cancel_job")


@pytest.mark.parametrize("auth", ["api-key", "iam", "none"])
def test_the_document_imports_into_api_gateway_cleanly(spec: dict[str, Any], auth: str) -> None:
    """What components/api.py deploys with failOnWarnings: no feature API Gateway's REST import
    ignores or refuses, in the source nor in what is rendered from it."""
    assert import_problems(spec) == []
    rendered = render_openapi(spec, dict.fromkeys(ALL_OPERATIONS, FN), auth, REGION)
    assert import_problems(rendered) == []


ERROR_SCHEMA = {"$ref": "#/components/schemas/Error"}


def _doc(**changes: Any) -> dict[str, Any]:
    """A minimal importable document, with ``changes`` merged in at the top level."""
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/jobs/{id}": {
                "get": {
                    "operationId": "get_job",
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {"application/json": {"schema": ERROR_SCHEMA}},
                        }
                    },
                }
            }
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    # a property may be called like a keyword
                    "properties": {"example": {"type": "string"}, "code": {"type": "string"}},
                }
            }
        },
        "x-amazon-apigateway-gateway-responses": {"THROTTLED": {"statusCode": "429"}},
    }
    doc.update(changes)
    return doc


def _with_schema(schema: dict[str, Any]) -> dict[str, Any]:
    doc = _doc()
    doc["components"]["schemas"]["Row"] = schema
    return doc


def test_a_minimal_document_imports() -> None:
    assert import_problems(_doc()) == []


@pytest.mark.parametrize(
    ("doc", "found"),
    [
        (_with_schema({"anyOf": [{"type": "array"}, {"type": "object"}]}), "'anyOf'"),
        (_with_schema({"type": "array", "items": {"oneOf": [{"type": "number"}]}}), "'oneOf'"),
        (_with_schema({"type": "object", "additionalProperties": False}), "additionalProperties"),
        (_with_schema({"type": "integer", "format": "int64"}), "format 'int64'"),
        (_with_schema({"type": "number", "exclusiveMinimum": True}), "exclusiveMinimum"),
        (
            _doc(
                paths={
                    "/health": {
                        "get": {"responses": {"500": {"$ref": "#/components/responses/Error"}}}
                    }
                }
            ),
            "$ref '#/components/responses/Error'",
        ),
        (
            _doc(paths={"/p": {"post": {"parameters": [{"$ref": "#/components/parameters/K"}]}}}),
            "$ref '#/components/parameters/K'",
        ),
        (
            _doc(components={"schemas": {}, "responses": {"Error": {"description": "x"}}}),
            "/components/responses",
        ),
        (_doc(components={"schemas": {"Job_Status": {"type": "string"}}}), "alphanumeric"),
        (
            _doc(**{"x-amazon-apigateway-gateway-responses": {"THROTTLED": {"statusCode": 429}}}),
            "statusCode 429 must be a string",
        ),
        (_doc(paths={"/jobs/job-{id}": {}}), "segment 'job-{id}'"),
    ],
)
def test_each_import_rule_finds_its_violation(doc: dict[str, Any], found: str) -> None:
    problems = import_problems(doc)
    assert len(problems) == 1 and found in problems[0], problems
