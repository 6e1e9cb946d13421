"""The job API of the asynchronous architectures (lambda-ecs now; the Step Functions ones later).

Routes (runtime/openapi.yaml): GET /health, POST /predict, POST /jobs, GET /jobs (the caller's
jobs, newest first), GET /jobs/{id}, DELETE /jobs/{id}, POST /jobs/{id}/start (an upload job).
The handler validates, records and answers; *how* a job's work is started,
watched and stopped is the architecture's :class:`~runtime.launchers.Launcher`, chosen by the
ARCHITECTURE variable. The function never loads the model: the feature schema comes from
MODEL_METADATA_URI.

- Bad input is a 4xx and changes nothing (no record, no task).
- With a canary deployed (CANARY_MODEL_URI, CANARY_PERCENT), each new job is assigned the model
  version that scores it, once, by runtime/rollout.py's hash of its key (``x-request-id`` when
  given, else the job id, which an Idempotency-Key derives), or the ``x-model-version`` header
  (an unknown version: a 400 that creates nothing); the record's ``model_version`` names it and
  the scoring task loads that version (runtime/scoring).
- ``Idempotency-Key``: the same key and the same request give the same job (no second task);
  the same key with another request is a 422.
- POST /predict waits up to SYNC_WAIT_SECONDS (never past the Lambda deadline) and answers 200
  with predictions, 502 if the job failed, else 202 with the job.
- Every job records its caller (the API key id; the IAM caller's ARN under apiAuth iam;
  ``anonymous`` under apiAuth none): any other caller gets 404 for it, as for an unknown id.
- A finished job's predictions are inline, else a presigned ``result_url`` (valid
  PRESIGNED_URL_SECONDS) downloads them: no AWS credentials needed.
- ``POST /jobs {"upload": {"format": ...}}`` answers a presigned PUT URL for
  ``inputs/{job_id}/input.{format}``; ``POST /jobs/{id}/start`` starts the job once the object
  is there. A job never started fails ``upload_expired`` when its URL expires.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import warnings
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from runtime import contract
from runtime import metrics as job_metrics
from runtime.context import INTERACTIVE, RuntimeContext
from runtime.handlers.common import (
    ApiError,
    install_error_handlers,
    json_response,
    metric,
    request_body,
)
from runtime.jobs import (
    Job,
    JobError,
    JobExists,
    JobRequest,
    TransitionRejected,
    decode_predictions,
    fits_inline,
    idempotent_job_id,
    inline_request,
    input_uri_for,
    iso_timestamp,
    new_job_id,
    parse_job_request,
    to_api,
)
from runtime.launchers import Launcher, LaunchFailed, launcher_for
from runtime.model import parse_s3_uri
from runtime.payload import Limits, PayloadError, parse_body
from runtime.rollout import rollout_headers

warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)

logger = Logger(service=contract.SERVICE_NAME)
metrics = Metrics(namespace=contract.METRICS_NAMESPACE, service=contract.SERVICE_NAME)
app = APIGatewayRestResolver()

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY: Final = 128
JOB_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # openapi.yaml /jobs/{id}
# Time kept back from the Lambda deadline to answer after the wait.
DEADLINE_MARGIN_SECONDS: Final = 3.0
DEFAULT_LIST_LIMIT: Final = 20
MAX_LIST_LIMIT: Final = 100
UPLOAD_EXPIRED: Final = "upload_expired"

_context: RuntimeContext | None = None
_launcher: Launcher | None = None


def configure(
    env: Mapping[str, str] | None = None, clients: Mapping[str, Any] | None = None
) -> RuntimeContext:
    """Replace the runtime context (tests, the local emulator). Clients: dynamodb, s3, ecs."""
    global _context, _launcher  # noqa: PLW0603 - the one module-level context, by design
    _context = RuntimeContext(env, clients, INTERACTIVE)
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
    ctx = runtime_context()
    answer: dict[str, Any] = {"status": "ok", "model": ctx.model_info.as_dict()}
    rollout = ctx.job_rollout
    if len(rollout.versions) > 1:
        name = ctx.model_info.name
        uri = ctx.get(contract.ENV_CANARY_MODEL_URI)
        if uri:
            name = contract.parse_model_key(parse_s3_uri(uri)[1])[0]
        answer["canary"] = {
            "name": name,
            "version": rollout.versions[1],
            "sha256": ctx.get(contract.ENV_CANARY_MODEL_SHA256) or "",
        }
    answer["rollout"] = {
        "versions": list(rollout.versions),
        "mode": rollout.mode,
        "canary_percent": rollout.canary_percent,
        "capture_sample_percent": 0,
    }
    return json_response(answer)


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


@app.get("/jobs")
def list_jobs() -> Response[str]:
    """The caller's jobs, newest first, ``limit`` (1-100, default 20) a page; ``next_token``
    (absent on the last page) asks for the next one."""
    caller = _caller()
    query = _query("limit", "next_token")
    limit = _limit(query.get("limit"))
    start = _decode_token(query.get("next_token"), caller)
    jobs, following = runtime_context().jobs.list_by_caller(caller, limit=limit, start=start)
    body: dict[str, Any] = {"jobs": [to_api(job) for job in jobs]}
    if following is not None:
        body["next_token"] = _encode_token(following)
    return json_response(body)


@app.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response[str]:
    part = _part(_query("part").get("part"))  # a bad query changes nothing
    job = _existing(job_id)
    job = _expire_upload(job) if job.awaiting_upload else launcher().reconcile(job)
    return json_response({**to_api(job), **_result_links(runtime_context(), job, part)})


@app.post("/jobs/<job_id>/start")
def start_job(job_id: str) -> Response[str]:
    """Start an upload job whose input has arrived. A job started already (a retried or
    concurrent start) answers 202 with the job again and starts nothing."""
    ctx = runtime_context()
    job = _existing(job_id)
    if job.upload_expires_at is None and not job.extra.get("upload"):
        raise ApiError(409, "not_an_upload_job", f"job {job_id} was not created for an upload")
    if not job.awaiting_upload:
        if job.status == contract.STATUS_FAILED and job.error and job.error.code == UPLOAD_EXPIRED:
            raise ApiError(409, UPLOAD_EXPIRED, job.error.message)
        if job.status == contract.STATUS_CANCELLED:
            raise ApiError(409, "job_finished", f"job {job_id} was cancelled; nothing to start")
        return _accepted(job)  # started already
    job = _expire_upload(job)
    if job.status == contract.STATUS_FAILED:
        raise ApiError(409, UPLOAD_EXPIRED, job.error.message if job.error else UPLOAD_EXPIRED)
    _check_upload(ctx, job)
    try:
        job = ctx.jobs.update(
            job_id,
            {},
            statuses=[contract.STATUS_PENDING],
            remove=["upload_expires_at"],
            present=["upload_expires_at"],
        )
    except TransitionRejected:  # a concurrent start got there first (or a cancel)
        return _accepted(ctx.jobs.require(job_id))
    logger.info("upload arrived: starting the job", extra={"input_uri": job.input_uri})
    metric(metrics, "UploadJobsStarted", MetricUnit.Count, 1)
    return _accepted(_launch(job))


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
    metric(metrics, contract.METRIC_JOBS_CANCELLED, MetricUnit.Count, 1)
    return json_response(to_api(job))


# --- steps --------------------------------------------------------------------------------------


def _validation(ctx: RuntimeContext) -> tuple[Any, Limits]:
    return ctx.feature_schema, ctx.limits


def _existing(job_id: str) -> Job:
    """The caller's job ``job_id``: 404 for an unknown id and for another caller's job alike
    (a job without a recorded caller, started by a job config upload to S3, is anyone's)."""
    if not JOB_ID_PATTERN.match(job_id):
        raise ApiError(404, "not_found", f"no job {job_id!r}")
    logger.append_keys(job_id=job_id)
    job = runtime_context().jobs.get(job_id)
    if job is None or (job.caller is not None and job.caller != _caller()):
        raise ApiError(404, "not_found", f"no job {job_id}")
    return job


def _launch(job: Job) -> Job:
    try:
        return launcher().start(job)
    except LaunchFailed as exc:
        logger.error("job not started", extra={"reason": exc.reason})
        metric(metrics, "JobsNotStarted", MetricUnit.Count, 1)
        raise ApiError(
            503, "task_not_started", f"job {job.job_id} could not be started: {exc.reason}"
        ) from exc


def _submit(ctx: RuntimeContext, request: JobRequest) -> Job:
    """Record a PENDING job for ``request`` and start its work; or find the job an earlier
    request with the same Idempotency-Key created."""
    store = ctx.jobs
    key = _idempotency_key()
    job_id = idempotent_job_id(_principal(), key) if key is not None else new_job_id()
    request_id, pinned = rollout_headers(app.current_event.headers)
    if pinned is not None:
        request = replace(request, model_version=pinned)
    # Who scores the job, decided once (an unknown pinned version: a 400, nothing created).
    version = ctx.job_rollout.version(request_id or job_id, pinned)
    upload: dict[str, Any] = {}
    if request.upload:
        assert request.format is not None
        uri = f"s3://{ctx.data_bucket}/{contract.upload_key(job_id, request.format)}"
        request = replace(request, input_uri=uri)
        upload = {
            "upload": True,
            "upload_expires_at": int(time.time()) + ctx.presigned_url_seconds,
        }
    logger.append_keys(job_id=job_id)
    if key is not None:
        existing = store.get(job_id)
        if existing is not None:
            return _replay(existing, request, key)
    job = store.new_job(
        job_id,
        architecture=ctx.architecture,
        model_version=version,
        request_sha256=request.sha256,
        caller=_caller(),
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
        **upload,
    )
    if job.instances is not None and not fits_inline(job):
        job = _spill_input(ctx, job)
    try:
        store.create(job)
    except JobExists:  # a concurrent retry with the same key created it first
        return _replay(store.require(job_id), request, key or "")
    logger.info(
        "job created",
        extra={"rows": job.rows, "input_uri": job.input_uri, "model_version": job.model_version},
    )
    job_metrics.count(contract.METRIC_JOBS_SUBMITTED, job_id, job.model_version)
    if job.awaiting_upload:
        return job  # started by POST /jobs/{id}/start once the input is there
    return _launch(job)


def _replay(existing: Job, request: JobRequest, key: str) -> Job:
    if existing.request_sha256 != request.sha256:
        raise ApiError(
            422,
            "idempotency_key_reused",
            f"Idempotency-Key {key!r} was used for job {existing.job_id} with a different "
            "request; use a new key for a new request",
        )
    logger.info("idempotent retry: answering with the existing job")
    if existing.awaiting_upload:
        return _expire_upload(existing)
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
    body: dict[str, Any] = {"job_id": job.job_id, "status": job.status, "status_url": url}
    if job.awaiting_upload:
        body["upload"] = _upload_link(runtime_context(), job)
        body["start_url"] = f"{url}/start"
    return json_response(body, status=202, headers={"Location": url})


# --- uploads and results --------------------------------------------------------------------------


def _upload_link(ctx: RuntimeContext, job: Job) -> dict[str, Any]:
    """Where and how the client uploads the job's input: a presigned PUT of the input object,
    valid until the job's upload_expires_at (a replayed POST gets a new link, same expiry)."""
    assert job.input_uri is not None and job.upload_expires_at is not None
    bucket, key = parse_s3_uri(job.input_uri)
    seconds = max(1, job.upload_expires_at - int(time.time()))
    url = ctx.client("s3").generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds
    )
    return {
        "url": url,
        "method": "PUT",
        "format": job.format,
        "expires_at": iso_timestamp(job.upload_expires_at),
    }


