"""runtime/compute.py: RunTask/DescribeTasks/StopTask (moto), the STOPPED-task mapping (realistic
DescribeTasks payloads from a stub), and the backoff of the wait loop (fake clock)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from runtime import compute, contract
from runtime.compute import ComputeError, EcsTarget, TaskState
from runtime.context import ConfigurationError, RuntimeContext
from tests.runtime.jobenv import REGION, StubEcs, create_ecs, stopped_task, tasks_stay_running

TASK = "arn:aws:ecs:us-east-1:123456789012:task/mlserve-test/0f1e2d3c4b5a69788796a5b4c3d2e1f0"
CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/mlserve-test"


@pytest.fixture
def ecs_env(aws: None) -> dict[str, str]:
    return create_ecs()


@pytest.fixture
def ecs(aws: None) -> Any:
    return boto3.client("ecs", region_name=REGION)


def target_of(env: dict[str, str]) -> EcsTarget:
    return EcsTarget.from_context(RuntimeContext(env))


def test_target_from_the_environment() -> None:
    target = target_of(
        {
            contract.ENV_ECS_CLUSTER: CLUSTER,
            contract.ENV_ECS_TASK_DEFINITION: "arn:td:3",
            contract.ENV_ECS_SUBNETS: "subnet-1, subnet-2,",
            contract.ENV_ECS_SECURITY_GROUPS: "sg-1",
            contract.ENV_ECS_ASSIGN_PUBLIC_IP: "enabled",
        }
    )
    assert target.subnets == ("subnet-1", "subnet-2")
    assert target.assign_public_ip == "ENABLED"
    request = target.run_task_request("a" * 32)
    assert request == {
        "clientToken": "a" * 32,
        "cluster": CLUSTER,
        "taskDefinition": "arn:td:3",
        "launchType": "FARGATE",
        "count": 1,
        "startedBy": "mlserve",
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": ["subnet-1", "subnet-2"],
                "securityGroups": ["sg-1"],
                "assignPublicIp": "ENABLED",
            }
        },
        "overrides": {
            "containerOverrides": [
                {"name": "scoring", "environment": [{"name": "JOB_ID", "value": "a" * 32}]}
            ]
        },
    }
    with pytest.raises(ConfigurationError, match="ECS_SUBNETS"):
        target_of({contract.ENV_ECS_CLUSTER: CLUSTER, contract.ENV_ECS_TASK_DEFINITION: "td"})
    with pytest.raises(ConfigurationError, match="ENABLED or DISABLED"):
        EcsTarget(CLUSTER, "td", ("s",), (), assign_public_ip="MAYBE")


# --- moto ---------------------------------------------------------------------------------------


def test_run_describe_stop_against_moto(ecs_env: dict[str, str], ecs: Any) -> None:
    target = target_of(ecs_env)
    with tasks_stay_running():
        arn = compute.run_task(ecs, target, "b" * 32)
        assert arn.startswith("arn:aws:ecs:us-east-1:")
        described = ecs.describe_tasks(cluster=target.cluster, tasks=[arn])["tasks"][0]
        assert described["startedBy"] == "mlserve"
        assert described["overrides"]["containerOverrides"][0]["environment"] == [
            {"name": "JOB_ID", "value": "b" * 32}
        ]
        state = compute.describe_task(ecs, target.cluster, arn)
        assert (state.last_status, state.stopped) == ("RUNNING", False)
        compute.stop_task(ecs, target.cluster, arn, "cancelled by the caller")
        state = compute.describe_task(ecs, target.cluster, arn)
    assert state.last_status == "STOPPED"
    assert state.stopped_reason == "cancelled by the caller"


def test_an_unknown_task_is_missing(ecs_env: dict[str, str], ecs: Any) -> None:
    state = compute.describe_task(ecs, ecs_env[contract.ENV_ECS_CLUSTER], TASK)
    assert state.missing
    assert state.stopped


def test_run_task_errors_carry_the_ecs_reason(ecs_env: dict[str, str], ecs: Any) -> None:
    missing_cluster = EcsTarget(
        "no-such-cluster",
        ecs_env[contract.ENV_ECS_TASK_DEFINITION],
        ("subnet-1",),
        ("sg-1",),
    )
    with pytest.raises(ComputeError, match="ClusterNotFoundException"):
        compute.run_task(ecs, missing_cluster, "c" * 32)

    refused = StubEcs(
        {
            "tasks": [],
            "failures": [{"arn": CLUSTER, "reason": "RESOURCE:MEMORY", "detail": "no capacity"}],
        }
    )
    with pytest.raises(ComputeError) as caught:
        compute.run_task(refused, target_of(ecs_env), "c" * 32)
    assert caught.value.reason == "RESOURCE:MEMORY: no capacity"

    class Denied:
        def run_task(self, **_: Any) -> Any:
            error = {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}
            raise ClientError(error, "RunTask")

    with pytest.raises(ComputeError, match="AccessDeniedException: not allowed"):
        compute.run_task(Denied(), target_of(ecs_env), "c" * 32)


# --- the STOPPED mapping ------------------------------------------------------------------------


def described(task: dict[str, Any] | None = None, failure: str | None = None) -> TaskState:
    response = {
        "tasks": [task] if task else [],
        "failures": [{"arn": TASK, "reason": failure}] if failure else [],
    }
    stub = StubEcs(response)
    state = compute.describe_task(stub, CLUSTER, TASK)
    assert stub.calls == [("describe_tasks", {"cluster": CLUSTER, "tasks": [TASK]})]
    return state


def test_exit_code_1_is_failed_with_the_reason() -> None:
    state = described(stopped_task(TASK, exit_code=1))
    assert (state.exit_code, state.stop_code) == (1, "EssentialContainerExited")
    outcome = compute.ecs_outcome(state, "RUNNING")
    assert outcome is not None
    assert outcome.status == "FAILED"
    assert outcome.error is not None
    assert outcome.error.code == "task_failed"
    assert outcome.error.message.startswith("scoring container exited with code 1: ")
    assert "Essential container in task exited" in outcome.error.message


def test_oom_kill_names_the_container_reason() -> None:
    oom = stopped_task(
        TASK, exit_code=137, container_reason="OutOfMemoryError: Container killed due to memory"
    )
    outcome = compute.ecs_outcome(described(oom), "RUNNING")
    assert outcome is not None
    assert outcome.error is not None
    assert "code 137" in outcome.error.message
    assert "OutOfMemoryError" in outcome.error.message


def test_no_exit_code_is_failed_with_the_stopped_reason() -> None:
    pull = stopped_task(
        TASK,
        exit_code=None,
        stopped_reason="CannotPullContainerError: pull image manifest has been retried 5 time(s)",
        stop_code="TaskFailedToStart",
        container_reason="CannotPullContainerError: ref not found",
    )
    outcome = compute.ecs_outcome(described(pull), "PENDING")
    assert outcome is not None
    assert outcome.status == "FAILED"
    assert outcome.error is not None
    assert outcome.error.code == "task_stopped"
    assert "CannotPullContainerError: pull image manifest" in outcome.error.message
    assert "TaskFailedToStart" in outcome.error.message

    spot = stopped_task(
        TASK,
        exit_code=None,
        stopped_reason="Your Spot Task was interrupted.",
        stop_code="SpotInterruption",
    )
    spot_outcome = compute.ecs_outcome(described(spot), "RUNNING")
    assert spot_outcome is not None
    assert spot_outcome.error is not None
    assert "Spot Task was interrupted" in spot_outcome.error.message


def test_exit_code_0_succeeds_only_when_the_record_says_so() -> None:
    state = described(stopped_task(TASK, exit_code=0))
    assert compute.ecs_outcome(state, "SUCCEEDED") == compute.Outcome("SUCCEEDED")
    outcome = compute.ecs_outcome(state, "RUNNING")
    assert outcome is not None
    assert outcome.status == "FAILED"
    assert outcome.error is not None
    assert outcome.error.code == "task_no_result"


def test_a_task_unknown_to_ecs_is_failed_missing() -> None:
    state = described(failure="MISSING")
    assert state.missing
    outcome = compute.ecs_outcome(state, "RUNNING")
    assert outcome is not None
    assert outcome.error is not None
    assert outcome.error.code == "task_missing"
    assert TASK in outcome.error.message


def test_a_running_task_has_no_outcome() -> None:
    running = {**stopped_task(TASK, exit_code=None), "lastStatus": "RUNNING"}
    running["containers"][0]["lastStatus"] = "RUNNING"
    state = described(running)
    assert not state.stopped
    assert compute.ecs_outcome(state, "RUNNING") is None


def test_the_scoring_container_is_found_by_name() -> None:
    task = stopped_task(TASK, exit_code=3)
    sidecar = {**task["containers"][0], "name": "log-router", "exitCode": 0}
    task["containers"] = [sidecar, task["containers"][0]]
    assert described(task).exit_code == 3


# --- waiting ------------------------------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_backs_off_until_the_deadline() -> None:
    running = {**stopped_task(TASK, exit_code=None), "lastStatus": "RUNNING"}
    stub = StubEcs({"tasks": [running], "failures": []})
    fake = FakeTime()
    state = compute.wait_for_task(
        stub, CLUSTER, TASK, fake.now + 6, sleep=fake.sleep, clock=fake.clock
    )
    assert state.last_status == "RUNNING"
    assert fake.sleeps == [0.25, 0.5, 1.0, 2.0, 2.0, 0.25]
    assert fake.now == pytest.approx(106)
    assert len(stub.calls) == len(fake.sleeps) + 1


def test_wait_returns_as_soon_as_the_task_stops() -> None:
    running = {**stopped_task(TASK, exit_code=None), "lastStatus": "RUNNING"}
    stub = StubEcs(
        {"tasks": [running], "failures": []},
        {"tasks": [running], "failures": []},
        {"tasks": [stopped_task(TASK, exit_code=0)], "failures": []},
    )
    fake = FakeTime()
    state = compute.wait_for_task(
        stub, CLUSTER, TASK, fake.now + 25, sleep=fake.sleep, clock=fake.clock
    )
    assert (state.last_status, state.exit_code) == ("STOPPED", 0)
    assert fake.sleeps == [0.25, 0.5]


def test_a_passed_deadline_still_describes_once() -> None:
    stub = StubEcs({"tasks": [], "failures": [{"arn": TASK, "reason": "MISSING"}]})
    fake = FakeTime()
    state = compute.wait_for_task(stub, CLUSTER, TASK, 0.0, sleep=fake.sleep, clock=fake.clock)
    assert state.missing
    assert fake.sleeps == []
