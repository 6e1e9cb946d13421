"""What the job API does per architecture: start, cancel, reconcile and wait for a job.

The job API Lambda (runtime/handlers/jobs.py) is the same for every asynchronous architecture;
what differs is how a job's work is started and watched. A :class:`Launcher` does that for one
architecture, and :func:`launcher_for` picks it by the function's ARCHITECTURE variable from
:data:`LAUNCHERS`. ``lambda-ecs`` runs and watches the task itself; ``stepfunctions-ecs``
(:class:`StepFunctionsEcsLauncher`) starts, stops and reconciles Step Functions executions;
``stepfunctions-batch`` registers the same way with :func:`register`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from runtime import contract
from runtime.compute import (
    ComputeError,
    EcsTarget,
    TaskState,
    describe_task,
    ecs_outcome,
    poll,
    run_task,
    stop_task,
    terminate_job,
)
from runtime.context import ConfigurationError, RuntimeContext
from runtime.jobs import (
    ACTIVE_STATUSES,
    DEFAULT_PRIORITY,
    Job,
    JobError,
    JobStore,
    TransitionRejected,
    age_seconds,
    default_output_uri,
)
from runtime.model import parse_s3_uri

log = logging.getLogger(f"{contract.SERVICE_NAME}.launchers")

# A PENDING job with no task this long after its creation lost its starter (a Lambda timeout
# is at most 15 minutes): it is failed on read instead of staying PENDING for ever.
STALE_START_SECONDS: Final = 15 * 60
CANCEL_REASON: Final = "cancelled by the caller (DELETE /jobs/{id})"


class LaunchFailed(Exception):
    """The work of a job could not be started; ``job`` is its record (now FAILED)."""

    def __init__(self, job: Job, reason: str) -> None:
        super().__init__(f"job {job.job_id} was not started: {reason}")
        self.job = job
        self.reason = reason


class Launcher(Protocol):
    """How one architecture runs the work of a job. Every method returns the job's record as
    it is after the call (re-read when it may have changed)."""

    architecture: str

    def start(self, job: Job) -> Job:
        """Start the work of a PENDING job; :class:`LaunchFailed` (job FAILED) if refused."""
        ...

    def cancel(self, job: Job) -> Job:
        """Move the job to CANCELLED and stop its work; :class:`TransitionRejected` if it had
        already finished."""
        ...

    def reconcile(self, job: Job) -> Job:
        """Settle a PENDING/RUNNING record whose work has ended without recording it."""
        ...

    def wait(self, job: Job, seconds: float) -> Job:
        """Wait up to ``seconds`` for the job to finish; the record then (maybe not final)."""
        ...


LauncherFactory = Callable[[RuntimeContext], Launcher]
LAUNCHERS: dict[str, LauncherFactory] = {}


def register(architecture: str) -> Callable[[LauncherFactory], LauncherFactory]:
    def decorate(factory: LauncherFactory) -> LauncherFactory:
        LAUNCHERS[architecture] = factory
        return factory

    return decorate


def launcher_for(ctx: RuntimeContext) -> Launcher:
    """The launcher of the function's ARCHITECTURE (ConfigurationError if none)."""
    architecture = ctx.architecture
    factory = LAUNCHERS.get(architecture)
    if factory is None:
        raise ConfigurationError(
            f"{contract.ENV_ARCHITECTURE}={architecture!r} has no job launcher "
            f"(available: {', '.join(sorted(LAUNCHERS))})"
        )
    return factory(ctx)


def fail_stale_start(store: JobStore, job: Job, now: float) -> Job:
    """A PENDING job without started work, older than STALE_START_SECONDS -> FAILED."""
    if job.status != contract.STATUS_PENDING or age_seconds(job, now) < STALE_START_SECONDS:
        return job
    error = JobError(
        "task_not_started", "the job API stopped before it started the job's work; submit again"
    )
    try:
        return store.transition(
            job.job_id, contract.STATUS_FAILED, expected=[contract.STATUS_PENDING], error=error
        )
    except TransitionRejected:
        return store.require(job.job_id)