def _expire_upload(job: Job) -> Job:
    """An upload job whose URL expired before it was started: FAILED upload_expired (the
    caller's mistake, recorded so that GET says why; the record expires with the table TTL)."""
    if not job.awaiting_upload or job.upload_expires_at is None:
        return job
    if time.time() <= job.upload_expires_at:
        return job
    error = JobError(
        UPLOAD_EXPIRED,
        f"the input was not uploaded and started before the upload URL expired at "
        f"{iso_timestamp(job.upload_expires_at)}; submit a new job",
    )
    store = runtime_context().jobs
    try:
        return store.transition(
            job.job_id, contract.STATUS_FAILED, expected=[contract.STATUS_PENDING], error=error
        )
    except TransitionRejected:
        return store.require(job.job_id)


def _check_upload(ctx: RuntimeContext, job: Job) -> None:
    """The upload must be there and not empty (a 409 / 400 that changes nothing: PUT it, or PUT
    it again, and retry the start)."""
    assert job.input_uri is not None
    bucket, key = parse_s3_uri(job.input_uri)
    s3 = ctx.client("s3")
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exc:
        status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        if status == 404 or (exc.response.get("Error") or {}).get("Code") in ("404", "NoSuchKey"):
            raise ApiError(
                409,
                "upload_missing",
                f"nothing was uploaded for job {job.job_id} yet: PUT the input to the upload URL, "
                "then start the job",
            ) from None
        raise
    if int(head.get("ContentLength") or 0) == 0:
        raise ApiError(
            400, "empty_upload", f"the upload of job {job.job_id} is empty: PUT the input again"
        )


