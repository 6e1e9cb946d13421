"""The Lambda Task states of ``stepfunctions-ecs`` (``polling: lambda``): RunECS, CheckJobStatus;
and of ``stepfunctions-batch`` (``polling: lambda``): SubmitBatchJob, CheckBatchStatus (below:
:func:`submit_batch_job`, :func:`check_batch_status`; environment BATCH_JOB_QUEUE_HIGH,
BATCH_JOB_QUEUE_LOW, BATCH_JOB_DEFINITION, JOB_TABLE; clients dynamodb, batch).

Both are plain Lambda handlers invoked by Step Functions (components/workflows.py writes their
ARNs into the definition) with ``{"job_id"}`` / ``{"job_id", "task_arn"}``. The ECS calls and the
mapping of a stopped task to a job outcome are runtime/compute.py's, shared with lambda-ecs.

- :func:`run_ecs` starts the scoring task (RunTask with ``clientToken=job_id``: a retried
  invocation starts no second task), records ``task_arn`` on the job and answers
  ``{"task_arn"}``. When ECS refuses, it records the job FAILED (``task_not_started`` with ECS's
  reason) and raises :class:`TaskNotStarted`; the workflow's Catch then finds the record
  terminal and ends in AlreadyFinal.
- :func:`check_job_status` answers ``{"state": RUNNING|SUCCEEDED|FAILED, "error": {code,
  message} | None}``: RUNNING while the task runs (and the record is not terminal), else the
  outcome of :func:`runtime.compute.ecs_outcome`: exit code 0 counts only when the record says
  SUCCEEDED (the container records its result before it exits). ``error`` is always present
  (None unless FAILED) so the definition can select it.

Environment: JOB_TABLE, ECS_CLUSTER, ECS_TASK_DEFINITION, ECS_SUBNETS, ECS_SECURITY_GROUPS,
ECS_ASSIGN_PUBLIC_IP, POWERTOOLS_*. Clients (injectable with :func:`configure`): dynamodb, ecs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger

from runtime import contract, metrics
from runtime.compute import (
    BatchTarget,
    ComputeError,
    EcsTarget,
    batch_outcome,
    describe_job,
    describe_task,
    ecs_outcome,
    run_task,
    stop_task,
    submit_job,
    terminate_job,
)
from runtime.context import RuntimeContext
from runtime.jobs import ACTIVE_STATUSES, Job, JobError, JobNotFound, TransitionRejected

logger = Logger(service=contract.SERVICE_NAME)

STATE_RUNNING = contract.STATUS_RUNNING
STATE_SUCCEEDED = contract.STATUS_SUCCEEDED
STATE_FAILED = contract.STATUS_FAILED
CANCELLED_REASON = "the job was cancelled while its task was starting"

_context: RuntimeContext | None = None


class TaskNotStarted(Exception):
    """ECS refused to start the task (the job is recorded FAILED, task_not_started)."""


class InvalidEvent(Exception):
    """The state passed an input this function cannot use (a definition/handler mismatch)."""


def configure(
    env: Mapping[str, str] | None = None, clients: Mapping[str, Any] | None = None
) -> RuntimeContext:
    """Replace the runtime context (tests, the local emulator). Clients: dynamodb, ecs."""
    global _context  # noqa: PLW0603 - the one module-level context, by design
    _context = RuntimeContext(env, clients)
    return _context


def runtime_context() -> RuntimeContext:
    return _context if _context is not None else configure()


def _field(event: Mapping[str, Any], name: str) -> str:
    value = event.get(name) if isinstance(event, Mapping) else None
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"the state input has no {name!r} string: {event!r}")
    return value


# --- RunECS -------------------------------------------------------------------------------------


def start_task(ctx: RuntimeContext, job_id: str) -> dict[str, str]:
    """Start the job's task and record its ARN; see the module docstring."""
    store = ctx.jobs
    target = EcsTarget.from_context(ctx)
    ecs = ctx.client("ecs")
    try:
        task_arn = run_task(ecs, target, job_id)
    except ComputeError as exc:
        error = JobError("task_not_started", f"ECS did not start the task: {exc.reason}")
        try:
            store.transition(job_id, contract.STATUS_FAILED, expected=ACTIVE_STATUSES, error=error)
        except TransitionRejected as rejected:
            logger.info("job already final", extra={"status": rejected.current})
        logger.error("task not started", extra={"reason": exc.reason})
        raise TaskNotStarted(error.message) from exc
    # Recorded whatever the status now is (update never changes the status, so nothing moves
    # backwards): a job cancelled meanwhile still needs its task stopped, and GET/DELETE need the
    # ARN. A retried invocation gets the same task (client token) and does not count twice.
    job = store.require(job_id)
    if job.task_arn == task_arn:
        started: Job = job
    else:
        started = store.update(job_id, {"task_arn": task_arn}, increment={"attempts": 1})
    logger.info("task started", extra={"task_arn": task_arn})
    if started.status == contract.STATUS_CANCELLED:
        try:
            stop_task(ecs, target.cluster, task_arn, CANCELLED_REASON)
        except ComputeError as exc:
            logger.warning("StopTask failed", extra={"task_arn": task_arn, "reason": exc.reason})
    return {"task_arn": task_arn}


