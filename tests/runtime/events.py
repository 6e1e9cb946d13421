"""Lambda context and API Gateway REST (v1) proxy events, shaped as AWS sends them."""

from __future__ import annotations

from typing import Any


class FakeLambdaContext:
    function_name = "mlserve-predict"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:mlserve-predict"
    memory_limit_in_mb = 1024
    aws_request_id = "req-1"
    log_group_name = "/mlserve/predict"
    log_stream_name = "stream"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def rest_event(
    method: str, path: str, body: str | None = None, content_type: str | None = "application/json"
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event, as API Gateway sends it."""
    headers = {"Content-Type": content_type} if content_type else {}
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "requestId": "req-1",
            "stage": "v1",
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/v1{path}",
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": body,
        "isBase64Encoded": False,
    }
