"""The stepfunctions-batch launcher (runtime/launchers.py StepFunctionsBatchLauncher) against
moto's S3, DynamoDB and Step Functions, Batch stubbed (TerminateJob)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import numpy as np
import pytest

from runtime import contract, jobs
from runtime.context import RuntimeContext
from runtime.jobs import JobStore
from runtime.launchers import (
    LaunchFailed,
    StepFunctionsBatchLauncher,
    launcher_for,
    staged_input_key,
)
from tests.runtime.jobenv import (
    BUCKET,
    REGION,
    TABLE,
    StubBatch,
    create_job_table,
    create_state_machine,
)

PASS_MACHINE = {
    "StartAt": "Wait",
    "States": {"Wait": {"Type": "Wait", "Seconds": 600, "End": True}},
}


@pytest.fixture
def launcher(s3: Any) -> StepFunctionsBatchLauncher:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_job_table(dynamodb)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = create_state_machine(sfn, PASS_MACHINE, name="mlserve-batch")
    return StepFunctionsBatchLauncher(
        store=JobStore(dynamodb, TABLE),
        sfn=sfn,
        state_machine_arn=machine,
        ecs=None,
        batch=StubBatch({}),
        s3=s3,
        data_bucket=BUCKET,
        feature_names=lambda: ("a", "b"),
    )


def create(launcher: StepFunctionsBatchLauncher, **attributes: Any) -> jobs.Job:
    job = launcher.store.new_job(
        jobs.new_job_id(), architecture="stepfunctions-batch", model_version="v1", **attributes
    )
    return launcher.store.create(job)


def test_the_registry_has_stepfunctions_batch() -> None:
    ctx = RuntimeContext(
        {
            contract.ENV_ARCHITECTURE: contract.ARCH_STEPFUNCTIONS_BATCH,
            contract.ENV_JOB_TABLE: TABLE,
            contract.ENV_STATE_MACHINE_ARN: "arn:aws:states:us-east-1:1:stateMachine:m",
            contract.ENV_DATA_BUCKET: BUCKET,
        },
        clients={name: object() for name in ("dynamodb", "stepfunctions", "batch", "s3")},
    )
    assert isinstance(launcher_for(ctx), StepFunctionsBatchLauncher)


def test_inline_rows_are_staged_as_jsonl_and_the_execution_started(
    launcher: StepFunctionsBatchLauncher,
) -> None:
    rows = np.array([[1.5, np.nan], [2.0, 3.0]], dtype=np.float32)
    request = jobs.inline_request(rows)
    job = create(launcher, rows=request.rows, instances=request.instances)
    started = launcher.start(job)
    assert started.instances is None
    assert started.input_uri == f"s3://{BUCKET}/{staged_input_key(job.job_id)}"
    assert (started.format, started.shards, started.priority) == ("jsonl", 1, "low")
    assert started.output_uri == f"s3://{BUCKET}/results/{job.job_id}/"
    body = launcher.s3.get_object(Bucket=BUCKET, Key=staged_input_key(job.job_id))["Body"].read()
    assert [json.loads(line) for line in body.decode().splitlines()] == [
        {"a": 1.5, "b": None},
        {"a": 2.0, "b": 3.0},
    ]
    (execution,) = launcher.sfn.list_executions(stateMachineArn=launcher.state_machine_arn)[
        "executions"
    ]
    assert execution["name"] == job.job_id
    assert launcher.start(started) == started  # ExecutionAlreadyExists: started already


def test_a_config_job_keeps_its_values(launcher: StepFunctionsBatchLauncher) -> None:
    job = create(
        launcher,
        input_uri=f"s3://{BUCKET}/inputs/a.csv",
        output_uri=f"s3://{BUCKET}/results/a/",
        format="csv",
        shards=3,
        priority="high",
    )
    started = launcher.start(job)
    assert (started.output_uri, started.shards, started.priority) == (
        f"s3://{BUCKET}/results/a/",
        3,
        "high",
    )


def test_cancel_stops_the_execution_and_terminates_the_batch_job(
    launcher: StepFunctionsBatchLauncher,
) -> None:
    job = launcher.start(create(launcher, input_uri=f"s3://{BUCKET}/inputs/a.csv", format="csv"))
    launcher.store.update(job.job_id, {"batch_job_id": "b-9"})
    cancelled = launcher.cancel(launcher.store.require(job.job_id))
    assert cancelled.status == contract.STATUS_CANCELLED
    execution = launcher.sfn.describe_execution(executionArn=launcher.execution_arn(job.job_id))
    assert execution["status"] == "ABORTED"
    assert launcher.batch.calls[-1][0] == "terminate_job"
    assert launcher.batch.calls[-1][1]["jobId"] == "b-9"


def test_a_start_failure_fails_the_job(launcher: StepFunctionsBatchLauncher) -> None:
    launcher.state_machine_arn = launcher.state_machine_arn.replace("mlserve-batch", "absent")
    job = create(launcher, input_uri=f"s3://{BUCKET}/inputs/a.csv", format="csv")
    with pytest.raises(LaunchFailed) as caught:
        launcher.start(job)
    assert caught.value.job.status == contract.STATUS_FAILED


def test_a_spilled_json_input_is_restaged_as_jsonl(launcher: StepFunctionsBatchLauncher) -> None:
    job = create(launcher, rows=2, input_uri=jobs.input_uri_for(BUCKET, "x"), format="json")
    launcher.s3.put_object(
        Bucket=BUCKET, Key="inputs/x.json", Body=b'{"instances": [[1, 2], [3, null]]}'
    )
    started = launcher.start(job)
    assert started.format == "jsonl"
    assert started.input_uri == f"s3://{BUCKET}/{staged_input_key(job.job_id)}"
    body = launcher.s3.get_object(Bucket=BUCKET, Key=staged_input_key(job.job_id))["Body"].read()
    assert body == b'{"a":1,"b":2}\n{"a":3,"b":null}\n'
