"""Architecture ``lambda``: GET /health and POST /predict, served synchronously.

The model is read from S3 once per container (at init when running in Lambda, so provisioned
concurrency and SnapStart start warm) and kept in memory. Responses and errors follow
runtime/openapi.yaml: every error is ``{"error": {"code", "message"}}``.

Two paths serve a request:

- the fast path answers a well-formed ``POST /predict`` once the model is loaded: parse, predict,
  one EMF record, the proxy result. Every warm prediction takes it, so it does no per-request
  work it can do once (the feature schema, limits and the response's tail are resolved once per
  model in :class:`Serving`), and it never logs: a successful prediction writes no log line on
  either path.
- Powertools' ``APIGatewayRestResolver`` (with ``Logger.inject_lambda_context`` and
  ``Metrics.log_metrics``) answers everything else: /health, unknown routes, and any /predict
  the fast path does not complete: it returns ``None`` *without side effects* on any problem
  (bad input, a model failure, a base64 body) and the resolver answers the request from scratch,
  so every 4xx/5xx, its log line with the request id and its metrics come from one place. The
  first invocation of a container always goes through the decorated path (the logger's
  ``cold_start`` key), and the resolver is built, and Powertools' event handler imported, only
  when first needed: a cold start whose first request is a prediction never pays for it.
"""

# ruff: noqa: E402 - the model's download starts before the imports below (see _context)
from __future__ import annotations

from runtime.context import RuntimeContext, in_lambda

# The one runtime context (configure() replaces it). In Lambda it is built now, and the model's
# download starts in a thread before this module imports numpy, Powertools and the engine, which
# it then overlaps (runtime.context and runtime.modelfile import neither).
_context: RuntimeContext | None = None
if in_lambda():  # pragma: no cover - only inside Lambda
    _context = RuntimeContext()
    _context.prefetch_model()

import json
import time
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from runtime import contract
from runtime.handlers.common import (
    MetricRecord,
    header,
    install_error_handlers,
    json_response,
    metric,
    proxy_response,
    request_body,
)
from runtime.model import LoadedModel, XGBoostModel
from runtime.payload import FeatureSchema, non_finite_prediction, parse_body

if TYPE_CHECKING:
    import numpy as np
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
    from aws_lambda_powertools.utilities.typing import LambdaContext

# /health and rejected requests publish no metric; an empty EMF flush is expected, not a warning.
warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)

logger = Logger(service=contract.SERVICE_NAME)
metrics = Metrics(namespace=contract.METRICS_NAMESPACE, service=contract.SERVICE_NAME)
# PredictRows and PredictLatency of one prediction, as one EMF record (common.MetricRecord).
prediction_metrics = MetricRecord(
    metrics, ("PredictRows", MetricUnit.Count), ("PredictLatency", MetricUnit.Milliseconds)
)

_serving: Serving | None = None
_app: APIGatewayRestResolver | None = None
_invoked = False  # has this container's first invocation happened (Powertools' cold start)?


class Serving:
    """What every prediction with one loaded model needs, resolved once per model."""

    __slots__ = ("limits", "model", "schema", "tail")

    def __init__(self, ctx: RuntimeContext, model: LoadedModel) -> None:
        if isinstance(model, XGBoostModel):
            # One request at a time, mostly a few rows: OpenMP threads cost more than they give
            # (their barriers spin against each other on Lambda's fractional vCPU; a 1-row
            # prediction took 100x longer with 2 threads on a busy 2-core host). The onnx engine
            # runs on one thread for the same reason (runtime/model.py).
            model.booster.set_param({"nthread": 1})
        self.model = model
        self.schema = FeatureSchema.of_model(model.info)
        self.limits = ctx.limits
        # The response body is {"predictions": [...], "model_version": "..."}: only the array
        # changes, so the rest is encoded once (the text json.dumps gives for the whole dict).
        self.tail = ', "model_version": ' + json.dumps(model.info.version) + "}"

    def body(self, predictions: np.ndarray) -> str:
        try:
            return (
                '{"predictions": ' + json.dumps(predictions.tolist(), allow_nan=False) + self.tail
            )
        except ValueError:  # JSON cannot carry NaN or Infinity
            raise non_finite_prediction(predictions) from None


