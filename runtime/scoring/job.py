"""Job mode of the scoring entrypoint: score the job ``JOB_ID`` and record the result.

1. Read the record; move it PENDING -> RUNNING (a record already RUNNING is fine: a retried task).
2. Load the model version the record names (``model_version``: the stable model or the canary,
   chosen when the job was created; runtime/model.py: sha256-checked, never pickle). A version
   this task does not hold fails the job (``model_version_unavailable``): never another model.
3. Read the rows: the record's inline ``instances``, or its ``input_uri`` object (csv with an
   optional header, json ``{"instances": [...]}``, or jsonl: one row array/object per line),
   validated by runtime/payload.py like /predict (without its row limit).
4. Write the predictions inline when the item stays under MAX_INLINE_ITEM_BYTES, else to
   ``output_uri`` (given with the job) or ``results/{job_id}/predictions.json``.
5. Mark SUCCEEDED with a conditional update from PENDING|RUNNING.

Exit code 0 only when the record is SUCCEEDED. Any failure records FAILED with an error code
and message (model_unavailable, invalid_input, input_unavailable, misconfigured, internal) and
exits 1; a record that went terminal meanwhile (CANCELLED) is left as it is, exit 1.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from types import FrameType
from typing import Any, Final

import numpy as np
from aws_lambda_powertools import Logger

from runtime import contract
from runtime.context import ConfigurationError, RuntimeContext, VersionNotServed
from runtime.jobs import (
    ACTIVE_STATUSES,
    Job,
    JobError,
    JobStore,
    TransitionRejected,
    encode_predictions,
    fits_inline,
    predictions_document,
    results_uri_for,
)
from runtime.model import LoadedModel, ModelUnavailable, parse_s3_uri
from runtime.payload import (
    FeatureSchema,
    Limits,
    PayloadError,
    non_finite_prediction,
    parse_csv,
    parse_json,
)

EXIT_SUCCEEDED: Final = 0
EXIT_FAILED: Final = 1

logger = Logger(service=contract.SERVICE_NAME)


class JobFailure(Exception):
    """A failure with a stable error code for the job record."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@contextmanager
def stop_signal_fails_the_job() -> Iterator[None]:
    """ECS stops a task with SIGTERM (StopTask, Spot interruption, scale-in) and SIGKILL 30 s
    later: turn SIGTERM into a :class:`JobFailure` so the record says why (a cancelled record
    stays CANCELLED: the conditional write is rejected). Only in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        raise JobFailure("task_stopped", f"the scoring task was stopped ({name}) while scoring")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Finished(Exception):
    """Nothing to score: the record is missing or already final."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


def _exit_code(status: str | None) -> int:
    return EXIT_SUCCEEDED if status == contract.STATUS_SUCCEEDED else EXIT_FAILED


def run_job(job_id: str, ctx: RuntimeContext) -> int:
    """Score job ``job_id``; the process exit code."""
    logger.append_keys(job_id=job_id)
    try:
        store = ctx.jobs
        job = _claim(store, job_id)
    except _Finished as finished:
        return finished.exit_code
    except Exception:
        logger.exception("cannot read or update the job record")
        return EXIT_FAILED
    try:
        with stop_signal_fails_the_job():
            values = _score(job, ctx)
        store.transition(job_id, contract.STATUS_SUCCEEDED, expected=ACTIVE_STATUSES, values=values)
    except TransitionRejected as exc:
        # Cancelled meanwhile (or completed by a duplicate task): never overwrite the record.
        logger.warning("the record changed while scoring; result not recorded", extra=_was(exc))
        return _exit_code(exc.current)
    except Exception as exc:
        error = _job_error(exc)
        logger.exception("scoring failed", extra={"code": error.code})
        return _record_failure(store, job_id, error)
    logger.info("job succeeded", extra={"rows": values["rows"]})
    return EXIT_SUCCEEDED


def _was(exc: TransitionRejected) -> dict[str, Any]:
    return {"status": exc.current}


def _claim(store: JobStore, job_id: str) -> Job:
    """The record, moved PENDING -> RUNNING (RUNNING already: a retried task, fine)."""
    job = store.get(job_id)
    if job is None:
        logger.error("no such job in the job table")
        raise _Finished(EXIT_FAILED)
    if job.terminal:
        logger.warning("the job already finished; nothing to do", extra={"status": job.status})
        raise _Finished(_exit_code(job.status))
    if job.status == contract.STATUS_RUNNING:
        return job
    try:
        return store.transition(job_id, contract.STATUS_RUNNING, expected=[contract.STATUS_PENDING])
    except TransitionRejected as exc:
        if exc.current == contract.STATUS_RUNNING:  # another attempt got there first
            return store.require(job_id)
        logger.warning("the job finished before it started", extra=_was(exc))
        raise _Finished(_exit_code(exc.current)) from None


def _record_failure(store: JobStore, job_id: str, error: JobError) -> int:
    try:
        store.transition(job_id, contract.STATUS_FAILED, expected=ACTIVE_STATUSES, error=error)
    except TransitionRejected as exc:
        logger.warning(
            "the record is already final; failure not recorded", extra={"status": exc.current}
        )
    except Exception:
        logger.exception("cannot record the failure")
    return EXIT_FAILED


