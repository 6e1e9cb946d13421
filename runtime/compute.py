"""Where scoring runs: start, describe and stop it, and map what it did to a job outcome.

This module owns the polling logic. Each compute backend has the same four parts:

- a *target* (where and how to start the work; built from the function's environment),
- start / describe / stop calls on an injected boto3 client, raising :class:`ComputeError`,
- a *state* snapshot of what the service reports,
- a pure mapping from a finished state (and the job record) to an :class:`Outcome`.

ECS (Fargate tasks) is here now; AWS Batch jobs come next to it with the same shape
(``BatchTarget``, ``submit_job``, ``describe_job`` -> ``BatchJobState``, ``batch_outcome``).
:func:`poll` is the backoff loop both share.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from runtime import contract
from runtime.context import ConfigurationError
from runtime.jobs import JobError

MISSING: Final = "MISSING"  # last_status of a task ECS does not know (DescribeTasks failures)
STOPPED: Final = "STOPPED"
STARTED_BY: Final = "mlserve"
ASSIGN_PUBLIC_IP_VALUES: Final = ("ENABLED", "DISABLED")

# Backoff of the wait loops: 0.25 s, doubling, at most 2 s between two describe calls.
FIRST_DELAY: Final = 0.25
MAX_DELAY: Final = 2.0


class ComputeError(Exception):
    """The compute service refused or failed a call; ``reason`` is what it said."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Settings(Protocol):
    def require(self, name: str) -> str: ...
    def get(self, name: str, default: str | None = None) -> str | None: ...


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


# --- outcome ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a finished task/job means for its job record: a terminal status (+ error)."""

    status: str
    error: JobError | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == contract.STATUS_SUCCEEDED


# --- ECS ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EcsTarget:
    """Where a scoring task runs: cluster, task definition and awsvpc network configuration."""

    cluster: str
    task_definition: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    assign_public_ip: str = "DISABLED"
    container_name: str = contract.SCORING_CONTAINER_NAME

    def __post_init__(self) -> None:  # a misconfigured function answers 503
        if not self.cluster or not self.task_definition:
            raise ConfigurationError("an ECS target needs a cluster and a task definition")
        if not self.subnets:
            raise ConfigurationError("an ECS target needs at least one subnet")
        if self.assign_public_ip not in ASSIGN_PUBLIC_IP_VALUES:
            raise ConfigurationError(
                f"assign_public_ip must be ENABLED or DISABLED, got {self.assign_public_ip!r}"
            )

    @classmethod
    def from_context(cls, ctx: _Settings) -> EcsTarget:
        """From the ECS_* variables (a RuntimeContext, or anything with require/get)."""
        return cls(
            cluster=ctx.require(contract.ENV_ECS_CLUSTER),
            task_definition=ctx.require(contract.ENV_ECS_TASK_DEFINITION),
            subnets=_csv(ctx.require(contract.ENV_ECS_SUBNETS)),
            security_groups=_csv(ctx.get(contract.ENV_ECS_SECURITY_GROUPS)),
            assign_public_ip=(ctx.get(contract.ENV_ECS_ASSIGN_PUBLIC_IP) or "DISABLED").upper(),
        )

    def run_task_request(self, job_id: str) -> dict[str, Any]:
        """The RunTask parameters for one job (the job id travels in a container override; as
        the client token it makes a retried RunTask start no second task)."""
        return {
            "clientToken": job_id,
            "cluster": self.cluster,
            "taskDefinition": self.task_definition,
            "launchType": "FARGATE",
            "count": 1,
            "startedBy": STARTED_BY,
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": list(self.subnets),
                    "securityGroups": list(self.security_groups),
                    "assignPublicIp": self.assign_public_ip,
                }
            },
            "overrides": {
                "containerOverrides": [
                    {
                        "name": self.container_name,
                        "environment": [{"name": contract.ENV_JOB_ID, "value": job_id}],
                    }
                ]
            },
        }


@dataclass(frozen=True)
class TaskState:
    """A DescribeTasks snapshot of one task (of its scoring container, for the exit code)."""

    task_arn: str
    last_status: str
    exit_code: int | None = None
    stopped_reason: str | None = None
    stop_code: str | None = None
    container_reason: str | None = None

    @property
    def stopped(self) -> bool:
        return self.last_status in (STOPPED, MISSING)

    @property
    def missing(self) -> bool:
        return self.last_status == MISSING

    @classmethod
    def from_description(
        cls, task: Mapping[str, Any], container_name: str = contract.SCORING_CONTAINER_NAME
    ) -> TaskState:
        containers: Sequence[Mapping[str, Any]] = task.get("containers") or []
        scoring = next((c for c in containers if c.get("name") == container_name), None)
        if scoring is None and len(containers) == 1:
            scoring = containers[0]
        scoring = scoring or {}
        exit_code = scoring.get("exitCode")
        return cls(
            task_arn=str(task.get("taskArn", "")),
            last_status=str(task.get("lastStatus", "")),
            exit_code=int(exit_code) if exit_code is not None else None,
            stopped_reason=task.get("stoppedReason") or None,
            stop_code=task.get("stopCode") or None,
            container_reason=scoring.get("reason") or None,
        )


