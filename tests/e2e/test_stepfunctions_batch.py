"""Architecture ``stepfunctions-batch`` through the local emulator, in both polling modes: a job
config uploaded to ``jobs/`` of the emulated bucket triggers the real trigger handler (S3 event,
in-process), the workflow of components/workflows.py submits the AWS Batch job (an array job of
4 shards) and each shard is a process of the real ``python -m runtime.scoring --mode batch``.
(The local Batch and S3 events on their own: test_local_batch.py.)
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from mlserve.local import Emulator
from mlserve.local.batch import HOST_TERMINATED
from runtime import contract

from .conftest import Emulators
from .helpers import Example

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


# --- the pipeline -------------------------------------------------------------------------------


def _pipeline_available() -> bool:
    from components import workflows

    return hasattr(workflows, "batch_lambda_polling_definition") and hasattr(
        workflows, "batch_native_definition"
    )


pipeline = pytest.mark.skipif(
    not _pipeline_available(), reason="components/workflows.py has no batch definitions yet"
)


@pytest.fixture(scope="module", params=["lambda", "native"])
def polling(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sfb(emulators: Emulators, polling: str) -> Iterator[Emulator]:
    emulator = emulators.get(contract.ARCH_STEPFUNCTIONS_BATCH, polling=polling)
    emulator.batch.clear_faults()
    yield emulator
    emulator.batch.clear_faults()


def big_csv(example: Example, rows: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """``rows`` rows of the example's features (jittered copies), an ``id`` column first."""
    rng = np.random.default_rng(5)
    base = example.data.x[rng.integers(0, len(example.data.x), rows)]
    values = np.round(base * rng.uniform(0.9, 1.1, base.shape), 4)
    ids = np.arange(1_000_000, 1_000_000 + rows)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", *example.names])
    for identifier, row in zip(ids, values, strict=True):
        writer.writerow([identifier, *(f"{v:.4f}" for v in row)])
    return out.getvalue().encode(), ids, values


def upload_config(emulator: Emulator, name: str, config: dict[str, Any]) -> str:
    """Put ``jobs/<name>.json``; the job id the trigger gave it."""
    key = f"{contract.JOBS_PREFIX}{name}.json"
    before = len(emulator.notifications.deliveries)
    emulator.client("s3").put_object(
        Bucket=emulator.bucket, Key=key, Body=json.dumps(config).encode()
    )
    wait_until("delivered", lambda: len(emulator.notifications.deliveries) > before)
    delivery = emulator.notifications.deliveries[before]
    assert delivery.done.wait(30), "trigger still running"
    assert delivery.error is None, delivery.error
    (result,) = delivery.result["results"]
    assert result["key"] == key
    return str(result["job_id"])


def record(emulator: Emulator, job_id: str) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    item = (
        emulator.client("dynamodb")
        .get_item(TableName=emulator.table, Key={"job_id": {"S": job_id}}, ConsistentRead=True)
        .get("Item")
    )
    assert item is not None, f"no record {job_id}"
    deserializer = TypeDeserializer()
    return {k: deserializer.deserialize(v) for k, v in item.items()}


def wait_terminal(emulator: Emulator, job_id: str, timeout: float = 300) -> dict[str, Any]:
    def terminal() -> dict[str, Any] | None:
        job = record(emulator, job_id)
        return job if job["status"] not in ("PENDING", "RUNNING") else None

    result: dict[str, Any] = wait_until("terminal", terminal, timeout)
    return result


def batch_job_of(emulator: Emulator, job: dict[str, Any]) -> str:
    """The Batch job of a job: on the record (polling lambda), else the one whose containers
    got JOB_ID (polling native: Step Functions submitted it)."""
    if job.get("batch_job_id"):
        return str(job["batch_job_id"])
    parents = {
        run.job_id.split(":")[0]
        for run in emulator.batch_jobs
        if run.environment.get(contract.ENV_JOB_ID) == job["job_id"]
    }
    assert len(parents) == 1, parents
    return parents.pop()


