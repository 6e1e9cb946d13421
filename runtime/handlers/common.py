"""What every HTTP handler shares: the error shape, JSON responses, metrics, exception handlers.

Every error is ``{"error": {"code", "message"}}`` (runtime/openapi.yaml): a 4xx for the caller's
mistakes, a 5xx for ours, never a stack trace. :func:`install_error_handlers` registers the same
exception handlers on a handler module's resolver.

Powertools' event handler (the resolver and its ``Response``) is imported on first use, not with
this module: importing it costs tens of milliseconds of cold start, and the real-time handler
answers a well-formed ``POST /predict`` without it (runtime/handlers/predict.py).
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from runtime import contract
from runtime.context import ConfigurationError
from runtime.model import ModelUnavailable
from runtime.payload import PayloadError

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response

JSON = "application/json"
# Powertools reads these to disable metrics (metrics.functions.is_metrics_disabled).
_METRICS_DISABLED_ENV = "POWERTOOLS_METRICS_DISABLED"
_DEV_ENV = "POWERTOOLS_DEV"


class ApiError(Exception):
    """An answer other than 2xx decided by a handler (404 not_found, 409, 422, 503 ...)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> Response[str]:
    from aws_lambda_powertools.event_handler import Response

    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(status_code=status, content_type=JSON, body=body)


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response[str]:
    """JSON cannot carry NaN: a body with one raises (an internal error, not the caller's)."""
    from aws_lambda_powertools.event_handler import Response

    return Response(
        status_code=status,
        content_type=JSON,
        body=json.dumps(body, allow_nan=False),
        headers=dict(headers) if headers else None,
    )


def proxy_response(body: str, status: int = 200) -> dict[str, Any]:
    """A REST (v1) proxy result shaped exactly like Powertools' resolver builds it for a JSON body
    (for the handlers' fast paths, which answer without the resolver)."""
    return {
        "statusCode": status,
        "body": body,
        "isBase64Encoded": False,
        "multiValueHeaders": {"Content-Type": [JSON]},
    }


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A request header by case-insensitive ``name`` (lower case), as API Gateway passes them."""
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def request_body(event: Any) -> str | bytes | None:
    """The request body of a proxy event: bytes when API Gateway base64-encoded it (a binary or
    non-UTF-8 body), so that parsing answers a bad encoding with a 400 (Powertools'
    ``decoded_body`` would raise UnicodeDecodeError: a 500)."""
    body: str | None = event.body
    if body and event.is_base64_encoded:
        return base64.b64decode(body)
    return body


# AWS error codes meaning "throttled or briefly unavailable, try again" (DynamoDB, S3, ECS,
# Step Functions, Batch); boto3's standard retry mode already retried them before they reach us.
AWS_UNAVAILABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "InternalError",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)


def aws_unavailable(exc: BaseException) -> bool:
    """True for an AWS call that failed because the service throttled or was unavailable (after
    boto3's retries): our fault and transient, a 503, not the caller's mistake."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as AwsConnectionError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error") or {}
        status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        return str(error.get("Code") or "") in AWS_UNAVAILABLE_CODES or status >= 500
    return isinstance(exc, AwsConnectionError | HTTPClientError)


def metric(metrics: Metrics, name: str, unit: MetricUnit, value: float) -> None:
    # Powertools keeps collecting while POWERTOOLS_METRICS_DISABLED is set and prints a batch
    # every 100 values anyway; not adding them at all keeps a disabled sink silent.
    if not is_metrics_disabled():
        metrics.add_metric(name=name, unit=unit, value=value)


