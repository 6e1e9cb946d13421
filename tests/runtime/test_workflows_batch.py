"""The stepfunctions-batch definitions of components/workflows.py: their content (the same
Retry/Catch/TimeoutSeconds rules as stepfunctions-ecs) and a run in moto's Step Functions engine
with the real SubmitBatchJob/CheckBatchStatus handlers and, as the Batch children, the real
batch-mode scoring entrypoint (tests/runtime/test_workflows_batch.SimulatedBatch)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from moto import mock_aws

from components import workflows as wf
from mlserve.train import TrainResult, load_example_data
from runtime import contract
from runtime.handlers import steps
from runtime.jobs import JobStore
from runtime.scoring import main as scoring_main
from tests.runtime.jobenv import (
    BUCKET,
    CHECK_BATCH_STATUS_ARN,
    REGION,
    SFN_CONFIG,
    SUBMIT_BATCH_JOB_ARN,
    TABLE,
    batch_attempt,
    batch_job,
    create_job_table,
    create_state_machine,
    deploy_model,
    lambda_functions,
    reference,
    scoring_env,
    visited_states,
    wait_for_execution,
)

QUEUE_HIGH = "arn:aws:batch:us-east-1:123456789012:job-queue/mlserve-high"
QUEUE_LOW = "arn:aws:batch:us-east-1:123456789012:job-queue/mlserve-low"
JOB_DEFINITION = "arn:aws:batch:us-east-1:123456789012:job-definition/mlserve-scoring:3"


def lambda_definition(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "table_name": TABLE,
        "submit_batch_job_function_arn": SUBMIT_BATCH_JOB_ARN,
        "check_batch_status_function_arn": CHECK_BATCH_STATUS_ARN,
        "execution_timeout_seconds": 3600,
        "poll_interval_seconds": 10,
        **overrides,
    }
    return wf.batch_lambda_polling_definition(**args)


def native_definition(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "table_name": TABLE,
        "job_queue_high_arn": QUEUE_HIGH,
        "job_queue_low_arn": QUEUE_LOW,
        "job_definition_arn": JOB_DEFINITION,
        "execution_timeout_seconds": 3600,
        "job_timeout_seconds": 1800,
        **overrides,
    }
    return wf.batch_native_definition(**args)


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
def test_every_state_is_reachable_and_the_execution_has_a_timeout(
    build: Callable[..., dict[str, Any]],
) -> None:
    definition = build(execution_timeout_seconds=5400)
    names = set(definition["States"])
    for state in definition["States"].values():
        assert next_states(state) <= names
    assert reachable(definition) == names
    assert definition["TimeoutSeconds"] == 5400
    json.dumps(definition)


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
        assert (retrier["MaxAttempts"], retrier["BackoffRate"], retrier["IntervalSeconds"]) == (
            3,
            2,
            2,
        ), name
        assert "States.ALL" not in retrier["ErrorEquals"], name
        catch_all = task["Catch"][-1]
        assert catch_all["ErrorEquals"] == ["States.ALL"], name
        assert catch_all["ResultPath"] == "$.failure", name
        if name == wf.MARK_FAILED:
            assert catch_all["Next"] == wf.RECORDING_FAILED
        else:
            handler = definition["States"][catch_all["Next"]]
            assert handler["Type"] == "Pass" and handler["Next"] == wf.MARK_FAILED, name


@BOTH
def test_mark_succeeded_moves_running_to_succeeded(build: Callable[..., dict[str, Any]]) -> None:
    states = build()["States"]
    params = states[wf.MARK_SUCCEEDED]["Parameters"]
    assert params["ConditionExpression"] == "#s IN (:running, :succeeded)"
    assert params["UpdateExpression"] == "SET #s = :succeeded, #u = :now"
    assert states[wf.MARK_SUCCEEDED]["Catch"][0]["Next"] == wf.ALREADY_FINAL
    assert states[wf.RECORD_RUNNING]["Parameters"]["ConditionExpression"] == "#s = :pending"
    failed = states[wf.MARK_FAILED]["Parameters"]
    assert failed["ConditionExpression"] == "#s IN (:pending, :running)"


def test_lambda_polling_loop() -> None:
    states = lambda_definition(poll_interval_seconds=15)["States"]
    submit = states[wf.SUBMIT_BATCH_JOB]
    assert submit["Parameters"] == {
        "FunctionName": SUBMIT_BATCH_JOB_ARN,
        "Payload": {"job_id.$": "$.job_id"},
    }
    assert (submit["ResultPath"], submit["Next"]) == ("$.batch", wf.WAIT_FOR_BATCH_JOB)
    assert states[wf.WAIT_FOR_BATCH_JOB]["Seconds"] == 15
    check = states[wf.CHECK_BATCH_STATUS]
    assert check["Parameters"]["Payload"] == {
        "job_id.$": "$.job_id",
        "batch_job_id.$": "$.batch.batch_job_id",
    }
    assert check["ResultSelector"] == {"state.$": "$.Payload.state", "error.$": "$.Payload.error"}
    choice = states[wf.IS_BATCH_JOB_DONE]
    assert [c["Next"] for c in choice["Choices"]] == [wf.WAIT_FOR_BATCH_JOB, wf.MARK_SUCCEEDED]
    assert choice["Default"] == wf.MARK_FAILED


def test_native_submits_with_sync_to_the_priority_queue_and_arrays_only_when_sharded() -> None:
    states = native_definition()["States"]
    running = states[wf.RECORD_RUNNING]
    assert running["Parameters"]["ReturnValues"] == "ALL_NEW"
    assert running["ResultPath"] == "$.record"
    assert states[wf.USE_HIGH_QUEUE]["Result"] == {"arn": QUEUE_HIGH}
    assert states[wf.USE_LOW_QUEUE]["Result"] == {"arn": QUEUE_LOW}
    single, array = states[wf.SUBMIT_JOB], states[wf.SUBMIT_ARRAY_JOB]
    for task in (single, array):
        assert task["Resource"] == "arn:aws:states:::batch:submitJob.sync"
        assert task["TimeoutSeconds"] == 1800
        assert task["Parameters"]["JobDefinition"] == JOB_DEFINITION
        assert task["Parameters"]["JobQueue.$"] == "$.queue.arn"
        assert task["Parameters"]["ContainerOverrides"] == {
            "Environment": [{"Name": "JOB_ID", "Value.$": "$.job_id"}]
        }
        assert task["Catch"][0]["Next"] == wf.BATCH_JOB_FAILED
        assert task["Next"] == wf.MARK_SUCCEEDED
    assert "ArrayProperties" not in single["Parameters"]
    assert array["Parameters"]["ArrayProperties"] == {
        "Size.$": "States.StringToJson($.record.shards)"
    }
    assert "lambda" not in json.dumps(native_definition())


@pytest.mark.parametrize(
    ("build", "overrides", "message"),
    [
        (lambda_definition, {"poll_interval_seconds": 0}, "poll_interval_seconds"),
        (lambda_definition, {"submit_batch_job_function_arn": ""}, "function_arn"),
        (native_definition, {"job_timeout_seconds": 7200}, "must not exceed"),
        (native_definition, {"job_queue_high_arn": ""}, "job_queue_high_arn"),
        (native_definition, {"job_definition_arn": ""}, "job_definition_arn"),
    ],
)
def test_invalid_arguments_are_refused(
    build: Callable[..., dict[str, Any]], overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build(**overrides)


# --- moto's engine ------------------------------------------------------------------------------


@dataclass
class SimulatedBatch:
    """AWS Batch as the handlers see it: SubmitJob runs every child (the real batch-mode
    entrypoint, in-process) with up to ``attempts`` attempts; DescribeJobs answers the array
    parent with its status summary, as Batch does once the children finished."""

    container: Callable[[str, int | None, int], int]
    attempts: int = 2
    submitted: list[dict[str, Any]] = field(default_factory=list)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def submit_job(self, **kwargs: Any) -> dict[str, Any]:
        self.submitted.append(kwargs)
        env = {e["name"]: e["value"] for e in kwargs["containerOverrides"]["environment"]}
        size = (kwargs.get("arrayProperties") or {}).get("size")
        batch_job_id = f"b-{len(self.submitted)}"
        results: list[tuple[bool, list[dict[str, Any]]]] = []
        for index in range(size) if size else [None]:
            tries: list[dict[str, Any]] = []
            for attempt in range(1, self.attempts + 1):
                code = self.container(env["JOB_ID"], index, attempt)
                tries.append(batch_attempt(code, "Essential container in task exited"))
                if code == 0:
                    break
            results.append((tries[-1]["container"]["exitCode"] == 0, tries))
        ok = sum(1 for succeeded, _ in results if succeeded)
        status = "SUCCEEDED" if ok == len(results) else "FAILED"
        if size:
            self.jobs[batch_job_id] = batch_job(
                batch_job_id,
                status,
                status_reason=None if ok == size else "Array Child Job failed",
                array_size=size,
                summary={"SUCCEEDED": ok, "FAILED": size - ok},
            )
        else:
            self.jobs[batch_job_id] = batch_job(
                batch_job_id,
                status,
                status_reason="Essential container in task exited",
                attempts=results[0][1],
            )
        return {"jobId": batch_job_id, "jobName": kwargs["jobName"]}

    def describe_jobs(self, **kwargs: Any) -> dict[str, Any]:
        return {"jobs": [self.jobs[j] for j in kwargs["jobs"] if j in self.jobs]}


@dataclass
class Engine:
    sfn: Any
    dynamodb: Any
    s3: Any
    container_env: dict[str, str]
    fail_first: set[int | None] = field(default_factory=set)
    always_fail: set[int | None] = field(default_factory=set)

    @property
    def store(self) -> JobStore:
        return JobStore(self.dynamodb, TABLE)

    def container(self, job_id: str, index: int | None, attempt: int) -> int:
        if index in self.always_fail or (index in self.fail_first and attempt == 1):
            return 1
        env = {**self.container_env, contract.ENV_JOB_ID: job_id}
        if index is not None:
            env[contract.ENV_BATCH_ARRAY_INDEX] = str(index)
        env[contract.ENV_BATCH_ATTEMPT] = str(attempt)
        return scoring_main(["--mode", "batch"], env=env)

    def job(self, job_id: str, shards: int, rows: np.ndarray) -> str:
        names = load_example_data().feature_names
        columns = {"id": pa.array([f"r{i}" for i in range(len(rows))])}
        columns |= {n: pa.array(rows[:, i].astype(np.float64)) for i, n in enumerate(names)}
        sink = io.BytesIO()
        pacsv.write_csv(pa.table(columns), sink)
        self.s3.put_object(Bucket=BUCKET, Key=f"inputs/{job_id}.csv", Body=sink.getvalue())
        job = self.store.new_job(
            job_id,
            architecture=contract.ARCH_STEPFUNCTIONS_BATCH,
            model_version="abc123",
            input_uri=f"s3://{BUCKET}/inputs/{job_id}.csv",
            output_uri=f"s3://{BUCKET}/results/{job_id}/",
            format="csv",
            shards=shards,
            priority="high",
            id_column="id",
        )
        self.store.create(job)
        return job_id

    def run(
        self, definition: Mapping[str, Any], job_id: str, batch: Any
    ) -> tuple[dict[str, Any], list[str]]:
        machine = create_state_machine(self.sfn, definition, f"mlserve-batch-{job_id}")
        steps.configure(
            env={
                contract.ENV_JOB_TABLE: TABLE,
                contract.ENV_BATCH_JOB_QUEUE_HIGH: QUEUE_HIGH,
                contract.ENV_BATCH_JOB_QUEUE_LOW: QUEUE_LOW,
                contract.ENV_BATCH_JOB_DEFINITION: JOB_DEFINITION,
            },
            clients={"dynamodb": self.dynamodb, "batch": batch},
        )
        handlers = {
            SUBMIT_BATCH_JOB_ARN: steps.submit_batch_job,
            CHECK_BATCH_STATUS_ARN: steps.check_batch_status,
        }
        with lambda_functions(handlers):
            arn = self.sfn.start_execution(
                stateMachineArn=machine, name=job_id, input=json.dumps({"job_id": job_id})
            )["executionArn"]
            description = wait_for_execution(self.sfn, arn, timeout=60)
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
    with mock_aws(config=SFN_CONFIG):
        s3 = boto3.client("s3", region_name=os.environ["AWS_DEFAULT_REGION"])
        s3.create_bucket(Bucket=BUCKET)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_job_table(dynamodb)
        model_env = deploy_model(s3, example_model)
        yield Engine(
            boto3.client("stepfunctions", region_name=REGION),
            dynamodb,
            s3,
            scoring_env(model_env, tmp_path / "cache"),
        )
    steps.configure(env={})


ROWS = load_example_data().x[:200].astype(np.float32)
LOOP = [
    wf.RECORD_RUNNING,
    wf.SUBMIT_BATCH_JOB,
    wf.WAIT_FOR_BATCH_JOB,
    wf.CHECK_BATCH_STATUS,
    wf.IS_BATCH_JOB_DONE,
]


def test_lambda_polling_scores_4_shards_to_succeeded(
    engine: Engine, example_model: TrainResult
) -> None:
    job_id = engine.job("job-4", 4, ROWS)
    engine.fail_first = {2}  # shard 2 fails once, then succeeds on its retry
    batch = SimulatedBatch(engine.container)
    execution, visited = engine.run(lambda_definition(poll_interval_seconds=1), job_id, batch)
    assert execution["status"] == "SUCCEEDED", execution
    assert visited == [*LOOP, wf.MARK_SUCCEEDED]
    (submitted,) = batch.submitted
    assert submitted["jobQueue"] == QUEUE_HIGH and submitted["arrayProperties"] == {"size": 4}
    job = engine.store.require(job_id)
    assert job.status == contract.STATUS_SUCCEEDED
    assert job.rows == len(ROWS) and job.attempts == 4  # shard 2's failed try never started
    assert job.progress == {"succeeded": 4, "failed": 0, "running": 0, "pending": 0}
    manifest = json.loads(
        engine.s3.get_object(Bucket=BUCKET, Key=f"results/{job_id}/_manifest.json")["Body"].read()
    )
    assert manifest["rows"] == len(ROWS) and len(manifest["parts"]) == 4
    scored: dict[str, float] = {}
    for part in manifest["parts"]:
        body = engine.s3.get_object(Bucket=BUCKET, Key=part["key"])["Body"].read()
        tbl = pacsv.read_csv(io.BytesIO(body))
        for key, value in zip(
            tbl.column("id").to_pylist(), tbl.column("prediction").to_pylist(), strict=True
        ):
            assert key not in scored
            scored[key] = value
    expected = reference(example_model, ROWS)
    np.testing.assert_allclose([scored[f"r{i}"] for i in range(len(ROWS))], expected, atol=1e-6)


def test_lambda_polling_records_a_failed_shard(engine: Engine) -> None:
    job_id = engine.job("job-fail", 3, ROWS)
    engine.always_fail = {1}
    execution, visited = engine.run(
        lambda_definition(poll_interval_seconds=1), job_id, SimulatedBatch(engine.container)
    )
    assert (execution["status"], execution["error"]) == ("FAILED", "JobFailed")
    assert visited == [*LOOP, wf.MARK_FAILED, wf.JOB_FAILED]
    job = engine.store.require(job_id)
    assert job.status == contract.STATUS_FAILED
    assert job.error is not None and job.error.code == "batch_job_failed"
    assert "1 of 3 shards failed (2 succeeded)" in job.error.message


def test_lambda_polling_keeps_a_cancelled_job_cancelled(engine: Engine) -> None:
    job_id = engine.job("job-cancelled", 2, ROWS)
    engine.store.transition(job_id, contract.STATUS_CANCELLED)
    batch = SimulatedBatch(engine.container)
    execution, visited = engine.run(lambda_definition(poll_interval_seconds=1), job_id, batch)
    assert execution["status"] == "SUCCEEDED"
    assert visited == [wf.RECORD_RUNNING, wf.ALREADY_FINAL]
    assert batch.submitted == []


def test_the_native_definition_is_accepted_by_the_engine(engine: Engine) -> None:
    arn = create_state_machine(engine.sfn, native_definition(), "mlserve-batch-native")
    described = engine.sfn.describe_state_machine(stateMachineArn=arn)
    assert json.loads(described["definition"]) == native_definition()


@pytest.mark.parametrize(("shards", "submit"), [(1, wf.SUBMIT_JOB), (3, wf.SUBMIT_ARRAY_JOB)])
def test_native_runs_to_the_submit_and_records_its_failure(
    engine: Engine, shards: int, submit: str
) -> None:
    """moto 5.2's engine runs RecordRunning (ReturnValues ALL_NEW + ResultSelector), the queue
    and array choices; its ``batch:submitJob.sync`` does not translate the ASL parameters to the
    boto3 call (``States.Runtime: 'JobName'``, a moto defect like the ecs:runTask.sync one): the
    catch-all records that failure, which pins the error path of the native mode."""
    job_id = engine.job(f"job-native-{shards}", shards, ROWS)
    machine = create_state_machine(engine.sfn, native_definition(), f"native-{shards}")
    arn = engine.sfn.start_execution(
        stateMachineArn=machine, name=job_id, input=json.dumps({"job_id": job_id})
    )["executionArn"]
    execution = wait_for_execution(engine.sfn, arn)
    assert visited_states(engine.sfn, arn) == [
        wf.RECORD_RUNNING,
        wf.CHOOSE_QUEUE,
        wf.USE_HIGH_QUEUE,
        wf.IS_ARRAY_JOB,
        submit,
        wf.WORKFLOW_ERROR,
        wf.MARK_FAILED,
        wf.JOB_FAILED,
    ]
    assert execution["status"] == "FAILED"
    job = engine.store.require(job_id)
    assert job.status == contract.STATUS_FAILED
    assert job.error is not None and job.error.code == "workflow_error"
