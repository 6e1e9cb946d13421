"""The job API of the asynchronous architectures (lambda-ecs now; the Step Functions ones later).

Routes (runtime/openapi.yaml): GET /health, POST /predict, POST /jobs, GET /jobs/{id},
DELETE /jobs/{id}. The handler validates, records and answers; *how* a job's work is started,
watched and stopped is the architecture's :class:`~runtime.launchers.Launcher`, chosen by the
ARCHITECTURE variable. The function never loads the model: the feature schema comes from
MODEL_METADATA_URI.

- Bad input is a 4xx and changes nothing (no record, no task).
- ``Idempotency-Key``: the same key and the same request give the same job (no second task);
  the same key with another request is a 422.
- POST /predict waits up to SYNC_WAIT_SECONDS (never past the Lambda deadline) and answers 200
  with predictions, 502 if the job failed, else 202 with the job.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from runtime import contract
from runtime.context import RuntimeContext
from runtime.handlers.common import (
    ApiError,
    install_error_handlers,
    json_response,
    metric,
    request_body,
)
from runtime.jobs import (
    Job,
    JobExists,
    JobRequest,
    TransitionRejected,
    decode_predictions,
    fits_inline,
    idempotent_job_id,
    inline_request,
    input_uri_for,
    new_job_id,
    parse_job_request,
    to_api,
)
from runtime.launchers import Launcher, LaunchFailed, launcher_for
from runtime.model import parse_s3_uri
from runtime.payload import Limits, PayloadError, parse_body

warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)

logger = Logger(service=contract.SERVICE_NAME)
metrics = Metrics(namespace=contract.METRICS_NAMESPACE, service=contract.SERVICE_NAME)
app = APIGatewayRestResolver()

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY: Final = 128
JOB_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # openapi.yaml /jobs/{id}
# Time kept back from the Lambda deadline to answer after the wait.
DEADLINE_MARGIN_SECONDS: Final = 3.0

_context: RuntimeContext | None = None
_launcher: Launcher | None = None


def configure(
    env: Mapping[str, str] | None = None, clients: Mapping[str, Any] | None = None
) -> RuntimeContext:
    """Replace the runtime context (tests, the local emulator). Clients: dynamodb, s3, ecs."""
    global _context, _launcher  # noqa: PLW0603 - the one module-level context, by design
    _context = RuntimeContext(env, clients)
    _launcher = None
    return _context


def runtime_context() -> RuntimeContext:
    return _context if _context is not None else configure()


def launcher() -> Launcher:
    global _launcher  # noqa: PLW0603
    if _launcher is None:
        _launcher = launcher_for(runtime_context())
    return _launcher


# --- routes -------------------------------------------------------------------------------------


@app.get("/health")
def health() -> Response[str]:
    return json_response({"status": "ok", "model": runtime_context().model_info.as_dict()})


@app.post("/predict")
def predict() -> Response[str]:
    ctx = runtime_context()
    event = app.current_event
    rows = parse_body(request_body(event), event.headers.get("content-type"), *_validation(ctx))
    job = _submit(ctx, inline_request(rows))
    job = launcher().wait(job, _wait_budget(ctx))
    # A batch job's output is a prefix of parts, not one answer: its replay gets the job (202).
    if job.status == contract.STATUS_SUCCEEDED and not (job.output_uri or "").endswith("/"):
        metric(metrics, "SyncPredictions", MetricUnit.Count, 1)
        predictions = _predictions(ctx, job)
        return json_response({"predictions": predictions, "model_version": job.model_version})
    if job.status == contract.STATUS_FAILED:
        reason = job.error.message if job.error else "no reason recorded"
        logger.warning("job failed within the wait", extra={"reason": reason})
        raise ApiError(502, "job_failed", f"job {job.job_id} failed: {reason}")
    metric(metrics, "SyncWaitExpired", MetricUnit.Count, 1)
    return _accepted(job)


@app.post("/jobs")
def submit_job() -> Response[str]:
    ctx = runtime_context()
    event = app.current_event
    request = parse_job_request(
        request_body(event),
        event.headers.get("content-type"),
        *_validation(ctx),
        data_bucket=ctx.data_bucket,
        batch=ctx.architecture == contract.ARCH_STEPFUNCTIONS_BATCH,
    )
    return _accepted(_submit(ctx, request))


@app.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response[str]:
    job = launcher().reconcile(_existing(job_id))
    return json_response(to_api(job))


@app.delete("/jobs/<job_id>")
def cancel_job(job_id: str) -> Response[str]:
    job = _existing(job_id)
    try:
        if job.terminal:
            raise TransitionRejected(job.job_id, contract.STATUS_CANCELLED, job.status)
        job = launcher().cancel(job)
    except TransitionRejected as exc:
        raise ApiError(
            409, "job_finished", f"job {job_id} already finished ({exc.current}); nothing to cancel"
        ) from None
    logger.info("job cancelled")
    metric(metrics, "JobsCancelled", MetricUnit.Count, 1)
    return json_response(to_api(job))


# --- steps --------------------------------------------------------------------------------------


def _validation(ctx: RuntimeContext) -> tuple[Any, Limits]:
    return ctx.feature_schema, ctx.limits


def _existing(job_id: str) -> Job:
    if not JOB_ID_PATTERN.match(job_id):
        raise ApiError(404, "not_found", f"no job {job_id!r}")
    logger.append_keys(job_id=job_id)
    job = runtime_context().jobs.get(job_id)
    if job is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    return job


def _submit(ctx: RuntimeContext, request: JobRequest) -> Job:
    """Record a PENDING job for ``request`` and start its work; or find the job an earlier
    request with the same Idempotency-Key created."""
    store = ctx.jobs
    key = _idempotency_key()
    job_id = idempotent_job_id(_principal(), key) if key is not None else new_job_id()
    logger.append_keys(job_id=job_id)
    if key is not None:
        existing = store.get(job_id)
        if existing is not None:
            return _replay(existing, request, key)
    job = store.new_job(
        job_id,
        architecture=ctx.architecture,
        model_version=ctx.model_info.version,
        request_sha256=request.sha256,
        rows=request.rows,
        instances=request.instances,
        input_uri=request.input_uri,
        output_uri=request.output_uri,
        format=request.format,
        # batch mode only (stepfunctions-batch); absent on the other architectures
        **{
            name: value
            for name in ("shards", "priority", "id_column")
            if (value := getattr(request, name)) is not None
        },
    )
    if job.instances is not None and not fits_inline(job):
        job = _spill_input(ctx, job)
    try:
        store.create(job)
    except JobExists:  # a concurrent retry with the same key created it first
        return _replay(store.require(job_id), request, key or "")
    logger.info("job created", extra={"rows": job.rows, "input_uri": job.input_uri})
    metric(metrics, "JobsSubmitted", MetricUnit.Count, 1)
    try:
        return launcher().start(job)
    except LaunchFailed as exc:
        logger.error("job not started", extra={"reason": exc.reason})
        metric(metrics, "JobsNotStarted", MetricUnit.Count, 1)
        raise ApiError(
            503, "task_not_started", f"job {job_id} could not be started: {exc.reason}"
        ) from exc


def _replay(existing: Job, request: JobRequest, key: str) -> Job:
    if existing.request_sha256 != request.sha256:
        raise ApiError(
            422,
            "idempotency_key_reused",
            f"Idempotency-Key {key!r} was used for job {existing.job_id} with a different "
            "request; use a new key for a new request",
        )
    logger.info("idempotent retry: answering with the existing job")
    return launcher().reconcile(existing)


def _spill_input(ctx: RuntimeContext, job: Job) -> Job:
    """Rows too large for the item go to s3://DATA_BUCKET/inputs/{job_id}.json."""
    uri = input_uri_for(ctx.data_bucket, job.job_id)
    bucket, key = parse_s3_uri(uri)
    body = f'{{"instances":{job.instances}}}'.encode()
    ctx.client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    return replace(job, instances=None, input_uri=uri, format="json")