def _job_error(exc: BaseException) -> JobError:
    if isinstance(exc, JobFailure):
        return JobError(exc.code, exc.message)
    if isinstance(exc, VersionNotServed):
        return JobError(exc.code, str(exc))
    if isinstance(exc, PayloadError):
        return JobError("invalid_input", f"{exc.code}: {exc.message}")
    if isinstance(exc, ModelUnavailable):
        return JobError(exc.code, f"the model is unavailable: {exc}")
    if isinstance(exc, ConfigurationError):
        return JobError("misconfigured", f"the scoring task is misconfigured: {exc}")
    return JobError(
        "internal", f"internal error in the scoring task ({type(exc).__name__}); see its logs"
    )


# --- scoring ------------------------------------------------------------------------------------


def _score(job: Job, ctx: RuntimeContext) -> dict[str, Any]:
    """Score the job's rows; the attributes to record with SUCCEEDED."""
    model = ctx.models_for(job.model_version).get()
    schema = FeatureSchema.of_model(model.info)
    limits = replace(ctx.limits, max_rows=sys.maxsize, max_body_bytes=sys.maxsize)
    rows = load_rows(job, ctx, schema, limits)
    logger.info("scoring", extra={"rows": len(rows), "model_version": model.info.version})
    predictions = model.predict(rows)
    if not np.isfinite(predictions).all():
        raise non_finite_prediction(predictions)
    return _store_predictions(job, ctx, model, encode_predictions(predictions), len(rows))


def load_rows(job: Job, ctx: RuntimeContext, schema: FeatureSchema, limits: Limits) -> Any:
    if job.instances is not None:
        # The rows the job API validated and stored (runtime/jobs.encode_rows): categorical
        # features already recoded, missing values (allowed then) as null.
        stored = FeatureSchema(schema.names, schema.index)
        return parse_json(
            f'{{"instances":{job.instances}}}', stored, replace(limits, allow_missing=True)
        )
    if job.input_uri is None:
        raise JobFailure("invalid_input", "the job has neither instances nor an input_uri")
    fmt = job.format or "json"
    if fmt == "parquet":
        data = _read_bytes(ctx, job.input_uri)
        return _parquet_rows(data, job.input_uri, schema, limits.allow_missing)
    text = _read_text(ctx, job.input_uri)
    if fmt == "csv":
        return parse_csv(text, schema, limits)
    if fmt == "json":
        return parse_json(text, schema, limits)
    if fmt == "jsonl":
        return parse_json(_jsonl_as_json(text, job.input_uri), schema, limits)
    raise JobFailure("invalid_input", f"format {fmt!r} cannot be scored in job mode")


def _parquet_rows(data: bytes, uri: str, schema: FeatureSchema, allow_missing: bool) -> Any:
    """A Parquet object's feature columns (by the model's feature names) as one matrix."""
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from runtime.scoring.batch import BatchFailure, feature_matrix

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise JobFailure("invalid_input", f"{uri} is not a Parquet file: {exc}") from exc
    names = list(schema.names)
    try:
        parts = [feature_matrix(b, names, allow_missing) for b in table.to_batches() if b.num_rows]
    except BatchFailure as exc:
        raise JobFailure("invalid_input", f"{uri}: {exc}") from exc
    if not parts:
        raise JobFailure("invalid_input", f"{uri} has no rows")
    return np.vstack(parts)


def _read_bytes(ctx: RuntimeContext, uri: str) -> bytes:
    try:
        bucket, key = parse_s3_uri(uri)
        return bytes(ctx.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    except Exception as exc:
        raise JobFailure("input_unavailable", f"cannot read {uri}: {exc}") from exc


def _read_text(ctx: RuntimeContext, uri: str) -> str:
    data = _read_bytes(ctx, uri)
    try:
        return bytes(data).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JobFailure("invalid_input", f"{uri} is not UTF-8: {exc}") from exc


def _jsonl_as_json(text: str, uri: str) -> str:
    """JSON lines (one row per line) as ``{"instances": [...]}``, naming a bad line."""
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError as exc:
            raise JobFailure("invalid_input", f"line {number} of {uri} is not JSON: {exc}") from exc
        lines.append(line.strip())
    return '{"instances":[' + ",".join(lines) + "]}"


def _store_predictions(
    job: Job, ctx: RuntimeContext, model: LoadedModel, predictions: str, rows: int
) -> dict[str, Any]:
    version = model.info.version
    values: dict[str, Any] = {"rows": rows, "model_version": version}
    final = {**values, "status": contract.STATUS_SUCCEEDED}
    if job.output_uri is None and fits_inline(job, predictions=predictions, **final):
        values["predictions"] = predictions
        return values
    uri = job.output_uri or results_uri_for(ctx.data_bucket, job.job_id)
    if uri.endswith("/"):
        uri += "predictions.json"
    bucket, key = parse_s3_uri(uri)
    ctx.client("s3").put_object(
        Bucket=bucket,
        Key=key,
        Body=predictions_document(job.job_id, version, predictions),
        ContentType="application/json",
    )
    logger.info("predictions written to S3", extra={"output_uri": uri})
    values["output_uri"] = uri
    return values
