"""Architecture ``lambda-ecs`` through the local emulator, over HTTP: the job API, and one ECS
task per job, which locally is a process of the real ``python -m runtime.scoring``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import xgboost as xgb

from mlserve.local import Emulator, RuntimeSettings
from mlserve.local.fargate import DEFAULT_STOP_TIMEOUT, LocalTask
from mlserve.train import TrainResult
from runtime import contract

from .conftest import Emulators
from .helpers import Api, Example, assert_error, reference

TOLERANCE = 1e-6
JOB_TIMEOUT = 30.0  # seconds a test waits for a job; a task here takes about 1.5 s
ACTIVE = (contract.STATUS_PENDING, contract.STATUS_RUNNING)


@pytest.fixture
def ecs(emulators: Emulators) -> Iterator[Emulator]:
    """The ``lambda-ecs`` emulator, with the default settings back after each test."""
    emulator = emulators.get(contract.ARCH_LAMBDA_ECS)
    yield emulator
    if emulator.running:
        emulator.task_start_delay = 0.0
        if emulator.settings != RuntimeSettings():
            defaults = RuntimeSettings()
            emulator.reconfigure(
                allow_missing=defaults.allow_missing,
                max_rows=defaults.max_rows,
                sync_wait_seconds=defaults.sync_wait_seconds,
                default_image=True,
            )


@pytest.fixture
def api(ecs: Emulator) -> Iterator[Api]:
    with Api(ecs.url, ecs.api_key) as client:
        yield client


@pytest.fixture(scope="module")
def big_csv(example: Example) -> bytes:
    """150,000 rows (about 30 MB): the scoring task needs a few seconds for them."""
    row = ",".join(repr(float(v)) for v in example.rows(1)[0])
    return (",".join(example.names) + "\n" + (row + "\n") * 150_000).encode()


# --- helpers ------------------------------------------------------------------------------------


def wait_for_job(api: Api, job_id: str, until: tuple[str, ...] = ()) -> dict[str, Any]:
    """GET /jobs/{id} every 50 ms until a terminal status (or one of ``until``)."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        response = api.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"] in contract.TERMINAL_STATUSES or job["status"] in until:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.05)


def tasks_of(emulator: Emulator, job_id: str) -> list[LocalTask]:
    return [task for task in emulator.tasks if task.job_id == job_id]


def task_of(emulator: Emulator, job_id: str) -> LocalTask:
    tasks = tasks_of(emulator, job_id)
    assert len(tasks) == 1, tasks
    return tasks[0]


def job_count(emulator: Emulator) -> int:
    table = emulator.client("dynamodb")
    return int(table.scan(TableName=emulator.table, Select="COUNT")["Count"])


def submit(api: Api, document: Any, **headers: str) -> dict[str, Any]:
    response = api.post("/jobs", json=document, headers=headers)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["Location"] == body["status_url"]
    return body


def put_input(emulator: Emulator, name: str, body: bytes) -> str:
    key = f"{contract.INPUTS_PREFIX}{name}"
    emulator.client("s3").put_object(Bucket=emulator.bucket, Key=key, Body=body)
    return f"s3://{emulator.bucket}/{key}"


# --- the stack ----------------------------------------------------------------------------------


def test_health_comes_from_the_model_metadata(
    api: Api, ecs: Emulator, trained: TrainResult, example: Example
) -> None:
    runs = ecs.fargate.run_task_calls

    response = api.get("/health")

    assert response.status_code == 200, response.text
    model = response.json()["model"]
    assert model["sha256"] == trained.sha256
    assert model["version"] == ecs.model.version
    assert model["feature_names"] == example.names
    assert ecs.fargate.run_task_calls == runs  # no task for a health check