def _predictions(ctx: RuntimeContext, job: Job) -> Any:
    if job.predictions is not None:
        return json.loads(job.predictions)
    if job.output_uri is None:
        raise RuntimeError(f"job {job.job_id} SUCCEEDED without predictions or output_uri")
    bucket, key = parse_s3_uri(job.output_uri)
    return decode_predictions(ctx.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def _accepted(job: Job) -> Response[str]:
    url = _status_url(job.job_id)
    return json_response(
        {"job_id": job.job_id, "status": job.status, "status_url": url},
        status=202,
        headers={"Location": url},
    )


# --- request details ----------------------------------------------------------------------------


def _idempotency_key() -> str | None:
    key = app.current_event.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise PayloadError(
            "invalid_idempotency_key",
            f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
        )
    return key


def _request_context() -> Mapping[str, Any]:
    raw = app.current_event.raw_event.get("requestContext")
    return raw if isinstance(raw, Mapping) else {}


def _principal() -> str | None:
    """Who is asking: the API key id (apiAuth api-key), else the IAM caller (apiAuth iam)."""
    identity = _request_context().get("identity") or {}
    return identity.get("apiKeyId") or identity.get("userArn") or None


def _status_url(job_id: str) -> str:
    headers = app.current_event.headers
    request_context = _request_context()
    proto = headers.get("X-Forwarded-Proto") or "http"
    host = headers.get("Host") or request_context.get("domainName")
    stage = request_context.get("stage") or contract.STAGE_NAME
    path = f"/{stage}/jobs/{job_id}"
    return f"{proto}://{host}{path}" if host else path


def _wait_budget(ctx: RuntimeContext) -> float:
    seconds = ctx.sync_wait_seconds
    context = app.lambda_context
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is not None:
        seconds = min(seconds, remaining() / 1000 - DEADLINE_MARGIN_SECONDS)
    return max(0.0, seconds)


install_error_handlers(app, logger, metrics)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