def configure(
    env: Mapping[str, str] | None = None, clients: Mapping[str, Any] | None = None
) -> RuntimeContext:
    """Replace the runtime context (tests, the local emulator); drops the cached model."""
    global _context, _serving  # noqa: PLW0603 - the one module-level context, by design
    _context = RuntimeContext(env, clients)
    _serving = None
    return _context


def runtime_context() -> RuntimeContext:
    return _context if _context is not None else configure()


def serving() -> Serving:
    """The loaded model and its request settings (loads the model on first use)."""
    global _serving  # noqa: PLW0603
    current = _serving
    if current is None:
        ctx = runtime_context()
        current = Serving(ctx, ctx.models.get())
        if ctx is _context:  # not replaced by configure() meanwhile
            _serving = current
    return current


# --- the fast path --------------------------------------------------------------------------


def _fast_predict(event: dict[str, Any]) -> dict[str, Any] | None:
    """The 200 answer to a well-formed POST /predict, or None (the resolver answers instead)."""
    started = time.perf_counter()
    current = _serving
    body = event.get("body")
    if current is None or type(body) is not str or event.get("isBase64Encoded"):
        return None
    headers = event.get("headers")
    content_type = (
        headers.get("Content-Type")
        or headers.get("content-type")
        or header(headers, "content-type")
        if headers
        else None
    )
    try:
        rows = parse_body(body, content_type, current.schema, current.limits)
        answer = current.body(current.model.predict(rows))
    except Exception:  # any problem: no side effect yet; the resolver answers and logs it
        return None
    prediction_metrics.emit(len(rows), (time.perf_counter() - started) * 1000)
    return proxy_response(answer)


def _is_predict(event: dict[str, Any]) -> bool:
    return event.get("httpMethod") == "POST" and event.get("path") == "/predict"


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if _invoked and _serving is not None and _is_predict(event):
        answer = _fast_predict(event)
        if answer is not None:
            return answer
    return _invoke(event, context)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def _invoke(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _invoked  # noqa: PLW0603
    _invoked = True
    if _serving is not None and _is_predict(event):
        answer = _fast_predict(event)
        if answer is not None:
            return answer
    return resolver().resolve(event, context)


# --- the resolver (everything but a successful prediction) -----------------------------------


def resolver() -> APIGatewayRestResolver:
    """Powertools' resolver with the routes and the shared error handlers, built on first use."""
    global _app  # noqa: PLW0603
    if _app is None:
        from aws_lambda_powertools.event_handler import APIGatewayRestResolver

        app = APIGatewayRestResolver()
        app.get("/health")(health)
        app.post("/predict")(predict)
        install_error_handlers(app, logger, metrics)
        _app = app
    return _app


def health() -> Response[str]:
    model = runtime_context().models.get()
    return json_response({"status": "ok", "model": model.info.as_dict()})


def predict() -> Response[str]:
    from aws_lambda_powertools.event_handler import Response

    started = time.perf_counter()
    current = serving()
    event = resolver().current_event
    rows = parse_body(
        request_body(event), event.headers.get("content-type"), current.schema, current.limits
    )
    body = current.body(current.model.predict(rows))
    metric(metrics, "PredictRows", MetricUnit.Count, len(rows))
    elapsed_ms = (time.perf_counter() - started) * 1000
    metric(metrics, "PredictLatency", MetricUnit.Milliseconds, elapsed_ms)
    return Response(status_code=200, content_type="application/json", body=body)


def _warm() -> None:
    """In Lambda, load the model during init; a failure is retried on the first request."""
    try:
        serving()
    except Exception:  # logged; the request path answers 503 and retries the load
        logger.exception("model load at init failed; will retry on the first request")


if in_lambda():  # pragma: no cover - only inside Lambda
    _warm()
