"""Amazon States Language definitions of the Step Functions architectures, as plain dicts.

Pure module: no Pulumi, no AWS calls. The component (components/stepfunctions.py) resolves the
ARNs and names it needs and calls these builders inside an ``Output.apply``; the local emulator
hands the very same dicts to moto's Step Functions engine. Everything a state needs (function
ARNs, the table name, the cluster, the network) is written into the definition, never passed
at run time: an execution's input is only ``{"job_id": "<id>"}``.

``stepfunctions-ecs`` has two polling modes (``mlserve:polling``):

``lambda`` (the default, :func:`ecs_lambda_polling_definition`)::

    RecordRunning -> RunECS -> WaitForTask -> CheckJobStatus -> IsTaskDone
                                   ^                                |  RUNNING
                                   +--------------------------------+
    IsTaskDone: SUCCEEDED -> MarkSucceeded (end); otherwise -> MarkFailed -> JobFailed (Fail)

``native`` (:func:`ecs_native_definition`)::

    RecordRunning -> RunTask (ecs:runTask.sync) -> ExitedCleanly
    ExitedCleanly: exit code 0 -> MarkSucceeded; otherwise -> TaskStopped -> MarkFailed
    RunTask failed (States.TaskFailed) -> TaskFailed -> MarkFailed

The job record only moves forward (DESIGN.md §5), here with conditional ``dynamodb:updateItem``:

- RecordRunning: PENDING -> RUNNING (``#s = :pending``).
- MarkSucceeded: -> SUCCEEDED only from RUNNING or SUCCEEDED (the scoring container normally
  recorded SUCCEEDED itself, with its predictions, before it exited).
- MarkFailed: -> FAILED with ``error {code, message}`` only from PENDING or RUNNING.

A ``ConditionalCheckFailed`` on any of the three means the record is already terminal (e.g.
CANCELLED by ``DELETE /jobs/{id}``, or FAILED by the container with its own reason); it is caught
and the execution ends in :data:`ALREADY_FINAL` (Succeed), leaving the record as it is.

Every failure path converges on MarkFailed, which reads the job error from
``$.check.error`` (:data:`ERROR_PATH`):

- CheckJobStatus (lambda mode) returns ``{"state", "error"}`` there itself;
- TaskStopped / TaskFailed (native mode) build it from the ECS task description;
- any other error (Lambda errors after their retries, timeouts, DynamoDB errors, an ECS API
  error) is caught with ``ResultPath $.failure`` and goes through :data:`WORKFLOW_ERROR`, a Pass
  state that records code ``workflow_error`` and message ``"<Error>: <Cause>"``. (JSONPath ASL
  has no substring intrinsic; Step Functions itself caps a Cause at 32,768 characters, far
  below the job item's 350 KB budget.)

MarkFailed's own failures other than ConditionalCheckFailed end in :data:`RECORDING_FAILED`
(Fail): the execution is FAILED and the job API's reconcile (runtime/launchers.py) marks the
record FAILED when it next reads it.

Shared pieces (:func:`lambda_task`, :func:`dynamodb_update_task`, :func:`retry`,
:func:`catch_all`, :func:`mark_succeeded_state`, :func:`mark_failed_state`,
:func:`record_running_state` ...) are public so that ``stepfunctions-batch`` can reuse them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from runtime import contract

# --- state names (the emulator, tests and docs refer to them) ---------------------------------
RECORD_RUNNING: Final = "RecordRunning"
RUN_ECS: Final = "RunECS"  # lambda mode: the RunECS Lambda (runtime.handlers.steps.run_ecs)
WAIT_FOR_TASK: Final = "WaitForTask"
CHECK_JOB_STATUS: Final = "CheckJobStatus"  # lambda mode: runtime.handlers.steps.check_job_status
IS_TASK_DONE: Final = "IsTaskDone"
RUN_TASK: Final = "RunTask"  # native mode: ecs:runTask.sync
EXITED_CLEANLY: Final = "ExitedCleanly"
TASK_STOPPED: Final = "TaskStopped"  # native: the task stopped with a non-zero/no exit code
TASK_STOPPED_WITHOUT_REASON: Final = "TaskStoppedWithoutReason"  # native: ... nor a reason
TASK_FAILED: Final = "TaskFailed"  # native: the .sync integration reported States.TaskFailed
WORKFLOW_ERROR: Final = "WorkflowError"  # a caught error -> error code workflow_error
NO_RESULT_RECORDED: Final = "NoResultRecorded"  # stopped cleanly, but the record is not SUCCEEDED
MARK_SUCCEEDED: Final = "MarkSucceeded"
MARK_FAILED: Final = "MarkFailed"
JOB_FAILED: Final = "JobFailed"  # Fail: the job was recorded FAILED
ALREADY_FINAL: Final = "AlreadyFinal"  # Succeed: the record was already terminal
RECORDING_FAILED: Final = "RecordingFailed"  # Fail: MarkFailed itself failed

# --- paths in the execution's data -------------------------------------------------------------
JOB_ID_PATH: Final = "$.job_id"  # the execution input {"job_id": "<id>"}
TASK_PATH: Final = "$.task"  # lambda: {"task_arn"}; native: {"Container", "Description"}
CHECK_PATH: Final = "$.check"  # {"state": RUNNING|SUCCEEDED|FAILED, "error": {code, message}|null}
ERROR_PATH: Final = "$.check.error"  # what MarkFailed records
FAILURE_PATH: Final = "$.failure"  # a caught error: {"Error", "Cause"}

# --- the values CheckJobStatus answers in "state" ----------------------------------------------
CHECK_RUNNING: Final = contract.STATUS_RUNNING
CHECK_SUCCEEDED: Final = contract.STATUS_SUCCEEDED
CHECK_FAILED: Final = contract.STATUS_FAILED

# Job error codes recorded by the workflow itself (runtime/compute.ecs_outcome has the others).
WORKFLOW_ERROR_CODE: Final = "workflow_error"
NO_RESULT_CODE: Final = "task_no_result"  # as runtime.compute's outcome for the same case
TASK_FAILED_CODE: Final = "task_failed"

# --- retries -----------------------------------------------------------------------------------
LAMBDA_RETRY_ERRORS: Final = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
# A status check (CheckJobStatus, CheckBatchStatus) only reads the task or job and records what
# it sees, so one that outlives its TimeoutSeconds (a throttled or slow invocation) is asked
# again rather than failing a job whose work may be running fine.
POLL_RETRY_ERRORS: Final = (*LAMBDA_RETRY_ERRORS, "States.Timeout")
DYNAMODB_RETRY_ERRORS: Final = (
    "DynamoDB.ProvisionedThroughputExceededException",
    "DynamoDB.ThrottlingException",
    "DynamoDB.InternalServerErrorException",
    "DynamoDB.InternalServerError",
    "DynamoDB.RequestLimitExceeded",
    "DynamoDB.TransactionConflictException",
)
# Errors of the RunTask API call itself (no task was started, so retrying starts at most one).
# A task that started and then failed is States.TaskFailed, never retried.
ECS_RETRY_ERRORS: Final = ("ECS.AmazonECSException",)
CONDITIONAL_CHECK_FAILED: Final = "DynamoDB.ConditionalCheckFailedException"
RETRY_INTERVAL_SECONDS: Final = 2
RETRY_BACKOFF_RATE: Final = 2
RETRY_MAX_ATTEMPTS: Final = 3

# --- defaults ----------------------------------------------------------------------------------
DEFAULT_POLL_INTERVAL_SECONDS: Final = 10
DEFAULT_STEP_TIMEOUT_SECONDS: Final = 60  # Lambda and DynamoDB Task states
ASSIGN_PUBLIC_IP_VALUES: Final = ("ENABLED", "DISABLED")

LAMBDA_INVOKE: Final = "arn:aws:states:::lambda:invoke"
DYNAMODB_UPDATE_ITEM: Final = "arn:aws:states:::dynamodb:updateItem"
ECS_RUN_TASK_SYNC: Final = "arn:aws:states:::ecs:runTask.sync"
# What RunTask keeps of the stopped task's description (at $.task): the scoring container (the
# task definition has one) and the whole description (StoppedReason, StopCode, TaskArn ...).
RUN_TASK_RESULT_SELECTOR: Final[Mapping[str, str]] = {
    "Container.$": "$.Containers[0]",
    "Description.$": "$",
}

State = dict[str, Any]


# --- validation --------------------------------------------------------------------------------


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer (seconds), got {value!r}")
    return value


def _text(name: str, value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


# --- shared builders ---------------------------------------------------------------------------


def retry(
    errors: Sequence[str],
    *,
    interval_seconds: int = RETRY_INTERVAL_SECONDS,
    backoff_rate: float = RETRY_BACKOFF_RATE,
    max_attempts: int = RETRY_MAX_ATTEMPTS,
) -> list[dict[str, Any]]:
    """One retrier on ``errors`` with exponential backoff and capped attempts."""
    return [
        {
            "ErrorEquals": list(errors),
            "IntervalSeconds": interval_seconds,
            "BackoffRate": backoff_rate,
            "MaxAttempts": max_attempts,
        }
    ]


def catch_all(next_state: str = WORKFLOW_ERROR) -> dict[str, Any]:
    """Catch every error, keep it at ``$.failure`` ({"Error", "Cause"}) and go to ``next_state``
    (by default :data:`WORKFLOW_ERROR`, which records it through MarkFailed)."""
    return {"ErrorEquals": ["States.ALL"], "ResultPath": FAILURE_PATH, "Next": next_state}


def catch_already_final() -> dict[str, Any]:
    """A conditional update found the record terminal already: nothing to do."""
    return {
        "ErrorEquals": [CONDITIONAL_CHECK_FAILED],
        "ResultPath": FAILURE_PATH,
        "Next": ALREADY_FINAL,
    }


def lambda_task(
    function_arn: str,
    payload: Mapping[str, Any],
    *,
    result_selector: Mapping[str, Any],
    result_path: str,
    next_state: str,
    timeout_seconds: int = DEFAULT_STEP_TIMEOUT_SECONDS,
    catch: Sequence[Mapping[str, Any]] | None = None,
    retry_errors: Sequence[str] = LAMBDA_RETRY_ERRORS,
) -> State:
    """A Lambda Task (optimised ``lambda:invoke`` integration, the function ARN written in),
    retried on ``retry_errors`` (Lambda's transient errors), every other error caught."""
    return {
        "Type": "Task",
        "Resource": LAMBDA_INVOKE,
        "Parameters": {"FunctionName": _text("function_arn", function_arn), "Payload": payload},
        "ResultSelector": dict(result_selector),
        "ResultPath": result_path,
        "TimeoutSeconds": _positive("timeout_seconds", timeout_seconds),
        "Retry": retry(retry_errors),
        "Catch": list(catch) if catch is not None else [catch_all()],
        "Next": next_state,
    }


def job_key() -> dict[str, Any]:
    """The job table key of the execution's job."""
    return {contract.JOB_TABLE_HASH_KEY: {"S.$": JOB_ID_PATH}}


def dynamodb_update_task(
    table_name: str,
    *,
    update_expression: str,
    condition_expression: str,
    names: Mapping[str, str],
    values: Mapping[str, Any],
    catch: Sequence[Mapping[str, Any]],
    next_state: str | None = None,
    timeout_seconds: int = DEFAULT_STEP_TIMEOUT_SECONDS,
) -> State:
    """A conditional ``dynamodb:updateItem`` of the job's record; the state's input passes
    through unchanged (ResultPath null). ``next_state`` None ends the execution."""
    state: State = {
        "Type": "Task",
        "Resource": DYNAMODB_UPDATE_ITEM,
        "Parameters": {
            "TableName": _text("table_name", table_name),
            "Key": job_key(),
            "UpdateExpression": update_expression,
            "ConditionExpression": condition_expression,
            "ExpressionAttributeNames": dict(names),
            "ExpressionAttributeValues": dict(values),
        },
        "ResultPath": None,
        "TimeoutSeconds": _positive("timeout_seconds", timeout_seconds),
        "Retry": retry(DYNAMODB_RETRY_ERRORS),
        "Catch": list(catch),
    }
    if next_state is None:
        state["End"] = True
    else:
        state["Next"] = next_state
    return state


_STATUS_NAMES: Final = {"#s": "status", "#u": "updated_at"}
_NOW: Final = {"S.$": "$$.State.EnteredTime"}


def _status(value: str) -> dict[str, str]:
    return {"S": value}


def record_running_state(
    table_name: str, next_state: str, *, timeout_seconds: int = DEFAULT_STEP_TIMEOUT_SECONDS
) -> State:
    """PENDING -> RUNNING. A record that is not PENDING (cancelled before the execution got
    here, or a duplicate execution) ends the execution in AlreadyFinal."""
    return dynamodb_update_task(
        table_name,
        update_expression="SET #s = :running, #u = :now",
        condition_expression="#s = :pending",
        names=_STATUS_NAMES,
        values={
            ":pending": _status(contract.STATUS_PENDING),
            ":running": _status(contract.STATUS_RUNNING),
            ":now": _NOW,
        },
        catch=[catch_already_final(), catch_all()],
        next_state=next_state,
        timeout_seconds=timeout_seconds,
    )


def mark_succeeded_state(
    table_name: str, *, timeout_seconds: int = DEFAULT_STEP_TIMEOUT_SECONDS
) -> State:
    """Confirm SUCCEEDED: only the scoring container records SUCCEEDED (with its predictions), so
    the condition is ``#s = :succeeded``. A record that is not SUCCEEDED (the task exited cleanly
    without recording its result, or the job was CANCELLED meanwhile) goes to NoResultRecorded ->
    MarkFailed, whose own condition leaves a CANCELLED record alone. Ends."""
    return dynamodb_update_task(
        table_name,
        update_expression="SET #u = :now",
        condition_expression="#s = :succeeded",
        names=_STATUS_NAMES,
        values={":succeeded": _status(contract.STATUS_SUCCEEDED), ":now": _NOW},
        catch=[
            {
                "ErrorEquals": [CONDITIONAL_CHECK_FAILED],
                "ResultPath": FAILURE_PATH,
                "Next": NO_RESULT_RECORDED,
            },
            catch_all(),
        ],
        next_state=None,
        timeout_seconds=timeout_seconds,
    )


def no_result_recorded_state() -> State:
    """The task stopped cleanly but its job record is not SUCCEEDED: a FAILED job, never a
    SUCCEEDED one without predictions."""
    return failure_state(
        NO_RESULT_CODE,
        {"message": "the scoring task stopped cleanly but did not record its result"},
    )


def mark_failed_state(
    table_name: str, *, timeout_seconds: int = DEFAULT_STEP_TIMEOUT_SECONDS
) -> State:
    """-> FAILED with ``error`` = ``$.check.error`` ({code, message}), only from PENDING or
    RUNNING; then JobFailed. Its own errors end in RecordingFailed (no loop back)."""
    return dynamodb_update_task(
        table_name,
        update_expression="SET #s = :failed, #u = :now, #e = :error",
        condition_expression="#s IN (:pending, :running)",
        names={**_STATUS_NAMES, "#e": "error"},
        values={
            ":pending": _status(contract.STATUS_PENDING),
            ":running": _status(contract.STATUS_RUNNING),
            ":failed": _status(contract.STATUS_FAILED),
            ":now": _NOW,
            ":error": {
                "M": {
                    "code": {"S.$": f"{ERROR_PATH}.code"},
                    "message": {"S.$": f"{ERROR_PATH}.message"},
                }
            },
        },
        catch=[catch_already_final(), catch_all(RECORDING_FAILED)],
        next_state=JOB_FAILED,
        timeout_seconds=timeout_seconds,
    )


def failure_state(code: str, message: Mapping[str, Any], next_state: str = MARK_FAILED) -> State:
    """A Pass state putting ``{"state": "FAILED", "error": {code, message}}`` at ``$.check``
    (where MarkFailed reads it). ``message`` is ``{"message": ...}`` or ``{"message.$": ...}``."""
    return {
        "Type": "Pass",
        "Parameters": {"state": CHECK_FAILED, "error": {"code": code, **message}},
        "ResultPath": CHECK_PATH,
        "Next": next_state,
    }


def workflow_error_state() -> State:
    """A caught error (``$.failure``) as the job error ``workflow_error: "<Error>: <Cause>"``."""
    return failure_state(
        WORKFLOW_ERROR_CODE,
        {"message.$": f"States.Format('{{}}: {{}}', {FAILURE_PATH}.Error, {FAILURE_PATH}.Cause)"},
    )


def terminal_states() -> dict[str, State]:
    """The end states every definition shares."""
    return {
        JOB_FAILED: {
            "Type": "Fail",
            "Error": "JobFailed",
            "Cause": "the job was recorded FAILED (see its error in the job table)",
        },
        ALREADY_FINAL: {
            "Type": "Succeed",
            "Comment": "the job record was already terminal (e.g. CANCELLED) and stays so",
        },
        RECORDING_FAILED: {
            "Type": "Fail",
            "Error": "RecordingFailed",
            "Cause": "could not record the job as FAILED; the job API reconciles it on read",
        },
    }


def definition(
    comment: str, start_at: str, states: Mapping[str, State], *, timeout_seconds: int
) -> dict[str, Any]:
    """A whole state machine with an execution timeout."""
    return {
        "Comment": comment,
        "StartAt": start_at,
        "TimeoutSeconds": _positive("execution_timeout_seconds", timeout_seconds),
        "States": dict(states),
    }


# --- stepfunctions-ecs --------------------------------------------------------------------------


def ecs_lambda_polling_definition(
    *,
    table_name: str,
    run_ecs_function_arn: str,
    check_job_status_function_arn: str,
    execution_timeout_seconds: int,
    poll_interval_seconds: int = DEFAULT_POLL_INTERVAL_SECONDS,
    step_timeout_seconds: int = DEFAULT_STEP_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """``polling: lambda``: the RunECS Lambda starts the Fargate task, then every
    ``poll_interval_seconds`` the CheckJobStatus Lambda looks at it until it stopped.

    ``step_timeout_seconds`` is the TimeoutSeconds of each Lambda and DynamoDB Task state (keep
    it above the functions' own timeout); ``execution_timeout_seconds`` bounds the whole
    execution, task included.
    """
    _positive("poll_interval_seconds", poll_interval_seconds)
    step = _positive("step_timeout_seconds", step_timeout_seconds)
    states: dict[str, State] = {
        RECORD_RUNNING: record_running_state(table_name, RUN_ECS, timeout_seconds=step),
        RUN_ECS: lambda_task(
            run_ecs_function_arn,
            {"job_id.$": JOB_ID_PATH},
            result_selector={"task_arn.$": "$.Payload.task_arn"},
            result_path=TASK_PATH,
            next_state=WAIT_FOR_TASK,
            timeout_seconds=step,
        ),
        WAIT_FOR_TASK: {"Type": "Wait", "Seconds": poll_interval_seconds, "Next": CHECK_JOB_STATUS},
        CHECK_JOB_STATUS: lambda_task(
            check_job_status_function_arn,
            {"job_id.$": JOB_ID_PATH, "task_arn.$": f"{TASK_PATH}.task_arn"},
            result_selector={"state.$": "$.Payload.state", "error.$": "$.Payload.error"},
            result_path=CHECK_PATH,
            next_state=IS_TASK_DONE,
            timeout_seconds=step,
            retry_errors=POLL_RETRY_ERRORS,
        ),
        IS_TASK_DONE: {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": f"{CHECK_PATH}.state",
                    "StringEquals": CHECK_RUNNING,
                    "Next": WAIT_FOR_TASK,
                },
                {
                    "Variable": f"{CHECK_PATH}.state",
                    "StringEquals": CHECK_SUCCEEDED,
                    "Next": MARK_SUCCEEDED,
                },
            ],
            "Default": MARK_FAILED,
        },
        WORKFLOW_ERROR: workflow_error_state(),
        NO_RESULT_RECORDED: no_result_recorded_state(),
        MARK_SUCCEEDED: mark_succeeded_state(table_name, timeout_seconds=step),
        MARK_FAILED: mark_failed_state(table_name, timeout_seconds=step),
        **terminal_states(),
    }
    return definition(
        "mlserve stepfunctions-ecs (polling: lambda): RunECS, then CheckJobStatus every "
        f"{poll_interval_seconds} s until the scoring task stopped",
        RECORD_RUNNING,
        states,
        timeout_seconds=execution_timeout_seconds,
    )