def test_the_stack_is_provisioned_like_the_pulumi_program(ecs: Emulator) -> None:
    job_api = ecs.routes["submit_job"]
    assert {op: fn.name for op, fn in ecs.routes.items()} == dict.fromkeys(
        (
            "health",
            "predict",
            "submit_job",
            "list_jobs",
            "get_job",
            "cancel_job",
            "start_job",
        ),
        job_api.name,
    )
    env = job_api.env
    assert env[contract.ENV_ARCHITECTURE] == contract.ARCH_LAMBDA_ECS
    assert env[contract.ENV_MODEL_METADATA_URI] == ecs.model_uri.replace(
        "model.ubj", "metadata.json"
    )
    assert env[contract.ENV_SYNC_WAIT_SECONDS] == "25"
    assert env[contract.ENV_ECS_ASSIGN_PUBLIC_IP] == "ENABLED"

    ecs_client, ec2 = ecs.client("ecs"), ecs.client("ec2")
    cluster = ecs_client.describe_clusters(
        clusters=[env[contract.ENV_ECS_CLUSTER]], include=["SETTINGS"]
    )["clusters"][0]
    assert {"name": "containerInsights", "value": "enabled"} in cluster["settings"]
    definition = ecs_client.describe_task_definition(
        taskDefinition=env[contract.ENV_ECS_TASK_DEFINITION]
    )["taskDefinition"]
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    assert definition["networkMode"] == "awsvpc"
    (container,) = definition["containerDefinitions"]
    assert container["name"] == contract.SCORING_CONTAINER_NAME
    assert container["image"] == ecs.outputs["imageUri"]  # the program's, run locally
    assert container["memory"] == int(definition["memory"])
    assert {e["name"]: e["value"] for e in container["environment"]} == {
        contract.ENV_JOB_TABLE: ecs.table,
        contract.ENV_DATA_BUCKET: ecs.bucket,
        contract.ENV_MODEL_URI: ecs.model_uri,
        contract.ENV_MODEL_SHA256: ecs.model.sha256,
        contract.ENV_ALLOW_MISSING: "false",
        contract.ENV_UNKNOWN_CATEGORY: "error",
    }
    subnets = env[contract.ENV_ECS_SUBNETS].split(",")
    vpcs = {s["VpcId"] for s in ec2.describe_subnets(SubnetIds=subnets)["Subnets"]}
    (group,) = ec2.describe_security_groups(
        GroupIds=env[contract.ENV_ECS_SECURITY_GROUPS].split(",")
    )["SecurityGroups"]
    assert vpcs == {group["VpcId"]}
    assert group["IpPermissions"] == []  # no ingress


def test_the_embedded_ecs_reports_tasks_as_fargate_does(ecs: Emulator) -> None:
    env = ecs.routes["submit_job"].env
    client, cluster = ecs.client("ecs"), env[contract.ENV_ECS_CLUSTER]
    ecs.task_start_delay = 30.0
    started = client.run_task(
        cluster=cluster,
        taskDefinition=env[contract.ENV_ECS_TASK_DEFINITION],
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": env[contract.ENV_ECS_SUBNETS].split(",")}
        },
        overrides={"containerOverrides": [{"name": "scoring", "environment": []}]},
    )["tasks"][0]
    arn = started["taskArn"]
    # moto would step a task to STOPPED over repeated DescribeTasks; here it stays provisioning
    described = [client.describe_tasks(cluster=cluster, tasks=[arn]) for _ in range(6)]
    assert {d["tasks"][0]["lastStatus"] for d in described} <= {"PROVISIONING", "PENDING"}
    assert "exitCode" not in described[-1]["tasks"][0]["containers"][0]

    stopping = client.stop_task(cluster=cluster, task=arn, reason="no longer needed")["task"]
    ecs.fargate.wait(arn, timeout=10)
    stopped = client.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
    unknown = arn.rsplit("/", 1)[0] + "/" + uuid.uuid4().hex

    assert stopping["desiredStatus"] == "STOPPED"
    assert (stopped["lastStatus"], stopped["stopCode"]) == ("STOPPED", "UserInitiated")
    assert stopped["stoppedReason"] == "no longer needed"
    assert "exitCode" not in stopped["containers"][0]  # its container never ran
    assert ecs.fargate.task(arn).pid is None
    missing = client.describe_tasks(cluster=cluster, tasks=[unknown])
    assert missing["tasks"] == []
    assert missing["failures"] == [{"arn": unknown, "reason": "MISSING"}]
    with pytest.raises(client.exceptions.InvalidParameterException):
        client.stop_task(cluster=cluster, task=unknown)