@pipeline
def test_a_config_upload_scores_100000_rows_in_4_shards(
    sfb: Emulator, example: Example, booster: xgb.Booster
) -> None:
    body, ids, values = big_csv(example, 100_000)
    s3 = sfb.client("s3")
    run = uuid.uuid4().hex[:8]
    s3.put_object(Bucket=sfb.bucket, Key=f"inputs/big-{run}.csv", Body=body)
    output = f"s3://{sfb.bucket}/results/big-{run}/"
    job_id = upload_config(
        sfb,
        f"big-{run}",
        {
            "input_uri": f"s3://{sfb.bucket}/inputs/big-{run}.csv",
            "output_uri": output,
            "format": "csv",
            "shards": 4,
            "id_column": "id",
        },
    )

    job = wait_terminal(sfb, job_id)
    assert job["status"] == contract.STATUS_SUCCEEDED, job
    batch_job_id = batch_job_of(sfb, job)
    children = sfb.batch.children(batch_job_id)
    assert sorted(c.array_index for c in children) == [0, 1, 2, 3]  # type: ignore[type-var]
    listing = s3.list_objects_v2(Bucket=sfb.bucket, Prefix=f"results/big-{run}/")["Contents"]
    parts = sorted(o["Key"] for o in listing if "/part-" in o["Key"])
    assert parts == [f"results/big-{run}/part-{i:05d}.csv" for i in range(4)]
    got_ids: list[int] = []
    got: list[float] = []
    for key in parts:
        text = s3.get_object(Bucket=sfb.bucket, Key=key)["Body"].read().decode()
        for row in csv.DictReader(io.StringIO(text)):
            got_ids.append(int(row["id"]))
            got.append(float(row["prediction"]))
    assert len(got_ids) == len(ids)
    assert sorted(got_ids) == ids.tolist()  # every id exactly once
    position = {int(i): n for n, i in enumerate(ids)}
    order = np.array([position[i] for i in got_ids])
    expected = booster.predict(
        xgb.DMatrix(values[order], feature_names=booster.feature_names, missing=np.nan)
    )
    np.testing.assert_allclose(np.array(got), expected, rtol=0, atol=TOLERANCE)
    manifest = json.loads(
        s3.get_object(Bucket=sfb.bucket, Key=f"results/big-{run}/_manifest.json")["Body"].read()
    )
    assert manifest["rows"] == 100_000
    assert len(manifest["parts"]) == 4


@pipeline
def test_an_invalid_config_is_rejected_with_its_reason(sfb: Emulator) -> None:
    run = uuid.uuid4().hex[:8]
    job_id = upload_config(
        sfb,
        f"bad-{run}",
        {
            "input_uri": f"s3://{sfb.bucket}/inputs/x.csv",
            "output_uri": f"s3://{sfb.bucket}/results/bad-{run}/",
            "format": "xlsx",
            "shards": 4,
        },
    )

    job = record(sfb, job_id)
    assert job["status"] == contract.STATUS_FAILED
    assert job["error"]["code"] == "invalid_job_config"
    assert "format" in job["error"]["message"]
    s3 = sfb.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=sfb.bucket, Prefix="jobs/")["Contents"]]
    assert f"jobs/rejected/bad-{run}.json" in keys
    assert f"jobs/bad-{run}.json" not in keys
    assert not any(sfb.batch.children(j.job_id) for j in sfb.batch_jobs if j.job_name == job_id)