def ecs_native_definition(
    *,
    table_name: str,
    cluster_arn: str,
    task_definition_arn: str,
    subnets: Sequence[str],
    security_groups: Sequence[str],
    execution_timeout_seconds: int,
    task_timeout_seconds: int | None = None,
    assign_public_ip: str = "DISABLED",
    container_name: str = contract.SCORING_CONTAINER_NAME,
    step_timeout_seconds: int = DEFAULT_STEP_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """``polling: native``: ``ecs:runTask.sync`` runs the Fargate task and Step Functions waits
    for it (no polling Lambdas). ``task_timeout_seconds`` (default: the execution timeout) is the
    RunTask state's TimeoutSeconds (when it expires Step Functions asks ECS to stop the task).
    """
    step = _positive("step_timeout_seconds", step_timeout_seconds)
    task_timeout = _positive(
        "task_timeout_seconds",
        execution_timeout_seconds if task_timeout_seconds is None else task_timeout_seconds,
    )
    if task_timeout > execution_timeout_seconds:
        raise ValueError(
            f"task_timeout_seconds ({task_timeout}) must not exceed execution_timeout_seconds "
            f"({execution_timeout_seconds})"
        )
    if assign_public_ip not in ASSIGN_PUBLIC_IP_VALUES:
        raise ValueError(f"assign_public_ip must be ENABLED or DISABLED, got {assign_public_ip!r}")
    if isinstance(subnets, str) or not subnets or not all(subnets):
        raise ValueError(f"subnets must be a non-empty list of subnet ids, got {subnets!r}")
    if isinstance(security_groups, str):
        raise ValueError("security_groups must be a list of security group ids")
    container = f"{TASK_PATH}.Container"
    states: dict[str, State] = {
        RECORD_RUNNING: record_running_state(table_name, RUN_TASK, timeout_seconds=step),
        RUN_TASK: {
            "Type": "Task",
            "Resource": ECS_RUN_TASK_SYNC,
            "Parameters": {
                "Cluster": _text("cluster_arn", cluster_arn),
                "TaskDefinition": _text("task_definition_arn", task_definition_arn),
                "LaunchType": "FARGATE",
                "NetworkConfiguration": {
                    "AwsvpcConfiguration": {
                        "Subnets": list(subnets),
                        "SecurityGroups": list(security_groups),
                        "AssignPublicIp": assign_public_ip,
                    }
                },
                "Overrides": {
                    "ContainerOverrides": [
                        {
                            "Name": _text("container_name", container_name),
                            "Environment": [{"Name": contract.ENV_JOB_ID, "Value.$": JOB_ID_PATH}],
                        }
                    ]
                },
            },
            # Containers[0] is selected here, once: moto's JSONPath turns a path *through* an
            # array index (``$.task.Containers[0].ExitCode``) into a list, so the Choice below
            # compares ``$.task.Container.ExitCode`` instead; AWS reads both the same.
            "ResultSelector": dict(RUN_TASK_RESULT_SELECTOR),
            "ResultPath": TASK_PATH,
            "TimeoutSeconds": task_timeout,
            "Retry": retry(ECS_RETRY_ERRORS),
            "Catch": [
                {
                    "ErrorEquals": ["States.TaskFailed"],
                    "ResultPath": FAILURE_PATH,
                    "Next": TASK_FAILED,
                },
                catch_all(),
            ],
            "Next": EXITED_CLEANLY,
        },
        EXITED_CLEANLY: {
            "Type": "Choice",
            "Choices": [
                {
                    "And": [
                        {"Variable": f"{container}.ExitCode", "IsPresent": True},
                        {"Variable": f"{container}.ExitCode", "NumericEquals": 0},
                    ],
                    "Next": MARK_SUCCEEDED,
                },
                {
                    "Variable": f"{TASK_PATH}.Description.StoppedReason",
                    "IsPresent": True,
                    "Next": TASK_STOPPED,
                },
            ],
            "Default": TASK_STOPPED_WITHOUT_REASON,
        },
        TASK_STOPPED: failure_state(
            TASK_FAILED_CODE,
            {
                "message.$": "States.Format('the scoring task stopped without success: {}', "
                f"{TASK_PATH}.Description.StoppedReason)"
            },
        ),
        TASK_STOPPED_WITHOUT_REASON: failure_state(
            TASK_FAILED_CODE, {"message": "the scoring task stopped without success (no reason)"}
        ),
        TASK_FAILED: failure_state(
            TASK_FAILED_CODE,
            {
                "message.$": f"States.Format('the scoring task failed: {{}}: {{}}', "
                f"{FAILURE_PATH}.Error, {FAILURE_PATH}.Cause)"
            },
        ),
        WORKFLOW_ERROR: workflow_error_state(),
        NO_RESULT_RECORDED: no_result_recorded_state(),
        MARK_SUCCEEDED: mark_succeeded_state(table_name, timeout_seconds=step),
        MARK_FAILED: mark_failed_state(table_name, timeout_seconds=step),
        **terminal_states(),
    }
    return definition(
        "mlserve stepfunctions-ecs (polling: native): ecs:runTask.sync runs the scoring task",
        RECORD_RUNNING,
        states,
        timeout_seconds=execution_timeout_seconds,
    )


# --- stepfunctions-batch ------------------------------------------------------------------------

SUBMIT_BATCH_JOB: Final = "SubmitBatchJob"  # lambda mode: runtime.handlers.steps.submit_batch_job
WAIT_FOR_BATCH_JOB: Final = "WaitForBatchJob"
CHECK_BATCH_STATUS: Final = "CheckBatchStatus"  # lambda: runtime.handlers.steps.check_batch_status
IS_BATCH_JOB_DONE: Final = "IsBatchJobDone"
CHOOSE_QUEUE: Final = "ChooseQueue"  # native: priority -> queue
USE_HIGH_QUEUE: Final = "UseHighQueue"
USE_LOW_QUEUE: Final = "UseLowQueue"
IS_ARRAY_JOB: Final = "IsArrayJob"  # native: shards > 1 -> array job
SUBMIT_JOB: Final = "SubmitJob"  # native: batch:submitJob.sync, one job
SUBMIT_ARRAY_JOB: Final = "SubmitArrayJob"  # native: batch:submitJob.sync, arrayProperties
BATCH_JOB_FAILED: Final = "BatchJobFailed"  # native: the .sync integration reported TaskFailed

BATCH_PATH: Final = "$.batch"  # lambda: {"batch_job_id"}; native: the DescribeJobs result
RECORD_PATH: Final = "$.record"  # native: {"shards", "priority"} of the record (RecordRunning)
QUEUE_PATH: Final = "$.queue"  # native: {"arn"} of the priority's queue
BATCH_SUBMIT_JOB_SYNC: Final = "arn:aws:states:::batch:submitJob.sync"
# Errors of the SubmitJob API call itself (no job was submitted, so retrying submits at most one).
BATCH_RETRY_ERRORS: Final = ("Batch.AWSBatchException", "Batch.ServerException")
BATCH_JOB_FAILED_CODE: Final = "batch_job_failed"  # as runtime.compute.batch_outcome
BATCH_JOB_NAME: Final = "mlserve-scoring"


def mark_batch_succeeded_state(
    table_name: str, *, timeout_seconds: int = DEFAULT_STEP_TIMEOUT_SECONDS
) -> State:
    """RUNNING -> SUCCEEDED (stepfunctions-batch: the container of one shard cannot know the
    others, so the workflow records success once every child succeeded; the shard writing the
    manifest has set ``rows``). A record not RUNNING (CANCELLED meanwhile) ends in AlreadyFinal."""
    return dynamodb_update_task(
        table_name,
        update_expression="SET #s = :succeeded, #u = :now",
        condition_expression="#s IN (:running, :succeeded)",
        names=_STATUS_NAMES,
        values={
            ":running": _status(contract.STATUS_RUNNING),
            ":succeeded": _status(contract.STATUS_SUCCEEDED),
            ":now": _NOW,
        },
        catch=[catch_already_final(), catch_all()],
        next_state=None,
        timeout_seconds=timeout_seconds,
    )


def batch_lambda_polling_definition(
    *,
    table_name: str,
    submit_batch_job_function_arn: str,
    check_batch_status_function_arn: str,
    execution_timeout_seconds: int,
    poll_interval_seconds: int = DEFAULT_POLL_INTERVAL_SECONDS,
    step_timeout_seconds: int = DEFAULT_STEP_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """``polling: lambda``: the SubmitBatchJob Lambda submits the (array) job to the priority's
    queue and records ``batch_job_id``; every ``poll_interval_seconds`` the CheckBatchStatus
    Lambda describes it, records ``progress`` and answers ``{"state", "error"}``::

        RecordRunning -> SubmitBatchJob -> WaitForBatchJob -> CheckBatchStatus -> IsBatchJobDone
        IsBatchJobDone: RUNNING -> WaitForBatchJob; SUCCEEDED -> MarkSucceeded; else MarkFailed
    """
    _positive("poll_interval_seconds", poll_interval_seconds)
    step = _positive("step_timeout_seconds", step_timeout_seconds)
    states: dict[str, State] = {
        RECORD_RUNNING: record_running_state(table_name, SUBMIT_BATCH_JOB, timeout_seconds=step),
        SUBMIT_BATCH_JOB: lambda_task(
            submit_batch_job_function_arn,
            {"job_id.$": JOB_ID_PATH},
            result_selector={"batch_job_id.$": "$.Payload.batch_job_id"},
            result_path=BATCH_PATH,
            next_state=WAIT_FOR_BATCH_JOB,
            timeout_seconds=step,
        ),
        WAIT_FOR_BATCH_JOB: {
            "Type": "Wait",
            "Seconds": poll_interval_seconds,
            "Next": CHECK_BATCH_STATUS,
        },
        CHECK_BATCH_STATUS: lambda_task(
            check_batch_status_function_arn,
            {"job_id.$": JOB_ID_PATH, "batch_job_id.$": f"{BATCH_PATH}.batch_job_id"},
            result_selector={"state.$": "$.Payload.state", "error.$": "$.Payload.error"},
            result_path=CHECK_PATH,
            next_state=IS_BATCH_JOB_DONE,
            timeout_seconds=step,
            retry_errors=POLL_RETRY_ERRORS,
        ),
        IS_BATCH_JOB_DONE: {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": f"{CHECK_PATH}.state",
                    "StringEquals": CHECK_RUNNING,
                    "Next": WAIT_FOR_BATCH_JOB,
                },
                {
                    "Variable": f"{CHECK_PATH}.state",
                    "StringEquals": CHECK_SUCCEEDED,
                    "Next": MARK_SUCCEEDED,
                },
            ],
            "Default": MARK_FAILED,
        },
        WORKFLOW_ERROR: workflow_error_state(),
        MARK_SUCCEEDED: mark_batch_succeeded_state(table_name, timeout_seconds=step),
        MARK_FAILED: mark_failed_state(table_name, timeout_seconds=step),
        **terminal_states(),
    }
    return definition(
        "mlserve stepfunctions-batch (polling: lambda): SubmitBatchJob, then CheckBatchStatus "
        f"every {poll_interval_seconds} s until the batch job finished",
        RECORD_RUNNING,
        states,
        timeout_seconds=execution_timeout_seconds,
    )