def _client_error_reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        err = response.get("Error") or {}
        code, message = err.get("Code"), err.get("Message")
        if code or message:
            return f"{code}: {message}" if code and message else str(code or message)
    return str(exc) or type(exc).__name__


def run_task(ecs: Any, target: EcsTarget, job_id: str) -> str:
    """Start the scoring task of ``job_id``; its task ARN, or :class:`ComputeError` with the
    reason ECS gave (a ``failures`` entry, or the API error)."""
    try:
        response = ecs.run_task(**target.run_task_request(job_id))
    except Exception as exc:  # botocore ClientError/EndpointConnectionError/ParamValidationError
        raise ComputeError(_client_error_reason(exc)) from exc
    tasks = response.get("tasks") or []
    if tasks and tasks[0].get("taskArn"):
        return str(tasks[0]["taskArn"])
    failures = response.get("failures") or []
    if failures:
        first = failures[0]
        reason = str(first.get("reason") or "unknown")
        detail = first.get("detail")
        raise ComputeError(f"{reason}: {detail}" if detail else reason)
    raise ComputeError("RunTask started no task and reported no failure")


def describe_task(ecs: Any, cluster: str, task_arn: str) -> TaskState:
    """The task's state; ``last_status`` MISSING when ECS does not know it (any more)."""
    try:
        response = ecs.describe_tasks(cluster=cluster, tasks=[task_arn])
    except Exception as exc:
        raise ComputeError(_client_error_reason(exc)) from exc
    for task in response.get("tasks") or []:
        if task.get("taskArn") == task_arn or str(task.get("taskArn", "")).endswith(
            "/" + task_arn.rsplit("/", 1)[-1]
        ):
            return TaskState.from_description(task)
    reason = next(
        (str(f.get("reason")) for f in response.get("failures") or [] if f.get("reason")), MISSING
    )
    return TaskState(task_arn=task_arn, last_status=MISSING, stopped_reason=reason)


def stop_task(ecs: Any, cluster: str, task_arn: str, reason: str) -> None:
    """Ask ECS to stop the task (SIGTERM, then SIGKILL after the stop timeout)."""
    try:
        ecs.stop_task(cluster=cluster, task=task_arn, reason=reason[:255])
    except Exception as exc:
        raise ComputeError(_client_error_reason(exc)) from exc


def ecs_outcome(state: TaskState, recorded_status: str) -> Outcome | None:
    """What a task means for its job, given the status the job record has *now* (re-read it
    after seeing the task STOPPED: the container writes the record before it exits).

    None while the task has not stopped. Otherwise SUCCEEDED only for exit code 0 of the
    scoring container *and* a record that says SUCCEEDED; every other case is FAILED with the
    ECS reason in the message.
    """
    if state.missing:
        return Outcome(
            contract.STATUS_FAILED,
            JobError(
                "task_missing",
                f"ECS does not know task {state.task_arn} "
                f"({state.stopped_reason or MISSING}); it stopped long ago or never started",
            ),
        )
    if state.last_status != STOPPED:
        return None
    why = _stop_description(state)
    if state.exit_code is None:
        return Outcome(
            contract.STATUS_FAILED,
            JobError("task_stopped", f"the task stopped before the scoring container ran: {why}"),
        )
    if state.exit_code == 0:
        if recorded_status == contract.STATUS_SUCCEEDED:
            return Outcome(contract.STATUS_SUCCEEDED)
        return Outcome(
            contract.STATUS_FAILED,
            JobError(
                "task_no_result",
                f"scoring container exited with code 0 without recording a result: {why}",
            ),
        )
    return Outcome(
        contract.STATUS_FAILED,
        JobError("task_failed", f"scoring container exited with code {state.exit_code}: {why}"),
    )


def _stop_description(state: TaskState) -> str:
    text = state.stopped_reason or "no stoppedReason"
    if state.stop_code:
        text += f" (stopCode {state.stop_code})"
    if state.container_reason and state.container_reason != state.stopped_reason:
        text += f"; container: {state.container_reason}"
    return text


# --- waiting ------------------------------------------------------------------------------------

S = TypeVar("S")


