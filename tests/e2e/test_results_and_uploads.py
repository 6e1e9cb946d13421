"""Every result a client can reach, holding only the API URL and an API key (issue 16), on every
job architecture, over HTTP against the emulator:

- a small job's predictions come back inline on GET /jobs/{id};
- a job larger than Lambda's 6 MB body limit is submitted without AWS credentials (POST /jobs
  with an upload, a PUT to the presigned URL, POST /jobs/{id}/start), and its predictions,
  spilled to S3, are downloaded through the presigned ``result_url``;
- another API key's client gets 404 for the job, and GET /jobs lists only the caller's jobs;
- the upload flow refuses what it cannot run (nothing uploaded, a duplicate start, bad rows)
  with a 4xx or a FAILED record naming the caller's mistake, never a 5xx;
- ``mlserve predict`` and ``mlserve jobs`` do all of that for a user.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import xgboost as xgb

from mlserve.local import Emulator
from runtime import contract

from .conftest import Emulators
from .helpers import Api, Example, assert_error, reference

JOB_TIMEOUT = 240.0
TOLERANCE = 1e-6
# more than Lambda's synchronous body limit, and more predictions than a job item holds inline
UPLOAD_ROWS = 40_000
JOB_ARCHITECTURES = (
    contract.ARCH_LAMBDA_ECS,
    contract.ARCH_STEPFUNCTIONS_ECS,
    contract.ARCH_STEPFUNCTIONS_BATCH,
)


@pytest.fixture(scope="module", params=JOB_ARCHITECTURES)
def architecture(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def deployed(emulators: Emulators, architecture: str) -> Emulator:
    return emulators.get(architecture)


@pytest.fixture
def client(deployed: Emulator) -> Iterator[Api]:
    with Api(deployed.url, deployed.api_key) as api:
        yield api


def follow(api: Api, job_id: str, timeout: float = JOB_TIMEOUT) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job = response.json()
        if job["status"] in contract.TERMINAL_STATUSES:
            return dict(job)
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.2)


def upload_rows(example: Example, rows: int) -> tuple[bytes, np.ndarray]:
    """A CSV (header of feature names) of ``rows`` jittered example rows, 4 decimals each."""
    rng = np.random.default_rng(16)
    base = example.data.x[rng.integers(0, len(example.data.x), rows)]
    values = np.round(base * rng.uniform(0.9, 1.1, base.shape), 4).astype(np.float32)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(example.names)
    for row in values:
        writer.writerow([f"{v:.4f}" for v in row])
    return out.getvalue().encode(), values


def submit_upload(api: Api, fmt: str = "csv", **options: Any) -> dict[str, Any]:
    response = api.post("/jobs", json={"upload": {"format": fmt, **options}})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == contract.STATUS_PENDING
    assert accepted["upload"]["method"] == "PUT"
    assert accepted["start_url"] == accepted["status_url"] + "/start"
    return dict(accepted)


def put(url: str, body: bytes) -> None:
    """The client's upload: a plain PUT to the presigned URL, no API key, no AWS credentials."""
    response = requests.put(url, data=body, timeout=60)
    assert response.status_code == 200, response.text


def result_predictions(job: dict[str, Any], api: Api) -> np.ndarray:
    """Every prediction of a succeeded job, inline or downloaded through result_url (every part
    of a batch job's output, in part order)."""
    if "predictions" in job:
        return np.asarray(job["predictions"], dtype=np.float64)
    assert "result_url" in job, job
    parts = job.get("result_parts")
    if parts is None:
        body = requests.get(job["result_url"], timeout=60)
        assert body.status_code == 200
        return np.asarray(body.json()["predictions"], dtype=np.float64)
    values: list[float] = []
    for index in range(parts):
        linked = api.get(f"/jobs/{job['job_id']}", params={"part": index}).json()
        assert linked["result_part"] == index
        text = requests.get(linked["result_url"], timeout=60)
        assert text.status_code == 200
        values.extend(float(row["prediction"]) for row in csv.DictReader(io.StringIO(text.text)))
    return np.asarray(values)


# --- small jobs: inline -------------------------------------------------------------------------