# --- lambda-ecs ---------------------------------------------------------------------------------


@dataclass
class LambdaEcsLauncher:
    """``lambda-ecs``: the job API itself runs one Fargate task per job and watches it."""

    store: JobStore
    ecs: Any
    target: EcsTarget
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    architecture: str = contract.ARCH_LAMBDA_ECS

    def start(self, job: Job) -> Job:
        try:
            task_arn = run_task(self.ecs, self.target, job.job_id)
        except ComputeError as exc:
            error = JobError("task_not_started", f"ECS did not start the task: {exc.reason}")
            try:
                failed = self.store.transition(
                    job.job_id, contract.STATUS_FAILED, expected=ACTIVE_STATUSES, error=error
                )
            except TransitionRejected:
                failed = self.store.require(job.job_id)
            raise LaunchFailed(failed, exc.reason) from exc
        # Recorded whatever the status now is: a job cancelled meanwhile still needs its task
        # stopped, and GET needs the ARN to reconcile.
        started = self.store.update(job.job_id, {"task_arn": task_arn}, increment={"attempts": 1})
        log.info("task started", extra={"task_arn": task_arn})
        if started.status == contract.STATUS_CANCELLED:
            self._stop(task_arn, CANCEL_REASON)
        return started

    def cancel(self, job: Job) -> Job:
        cancelled = self.store.transition(
            job.job_id,
            contract.STATUS_CANCELLED,
            expected=ACTIVE_STATUSES,
            error=JobError("cancelled", CANCEL_REASON),
        )
        if cancelled.task_arn:
            self._stop(cancelled.task_arn, CANCEL_REASON)
        return cancelled

    def reconcile(self, job: Job) -> Job:
        if job.terminal:
            return job
        if not job.task_arn:
            return fail_stale_start(self.store, job, self.wall_clock())
        try:
            state = describe_task(self.ecs, self.target.cluster, job.task_arn)
        except ComputeError as exc:  # the record stays as it is; the next read retries
            log.warning("cannot describe the task", extra={"reason": exc.reason})
            return job
        return self._settle(job, state) if state.stopped else job

    def wait(self, job: Job, seconds: float) -> Job:
        if job.terminal or not job.task_arn:
            return job
        task_arn = job.task_arn
        deadline = self.clock() + max(0.0, seconds)

        def snapshot() -> tuple[Job, TaskState | None]:
            # The record first: the container writes SUCCEEDED before it exits, and Fargate
            # takes a while to report STOPPED after that.
            record = self.store.require(job.job_id)
            if record.terminal:
                return record, None
            return record, describe_task(self.ecs, self.target.cluster, task_arn)

        try:
            record, state = poll(
                snapshot,
                lambda snap: snap[0].terminal or (snap[1] is not None and snap[1].stopped),
                deadline,
                sleep=self.sleep,
                clock=self.clock,
            )
        except ComputeError as exc:
            log.warning("cannot describe the task", extra={"reason": exc.reason})
            return self.store.require(job.job_id)
        if state is not None and state.stopped and not record.terminal:
            return self._settle(record, state)
        return record

    def _settle(self, job: Job, state: TaskState) -> Job:
        """The task stopped: re-read the record (the container wrote it before exiting) and
        fail it when it is still PENDING/RUNNING. A terminal record is never changed."""
        record = self.store.require(job.job_id)
        if record.terminal:
            return record
        outcome = ecs_outcome(state, record.status)
        if outcome is None or outcome.succeeded:  # success is only ever recorded by the task
            return record
        log.warning(
            "task stopped without a result",
            extra={"task_arn": state.task_arn, "reason": outcome.error and outcome.error.message},
        )
        try:
            return self.store.transition(
                job.job_id, outcome.status, expected=ACTIVE_STATUSES, error=outcome.error
            )
        except TransitionRejected:
            return self.store.require(job.job_id)

    def _stop(self, task_arn: str, reason: str) -> None:
        try:
            stop_task(self.ecs, self.target.cluster, task_arn, reason)
        except ComputeError as exc:  # the record is CANCELLED; the task cannot record success
            log.warning("StopTask failed", extra={"task_arn": task_arn, "reason": exc.reason})