def _submit_job_sync(job_definition_arn: str, *, array: bool, timeout_seconds: int) -> State:
    parameters: dict[str, Any] = {
        # The job id travels in the environment (and names the execution); a fixed job name
        # keeps the definition free of intrinsic functions where a name would need one.
        "JobName": BATCH_JOB_NAME,
        "JobQueue.$": f"{QUEUE_PATH}.arn",
        "JobDefinition": _text("job_definition_arn", job_definition_arn),
        "ContainerOverrides": {
            "Environment": [{"Name": contract.ENV_JOB_ID, "Value.$": JOB_ID_PATH}]
        },
    }
    if array:
        parameters["ArrayProperties"] = {"Size.$": f"States.StringToJson({RECORD_PATH}.shards)"}
    return {
        "Type": "Task",
        "Resource": BATCH_SUBMIT_JOB_SYNC,
        "Parameters": parameters,
        "ResultSelector": {
            "JobId.$": "$.JobId",
            "Status.$": "$.Status",
        },
        "ResultPath": BATCH_PATH,
        "TimeoutSeconds": timeout_seconds,
        "Retry": retry(BATCH_RETRY_ERRORS),
        "Catch": [
            {
                "ErrorEquals": ["States.TaskFailed"],
                "ResultPath": FAILURE_PATH,
                "Next": BATCH_JOB_FAILED,
            },
            catch_all(),
        ],
        "Next": MARK_SUCCEEDED,
    }