@pipeline
def test_a_duplicate_s3_event_starts_no_second_job(sfb: Emulator, example: Example) -> None:
    body, _, _ = big_csv(example, 200)
    run = uuid.uuid4().hex[:8]
    sfb.client("s3").put_object(Bucket=sfb.bucket, Key=f"inputs/dup-{run}.csv", Body=body)
    submitted = sfb.batch.submit_job_calls
    job_id = upload_config(
        sfb,
        f"dup-{run}",
        {
            "input_uri": f"s3://{sfb.bucket}/inputs/dup-{run}.csv",
            "output_uri": f"s3://{sfb.bucket}/results/dup-{run}/",
            "format": "csv",
        },
    )
    first = next(d for d in sfb.notifications.deliveries if d.keys == [f"jobs/dup-{run}.json"])

    again = sfb.notifications.redeliver(first)

    assert again.error is None
    assert again.result["results"][0]["outcome"] == "duplicate"
    assert again.result["results"][0]["job_id"] == job_id
    job = wait_terminal(sfb, job_id)
    assert job["status"] == contract.STATUS_SUCCEEDED, job
    executions = sfb.client("stepfunctions").list_executions(
        stateMachineArn=sfb.outputs["batchStateMachineArn"]
    )["executions"]
    assert [e["name"] for e in executions].count(job_id) == 1
    assert sfb.batch.submit_job_calls == submitted + 1


@pipeline
def test_a_shard_failing_once_then_succeeding_leaves_the_job_succeeded(
    sfb: Emulator, example: Example
) -> None:
    body, ids, _ = big_csv(example, 2_000)
    run = uuid.uuid4().hex[:8]
    s3 = sfb.client("s3")
    s3.put_object(Bucket=sfb.bucket, Key=f"inputs/retry-{run}.csv", Body=body)
    fault = sfb.batch.inject_failure(array_index=2, attempts=(1,))
    job_id = upload_config(
        sfb,
        f"retry-{run}",
        {
            "input_uri": f"s3://{sfb.bucket}/inputs/retry-{run}.csv",
            "output_uri": f"s3://{sfb.bucket}/results/retry-{run}/",
            "format": "csv",
            "shards": 4,
            "id_column": "id",
        },
    )

    job = wait_terminal(sfb, job_id)
    assert job["status"] == contract.STATUS_SUCCEEDED, job
    assert fault.hits == 1
    batch = sfb.client("batch")
    child = batch.describe_jobs(jobs=[f"{batch_job_of(sfb, job)}:2"])["jobs"][0]
    assert child["status"] == "SUCCEEDED"
    assert len(child["attempts"]) == 2
    assert child["attempts"][0]["statusReason"] == HOST_TERMINATED
    assert child["attempts"][1]["container"]["exitCode"] == 0
    assert int(job["attempts"]) >= 4  # every shard's attempt that ran counted on the record
    rows = 0
    for i in range(4):
        text = s3.get_object(Bucket=sfb.bucket, Key=f"results/retry-{run}/part-{i:05d}.csv")
        rows += len(text["Body"].read().decode().splitlines()) - 1
    assert rows == len(ids)


@pipeline
def test_post_jobs_with_an_input_uri_runs_the_same_pipeline(
    sfb: Emulator, example: Example
) -> None:
    from .helpers import Api

    body, ids, _ = big_csv(example, 3_000)
    run = uuid.uuid4().hex[:8]
    sfb.client("s3").put_object(Bucket=sfb.bucket, Key=f"inputs/api-{run}.csv", Body=body)
    with Api(sfb.url, sfb.api_key) as api:
        accepted = api.post(
            "/jobs",
            json={
                "input_uri": f"s3://{sfb.bucket}/inputs/api-{run}.csv",
                "output_uri": f"s3://{sfb.bucket}/results/api-{run}/",
                "format": "csv",
            },
        )
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]

        def terminal() -> dict[str, Any] | None:
            job: dict[str, Any] = api.get(f"/jobs/{job_id}").json()
            return job if job["status"] not in ("PENDING", "RUNNING") else None

        job = wait_until("terminal", terminal, 120)
    assert job["status"] == contract.STATUS_SUCCEEDED, job
    assert job["rows"] == len(ids)
    assert job["output_uri"] == f"s3://{sfb.bucket}/results/api-{run}/"
    batch_job_id = batch_job_of(sfb, record(sfb, job_id))
    assert sfb.batch.children(batch_job_id) == []  # one shard: not an array job
    assert sfb.batch.job(batch_job_id).status == "SUCCEEDED"