@register(contract.ARCH_LAMBDA_ECS)
def _lambda_ecs(ctx: RuntimeContext) -> Launcher:
    return LambdaEcsLauncher(
        store=ctx.jobs, ecs=ctx.client("ecs"), target=EcsTarget.from_context(ctx)
    )


# --- stepfunctions-ecs --------------------------------------------------------------------------

EXECUTION_FAILED_STATUSES: Final = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})
STOP_EXECUTION_ERROR: Final = "JobCancelled"


def execution_arn(state_machine_arn: str, job_id: str) -> str:
    """The ARN of the execution named ``job_id`` of ``state_machine_arn``
    (``arn:aws:states:REGION:ACCOUNT:stateMachine:NAME`` -> ``...:execution:NAME:job_id``)."""
    parts = state_machine_arn.split(":")
    if len(parts) != 7 or parts[5] != "stateMachine" or not parts[6]:
        raise ConfigurationError(
            f"{contract.ENV_STATE_MACHINE_ARN}={state_machine_arn!r} is not a state machine ARN"
        )
    return ":".join([*parts[:5], "execution", parts[6], job_id])


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str((response.get("Error") or {}).get("Code") or "")
    return ""


def _reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error") or {}
        if err.get("Code") or err.get("Message"):
            return f"{err.get('Code')}: {err.get('Message')}"
    return str(exc) or type(exc).__name__


def _not_started(store: JobStore, job: Job, message: str) -> Job:
    """Record FAILED task_not_started (unless the job already ended) and return the record."""
    error = JobError("task_not_started", message)
    try:
        return store.transition(
            job.job_id, contract.STATUS_FAILED, expected=ACTIVE_STATUSES, error=error
        )
    except TransitionRejected:
        return store.require(job.job_id)


@dataclass
class StepFunctionsEcsLauncher:
    """``stepfunctions-ecs``: one Standard execution per job, named after the job id, runs and
    watches the Fargate task (components/workflows.py); the job API only starts, stops and
    reconciles executions, and never waits (POST /predict answers 202)."""

    store: JobStore
    sfn: Any
    state_machine_arn: str
    ecs: Any
    cluster: str | None = None  # where StopTask stops a cancelled job's task
    wall_clock: Callable[[], float] = time.time
    architecture: str = contract.ARCH_STEPFUNCTIONS_ECS

    def execution_arn(self, job_id: str) -> str:
        return execution_arn(self.state_machine_arn, job_id)

    def start(self, job: Job) -> Job:
        """StartExecution(name=job_id, input {"job_id"}). Step Functions itself refuses a second
        execution with that name (ExecutionAlreadyExists): that job is started already."""
        try:
            self.sfn.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=job.job_id,
                input=json.dumps({"job_id": job.job_id}),
            )
        except Exception as exc:  # botocore ClientError / connection errors
            if _error_code(exc) == "ExecutionAlreadyExists":
                log.info("execution already started", extra={"job_id": job.job_id})
                return job
            reason = _reason(exc)
            message = f"Step Functions did not start the job: {reason}"
            raise LaunchFailed(_not_started(self.store, job, message), reason) from exc
        log.info("execution started", extra={"execution_arn": self.execution_arn(job.job_id)})
        return job

    def cancel(self, job: Job) -> Job:
        """CANCELLED first (conditional: TransitionRejected if the job finished), then stop the
        execution and the task. The workflow's updates are conditional, so even an execution
        that is not stopped in time cannot move the record out of CANCELLED."""
        cancelled = self.store.transition(
            job.job_id,
            contract.STATUS_CANCELLED,
            expected=ACTIVE_STATUSES,
            error=JobError("cancelled", CANCEL_REASON),
        )
        try:
            self.sfn.stop_execution(
                executionArn=self.execution_arn(job.job_id),
                error=STOP_EXECUTION_ERROR,
                cause=CANCEL_REASON,
            )
        except Exception as exc:  # e.g. ExecutionDoesNotExist: it never started
            log.warning("StopExecution failed", extra={"reason": _reason(exc)})
        if cancelled.task_arn:
            self._stop_task(cancelled.task_arn, CANCEL_REASON)
        return cancelled

    def reconcile(self, job: Job) -> Job:
        """A PENDING/RUNNING record whose execution ended FAILED/TIMED_OUT/ABORTED is marked
        FAILED (workflow_error with the execution's error and cause), and its task stopped; a
        PENDING record without an execution for STALE_START_SECONDS fails as not started."""
        if job.terminal:
            return job
        try:
            execution = self.sfn.describe_execution(executionArn=self.execution_arn(job.job_id))
        except Exception as exc:
            if _error_code(exc) == "ExecutionDoesNotExist":
                return fail_stale_start(self.store, job, self.wall_clock())
            log.warning("cannot describe the execution", extra={"reason": _reason(exc)})
            return job
        status = str(execution.get("status", ""))
        if status not in EXECUTION_FAILED_STATUSES:
            return job
        detail = ": ".join(
            str(part) for part in (execution.get("error"), execution.get("cause")) if part
        )
        message = f"the workflow execution ended {status}" + (f": {detail}" if detail else "")
        try:
            failed = self.store.transition(
                job.job_id,
                contract.STATUS_FAILED,
                expected=ACTIVE_STATUSES,
                error=JobError("workflow_error", message[:4096]),
            )
        except TransitionRejected:
            return self.store.require(job.job_id)
        log.warning("execution ended without recording the job", extra={"status": status})
        if failed.task_arn:
            self._stop_task(failed.task_arn, message)
        return failed

    def wait(self, job: Job, seconds: float) -> Job:
        """No waiting: the state machine watches the task (POST /predict answers 202)."""
        return job

    def _stop_task(self, task_arn: str, reason: str) -> None:
        cluster = self.cluster or _cluster_of(task_arn)
        try:
            stop_task(self.ecs, cluster, task_arn, reason)
        except ComputeError as exc:
            log.warning("StopTask failed", extra={"task_arn": task_arn, "reason": exc.reason})