def _result_links(ctx: RuntimeContext, job: Job, part: int | None) -> dict[str, Any]:
    """A SUCCEEDED job whose predictions are in S3: a presigned ``result_url`` (valid
    PRESIGNED_URL_SECONDS) of its predictions object; for a batch job's prefix of parts, of
    part ``part`` (default 0) with ``result_parts`` (how many; ``?part=N`` links part N)."""
    if job.status != contract.STATUS_SUCCEEDED or job.predictions is not None:
        if part is not None:
            raise ApiError(400, "invalid_part", f"job {job.job_id} has no result parts")
        return {}
    if not job.output_uri:
        return {}
    bucket, key = parse_s3_uri(job.output_uri)
    links: dict[str, Any] = {}
    if key.endswith("/"):
        shards = job.shards or 1
        index = 0 if part is None else part
        if not 0 <= index < shards or not job.format:
            raise ApiError(
                400, "invalid_part", f"part must be 0 to {shards - 1} for job {job.job_id}"
            )
        key += contract.part_name(index, job.format)
        links = {"result_parts": shards, "result_part": index}
    elif part not in (None, 0):
        raise ApiError(400, "invalid_part", f"job {job.job_id} has one result object (part 0)")
    seconds = ctx.presigned_url_seconds
    url = ctx.client("s3").generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds
    )
    return {
        "result_url": url,
        "result_url_expires_at": iso_timestamp(time.time() + seconds),
        **links,
    }


