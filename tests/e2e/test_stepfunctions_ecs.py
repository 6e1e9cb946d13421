"""Architecture ``stepfunctions-ecs`` through the local emulator, over HTTP, in both polling
modes: the job API starts one execution per job; moto's Step Functions engine runs the very
definition of components/workflows.py, its Lambda tasks (RunECS, CheckJobStatus) run the real
handlers in-process and its ECS task is a process of the real ``python -m runtime.scoring``."""

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

from mlserve.local import Emulator, LocalTask, RuntimeSettings
from mlserve.local.stepfunctions import SYNC_STOPPED_REASON
from mlserve.train import TrainResult
from runtime import contract

from .conftest import Emulators
from .helpers import Api, Example, reference

TOLERANCE = 1e-6
JOB_TIMEOUT = 30.0  # seconds a test waits for a job; one here takes about 2-3 s
ACTIVE = (contract.STATUS_PENDING, contract.STATUS_RUNNING)


@pytest.fixture(scope="module", params=["lambda", "native"])
def polling(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sfn(emulators: Emulators, polling: str) -> Iterator[Emulator]:
    """The ``stepfunctions-ecs`` emulator of this polling mode, defaults back after each test."""
    emulator = emulators.get(contract.ARCH_STEPFUNCTIONS_ECS, polling=polling)
    yield emulator
    if emulator.running:
        emulator.task_start_delay = 0.0
        if emulator.settings != RuntimeSettings():
            emulator.reconfigure(default_image=True)


@pytest.fixture
def api(sfn: Emulator) -> Iterator[Api]:
    with Api(sfn.url, sfn.api_key) as client:
        yield client


# --- helpers ------------------------------------------------------------------------------------


def wait_until(what: str, check: Any, timeout: float = JOB_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"still not {what} after {timeout} s"
        time.sleep(0.05)


def follow_job(api: Api, job_id: str) -> tuple[dict[str, Any], list[str]]:
    """GET /jobs/{id} every 50 ms until terminal; the job then and every status seen."""
    seen: list[str] = []

    def poll() -> dict[str, Any] | None:
        response = api.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        return job if job["status"] in contract.TERMINAL_STATUSES else None

    return wait_until(f"terminal: job {job_id}", poll), seen


def execution(emulator: Emulator, job_id: str, *, finished: bool = True) -> dict[str, Any]:
    """DescribeExecution of the job's execution (by default once it has ended)."""
    client = emulator.client("stepfunctions")
    arn = emulator.execution_arn(job_id)

    def describe() -> dict[str, Any] | None:
        described: dict[str, Any] = client.describe_execution(executionArn=arn)
        return described if not finished or described["status"] != "RUNNING" else None

    result: dict[str, Any] = wait_until(f"ended: execution {job_id}", describe)
    return result


def executions_named(emulator: Emulator, job_id: str) -> list[dict[str, Any]]:
    listed = emulator.client("stepfunctions").list_executions(
        stateMachineArn=emulator.state_machine_arn
    )["executions"]
    return [e for e in listed if e["name"] == job_id]


def states_entered(emulator: Emulator, job_id: str) -> list[str]:
    events = emulator.client("stepfunctions").get_execution_history(
        executionArn=emulator.execution_arn(job_id), maxResults=1000
    )["events"]
    return [
        e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")
    ]


def tasks_of(emulator: Emulator, job_id: str) -> list[LocalTask]:
    return [task for task in emulator.tasks if task.job_id == job_id]


def submit(api: Api, document: Any, **headers: str) -> dict[str, Any]:
    response = api.post("/jobs", json=document, headers=headers)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["Location"] == body["status_url"]
    return body


# --- the stack ----------------------------------------------------------------------------------


def test_the_state_machine_runs_the_definition_of_components_workflows(
    sfn: Emulator, polling: str
) -> None:
    job_api = sfn.routes["submit_job"]
    env = job_api.env
    assert env[contract.ENV_ARCHITECTURE] == contract.ARCH_STEPFUNCTIONS_ECS
    assert env[contract.ENV_STATE_MACHINE_ARN] == sfn.state_machine_arn
    assert contract.ENV_SYNC_WAIT_SECONDS not in env
    described = sfn.client("stepfunctions").describe_state_machine(
        stateMachineArn=sfn.state_machine_arn
    )
    assert described["type"] == "STANDARD"
    states = json.loads(described["definition"])["States"]
    deployment = sfn.require_deployment()
    handlers = {c["Handler"]: c["FunctionArn"] for c in deployment.functions().values()}
    if polling == "lambda":
        run_ecs, check = states["RunECS"], states["CheckJobStatus"]
        assert run_ecs["Parameters"]["FunctionName"] == handlers[contract.HANDLER_RUN_ECS]
        assert check["Parameters"]["FunctionName"] == handlers[contract.HANDLER_CHECK_JOB_STATUS]
        assert states["WaitForTask"]["Seconds"] == 1  # the local pollIntervalSeconds
    else:
        assert states["RunTask"]["Resource"] == "arn:aws:states:::ecs:runTask.sync"
        assert (
            states["RunTask"]["Parameters"]["TaskDefinition"]
            == (env[contract.ENV_ECS_TASK_DEFINITION])
        )
        assert contract.HANDLER_RUN_ECS not in handlers  # no polling Lambdas
    assert sfn.polling == polling


def test_run_task_with_the_same_client_token_starts_one_task(sfn: Emulator) -> None:
    """RunECS passes clientToken=job_id, so that a retried invocation starts no second task."""
    env = sfn.routes["submit_job"].env
    client = sfn.client("ecs")
    sfn.task_start_delay = 30.0
    request = {
        "cluster": env[contract.ENV_ECS_CLUSTER],
        "taskDefinition": env[contract.ENV_ECS_TASK_DEFINITION],
        "launchType": "FARGATE",
        "networkConfiguration": {
            "awsvpcConfiguration": {"subnets": env[contract.ENV_ECS_SUBNETS].split(",")}
        },
        "clientToken": uuid.uuid4().hex,
    }
    runs = sfn.fargate.run_task_calls

    first = client.run_task(**request)["tasks"][0]["taskArn"]
    again = client.run_task(**request)["tasks"][0]["taskArn"]

    assert again == first
    assert sfn.fargate.run_task_calls == runs + 1
    client.stop_task(cluster=request["cluster"], task=first, reason="test over")
    sfn.fargate.wait(first, timeout=10)


# --- success ------------------------------------------------------------------------------------


def test_a_job_goes_through_the_state_machine(
    api: Api, sfn: Emulator, booster: xgb.Booster, example: Example, polling: str
) -> None:
    rows = example.rows(12)
    runs = sfn.fargate.run_task_calls

    accepted = submit(api, {"instances": rows.tolist()})
    job, seen = follow_job(api, accepted["job_id"])

    assert accepted["status"] in ACTIVE
    assert job["status"] == contract.STATUS_SUCCEEDED, job
    assert seen[-1] == contract.STATUS_SUCCEEDED
    assert set(seen[:-1]) <= set(ACTIVE)
    assert job["architecture"] == contract.ARCH_STEPFUNCTIONS_ECS
    np.testing.assert_allclose(job["predictions"], reference(booster, rows), rtol=0, atol=TOLERANCE)
    done = execution(sfn, job["job_id"])
    assert done["status"] == "SUCCEEDED", done
    assert json.loads(done["input"]) == {"job_id": job["job_id"]}
    entered = states_entered(sfn, job["job_id"])
    assert entered[0] == "RecordRunning"
    assert entered[-1] == "MarkSucceeded"
    assert ("CheckJobStatus" if polling == "lambda" else "RunTask") in entered
    (task,) = tasks_of(sfn, job["job_id"])
    sfn.fargate.wait(task.arn, timeout=10)
    assert (task.exit_code, task.stop_code) == (0, "EssentialContainerExited")
    assert sfn.fargate.run_task_calls == runs + 1


def test_predict_answers_202_and_the_job_succeeds(
    api: Api, sfn: Emulator, booster: xgb.Booster, example: Example
) -> None:
    rows = example.rows(3)

    response = api.predict_json({"instances": rows.tolist()})

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] in ACTIVE
    assert response.headers["Location"] == accepted["status_url"]
    job, _ = follow_job(api, accepted["job_id"])
    assert job["status"] == contract.STATUS_SUCCEEDED, job
    np.testing.assert_allclose(job["predictions"], reference(booster, rows), rtol=0, atol=TOLERANCE)


# --- failures -----------------------------------------------------------------------------------


def test_a_scoring_failure_fails_the_job_with_the_reason_from_the_container(
    api: Api, sfn: Emulator, trained: TrainResult, example: Example
) -> None:
    s3 = sfn.client("s3")
    key = sfn.stores.model_key
    s3.put_object(Bucket=sfn.bucket, Key=key, Body=b'{"not": "the model"}')
    try:
        accepted = submit(api, {"instances": example.rows(2).tolist()})
        job, _ = follow_job(api, accepted["job_id"])
    finally:
        s3.put_object(
            Bucket=sfn.bucket,
            Key=key,
            Body=trained.model_path.read_bytes(),
            Metadata={"sha256": trained.sha256},
        )

    assert job["status"] == contract.STATUS_FAILED
    assert job["error"]["code"] == "model_unavailable", job  # the container's own reason
    assert trained.sha256 in job["error"]["message"]
    (task,) = tasks_of(sfn, job["job_id"])
    sfn.fargate.wait(task.arn, timeout=10)
    assert (task.exit_code, task.stop_code) == (1, "EssentialContainerExited")
    done = execution(sfn, job["job_id"])
    assert done["status"] in ("SUCCEEDED", "FAILED"), done
    assert api.get(f"/jobs/{job['job_id']}").json()["error"] == job["error"]  # never overwritten


def test_a_task_that_never_starts_fails_the_job_with_the_stopped_reason(
    api: Api, sfn: Emulator, example: Example
) -> None:
    sfn.reconfigure(image="mlserve/scoring:never-built")  # pulumi config set image ... + up

    accepted = submit(api, {"instances": example.rows(2).tolist()})
    job, _ = follow_job(api, accepted["job_id"])

    assert job["status"] == contract.STATUS_FAILED, job
    assert job["error"]["code"] in ("task_stopped", "task_failed"), job
    assert "CannotPullContainerError" in job["error"]["message"]
    (task,) = tasks_of(sfn, accepted["job_id"])
    sfn.fargate.wait(task.arn, timeout=10)
    assert (task.pid, task.exit_code, task.stop_code) == (None, None, "TaskFailedToStart")
    assert task.image == "mlserve/scoring:never-built"


# --- cancel -------------------------------------------------------------------------------------


def test_cancel_stops_the_execution_and_the_task(
    api: Api, sfn: Emulator, example: Example, polling: str
) -> None:
    sfn.task_start_delay = 20.0  # the task stays PROVISIONING/PENDING: cancelled mid-run
    accepted = submit(api, {"instances": example.rows(2).tolist()})
    job_id = accepted["job_id"]
    (task,) = wait_until("started: the job's task", lambda: tasks_of(sfn, job_id))
    assert task.pid is None  # still provisioning
    assert execution(sfn, job_id, finished=False)["status"] == "RUNNING"

    response = api.delete(f"/jobs/{job_id}")

    assert response.status_code == 200, response.text
    assert response.json()["status"] == contract.STATUS_CANCELLED
    stopped = execution(sfn, job_id)
    assert stopped["status"] == "ABORTED", stopped
    sfn.fargate.wait(task.arn, timeout=10)
    assert task.stop_code == "UserInitiated"
    # lambda: the job API stops the task RunECS recorded; native: no task ARN is recorded, and
    # Step Functions stops the task of the runTask.sync state when its execution is stopped
    assert task.stopped_reason is not None
    if polling == "lambda":
        assert "cancelled" in task.stopped_reason
    else:
        assert task.stopped_reason == SYNC_STOPPED_REASON
    assert task.pid is None  # its container never ran
    time.sleep(1.2)  # longer than a poll interval: nothing moves the record any more
    job = api.get(f"/jobs/{job_id}").json()
    assert job["status"] == contract.STATUS_CANCELLED, job
    assert "predictions" not in job


# --- idempotency --------------------------------------------------------------------------------


def test_the_same_idempotency_key_twice_is_one_job_one_execution_one_task(
    api: Api, sfn: Emulator, example: Example
) -> None:
    document = {"instances": example.rows(3).tolist()}
    key = f"retry-{uuid.uuid4()}"
    runs = sfn.fargate.run_task_calls

    first = submit(api, document, **{"Idempotency-Key": key})
    again = submit(api, document, **{"Idempotency-Key": key})
    job, _ = follow_job(api, first["job_id"])
    after = submit(api, document, **{"Idempotency-Key": key})

    assert again["job_id"] == after["job_id"] == first["job_id"]
    assert job["status"] == contract.STATUS_SUCCEEDED, job
    assert after["status"] == contract.STATUS_SUCCEEDED
    assert len(executions_named(sfn, job["job_id"])) == 1
    assert len(tasks_of(sfn, job["job_id"])) == 1
    assert sfn.fargate.run_task_calls == runs + 1


# --- the CLI ------------------------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # The emulator fixture's AWS variables must not leak into a child that starts its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    env.update({"COLUMNS": "200", "TMPDIR": str(cwd)})
    return subprocess.run(
        [sys.executable, "-m", "mlserve", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("mode", ["lambda", "native"])
def test_demo_shows_a_job_going_through_the_state_machine(
    trained: TrainResult, tmp_path: Path, mode: str
) -> None:
    result = cli(
        "demo",
        "--architecture",
        contract.ARCH_STEPFUNCTIONS_ECS,
        "--polling",
        mode,
        "--model-dir",
        str(trained.model_path.parent),
        "--rows",
        "4",
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    assert f"(polling: {mode})" in out
    assert "seen: PENDING → RUNNING → SUCCEEDED" in out, out
    transitions = re.search(r"SUCCEEDED, (\d+) state transitions, (\d+) Lambda invocations", out)
    assert transitions is not None, out
    if mode == "lambda":
        assert int(transitions.group(1)) >= 6 and int(transitions.group(2)) >= 2
        assert "RecordRunning → RunECS → WaitForTask → CheckJobStatus" in out
    else:
        assert (int(transitions.group(1)), int(transitions.group(2))) == (4, 0)
        assert "RecordRunning → RunTask → ExitedCleanly → MarkSucceeded" in out
    assert "identical predictions" in out
    accuracy = re.search(r"accuracy on the held-out split.*?: (\d+\.\d)%", out)
    assert accuracy is not None and float(accuracy.group(1)) > 90, out
    assert "Traceback" not in result.stderr


def test_local_prints_the_api_and_the_state_machine(
    trained: TrainResult, tmp_path: Path, booster: xgb.Booster, example: Example
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    env["TMPDIR"] = str(tmp_path)
    command = [sys.executable, "-m", "mlserve", "local", "--port", "0", "--polling", "native"]
    command += ["--architecture", contract.ARCH_STEPFUNCTIONS_ECS]
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
        assert re.search(
            r"workflow\s+arn:aws:states:\S+:stateMachine:\S+ \(polling: native", banner
        )
        assert re.search(rf"curl .*-d .*{re.escape(url.group(1))}/jobs\b", banner), banner
        assert f"-X DELETE -H 'x-api-key: {key.group(1)}' {url.group(1)}/jobs/JOB_ID" in banner
        health = requests.get(
            url.group(1) + "/health", headers={"x-api-key": key.group(1)}, timeout=30
        )
        assert health.status_code == 200
        # `predict` against it: POST /predict answers 202, the CLI polls the job
        rows = example.rows(3)
        csv = tmp_path / "rows.csv"
        csv.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in rows))
        predicted = cli(
            "predict", "--url", url.group(1), "--api-key", key.group(1), "--format", "json",
            str(csv), cwd=tmp_path,
        )  # fmt: skip
        assert predicted.returncode == 0, predicted.stderr
        assert "202 Accepted: polling" in predicted.stderr
        np.testing.assert_allclose(
            json.loads(predicted.stdout)["predictions"],
            reference(booster, rows),
            rtol=0,
            atol=TOLERANCE,
        )
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    stderr = child.stderr.read() if child.stderr else ""
    assert "Traceback" not in stderr