# --- POST /predict ------------------------------------------------------------------------------


def test_predict_answers_synchronously_through_the_task(
    api: Api, ecs: Emulator, booster: xgb.Booster, example: Example
) -> None:
    rows = example.rows(20)
    runs = ecs.fargate.run_task_calls

    response = api.predict_json({"instances": rows.tolist()})

    assert response.status_code == 200, response.text
    body = response.json()
    np.testing.assert_allclose(
        body["predictions"], reference(booster, rows), rtol=0, atol=TOLERANCE
    )
    assert body["model_version"] == ecs.model.version
    assert ecs.fargate.run_task_calls == runs + 1
    # the container records SUCCEEDED, then exits: the answer may come before the task stopped
    task = ecs.fargate.wait(ecs.tasks[-1].arn, timeout=10)
    assert (task.exit_code, task.stop_code) == (0, "EssentialContainerExited")
    job = wait_for_job(api, str(task.job_id))
    assert job["status"] == contract.STATUS_SUCCEEDED
    assert job["predictions"] == body["predictions"]
    # the container's log: JSON lines, each with the job id
    logged = [json.loads(line) for line in task.log_text().splitlines() if line.startswith("{")]
    assert logged
    assert all(line.get("job_id") == task.job_id for line in logged)
    # ... also in its CloudWatch Logs stream, as the awslogs driver sends it
    definition = ecs.client("ecs").describe_task_definition(
        taskDefinition=ecs.routes["submit_job"].env[contract.ENV_ECS_TASK_DEFINITION]
    )["taskDefinition"]
    options = definition["containerDefinitions"][0]["logConfiguration"]["options"]
    events = ecs.client("logs").get_log_events(
        logGroupName=options["awslogs-group"], logStreamName=f"scoring/scoring/{task.task_id}"
    )["events"]
    assert [event["message"] for event in events] == task.log_text().splitlines()


def test_a_config_change_is_an_update_that_keeps_the_jobs(
    api: Api, ecs: Emulator, example: Example
) -> None:
    """``pulumi config set`` + ``pulumi up`` replaces what changed and keeps the stores: a job
    finished before the change is still there, with its result, in the same bucket and table,
    and the API key still works."""
    accepted = api.post("/jobs", json={"instances": example.rows(3).tolist()})
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    done = wait_for_job(api, job_id)
    assert done["status"] == contract.STATUS_SUCCEEDED, done
    bucket, table, key = ecs.bucket, ecs.table, ecs.api_key
    job_api = ecs.require_deployment().function_by_handler(contract.HANDLER_JOBS)

    ecs.reconfigure(max_rows=1_000)

    assert (ecs.bucket, ecs.table, ecs.api_key) == (bucket, table, key)
    updated = ecs.require_deployment()
    for typ in ("aws:s3/bucket:Bucket", "aws:dynamodb/table:Table"):
        assert updated.one(typ).name in updated.kept, typ
    # the job API's environment changed (MAX_ROWS): a new function, serving the new limit
    assert job_api["FunctionName"] not in updated.functions()
    new_api = updated.function_by_handler(contract.HANDLER_JOBS)
    assert new_api["Environment"]["Variables"][contract.ENV_MAX_ROWS] == "1000"
    again = api.get(f"/jobs/{job_id}")
    assert again.status_code == 200, again.text
    kept_fields = ("status", "created_at", "updated_at", "rows", "predictions")
    assert {k: again.json().get(k) for k in kept_fields} == {k: done.get(k) for k in kept_fields}