def _query(*known: str) -> dict[str, str]:
    """The query string parameters, each at most once and each one of ``known``: a typo such
    as ``?limt=5`` is a 400, not silently the default."""
    event = app.current_event
    multi = event.multi_value_query_string_parameters or {}
    unknown = sorted(set(multi) - set(known))
    if unknown:
        names = ", ".join(repr(n) for n in unknown)
        allowed = ", ".join(known)
        raise PayloadError(
            "invalid_parameters", f"unknown query parameter(s) {names}; allowed: {allowed}"
        )
    repeated = sorted(name for name, values in multi.items() if len(values) > 1)
    if repeated:
        raise PayloadError("invalid_parameters", f"{', '.join(repeated)} given more than once")
    return {name: values[0] for name, values in multi.items()}


def _part(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 5:
        raise PayloadError("invalid_part", f"part must be a non-negative integer, got {raw!r}")
    return int(raw)


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIST_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST_LIMIT:
        raise PayloadError("invalid_limit", f"limit must be 1 to {MAX_LIST_LIMIT}, got {raw!r}")
    return int(raw)


def _encode_token(key: Mapping[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(dict(key)).encode()).decode().rstrip("=")


def _decode_token(raw: str | None, caller: str) -> dict[str, str] | None:
    """The index key a ``next_token`` names; a 400 for anything GET /jobs did not hand this
    caller (it can only page through the caller's own jobs)."""
    if raw is None:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        key = None
    fields = (
        contract.JOB_TABLE_HASH_KEY,
        contract.JOB_TABLE_CALLER_ATTRIBUTE,
        contract.JOB_TABLE_CREATED_ATTRIBUTE,
    )
    if (
        not isinstance(key, dict)
        or set(key) != set(fields)
        or not all(isinstance(key[f], str) for f in fields)
        or key[contract.JOB_TABLE_CALLER_ATTRIBUTE] != caller
    ):
        raise PayloadError("invalid_next_token", "next_token is not one GET /jobs answered")
    return {f: key[f] for f in fields}


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


def _caller() -> str:
    """The job owner of this request: the principal, or ``anonymous`` (apiAuth none: every
    client is the same caller and sees every job submitted through the API)."""
    return _principal() or contract.ANONYMOUS_CALLER


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
