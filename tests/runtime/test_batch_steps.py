"""AWS Batch in runtime/compute.py (BatchTarget, submit_job, describe_job -> BatchState,
batch_outcome) and the SubmitBatchJob / CheckBatchStatus Lambdas (runtime/handlers/steps.py)
against moto's DynamoDB and Batch (moto runs Batch jobs without Docker: they succeed at once);
failed children and retried attempts come from DescribeJobs payloads (jobenv.batch_job)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from runtime import contract
from runtime.compute import (
    BatchState,
    BatchTarget,
    ComputeError,
    batch_outcome,
    describe_job,
    submit_job,
    terminate_job,
)
from runtime.context import ConfigurationError
from runtime.handlers import steps
from runtime.jobs import JobStore
from tests.runtime.jobenv import (
    BATCH_CONFIG,
    REGION,
    TABLE,
    FakeStepContext,
    StubBatch,
    batch_attempt,
    batch_job,
    create_batch,
    create_job_table,
)

CONTEXT = FakeStepContext("arn:aws:lambda:us-east-1:123456789012:function:mlserve-submit")
TARGET = BatchTarget("arn:queue/high", "arn:queue/low", "arn:job-definition/scoring:1")
HOST = "Host EC2 (instance i-0abc) terminated."
ESSENTIAL = "Essential container in task exited"


# --- compute: pure ------------------------------------------------------------------------------


def test_submit_request_array_only_when_sharded() -> None:
    one = TARGET.submit_job_request("j1")
    assert one["jobQueue"] == "arn:queue/low" and "arrayProperties" not in one
    assert one["jobDefinition"] == "arn:job-definition/scoring:1"
    assert one["containerOverrides"]["environment"] == [{"name": "JOB_ID", "value": "j1"}]
    many = TARGET.submit_job_request("j1", priority="high", shards=8)
    assert many["jobQueue"] == "arn:queue/high" and many["arrayProperties"] == {"size": 8}
    with pytest.raises(ValueError, match="priority"):
        TARGET.submit_job_request("j1", priority="urgent")
    with pytest.raises(ValueError, match="shards"):
        TARGET.submit_job_request("j1", shards=10_001)
    with pytest.raises(ConfigurationError):
        BatchTarget("", "q", "d")


def test_an_array_succeeds_only_when_every_child_succeeded() -> None:
    done = BatchState.from_description(
        batch_job("p", "SUCCEEDED", array_size=4, summary={"SUCCEEDED": 4})
    )
    assert batch_outcome(done) is not None and batch_outcome(done).succeeded  # type: ignore[union-attr]
    assert done.progress() == {"succeeded": 4, "failed": 0, "running": 0, "pending": 0}


def test_a_failed_child_fails_the_array_with_counts() -> None:
    state = BatchState.from_description(
        batch_job(
            "p",
            "FAILED",
            status_reason="Array Child Job failed",
            array_size=4,
            summary={"SUCCEEDED": 3, "FAILED": 1},
        )
    )
    outcome = batch_outcome(state)
    assert outcome is not None and outcome.status == contract.STATUS_FAILED
    assert outcome.error is not None and outcome.error.code == "batch_job_failed"
    assert "1 of 4 shards failed (3 succeeded): Array Child Job failed" in outcome.error.message


def test_a_running_array_reports_progress_and_no_outcome() -> None:
    state = BatchState.from_description(
        batch_job(
            "p", "PENDING", array_size=10, summary={"SUCCEEDED": 2, "RUNNING": 3, "RUNNABLE": 4}
        )
    )
    assert batch_outcome(state) is None
    # the one child not yet in the summary counts as pending
    assert state.progress() == {"succeeded": 2, "failed": 0, "running": 3, "pending": 5}


def test_a_retried_attempt_that_succeeded_is_success() -> None:
    state = BatchState.from_description(
        batch_job(
            "j",
            "SUCCEEDED",
            status_reason=ESSENTIAL,
            attempts=[batch_attempt(None, HOST), batch_attempt(0, ESSENTIAL)],
        )
    )
    assert len(state.attempts) == 2 and state.attempts[-1].exit_code == 0
    assert batch_outcome(state) is not None and batch_outcome(state).succeeded  # type: ignore[union-attr]


def test_a_single_job_that_failed_every_attempt_says_why() -> None:
    state = BatchState.from_description(
        batch_job(
            "j",
            "FAILED",
            status_reason=ESSENTIAL,
            attempts=[batch_attempt(1, ESSENTIAL), batch_attempt(1, ESSENTIAL, "OutOfMemoryError")],
        )
    )
    outcome = batch_outcome(state)
    assert outcome is not None and outcome.error is not None
    assert outcome.error.message == (
        "the batch job failed after 2 attempt(s): Essential container in task exited; "
        "exit code 1; OutOfMemoryError"
    )
    assert state.progress()["failed"] == 1


def test_describe_and_terminate_via_a_stub() -> None:
    stub = StubBatch({})
    missing = describe_job(stub, "gone")
    assert missing.missing and batch_outcome(missing).error.code == "batch_job_missing"  # type: ignore[union-attr]
    terminate_job(stub, "b-1", "x" * 400)
    assert stub.calls[-1] == ("terminate_job", {"jobId": "b-1", "reason": "x" * 255})


def test_api_errors_are_compute_errors() -> None:
    class Refusing:
        def submit_job(self, **_kwargs: Any) -> Any:
            raise RuntimeError("boom")

        describe_jobs = terminate_job = submit_job

    with pytest.raises(ComputeError, match="boom"):
        submit_job(Refusing(), TARGET, "j")
    with pytest.raises(ComputeError):
        describe_job(Refusing(), "j")
    with pytest.raises(ComputeError):
        terminate_job(Refusing(), "j", "r")


# --- the Lambdas against moto -------------------------------------------------------------------


@dataclass
class Env:
    env: dict[str, str]
    dynamodb: Any
    batch: Any

    @property
    def store(self) -> JobStore:
        return JobStore(self.dynamodb, TABLE)

    def use(self, batch: Any) -> None:
        steps.configure(env=self.env, clients={"dynamodb": self.dynamodb, "batch": batch})

    def job(self, job_id: str = "job-1", shards: int = 1, priority: str = "low") -> str:
        job = self.store.new_job(
            job_id,
            architecture="stepfunctions-batch",
            model_version="v1",
            shards=shards,
            priority=priority,
            input_uri="s3://b/inputs/x.csv",
            output_uri="s3://b/results/x/",
            format="csv",
        )
        self.store.create(job)
        self.store.transition(job_id, contract.STATUS_RUNNING)
        return job_id

    def submit(self, job_id: str) -> str:
        return str(steps.submit_batch_job({"job_id": job_id}, CONTEXT)["batch_job_id"])

    def check(self, job_id: str, batch_job_id: str) -> dict[str, Any]:
        return steps.check_batch_status({"job_id": job_id, "batch_job_id": batch_job_id}, CONTEXT)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws(config=BATCH_CONFIG):
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_job_table(dynamodb)
        variables = {contract.ENV_JOB_TABLE: TABLE, **create_batch()}
        batch = boto3.client("batch", region_name=REGION)
        environment = Env(variables, dynamodb, batch)
        environment.use(batch)
        yield environment


def test_submit_sends_an_array_job_to_the_priority_queue_and_records_it(env: Env) -> None:
    job_id = env.job(shards=3, priority="high")
    batch_job_id = env.submit(job_id)
    (described,) = env.batch.describe_jobs(jobs=[batch_job_id])["jobs"]
    assert described["jobQueue"] == env.env[contract.ENV_BATCH_JOB_QUEUE_HIGH]
    assert described["arrayProperties"]["size"] == 3
    overrides = described["container"]["environment"]
    assert {"name": "JOB_ID", "value": job_id} in overrides
    record = env.store.require(job_id)
    assert record.batch_job_id == batch_job_id
    assert record.progress == {"succeeded": 0, "failed": 0, "running": 0, "pending": 3}
    assert env.submit(job_id) == batch_job_id  # a retried invocation submits nothing new
    listed = env.batch.list_jobs(jobQueue=env.env[contract.ENV_BATCH_JOB_QUEUE_HIGH])
    parents = [j for j in listed["jobSummaryList"] if ":" not in j["jobId"]]  # not children
    assert len(parents) == 1


def test_check_reports_success_and_progress_from_moto(env: Env) -> None:
    job_id = env.job(shards=2)
    batch_job_id = env.submit(job_id)
    result = env.check(job_id, batch_job_id)
    assert result["state"] == "SUCCEEDED" and result["error"] is None
    assert env.store.require(job_id).progress == {
        "succeeded": 2,
        "failed": 0,
        "running": 0,
        "pending": 0,
    }


def test_check_with_a_failed_child(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    job_id = env.job(shards=4)
    env.store.update(job_id, {"batch_job_id": "p"})
    env.use(
        StubBatch(
            batch_job(
                "p", "RUNNING", array_size=4, summary={"SUCCEEDED": 2, "RUNNING": 1, "FAILED": 1}
            ),
            batch_job(
                "p",
                "FAILED",
                status_reason="Array Child Job failed",
                array_size=4,
                summary={"SUCCEEDED": 3, "FAILED": 1},
            ),
        )
    )
    capsys.readouterr()
    first = env.check(job_id, "p")
    assert first["state"] == "RUNNING"
    assert "BatchJobsFailed" not in capsys.readouterr().out
    assert env.store.require(job_id).progress == {
        "succeeded": 2,
        "failed": 1,
        "running": 1,
        "pending": 0,
    }
    second = env.check(job_id, "p")
    assert second["state"] == "FAILED"
    assert second["error"]["code"] == "batch_job_failed"
    assert "1 of 4 shards failed" in second["error"]["message"]
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    (record,) = [r for r in records if "BatchJobsFailed" in r]
    (directive,) = record["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == contract.METRICS_NAMESPACE
    assert (directive["Dimensions"], record["service"]) == ([["service"]], contract.SERVICE_NAME)


def test_check_with_a_retried_attempt(env: Env) -> None:
    job_id = env.job()
    env.use(
        StubBatch(
            batch_job("b", "RUNNABLE", attempts=[batch_attempt(None, HOST)]),
            batch_job(
                "b",
                "SUCCEEDED",
                attempts=[batch_attempt(None, HOST), batch_attempt(0, ESSENTIAL)],
            ),
        )
    )
    assert env.check(job_id, "b")["state"] == "RUNNING"
    assert env.check(job_id, "b")["state"] == "SUCCEEDED"
    assert env.store.require(job_id).progress == {
        "succeeded": 1,
        "failed": 0,
        "running": 0,
        "pending": 0,
    }


def test_check_of_a_cancelled_job_is_failed_without_asking_batch(env: Env) -> None:
    job_id = env.job()
    env.store.transition(job_id, contract.STATUS_CANCELLED)
    stub = StubBatch({})
    env.use(stub)
    result = env.check(job_id, "b")
    assert result["state"] == "FAILED" and stub.calls == []


def test_a_describe_failure_polls_again(env: Env) -> None:
    job_id = env.job()

    class Down:
        def describe_jobs(self, **_kwargs: Any) -> Any:
            raise RuntimeError("endpoint down")

    env.use(Down())
    assert env.check(job_id, "b")["state"] == "RUNNING"


def test_a_refused_submit_records_failed(env: Env) -> None:
    job_id = env.job()
    steps.configure(
        env={
            **env.env,
            contract.ENV_BATCH_JOB_QUEUE_LOW: "arn:aws:batch:us-east-1:123456789012:job-queue/nope",
        },
        clients={"dynamodb": env.dynamodb, "batch": env.batch},
    )
    with pytest.raises(steps.BatchJobNotSubmitted):
        env.submit(job_id)
    record = env.store.require(job_id)
    assert record.status == contract.STATUS_FAILED
    assert record.error is not None and record.error.code == "batch_job_not_submitted"


def test_events_without_ids_are_invalid(env: Env) -> None:
    with pytest.raises(steps.InvalidEvent):
        steps.submit_batch_job({}, CONTEXT)
    with pytest.raises(steps.InvalidEvent):
        steps.check_batch_status({"job_id": "x"}, CONTEXT)
    with pytest.raises(steps.InvalidEvent):
        env.submit("absent")