def test_a_small_jobs_predictions_are_inline(
    client: Api, example: Example, booster: xgb.Booster
) -> None:
    rows = example.rows(5)
    response = client.post("/predict", json={"instances": rows.tolist()})
    assert response.status_code in (200, 202), response.text
    if response.status_code == 200:  # lambda-ecs answered within syncWaitSeconds
        predictions = np.asarray(response.json()["predictions"])
    else:
        job = follow(client, response.json()["job_id"])
        assert job["status"] == contract.STATUS_SUCCEEDED, job
        assert "result_url" not in job
        predictions = np.asarray(job["predictions"])
    np.testing.assert_allclose(predictions, reference(booster, rows), atol=TOLERANCE)

    accepted = client.post("/jobs", json={"instances": rows.tolist()}).json()
    job = follow(client, accepted["job_id"])
    assert job["status"] == contract.STATUS_SUCCEEDED, job
    np.testing.assert_allclose(job["predictions"], reference(booster, rows), atol=TOLERANCE)
    assert "result_url" not in job


# --- large jobs: upload, result_url -------------------------------------------------------------


def test_a_job_larger_than_6_mb_goes_up_and_comes_back_without_aws_credentials(
    client: Api, deployed: Emulator, example: Example, booster: xgb.Booster
) -> None:
    body, values = upload_rows(example, UPLOAD_ROWS)
    assert len(body) > contract.MAX_BODY_BYTES
    batch = contract.ARCH_STEPFUNCTIONS_BATCH in deployed.architectures
    accepted = submit_upload(client, "csv", **({"shards": 2} if batch else {}))
    job_id = accepted["job_id"]
    put(accepted["upload"]["url"], body)
    started = client.post(f"/jobs/{job_id}/start")
    assert started.status_code == 202, started.text

    job = follow(client, job_id)
    assert job["status"] == contract.STATUS_SUCCEEDED, job
    assert "predictions" not in job  # 40,000 predictions are more than a job item holds
    assert job["result_url_expires_at"] > job["updated_at"]
    if batch:
        assert job["result_parts"] == 2
    np.testing.assert_allclose(
        result_predictions(job, client), reference(booster, values), atol=TOLERANCE
    )


# --- callers --------------------------------------------------------------------------------------


def test_another_callers_job_is_404_and_each_caller_lists_only_its_own(
    client: Api, deployed: Emulator, example: Example
) -> None:
    mine = client.post("/jobs", json={"instances": example.rows(2).tolist()}).json()["job_id"]
    with Api(deployed.url, deployed.add_api_key()) as other:
        assert_error(other.get(f"/jobs/{mine}"), 404, "not_found")
        assert_error(other.delete(f"/jobs/{mine}"), 404, "not_found")
        assert_error(other.post(f"/jobs/{mine}/start"), 404, "not_found")
        theirs = other.post("/jobs", json={"instances": example.rows(1).tolist()}).json()
        listed = other.get("/jobs").json()
        assert [j["job_id"] for j in listed["jobs"]] == [theirs["job_id"]]
        assert_error(client.get(f"/jobs/{theirs['job_id']}"), 404, "not_found")
        # a next_token of one caller is no key to another caller's jobs
        page = client.get("/jobs", params={"limit": 1}).json()
        if "next_token" in page:
            assert_error(
                other.get("/jobs", params={"next_token": page["next_token"]}),
                400,
                "invalid_next_token",
            )
    follow(client, mine)


def test_the_job_list_is_newest_first_and_paginated(client: Api, example: Example) -> None:
    submitted = [
        client.post("/jobs", json={"instances": example.rows(1).tolist()}).json()["job_id"]
        for _ in range(3)
    ]
    seen: list[dict[str, Any]] = []
    token = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"next_token": token} if token else {})}
        page = client.get("/jobs", params=params)
        assert page.status_code == 200, page.text
        assert len(page.json()["jobs"]) <= 2
        seen.extend(page.json()["jobs"])
        token = page.json().get("next_token")
        if not token:
            break
    ids = [j["job_id"] for j in seen]
    assert len(ids) == len(set(ids))
    assert [i for i in ids if i in submitted] == submitted[::-1]
    created = [j["created_at"] for j in seen]
    assert created == sorted(created, reverse=True)
    assert_error(client.get("/jobs", params={"limit": 0}), 400, "invalid_limit")
    assert_error(client.get("/jobs", params={"next_token": "x"}), 400, "invalid_next_token")
    for job_id in submitted:
        follow(client, job_id)


# --- the upload flow's edges --------------------------------------------------------------------


