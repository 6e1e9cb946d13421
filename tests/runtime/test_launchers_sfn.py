"""The stepfunctions-ecs launcher (runtime/launchers.StepFunctionsEcsLauncher) and the job API on
it, against moto's Step Functions (executions recorded, not run), DynamoDB, S3 and ECS."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from components import workflows as wf
from mlserve.train import TrainResult, load_example_data
from runtime import compute, contract
from runtime.compute import EcsTarget
from runtime.context import ConfigurationError, RuntimeContext
from runtime.handlers import jobs as api
from runtime.jobs import Job, JobError, JobStore, TransitionRejected
from runtime.launchers import (
    STALE_START_SECONDS,
    LaunchFailed,
    StepFunctionsEcsLauncher,
    execution_arn,
    launcher_for,
)
from tests.runtime.events import FakeLambdaContext, rest_event
from tests.runtime.jobenv import (
    BUCKET,
    CHECK_JOB_STATUS_ARN,
    REGION,
    RUN_ECS_ARN,
    TABLE,
    SimulatedEcs,
    create_ecs,
    create_job_table,
    create_state_machine,
    deploy_model,
    tasks_stay_running,
)

ROWS = load_example_data().x


@dataclass
class Sfn:
    env: dict[str, str]
    dynamodb: Any
    sfn: Any
    ecs: SimulatedEcs
    state_machine_arn: str

    @property
    def store(self) -> JobStore:
        return JobStore(self.dynamodb, TABLE)

    def context(self, **clients: Any) -> RuntimeContext:
        return RuntimeContext(
            self.env,
            {"dynamodb": self.dynamodb, "stepfunctions": self.sfn, "ecs": self.ecs, **clients},
        )

    def launcher(self, **clients: Any) -> StepFunctionsEcsLauncher:
        launcher = launcher_for(self.context(**clients))
        assert isinstance(launcher, StepFunctionsEcsLauncher)
        return launcher

    def job(self, job_id: str = "job-1", status: str = contract.STATUS_PENDING) -> Job:
        job = self.store.new_job(
            job_id, architecture=contract.ARCH_STEPFUNCTIONS_ECS, model_version="v1"
        )
        self.store.create(job)
        if status != contract.STATUS_PENDING:
            job = self.store.transition(job_id, status)
        return job

    def executions(self) -> list[dict[str, Any]]:
        response = self.sfn.list_executions(stateMachineArn=self.state_machine_arn)
        return list(response["executions"])

    def execution(self, job_id: str) -> dict[str, Any]:
        arn = execution_arn(self.state_machine_arn, job_id)
        return dict(self.sfn.describe_execution(executionArn=arn))


def definition() -> dict[str, Any]:
    return wf.ecs_lambda_polling_definition(
        table_name=TABLE,
        run_ecs_function_arn=RUN_ECS_ARN,
        check_job_status_function_arn=CHECK_JOB_STATUS_ARN,
        execution_timeout_seconds=3600,
    )


@pytest.fixture
def env(aws: None) -> Iterator[Sfn]:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_job_table(dynamodb)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = create_state_machine(sfn, definition())
    ecs_env = create_ecs()
    settings = {
        contract.ENV_ARCHITECTURE: contract.ARCH_STEPFUNCTIONS_ECS,
        contract.ENV_JOB_TABLE: TABLE,
        contract.ENV_STATE_MACHINE_ARN: machine,
        **ecs_env,
    }
    with tasks_stay_running():
        yield Sfn(settings, dynamodb, sfn, SimulatedEcs(), machine)


def run_task(env: Sfn, job_id: str) -> str:
    """The task RunECS would start for the job, recorded as RunECS records it."""
    task_arn = compute.run_task(env.ecs, EcsTarget.from_context(env.context()), job_id)
    env.store.update(job_id, {"task_arn": task_arn}, increment={"attempts": 1})
    return task_arn


def test_execution_arn_is_derived_from_the_state_machine() -> None:
    machine = "arn:aws:states:eu-west-1:123456789012:stateMachine:mlserve-dev-ecs"
    assert execution_arn(machine, "abc") == (
        "arn:aws:states:eu-west-1:123456789012:execution:mlserve-dev-ecs:abc"
    )
    with pytest.raises(ConfigurationError, match="STATE_MACHINE_ARN"):
        execution_arn("arn:aws:lambda:eu-west-1:123456789012:function:f", "abc")


def test_the_launcher_is_registered_and_needs_the_state_machine(env: Sfn) -> None:
    assert env.launcher().architecture == contract.ARCH_STEPFUNCTIONS_ECS
    env.env.pop(contract.ENV_STATE_MACHINE_ARN)
    with pytest.raises(ConfigurationError, match="STATE_MACHINE_ARN"):
        env.launcher()


def test_start_runs_an_execution_named_after_the_job(env: Sfn) -> None:
    job = env.job()
    started = env.launcher().start(job)
    assert started.status == contract.STATUS_PENDING
    (execution,) = env.executions()
    assert execution["name"] == job.job_id
    assert execution["executionArn"] == execution_arn(env.state_machine_arn, job.job_id)
    described = env.execution(job.job_id)
    assert json.loads(described["input"]) == {"job_id": job.job_id}
    assert described["status"] == "RUNNING"


def test_a_duplicate_start_creates_no_second_execution(env: Sfn) -> None:
    job = env.job()
    launcher = env.launcher()
    launcher.start(job)
    launcher.start(job)  # same name + input while running: Step Functions answers the same one
    assert len(env.executions()) == 1
    env.sfn.stop_execution(executionArn=execution_arn(env.state_machine_arn, job.job_id))
    again = launcher.start(job)  # closed: ExecutionAlreadyExists, treated as "already started"
    assert again == job
    assert len(env.executions()) == 1


def test_a_refused_start_fails_the_job(env: Sfn) -> None:
    job = env.job()
    env.env[contract.ENV_STATE_MACHINE_ARN] = env.state_machine_arn + "-gone"
    with pytest.raises(LaunchFailed) as caught:
        env.launcher().start(job)
    failed = env.store.require(job.job_id)
    assert caught.value.job == failed
    assert failed.status == contract.STATUS_FAILED
    assert failed.error is not None and failed.error.code == "task_not_started"
    assert "StateMachineDoesNotExist" in failed.error.message


def test_predict_does_not_wait(env: Sfn) -> None:
    job = env.job()
    started = time.monotonic()
    assert env.launcher().wait(job, 25) == job
    assert time.monotonic() - started < 1


def test_cancel_records_cancelled_then_stops_the_execution_and_the_task(env: Sfn) -> None:
    job = env.job()
    launcher = env.launcher()
    launcher.start(job)
    task_arn = run_task(env, job.job_id)
    cancelled = launcher.cancel(env.store.require(job.job_id))
    assert cancelled.status == contract.STATUS_CANCELLED
    assert cancelled.error == JobError("cancelled", "cancelled by the caller (DELETE /jobs/{id})")
    assert env.execution(job.job_id)["status"] == "ABORTED"
    assert [(c["task"], c["cluster"]) for c in env.ecs.stop_calls] == [
        (task_arn, env.env[contract.ENV_ECS_CLUSTER])
    ]


def test_cancel_before_the_execution_or_the_task_exist_still_cancels(env: Sfn) -> None:
    job = env.job()
    cancelled = env.launcher().cancel(job)  # StopExecution: ExecutionDoesNotExist, logged
    assert cancelled.status == contract.STATUS_CANCELLED
    assert env.ecs.stop_calls == []


def test_cancel_of_a_finished_job_is_rejected_and_stops_nothing(env: Sfn) -> None:
    job = env.job(status=contract.STATUS_SUCCEEDED)
    launcher = env.launcher()
    with pytest.raises(TransitionRejected):
        launcher.cancel(job)
    assert env.ecs.stop_calls == []


class FailedExecutions:
    """A Step Functions client whose executions all ended ``status`` with an error and cause."""

    def __init__(self, status: str) -> None:
        self.status = status
        self.calls: list[dict[str, Any]] = []

    def describe_execution(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {
            "executionArn": kwargs["executionArn"],
            "status": self.status,
            "error": "States.Runtime",
            "cause": "An error occurred while executing the state 'MarkFailed'",
        }


@pytest.mark.parametrize("status", ["FAILED", "TIMED_OUT", "ABORTED"])
def test_reconcile_fails_a_running_job_whose_execution_ended(env: Sfn, status: str) -> None:
    job = env.job(status=contract.STATUS_RUNNING)
    task_arn = run_task(env, job.job_id)
    sfn = FailedExecutions(status)
    reconciled = env.launcher(stepfunctions=sfn).reconcile(env.store.require(job.job_id))
    assert sfn.calls == [{"executionArn": execution_arn(env.state_machine_arn, job.job_id)}]
    assert reconciled.status == contract.STATUS_FAILED
    assert reconciled.error == JobError(
        "workflow_error",
        f"the workflow execution ended {status}: States.Runtime: "
        "An error occurred while executing the state 'MarkFailed'",
    )
    assert [c["task"] for c in env.ecs.stop_calls] == [task_arn]
    assert env.store.require(job.job_id) == reconciled


def test_reconcile_in_moto_an_aborted_execution(env: Sfn) -> None:
    job = env.job()
    launcher = env.launcher()
    launcher.start(job)
    assert launcher.reconcile(job).status == contract.STATUS_PENDING  # still RUNNING
    env.sfn.stop_execution(executionArn=execution_arn(env.state_machine_arn, job.job_id))
    reconciled = launcher.reconcile(env.store.require(job.job_id))
    assert reconciled.status == contract.STATUS_FAILED
    assert reconciled.error is not None
    assert reconciled.error.message.startswith("the workflow execution ended ABORTED")


def test_reconcile_leaves_terminal_records_alone(env: Sfn) -> None:
    job = env.job(status=contract.STATUS_CANCELLED)
    sfn = FailedExecutions("FAILED")
    assert env.launcher(stepfunctions=sfn).reconcile(job) == job
    assert sfn.calls == []


def test_reconcile_without_an_execution_fails_only_a_stale_pending_job(env: Sfn) -> None:
    job = env.job()
    launcher = env.launcher()
    assert launcher.reconcile(job) == job  # young: its starter may still be at it
    launcher.wall_clock = lambda: time.time() + STALE_START_SECONDS + 1
    stale = launcher.reconcile(job)
    assert stale.status == contract.STATUS_FAILED
    assert stale.error is not None and stale.error.code == "task_not_started"


# --- the job API on stepfunctions-ecs -------------------------------------------------------------


@pytest.fixture
def job_api(env: Sfn, s3: Any, example_model: TrainResult) -> Iterator[Sfn]:
    env.env.update(
        {
            contract.ENV_DATA_BUCKET: BUCKET,
            contract.ENV_MAX_ROWS: "50",
            **deploy_model(s3, example_model),
        }
    )
    api.configure(
        env=env.env,
        clients={"dynamodb": env.dynamodb, "s3": s3, "ecs": env.ecs, "stepfunctions": env.sfn},
    )
    yield env
    api.configure(env={})


def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
    event = rest_event(method, path, None if body is None else json.dumps(body))
    if path.startswith("/jobs/"):
        event["resource"] = "/jobs/{id}"
        event["pathParameters"] = {"id": path.removeprefix("/jobs/")}
    response = api.handler(event, FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"])


@pytest.mark.parametrize("path", ["/jobs", "/predict"])
def test_post_answers_202_and_starts_one_execution(job_api: Sfn, path: str) -> None:
    status, body = call("POST", path, {"instances": ROWS[:2].tolist()})
    assert status == 202
    assert body["status"] == contract.STATUS_PENDING
    (execution,) = job_api.executions()
    assert execution["name"] == body["job_id"]
    assert job_api.ecs.run_calls == []  # the state machine runs the task, not the job API


def test_delete_cancels_the_execution_and_get_shows_it(job_api: Sfn) -> None:
    _, body = call("POST", "/jobs", {"instances": ROWS[:2].tolist()})
    job_id = body["job_id"]
    status, cancelled = call("DELETE", f"/jobs/{job_id}")
    assert (status, cancelled["status"]) == (200, contract.STATUS_CANCELLED)
    assert job_api.execution(job_id)["status"] == "ABORTED"
    status, shown = call("GET", f"/jobs/{job_id}")
    assert (status, shown["status"]) == (200, contract.STATUS_CANCELLED)
    assert call("DELETE", f"/jobs/{job_id}")[0] == 409


def test_get_reconciles_a_job_whose_execution_failed(job_api: Sfn) -> None:
    _, body = call("POST", "/jobs", {"instances": ROWS[:2].tolist()})
    job_id = body["job_id"]
    job_api.store.transition(job_id, contract.STATUS_RUNNING)
    job_api.sfn.stop_execution(
        executionArn=execution_arn(job_api.state_machine_arn, job_id), error="X", cause="y"
    )
    status, shown = call("GET", f"/jobs/{job_id}")
    assert (status, shown["status"]) == (200, contract.STATUS_FAILED)
    assert shown["error"]["code"] == "workflow_error"
