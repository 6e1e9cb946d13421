"""Fault injection through the local emulator: every architecture, the real handlers, the real
scoring entrypoint and the real state machine definitions.

AWS faults are injected on the boto3 clients the handlers use (their RuntimeContext's clients)
with a ``before-send`` hook: the hook answers the HTTP request instead of the embedded AWS, so
botocore parses the error and its retry policy (standard mode) retries it exactly as it would
retry AWS's answer. A fault either stops before botocore gives up (``times`` below the client's
attempts: the caller sees nothing) or outlasts every retry (the handler must answer a JSON 503,
or record a terminal job state with a reason, and never leave a half-written record).

Scenarios already proven elsewhere are not repeated here: a task whose image cannot be pulled
(tests/e2e/test_lambda_ecs.py, test_stepfunctions_ecs.py), a Batch shard failing once then
succeeding and duplicate S3 events (tests/e2e/test_stepfunctions_batch.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from botocore.awsrequest import AWSResponse

from mlserve.local import Emulator
from runtime import contract
from runtime.context import BACKGROUND, INTERACTIVE
from runtime.jobs import Job, JobStore
from tests.e2e.conftest import Emulators
from tests.verify.report import record

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
JOB_TIMEOUT = 90.0
# runtime/context.py: attempts per AWS call, the first included (standard retry mode)
API_ATTEMPTS = INTERACTIVE.total_attempts  # the predictor and the job API: within their timeout
CLIENT_ATTEMPTS = BACKGROUND.total_attempts  # the S3 trigger, the step functions, the tasks


# --- fault injection ----------------------------------------------------------------------------


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_kwargs: Any) -> Iterator[bytes]:
        yield self._body


def _json_error(code: str, status: int, protocol: str) -> AWSResponse:
    body = json.dumps({"__type": code, "message": f"injected {code}"}).encode()
    headers = {"Content-Type": f"application/x-amz-{protocol}", "x-amzn-RequestId": "injected"}
    return AWSResponse("https://injected", status, headers, _Raw(body))


def _xml_error(code: str, status: int) -> AWSResponse:
    body = (
        f"<Error><Code>{code}</Code><Message>injected {code}</Message>"
        "<RequestId>injected</RequestId></Error>"
    ).encode()
    return AWSResponse("https://injected", status, {"Content-Type": "application/xml"}, _Raw(body))


# What each service answers when it throttles or fails (status, error code, wire protocol).
THROTTLED_DYNAMODB = ("ProvisionedThroughputExceededException", 400, "json-1.0")
THROTTLED_ECS = ("ThrottlingException", 400, "json-1.1")
THROTTLED_SFN = ("ThrottlingException", 400, "json-1.0")
S3_SLOW_DOWN = ("SlowDown", 503, "xml")
S3_INTERNAL = ("InternalError", 500, "xml")


@dataclass
class Fault:
    operation: str
    code: str
    status: int
    protocol: str
    times: int | None  # None: for ever
    seen: int = 0

    def answer(self) -> AWSResponse | None:
        if self.times is not None and self.seen >= self.times:
            return None
        self.seen += 1
        if self.protocol == "xml":
            return _xml_error(self.code, self.status)
        return _json_error(self.code, self.status, self.protocol)


@dataclass
class Faults:
    """Injected AWS errors on boto3 clients; ``remove()`` takes every hook off again."""

    hooks: list[tuple[Any, str, Callable[..., Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def inject(
        self,
        client: Any,
        operation: str,
        error: tuple[str, int, str],
        times: int | None = None,
    ) -> Fault:
        """Answer ``operation`` (e.g. "PutItem", "*" for all) of ``client`` with ``error``
        ``times`` times (None: every time)."""
        fault = Fault(operation, *error, times=times)

        def before_send(request: Any, event_name: str = "", **_kwargs: Any) -> Any:
            if operation != "*" and not event_name.endswith(f".{operation}"):
                return None
            with self.lock:
                return fault.answer()

        client.meta.events.register("before-send", before_send)
        self.hooks.append((client, "before-send", before_send))
        return fault

    def remove(self) -> None:
        for client, event, hook in self.hooks:
            client.meta.events.unregister(event, hook)
        self.hooks.clear()


@pytest.fixture
def faults() -> Iterator[Faults]:
    injected = Faults()
    yield injected
    injected.remove()


def handler_client(module: str, service: str) -> Any:
    """The boto3 client the handler module's runtime context uses (created now if needed)."""
    import importlib

    handler = importlib.import_module(f"runtime.handlers.{module}")
    return handler.runtime_context().client(service)