def test_a_slow_task_answers_202_and_the_job_succeeds_later(
    api: Api, ecs: Emulator, booster: xgb.Booster, example: Example
) -> None:
    ecs.reconfigure(sync_wait_seconds=1)
    ecs.task_start_delay = 2.5  # Fargate: PROVISIONING + PENDING before the container runs
    rows = example.rows(7)

    response = api.predict_json({"instances": rows.tolist()})

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] in ACTIVE
    assert response.headers["Location"] == accepted["status_url"]
    assert accepted["status_url"] == f"{ecs.url}/jobs/{accepted['job_id']}"
    assert task_of(ecs, accepted["job_id"]).pid is None  # still provisioning
    polled = api.session.get(accepted["status_url"], timeout=30).json()
    assert polled["status"] in ACTIVE
    job = wait_for_job(api, accepted["job_id"])
    assert job["status"] == contract.STATUS_SUCCEEDED, job
    np.testing.assert_allclose(job["predictions"], reference(booster, rows), rtol=0, atol=TOLERANCE)


def test_a_failing_model_fails_the_job_with_the_reason_from_the_container(
    api: Api, ecs: Emulator, trained: TrainResult, example: Example
) -> None:
    s3 = ecs.client("s3")
    key = ecs.stores.model_key
    s3.put_object(Bucket=ecs.bucket, Key=key, Body=b'{"not": "the model"}')
    try:
        response = api.predict_json({"instances": example.rows(2).tolist()})
    finally:
        s3.put_object(
            Bucket=ecs.bucket,
            Key=key,
            Body=trained.model_path.read_bytes(),
            Metadata={"sha256": trained.sha256},
        )

    message = assert_error(response, 502, "job_failed", "sha256")
    found = re.search(r"job ([0-9a-f]{32}) failed", message)
    assert found is not None, message
    job = wait_for_job(api, found.group(1))
    assert job["status"] == contract.STATUS_FAILED
    assert job["error"]["code"] == "model_unavailable"
    assert trained.sha256 in job["error"]["message"]
    task = ecs.fargate.wait(task_of(ecs, found.group(1)).arn, timeout=10)
    assert (task.exit_code, task.stop_code) == (1, "EssentialContainerExited")


# --- jobs ---------------------------------------------------------------------------------------


def test_cancel_a_running_job(api: Api, ecs: Emulator, big_csv: bytes) -> None:
    uri = put_input(ecs, "cancel-me.csv", big_csv)
    accepted = submit(api, {"input_uri": uri, "format": "csv"})
    job_id = accepted["job_id"]
    running = wait_for_job(api, job_id, until=(contract.STATUS_RUNNING,))
    assert running["status"] == contract.STATUS_RUNNING, running
    task = task_of(ecs, job_id)
    assert task.process is not None and task.process.poll() is None  # scoring right now

    cancelled_at = time.monotonic()
    response = api.delete(f"/jobs/{job_id}")

    assert response.status_code == 200, response.text
    assert response.json()["status"] == contract.STATUS_CANCELLED
    ecs.fargate.wait(task.arn, timeout=15)
    # StopTask: SIGTERM, which the container honoured (no SIGKILL after the stop timeout)
    assert time.monotonic() - cancelled_at < DEFAULT_STOP_TIMEOUT
    assert task.process.returncode != 0
    assert task.exit_code not in (None, 0), task.log_text()[-2000:]
    assert task.stop_code == "UserInitiated"
    assert "cancel" in str(task.stopped_reason)
    job = api.get(f"/jobs/{job_id}").json()  # the task has stopped: reconciled on read
    assert job["status"] == contract.STATUS_CANCELLED
    assert "predictions" not in job
    assert_error(api.delete(f"/jobs/{job_id}"), 409, "job_finished")


def test_an_unknown_job_is_404(api: Api) -> None:
    unknown = uuid.uuid4().hex
    assert_error(api.get(f"/jobs/{unknown}"), 404, "not_found", unknown)
    assert_error(api.delete(f"/jobs/{unknown}"), 404, "not_found", unknown)


