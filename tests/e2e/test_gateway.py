"""The local API Gateway on its own, with stand-in functions: the REST (v1) proxy events it builds,
how it routes path templates, and what it answers when a function misbehaves. Handlers written
for later issues (``/jobs/{id}``) rely on exactly this."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from mlserve.local.functions import LocalFunction
from mlserve.local.gateway import ApiSpec, Gateway

from .helpers import assert_error

KEY = "k" * 40


def api_document() -> dict[str, Any]:
    """The gateway responses of runtime/openapi.yaml with a few routes of our own."""
    real = ApiSpec.load().document
    return {
        "openapi": "3.0.3",
        "x-amazon-apigateway-gateway-responses": real["x-amazon-apigateway-gateway-responses"],
        "paths": {
            "/jobs": {"post": {"operationId": "submit", "requestBody": _json_body("Job")}},
            "/jobs/summary": {"get": {"operationId": "summary"}},
            "/jobs/{id}": {"get": {"operationId": "get_job"}, "delete": {"operationId": "cancel"}},
            "/files/{path+}": {"get": {"operationId": "file"}},
            "/search": {
                "get": {
                    "operationId": "search",
                    "parameters": [{"name": "q", "in": "query", "required": True}],
                }
            },
            "/crash": {"get": {"operationId": "crash"}},
            "/malformed": {"get": {"operationId": "malformed"}},
            "/binary": {"get": {"operationId": "binary"}},
            "/not-deployed": {"get": {"operationId": "not_deployed"}},
        },
        "components": {
            "schemas": {
                "Job": {
                    "type": "object",
                    "required": ["shards"],
                    "properties": {"shards": {"$ref": "#/components/schemas/Shards"}},
                },
                "Shards": {"type": "integer", "minimum": 1},
            }
        },
    }


def _json_body(schema: str) -> dict[str, Any]:
    return {
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}},
            "text/csv": {"schema": {"type": "string"}},
        }
    }


def function(name: str, handler: Callable[[dict[str, Any], Any], Any]) -> LocalFunction:
    return LocalFunction(name=name, handler=handler, configure=lambda **_: None, environment={})


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    body = {
        "event": event,
        "context": {
            "function_name": context.function_name,
            "aws_request_id": context.aws_request_id,
            "invoked_function_arn": context.invoked_function_arn,
            "remaining_ms": context.get_remaining_time_in_millis(),
        },
    }
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
    }


def crash(_event: dict[str, Any], _context: Any) -> dict[str, Any]:
    raise RuntimeError("boom")


def binary(_event: dict[str, Any], _context: Any) -> dict[str, Any]:
    return {
        "statusCode": 201,
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"], "Content-Type": ["image/png"]},
        "body": base64.b64encode(b"\x89PNG\x00\xff").decode(),
        "isBase64Encoded": True,
    }


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    echo_fn = function("echo", echo)
    routes = {op: echo_fn for op in ("submit", "summary", "get_job", "cancel", "file", "search")}
    routes["crash"] = function("crash", crash)
    routes["malformed"] = function("malformed", lambda _e, _c: "not a proxy response")
    routes["binary"] = function("binary", binary)
    gw = Gateway(ApiSpec(api_document()), routes, api_key=KEY)
    gw.start()
    yield gw
    gw.stop()


def call(gw: Gateway, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"x-api-key": KEY, **kwargs.pop("headers", {})}
    return requests.request(method, gw.url + path, headers=headers, timeout=30, **kwargs)


def event_of(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return dict(response.json()["event"])


def test_the_invoke_url_carries_the_stage(gateway: Gateway) -> None:
    assert gateway.url == f"http://127.0.0.1:{gateway.port}/v1"


def test_a_rest_v1_proxy_event(gateway: Gateway) -> None:
    response = call(
        gateway,
        "DELETE",
        "/jobs/job%20123?verbose=1&tag=a&tag=b&empty=",
        headers={"X-Trace": "t1", "User-Agent": "pytest"},
    )

    event = event_of(response)
    assert event["resource"] == "/jobs/{id}"
    assert event["path"] == "/jobs/job%20123"  # REST APIs keep the path encoded ...
    assert event["httpMethod"] == "DELETE"
    assert event["pathParameters"] == {"id": "job 123"}  # ... and decode the parameters
    assert event["queryStringParameters"] == {"verbose": "1", "tag": "b", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {
        "verbose": ["1"],
        "tag": ["a", "b"],
        "empty": [""],
    }
    assert event["headers"]["X-Trace"] == "t1"
    assert event["multiValueHeaders"]["X-Trace"] == ["t1"]
    assert event["stageVariables"] is None
    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["stage"] == "v1"
    assert ctx["resourcePath"] == "/jobs/{id}"
    assert ctx["httpMethod"] == "DELETE"
    assert ctx["path"] == "/v1/jobs/job%20123"
    assert ctx["requestId"] == response.headers["x-amzn-RequestId"]
    assert ctx["identity"]["apiKey"] == KEY
    assert ctx["identity"]["sourceIp"] == "127.0.0.1"
    assert ctx["identity"]["userAgent"] == "pytest"
    context = response.json()["context"]
    assert context["function_name"] == "echo"
    assert context["invoked_function_arn"].endswith(":function:echo")
    assert 0 < context["remaining_ms"] <= 30_000


def test_literal_paths_win_over_templates_and_greedy_params_span_segments(
    gateway: Gateway,
) -> None:
    assert event_of(call(gateway, "GET", "/jobs/summary"))["resource"] == "/jobs/summary"
    assert event_of(call(gateway, "GET", "/jobs/other"))["pathParameters"] == {"id": "other"}
    event = event_of(call(gateway, "GET", "/files/a/b/c.csv"))
    assert event["pathParameters"] == {"path": "a/b/c.csv"}


def test_bodies_text_and_binary(gateway: Gateway) -> None:
    text = event_of(call(gateway, "POST", "/jobs", json={"shards": 2}))
    assert json.loads(text["body"]) == {"shards": 2}
    assert text["isBase64Encoded"] is False

    raw = b"\xff\xfe\x00binary"
    binary_event = event_of(
        call(
            gateway, "POST", "/jobs", data=raw, headers={"content-type": "application/octet-stream"}
        )
    )
    assert binary_event["isBase64Encoded"] is True
    assert base64.b64decode(binary_event["body"]) == raw


def test_json_bodies_are_validated_against_the_schema_with_refs(gateway: Gateway) -> None:
    assert_error(call(gateway, "POST", "/jobs", json={"shards": 0}), 400, "invalid_body")
    assert_error(call(gateway, "POST", "/jobs", json={}), 400, "invalid_body")
    no_type = call(gateway, "POST", "/jobs", data=b"{oops")  # no Content-Type: JSON is assumed
    assert_error(no_type, 400, "invalid_body")
    # text/csv has a schema in the document but is not JSON: it passes through
    csv_event = event_of(
        call(gateway, "POST", "/jobs", data=b"a,b\n1,2\n", headers={"content-type": "text/csv"})
    )
    assert csv_event["body"] == "a,b\n1,2\n"


def test_required_query_parameters(gateway: Gateway) -> None:
    assert_error(call(gateway, "GET", "/search"), 400, "invalid_parameters")
    assert event_of(call(gateway, "GET", "/search?q=x"))["queryStringParameters"] == {"q": "x"}


def test_routes_without_a_deployed_function_are_unknown(gateway: Gateway) -> None:
    assert_error(call(gateway, "GET", "/not-deployed"), 403, "forbidden", "Unknown route")


def test_a_function_crash_is_a_502_and_a_log_line(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="mlserve-local.gateway"):
        response = call(gateway, "GET", "/crash")
    assert_error(response, 502, "integration_failure")
    assert "boom" not in response.text
    assert any("crash" in r.getMessage() and "boom" in r.getMessage() for r in caplog.records)


def test_a_malformed_proxy_response_is_a_502(gateway: Gateway) -> None:
    assert_error(call(gateway, "GET", "/malformed"), 502, "integration_failure")


def test_base64_responses_and_repeated_headers(gateway: Gateway) -> None:
    response = call(gateway, "GET", "/binary")
    assert response.status_code == 201
    assert response.content == b"\x89PNG\x00\xff"
    assert response.headers["content-type"] == "image/png"
    assert response.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]


def test_an_event_over_lambdas_6_mb_is_a_413(gateway: Gateway) -> None:
    body = {"shards": 1, "padding": "x" * (6 * 1024 * 1024)}
    assert_error(call(gateway, "POST", "/jobs", json=body), 413, "payload_too_large")


def test_the_api_key_is_checked_before_the_body(gateway: Gateway) -> None:
    response = requests.post(gateway.url + "/jobs", json={}, timeout=30)
    assert_error(response, 403, "forbidden", "x-api-key")


def test_without_api_key_auth_no_key_is_needed() -> None:
    gw = Gateway(ApiSpec(api_document()), {"summary": function("echo", echo)}, api_key=None)
    gw.start()
    try:
        assert requests.get(gw.url + "/jobs/summary", timeout=30).status_code == 200
    finally:
        gw.stop()