def _cluster_of(task_arn: str) -> str:
    """``arn:...:task/<cluster>/<id>`` -> the cluster name (ECS accepts names and ARNs)."""
    resource = task_arn.split(":", 5)[-1]
    parts = resource.split("/")
    return parts[1] if len(parts) == 3 else "default"


@register(contract.ARCH_STEPFUNCTIONS_ECS)
def _stepfunctions_ecs(ctx: RuntimeContext) -> Launcher:
    return StepFunctionsEcsLauncher(
        store=ctx.jobs,
        sfn=ctx.client("stepfunctions"),
        state_machine_arn=ctx.state_machine_arn,
        ecs=ctx.client("ecs"),
        cluster=ctx.get(contract.ENV_ECS_CLUSTER) or None,
    )


# --- stepfunctions-batch ------------------------------------------------------------------------


def staged_input_key(job_id: str) -> str:
    """Where inline rows of a batch job are staged: ``inputs/{job_id}.jsonl``."""
    return f"{contract.INPUTS_PREFIX}{job_id}.jsonl"


@dataclass
class StepFunctionsBatchLauncher(StepFunctionsEcsLauncher):
    """``stepfunctions-batch``: one Standard execution per job (named after the job id) submits
    and watches the AWS Batch job (components/workflows.py batch_*_definition).

    ``start`` completes the record first: inline ``instances`` are staged to
    ``inputs/{job_id}.jsonl`` (one JSON row array per line, format jsonl), and a missing
    ``output_uri``/``shards``/``priority`` gets ``results/{job_id}/``, 1, low. ``cancel`` moves
    the record to CANCELLED, stops the execution and terminates the Batch job."""

    batch: Any = None
    s3: Any = None
    data_bucket: str | None = None
    # The model's feature names (staged rows are JSON objects keyed by them); read lazily.
    feature_names: Callable[[], Sequence[str]] | None = None
    architecture: str = contract.ARCH_STEPFUNCTIONS_BATCH

    def start(self, job: Job) -> Job:
        try:
            job = self._complete(job)
        except Exception as exc:  # S3/DynamoDB errors after retries: never left PENDING
            reason = _reason(exc)
            message = f"the job's input was not staged: {reason}"
            raise LaunchFailed(_not_started(self.store, job, message), reason) from exc
        return super().start(job)

    def _complete(self, job: Job) -> Job:
        values: dict[str, Any] = {}
        remove: list[str] = []
        rows: list[Any] | None = None
        if job.instances is not None:
            rows = json.loads(job.instances)
            remove.append("instances")
        elif job.format == "json" and job.input_uri:  # spilled by the job API: {"instances"}
            bucket, key = parse_s3_uri(job.input_uri)
            rows = json.loads(self._s3().get_object(Bucket=bucket, Key=key)["Body"].read())[
                "instances"
            ]
        if rows is not None:
            values.update(input_uri=self._stage(job.job_id, rows), format="jsonl")
        if job.output_uri is None or not job.output_uri.endswith("/"):
            bucket = self.data_bucket or (parse_s3_uri(job.input_uri)[0] if job.input_uri else "")
            if bucket:
                values["output_uri"] = default_output_uri(bucket, job.job_id)
        if job.shards is None:
            values["shards"] = 1
        if job.priority is None:
            values["priority"] = DEFAULT_PRIORITY
        if not values and not remove:
            return job
        return self.store.update(job.job_id, values, remove=remove)

    def _s3(self) -> Any:
        if self.s3 is None or not self.data_bucket:
            raise ConfigurationError("staging inline rows needs s3 and DATA_BUCKET")
        return self.s3

    def _stage(self, job_id: str, rows: Sequence[Any]) -> str:
        """Rows (arrays in feature order, null for missing) as JSON lines of objects keyed by
        the feature names, at ``inputs/{job_id}.jsonl``; its URI."""
        s3 = self._s3()
        names = list(self.feature_names()) if self.feature_names is not None else []
        lines = []
        for row in rows:
            if isinstance(row, list) and len(row) != len(names):
                raise ConfigurationError(
                    f"a staged row has {len(row)} values but the model has {len(names)} features"
                )
            obj = dict(zip(names, row, strict=True)) if isinstance(row, list) else row
            lines.append(json.dumps(obj, separators=(",", ":")) + "\n")
        key = staged_input_key(job_id)
        s3.put_object(
            Bucket=self.data_bucket,
            Key=key,
            Body="".join(lines).encode(),
            ContentType="application/x-ndjson",
        )
        return f"s3://{self.data_bucket}/{key}"

    def cancel(self, job: Job) -> Job:
        cancelled = super().cancel(job)
        if cancelled.batch_job_id:
            self._terminate(cancelled.batch_job_id, CANCEL_REASON)
        return cancelled

    def reconcile(self, job: Job) -> Job:
        settled = super().reconcile(job)
        if not job.terminal and settled.status == contract.STATUS_FAILED and settled.batch_job_id:
            self._terminate(settled.batch_job_id, "the workflow execution ended without the job")
        return settled

    def _terminate(self, batch_job_id: str, reason: str) -> None:
        if self.batch is None:
            return
        try:
            terminate_job(self.batch, batch_job_id, reason)
        except ComputeError as exc:
            log.warning(
                "TerminateJob failed", extra={"batch_job_id": batch_job_id, "reason": exc.reason}
            )


@register(contract.ARCH_STEPFUNCTIONS_BATCH)
def _stepfunctions_batch(ctx: RuntimeContext) -> Launcher:
    return StepFunctionsBatchLauncher(
        store=ctx.jobs,
        sfn=ctx.client("stepfunctions"),
        state_machine_arn=ctx.state_machine_arn,
        ecs=None,
        batch=ctx.client("batch"),
        s3=ctx.client("s3"),
        data_bucket=ctx.get(contract.ENV_DATA_BUCKET) or None,
        feature_names=lambda: ctx.model_info.feature_names,
    )
