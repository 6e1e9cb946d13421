"""The trigger Lambda of stepfunctions-batch: S3 ObjectCreated on ``jobs/*.json`` -> a job.

For every record of the S3 event:

1. ``job_id = sha256("{bucket}/{key}/{versionId or sequencer}")[:32]``
   (:func:`runtime.jobs.config_job_id`): a duplicate delivery of the same upload has the same id.
2. Keys under ``jobs/rejected/`` (where rejected configs are moved: the notification sees them
   too) and keys not ending in ``.json`` are ignored.
3. The config is read and validated (:func:`runtime.jobs.parse_job_config`).
   - valid: the PENDING record is put with ``attribute_not_exists`` (a duplicate event gets
     ConditionalCheckFailed and nothing else happens), then the execution named ``job_id`` is
     started (the stepfunctions-batch launcher's ``start``).
   - invalid: a FAILED record (``invalid_job_config`` with the reason) is put the same way and
     the object is moved to ``jobs/rejected/<name>.json`` (copy + delete).
4. With a canary deployed (CANARY_MODEL_URI, CANARY_PERCENT), the model version that scores the
   job is chosen once, here, by runtime/rollout.py's hash of the job id (so a duplicate event
   keeps it), or pinned by the config's ``model_version``; a version the stack does not serve
   rejects the config as in 3. The record's ``model_version`` names it; the Batch job loads it.

An object that is gone (a duplicate of an already rejected config, or a config deleted before the
trigger ran: S3 answers 403 AccessDenied, not 404, to a role without ``s3:ListBucket``) is done
with outcome ``ignored`` and the reason, logged as a warning. Any other read error raises, so
Lambda's asynchronous retries try again.

Environment: JOB_TABLE, DATA_BUCKET, STATE_MACHINE_ARN, MODEL_URI (or MODEL_METADATA_URI) for the
model version, CANARY_MODEL_URI and CANARY_PERCENT with a canary, POWERTOOLS_*. Clients
(injectable with :func:`configure`): dynamodb, s3, stepfunctions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger

from runtime import contract, metrics
from runtime.context import RuntimeContext
from runtime.jobs import (
    CONFIG_MODEL_VERSION,
    INVALID_JOB_CONFIG,
    Job,
    JobError,
    JobExists,
    config_job_id,
    parse_job_config_bytes,
)
from runtime.launchers import LaunchFailed, StepFunctionsBatchLauncher
from runtime.model import parse_s3_uri
from runtime.payload import PayloadError

logger = Logger(service=contract.SERVICE_NAME)

STARTED: Final = "started"
REJECTED: Final = "rejected"
DUPLICATE: Final = "duplicate"
IGNORED: Final = "ignored"
NOT_STARTED: Final = "not_started"
MAX_CONFIG_BYTES: Final = 64 * 1024

_context: RuntimeContext | None = None


def configure(
    env: Mapping[str, str] | None = None, clients: Mapping[str, Any] | None = None
) -> RuntimeContext:
    """Replace the runtime context (tests, the local emulator). Clients: dynamodb, s3,
    stepfunctions."""
    global _context  # noqa: PLW0603 - the one module-level context, by design
    _context = RuntimeContext(env, clients)
    return _context


def runtime_context() -> RuntimeContext:
    return _context if _context is not None else configure()


def rejected_key(key: str) -> str:
    """``jobs/<name>.json`` -> ``jobs/rejected/<name>.json``."""
    name = key[len(contract.JOBS_PREFIX) :] if key.startswith(contract.JOBS_PREFIX) else key
    return f"{contract.JOBS_REJECTED_PREFIX}{name}"


def model_version(ctx: RuntimeContext) -> str:
    """The deployed model's version: from MODEL_URI, else MODEL_METADATA_URI's metadata."""
    uri = ctx.get(contract.ENV_MODEL_URI)
    if uri:
        try:
            return contract.parse_model_key(parse_s3_uri(uri)[1])[1]
        except ValueError:
            pass
    return ctx.model_info.version


def handle_object(  # noqa: PLR0911 - one return per outcome
    ctx: RuntimeContext, bucket: str, key: str, version: str | None
) -> dict[str, str]:
    """One uploaded object; ``{"key", "outcome", "job_id"?, "reason"?}``."""
    if (
        key.startswith(contract.JOBS_REJECTED_PREFIX)
        or not key.startswith(contract.JOBS_PREFIX)
        or not key.endswith(".json")
    ):
        return {"key": key, "outcome": IGNORED}
    job_id = config_job_id(bucket, key, version)
    logger.append_keys(job_id=job_id, source=f"s3://{bucket}/{key}")
    store = ctx.jobs
    existing = store.get(job_id)
    if existing is not None:
        if existing.status == contract.STATUS_PENDING:
            # An earlier delivery recorded the job but failed before its execution started
            # (e.g. throttled), and Lambda retries the event: start it now. An execution that
            # did start makes this a no-op (ExecutionAlreadyExists).
            not_started = _start(ctx, existing, key)
            if not_started is not None:
                return not_started
        logger.info("duplicate event: the job exists already")
        return {"key": key, "job_id": job_id, "outcome": DUPLICATE}
    s3 = ctx.client("s3")
    body, gone = _read(s3, bucket, key)
    if body is None:  # gone: moved to jobs/rejected/ by an earlier delivery, or deleted
        logger.warning("the config object is gone; nothing to do", extra={"reason": gone})
        return {"key": key, "job_id": job_id, "outcome": IGNORED, "reason": gone}
    job = store.new_job(
        job_id,
        architecture=contract.ARCH_STEPFUNCTIONS_BATCH,
        model_version=model_version(ctx),
        source=f"s3://{bucket}/{key}",
    )
    try:
        if len(body) > MAX_CONFIG_BYTES:
            raise PayloadError(
                INVALID_JOB_CONFIG, f"the job config is larger than {MAX_CONFIG_BYTES} bytes"
            )
        config = parse_job_config_bytes(body, ctx.data_bucket)
        version = ctx.job_rollout.version(job_id, config.model_version, CONFIG_MODEL_VERSION)
    except PayloadError as exc:  # an invalid config, or an unknown pinned model_version
        return _reject(ctx, job, bucket, key, exc.message)
    job = job.with_values(
        request_sha256=config.sha256, model_version=version, **config.record_values()
    )
    try:
        store.create(job)
    except JobExists:
        logger.info("duplicate event: the job exists already")
        return {"key": key, "job_id": job_id, "outcome": DUPLICATE}
    # as the job API counts POST /jobs
    metrics.count(contract.METRIC_JOBS_SUBMITTED, job_id, job.model_version)
    not_started = _start(ctx, job, key)
    if not_started is not None:
        return not_started
    logger.info(
        "job started",
        extra={"shards": config.shards, "priority": config.priority, "model_version": version},
    )
    return {"key": key, "job_id": job_id, "outcome": STARTED}


def _start(ctx: RuntimeContext, job: Job, key: str) -> dict[str, str] | None:
    """Start the job's execution; the NOT_STARTED result when that failed, else None."""
    launcher = StepFunctionsBatchLauncher(
        store=ctx.jobs,
        sfn=ctx.client("stepfunctions"),
        state_machine_arn=ctx.state_machine_arn,
        ecs=None,
    )
    try:
        launcher.start(job)
    except LaunchFailed as exc:  # recorded FAILED (task_not_started) by the launcher
        logger.error("job not started", extra={"reason": exc.reason})
        return {"key": key, "job_id": job.job_id, "outcome": NOT_STARTED, "reason": exc.reason}
    return None


