"""The RunECS and CheckJobStatus Lambdas of stepfunctions-ecs (runtime/handlers/steps.py) against
moto's DynamoDB and ECS, the scoring task simulated (tests/runtime/jobenv.SimulatedEcs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from runtime import contract
from runtime.handlers import steps
from runtime.jobs import JobError, JobStore
from tests.runtime.jobenv import (
    EXITED,
    PULL_FAILED,
    REGION,
    TABLE,
    FakeStepContext,
    SimulatedEcs,
    StubEcs,
    create_ecs,
    create_job_table,
    tasks_stay_running,
)

CONTEXT = FakeStepContext("arn:aws:lambda:us-east-1:123456789012:function:mlserve-run-ecs")


@dataclass
class Steps:
    env: dict[str, str]
    dynamodb: Any
    ecs: SimulatedEcs

    @property
    def store(self) -> JobStore:
        return JobStore(self.dynamodb, TABLE)

    def deploy(self, container: Callable[[str], int | None] | None = None) -> SimulatedEcs:
        self.ecs = SimulatedEcs(container)
        steps.configure(env=self.env, clients={"dynamodb": self.dynamodb, "ecs": self.ecs})
        return self.ecs

    def job(self, job_id: str = "job-1", status: str = contract.STATUS_PENDING) -> str:
        job = self.store.new_job(job_id, architecture="stepfunctions-ecs", model_version="v1")
        self.store.create(job)
        if status != contract.STATUS_PENDING:
            self.store.transition(job_id, status)
        return job_id

    def run(self, job_id: str) -> str:
        return str(steps.run_ecs({"job_id": job_id}, CONTEXT)["task_arn"])

    def check(self, job_id: str, task_arn: str) -> dict[str, Any]:
        return steps.check_job_status({"job_id": job_id, "task_arn": task_arn}, CONTEXT)


@pytest.fixture
def env(aws: None) -> Iterator[Steps]:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_job_table(dynamodb)
    settings = {contract.ENV_JOB_TABLE: TABLE, **create_ecs()}
    with tasks_stay_running():
        fixture = Steps(settings, dynamodb, SimulatedEcs())
        fixture.deploy()
        yield fixture
    steps.configure(env={})


def test_run_ecs_runs_the_task_and_records_its_arn(env: Steps) -> None:
    job_id = env.job()
    task_arn = env.run(job_id)
    (call,) = env.ecs.run_calls
    assert call["clientToken"] == job_id  # a retried invocation starts no second task
    assert call["cluster"] == env.env[contract.ENV_ECS_CLUSTER]
    assert call["taskDefinition"] == env.env[contract.ENV_ECS_TASK_DEFINITION]
    override = call["overrides"]["containerOverrides"][0]
    assert override == {
        "name": contract.SCORING_CONTAINER_NAME,
        "environment": [{"name": contract.ENV_JOB_ID, "value": job_id}],
    }
    job = env.store.require(job_id)
    assert (job.task_arn, job.attempts, job.status) == (task_arn, 1, contract.STATUS_PENDING)
    listed = boto3.client("ecs", region_name=REGION).list_tasks(
        cluster=env.env[contract.ENV_ECS_CLUSTER]
    )
    assert listed["taskArns"] == [task_arn]


def test_a_retried_run_ecs_counts_the_same_task_once(env: Steps) -> None:
    job_id = env.job(status=contract.STATUS_RUNNING)
    stub = StubEcs({"tasks": [{"taskArn": "arn:aws:ecs:us-east-1:123456789012:task/c/t1"}]})
    steps.configure(env=env.env, clients={"dynamodb": env.dynamodb, "ecs": stub})
    assert env.run(job_id) == env.run(job_id)
    job = env.store.require(job_id)
    assert (job.attempts, job.status) == (1, contract.STATUS_RUNNING)


def test_run_ecs_refused_records_task_not_started_and_raises(env: Steps) -> None:
    job_id = env.job()
    refusal = {"tasks": [], "failures": [{"reason": "RESOURCE:ENI", "detail": "no ENI left"}]}
    stub = StubEcs(refusal)
    steps.configure(env=env.env, clients={"dynamodb": env.dynamodb, "ecs": stub})
    with pytest.raises(steps.TaskNotStarted, match="RESOURCE:ENI: no ENI left"):
        env.run(job_id)
    job = env.store.require(job_id)
    assert job.status == contract.STATUS_FAILED
    assert job.error == JobError(
        "task_not_started", "ECS did not start the task: RESOURCE:ENI: no ENI left"
    )


def test_a_job_cancelled_while_its_task_started_gets_the_task_stopped(env: Steps) -> None:
    job_id = env.job(status=contract.STATUS_CANCELLED)
    task_arn = env.run(job_id)
    assert env.store.require(job_id).task_arn == task_arn
    assert [c["task"] for c in env.ecs.stop_calls] == [task_arn]
    assert env.store.require(job_id).status == contract.STATUS_CANCELLED


def test_check_reports_running_while_the_task_runs(env: Steps) -> None:
    job_id = env.job(status=contract.STATUS_RUNNING)
    task_arn = env.run(job_id)
    assert env.check(job_id, task_arn) == {"state": "RUNNING", "error": None}


def test_exit_1_is_failed_with_the_ecs_reason(env: Steps) -> None:
    job_id = env.job(status=contract.STATUS_RUNNING)
    env.deploy(container=lambda _job: 1)
    task_arn = env.run(job_id)
    result = env.check(job_id, task_arn)
    assert result == {
        "state": "FAILED",
        "error": {
            "code": "task_failed",
            "message": f"scoring container exited with code 1: {EXITED} "
            "(stopCode EssentialContainerExited)",
        },
    }
    # the handler only reports: MarkFailed (the workflow) records it
    assert env.store.require(job_id).status == contract.STATUS_RUNNING


def test_exit_0_counts_only_when_the_record_says_succeeded(env: Steps) -> None:
    store = env.store

    def container(job_id: str) -> int:
        store.transition(job_id, contract.STATUS_SUCCEEDED, values={"predictions": "[0.5]"})
        return 0

    job_id = env.job(status=contract.STATUS_RUNNING)
    env.deploy(container=container)
    assert env.check(job_id, env.run(job_id)) == {"state": "SUCCEEDED", "error": None}

    other = env.job("job-2", status=contract.STATUS_RUNNING)
    env.deploy(container=lambda _job: 0)  # exits 0 without recording anything
    result = env.check(other, env.run(other))
    assert result["state"] == "FAILED"
    assert result["error"]["code"] == "task_no_result"


def test_a_task_that_never_started_fails_with_the_stopped_reason(env: Steps) -> None:
    job_id = env.job(status=contract.STATUS_RUNNING)
    env.deploy(container=lambda _job: None)
    result = env.check(job_id, env.run(job_id))
    assert result["state"] == "FAILED"
    assert result["error"]["code"] == "task_stopped"
    assert PULL_FAILED in result["error"]["message"]


def test_a_record_failed_by_the_container_keeps_its_reason(env: Steps) -> None:
    job_id = env.job(status=contract.STATUS_RUNNING)
    task_arn = env.run(job_id)
    env.store.transition(job_id, contract.STATUS_FAILED, error=JobError("invalid_input", "bad"))
    assert env.check(job_id, task_arn) == {
        "state": "FAILED",
        "error": {"code": "invalid_input", "message": "bad"},
    }


def test_a_task_ecs_forgot_is_failed_as_missing(env: Steps) -> None:
    job_id = env.job(status=contract.STATUS_RUNNING)
    gone = "arn:aws:ecs:us-east-1:123456789012:task/mlserve-test/0123456789abcdef"
    result = env.check(job_id, gone)
    assert result["state"] == "FAILED"
    assert result["error"]["code"] == "task_missing"


def test_a_describe_error_is_polled_again_not_failed(env: Steps) -> None:
    class Broken(StubEcs):
        def describe_tasks(self, **kwargs: Any) -> dict[str, Any]:
            raise RuntimeError("connection reset")

    job_id = env.job(status=contract.STATUS_RUNNING)
    steps.configure(env=env.env, clients={"dynamodb": env.dynamodb, "ecs": Broken({})})
    assert env.check(job_id, "arn:aws:ecs:us-east-1:123456789012:task/c/t1") == {
        "state": "RUNNING",
        "error": None,
    }


@pytest.mark.parametrize(
    ("handler", "event"),
    [
        (steps.run_ecs, {}),
        (steps.run_ecs, {"job_id": "no-such-job"}),
        (steps.check_job_status, {"job_id": "job-1"}),
        (steps.check_job_status, {"job_id": "no-such-job", "task_arn": "arn:t"}),
    ],
)
def test_an_unusable_event_is_an_error(
    env: Steps, handler: Callable[[dict[str, Any], Any], Any], event: dict[str, Any]
) -> None:
    env.job()
    with pytest.raises(steps.InvalidEvent):
        handler(event, CONTEXT)
