"""Architecture ``lambda``: GET /health and POST /predict, served synchronously.

The model is read from S3 once per container (at init when running in Lambda, so provisioned
concurrency and SnapStart start warm) and kept in memory. Responses and errors follow
runtime/openapi.yaml: every error is ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.utilities.typing import LambdaContext

from runtime import contract
from runtime.context import ConfigurationError, RuntimeContext, in_lambda
from runtime.model import LoadedModel, ModelUnavailable
from runtime.payload import FeatureSchema, Limits, PayloadError, parse_body

# /health and rejected requests publish no metric; an empty EMF flush is expected, not a warning.
warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)

logger = Logger(service=contract.SERVICE_NAME)
metrics = Metrics(namespace=contract.METRICS_NAMESPACE, service=contract.SERVICE_NAME)
app = APIGatewayRestResolver()

_context: RuntimeContext | None = None


def configure(
    env: Mapping[str, str] | None = None, clients: Mapping[str, Any] | None = None
) -> RuntimeContext:
    """Replace the runtime context (tests, the local emulator); drops the cached model."""
    global _context  # noqa: PLW0603 - the one module-level context, by design
    _context = RuntimeContext(env, clients)
    return _context


def runtime_context() -> RuntimeContext:
    return _context if _context is not None else configure()


def error_response(status: int, code: str, message: str) -> Response[str]:
    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(status_code=status, content_type="application/json", body=body)


def _json(body: Any) -> Response[str]:
    return Response(
        status_code=200, content_type="application/json", body=json.dumps(body, allow_nan=False)
    )


def _metric(name: str, unit: MetricUnit, value: float) -> None:
    # Powertools keeps collecting while POWERTOOLS_METRICS_DISABLED is set and prints a batch
    # every 100 values anyway; not adding them at all keeps a disabled sink silent.
    if not is_metrics_disabled():
        metrics.add_metric(name=name, unit=unit, value=value)


def _schema(model: LoadedModel) -> FeatureSchema:
    return FeatureSchema(model.info.feature_names, model.feature_index)


@app.get("/health")
def health() -> Response[str]:
    model = runtime_context().models.get()
    return _json({"status": "ok", "model": model.info.as_dict()})


@app.post("/predict")
def predict() -> Response[str]:
    started = time.perf_counter()
    ctx = runtime_context()
    model = ctx.models.get()
    event = app.current_event
    rows = parse_body(
        event.decoded_body,
        event.headers.get("content-type"),
        _schema(model),
        Limits(max_rows=ctx.max_rows, allow_missing=ctx.allow_missing),
    )
    predictions = model.predict(rows)
    # JSON cannot carry NaN: a model that produces one is our fault, not the caller's.
    body = json.dumps(
        {"predictions": predictions.tolist(), "model_version": model.info.version},
        allow_nan=False,
    )
    _metric("PredictRows", MetricUnit.Count, len(rows))
    _metric("PredictLatency", MetricUnit.Milliseconds, (time.perf_counter() - started) * 1000)
    return Response(status_code=200, content_type="application/json", body=body)


@app.exception_handler(PayloadError)
def _bad_request(exc: PayloadError) -> Response[str]:
    logger.info("rejected request", extra={"code": exc.code, "reason": exc.message})
    _metric("RejectedRequests", MetricUnit.Count, 1)
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


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


def _warm() -> None:
    """In Lambda, load the model during init; a failure is retried on the first request."""
    try:
        runtime_context().models.get()
    except Exception:  # logged; the request path answers 503 and retries the load
        logger.exception("model load at init failed; will retry on the first request")


if in_lambda():  # pragma: no cover - only inside Lambda
    _warm()