class MetricRecord:
    """One CloudWatch EMF record with a fixed set of metrics, printed once per request.

    Hand-written instead of ``Metrics.add_metric`` twice + ``flush_metrics``: that costs ~15 µs
    per request (validation of names and units, dict building, ``json.dumps`` of the whole
    record), more than half the real-time handler's overhead budget. Here Powertools serializes
    the record once, with placeholders (namespace, the ``service`` and default dimensions, the
    metric definitions), and each request only fills in the timestamp and the values: the line
    printed is the one ``flush_metrics`` would print. Like :func:`metric`, nothing is printed
    while metrics are disabled (POWERTOOLS_METRICS_DISABLED, POWERTOOLS_DEV).
    """

    def __init__(
        self,
        metrics: Metrics,
        *definitions: tuple[str, MetricUnit],
        dimensions: Mapping[str, str] | None = None,
        rollups: tuple[tuple[str, ...], ...] = (),
    ) -> None:
        self._metrics = metrics
        self._definitions = definitions
        # None: the metrics object's own dimensions (service and the defaults); given: exactly
        # these (e.g. {"service": ..., "model_version": ...}: one record per model version)
        self._dimensions = dict(dimensions) if dimensions is not None else None
        # further dimension sets the same values are published under (EMF aggregates each):
        # (("service",),) keeps the service-wide metric beside the per-version one
        self._rollups = rollups
        self._template: str | None = None
        self._order: tuple[int, ...] = ()  # which argument each placeholder takes, in text order

    def _build(self) -> str:
        tokens = [f"\x00{i}" for i in range(len(self._definitions) + 1)]  # timestamp, values
        placeholders = {
            name: {"Unit": unit.value, "StorageResolution": 60, "Value": [tokens[i + 1]]}
            for i, (name, unit) in enumerate(self._definitions)
        }
        record: dict[str, Any] = dict(
            self._metrics.serialize_metric_set(metrics=placeholders)
            if self._dimensions is None
            else self._metrics.serialize_metric_set(
                metrics=placeholders, dimensions=self._dimensions
            )
        )
        record["_aws"] = {**record["_aws"], "Timestamp": tokens[0]}
        if self._dimensions is not None and self._rollups:
            (directive,) = record["_aws"]["CloudWatchMetrics"]
            sets = [list(self._dimensions), *(list(r) for r in self._rollups)]
            record["_aws"]["CloudWatchMetrics"] = [{**directive, "Dimensions": sets}]
        text = json.dumps(record, separators=(",", ":")).replace("%", "%%")
        quoted = [json.dumps(token) for token in tokens]
        self._order = tuple(sorted(range(len(tokens)), key=lambda i: text.index(quoted[i])))
        for token in quoted:
            text = text.replace(token, "%s")
        self._template = text
        return text

    def emit(self, *values: float) -> None:
        """Print the record with these values (in the order of the definitions)."""
        if (_METRICS_DISABLED_ENV in os.environ or _DEV_ENV in os.environ) and (
            is_metrics_disabled()
        ):
            return
        template = self._template or self._build()
        # epoch milliseconds as Powertools writes them; str(float) is the repr json.dumps writes
        args = (time.time_ns() // 1_000_000, *map(float, values))
        print(template % tuple(args[i] for i in self._order))


def install_error_handlers(app: APIGatewayRestResolver, logger: Logger, metrics: Metrics) -> None:
    """Register the shared exception handlers and the JSON 404 for unknown routes on ``app``."""

    @app.exception_handler(PayloadError)
    def _bad_request(exc: PayloadError) -> Response[str]:
        logger.info("rejected request", extra={"code": exc.code, "reason": exc.message})
        metric(metrics, contract.METRIC_REJECTED_REQUESTS, MetricUnit.Count, 1)
        return error_response(exc.status, exc.code, exc.message)

    def _server_error() -> None:  # every 5xx a handler answers: ours, not the caller's
        metric(metrics, contract.METRIC_SERVER_ERRORS, MetricUnit.Count, 1)

    @app.exception_handler(ApiError)
    def _api_error(exc: ApiError) -> Response[str]:
        if exc.status >= 500:
            _server_error()
            logger.error("request failed", extra={"code": exc.code, "reason": exc.message})
        else:
            logger.info("request refused", extra={"code": exc.code, "reason": exc.message})
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(ModelUnavailable)
    def _model_unavailable(exc: ModelUnavailable) -> Response[str]:
        _server_error()
        logger.error("model unavailable", extra={"reason": str(exc)})
        return error_response(503, exc.code, f"the model is unavailable: {exc}")

    @app.exception_handler(ConfigurationError)
    def _misconfigured(exc: ConfigurationError) -> Response[str]:
        _server_error()
        logger.error("function misconfigured", extra={"reason": str(exc)})
        return error_response(503, "misconfigured", f"the function is misconfigured: {exc}")

    @app.exception_handler(Exception)
    def _internal(exc: Exception) -> Response[str]:
        _server_error()
        if aws_unavailable(exc):
            logger.error("AWS call failed after retries", extra={"reason": str(exc)})
            metric(metrics, "AwsUnavailable", MetricUnit.Count, 1)
            return error_response(
                503,
                "service_unavailable",
                "a backing AWS service is throttling or unavailable; retry",
            )
        logger.exception("unhandled error")
        request_id = app.current_event.request_context.request_id
        return error_response(500, "internal", f"internal error (request id {request_id})")

    @app.not_found
    def _not_found(_exc: Exception) -> Response[str]:
        event = app.current_event
        return error_response(404, "not_found", f"no route {event.http_method} {event.path}")
