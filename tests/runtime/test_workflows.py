"""The Amazon States Language builders of components/workflows.py: their content, and that moto's
Step Functions engine accepts and runs each definition.

The lambda-polling definition runs end to end in moto: its DynamoDB updates against moto's
table, its Lambda tasks reaching the real RunECS/CheckJobStatus handlers (moto's Docker-less
Lambda backend routed in-process), the scoring task the real entrypoint. The native definition
is accepted and run too, but moto 5.2's ``ecs:runTask.sync`` fails with ``KeyError 'Cluster'``
(a moto defect, DESIGN.md §7): the test pins that the failure is caught and recorded, and the
states after RunTask run with RunTask replaced by a Pass state giving a real task description.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from components import workflows as wf
from mlserve.train import TrainResult, load_example_data
from runtime import contract
from runtime.handlers import steps
from runtime.jobs import JobError, JobStore
from runtime.scoring import main as scoring_main
from tests.runtime.jobenv import (
    BUCKET,
    CHECK_JOB_STATUS_ARN,
    EXITED,
    REGION,
    RUN_ECS_ARN,
    SFN_CONFIG,
    TABLE,
    SimulatedEcs,
    create_ecs,
    create_job_table,
    create_state_machine,
    deploy_model,
    lambda_functions,
    reference,
    scoring_env,
    stopped_task,
    tasks_stay_running,
    visited_states,
    wait_for_execution,
)

CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/mlserve-scoring"
TASK_DEFINITION = "arn:aws:ecs:us-east-1:123456789012:task-definition/mlserve-scoring:7"
SUBNETS = ["subnet-0a", "subnet-0b"]
SECURITY_GROUPS = ["sg-0c"]


def lambda_definition(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "table_name": TABLE,
        "run_ecs_function_arn": RUN_ECS_ARN,
        "check_job_status_function_arn": CHECK_JOB_STATUS_ARN,
        "execution_timeout_seconds": 3600,
        "poll_interval_seconds": 10,
        **overrides,
    }
    return wf.ecs_lambda_polling_definition(**args)


def native_definition(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "table_name": TABLE,
        "cluster_arn": CLUSTER,
        "task_definition_arn": TASK_DEFINITION,
        "subnets": SUBNETS,
        "security_groups": SECURITY_GROUPS,
        "execution_timeout_seconds": 3600,
        "task_timeout_seconds": 1800,
        **overrides,
    }
    return wf.ecs_native_definition(**args)


BOTH = pytest.mark.parametrize(
    "build", [lambda_definition, native_definition], ids=["lambda", "native"]
)


def next_states(state: Mapping[str, Any]) -> set[str]:
    targets = {state.get("Next"), state.get("Default")}
    targets |= {c["Next"] for c in state.get("Choices", [])}
    targets |= {c["Next"] for c in state.get("Catch", [])}
    return {t for t in targets if t}


def reachable(definition: Mapping[str, Any]) -> set[str]:
    seen: set[str] = set()
    todo = [definition["StartAt"]]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(next_states(definition["States"][name]))
    return seen


# --- content ------------------------------------------------------------------------------------


@BOTH
def test_every_state_is_reachable_and_every_transition_names_a_state(
    build: Callable[..., dict[str, Any]],
) -> None:
    definition = build()
    names = set(definition["States"])
    for state in definition["States"].values():
        assert next_states(state) <= names
    assert reachable(definition) == names
    json.dumps(definition)  # plain JSON, nothing else


@BOTH
def test_the_execution_has_a_timeout(build: Callable[..., dict[str, Any]]) -> None:
    assert build(execution_timeout_seconds=5400)["TimeoutSeconds"] == 5400


@BOTH
def test_every_task_has_a_timeout_retries_and_a_catch_that_records_failed(
    build: Callable[..., dict[str, Any]],
) -> None:
    definition = build()
    tasks = wf.task_states(definition)
    assert tasks
    for name, task in tasks.items():
        assert isinstance(task["TimeoutSeconds"], int) and task["TimeoutSeconds"] > 0, name
        (retrier,) = task["Retry"]
        assert retrier["MaxAttempts"] == 3 and retrier["BackoffRate"] == 2, name
        assert retrier["IntervalSeconds"] == 2, name
        assert "States.ALL" not in retrier["ErrorEquals"], name
        catch_all = task["Catch"][-1]
        assert catch_all["ErrorEquals"] == ["States.ALL"], name
        assert catch_all["ResultPath"] == "$.failure", name
        if name == wf.MARK_FAILED:
            assert catch_all["Next"] == wf.RECORDING_FAILED
            assert definition["States"][wf.RECORDING_FAILED]["Type"] == "Fail"
        else:  # the caught error becomes the job error workflow_error, recorded by MarkFailed
            handler = definition["States"][catch_all["Next"]]
            assert handler["Type"] == "Pass" and handler["Next"] == wf.MARK_FAILED, name
    workflow_error = definition["States"][wf.WORKFLOW_ERROR]
    assert workflow_error["Parameters"] == {
        "state": "FAILED",
        "error": {
            "code": "workflow_error",
            "message.$": "States.Format('{}: {}', $.failure.Error, $.failure.Cause)",
        },
    }
    assert workflow_error["ResultPath"] == "$.check"


def test_lambda_tasks_retry_lambdas_transient_errors_exactly() -> None:
    """RunECS retries only Lambda's own transient errors; CheckJobStatus, a read, is also asked
    again when it outlives its TimeoutSeconds (States.Timeout) instead of failing the job."""
    tasks = wf.task_states(lambda_definition(step_timeout_seconds=45))
    lambda_errors = [
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
    ]
    for name, errors in (
        (wf.RUN_ECS, lambda_errors),
        (wf.CHECK_JOB_STATUS, [*lambda_errors, "States.Timeout"]),
    ):
        assert tasks[name]["Resource"] == "arn:aws:states:::lambda:invoke"
        assert tasks[name]["TimeoutSeconds"] == 45
        assert tasks[name]["Retry"] == [
            {"ErrorEquals": errors, "IntervalSeconds": 2, "BackoffRate": 2, "MaxAttempts": 3}
        ]
        assert tasks[name]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": wf.WORKFLOW_ERROR}
        ]


@BOTH
def test_dynamodb_tasks_retry_throttling_and_treat_a_failed_condition_as_already_final(
    build: Callable[..., dict[str, Any]],
) -> None:
    definition = build()
    tasks = wf.task_states(definition)
    for name in (wf.RECORD_RUNNING, wf.MARK_SUCCEEDED, wf.MARK_FAILED):
        task = tasks[name]
        assert task["Resource"] == "arn:aws:states:::dynamodb:updateItem"
        assert task["Parameters"]["TableName"] == TABLE
        assert task["Parameters"]["Key"] == {"job_id": {"S.$": "$.job_id"}}
        assert task["ResultPath"] is None
        errors = task["Retry"][0]["ErrorEquals"]
        assert {
            "DynamoDB.ProvisionedThroughputExceededException",
            "DynamoDB.ThrottlingException",
            "DynamoDB.InternalServerErrorException",
        } <= set(errors)
        assert "DynamoDB.ConditionalCheckFailedException" not in errors
        # MarkSucceeded finding no recorded SUCCEEDED is a job without result, not "final".
        expected = wf.NO_RESULT_RECORDED if name == wf.MARK_SUCCEEDED else wf.ALREADY_FINAL
        assert task["Catch"][0] == {
            "ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"],
            "ResultPath": "$.failure",
            "Next": expected,
        }
    assert definition["States"][wf.ALREADY_FINAL]["Type"] == "Succeed"


@BOTH
def test_the_record_updates_are_the_conditional_transitions(
    build: Callable[..., dict[str, Any]],
) -> None:
    definition = build()
    states = definition["States"]
    assert definition["StartAt"] == wf.RECORD_RUNNING

    running = states[wf.RECORD_RUNNING]["Parameters"]
    assert running["ConditionExpression"] == "#s = :pending"
    assert running["UpdateExpression"] == "SET #s = :running, #u = :now"
    assert running["ExpressionAttributeValues"] == {
        ":pending": {"S": "PENDING"},
        ":running": {"S": "RUNNING"},
        ":now": {"S.$": "$$.State.EnteredTime"},
    }
    assert running["ExpressionAttributeNames"] == {"#s": "status", "#u": "updated_at"}

    succeeded = states[wf.MARK_SUCCEEDED]
    # only the container records SUCCEEDED (with predictions): the workflow just confirms it
    assert succeeded["Parameters"]["ConditionExpression"] == "#s = :succeeded"
    assert succeeded["Parameters"]["UpdateExpression"] == "SET #u = :now"
    assert succeeded["Parameters"]["ExpressionAttributeValues"][":succeeded"] == {"S": "SUCCEEDED"}
    assert succeeded["End"] is True
    no_result = states[wf.NO_RESULT_RECORDED]
    assert no_result["Type"] == "Pass" and no_result["Next"] == wf.MARK_FAILED
    assert no_result["Parameters"]["error"]["code"] == "task_no_result"

    failed = states[wf.MARK_FAILED]
    params = failed["Parameters"]
    assert params["ConditionExpression"] == "#s IN (:pending, :running)"
    assert params["UpdateExpression"] == "SET #s = :failed, #u = :now, #e = :error"
    assert params["ExpressionAttributeNames"]["#e"] == "error"
    assert params["ExpressionAttributeValues"][":error"] == {
        "M": {"code": {"S.$": "$.check.error.code"}, "message": {"S.$": "$.check.error.message"}}
    }
    assert failed["Next"] == wf.JOB_FAILED and states[wf.JOB_FAILED]["Type"] == "Fail"
    for state in (running, succeeded["Parameters"], params):  # every placeholder is used
        expression = state["UpdateExpression"] + state["ConditionExpression"]
        assert all(v in expression for v in state["ExpressionAttributeValues"])
        assert all(n in expression for n in state["ExpressionAttributeNames"])


def test_lambda_polling_loop_and_the_arns_written_in() -> None:
    definition = lambda_definition(poll_interval_seconds=15)
    states = definition["States"]
    assert next_states(states[wf.RECORD_RUNNING]) == {
        wf.RUN_ECS,
        wf.ALREADY_FINAL,
        wf.WORKFLOW_ERROR,
    }
    run = states[wf.RUN_ECS]
    assert run["Parameters"] == {"FunctionName": RUN_ECS_ARN, "Payload": {"job_id.$": "$.job_id"}}
    assert run["ResultSelector"] == {"task_arn.$": "$.Payload.task_arn"}
    assert (run["ResultPath"], run["Next"]) == ("$.task", wf.WAIT_FOR_TASK)
    assert states[wf.WAIT_FOR_TASK] == {"Type": "Wait", "Seconds": 15, "Next": wf.CHECK_JOB_STATUS}
    check = states[wf.CHECK_JOB_STATUS]
    assert check["Parameters"] == {
        "FunctionName": CHECK_JOB_STATUS_ARN,
        "Payload": {"job_id.$": "$.job_id", "task_arn.$": "$.task.task_arn"},
    }
    assert (check["ResultPath"], check["Next"]) == ("$.check", wf.IS_TASK_DONE)
    choice = states[wf.IS_TASK_DONE]
    assert choice["Type"] == "Choice"
    assert choice["Choices"] == [
        {"Variable": "$.check.state", "StringEquals": "RUNNING", "Next": wf.WAIT_FOR_TASK},
        {"Variable": "$.check.state", "StringEquals": "SUCCEEDED", "Next": wf.MARK_SUCCEEDED},
    ]
    assert choice["Default"] == wf.MARK_FAILED
    text = json.dumps(definition)
    assert RUN_ECS_ARN in text and CHECK_JOB_STATUS_ARN in text and TABLE in text
    assert "ecs:" not in text  # no ECS integration in this mode


def test_native_runs_the_task_with_sync_and_branches_on_the_exit_code() -> None:
    definition = native_definition(assign_public_ip="ENABLED", task_timeout_seconds=900)
    states = definition["States"]
    run = states[wf.RUN_TASK]
    assert run["Resource"] == "arn:aws:states:::ecs:runTask.sync"
    assert run["TimeoutSeconds"] == 900
    assert run["Parameters"] == {
        "Cluster": CLUSTER,
        "TaskDefinition": TASK_DEFINITION,
        "LaunchType": "FARGATE",
        "NetworkConfiguration": {
            "AwsvpcConfiguration": {
                "Subnets": SUBNETS,
                "SecurityGroups": SECURITY_GROUPS,
                "AssignPublicIp": "ENABLED",
            }
        },
        "Overrides": {
            "ContainerOverrides": [
                {"Name": "scoring", "Environment": [{"Name": "JOB_ID", "Value.$": "$.job_id"}]}
            ]
        },
    }
    assert (run["ResultPath"], run["Next"]) == ("$.task", wf.EXITED_CLEANLY)
    assert run["ResultSelector"] == {"Container.$": "$.Containers[0]", "Description.$": "$"}
    assert run["Catch"][0] == {
        "ErrorEquals": ["States.TaskFailed"],
        "ResultPath": "$.failure",
        "Next": wf.TASK_FAILED,
    }
    choice = states[wf.EXITED_CLEANLY]
    assert choice["Choices"][0] == {
        "And": [
            {"Variable": "$.task.Container.ExitCode", "IsPresent": True},
            {"Variable": "$.task.Container.ExitCode", "NumericEquals": 0},
        ],
        "Next": wf.MARK_SUCCEEDED,
    }
    for name in (wf.TASK_STOPPED, wf.TASK_STOPPED_WITHOUT_REASON, wf.TASK_FAILED):
        assert states[name]["Type"] == "Pass" and states[name]["Next"] == wf.MARK_FAILED
        assert states[name]["Parameters"]["error"]["code"] == "task_failed"
    assert "StoppedReason" in states[wf.TASK_STOPPED]["Parameters"]["error"]["message.$"]
    assert "lambda" not in json.dumps(definition)


def test_task_states_lists_tasks_only() -> None:
    assert set(wf.task_states(lambda_definition())) == {
        wf.RECORD_RUNNING,
        wf.RUN_ECS,
        wf.CHECK_JOB_STATUS,
        wf.MARK_SUCCEEDED,
        wf.MARK_FAILED,
    }
    assert set(wf.task_states(native_definition())) == {
        wf.RECORD_RUNNING,
        wf.RUN_TASK,
        wf.MARK_SUCCEEDED,
        wf.MARK_FAILED,
    }


@pytest.mark.parametrize(
    ("build", "overrides", "message"),
    [
        (lambda_definition, {"poll_interval_seconds": 0}, "poll_interval_seconds"),
        (lambda_definition, {"execution_timeout_seconds": -1}, "execution_timeout_seconds"),
        (lambda_definition, {"run_ecs_function_arn": ""}, "function_arn"),
        (lambda_definition, {"table_name": ""}, "table_name"),
        (native_definition, {"task_timeout_seconds": 7200}, "must not exceed"),
        (native_definition, {"assign_public_ip": "yes"}, "ENABLED or DISABLED"),
        (native_definition, {"subnets": []}, "subnets"),
        (native_definition, {"subnets": "subnet-0a"}, "subnets"),
        (native_definition, {"cluster_arn": ""}, "cluster_arn"),
    ],
)
def test_invalid_arguments_are_refused(
    build: Callable[..., dict[str, Any]], overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build(**overrides)


def test_builders_return_fresh_dicts() -> None:
    first = lambda_definition()
    first["States"][wf.MARK_FAILED]["Retry"][0]["MaxAttempts"] = 99
    assert lambda_definition()["States"][wf.MARK_FAILED]["Retry"][0]["MaxAttempts"] == 3


# --- moto's engine runs the definitions ---------------------------------------------------------


@dataclass
class Engine:
    sfn: Any
    dynamodb: Any
    s3: Any
    ecs_env: dict[str, str]
    container_env: dict[str, str]

    @property
    def store(self) -> JobStore:
        return JobStore(self.dynamodb, TABLE)

    def job(self, job_id: str, rows: np.ndarray) -> str:
        instances = json.dumps(rows.tolist(), separators=(",", ":"))
        job = self.store.new_job(
            job_id,
            architecture=contract.ARCH_STEPFUNCTIONS_ECS,
            model_version="abc123",
            rows=len(rows),
            instances=instances,
        )
        self.store.create(job)
        return job_id

    def score(self, job_id: str) -> int:
        """The real scoring entrypoint, as the task runs it."""
        return scoring_main([], env={**self.container_env, contract.ENV_JOB_ID: job_id})

    def run(
        self,
        definition: Mapping[str, Any],
        job_id: str,
        ecs: SimulatedEcs | None = None,
        name: str = "mlserve-ecs",
    ) -> tuple[dict[str, Any], list[str]]:
        """Execute ``definition`` for ``job_id``: (DescribeExecution, states entered)."""
        machine = create_state_machine(self.sfn, definition, name)
        steps.configure(
            env={contract.ENV_JOB_TABLE: TABLE, **self.ecs_env},
            clients={"dynamodb": self.dynamodb, "ecs": ecs or SimulatedEcs()},
        )
        handlers = {RUN_ECS_ARN: steps.run_ecs, CHECK_JOB_STATUS_ARN: steps.check_job_status}
        with lambda_functions(handlers):
            arn = self.sfn.start_execution(
                stateMachineArn=machine, name=job_id, input=json.dumps({"job_id": job_id})
            )["executionArn"]
            description = wait_for_execution(self.sfn, arn)
        return description, visited_states(self.sfn, arn)


@pytest.fixture
def engine(
    monkeypatch: pytest.MonkeyPatch, example_model: TrainResult, tmp_path: Path
) -> Iterator[Engine]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws(config=SFN_CONFIG), tasks_stay_running():
        s3 = boto3.client("s3", region_name=os.environ["AWS_DEFAULT_REGION"])
        s3.create_bucket(Bucket=BUCKET)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_job_table(dynamodb)
        model_env = deploy_model(s3, example_model)
        yield Engine(
            boto3.client("stepfunctions", region_name=REGION),
            dynamodb,
            s3,
            create_ecs(),
            scoring_env(model_env, tmp_path / "cache"),
        )
    steps.configure(env={})


ROWS = load_example_data().x[:3]


def test_lambda_polling_runs_a_job_to_succeeded_with_the_real_handlers(
    engine: Engine, example_model: TrainResult
) -> None:
    job_id = engine.job("job-ok", ROWS)
    ecs = SimulatedEcs(engine.score)  # the task runs the real entrypoint, exit code 0
    definition = lambda_definition(poll_interval_seconds=1)
    execution, visited = engine.run(definition, job_id, ecs)
    assert execution["status"] == "SUCCEEDED", execution
    assert visited == [
        wf.RECORD_RUNNING,
        wf.RUN_ECS,
        wf.WAIT_FOR_TASK,
        wf.CHECK_JOB_STATUS,
        wf.IS_TASK_DONE,
        wf.MARK_SUCCEEDED,
    ]
    job = engine.store.require(job_id)
    assert job.status == contract.STATUS_SUCCEEDED
    assert job.task_arn is not None and job.task_arn.startswith("arn:aws:ecs:")
    assert len(ecs.run_calls) == 1 and ecs.run_calls[0]["clientToken"] == job_id
    predictions = np.array(json.loads(job.predictions or "null"), dtype=np.float32)
    np.testing.assert_allclose(predictions, reference(example_model, ROWS), rtol=1e-6)


def test_lambda_polling_records_a_failed_task_with_the_ecs_reason(engine: Engine) -> None:
    job_id = engine.job("job-exit-1", ROWS)
    ecs = SimulatedEcs(lambda _job: 1)  # crashes before recording anything
    execution, visited = engine.run(lambda_definition(poll_interval_seconds=1), job_id, ecs)
    assert (execution["status"], execution["error"]) == ("FAILED", "JobFailed")
    assert visited[-3:] == [wf.IS_TASK_DONE, wf.MARK_FAILED, wf.JOB_FAILED]
    job = engine.store.require(job_id)
    assert job.status == contract.STATUS_FAILED
    assert job.error == JobError(
        "task_failed",
        f"scoring container exited with code 1: {EXITED} (stopCode EssentialContainerExited)",
    )


def test_lambda_polling_keeps_a_cancelled_job_cancelled(engine: Engine) -> None:
    job_id = engine.job("job-cancelled", ROWS)
    engine.store.transition(job_id, contract.STATUS_CANCELLED)
    ecs = SimulatedEcs(lambda _job: 1)
    execution, visited = engine.run(lambda_definition(poll_interval_seconds=1), job_id, ecs)
    assert execution["status"] == "SUCCEEDED"
    assert visited == [wf.RECORD_RUNNING, wf.ALREADY_FINAL]
    assert ecs.run_calls == []  # no task for a cancelled job
    assert engine.store.require(job_id).status == contract.STATUS_CANCELLED


def test_lambda_polling_a_refused_run_task_is_task_not_started(engine: Engine) -> None:
    job_id = engine.job("job-refused", ROWS)
    # ECS refuses: the task definition does not exist
    engine.ecs_env = {**engine.ecs_env, contract.ENV_ECS_TASK_DEFINITION: "no-such-family:1"}
    execution, visited = engine.run(lambda_definition(poll_interval_seconds=1), job_id)
    # RunECS recorded FAILED itself and raised; its Catch found the record terminal
    assert visited == [
        wf.RECORD_RUNNING,
        wf.RUN_ECS,
        wf.WORKFLOW_ERROR,
        wf.MARK_FAILED,
        wf.ALREADY_FINAL,
    ]
    assert execution["status"] == "SUCCEEDED"
    job = engine.store.require(job_id)
    assert job.status == contract.STATUS_FAILED
    assert job.error is not None and job.error.code == "task_not_started"


def test_lambda_polling_a_lambda_error_is_recorded_as_workflow_error(engine: Engine) -> None:
    job_id = engine.job("job-broken", ROWS)
    engine.ecs_env = {**engine.ecs_env, contract.ENV_ECS_SUBNETS: ""}  # misconfigured
    execution, visited = engine.run(lambda_definition(poll_interval_seconds=1), job_id)
    assert execution["status"] == "FAILED"
    assert visited[-3:] == [wf.WORKFLOW_ERROR, wf.MARK_FAILED, wf.JOB_FAILED]
    job = engine.store.require(job_id)
    assert job.status == contract.STATUS_FAILED
    assert job.error is not None and job.error.code == "workflow_error"
    assert job.error.message.startswith("ConfigurationError: ")
    assert "ECS_SUBNETS" in job.error.message


def test_native_definition_is_accepted_and_runs_until_moto_fails_run_task_sync(
    engine: Engine,
) -> None:
    job_id = engine.job("job-native", ROWS)
    definition = native_definition(
        cluster_arn=engine.ecs_env[contract.ENV_ECS_CLUSTER],
        task_definition_arn=engine.ecs_env[contract.ENV_ECS_TASK_DEFINITION],
        subnets=engine.ecs_env[contract.ENV_ECS_SUBNETS].split(","),
        security_groups=[engine.ecs_env[contract.ENV_ECS_SECURITY_GROUPS]],
    )
    execution, visited = engine.run(definition, job_id)
    assert visited[:2] == [wf.RECORD_RUNNING, wf.RUN_TASK]
    job = engine.store.require(job_id)
    if visited[2] == wf.EXITED_CLEANLY:  # moto fixed its runTask.sync: the task was STOPPED
        assert execution["status"] in ("SUCCEEDED", "FAILED")
        return
    # moto 5.2: runTask.sync raises KeyError 'Cluster' inside the engine (DESIGN.md §7); the
    # definition's Catch records it, proving the error path runs end to end.
    assert visited[2:] == [wf.WORKFLOW_ERROR, wf.MARK_FAILED, wf.JOB_FAILED]
    assert job.status == contract.STATUS_FAILED
    assert job.error is not None and job.error.code == "workflow_error"


def _native_after_run_task(task: Mapping[str, Any]) -> dict[str, Any]:
    """The native definition with RunTask's ECS call replaced by Pass states: ``RunTask`` gives
    ``task`` (a stopped task as runTask.sync outputs it) and ``SelectResult`` applies RunTask's
    own ResultSelector to it; the states after RunTask run as they are."""
    definition = copy.deepcopy(native_definition())
    run_task = definition["States"][wf.RUN_TASK]
    definition["States"][wf.RUN_TASK] = {
        "Type": "Pass",
        "Result": task,
        "ResultPath": "$.raw",
        "Next": "SelectResult",
    }
    definition["States"]["SelectResult"] = {
        "Type": "Pass",
        "InputPath": "$.raw",
        "Parameters": run_task["ResultSelector"],
        "ResultPath": run_task["ResultPath"],
        "Next": run_task["Next"],
    }
    return definition


def _described(exit_code: int | None, reason: str = EXITED) -> dict[str, Any]:
    """A STOPPED task as ``runTask.sync`` outputs it (DescribeTasks, keys in PascalCase)."""
    raw = stopped_task(
        "arn:aws:ecs:us-east-1:123456789012:task/mlserve-scoring/0a1b2c",
        exit_code=exit_code,
        stopped_reason=reason,
    )

    def pascal(value: Any) -> Any:
        if isinstance(value, dict):
            return {k[:1].upper() + k[1:]: pascal(v) for k, v in value.items()}
        if isinstance(value, list):
            return [pascal(v) for v in value]
        return value

    return dict(pascal(raw))


def test_native_exit_0_is_succeeded_only_when_the_container_recorded_it(engine: Engine) -> None:
    job_id = engine.job("job-native-ok", ROWS)
    engine.store.transition(job_id, contract.STATUS_SUCCEEDED, values={"predictions": "[1]"})
    execution, visited = engine.run(_native_after_run_task(_described(0)), job_id)
    assert execution["status"] == "SUCCEEDED"
    assert visited == [wf.RECORD_RUNNING, wf.ALREADY_FINAL]  # the container was quicker
    # exit 0 but the record still RUNNING: the task did not record a result -> FAILED, never a
    # SUCCEEDED job without predictions
    job_id = engine.job("job-native-ok-2", ROWS)
    execution, visited = engine.run(_native_after_run_task(_described(0)), job_id, name="m2")
    assert visited == [
        wf.RECORD_RUNNING,
        wf.RUN_TASK,
        "SelectResult",
        wf.EXITED_CLEANLY,
        wf.MARK_SUCCEEDED,
        wf.NO_RESULT_RECORDED,
        wf.MARK_FAILED,
        wf.JOB_FAILED,
    ]
    assert execution["status"] == "FAILED"
    job = engine.store.require(job_id)
    assert job.status == contract.STATUS_FAILED
    assert job.error is not None and job.error.code == "task_no_result"


@pytest.mark.parametrize(
    ("exit_code", "expected"),
    [
        (1, f"the scoring task stopped without success: {EXITED}"),
        (None, "the scoring task stopped without success: CannotPullContainerError: oops"),
    ],
)
def test_native_a_failed_task_is_recorded_with_the_stopped_reason(
    engine: Engine, exit_code: int | None, expected: str
) -> None:
    job_id = engine.job("job-native-failed", ROWS)
    task = _described(exit_code, EXITED if exit_code else "CannotPullContainerError: oops")
    execution, visited = engine.run(_native_after_run_task(task), job_id)
    assert execution["status"] == "FAILED"
    assert visited[3:] == [wf.EXITED_CLEANLY, wf.TASK_STOPPED, wf.MARK_FAILED, wf.JOB_FAILED]
    job = engine.store.require(job_id)
    assert job.error == JobError("task_failed", expected)


def test_lambda_polling_keeps_the_reason_the_container_recorded(engine: Engine) -> None:
    job_id = engine.job("job-bad-rows", ROWS[:, :3])  # too few features: scoring refuses them
    ecs = SimulatedEcs(engine.score)  # the real entrypoint records FAILED and exits non-zero
    execution, visited = engine.run(lambda_definition(poll_interval_seconds=1), job_id, ecs)
    job = engine.store.require(job_id)
    recorded = job.error
    assert job.status == contract.STATUS_FAILED and recorded is not None
    assert recorded.code not in ("task_failed", "workflow_error"), recorded
    # CheckJobStatus reported FAILED; MarkFailed's condition kept the container's reason
    assert visited[-3:] == [wf.IS_TASK_DONE, wf.MARK_FAILED, wf.ALREADY_FINAL]
    assert execution["status"] == "SUCCEEDED"
