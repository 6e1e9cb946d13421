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
from aws_lambda_powertools.utilities.typing import LambdaContext

from runtime import contract
from runtime.context import RuntimeContext, in_lambda
from runtime.handlers.common import install_error_handlers, json_response, metric
from runtime.model import LoadedModel
from runtime.payload import FeatureSchema, Limits, parse_body

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


def _schema(model: LoadedModel) -> FeatureSchema:
    return FeatureSchema(model.info.feature_names, model.feature_index)


@app.get("/health")
def health() -> Response[str]:
    model = runtime_context().models.get()
    return json_response({"status": "ok", "model": model.info.as_dict()})


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
    metric(metrics, "PredictRows", MetricUnit.Count, len(rows))
    elapsed_ms = (time.perf_counter() - started) * 1000
    metric(metrics, "PredictLatency", MetricUnit.Milliseconds, elapsed_ms)
    return Response(status_code=200, content_type="application/json", body=body)


install_error_handlers(app, logger, metrics)


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