def test_the_same_idempotency_key_twice_is_one_job_and_one_task(
    api: Api, ecs: Emulator, example: Example
) -> None:
    document = {"instances": example.rows(3).tolist()}
    key = f"retry-{uuid.uuid4()}"
    runs = ecs.fargate.run_task_calls

    first = submit(api, document, **{"Idempotency-Key": key})
    again = submit(api, document, **{"Idempotency-Key": key})
    finished = wait_for_job(api, first["job_id"])
    after = api.post("/jobs", json=document, headers={"Idempotency-Key": key})

    assert again["job_id"] == first["job_id"]
    assert finished["status"] == contract.STATUS_SUCCEEDED
    assert after.status_code == 202 and after.json()["job_id"] == first["job_id"]
    assert after.json()["status"] == contract.STATUS_SUCCEEDED
    assert ecs.fargate.run_task_calls == runs + 1
    assert len(tasks_of(ecs, first["job_id"])) == 1
    other = {"instances": example.rows(4).tolist()}
    reused = api.post("/jobs", json=other, headers={"Idempotency-Key": key})
    assert_error(reused, 422, "idempotency_key_reused", key)
    assert ecs.fargate.run_task_calls == runs + 1


def test_bad_input_is_a_4xx_and_creates_no_job_and_no_task(
    api: Api, ecs: Emulator, example: Example
) -> None:
    row = example.rows(1)[0].tolist()
    named = dict(zip(example.names, row, strict=True))
    jobs, runs = job_count(ecs), ecs.fargate.run_task_calls
    outside = f"s3://{ecs.bucket}/models/x.csv"
    inside = f"s3://{ecs.bucket}/{contract.INPUTS_PREFIX}x.avro"
    requests_ = [
        ("/predict", {"json": {"instances": [row[:29]]}}, 400, "wrong_feature_count"),
        ("/jobs", {"json": {"instances": [[*row, 1.0]]}}, 400, "wrong_feature_count"),
        ("/predict", {"json": {"instances": [{**named, "typo": 1.0}]}}, 400, "unknown_feature"),
        ("/jobs", {"json": {"instances": [[*row[:29], "x"]]}}, 400, "invalid_value"),
        ("/predict", {"json": {"rows": [row]}}, 400, "invalid_body"),
        ("/jobs", {"json": {"input_uri": outside, "format": "csv"}}, 400, None),
        ("/jobs", {"json": {"input_uri": inside, "format": "avro"}}, 400, None),
        ("/predict", {"data": b"\n", "headers": {"content-type": "text/csv"}}, 400, None),
    ]
    for path, kwargs, status, code in requests_:
        response = api.post(path, **kwargs)
        assert response.status_code == status, (path, kwargs, response.text)
        if code is not None:
            assert_error(response, status, code)

    assert job_count(ecs) == jobs
    assert ecs.fargate.run_task_calls == runs


def test_a_task_that_never_starts_fails_the_job_with_the_stopped_reason(
    api: Api, ecs: Emulator, example: Example
) -> None:
    ecs.reconfigure(image="mlserve/scoring:never-built")  # pulumi config set image ... + up

    accepted = submit(api, {"instances": example.rows(2).tolist()})
    job = wait_for_job(api, accepted["job_id"])

    assert job["status"] == contract.STATUS_FAILED
    assert job["error"]["code"] == "task_stopped"
    assert "CannotPullContainerError" in job["error"]["message"]
    task = ecs.fargate.wait(task_of(ecs, accepted["job_id"]).arn, timeout=10)
    assert (task.pid, task.exit_code, task.stop_code) == (None, None, "TaskFailedToStart")


def test_stopping_the_emulator_stops_and_reaps_running_tasks(
    api: Api, ecs: Emulator, emulators: Emulators, big_csv: bytes
) -> None:
    uri = put_input(ecs, "stopped-with-the-emulator.csv", big_csv)
    job_id = submit(api, {"input_uri": uri, "format": "csv"})["job_id"]
    wait_for_job(api, job_id, until=(contract.STATUS_RUNNING,))
    task = task_of(ecs, job_id)
    assert task.process is not None and task.process.poll() is None

    emulators.stop()

    assert task.process.returncode is not None  # reaped: no orphan, no zombie
    assert task.done.is_set()
    with pytest.raises(ProcessLookupError):
        os.kill(task.process.pid, 0)


