"""The job API Lambda (lambda-ecs) with REST proxy events against moto: DynamoDB, S3 and ECS,
the scoring task simulated by running the real entrypoint in-process when RunTask is called."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from mlserve.train import TrainResult, load_example_data
from runtime import contract
from runtime.compute import EcsTarget
from runtime.handlers import jobs as api
from runtime.jobs import JobError, JobStore
from runtime.launchers import LambdaEcsLauncher
from runtime.scoring import main as scoring_main
from tests.runtime.events import FakeLambdaContext, rest_event
from tests.runtime.jobenv import (
    BUCKET,
    REGION,
    TABLE,
    SimulatedEcs,
    StubEcs,
    create_ecs,
    create_job_table,
    deploy_model,
    job_count,
    reference,
    scoring_env,
    tasks_stay_running,
)

ROWS = load_example_data().x


@dataclass
class Api:
    env: dict[str, str]
    container_env: dict[str, str]
    s3: Any
    dynamodb: Any
    model: TrainResult
    ecs: SimulatedEcs = field(init=False)

    def __post_init__(self) -> None:
        self.deploy(container=None)

    def deploy(
        self, container: Callable[[str], int | None] | None = None, stops: bool = True, **env: str
    ) -> SimulatedEcs:
        """(Re)configure the function; ``container`` plays the scoring task (None: it runs on)."""
        self.ecs = SimulatedEcs(container, stops=stops)
        self.env.update(env)
        api.configure(
            env=self.env, clients={"dynamodb": self.dynamodb, "s3": self.s3, "ecs": self.ecs}
        )
        return self.ecs

    def score(self, job_id: str) -> int:
        """The real entrypoint, as the task would run it."""
        return scoring_main([], env={**self.container_env, contract.ENV_JOB_ID: job_id})

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        ctype: str | None = "application/json",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        text = body if isinstance(body, str) or body is None else json.dumps(body)
        event = rest_event(method, path, text, ctype)
        event["headers"] = {
            **event["headers"],
            "Host": "abc123.execute-api.us-east-1.amazonaws.com",
            "X-Forwarded-Proto": "https",
            **(headers or {}),
        }
        event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
        event["requestContext"]["identity"]["apiKeyId"] = "key-1"
        if path.startswith("/jobs/"):
            event["resource"] = "/jobs/{id}"
            event["pathParameters"] = {"id": path.removeprefix("/jobs/")}
        response = api.handler(event, FakeLambdaContext())
        headers_out = dict(response.get("headers") or {})
        for name, values in (response.get("multiValueHeaders") or {}).items():
            headers_out[name] = values[-1]
        return response["statusCode"], json.loads(response["body"]), headers_out

    @property
    def store(self) -> JobStore:
        return JobStore(self.dynamodb, TABLE)

    def jobs(self) -> int:
        return job_count(self.dynamodb)


@pytest.fixture
def deployed(s3: Any, example_model: TrainResult, tmp_path: Path) -> Iterator[Api]:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_job_table(dynamodb)
    model_env = deploy_model(s3, example_model)
    env = {
        contract.ENV_ARCHITECTURE: contract.ARCH_LAMBDA_ECS,
        contract.ENV_JOB_TABLE: TABLE,
        contract.ENV_DATA_BUCKET: BUCKET,
        **model_env,
        contract.ENV_MAX_ROWS: "50",
        contract.ENV_ALLOW_MISSING: "false",
        contract.ENV_SYNC_WAIT_SECONDS: "5",
        contract.ENV_JOB_TTL_DAYS: "30",
        **create_ecs(),
    }
    with tasks_stay_running():
        yield Api(env, scoring_env(model_env, tmp_path / "cache"), s3, dynamodb, example_model)
    api.configure(env={})


def instances(n: int, start: int = 0) -> dict[str, Any]:
    return {"instances": ROWS[start : start + n].tolist()}


def job_url(job_id: str) -> str:
    return f"https://abc123.execute-api.us-east-1.amazonaws.com/v1/jobs/{job_id}"


# --- health -------------------------------------------------------------------------------------


def test_health_comes_from_the_metadata(deployed: Api, example_model: TrainResult) -> None:
    status, body, _ = deployed.call("GET", "/health")
    assert status == 200
    assert body["status"] == "ok"
    assert body["model"]["version"] == "abc123"
    assert body["model"]["sha256"] == example_model.sha256
    assert body["model"]["num_features"] == 30
    assert body["model"]["objective"] == "binary:logistic"


def test_clients_are_created_lazily_when_not_injected(deployed: Api) -> None:
    api.configure(env=deployed.env)  # as in Lambda: boto3 clients on first use
    status, body, _ = deployed.call("GET", "/health")
    assert (status, body["model"]["version"]) == (200, "abc123")
    status, body, _ = deployed.call("POST", "/jobs", instances(1))
    assert status == 202, body
    assert deployed.store.require(body["job_id"]).task_arn is not None


# --- POST /jobs, GET, the lifecycle -------------------------------------------------------------


def test_submit_then_status_then_result(deployed: Api) -> None:
    status, body, headers = deployed.call("POST", "/jobs", instances(5))
    assert status == 202, body
    job_id = body["job_id"]
    assert body == {"job_id": job_id, "status": "PENDING", "status_url": job_url(job_id)}
    assert headers["Location"] == job_url(job_id)
    assert len(deployed.ecs.run_calls) == 1
    override = deployed.ecs.run_calls[0]["overrides"]["containerOverrides"][0]
    assert override["environment"] == [{"name": "JOB_ID", "value": job_id}]

    status, body, _ = deployed.call("GET", f"/jobs/{job_id}")
    assert status == 200
    assert (body["status"], body["attempts"], body["rows"]) == ("PENDING", 1, 5)
    assert body["architecture"] == "lambda-ecs"
    assert body["model_version"] == "abc123"

    assert deployed.score(job_id) == 0
    task_arn = deployed.store.require(job_id).task_arn
    assert task_arn is not None
    deployed.ecs.finish(task_arn, 0)
    status, body, _ = deployed.call("GET", f"/jobs/{job_id}")
    assert (status, body["status"]) == (200, "SUCCEEDED")
    np.testing.assert_allclose(body["predictions"], reference(deployed.model, ROWS[:5]), atol=1e-6)
    assert "error" not in body


def test_get_reconciles_a_running_record_whose_task_stopped(deployed: Api) -> None:
    _, body, _ = deployed.call("POST", "/jobs", instances(2))
    job_id = body["job_id"]
    deployed.store.transition(job_id, "RUNNING")  # the container started, then was killed
    task_arn = deployed.store.require(job_id).task_arn
    assert task_arn is not None
    deployed.ecs.finish(task_arn, 137)
    status, body, _ = deployed.call("GET", f"/jobs/{job_id}")
    assert status == 200
    assert body["status"] == "FAILED"
    assert body["error"]["code"] == "task_failed"
    assert "exited with code 137" in body["error"]["message"]
    assert "Essential container in task exited" in body["error"]["message"]
    assert deployed.store.require(job_id).status == "FAILED", "written back, not only shown"


def test_a_task_that_stops_without_an_exit_code_fails_with_the_stopped_reason(
    deployed: Api,
) -> None:
    _, body, _ = deployed.call("POST", "/jobs", instances(2))
    task_arn = deployed.store.require(body["job_id"]).task_arn
    assert task_arn is not None
    deployed.ecs.finish(task_arn, None)
    _, job, _ = deployed.call("GET", f"/jobs/{body['job_id']}")
    assert job["status"] == "FAILED"
    assert job["error"]["code"] == "task_stopped"
    assert "CannotPullContainerError" in job["error"]["message"]


def test_unknown_job_is_404(deployed: Api) -> None:
    for method in ("GET", "DELETE"):
        status, body, _ = deployed.call(method, f"/jobs/{'0' * 32}")
        assert (status, body["error"]["code"]) == (404, "not_found")
        assert "0" * 32 in body["error"]["message"]
    status, body, _ = deployed.call("GET", "/jobs/not%20an%20id")
    assert (status, body["error"]["code"]) == (404, "not_found")


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "ctype", "status", "code"),
    [
        ("/jobs", '{"instances": [[1, 2]]}', "application/json", 400, "wrong_feature_count"),
        ("/jobs", '{"instances": ', "application/json", 400, "malformed_json"),
        ("/predict", json.dumps(instances(51)), "application/json", 400, "too_many_rows"),
        ("/jobs", "1,2", "text/plain", 415, "unsupported_media_type"),
        (
            "/jobs",
            json.dumps({"input_uri": f"s3://{BUCKET}/inputs/x.avro", "format": "avro"}),
            "application/json",
            400,
            "unsupported_format",
        ),
        (
            "/jobs",
            json.dumps({"input_uri": f"s3://{BUCKET}/models/example/abc123/model.ubj"}),
            "application/json",
            400,
            "invalid_uri",
        ),
    ],
)
def test_bad_input_is_4xx_with_no_record_and_no_task(
    deployed: Api, path: str, body: str, ctype: str, status: int, code: str
) -> None:
    got, answer, _ = deployed.call("POST", path, body, ctype=ctype)
    assert (got, answer["error"]["code"]) == (status, code)
    assert deployed.jobs() == 0
    assert deployed.ecs.run_calls == []


def test_an_unknown_format_is_refused_naming_what_is_accepted(deployed: Api) -> None:
    doc = {"input_uri": f"s3://{BUCKET}/inputs/x.avro", "format": "avro"}
    _, body, _ = deployed.call("POST", "/jobs", doc)
    assert "csv, json, jsonl, parquet" in body["error"]["message"]


# --- idempotency --------------------------------------------------------------------------------


def test_the_same_idempotency_key_twice_is_one_job_and_one_task(deployed: Api) -> None:
    key = {"Idempotency-Key": "order-42"}
    first = deployed.call("POST", "/jobs", instances(3), headers=key)
    csv = "\n".join(",".join(map(repr, r)) for r in ROWS[:3].tolist())
    again = deployed.call(
        "POST", "/jobs", csv, ctype="text/csv", headers={"idempotency-key": "order-42"}
    )
    assert first[0] == again[0] == 202
    assert first[1]["job_id"] == again[1]["job_id"]
    assert deployed.jobs() == 1
    assert len(deployed.ecs.run_calls) == 1

    status, body, _ = deployed.call("POST", "/jobs", instances(3, start=10), headers=key)
    assert (status, body["error"]["code"]) == (422, "idempotency_key_reused")
    assert first[1]["job_id"] in body["error"]["message"]
    assert deployed.jobs() == 1
    assert len(deployed.ecs.run_calls) == 1

    other_key = deployed.call("POST", "/jobs", instances(3), headers={"Idempotency-Key": "o-43"})
    assert other_key[1]["job_id"] != first[1]["job_id"]
    assert deployed.jobs() == 2


def test_a_retried_predict_answers_with_the_finished_job(deployed: Api) -> None:
    deployed.deploy(container=deployed.score)
    key = {"Idempotency-Key": "sync-1"}
    first = deployed.call("POST", "/predict", instances(2), headers=key)
    second = deployed.call("POST", "/predict", instances(2), headers=key)
    assert first[0] == second[0] == 200
    assert first[1] == second[1]
    assert len(deployed.ecs.run_calls) == 1


# --- cancel -------------------------------------------------------------------------------------


def test_cancel_stops_the_task_and_a_late_success_is_rejected(deployed: Api) -> None:
    _, body, _ = deployed.call("POST", "/jobs", instances(2))
    job_id = body["job_id"]
    task_arn = deployed.store.require(job_id).task_arn
    status, job, _ = deployed.call("DELETE", f"/jobs/{job_id}")
    assert status == 200
    assert job["status"] == "CANCELLED"
    assert job["error"]["code"] == "cancelled"
    assert [c["task"] for c in deployed.ecs.stop_calls] == [task_arn]

    assert deployed.score(job_id) == 1, "the container finds the job cancelled"
    status, job, _ = deployed.call("GET", f"/jobs/{job_id}")
    assert (status, job["status"]) == (200, "CANCELLED")
    assert "predictions" not in job

    status, body, _ = deployed.call("DELETE", f"/jobs/{job_id}")
    assert (status, body["error"]["code"]) == (409, "job_finished")
    assert len(deployed.ecs.stop_calls) == 1


def test_cancelled_while_scoring_the_container_exits_1_and_the_job_stays_cancelled(
    deployed: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, body, _ = deployed.call("POST", "/jobs", instances(2))
    job_id = body["job_id"]
    original = __import__("runtime.model", fromlist=["LoadedModel"]).LoadedModel.predict

    def cancelled_meanwhile(self: Any, rows: np.ndarray) -> np.ndarray:
        assert deployed.call("DELETE", f"/jobs/{job_id}")[0] == 200
        return original(self, rows)

    monkeypatch.setattr("runtime.model.LoadedModel.predict", cancelled_meanwhile)
    assert deployed.score(job_id) == 1
    record = deployed.store.require(job_id)
    assert record.status == "CANCELLED"
    assert record.predictions is None


# --- POST /predict: wait, 200 / 202 / 502 -------------------------------------------------------


def test_predict_answers_200_when_the_task_finishes_within_the_wait(deployed: Api) -> None:
    deployed.deploy(container=deployed.score)
    status, body, _ = deployed.call("POST", "/predict", instances(7))
    assert status == 200, body
    assert body["model_version"] == "abc123"
    np.testing.assert_allclose(body["predictions"], reference(deployed.model, ROWS[:7]), atol=1e-6)


def test_predict_answers_200_as_soon_as_the_record_says_succeeded(deployed: Api) -> None:
    # Fargate reports STOPPED a while after the container exited: the record is enough.
    deployed.deploy(container=deployed.score, stops=False)
    status, body, _ = deployed.call("POST", "/predict", instances(3))
    assert status == 200, body
    assert len(body["predictions"]) == 3


def test_predict_answers_202_when_the_task_runs_on(deployed: Api) -> None:
    deployed.deploy(container=None, **{contract.ENV_SYNC_WAIT_SECONDS: "0.3"})
    status, body, headers = deployed.call("POST", "/predict", instances(2))
    assert status == 202, body
    assert body["status"] == "PENDING"
    assert headers["Location"] == body["status_url"] == job_url(body["job_id"])


def test_predict_answers_502_when_the_task_fails(deployed: Api) -> None:
    deployed.deploy(container=lambda job_id: 1)  # crashes before recording anything
    status, body, _ = deployed.call("POST", "/predict", instances(2))
    assert status == 502, body
    assert body["error"]["code"] == "job_failed"
    message = body["error"]["message"]
    assert message.startswith("job ")
    assert "exited with code 1" in message
    job_id = message.split()[1]
    assert deployed.store.require(job_id).status == "FAILED"


def test_predict_502_carries_the_recorded_scoring_error(
    deployed: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(self: Any, rows: np.ndarray) -> np.ndarray:
        raise RuntimeError("kaput")

    monkeypatch.setattr("runtime.model.LoadedModel.predict", boom)
    deployed.deploy(container=deployed.score)
    status, body, _ = deployed.call("POST", "/predict", instances(2))
    assert status == 502
    assert "internal error in the scoring task (RuntimeError)" in body["error"]["message"]


def test_predictions_in_s3_are_answered_and_shown_as_output_uri(
    deployed: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 50 rows (~9 KB) and their 50 predictions (~0.5 KB) do not fit an item of 800 bytes
    monkeypatch.setattr(contract, "MAX_INLINE_ITEM_BYTES", 800)
    deployed.deploy(container=deployed.score)
    status, body, _ = deployed.call("POST", "/predict", instances(50))
    assert status == 200, body
    np.testing.assert_allclose(body["predictions"], reference(deployed.model, ROWS[:50]), atol=1e-6)
    _, accepted, _ = deployed.call("POST", "/jobs", instances(50))
    job_id = accepted["job_id"]
    record = deployed.store.require(job_id)
    assert record.instances is None, "the rows went to S3 too"
    assert record.input_uri == f"s3://{BUCKET}/inputs/{job_id}.json"
    _, job, _ = deployed.call("GET", f"/jobs/{job_id}")
    assert job["status"] == "SUCCEEDED"
    assert job["output_uri"] == f"s3://{BUCKET}/results/{job_id}/predictions.json"
    assert "predictions" not in job


# --- launcher races -----------------------------------------------------------------------------


def test_a_job_cancelled_before_its_task_started_gets_the_task_stopped(deployed: Api) -> None:
    store = deployed.store
    job = store.create(store.new_job("a" * 32, architecture="lambda-ecs", model_version="v"))
    store.transition(job.job_id, "CANCELLED", error=JobError("cancelled", "by the caller"))
    launcher = LambdaEcsLauncher(store, deployed.ecs, EcsTarget.from_context(api.runtime_context()))
    started = launcher.start(job)
    assert started.status == "CANCELLED"
    assert started.task_arn is not None
    assert [c["task"] for c in deployed.ecs.stop_calls] == [started.task_arn]


def test_a_pending_job_whose_starter_died_fails_on_read(deployed: Api) -> None:
    old = JobStore(deployed.dynamodb, TABLE, clock=lambda: time.time() - 16 * 60)
    stale = old.create(old.new_job("b" * 32, architecture="lambda-ecs", model_version="v"))
    fresh = deployed.store.create(
        deployed.store.new_job("c" * 32, architecture="lambda-ecs", model_version="v")
    )
    _, body, _ = deployed.call("GET", f"/jobs/{stale.job_id}")
    assert (body["status"], body["error"]["code"]) == ("FAILED", "task_not_started")
    _, body, _ = deployed.call("GET", f"/jobs/{fresh.job_id}")
    assert body["status"] == "PENDING", "its starter may still be about to run the task"


# --- our faults ---------------------------------------------------------------------------------


def test_run_task_refused_is_503_naming_the_job_and_recorded_failed(deployed: Api) -> None:
    refused = StubEcs({"tasks": [], "failures": [{"arn": "arn:x", "reason": "RESOURCE:CPU"}]})
    api.configure(
        env=deployed.env, clients={"dynamodb": deployed.dynamodb, "s3": deployed.s3, "ecs": refused}
    )
    status, body, _ = deployed.call("POST", "/jobs", instances(2))
    assert (status, body["error"]["code"]) == (503, "task_not_started")
    assert "RESOURCE:CPU" in body["error"]["message"]
    job_id = body["error"]["message"].split()[1]
    record = deployed.store.require(job_id)
    assert record.status == "FAILED"
    assert record.error is not None
    assert record.error.code == "task_not_started"


def test_an_internal_error_is_500_with_a_log_line_carrying_the_job_id(
    deployed: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = io.StringIO()
    previous = api.logger.registered_handler.setStream(log)

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr("runtime.launchers.LambdaEcsLauncher.reconcile", broken)
    _, body, _ = deployed.call("POST", "/jobs", instances(2))
    job_id = body["job_id"]
    try:
        status, answer, _ = deployed.call("GET", f"/jobs/{job_id}")
    finally:
        api.logger.registered_handler.setStream(previous)
    assert (status, answer["error"]["code"]) == (500, "internal")
    assert "secret" not in json.dumps(answer)
    line = json.loads(log.getvalue().strip().splitlines()[-1])
    assert line["level"] == "ERROR"
    assert line["job_id"] == job_id
    assert "secret internals" in line["exception"]


def test_a_misconfigured_function_is_503(deployed: Api) -> None:
    env = {k: v for k, v in deployed.env.items() if k != contract.ENV_ARCHITECTURE}
    api.configure(env=env, clients={"dynamodb": deployed.dynamodb, "s3": deployed.s3})
    status, body, _ = deployed.call("POST", "/jobs", instances(1))
    assert (status, body["error"]["code"]) == (503, "misconfigured")
    assert "ARCHITECTURE" in body["error"]["message"]
    assert deployed.jobs() == 0


# --- upload jobs, callers, the job list (issue 16) ----------------------------------------------


def test_an_upload_never_started_fails_upload_expired_when_its_url_expires(
    deployed: Api,
) -> None:
    status, accepted, _ = deployed.call("POST", "/jobs", {"upload": {"format": "csv"}})
    assert status == 202
    job_id = accepted["job_id"]
    assert accepted["upload"]["url"].startswith("https://")
    assert f"inputs/{job_id}/input.csv" in accepted["upload"]["url"]
    deployed.store.update(job_id, {"upload_expires_at": int(time.time()) - 1})

    status, job, _ = deployed.call("GET", f"/jobs/{job_id}")
    assert (status, job["status"], job["error"]["code"]) == (200, "FAILED", "upload_expired")
    status, body, _ = deployed.call("POST", f"/jobs/{job_id}/start")
    assert (status, body["error"]["code"]) == (409, "upload_expired")
    assert deployed.ecs.run_calls == []


def test_start_refuses_a_job_that_was_not_an_upload(deployed: Api) -> None:
    _, accepted, _ = deployed.call("POST", "/jobs", instances(2))
    status, body, _ = deployed.call("POST", f"/jobs/{accepted['job_id']}/start")
    assert (status, body["error"]["code"]) == (409, "not_an_upload_job")


def test_the_job_records_its_caller_and_other_callers_get_404(deployed: Api) -> None:
    _, accepted, _ = deployed.call("POST", "/jobs", instances(2))
    assert deployed.store.require(accepted["job_id"]).caller == "key-1"
    # the same job id asked for by another API key's client
    event = rest_event("GET", f"/jobs/{accepted['job_id']}", None, None)
    event["requestContext"]["identity"]["apiKeyId"] = "key-2"
    response = api.handler(event, FakeLambdaContext())
    assert response["statusCode"] == 404
    assert json.loads(response["body"])["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"limit": "101"}, "invalid_limit"),
        ({"limit": "-1"}, "invalid_limit"),
        ({"next_token": "bm90IGpzb24"}, "invalid_next_token"),
        ({"next_token": "!!"}, "invalid_next_token"),
        ({"limt": "5"}, "invalid_parameters"),
    ],
)
def test_a_bad_list_query_is_a_400(deployed: Api, query: dict[str, str], code: str) -> None:
    event = rest_event("GET", "/jobs", None, None)
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    event["requestContext"]["identity"]["apiKeyId"] = "key-1"
    response = api.handler(event, FakeLambdaContext())
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"]["code"] == code