@logger.inject_lambda_context(clear_state=True)
def run_ecs(event: dict[str, Any], context: Any) -> dict[str, str]:
    """RunECS: ``{"job_id"}`` -> ``{"task_arn"}``; raises TaskNotStarted when ECS refuses."""
    job_id = _field(event, "job_id")
    logger.append_keys(job_id=job_id)
    try:
        return start_task(runtime_context(), job_id)
    except JobNotFound as exc:
        raise InvalidEvent(str(exc)) from exc


# --- CheckJobStatus -----------------------------------------------------------------------------


def job_state(ctx: RuntimeContext, job_id: str, task_arn: str) -> dict[str, Any]:
    """``{"state", "error"}`` of the job whose task is ``task_arn``; see the module docstring."""
    store = ctx.jobs
    target = EcsTarget.from_context(ctx)
    record = store.require(job_id)
    if record.status == contract.STATUS_SUCCEEDED:
        # Recorded by the container, with its predictions: nothing ECS says can change that.
        return {"state": STATE_SUCCEEDED, "error": None}
    task = describe_task(ctx.client("ecs"), target.cluster, task_arn)  # ComputeError: see below
    if not task.stopped:
        if record.terminal:  # FAILED by the container or CANCELLED: the task is stopping
            return _failed(record)
        return {"state": STATE_RUNNING, "error": None}
    # The container writes the record before it exits: read it again now that the task stopped.
    record = store.require(job_id)
    if record.terminal and record.status != contract.STATUS_SUCCEEDED:
        return _failed(record)
    outcome = ecs_outcome(task, record.status)  # never None: the task stopped
    if outcome is None or outcome.succeeded:
        return {"state": STATE_SUCCEEDED if outcome else STATE_RUNNING, "error": None}
    error = outcome.error or JobError("task_failed", "the scoring task failed")
    logger.warning("task stopped without a result", extra={"reason": error.message})
    return {"state": STATE_FAILED, "error": error.as_dict()}


def _failed(record: Job) -> dict[str, Any]:
    error = record.error or JobError(record.status.lower(), f"the job is {record.status}")
    return {"state": STATE_FAILED, "error": error.as_dict()}


