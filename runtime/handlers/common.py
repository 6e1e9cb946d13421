"""What every HTTP handler shares: the error shape, JSON responses, metrics, exception handlers.

Every error is ``{"error": {"code", "message"}}`` (runtime/openapi.yaml): a 4xx for the caller's
mistakes, a 5xx for ours, never a stack trace. :func:`install_error_handlers` registers the same
exception handlers on a handler module's resolver.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from runtime.context import ConfigurationError
from runtime.model import ModelUnavailable
from runtime.payload import PayloadError

JSON = "application/json"


class ApiError(Exception):
    """An answer other than 2xx decided by a handler (404 not_found, 409, 422, 503 ...)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> Response[str]:
    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(status_code=status, content_type=JSON, body=body)


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response[str]:
    """JSON cannot carry NaN: a body with one raises (an internal error, not the caller's)."""
    return Response(
        status_code=status,
        content_type=JSON,
        body=json.dumps(body, allow_nan=False),
        headers=dict(headers) if headers else None,
    )


def metric(metrics: Metrics, name: str, unit: MetricUnit, value: float) -> None:
    # Powertools keeps collecting while POWERTOOLS_METRICS_DISABLED is set and prints a batch
    # every 100 values anyway; not adding them at all keeps a disabled sink silent.
    if not is_metrics_disabled():
        metrics.add_metric(name=name, unit=unit, value=value)


def install_error_handlers(app: APIGatewayRestResolver, logger: Logger, metrics: Metrics) -> None:
    """Register the shared exception handlers and the JSON 404 for unknown routes on ``app``."""

    @app.exception_handler(PayloadError)
    def _bad_request(exc: PayloadError) -> Response[str]:
        logger.info("rejected request", extra={"code": exc.code, "reason": exc.message})
        metric(metrics, "RejectedRequests", MetricUnit.Count, 1)
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(ApiError)
    def _api_error(exc: ApiError) -> Response[str]:
        if exc.status >= 500:
            logger.error("request failed", extra={"code": exc.code, "reason": exc.message})
        else:
            logger.info("request refused", extra={"code": exc.code, "reason": exc.message})
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(ModelUnavailable)
    def _model_unavailable(exc: ModelUnavailable) -> Response[str]:
        logger.error("model unavailable", extra={"reason": str(exc)})
        return error_response(503, exc.code, f"the model is unavailable: {exc}")

    @app.exception_handler(ConfigurationError)
    def _misconfigured(exc: ConfigurationError) -> Response[str]:
        logger.error("function misconfigured", extra={"reason": str(exc)})
        return error_response(503, "misconfigured", f"the function is misconfigured: {exc}")

    @app.exception_handler(Exception)
    def _internal(exc: Exception) -> Response[str]:
        logger.exception("unhandled error")
        request_id = app.current_event.request_context.request_id
        return error_response(500, "internal", f"internal error (request id {request_id})")

    @app.not_found
    def _not_found(_exc: Exception) -> Response[str]:
        event = app.current_event
        return error_response(404, "not_found", f"no route {event.http_method} {event.path}")