def poll(
    describe: Callable[[], S],
    done: Callable[[S], bool],
    deadline: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    first_delay: float = FIRST_DELAY,
    max_delay: float = MAX_DELAY,
) -> S:
    """Call ``describe`` until ``done`` or ``deadline`` (a ``clock()`` value); the last state.

    Sleeps 0.25 s, 0.5 s, 1 s, then 2 s between calls, never past the deadline; a deadline
    already passed still describes once.
    """
    delay = first_delay
    state = describe()
    while not done(state):
        remaining = deadline - clock()
        if remaining <= 0:
            break
        sleep(min(delay, remaining))
        delay = min(delay * 2, max_delay)
        state = describe()
    return state


def wait_for_task(
    ecs: Any,
    cluster: str,
    task_arn: str,
    deadline: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> TaskState:
    """Poll DescribeTasks with backoff until the task stopped (or is MISSING) or ``deadline``."""
    return poll(
        lambda: describe_task(ecs, cluster, task_arn),
        lambda state: state.stopped,
        deadline,
        sleep=sleep,
        clock=clock,
    )


# --- AWS Batch ----------------------------------------------------------------------------------

BATCH_SUCCEEDED: Final = "SUCCEEDED"
BATCH_FAILED: Final = "FAILED"
BATCH_RUNNING: Final = "RUNNING"
BATCH_PENDING_STATUSES: Final = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING")
BATCH_TERMINAL_STATUSES: Final = frozenset({BATCH_SUCCEEDED, BATCH_FAILED})
JOB_NAME_PREFIX: Final = "mlserve-"


@dataclass(frozen=True)
class BatchTarget:
    """Where a batch scoring job runs: the job queue of each priority and the job definition."""

    job_queue_high: str
    job_queue_low: str
    job_definition: str

    def __post_init__(self) -> None:
        if not self.job_queue_high or not self.job_queue_low or not self.job_definition:
            raise ConfigurationError("a Batch target needs both job queues and a job definition")

    @classmethod
    def from_context(cls, ctx: _Settings) -> BatchTarget:
        """From the BATCH_* variables."""
        return cls(
            job_queue_high=ctx.require(contract.ENV_BATCH_JOB_QUEUE_HIGH),
            job_queue_low=ctx.require(contract.ENV_BATCH_JOB_QUEUE_LOW),
            job_definition=ctx.require(contract.ENV_BATCH_JOB_DEFINITION),
        )

    def queue(self, priority: str | None) -> str:
        """The queue of ``priority`` (high | low; None is low)."""
        if priority == contract.PRIORITY_HIGH:
            return self.job_queue_high
        if priority in (None, contract.PRIORITY_LOW):
            return self.job_queue_low
        raise ValueError(f"priority must be high or low, got {priority!r}")

    def submit_job_request(
        self, job_id: str, *, priority: str | None = None, shards: int = 1
    ) -> dict[str, Any]:
        """The SubmitJob parameters of one job: an array job of ``shards`` children when
        ``shards > 1``; JOB_ID in the container's environment."""
        if not 1 <= shards <= contract.MAX_SHARDS:
            raise ValueError(f"shards must be 1 to {contract.MAX_SHARDS}, got {shards}")
        request: dict[str, Any] = {
            "jobName": f"{JOB_NAME_PREFIX}{job_id}"[:128],
            "jobQueue": self.queue(priority),
            "jobDefinition": self.job_definition,
            "containerOverrides": {
                "environment": [{"name": contract.ENV_JOB_ID, "value": job_id}],
            },
            "tags": {"mlserve:job_id": job_id},
            "propagateTags": True,
        }
        if shards > 1:
            request["arrayProperties"] = {"size": shards}
        return request


@dataclass(frozen=True)
class BatchAttempt:
    """One attempt of a (child) job: its container's exit code and reason."""

    exit_code: int | None = None
    reason: str | None = None
    status_reason: str | None = None


@dataclass(frozen=True)
class BatchState:
    """A DescribeJobs snapshot of one job (an array job's parent: ``array_size`` and the
    children's ``status_summary``)."""

    job_id: str
    status: str
    status_reason: str | None = None
    attempts: tuple[BatchAttempt, ...] = ()
    exit_code: int | None = None
    array_size: int | None = None
    status_summary: Mapping[str, int] | None = None

    @property
    def missing(self) -> bool:
        return self.status == MISSING

    @property
    def finished(self) -> bool:
        return self.status in BATCH_TERMINAL_STATUSES or self.missing

    @property
    def is_array(self) -> bool:
        return self.array_size is not None

    @classmethod
    def from_description(cls, job: Mapping[str, Any]) -> BatchState:
        attempts = tuple(
            BatchAttempt(
                exit_code=_int_or_none((a.get("container") or {}).get("exitCode")),
                reason=(a.get("container") or {}).get("reason") or None,
                status_reason=a.get("statusReason") or None,
            )
            for a in job.get("attempts") or []
        )
        array = job.get("arrayProperties") or {}
        size = array.get("size")
        summary = array.get("statusSummary")
        return cls(
            job_id=str(job.get("jobId", "")),
            status=str(job.get("status", "")),
            status_reason=job.get("statusReason") or None,
            attempts=attempts,
            exit_code=_int_or_none((job.get("container") or {}).get("exitCode")),
            array_size=int(size) if size is not None and "index" not in array else None,
            status_summary={str(k): int(v) for k, v in summary.items()} if summary else None,
        )

    def progress(self) -> dict[str, int]:
        """``{succeeded, failed, running, pending}`` children (a non-array job is one)."""
        if self.is_array:
            summary = self.status_summary or {}
            counted = {
                "succeeded": summary.get(BATCH_SUCCEEDED, 0),
                "failed": summary.get(BATCH_FAILED, 0),
                "running": summary.get(BATCH_RUNNING, 0),
                "pending": sum(summary.get(s, 0) for s in BATCH_PENDING_STATUSES),
            }
            # The summary may lag behind the children at first: count the unseen as pending.
            seen = sum(counted.values())
            counted["pending"] += max(0, (self.array_size or 0) - seen)
            return counted
        one = {"succeeded": 0, "failed": 0, "running": 0, "pending": 0}
        if self.status == BATCH_SUCCEEDED:
            one["succeeded"] = 1
        elif self.status in (BATCH_FAILED, MISSING):
            one["failed"] = 1
        elif self.status == BATCH_RUNNING:
            one["running"] = 1
        else:
            one["pending"] = 1
        return one


def _int_or_none(value: Any) -> int | None:
    return int(value) if value is not None else None


def submit_job(
    batch: Any, target: BatchTarget, job_id: str, *, priority: str | None = None, shards: int = 1
) -> str:
    """Submit the batch scoring job of ``job_id``; its Batch job id, or :class:`ComputeError`."""
    try:
        response = batch.submit_job(
            **target.submit_job_request(job_id, priority=priority, shards=shards)
        )
    except Exception as exc:
        raise ComputeError(_client_error_reason(exc)) from exc
    batch_job_id = response.get("jobId")
    if not batch_job_id:
        raise ComputeError("SubmitJob answered without a jobId")
    return str(batch_job_id)


def describe_job(batch: Any, batch_job_id: str) -> BatchState:
    """The job's state; ``status`` MISSING when Batch does not know it (any more)."""
    try:
        response = batch.describe_jobs(jobs=[batch_job_id])
    except Exception as exc:
        raise ComputeError(_client_error_reason(exc)) from exc
    for job in response.get("jobs") or []:
        if job.get("jobId") == batch_job_id:
            return BatchState.from_description(job)
    return BatchState(job_id=batch_job_id, status=MISSING)


def terminate_job(batch: Any, batch_job_id: str, reason: str) -> None:
    """TerminateJob (an array parent terminates its children)."""
    try:
        batch.terminate_job(jobId=batch_job_id, reason=reason[:255])
    except Exception as exc:
        raise ComputeError(_client_error_reason(exc)) from exc


def batch_outcome(state: BatchState) -> Outcome | None:
    """What a Batch job means for its job: None until it is SUCCEEDED or FAILED; SUCCEEDED only
    when the job (every child of an array job) succeeded; FAILED with Batch's reasons."""
    if state.missing:
        return Outcome(
            contract.STATUS_FAILED,
            JobError("batch_job_missing", f"AWS Batch does not know job {state.job_id}"),
        )
    if state.status not in BATCH_TERMINAL_STATUSES:
        return None
    if state.is_array:
        progress = state.progress()
        total = state.array_size or 0
        if state.status == BATCH_SUCCEEDED and progress["succeeded"] == total:
            return Outcome(contract.STATUS_SUCCEEDED)
        failed = progress["failed"] or (total - progress["succeeded"])
        why = state.status_reason or "no statusReason"
        return Outcome(
            contract.STATUS_FAILED,
            JobError(
                "batch_job_failed",
                f"{failed} of {total} shards failed ({progress['succeeded']} succeeded): {why}",
            ),
        )
    if state.status == BATCH_SUCCEEDED:
        return Outcome(contract.STATUS_SUCCEEDED)
    last = state.attempts[-1] if state.attempts else BatchAttempt(exit_code=state.exit_code)
    parts = [state.status_reason or "no statusReason"]
    if last.exit_code is not None:
        parts.append(f"exit code {last.exit_code}")
    if last.reason:
        parts.append(last.reason)
    attempts = len(state.attempts)
    return Outcome(
        contract.STATUS_FAILED,
        JobError(
            "batch_job_failed",
            f"the batch job failed after {attempts} attempt(s): {'; '.join(parts)}",
        ),
    )