# What S3 answers for a missing key: 404 NoSuchKey to a caller with s3:ListBucket on the bucket,
# 403 AccessDenied to one without (the GetObject API reference). The trigger has no ListBucket:
# it would reveal every key of the bucket (other jobs' inputs and results), and a grant limited
# by ``s3:prefix`` does not count (GetObject carries no prefix). Its only object grant is
# GetObject on jobs/*, so a 403 there means the config is gone (deleted, or moved to
# jobs/rejected/ by an earlier delivery) and retrying could never succeed.
GONE_CODES: Final = {
    "NoSuchKey": "the object does not exist (NoSuchKey)",
    "404": "the object does not exist (404)",
    "AccessDenied": (
        "S3 answered AccessDenied: without s3:ListBucket that is its answer for a missing key, "
        "so the config was deleted before the trigger ran"
    ),
    "403": "S3 answered 403: without s3:ListBucket that is its answer for a missing key",
}


def _read(s3: Any, bucket: str, key: str) -> tuple[bytes | None, str]:
    """(the config's bytes, "") or (None, why it is taken as gone); other errors raise."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read(MAX_CONFIG_BYTES + 1)
        return bytes(body), ""
    except Exception as exc:
        code = str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", ""))
        if code in GONE_CODES:
            return None, GONE_CODES[code]
        raise


def _reject(ctx: RuntimeContext, job: Job, bucket: str, key: str, reason: str) -> dict[str, str]:
    failed = replace(
        job, status=contract.STATUS_FAILED, error=JobError(INVALID_JOB_CONFIG, reason[:4096])
    )
    try:
        ctx.jobs.create(failed)
    except JobExists:
        return {"key": key, "job_id": job.job_id, "outcome": DUPLICATE}
    s3 = ctx.client("s3")
    target = rejected_key(key)
    s3.copy_object(Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": key})
    s3.delete_object(Bucket=bucket, Key=key)
    logger.warning("job config rejected", extra={"reason": reason, "moved_to": target})
    return {"key": key, "job_id": job.job_id, "outcome": REJECTED, "reason": reason}


def _records(event: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    found = []
    for record in event.get("Records") or []:
        s3 = record.get("s3") or {}
        bucket = (s3.get("bucket") or {}).get("name")
        obj = s3.get("object") or {}
        key = obj.get("key")
        if not bucket or not key:
            logger.warning("an event record without bucket/key", extra={"record": record})
            continue
        version = obj.get("versionId") or obj.get("sequencer") or None
        found.append((str(bucket), unquote_plus(str(key)), version))
    return found


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """S3 event -> ``{"results": [{"key", "outcome", "job_id", "reason"?}, ...]}``."""
    ctx = runtime_context()
    results = [handle_object(ctx, *record) for record in _records(event)]
    logger.info("trigger done", extra={"results": json.dumps(results)})
    return {"results": results}