# --- lambda + lambda-ecs behind one API ---------------------------------------------------------


def test_lambda_and_lambda_ecs_behind_one_api(
    emulators: Emulators, booster: xgb.Booster, example: Example
) -> None:
    both = emulators.get(f"{contract.ARCH_LAMBDA},{contract.ARCH_LAMBDA_ECS}")
    rows = example.rows(5)
    assert both.routes["predict"] is both.routes["health"]
    assert both.routes["predict"] is not both.routes["submit_job"]
    assert both.routes["get_job"] is both.routes["submit_job"] is both.routes["cancel_job"]

    with Api(both.url, both.api_key) as api:
        predicted = api.predict_json({"instances": rows.tolist()})
        assert predicted.status_code == 200, predicted.text
        assert both.fargate.run_task_calls == 0  # the lambda predictor answered
        job = wait_for_job(api, submit(api, {"instances": rows.tolist()})["job_id"])

    expected = reference(booster, rows)
    np.testing.assert_allclose(predicted.json()["predictions"], expected, rtol=0, atol=TOLERANCE)
    assert job["status"] == contract.STATUS_SUCCEEDED
    assert job["architecture"] == contract.ARCH_LAMBDA_ECS
    np.testing.assert_allclose(job["predictions"], expected, rtol=0, atol=TOLERANCE)
    assert both.fargate.run_task_calls == 1


# --- the CLI ------------------------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # The emulator fixture's AWS variables must not leak into a child that starts its own; the
    # demo keeps its task logs under TMPDIR.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    env.update({"COLUMNS": "160", "TMPDIR": str(cwd)})
    return subprocess.run(
        [sys.executable, "-m", "mlserve", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_shows_predictions_coming_back_through_the_task(
    trained: TrainResult, tmp_path: Path
) -> None:
    result = cli(
        "demo",
        "--architecture",
        contract.ARCH_LAMBDA_ECS,
        "--model-dir",
        str(trained.model_path.parent),
        "--rows",
        "5",
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    assert "identical predictions" in out
    assert "SUCCEEDED" in out
    accuracy = re.search(r"accuracy on the held-out split.*?: (\d+\.\d)%", out)
    assert accuracy is not None, out
    assert float(accuracy.group(1)) > 90
    logs = re.findall(r"exit code 0, log (\S+\.log)", out)
    assert len(logs) == 2, out  # POST /predict and POST /jobs: one task each
    assert all(Path(log).is_file() and Path(log).is_relative_to(tmp_path) for log in logs)


def test_local_prints_how_to_call_the_job_api(trained: TrainResult, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    env["TMPDIR"] = str(tmp_path)
    command = [sys.executable, "-m", "mlserve", "local", "--port", "0"]
    command += ["--architecture", contract.ARCH_LAMBDA_ECS]
    command += ["--model-dir", str(trained.model_path.parent)]
    child = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        banner = ""
        deadline = time.monotonic() + 60
        assert child.stdout is not None
        while "Ctrl-C to stop." not in banner and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            banner += line
        url = re.search(r"API URL\s+(\S+)", banner)
        key = re.search(r"API key\s+(\S+)", banner)
        assert url is not None and key is not None, banner
        assert f"{url.group(1)}/predict" in banner
        assert re.search(rf"curl .*-d .*{re.escape(url.group(1))}/jobs\b", banner), banner
        assert f"{url.group(1)}/jobs/JOB_ID" in banner
        health = requests.get(
            url.group(1) + "/health", headers={"x-api-key": key.group(1)}, timeout=30
        )
        assert health.status_code == 200
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    stderr = child.stderr.read() if child.stderr else ""
    assert "Traceback" not in stderr