def passed(architecture: str) -> None:
    """One fault scenario held (call after its assertions)."""
    record("faults", architecture, faults_passed=1)


# --- API and record helpers ---------------------------------------------------------------------


class Client:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.session = requests.Session()
        if emulator.api_key:
            self.session.headers["x-api-key"] = emulator.api_key
        self.store = JobStore(emulator.client("dynamodb"), emulator.table)
        self._features: int | None = None

    def post(self, path: str, document: Any, **headers: str) -> requests.Response:
        return self.session.post(
            self.emulator.url + path, json=document, headers=headers, timeout=60
        )

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.emulator.url + path, timeout=60)

    def delete(self, path: str) -> requests.Response:
        return self.session.delete(self.emulator.url + path, timeout=60)

    def rows(self, n: int = 2) -> list[list[float]]:
        if self._features is None:
            self._features = int(self.get("/health").json()["model"]["num_features"])
        return [[0.5 + i / 10] * self._features for i in range(n)]

    def job_ids(self) -> set[str]:
        ddb = self.emulator.client("dynamodb")
        ids: set[str] = set()
        for page in ddb.get_paginator("scan").paginate(TableName=self.emulator.table):
            ids.update(item[contract.JOB_TABLE_HASH_KEY]["S"] for item in page["Items"])
        return ids

    def wait_terminal(self, job_id: str, timeout: float = JOB_TIMEOUT) -> Job:
        """GET /jobs/{id} until the job is terminal (GET also reconciles it); its record."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.get(f"/jobs/{job_id}")
            assert response.status_code == 200, response.text
            if response.json()["status"] in TERMINAL:
                return self.store.require(job_id)
            assert time.monotonic() < deadline, f"job {job_id} not terminal: {response.text}"
            time.sleep(0.2)


def assert_503(response: requests.Response, code: str, *fragments: str) -> str:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code, error
    for fragment in fragments:
        assert fragment in error["message"], (fragment, error["message"])
    assert "Traceback" not in response.text
    return str(error["message"])


def tasks_of(emulator: Emulator, job_id: str) -> list[Any]:
    return [t for t in emulator.tasks if t.job_id == job_id]


def wait_for(what: str, check: Callable[[], Any], timeout: float = JOB_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"still not {what} after {timeout} s"
        time.sleep(0.05)


# --- architecture lambda ------------------------------------------------------------------------


@pytest.fixture
def realtime(emulators: Emulators) -> Iterator[Client]:
    emulator = emulators.get(contract.ARCH_LAMBDA)
    client = Client(emulator)
    client.rows()  # the feature count, before the cold start
    emulator.reconfigure()  # a cold start: the next request loads the model from S3
    yield client
    emulator.reconfigure()


def test_s3_slowdown_while_loading_the_model_is_retried(realtime: Client, faults: Faults) -> None:
    fault = faults.inject(handler_client("predict", "s3"), "GetObject", S3_SLOW_DOWN, times=2)
    response = realtime.post("/predict", {"instances": realtime.rows()})
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 2
    assert fault.seen == 2
    passed(contract.ARCH_LAMBDA)


def test_s3_failing_for_good_is_503_then_the_load_is_retried(
    realtime: Client, faults: Faults
) -> None:
    fault = faults.inject(handler_client("predict", "s3"), "GetObject", S3_INTERNAL)
    response = realtime.post("/predict", {"instances": realtime.rows()})
    assert_503(response, "model_unavailable", "InternalError")
    assert fault.seen == API_ATTEMPTS
    faults.remove()  # S3 recovers: the next request loads the model
    response = realtime.post("/predict", {"instances": realtime.rows()})
    assert response.status_code == 200, response.text
    passed(contract.ARCH_LAMBDA)


def test_a_model_object_altered_after_deployment_is_refused(realtime: Client) -> None:
    emulator = realtime.emulator
    bucket, key = emulator.model_uri[len("s3://") :].split("/", 1)
    s3 = emulator.client("s3")
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=original[:-1] + bytes([original[-1] ^ 1]))
    try:
        response = realtime.post("/predict", {"instances": realtime.rows()})
        message = assert_503(response, "model_unavailable", "sha256 mismatch", key)
        assert emulator.model.sha256 in message
    finally:
        s3.put_object(Bucket=bucket, Key=key, Body=original)
    response = realtime.post("/predict", {"instances": realtime.rows()})
    assert response.status_code == 200, response.text
    passed(contract.ARCH_LAMBDA)


def test_a_model_object_deleted_after_deployment_is_503(realtime: Client) -> None:
    emulator = realtime.emulator
    bucket, key = emulator.model_uri[len("s3://") :].split("/", 1)
    s3 = emulator.client("s3")
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.delete_object(Bucket=bucket, Key=key)
    try:
        response = realtime.post("/predict", {"instances": realtime.rows()})
        assert_503(response, "model_unavailable", "cannot read the model object", key)
    finally:
        s3.put_object(Bucket=bucket, Key=key, Body=original)
    response = realtime.post("/predict", {"instances": realtime.rows()})
    assert response.status_code == 200, response.text
    passed(contract.ARCH_LAMBDA)


# --- architecture lambda-ecs --------------------------------------------------------------------


@pytest.fixture
def ecs(emulators: Emulators) -> Iterator[Client]:
    emulator = emulators.get(contract.ARCH_LAMBDA_ECS)
    yield Client(emulator)
    emulator.task_start_delay = 0.0


def test_dynamodb_throttling_on_submit_is_retried(ecs: Client, faults: Faults) -> None:
    throttled = API_ATTEMPTS - 1  # every retry the job API makes
    fault = faults.inject(
        handler_client("jobs", "dynamodb"), "PutItem", THROTTLED_DYNAMODB, throttled
    )
    response = ecs.post("/jobs", {"instances": ecs.rows()})
    assert response.status_code == 202, response.text
    job = ecs.wait_terminal(response.json()["job_id"])
    assert job.status == contract.STATUS_SUCCEEDED, job
    assert fault.seen == throttled
    assert len(tasks_of(ecs.emulator, job.job_id)) == 1
    passed(contract.ARCH_LAMBDA_ECS)


def test_dynamodb_throttled_for_good_is_503_and_records_nothing(
    ecs: Client, faults: Faults
) -> None:
    before = ecs.job_ids()
    tasks = len(ecs.emulator.tasks)
    faults.inject(handler_client("jobs", "dynamodb"), "PutItem", THROTTLED_DYNAMODB)
    response = ecs.post("/jobs", {"instances": ecs.rows()})
    assert_503(response, "service_unavailable", "retry")
    assert ecs.job_ids() == before
    assert len(ecs.emulator.tasks) == tasks  # nothing started for a job that does not exist
    passed(contract.ARCH_LAMBDA_ECS)


def test_run_task_throttled_for_good_fails_the_job_with_ecs_reason(
    ecs: Client, faults: Faults
) -> None:
    before = ecs.job_ids()
    faults.inject(handler_client("jobs", "ecs"), "RunTask", THROTTLED_ECS)
    response = ecs.post("/jobs", {"instances": ecs.rows()})
    assert_503(response, "task_not_started", "ThrottlingException")
    (job_id,) = ecs.job_ids() - before
    job = ecs.store.require(job_id)
    assert job.status == contract.STATUS_FAILED
    assert job.error is not None and job.error.code == "task_not_started"
    assert "ThrottlingException" in job.error.message
    assert tasks_of(ecs.emulator, job_id) == []
    passed(contract.ARCH_LAMBDA_ECS)


def uploaded_job(client: Client) -> str:
    """An upload job whose input (two rows of CSV) was PUT to its presigned URL; its id."""
    accepted = client.post("/jobs", {"upload": {"format": "csv"}})
    assert accepted.status_code == 202, accepted.text
    rows = "\n".join(",".join(map(str, row)) for row in client.rows()) + "\n"
    put = requests.put(accepted.json()["upload"]["url"], data=rows.encode(), timeout=60)
    assert put.status_code == 200, put.text
    return str(accepted.json()["job_id"])


def test_s3_failing_for_good_on_start_is_503_and_a_later_start_works(
    ecs: Client, faults: Faults
) -> None:
    job_id = uploaded_job(ecs)
    fault = faults.inject(handler_client("jobs", "s3"), "HeadObject", S3_INTERNAL)
    response = ecs.post(f"/jobs/{job_id}/start", None)
    assert_503(response, "service_unavailable", "retry")
    job = ecs.store.require(job_id)
    assert job.awaiting_upload, job  # nothing changed: still waiting to be started
    assert tasks_of(ecs.emulator, job_id) == []
    faults.remove()
    assert fault.seen == API_ATTEMPTS
    assert ecs.post(f"/jobs/{job_id}/start", None).status_code == 202
    assert ecs.wait_terminal(job_id).status == contract.STATUS_SUCCEEDED
    assert len(tasks_of(ecs.emulator, job_id)) == 1
    passed(contract.ARCH_LAMBDA_ECS)


def test_run_task_throttled_for_good_on_start_fails_the_upload_job_with_the_reason(
    ecs: Client, faults: Faults
) -> None:
    job_id = uploaded_job(ecs)
    faults.inject(handler_client("jobs", "ecs"), "RunTask", THROTTLED_ECS)
    response = ecs.post(f"/jobs/{job_id}/start", None)
    assert_503(response, "task_not_started", "ThrottlingException")
    job = ecs.store.require(job_id)
    assert job.status == contract.STATUS_FAILED
    assert job.error is not None and job.error.code == "task_not_started"
    faults.remove()
    # the job is over: starting it again starts nothing
    assert ecs.post(f"/jobs/{job_id}/start", None).status_code == 202
    assert tasks_of(ecs.emulator, job_id) == []
    passed(contract.ARCH_LAMBDA_ECS)


def test_the_job_list_with_dynamodb_throttled_for_good_is_503(ecs: Client, faults: Faults) -> None:
    faults.inject(handler_client("jobs", "dynamodb"), "Query", THROTTLED_DYNAMODB)
    assert_503(ecs.get("/jobs"), "service_unavailable", "retry")
    faults.remove()
    assert ecs.get("/jobs").status_code == 200
    passed(contract.ARCH_LAMBDA_ECS)


def test_a_record_update_failing_after_run_task_loses_nothing_on_retry(
    ecs: Client, faults: Faults
) -> None:
    """RunTask succeeded, then recording the task ARN stays throttled: 503. The caller retries
    with the same Idempotency-Key and gets the same job, which the task finishes; one task."""
    key = f"retry-{uuid.uuid4().hex}"
    before = ecs.job_ids()
    faults.inject(handler_client("jobs", "dynamodb"), "UpdateItem", THROTTLED_DYNAMODB)
    document = {"instances": ecs.rows()}
    first = ecs.post("/jobs", document, **{"Idempotency-Key": key})
    assert_503(first, "service_unavailable")
    faults.remove()
    second = ecs.post("/jobs", document, **{"Idempotency-Key": key})
    assert second.status_code == 202, second.text
    job_id = second.json()["job_id"]
    assert ecs.job_ids() - before == {job_id}
    job = ecs.wait_terminal(job_id)
    assert job.status == contract.STATUS_SUCCEEDED, job
    assert job.predictions is not None and len(json.loads(job.predictions)) == 2
    assert len(tasks_of(ecs.emulator, job_id)) == 1
    passed(contract.ARCH_LAMBDA_ECS)


def test_a_scoring_container_killed_mid_run_fails_the_job(ecs: Client) -> None:
    ecs.emulator.task_start_delay = 0.0
    response = ecs.post("/jobs", {"instances": ecs.rows()})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    task = wait_for("running", lambda: next(iter(tasks_of(ecs.emulator, job_id)), None))
    pid = wait_for("a process", lambda: task.pid)
    os.killpg(pid, signal.SIGKILL)  # the OOM killer or a host failure: no chance to record
    job = ecs.wait_terminal(job_id)
    assert job.status == contract.STATUS_FAILED, job
    assert job.error is not None and job.error.code == "task_failed", job.error
    assert "exited with code 137" in job.error.message, (
        job.error
    )  # 128 + SIGKILL, as ECS reports it
    passed(contract.ARCH_LAMBDA_ECS)


def test_a_model_altered_after_deployment_fails_the_job_with_the_mismatch(ecs: Client) -> None:
    emulator = ecs.emulator
    bucket, key = emulator.model_uri[len("s3://") :].split("/", 1)
    s3 = emulator.client("s3")
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=original + b" ")
    try:
        response = ecs.post("/jobs", {"instances": ecs.rows()})
        assert response.status_code == 202, response.text
        job = ecs.wait_terminal(response.json()["job_id"])
    finally:
        s3.put_object(Bucket=bucket, Key=key, Body=original)
    assert job.status == contract.STATUS_FAILED, job
    assert job.error is not None and job.error.code == "model_unavailable", job.error
    assert "sha256 mismatch" in job.error.message and emulator.model.sha256 in job.error.message
    assert job.predictions is None
    passed(contract.ARCH_LAMBDA_ECS)


def test_concurrent_duplicate_posts_with_one_idempotency_key_make_one_job(ecs: Client) -> None:
    key = f"dup-{uuid.uuid4().hex}"
    document = {"instances": ecs.rows()}
    before = ecs.job_ids()
    callers = 8
    barrier = threading.Barrier(callers)
    answers: list[requests.Response] = []

    def call() -> None:
        with requests.Session() as session:
            session.headers.update(ecs.session.headers)
            session.headers["Idempotency-Key"] = key
            barrier.wait()
            answers.append(session.post(ecs.emulator.url + "/jobs", json=document, timeout=60))

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(answers) == callers
    assert {r.status_code for r in answers} == {202}, [r.text for r in answers]
    (job_id,) = {r.json()["job_id"] for r in answers}
    assert ecs.job_ids() - before == {job_id}
    assert ecs.wait_terminal(job_id).status == contract.STATUS_SUCCEEDED
    assert len(tasks_of(ecs.emulator, job_id)) == 1
    passed(contract.ARCH_LAMBDA_ECS)


def _execution_environment(function: Any) -> Any:
    """A second copy of the job API module: its own resolver and runtime context, as another
    Lambda execution environment of the same function has."""
    import importlib.util

    spec = importlib.util.find_spec("runtime.handlers.jobs")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.configure(env=dict(function.env))
    return module


def test_duplicate_posts_racing_in_two_execution_environments_make_one_job(
    ecs: Client, faults: Faults
) -> None:
    """Both requests look the key up (and find nothing) before either records it: they are held
    together after the lookup, so both try to create the job; the conditional put lets one win,
    the other answers with the winner's job."""
    from mlserve.local.functions import LambdaContext
    from tests.runtime.events import rest_event

    function = ecs.emulator.routes["submit_job"]
    environments = [_execution_environment(function) for _ in range(2)]
    both_looked = threading.Barrier(2, timeout=30)
    for environment in environments:
        client = environment.runtime_context().client("dynamodb")
        held: list[bool] = []

        def hold(event_name: str = "", _held: list[bool] = held, **_: Any) -> None:
            if event_name.endswith(".GetItem") and not _held:
                _held.append(True)
                both_looked.wait()  # a delay after the real answer, nothing else

        client.meta.events.register("after-call", hold)
        faults.hooks.append((client, "after-call", hold))
    key = f"race-{uuid.uuid4().hex}"
    body = json.dumps({"instances": ecs.rows()})
    before = ecs.job_ids()
    tasks = len(ecs.emulator.tasks)
    answers: list[dict[str, Any]] = []

    def call(environment: Any) -> None:
        event = rest_event("POST", "/jobs", body)
        event["headers"]["Idempotency-Key"] = key
        # the emulator's API key: the job is that caller's, so the client below may read it
        event["requestContext"]["identity"]["apiKeyId"] = ecs.emulator.api_key_id
        answers.append(environment.handler(event, LambdaContext(function.name, 512, 30)))

    threads = [threading.Thread(target=call, args=(e,)) for e in environments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [a["statusCode"] for a in answers] == [202, 202], answers
    (job_id,) = {json.loads(a["body"])["job_id"] for a in answers}
    assert ecs.job_ids() - before == {job_id}
    assert len(ecs.emulator.tasks) == tasks + 1  # one task started, by the winner
    assert ecs.wait_terminal(job_id).status == contract.STATUS_SUCCEEDED
    passed(contract.ARCH_LAMBDA_ECS)


def test_a_late_completion_after_a_cancel_leaves_the_job_cancelled(ecs: Client) -> None:
    """The job is cancelled while its task is still PENDING; then its container runs anyway
    (the real scoring entrypoint with the task's environment, as a task StopTask came too late
    for): it must not record SUCCEEDED, and says so with a non-zero exit code."""
    ecs.emulator.task_start_delay = 30.0
    response = ecs.post("/jobs", {"instances": ecs.rows()})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    cancelled = ecs.delete(f"/jobs/{job_id}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == contract.STATUS_CANCELLED
    (task,) = tasks_of(ecs.emulator, job_id)
    ecs.emulator.fargate.wait(task.arn, 30)
    environment = ecs.emulator.fargate._process_environment(task)
    late = subprocess.run(
        [sys.executable, "-m", contract.SCORING_MODULE, *task.command],
        env=environment,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert late.returncode != 0, late.stdout[-2000:]
    job = ecs.store.require(job_id)
    assert job.status == contract.STATUS_CANCELLED, job
    assert job.predictions is None
    assert ecs.get(f"/jobs/{job_id}").json()["status"] == contract.STATUS_CANCELLED
    passed(contract.ARCH_LAMBDA_ECS)


# --- architecture stepfunctions-ecs -------------------------------------------------------------


@pytest.fixture
def sfn(emulators: Emulators) -> Iterator[Client]:
    emulator = emulators.get(contract.ARCH_STEPFUNCTIONS_ECS, polling="lambda")
    yield Client(emulator)


def _history(emulator: Emulator, job_id: str) -> list[dict[str, Any]]:
    client = emulator.client("stepfunctions")
    events: list[dict[str, Any]] = client.get_execution_history(
        executionArn=emulator.execution_arn(job_id), maxResults=1000
    )["events"]
    return events


def wait_execution(emulator: Emulator, job_id: str) -> dict[str, Any]:
    """DescribeExecution of the job's execution once it ended."""
    client = emulator.client("stepfunctions")

    def ended() -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = client.describe_execution(
                executionArn=emulator.execution_arn(job_id)
            )
        except client.exceptions.ExecutionDoesNotExist:
            return None
        return found if found["status"] != "RUNNING" else None

    result: dict[str, Any] = wait_for("the execution ended", ended)
    return result


def test_a_lambda_service_exception_is_retried_by_the_definition(sfn: Client) -> None:
    from moto.core.exceptions import JsonRESTError

    emulator = sfn.emulator
    backend = emulator.stepfunctions._lambda_backend
    original = backend.invoke
    deployment = emulator.require_deployment()
    run_ecs = deployment.function_by_handler(contract.HANDLER_RUN_ECS)["FunctionName"]
    failures: list[str] = []

    def invoke(function_name: str, *args: Any, **kwargs: Any) -> Any:
        if function_name.rsplit(":", 1)[-1] == run_ecs and not failures:
            failures.append(function_name)
            error = JsonRESTError("ServiceException", "injected: the Lambda service failed")
            error.code = 500
            raise error
        return original(function_name, *args, **kwargs)

    backend.invoke = invoke
    try:
        response = sfn.post("/jobs", {"instances": sfn.rows()})
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        wait_execution(emulator, job_id)
        job = sfn.wait_terminal(job_id)
    finally:
        backend.invoke = original
    assert job.status == contract.STATUS_SUCCEEDED, job
    assert failures, "the fault was never injected"
    history = _history(emulator, job.job_id)
    errors = [
        e["taskFailedEventDetails"]["error"] for e in history if "taskFailedEventDetails" in e
    ]
    assert errors == ["Lambda.ServiceException"]
    assert history[-1]["type"] == "ExecutionSucceeded"
    assert len(tasks_of(emulator, job.job_id)) == 1
    passed(contract.ARCH_STEPFUNCTIONS_ECS)


def test_dynamodb_throttling_in_the_step_lambdas_is_retried(sfn: Client, faults: Faults) -> None:
    fault = faults.inject(handler_client("steps", "dynamodb"), "*", THROTTLED_DYNAMODB, times=3)
    response = sfn.post("/jobs", {"instances": sfn.rows()})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    # The container records SUCCEEDED itself: wait for the execution (the step Lambdas) to end.
    assert wait_execution(sfn.emulator, job_id)["status"] == "SUCCEEDED"
    job = sfn.wait_terminal(job_id)
    assert job.status == contract.STATUS_SUCCEEDED, job
    assert fault.seen == 3
    assert len(tasks_of(sfn.emulator, job.job_id)) == 1
    passed(contract.ARCH_STEPFUNCTIONS_ECS)


def test_dynamodb_throttled_for_good_in_the_step_lambdas_leaves_one_consistent_outcome(
    sfn: Client, faults: Faults
) -> None:
    """RunECS starts the task, then cannot record it: the workflow's Catch marks the job FAILED
    with the reason, unless the task recorded its result first (conditional writes: whichever
    comes first stands, the other changes nothing)."""
    faults.inject(handler_client("steps", "dynamodb"), "*", THROTTLED_DYNAMODB)
    response = sfn.post("/jobs", {"instances": sfn.rows()})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    execution = wait_execution(sfn.emulator, job_id)
    faults.remove()
    (task,) = tasks_of(sfn.emulator, job_id)
    sfn.emulator.fargate.wait(task.arn, JOB_TIMEOUT)
    job = sfn.wait_terminal(job_id)
    if job.status == contract.STATUS_SUCCEEDED:
        assert task.exit_code == 0
        assert job.predictions is not None and len(json.loads(job.predictions)) == 2
    else:
        assert job.status == contract.STATUS_FAILED, job
        assert job.error is not None and job.error.code == "workflow_error"
        assert "ProvisionedThroughputExceeded" in job.error.message, job.error
        assert job.predictions is None
        assert task.exit_code != 0  # found the job final and recorded nothing
    assert execution["status"] == "SUCCEEDED"  # MarkFailed or AlreadyFinal: recorded
    passed(contract.ARCH_STEPFUNCTIONS_ECS)


def test_run_task_throttled_for_good_in_run_ecs_fails_the_job(sfn: Client, faults: Faults) -> None:
    faults.inject(handler_client("steps", "ecs"), "RunTask", THROTTLED_ECS)
    response = sfn.post("/jobs", {"instances": sfn.rows()})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    wait_execution(sfn.emulator, job_id)
    job = sfn.wait_terminal(job_id)
    assert job.status == contract.STATUS_FAILED, job
    assert job.error is not None and job.error.code == "task_not_started"
    assert "ThrottlingException" in job.error.message, job.error
    assert tasks_of(sfn.emulator, job_id) == []
    passed(contract.ARCH_STEPFUNCTIONS_ECS)


def test_start_execution_throttled_for_good_fails_the_job(sfn: Client, faults: Faults) -> None:
    before = sfn.job_ids()
    faults.inject(handler_client("jobs", "stepfunctions"), "StartExecution", THROTTLED_SFN)
    response = sfn.post("/jobs", {"instances": sfn.rows()})
    assert_503(response, "task_not_started", "ThrottlingException")
    (job_id,) = sfn.job_ids() - before
    job = sfn.store.require(job_id)
    assert job.status == contract.STATUS_FAILED
    assert job.error is not None and "ThrottlingException" in job.error.message
    passed(contract.ARCH_STEPFUNCTIONS_ECS)


# --- architecture stepfunctions-batch -----------------------------------------------------------


@pytest.fixture
def sfb(emulators: Emulators) -> Iterator[Client]:
    emulator = emulators.get(contract.ARCH_STEPFUNCTIONS_BATCH, polling="lambda")
    yield Client(emulator)


def _upload_config(client: Client, name: str) -> tuple[str, Any]:
    """Put a valid ``jobs/<name>.json`` (its input CSV too); the key and its delivery."""
    emulator = client.emulator
    s3 = emulator.client("s3")
    features = client.get("/health").json()["model"]["feature_names"]
    rows = "\n".join(",".join(["0.5"] * len(features)) for _ in range(20))
    s3.put_object(
        Bucket=emulator.bucket,
        Key=f"inputs/{name}.csv",
        Body=(",".join(features) + "\n" + rows + "\n").encode(),
    )
    key = f"{contract.JOBS_PREFIX}{name}.json"
    before = len(emulator.notifications.deliveries)
    config = {
        "input_uri": f"s3://{emulator.bucket}/inputs/{name}.csv",
        "output_uri": f"s3://{emulator.bucket}/results/{name}/",
        "format": "csv",
    }
    s3.put_object(Bucket=emulator.bucket, Key=key, Body=json.dumps(config).encode())
    wait_for("delivered", lambda: len(emulator.notifications.deliveries) > before)
    delivery = emulator.notifications.deliveries[before]
    assert delivery.done.wait(60), "the trigger is still running"
    return key, delivery


@pytest.mark.verify
def test_the_trigger_throttled_past_its_retries_is_retried_by_lambda(
    sfb: Client, faults: Faults
) -> None:
    """StartExecution and the record update both throttled through the first delivery: the
    record stays PENDING; Lambda's asynchronous retry finds it and starts it."""
    sfn_fault = faults.inject(
        handler_client("trigger", "stepfunctions"), "StartExecution", THROTTLED_SFN, CLIENT_ATTEMPTS
    )
    ddb_fault = faults.inject(
        handler_client("trigger", "dynamodb"), "UpdateItem", THROTTLED_DYNAMODB, CLIENT_ATTEMPTS
    )
    _key, delivery = _upload_config(sfb, f"retried-{uuid.uuid4().hex[:8]}")
    assert delivery.error is None, delivery.error
    assert delivery.attempts == 2
    assert sfn_fault.seen == ddb_fault.seen == CLIENT_ATTEMPTS
    (result,) = delivery.result["results"]
    job = sfb.wait_terminal(result["job_id"])
    assert job.status == contract.STATUS_SUCCEEDED, job
    executions = sfb.emulator.client("stepfunctions").list_executions(
        stateMachineArn=sfb.emulator.outputs["batchStateMachineArn"]
    )["executions"]
    assert [e["name"] for e in executions].count(job.job_id) == 1
    passed(contract.ARCH_STEPFUNCTIONS_BATCH)


@pytest.mark.verify
def test_the_trigger_reading_s3_failing_for_good_records_nothing(
    sfb: Client, faults: Faults
) -> None:
    before = sfb.job_ids()
    faults.inject(handler_client("trigger", "s3"), "GetObject", S3_SLOW_DOWN)
    key, delivery = _upload_config(sfb, f"unreadable-{uuid.uuid4().hex[:8]}")
    assert delivery.error is not None and "SlowDown" in delivery.error
    assert delivery.attempts == 3  # Lambda's asynchronous invocation: 1 + 2 retries
    assert sfb.job_ids() == before  # no half-written record
    s3 = sfb.emulator.client("s3")
    s3.head_object(Bucket=sfb.emulator.bucket, Key=key)  # the config is still there
    passed(contract.ARCH_STEPFUNCTIONS_BATCH)


def test_staging_inline_rows_failing_for_good_fails_the_job(sfb: Client, faults: Faults) -> None:
    before = sfb.job_ids()
    faults.inject(handler_client("jobs", "s3"), "PutObject", S3_INTERNAL)
    response = sfb.post("/jobs", {"instances": sfb.rows()})
    assert_503(response, "task_not_started", "InternalError")
    (job_id,) = sfb.job_ids() - before
    job = sfb.store.require(job_id)
    assert job.status == contract.STATUS_FAILED, job
    assert job.error is not None and "InternalError" in job.error.message
    passed(contract.ARCH_STEPFUNCTIONS_BATCH)


def test_start_execution_throttled_for_good_on_start_fails_the_upload_job(
    sfb: Client, faults: Faults
) -> None:
    job_id = uploaded_job(sfb)
    faults.inject(handler_client("jobs", "stepfunctions"), "StartExecution", THROTTLED_SFN)
    response = sfb.post(f"/jobs/{job_id}/start", None)
    assert_503(response, "task_not_started", "ThrottlingException")
    job = sfb.store.require(job_id)
    assert job.status == contract.STATUS_FAILED, job
    assert job.error is not None and "ThrottlingException" in job.error.message
    passed(contract.ARCH_STEPFUNCTIONS_BATCH)


def test_dynamodb_throttled_for_good_on_post_jobs_is_503(sfb: Client, faults: Faults) -> None:
    before = sfb.job_ids()
    faults.inject(handler_client("jobs", "dynamodb"), "*", THROTTLED_DYNAMODB)
    response = sfb.post("/jobs", {"instances": sfb.rows()})
    assert_503(response, "service_unavailable")
    assert sfb.job_ids() == before
    passed(contract.ARCH_STEPFUNCTIONS_BATCH)


THROTTLED_BATCH = ("TooManyRequestsException", 429, "json-1.1")


def test_dynamodb_throttling_in_the_batch_step_lambdas_is_retried(
    sfb: Client, faults: Faults
) -> None:
    fault = faults.inject(handler_client("steps", "dynamodb"), "*", THROTTLED_DYNAMODB, times=3)
    response = sfb.post("/jobs", {"instances": sfb.rows()})
    assert response.status_code == 202, response.text
    job = sfb.wait_terminal(response.json()["job_id"])
    assert job.status == contract.STATUS_SUCCEEDED, job
    assert fault.seen == 3
    passed(contract.ARCH_STEPFUNCTIONS_BATCH)


def test_submit_job_throttled_for_good_fails_the_job_with_the_reason(
    sfb: Client, faults: Faults
) -> None:
    submitted = sfb.emulator.batch.submit_job_calls
    faults.inject(handler_client("steps", "batch"), "SubmitJob", THROTTLED_BATCH)
    response = sfb.post("/jobs", {"instances": sfb.rows()})
    assert response.status_code == 202, response.text
    job = sfb.wait_terminal(response.json()["job_id"])
    assert job.status == contract.STATUS_FAILED, job
    assert job.error is not None and job.error.code == "batch_job_not_submitted", job.error
    assert "TooManyRequestsException" in job.error.message, job.error
    assert sfb.emulator.batch.submit_job_calls == submitted  # nothing was half-submitted
    passed(contract.ARCH_STEPFUNCTIONS_BATCH)