def test_starting_before_the_upload_is_a_409_that_changes_nothing(client: Api) -> None:
    accepted = submit_upload(client)
    job_id = accepted["job_id"]
    assert_error(client.post(f"/jobs/{job_id}/start"), 409, "upload_missing")
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == contract.STATUS_PENDING
    assert job["upload_expires_at"] == accepted["upload"]["expires_at"]
    put(accepted["upload"]["url"], b"")
    assert_error(client.post(f"/jobs/{job_id}/start"), 400, "empty_upload")
    assert client.delete(f"/jobs/{job_id}").json()["status"] == contract.STATUS_CANCELLED
    assert_error(client.post(f"/jobs/{job_id}/start"), 409, "job_finished")


def test_a_duplicate_start_starts_one_job(
    client: Api, deployed: Emulator, example: Example, booster: xgb.Booster
) -> None:
    body, values = upload_rows(example, 20)
    accepted = submit_upload(client)
    put(accepted["upload"]["url"], body)
    first = client.post(f"/jobs/{accepted['job_id']}/start")
    again = client.post(f"/jobs/{accepted['job_id']}/start")
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["job_id"] == accepted["job_id"]
    job = follow(client, accepted["job_id"])
    assert job["status"] == contract.STATUS_SUCCEEDED, job
    np.testing.assert_allclose(
        result_predictions(job, client), reference(booster, values), atol=TOLERANCE
    )
    if contract.ARCH_LAMBDA_ECS in deployed.architectures:
        started = [t for t in deployed.tasks if t.job_id == accepted["job_id"]]
        assert len(started) == 1


def test_a_bad_upload_fails_the_job_naming_the_callers_mistake(client: Api) -> None:
    accepted = submit_upload(client)
    put(accepted["upload"]["url"], b"mean radius,what\nabc,def\n")
    assert client.post(f"/jobs/{accepted['job_id']}/start").status_code == 202
    job = follow(client, accepted["job_id"])
    assert job["status"] == contract.STATUS_FAILED
    assert job["error"]["code"] != "internal", job["error"]
    assert "result_url" not in job


def test_an_upload_request_the_architecture_cannot_run_is_a_400(
    client: Api, deployed: Emulator
) -> None:
    if contract.ARCH_STEPFUNCTIONS_BATCH in deployed.architectures:
        assert_error(
            client.post("/jobs", json={"upload": {"format": "json"}}), 400, "unsupported_format"
        )
    else:
        assert_error(
            client.post("/jobs", json={"upload": {"format": "csv", "shards": 3}}),
            400,
            "unsupported_option",
        )
    assert_error(
        client.post("/jobs", json={"upload": {"format": "csv"}, "instances": [[1]]}),
        400,
        "invalid_body",
    )


# --- the CLI --------------------------------------------------------------------------------------


def mlserve(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    return subprocess.run(
        [sys.executable, "-m", "mlserve", *args],
        cwd=cwd,
        env={**clean, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT,
        check=False,
    )


def test_the_cli_predicts_a_large_file_and_lists_and_downloads_jobs(
    deployed: Emulator, example: Example, booster: xgb.Booster, tmp_path: Path
) -> None:
    body, values = upload_rows(example, UPLOAD_ROWS)
    (tmp_path / "rows.csv").write_bytes(body)
    env = {"MLSERVE_URL": deployed.url, "MLSERVE_API_KEY": deployed.api_key or ""}

    result = mlserve("predict", "--format", "json", "rows.csv", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    answer = json.loads(result.stdout)
    if "predictions" in answer:
        predictions = np.asarray(answer["predictions"])
    else:  # a batch job's part files, downloaded
        predictions = np.asarray(
            [
                float(row["prediction"])
                for path in answer["files"]
                for row in csv.DictReader(io.StringIO(Path(tmp_path, path).read_text()))
            ]
        )
    np.testing.assert_allclose(predictions, reference(booster, values), atol=TOLERANCE)

    listed = mlserve("jobs", "list", "--json", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    newest = json.loads(listed.stdout.splitlines()[0])
    assert newest["status"] == contract.STATUS_SUCCEEDED

    got = mlserve("jobs", "get", newest["job_id"], "--download", "out", cwd=tmp_path, env=env)
    assert got.returncode == 0, got.stderr
    assert all((tmp_path / line).is_file() for line in got.stdout.split())

    missing = mlserve("jobs", "cancel", "0" * 32, cwd=tmp_path, env=env)
    assert missing.returncode == 1
    assert "404 not_found" in missing.stderr