def batch_native_definition(
    *,
    table_name: str,
    job_queue_high_arn: str,
    job_queue_low_arn: str,
    job_definition_arn: str,
    execution_timeout_seconds: int,
    job_timeout_seconds: int | None = None,
    step_timeout_seconds: int = DEFAULT_STEP_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """``polling: native``: ``batch:submitJob.sync`` submits the job and Step Functions waits
    for it (an array parent finishes SUCCEEDED only when every child did). RecordRunning reads
    ``shards`` and ``priority`` back from the record (ReturnValues ALL_NEW) to choose the queue
    and whether the job is an array::

        RecordRunning -> ChooseQueue -> UseHighQueue|UseLowQueue -> IsArrayJob
        IsArrayJob: shards "1" -> SubmitJob; else SubmitArrayJob (ArrayProperties.Size = shards)
        Submit*: success -> MarkSucceeded; States.TaskFailed -> BatchJobFailed -> MarkFailed

    Stopping the execution (DELETE /jobs/{id}) makes Step Functions terminate the job. No
    ``progress`` is recorded in this mode (nothing polls)."""
    step = _positive("step_timeout_seconds", step_timeout_seconds)
    job_timeout = _positive(
        "job_timeout_seconds",
        execution_timeout_seconds if job_timeout_seconds is None else job_timeout_seconds,
    )
    if job_timeout > execution_timeout_seconds:
        raise ValueError(
            f"job_timeout_seconds ({job_timeout}) must not exceed execution_timeout_seconds "
            f"({execution_timeout_seconds})"
        )
    record_running = record_running_state(table_name, CHOOSE_QUEUE, timeout_seconds=step)
    record_running["Parameters"]["ReturnValues"] = "ALL_NEW"
    record_running["ResultSelector"] = {
        "shards.$": "$.Attributes.shards.N",
        "priority.$": "$.Attributes.priority.S",
    }
    record_running["ResultPath"] = RECORD_PATH
    states: dict[str, State] = {
        RECORD_RUNNING: record_running,
        CHOOSE_QUEUE: {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": f"{RECORD_PATH}.priority",
                    "StringEquals": contract.PRIORITY_HIGH,
                    "Next": USE_HIGH_QUEUE,
                }
            ],
            "Default": USE_LOW_QUEUE,
        },
        USE_HIGH_QUEUE: {
            "Type": "Pass",
            "Result": {"arn": _text("job_queue_high_arn", job_queue_high_arn)},
            "ResultPath": QUEUE_PATH,
            "Next": IS_ARRAY_JOB,
        },
        USE_LOW_QUEUE: {
            "Type": "Pass",
            "Result": {"arn": _text("job_queue_low_arn", job_queue_low_arn)},
            "ResultPath": QUEUE_PATH,
            "Next": IS_ARRAY_JOB,
        },
        IS_ARRAY_JOB: {
            "Type": "Choice",
            "Choices": [
                {"Variable": f"{RECORD_PATH}.shards", "StringEquals": "1", "Next": SUBMIT_JOB}
            ],
            "Default": SUBMIT_ARRAY_JOB,
        },
        SUBMIT_JOB: _submit_job_sync(job_definition_arn, array=False, timeout_seconds=job_timeout),
        SUBMIT_ARRAY_JOB: _submit_job_sync(
            job_definition_arn, array=True, timeout_seconds=job_timeout
        ),
        BATCH_JOB_FAILED: failure_state(
            BATCH_JOB_FAILED_CODE,
            {
                "message.$": f"States.Format('the batch job failed: {{}}: {{}}', "
                f"{FAILURE_PATH}.Error, {FAILURE_PATH}.Cause)"
            },
        ),
        WORKFLOW_ERROR: workflow_error_state(),
        MARK_SUCCEEDED: mark_batch_succeeded_state(table_name, timeout_seconds=step),
        MARK_FAILED: mark_failed_state(table_name, timeout_seconds=step),
        **terminal_states(),
    }
    return definition(
        "mlserve stepfunctions-batch (polling: native): batch:submitJob.sync runs the batch job",
        RECORD_RUNNING,
        states,
        timeout_seconds=execution_timeout_seconds,
    )


# --- inspection (tests, docs) ------------------------------------------------------------------


def task_states(definition: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Every Task state of ``definition`` by name, nested Parallel/Map branches included."""
    return dict(_walk_tasks(definition))


def _walk_tasks(machine: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name, state in (machine.get("States") or {}).items():
        if state.get("Type") == "Task":
            yield name, state
        for branch in state.get("Branches") or []:
            yield from _walk_tasks(branch)
        for key in ("ItemProcessor", "Iterator"):
            if isinstance(state.get(key), Mapping):
                yield from _walk_tasks(state[key])
