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

from runtime.context import INTERACTIVE, RuntimeContext, in_lambda

# The one runtime context (configure() replaces it). In Lambda it is built now, and the model's
# download starts in a thread before this module imports numpy, Powertools and the engine, which
# it then overlaps (runtime.context and runtime.modelfile import neither).
_context: RuntimeContext | None = None
if in_lambda():  # pragma: no cover - only inside Lambda
    _context = RuntimeContext(budget=INTERACTIVE)
    _context.prefetch_model()

import json
import time
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from runtime import capture, contract
from runtime.handlers.common import (
    MetricRecord,
    header,
    install_error_handlers,
    json_response,
    proxy_response,
    request_body,
)
from runtime.model import LoadedModel, XGBoostModel
from runtime.payload import FeatureSchema, PayloadError, non_finite_prediction, parse_body
from runtime.rollout import Rollout, rollout_headers

if TYPE_CHECKING:
    import numpy as np
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
    from aws_lambda_powertools.utilities.typing import LambdaContext

# /health and rejected requests publish no metric; an empty EMF flush is expected, not a warning.
warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)

logger = Logger(service=contract.SERVICE_NAME)
metrics = Metrics(namespace=contract.METRICS_NAMESPACE, service=contract.SERVICE_NAME)

_serving: Serving | None = None
_app: APIGatewayRestResolver | None = None
_invoked = False  # has this container's first invocation happened (Powertools' cold start)?


class ServedVersion:
    """One model version of the endpoint: its model, the response's tail, its metrics."""

    __slots__ = ("errors", "metrics", "model", "tail", "version")

    def __init__(self, model: LoadedModel) -> None:
        if isinstance(model, XGBoostModel):
            # One request at a time, mostly a few rows: OpenMP threads cost more than they give
            # (their barriers spin against each other on Lambda's fractional vCPU; a 1-row
            # prediction took 100x longer with 2 threads on a busy 2-core host). The onnx engine
            # runs on one thread for the same reason (runtime/model.py).
            model.booster.set_param({"nthread": 1})
        self.model = model
        self.version = model.info.version
        # The response body is {"predictions": [...], "model_version": "..."}: only the array
        # changes, so the rest is encoded once (the text json.dumps gives for the whole dict).
        self.tail = ', "model_version": ' + json.dumps(self.version) + "}"
        # PredictRows and PredictLatency (one EMF record per prediction) with the version as a
        # dimension, also published service-wide; PredictErrors: a version that failed to score.
        dimensions = {
            contract.METRIC_DIMENSION_SERVICE: contract.SERVICE_NAME,
            contract.METRIC_DIMENSION_MODEL_VERSION: self.version,
        }
        service_wide = ((contract.METRIC_DIMENSION_SERVICE,),)
        # PredictRows and PredictLatency of one prediction, as one EMF record
        self.metrics = MetricRecord(
            metrics,
            (contract.METRIC_PREDICT_ROWS, MetricUnit.Count),
            (contract.METRIC_PREDICT_LATENCY, MetricUnit.Milliseconds),
            dimensions=dimensions,
            rollups=service_wide,
        )
        self.errors = MetricRecord(
            metrics,
            (contract.METRIC_PREDICT_ERRORS, MetricUnit.Count),
            dimensions=dimensions,
            rollups=service_wide,
        )

    def encode(self, predictions: np.ndarray) -> str:
        """The predictions as JSON text: the response's array, and the capture line's."""
        try:
            return json.dumps(predictions.tolist(), allow_nan=False)
        except ValueError:  # JSON cannot carry NaN or Infinity
            raise non_finite_prediction(predictions) from None

    def body(self, encoded: str) -> str:
        """The 200 body around :meth:`encode`'s text."""
        return '{"predictions": ' + encoded + self.tail