@pipeline
def test_a_retried_predict_of_a_finished_batch_job_answers_with_the_job(
    sfb: Emulator, example: Example
) -> None:
    """Its output is a prefix of parts: the replay answers 202 with the job, never a 5xx."""
    from .helpers import Api

    rows = example.rows(5).tolist()
    key = f"replay-{uuid.uuid4().hex[:8]}"
    with Api(sfb.url, sfb.api_key) as api:
        first = api.post("/predict", json={"instances": rows}, headers={"Idempotency-Key": key})
        assert first.status_code == 202, first.text
        job_id = first.json()["job_id"]
        assert wait_terminal(sfb, job_id)["status"] == contract.STATUS_SUCCEEDED
        replay = api.post("/predict", json={"instances": rows}, headers={"Idempotency-Key": key})
    assert replay.status_code == 202, replay.text
    assert replay.json()["job_id"] == job_id
    assert replay.json()["status"] == contract.STATUS_SUCCEEDED


@pipeline
def test_cancelling_a_job_terminates_its_batch_job(sfb: Emulator, example: Example) -> None:
    from .helpers import Api

    body, _, _ = big_csv(example, 1_000)
    run = uuid.uuid4().hex[:8]
    sfb.client("s3").put_object(Bucket=sfb.bucket, Key=f"inputs/cancel-{run}.csv", Body=body)
    sfb.batch.start_delay = 3.0  # the containers stay STARTING a while
    try:
        with Api(sfb.url, sfb.api_key) as api:
            accepted = api.post(
                "/jobs",
                json={
                    "input_uri": f"s3://{sfb.bucket}/inputs/cancel-{run}.csv",
                    "output_uri": f"s3://{sfb.bucket}/results/cancel-{run}/",
                    "format": "csv",
                },
            )
            assert accepted.status_code == 202, accepted.text
            job_id = accepted.json()["job_id"]
            wait_until(
                "submitted",
                lambda: any(
                    r.environment.get(contract.ENV_JOB_ID) == job_id for r in sfb.batch_jobs
                ),
            )
            cancelled = api.delete(f"/jobs/{job_id}")
            assert cancelled.status_code in (200, 202), cancelled.text
            parent = batch_job_of(sfb, {"job_id": job_id, **record(sfb, job_id)})
            assert sfb.batch.wait(parent, 30) == "FAILED"
            assert api.get(f"/jobs/{job_id}").json()["status"] == contract.STATUS_CANCELLED
    finally:
        sfb.batch.start_delay = 0.0
    for run in sfb.batch.children(parent) or [sfb.batch.job(parent)]:
        assert run.status == "FAILED"
        assert run.exit_codes in ([], [None])  # no container ran


@pipeline
def test_post_jobs_with_shards_runs_an_array_job(sfb: Emulator, example: Example) -> None:
    from .helpers import Api

    body, ids, _ = big_csv(example, 3_000)
    run = uuid.uuid4().hex[:8]
    sfb.client("s3").put_object(Bucket=sfb.bucket, Key=f"inputs/shards-{run}.csv", Body=body)
    with Api(sfb.url, sfb.api_key) as api:
        accepted = api.post(
            "/jobs",
            json={
                "input_uri": f"s3://{sfb.bucket}/inputs/shards-{run}.csv",
                "output_uri": f"s3://{sfb.bucket}/results/shards-{run}/",
                "format": "csv",
                "shards": 2,
                "id_column": "id",
                "priority": "high",
            },
        )
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]

        def terminal() -> dict[str, Any] | None:
            job: dict[str, Any] = api.get(f"/jobs/{job_id}").json()
            return job if job["status"] not in ("PENDING", "RUNNING") else None

        job = wait_until("terminal", terminal, 120)
    assert job["status"] == contract.STATUS_SUCCEEDED, job
    assert job["rows"] == len(ids)
    children = sfb.batch.children(batch_job_of(sfb, record(sfb, job_id)))
    assert sorted(c.array_index or 0 for c in children) == [0, 1]
    assert {c.queue_name for c in children} == {sfb.outputs["batchJobQueueHigh"].rsplit("/")[-1]}