@logger.inject_lambda_context(clear_state=True)
def check_job_status(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """CheckJobStatus: ``{"job_id", "task_arn"}`` -> ``{"state", "error"}``."""
    job_id = _field(event, "job_id")
    task_arn = _field(event, "task_arn")
    logger.append_keys(job_id=job_id, task_arn=task_arn)
    try:
        result = job_state(runtime_context(), job_id, task_arn)
    except JobNotFound as exc:
        raise InvalidEvent(str(exc)) from exc
    except ComputeError as exc:
        # DescribeTasks failed (after boto3's retries): the job is not failed for that; the
        # next poll asks again, and the execution timeout bounds how long.
        logger.warning("DescribeTasks failed; polling again", extra={"reason": exc.reason})
        result = {"state": STATE_RUNNING, "error": None}
    logger.info("job state", extra={"state": result["state"]})
    return result


# --- stepfunctions-batch: SubmitBatchJob, CheckBatchStatus ---------------------------------------


class BatchJobNotSubmitted(Exception):
    """AWS Batch refused the job (the job is recorded FAILED, batch_job_not_submitted)."""


def submit(ctx: RuntimeContext, job_id: str) -> dict[str, str]:
    """SubmitJob to the job's priority queue (an array of ``shards`` children when > 1), record
    ``batch_job_id``; a retried invocation finding one recorded submits nothing."""
    store = ctx.jobs
    record = store.require(job_id)
    if record.batch_job_id:
        logger.info("batch job already submitted", extra={"batch_job_id": record.batch_job_id})
        return {"batch_job_id": record.batch_job_id}
    if record.terminal:
        raise InvalidEvent(f"job {job_id} is {record.status}; nothing to submit")
    target = BatchTarget.from_context(ctx)
    batch = ctx.client("batch")
    try:
        batch_job_id = submit_job(
            batch, target, job_id, priority=record.priority, shards=int(record.shards or 1)
        )
    except (ComputeError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, ComputeError) else str(exc)
        error = JobError("batch_job_not_submitted", f"AWS Batch did not accept the job: {reason}")
        try:
            store.transition(job_id, contract.STATUS_FAILED, expected=ACTIVE_STATUSES, error=error)
        except TransitionRejected as rejected:
            logger.info("job already final", extra={"status": rejected.current})
        logger.error("batch job not submitted", extra={"reason": reason})
        raise BatchJobNotSubmitted(error.message) from exc
    total = int(record.shards or 1)
    progress = {"succeeded": 0, "failed": 0, "running": 0, "pending": total}
    updated = store.update(job_id, {"batch_job_id": batch_job_id, "progress": progress})
    logger.info("batch job submitted", extra={"batch_job_id": batch_job_id, "shards": total})
    if updated.status == contract.STATUS_CANCELLED:
        try:
            terminate_job(batch, batch_job_id, CANCELLED_REASON)
        except ComputeError as exc:
            logger.warning("TerminateJob failed", extra={"reason": exc.reason})
    return {"batch_job_id": batch_job_id}


@logger.inject_lambda_context(clear_state=True)
def submit_batch_job(event: dict[str, Any], context: Any) -> dict[str, str]:
    """SubmitBatchJob: ``{"job_id"}`` -> ``{"batch_job_id"}``; raises BatchJobNotSubmitted."""
    job_id = _field(event, "job_id")
    logger.append_keys(job_id=job_id)
    try:
        return submit(runtime_context(), job_id)
    except JobNotFound as exc:
        raise InvalidEvent(str(exc)) from exc


def batch_state(ctx: RuntimeContext, job_id: str, batch_job_id: str) -> dict[str, Any]:
    """``{"state", "error"}`` of the job whose Batch job is ``batch_job_id``; records the array's
    ``progress`` on the job. SUCCEEDED only when every child succeeded (and the record is
    still active: MarkSucceeded moves it from RUNNING); FAILED with Batch's reasons."""
    store = ctx.jobs
    record = store.require(job_id)
    if record.terminal:  # CANCELLED (or FAILED) meanwhile: the workflow stops here
        return _failed(record)
    state = describe_job(ctx.client("batch"), batch_job_id)
    progress = state.progress()
    if record.progress != progress:
        try:
            store.update(job_id, {"progress": progress}, statuses=ACTIVE_STATUSES)
        except TransitionRejected as exc:
            logger.info("job finished meanwhile", extra={"status": exc.current})
    outcome = batch_outcome(state)
    if outcome is None:
        return {"state": STATE_RUNNING, "error": None, "progress": progress}
    if outcome.succeeded:
        return {"state": STATE_SUCCEEDED, "error": None, "progress": progress}
    error = outcome.error or JobError("batch_job_failed", "the batch job failed")
    logger.warning("batch job failed", extra={"reason": error.message})
    metrics.count(contract.METRIC_BATCH_JOBS_FAILED, job_id)
    return {"state": STATE_FAILED, "error": error.as_dict(), "progress": progress}


@logger.inject_lambda_context(clear_state=True)
def check_batch_status(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """CheckBatchStatus: ``{"job_id", "batch_job_id"}`` -> ``{"state", "error", "progress"}``."""
    job_id = _field(event, "job_id")
    batch_job_id = _field(event, "batch_job_id")
    logger.append_keys(job_id=job_id, batch_job_id=batch_job_id)
    try:
        result = batch_state(runtime_context(), job_id, batch_job_id)
    except JobNotFound as exc:
        raise InvalidEvent(str(exc)) from exc
    except ComputeError as exc:
        logger.warning("DescribeJobs failed; polling again", extra={"reason": exc.reason})
        result = {"state": STATE_RUNNING, "error": None, "progress": None}
    logger.info("batch job state", extra={"state": result["state"]})
    return result