class Serving:
    """What every prediction needs, resolved once per deployment: the stable model version and
    the canary's (runtime/rollout.py decides who answers), the feature schema and limits."""

    __slots__ = ("limits", "model", "recorder", "rollout", "schema", "versions")

    def __init__(self, ctx: RuntimeContext, model: LoadedModel, canary: LoadedModel | None = None):
        self.versions = (ServedVersion(model),) + ((ServedVersion(canary),) if canary else ())
        self.model = model  # the stable model
        self.schema = FeatureSchema.of_model(model.info)
        self.limits = ctx.limits
        self.recorder = capture.Recorder(model.info.name, self.schema.names)
        self.rollout = Rollout(
            tuple(v.version for v in self.versions),
            canary_percent=ctx.percent(contract.ENV_CANARY_PERCENT) if canary else 0,
            mode=ctx.canary_mode,
            capture_percent=ctx.percent(contract.ENV_CAPTURE_SAMPLE_PERCENT),
        )

    def answer(
        self,
        rows: np.ndarray,
        headers: Mapping[str, str] | None,
        request_id: str,
        started: float,
        *,
        count_errors: bool = False,
    ) -> str:
        """The 200 body for these rows: scored by the version the rollout plan names (a
        ``x-model-version`` header pins one), its metrics and, when sampled, the capture line
        with every version that scored the request (a shadow canary too). Raises before any
        side effect when the answering version fails (then counted when ``count_errors``)."""
        key, pinned = rollout_headers(headers)
        plan = self.rollout.plan(key or request_id, pinned)
        served = self.versions[plan.answer]
        try:
            encoded = served.encode(served.model.predict(rows))
        except Exception as exc:
            if count_errors and not isinstance(exc, PayloadError):
                served.errors.emit(1)
                if plan.capture:  # the failure is part of the version's record too
                    elapsed_ms = (time.perf_counter() - started) * 1000
                    failed = {served.version: _code(exc)}
                    recorder = self.recorder
                    recorder.emit(request_id, {}, served.version, rows, elapsed_ms, errors=failed)
            raise
        elapsed_ms = (time.perf_counter() - started) * 1000
        served.metrics.emit(len(rows), elapsed_ms)
        if plan.capture:
            self._capture(
                rows, request_id, served, encoded, shadow=plan.shadow, elapsed_ms=elapsed_ms
            )
        return served.body(encoded)

    def _capture(
        self,
        rows: np.ndarray,
        request_id: str,
        served: ServedVersion,
        encoded: str,
        *,
        shadow: int | None,
        elapsed_ms: float,
    ) -> None:
        """Score the shadow version (its failure is recorded, never raised) and print the
        capture line (runtime/capture.py): each version's predictions as the JSON text a
        response carries (the served one's is the response's own)."""
        versions = {served.version: encoded}
        errors: dict[str, str] = {}
        if shadow is not None:
            other = self.versions[shadow]
            try:  # encode(): the check a served answer gets (finite predictions)
                versions[other.version] = other.encode(other.model.predict(rows))
            except Exception as exc:
                errors[other.version] = _code(exc)
                other.errors.emit(1)
        self.recorder.emit(request_id, versions, served.version, rows, elapsed_ms, errors=errors)


def _code(exc: BaseException) -> str:
    """A failed scoring's code in a capture record: the API error code, else the type's name."""
    return str(getattr(exc, "code", None) or type(exc).__name__)


def configure(
    env: Mapping[str, str] | None = None, clients: Mapping[str, Any] | None = None
) -> RuntimeContext:
    """Replace the runtime context (tests, the local emulator); drops the cached model."""
    global _context, _serving  # noqa: PLW0603 - the one module-level context, by design
    _context = RuntimeContext(env, clients, INTERACTIVE)
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
        canary = ctx.canary_models
        current = Serving(ctx, ctx.models.get(), canary.get() if canary is not None else None)
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
        answer = current.answer(rows, headers, event["requestContext"]["requestId"], started)
    except Exception:  # any problem: no side effect yet; the resolver answers and logs it
        return None
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
    current = serving()
    rollout = current.rollout
    answer: dict[str, Any] = {"status": "ok", "model": current.model.info.as_dict()}
    if len(current.versions) > 1:
        answer["canary"] = current.versions[1].model.info.as_dict()
    answer["rollout"] = {
        "versions": list(rollout.versions),
        "mode": rollout.mode,
        "canary_percent": rollout.canary_percent,
        "capture_sample_percent": rollout.capture_percent,
    }
    return json_response(answer)


def predict() -> Response[str]:
    from aws_lambda_powertools.event_handler import Response

    started = time.perf_counter()
    current = serving()
    event = resolver().current_event
    rows = parse_body(
        request_body(event), event.headers.get("content-type"), current.schema, current.limits
    )
    request_id = event.request_context.request_id
    body = current.answer(rows, event.headers, request_id, started, count_errors=True)
    return Response(status_code=200, content_type="application/json", body=body)


def _warm() -> None:
    """In Lambda, load the model during init; a failure is retried on the first request."""
    try:
        serving()
    except Exception:  # logged; the request path answers 503 and retries the load
        logger.exception("model load at init failed; will retry on the first request")


if in_lambda():  # pragma: no cover - only inside Lambda
    _warm()
