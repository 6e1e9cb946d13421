"""The local AWS Batch and S3 events of ``stepfunctions-batch``, on an embedded AWS of their own.

- the local AWS Batch (mlserve.local.batch) on its own, with a stand-in image
  (tests/e2e/batch_probe.py): array children in parallel up to the limit with Batch's
  environment, retries per the job definition's attempts/evaluateOnExit, DescribeJobs' statuses,
  attempts and statusSummary, TerminateJob; and S3 events of the emulated bucket delivered to a
  function in-process (mlserve.local.notifications);
  (the pipeline itself: test_stepfunctions_batch.py).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlserve.local.aws import MotoServer
from mlserve.local.batch import (
    HOST_TERMINATED,
    LOCAL_SCORING_IMAGE,
    LocalBatch,
    evaluate_on_exit,
)
from mlserve.local.deploy import deploy
from mlserve.local.functions import LocalFunction
from mlserve.local.notifications import LocalS3Notifications
from mlserve.train import TrainResult
from runtime import contract

from .conftest import Emulators

PROBE_IMAGE = "mlserve/batch-probe:local"
PROBE_MODULE = "tests.e2e.batch_probe"
JOB_TIMEOUT = 60.0
TOLERANCE = 1e-6


def wait_until(what: str, check: Any, timeout: float = JOB_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"still not {what} after {timeout} s"
        time.sleep(0.05)


# --- the local Batch on its own -----------------------------------------------------------------


class BatchWorld:
    """An embedded AWS with the program's stepfunctions-batch stack deployed (its queues and
    retry rules), the local Batch, the probe image and its job definitions."""

    def __init__(self, aws: MotoServer, batch: LocalBatch, probe_dir: Path, model: Path) -> None:
        self.aws = aws
        self.batch = batch
        self.client = aws.client("batch")
        self.probe_dir = probe_dir
        deployment = deploy(
            None,
            {"architecture": contract.ARCH_STEPFUNCTIONS_BATCH, "modelPath": str(model)},
            aws.endpoint_url,
        )
        queues = sorted(deployment.job_queues().values(), key=lambda q: q["priority"])
        self.queue_low_arn, self.queue_high_arn = (q["jobQueueArn"] for q in queues)
        [scoring] = deployment.job_definitions().values()
        self.evaluate_on_exit: list[dict[str, str]] = scoring["retryStrategy"]["evaluateOnExit"]

    def definition(self, image: str = PROBE_IMAGE, **environment: str) -> str:
        name = f"probe-{uuid.uuid4().hex[:8]}"
        env = {"PROBE_DIR": str(self.probe_dir), "FROM_DEFINITION": "yes", **environment}
        response = self.client.register_job_definition(
            jobDefinitionName=name,
            type="container",
            platformCapabilities=["FARGATE"],
            containerProperties={
                "image": image,
                "command": ["--mode", "batch"],
                "resourceRequirements": [
                    {"type": "VCPU", "value": "1"},
                    {"type": "MEMORY", "value": "2048"},
                ],
                "environment": [{"name": k, "value": v} for k, v in env.items()],
            },
            retryStrategy={"attempts": 3, "evaluateOnExit": self.evaluate_on_exit},
        )
        return str(response["jobDefinitionArn"])

    def submit(self, definition: str, size: int = 0, **environment: str) -> str:
        kwargs: dict[str, Any] = {}
        if size:
            kwargs["arrayProperties"] = {"size": size}
        response = self.client.submit_job(
            jobName="probe-job",
            jobQueue=self.queue_low_arn,
            jobDefinition=definition,
            containerOverrides={
                "environment": [{"name": k, "value": v} for k, v in environment.items()]
            },
            **kwargs,
        )
        return str(response["jobId"])

    def describe(self, job_id: str) -> dict[str, Any]:
        jobs = self.client.describe_jobs(jobs=[job_id])["jobs"]
        assert len(jobs) == 1, jobs
        return dict(jobs[0])

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.probe_dir.glob("*.json"))]


@pytest.fixture(scope="module")
def world(
    emulators: Emulators, trained: TrainResult, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BatchWorld]:
    emulators.stop()  # one embedded AWS at a time: moto's backends are process-wide
    scratch = tmp_path_factory.mktemp("batch")
    with MotoServer() as aws:
        batch = LocalBatch(
            endpoint_url=aws.endpoint_url,
            work_dir=scratch / "work",
            max_parallel=2,
            images={LOCAL_SCORING_IMAGE: contract.SCORING_MODULE, PROBE_IMAGE: PROBE_MODULE},
        )
        batch.install()
        try:
            yield BatchWorld(aws, batch, scratch, trained.model_path)
        finally:
            batch.shutdown()


@pytest.fixture
def probe(world: BatchWorld, tmp_path: Path) -> BatchWorld:
    world.probe_dir = tmp_path
    world.batch.clear_faults()
    return world


def test_an_array_job_runs_its_children_with_batch_s_environment(probe: BatchWorld) -> None:
    definition = probe.definition()
    job_id = probe.submit(definition, size=4, JOB_ID="job-1", PROBE_SLEEP="0.5")

    assert probe.batch.wait(job_id, JOB_TIMEOUT) == "SUCCEEDED"
    parent = probe.describe(job_id)
    assert parent["status"] == "SUCCEEDED"
    assert parent["arrayProperties"]["size"] == 4
    assert parent["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 4
    records = probe.records()
    assert len(records) == 4
    by_index = {int(r["env"]["AWS_BATCH_JOB_ARRAY_INDEX"]): r for r in records}
    assert sorted(by_index) == [0, 1, 2, 3]
    for index, record in by_index.items():
        env = record["env"]
        assert env["AWS_BATCH_JOB_ID"] == f"{job_id}:{index}"
        assert env["AWS_BATCH_JOB_ATTEMPT"] == "1"
        assert env["JOB_ID"] == "job-1"  # the container override
        assert env["AWS_ENDPOINT_URL"] == probe.aws.endpoint_url
        assert record["argv"] == ["--mode", "batch"]
        child = probe.describe(f"{job_id}:{index}")
        assert child["status"] == "SUCCEEDED"
        assert child["arrayProperties"] == {"index": index}
        assert [a["container"]["exitCode"] for a in child["attempts"]] == [0]
        assert child["container"]["exitCode"] == 0
        environment = probe.describe(f"{job_id}:{index}")["container"]["environment"]
        names = [e["name"] for e in environment]
        assert sorted(names) == sorted(set(names))  # the same on every DescribeJobs
        assert {"name": "AWS_BATCH_JOB_ID", "value": f"{job_id}:{index}"} in environment
        assert {"name": "JOB_ID", "value": "job-1"} in environment
        # the container's output in CloudWatch Logs, as the awslogs driver sends it
        events = probe.aws.client("logs").get_log_events(
            logGroupName="/aws/batch/job", logStreamName=child["container"]["logStreamName"]
        )["events"]
        assert [e["message"] for e in events] == [f"probe shard {index} attempt 1"]
    # in parallel, never more than the limit (2 here) at a time
    spans = sorted((r["started"], r["ended"]) for r in records)
    overlapping = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert overlapping == 2
    assert probe.batch.running_peak <= 2


def test_describe_jobs_reports_the_states_while_it_runs(probe: BatchWorld) -> None:
    definition = probe.definition()
    job_id = probe.submit(definition, size=3, PROBE_SLEEP="1")
    seen: set[str] = set()

    def done() -> bool:
        parent = probe.describe(job_id)
        seen.add(parent["status"])
        summary = parent["arrayProperties"]["statusSummary"]
        assert sum(summary.values()) == 3
        return parent["status"] in ("SUCCEEDED", "FAILED")

    wait_until("done", done)
    assert "RUNNING" in seen
    assert probe.describe(job_id)["status"] == "SUCCEEDED"


def test_an_infrastructure_failure_is_retried_and_the_attempts_recorded(
    probe: BatchWorld,
) -> None:
    fault = probe.batch.inject_failure(array_index=1, attempts=(1,))
    job_id = probe.submit(probe.definition(), size=2)

    assert probe.batch.wait(job_id, JOB_TIMEOUT) == "SUCCEEDED"
    assert fault.hits == 1
    child = probe.describe(f"{job_id}:1")
    assert child["status"] == "SUCCEEDED"
    first, second = child["attempts"]
    assert "exitCode" not in first["container"]
    assert first["statusReason"] == HOST_TERMINATED
    assert second["container"]["exitCode"] == 0
    attempts = sorted(
        r["env"]["AWS_BATCH_JOB_ATTEMPT"]
        for r in probe.records()
        if r["env"]["AWS_BATCH_JOB_ARRAY_INDEX"] == "1"
    )
    assert attempts == ["2"]  # the first attempt never ran


def test_an_application_exit_code_is_not_retried_and_fails_the_array(probe: BatchWorld) -> None:
    job_id = probe.submit(probe.definition(PROBE_EXIT_1="3"), size=3)

    assert probe.batch.wait(job_id, JOB_TIMEOUT) == "FAILED"
    parent = probe.describe(job_id)
    assert parent["status"] == "FAILED"
    summary = parent["arrayProperties"]["statusSummary"]
    assert (summary["SUCCEEDED"], summary["FAILED"]) == (2, 1)
    child = probe.describe(f"{job_id}:1")
    assert [a["container"]["exitCode"] for a in child["attempts"]] == [3]  # EXIT on *
    assert child["container"]["exitCode"] == 3


def test_an_image_that_cannot_be_pulled_is_retried_then_fails(probe: BatchWorld) -> None:
    job_id = probe.submit(probe.definition(image="nowhere/nothing:1"))

    assert probe.batch.wait(job_id, JOB_TIMEOUT) == "FAILED"
    job = probe.describe(job_id)
    assert len(job["attempts"]) == 3  # attempts: 3, RETRY on CannotPullContainerError*
    assert all(a["container"]["reason"].startswith("CannotPull") for a in job["attempts"])
    assert probe.records() == []


def test_terminate_job_stops_the_running_children_without_retrying(probe: BatchWorld) -> None:
    job_id = probe.submit(probe.definition(), size=3, PROBE_SLEEP="60")
    wait_until("running", lambda: probe.describe(job_id)["status"] == "RUNNING")

    probe.client.terminate_job(jobId=job_id, reason="stop it")

    assert probe.batch.wait(job_id, 20) == "FAILED"
    for index in range(3):
        child = probe.describe(f"{job_id}:{index}")
        assert child["status"] == "FAILED"
        assert child["statusReason"] == "stop it"
        assert len(child["attempts"]) <= 1
    assert probe.records() == []  # no container finished its sleep


def test_evaluate_on_exit_takes_the_first_matching_rule(world: BatchWorld) -> None:
    rules = world.evaluate_on_exit  # the deployed job definition's
    # (moto defect: RegisterJobDefinition stores the action lower-cased)
    assert {**rules[-1], "action": rules[-1]["action"].upper()} == {
        "action": "EXIT",
        "onExitCode": "*",
    }
    assert evaluate_on_exit(rules, status_reason=HOST_TERMINATED, reason=None, exit_code=None) == (
        "RETRY"
    )
    assert evaluate_on_exit(rules, status_reason="x", reason=None, exit_code=1) == "EXIT"
    assert evaluate_on_exit(rules, status_reason="x", reason=None, exit_code=None) is None


def test_s3_events_reach_the_function_with_a_sequencer(world: BatchWorld) -> None:
    s3 = world.aws.client("s3")
    bucket = f"events-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    seen: list[dict[str, Any]] = []
    function = LocalFunction(
        name="probe-trigger",
        handler=lambda event, _context: seen.append(event) or {"ok": True},
        configure=lambda **_kwargs: None,
        environment={},
    )
    function.cold_start(world.probe_dir)
    arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function.name}"
    notifications = LocalS3Notifications()
    notifications.install()
    try:
        notifications.register(function, arn)
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "LambdaFunctionConfigurations": [
                    {
                        "LambdaFunctionArn": arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {
                            "Key": {
                                "FilterRules": [
                                    {"Name": "prefix", "Value": "jobs/"},
                                    {"Name": "suffix", "Value": ".json"},
                                ]
                            }
                        },
                    }
                ]
            },
        )
        s3.put_object(Bucket=bucket, Key="jobs/a.json", Body=b"{}")
        s3.put_object(Bucket=bucket, Key="jobs/a.json", Body=b"{}")
        s3.put_object(Bucket=bucket, Key="inputs/b.json", Body=b"{}")  # not under jobs/
        s3.put_object(Bucket=bucket, Key="jobs/c.txt", Body=b"{}")  # not .json
        wait_until("delivered", lambda: len(notifications.deliveries) == 2)
        notifications.wait_idle(10)
        assert [d.keys for d in notifications.deliveries] == [["jobs/a.json"], ["jobs/a.json"]]
        sequencers = [e["Records"][0]["s3"]["object"]["sequencer"] for e in seen]
        assert len(set(sequencers)) == 2 and sequencers == sorted(sequencers)

        again = notifications.redeliver(notifications.deliveries[0])
        assert again.result == {"ok": True}
        assert seen[-1] == seen[0]  # the very same event, sequencer included
    finally:
        notifications.shutdown()


def test_submit_job_s_retry_strategy_overrides_the_definition_s(probe: BatchWorld) -> None:
    probe.batch.inject_failure(array_index=None, attempts=(1,))
    response = probe.client.submit_job(
        jobName="no-retry",
        jobQueue=probe.queue_high_arn,
        jobDefinition=probe.definition(),
        retryStrategy={"attempts": 1},
    )

    assert probe.batch.wait(response["jobId"], JOB_TIMEOUT) == "FAILED"
    job = probe.describe(response["jobId"])
    assert len(job["attempts"]) == 1
    assert job["statusReason"] == HOST_TERMINATED
