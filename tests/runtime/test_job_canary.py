"""A canary on the job architectures (issue 17), with moto: who scores a job is decided once,
when the job is created (the job API of lambda-ecs / stepfunctions-ecs / stepfunctions-batch, the
S3 trigger), recorded in the job, and the scoring entrypoint (job mode: the ECS task; batch mode:
the Batch job) scores with that version, or fails the job when it does not hold it.

Two genuinely different models (the example model and one with more trees) are deployed as the
stable and the canary version, so a job scored by the wrong one is caught.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from mlserve.train import TrainResult, load_example_data, train_example
from runtime import contract
from runtime.handlers import trigger
from runtime.jobs import Job, parse_s3_uri
from runtime.scoring import main as scoring_main
from tests.runtime.jobenv import (
    BUCKET,
    REGION,
    TABLE,
    VERSION,
    create_ecs,
    create_job_table,
    create_state_machine,
    deploy_model,
    job_count,
    reference,
    scoring_env,
    tasks_stay_running,
)
from tests.runtime.test_jobs_handler import Api
from tests.runtime.test_trigger import PASS_MACHINE, Trigger

CANARY = "def456"  # the canary's version (the stable one is jobenv.VERSION)
ROWS = load_example_data().x
CANARY_PERCENT = 40
JOBS = 300  # jobs submitted to measure the canary's share


@pytest.fixture(scope="module")
def canary_model(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """Another version of the example model: the same features, more trees."""
    return train_example(out_dir=tmp_path_factory.mktemp("canary") / "example", n_estimators=160)


def with_canary(s3: Any, canary: TrainResult, percent: int = CANARY_PERCENT) -> dict[str, str]:
    """The canary beside the stable model, as the program deploys it: the variables of the
    functions that create jobs (URI, digest, share) and of the scoring containers (URI, digest)."""
    env = deploy_model(s3, canary, CANARY)
    return {
        contract.ENV_CANARY_MODEL_URI: env[contract.ENV_MODEL_URI],
        contract.ENV_CANARY_MODEL_SHA256: env[contract.ENV_MODEL_SHA256],
        contract.ENV_CANARY_PERCENT: str(percent),
    }


def container_canary(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != contract.ENV_CANARY_PERCENT}


@pytest.fixture
def jobs_api(s3: Any, example_model: TrainResult, canary_model: TrainResult, tmp_path: Path) -> Any:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_job_table(dynamodb)
    model_env = deploy_model(s3, example_model)
    canary = with_canary(s3, canary_model)
    env = {
        contract.ENV_ARCHITECTURE: contract.ARCH_LAMBDA_ECS,
        contract.ENV_JOB_TABLE: TABLE,
        contract.ENV_DATA_BUCKET: BUCKET,
        **model_env,
        **canary,
        contract.ENV_MAX_ROWS: "50",
        contract.ENV_SYNC_WAIT_SECONDS: "0",
        **create_ecs(),
    }
    container = {**scoring_env(model_env, tmp_path / "cache"), **container_canary(canary)}
    with tasks_stay_running():
        yield Api(env, container, s3, dynamodb, example_model)


def boosters(stable: TrainResult, canary: TrainResult) -> dict[str, TrainResult]:
    return {VERSION: stable, CANARY: canary}


def test_jobs_are_split_by_their_key_and_scored_by_the_version_they_record(
    jobs_api: Api, example_model: TrainResult, canary_model: TrainResult
) -> None:
    models = boosters(example_model, canary_model)
    rows = ROWS[:3]
    recorded: Counter[str] = Counter()
    first: dict[str, str] = {}
    for i in range(JOBS):
        status, body, _ = jobs_api.call(
            "POST",
            "/jobs",
            {"instances": rows.tolist()},
            headers={contract.REQUEST_ID_HEADER: f"client-{i}"},
        )
        assert status == 202, body
        job = jobs_api.store.require(body["job_id"])
        recorded[job.model_version] += 1
        first.setdefault(job.model_version, job.job_id)
    assert set(recorded) == {VERSION, CANARY}
    assert abs(recorded[CANARY] / JOBS - CANARY_PERCENT / 100) <= 0.08, recorded
    for version, job_id in first.items():
        assert jobs_api.score(job_id) == 0
        _, job, _ = jobs_api.call("GET", f"/jobs/{job_id}")
        assert (job["status"], job["model_version"]) == ("SUCCEEDED", version)
        expected = reference(models[version], rows)
        np.testing.assert_allclose(job["predictions"], expected, rtol=1e-6)
        other = reference(models[CANARY if version == VERSION else VERSION], rows)
        assert not np.allclose(job["predictions"], other, rtol=1e-6)  # the models differ


def test_a_retried_submission_keeps_its_version(jobs_api: Api) -> None:
    body = {"instances": ROWS[:2].tolist()}
    versions = set()
    for _ in range(4):  # the same client request id: new jobs, the same version
        _, accepted, _ = jobs_api.call(
            "POST", "/jobs", body, headers={contract.REQUEST_ID_HEADER: "client-retry"}
        )
        versions.add(jobs_api.store.require(accepted["job_id"]).model_version)
    assert len(versions) == 1
    # an Idempotency-Key: one job, whatever the retries
    ids = {
        jobs_api.call("POST", "/jobs", body, headers={"Idempotency-Key": "k-1"})[1]["job_id"]
        for _ in range(3)
    }
    assert len(ids) == 1


def test_a_pinned_version_is_honoured_and_an_unknown_one_changes_nothing(
    jobs_api: Api, example_model: TrainResult, canary_model: TrainResult
) -> None:
    models = boosters(example_model, canary_model)
    rows = ROWS[5:9]
    for version in (VERSION, CANARY):
        for i in range(10):
            status, accepted, _ = jobs_api.call(
                "POST",
                "/jobs",
                {"instances": rows.tolist()},
                headers={
                    contract.MODEL_VERSION_HEADER: version,
                    contract.REQUEST_ID_HEADER: str(i),
                },
            )
            assert status == 202
            assert jobs_api.store.require(accepted["job_id"]).model_version == version
        assert jobs_api.score(accepted["job_id"]) == 0
        _, job, _ = jobs_api.call("GET", f"/jobs/{accepted['job_id']}")
        np.testing.assert_allclose(job["predictions"], reference(models[version], rows), rtol=1e-6)

    before, tasks = jobs_api.jobs(), len(jobs_api.ecs.run_calls)
    status, error, _ = jobs_api.call(
        "POST",
        "/jobs",
        {"instances": rows.tolist()},
        headers={contract.MODEL_VERSION_HEADER: "v9"},
    )
    assert status == 400
    assert error["error"]["code"] == "unknown_model_version"
    assert f"allowed: {VERSION}, {CANARY}" in error["error"]["message"]
    assert (jobs_api.jobs(), len(jobs_api.ecs.run_calls)) == (before, tasks)
    # POST /predict pins the same way
    status, error, _ = jobs_api.call(
        "POST", "/predict", {"instances": rows.tolist()}, headers={"X-Model-Version": "v9"}
    )
    assert (status, error["error"]["code"]) == (400, "unknown_model_version")
    assert jobs_api.jobs() == before


def test_an_idempotency_key_reused_with_another_pinned_version_is_refused(jobs_api: Api) -> None:
    body = {"instances": ROWS[:2].tolist()}
    headers = {"Idempotency-Key": "k-pin", contract.MODEL_VERSION_HEADER: CANARY}
    assert jobs_api.call("POST", "/jobs", body, headers=headers)[0] == 202
    status, error, _ = jobs_api.call(
        "POST", "/jobs", body, headers={**headers, contract.MODEL_VERSION_HEADER: VERSION}
    )
    assert (status, error["error"]["code"]) == (422, "idempotency_key_reused")


def test_health_lists_both_versions_and_the_split(jobs_api: Api, canary_model: TrainResult) -> None:
    _, health, _ = jobs_api.call("GET", "/health")
    assert health["model"]["version"] == VERSION
    assert health["canary"] == {"name": "example", "version": CANARY, "sha256": canary_model.sha256}
    assert health["rollout"] == {
        "versions": [VERSION, CANARY],
        "mode": "split",
        "canary_percent": CANARY_PERCENT,
        "capture_sample_percent": 0,
    }


def test_a_task_without_the_named_version_fails_the_job_with_the_reason(jobs_api: Api) -> None:
    _, accepted, _ = jobs_api.call(
        "POST",
        "/jobs",
        {"instances": ROWS[:2].tolist()},
        headers={contract.MODEL_VERSION_HEADER: CANARY},
    )
    job_id = accepted["job_id"]
    # a task definition from before the canary was deployed: the stable model only
    env = {k: v for k, v in jobs_api.container_env.items() if not k.startswith("CANARY_")}
    assert scoring_main([], env={**env, contract.ENV_JOB_ID: job_id}) == 1
    _, job, _ = jobs_api.call("GET", f"/jobs/{job_id}")
    assert job["status"] == "FAILED" and "predictions" not in job
    assert job["error"]["code"] == "model_version_unavailable"
    assert f"model version {CANARY!r}" in job["error"]["message"]
    assert f"{VERSION} (stable)" in job["error"]["message"]


def test_job_metrics_carry_the_version_of_the_job(
    jobs_api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    _, accepted, _ = jobs_api.call(
        "POST",
        "/jobs",
        {"instances": ROWS[:2].tolist()},
        headers={contract.MODEL_VERSION_HEADER: CANARY},
    )
    assert jobs_api.score(accepted["job_id"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    counted = {
        name: r[contract.METRIC_DIMENSION_MODEL_VERSION]
        for r in records
        for name in (contract.METRIC_JOBS_SUBMITTED, contract.METRIC_JOBS_SUCCEEDED)
        if name in r
    }
    assert counted == {
        contract.METRIC_JOBS_SUBMITTED: CANARY,
        contract.METRIC_JOBS_SUCCEEDED: CANARY,
    }


# --- stepfunctions-batch: the S3 trigger and the Batch job ---------------------------------------


@dataclass
class Batch:
    trigger: Trigger
    container: dict[str, str]

    def score(self, job: Job) -> int:
        return scoring_main(
            ["--mode", "batch"], env={**self.container, contract.ENV_JOB_ID: job.job_id}
        )

    def predictions(self, job: Job) -> np.ndarray:
        bucket, prefix = parse_s3_uri(job.output_uri or "")
        key = prefix + contract.part_name(0, "csv")
        body = self.trigger.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        table: pa.Table = pacsv.read_csv(pa.BufferReader(body))
        return np.asarray(table.column("prediction").to_numpy())

    def manifest(self, job: Job) -> dict[str, Any]:
        bucket, prefix = parse_s3_uri(job.output_uri or "")
        key = prefix + contract.MANIFEST_NAME
        return dict(json.loads(self.trigger.s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


@pytest.fixture
def batch(s3: Any, example_model: TrainResult, canary_model: TrainResult, tmp_path: Path) -> Batch:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_job_table(dynamodb)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = create_state_machine(sfn, PASS_MACHINE, name="mlserve-batch")
    model_env = deploy_model(s3, example_model)
    canary = with_canary(s3, canary_model)
    trigger.configure(
        env={
            contract.ENV_JOB_TABLE: TABLE,
            contract.ENV_DATA_BUCKET: BUCKET,
            contract.ENV_STATE_MACHINE_ARN: machine,
            contract.ENV_MODEL_URI: model_env[contract.ENV_MODEL_URI],
            **canary,
        },
        clients={"dynamodb": dynamodb, "s3": s3, "stepfunctions": sfn},
    )
    header = ",".join(load_example_data().feature_names)
    csv = header + "\n" + "\n".join(",".join(map(str, row)) for row in ROWS[:20].tolist())
    s3.put_object(Bucket=BUCKET, Key="inputs/rows.csv", Body=csv.encode())
    container = {**scoring_env(model_env, tmp_path / "cache"), **container_canary(canary)}
    return Batch(Trigger(s3, dynamodb, sfn, machine), container)


def config(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "input_uri": f"s3://{BUCKET}/inputs/rows.csv",
        "output_uri": f"s3://{BUCKET}/results/{name}/",
        "format": "csv",
        **extra,
    }


def test_batch_jobs_are_split_and_scored_by_the_version_they_record(
    batch: Batch, example_model: TrainResult, canary_model: TrainResult
) -> None:
    models = boosters(example_model, canary_model)
    env = batch.trigger
    created: dict[str, Job] = {}
    versions: Counter[str] = Counter()
    for i in range(60):
        (result,) = env.fire(env.upload(f"job-{i}.json", config(f"job-{i}")))
        assert result["outcome"] == trigger.STARTED
        job = env.store.require(result["job_id"])
        versions[job.model_version] += 1
        created.setdefault(job.model_version, job)
    assert set(versions) == {VERSION, CANARY}, versions  # 40 % of 60: both, surely
    for version, job in created.items():
        assert batch.score(job) == 0
        np.testing.assert_allclose(
            batch.predictions(job), reference(models[version], ROWS[:20]), rtol=1e-6
        )
        assert batch.manifest(job)["model_version"] == version
        assert env.store.require(job.job_id).model_version == version
    # a duplicate event of the same upload keeps its job, and so its version
    before = job_count(env.dynamodb)
    (again,) = env.fire(env.upload("job-0.json", config("job-0")))
    assert again["outcome"] == trigger.DUPLICATE and job_count(env.dynamodb) == before


def test_a_batch_config_pins_its_version_and_an_unknown_one_is_rejected(
    batch: Batch, canary_model: TrainResult
) -> None:
    env = batch.trigger
    for i in range(8):
        (result,) = env.fire(env.upload(f"pinned-{i}.json", config("p", model_version=CANARY)))
        assert env.store.require(result["job_id"]).model_version == CANARY

    (result,) = env.fire(env.upload("unknown.json", config("u", model_version="v9")))
    assert result["outcome"] == trigger.REJECTED
    job = env.store.require(result["job_id"])
    assert job.status == contract.STATUS_FAILED and job.error is not None
    assert job.error.code == "invalid_job_config"
    assert job.error.message == (
        f"model_version: 'v9' is not a version this endpoint serves; allowed: {VERSION}, {CANARY}"
    )
    listed = env.s3.list_objects_v2(Bucket=BUCKET, Prefix=contract.JOBS_REJECTED_PREFIX)
    assert [o["Key"] for o in listed["Contents"]] == ["jobs/rejected/unknown.json"]
    assert all(e["name"] != result["job_id"] for e in env.executions())  # nothing started


def test_a_batch_job_naming_a_version_it_does_not_hold_fails_at_once(batch: Batch) -> None:
    env = batch.trigger
    (result,) = env.fire(env.upload("pinned.json", config("x", model_version=CANARY)))
    job = env.store.require(result["job_id"])
    stable_only = {k: v for k, v in batch.container.items() if not k.startswith("CANARY_")}
    code = scoring_main(["--mode", "batch"], env={**stable_only, contract.ENV_JOB_ID: job.job_id})
    assert code == 1
    failed = env.store.require(job.job_id)
    assert failed.status == contract.STATUS_FAILED and failed.error is not None
    assert failed.error.code == "model_version_unavailable"
    assert f"model version {CANARY!r}" in failed.error.message
    listed = env.s3.list_objects_v2(Bucket=BUCKET, Prefix="results/x/")
    assert listed.get("KeyCount", 0) == 0  # no part was written by another model


def test_the_predictions_document_names_the_version_that_scored(
    jobs_api: Api, canary_model: TrainResult
) -> None:
    header = ",".join(load_example_data().feature_names)
    rows = ROWS[:7]
    csv = header + "\n" + "\n".join(",".join(map(str, row)) for row in rows.tolist())
    jobs_api.s3.put_object(Bucket=BUCKET, Key="inputs/doc.csv", Body=csv.encode())
    _, accepted, _ = jobs_api.call(
        "POST",
        "/jobs",
        {"input_uri": f"s3://{BUCKET}/inputs/doc.csv", "output_uri": f"s3://{BUCKET}/results/doc/"},
        headers={contract.MODEL_VERSION_HEADER: CANARY},
    )
    assert jobs_api.score(accepted["job_id"]) == 0
    _, job, _ = jobs_api.call("GET", f"/jobs/{accepted['job_id']}")
    bucket, key = parse_s3_uri(job["output_uri"])
    document = json.loads(jobs_api.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert (document["job_id"], document["model_version"]) == (accepted["job_id"], CANARY)
    np.testing.assert_allclose(document["predictions"], reference(canary_model, rows), rtol=1e-6)
