"""Canary and shadow rollouts and data capture (issue 17), end to end on the emulator.

Two models trained on the same features (the stable one with fewer trees) are deployed as
``modelPath`` and ``canaryModelPath``; every answer is checked against ``Booster.predict`` of the
version the answer names, and the capture records against what the client sent and got.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import xgboost as xgb

from mlserve.cli import main
from mlserve.local import Emulator
from mlserve.train import TrainResult, train_example
from runtime import capture, contract

from .conftest import Emulators
from .helpers import Api, Example, assert_error, reference

REQUESTS = 2000


@pytest.fixture(scope="module")
def canary_model(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """A second version of the example model: the same features, more trees."""
    return train_example(out_dir=tmp_path_factory.mktemp("canary") / "example", n_estimators=160)


def _boosters(emu: Emulator, trained: TrainResult, canary: TrainResult) -> dict[str, xgb.Booster]:
    health = Api(emu.url, emu.api_key).get("/health").json()
    return {
        health["model"]["version"]: xgb.Booster(model_file=str(trained.model_path)),
        health["canary"]["version"]: xgb.Booster(model_file=str(canary.model_path)),
    }


def _captured(emu: Emulator) -> list[dict[str, Any]]:
    """Every capture record in the bucket, with the key it was found under."""
    emu.log_delivery.flush()
    s3 = emu.client("s3")
    found = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=emu.bucket, Prefix=contract.CAPTURE_PREFIX
    )
    for page in pages:
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=emu.bucket, Key=item["Key"])["Body"].read().decode()
            assert emu.api_key is not None and emu.api_key not in body  # never the API key
            found += [{**json.loads(line), "_key": item["Key"]} for line in body.splitlines()]
    return found


@pytest.fixture
def split(
    emulators: Emulators, trained: TrainResult, canary_model: TrainResult
) -> tuple[Emulator, dict[str, xgb.Booster]]:
    emu = emulators.get(
        "lambda",
        config={
            "canaryModelPath": str(canary_model.model_path),
            "canaryPercent": "25",
            "captureSamplePercent": "10",
        },
    )
    return emu, _boosters(emu, trained, canary_model)


def test_a_quarter_of_the_requests_is_answered_by_the_canary_with_its_predictions(
    split: tuple[Emulator, dict[str, xgb.Booster]], example: Example
) -> None:
    emu, boosters = split
    rows = example.rows(3)
    expected = {version: reference(b, rows) for version, b in boosters.items()}
    served: Counter[str] = Counter()
    with Api(emu.url, emu.api_key) as api:
        for i in range(REQUESTS):
            r = api.post(
                "/predict",
                json={"instances": rows.tolist()},
                headers={contract.REQUEST_ID_HEADER: f"client-{i}"},
            )
            assert r.status_code == 200, r.text
            answer = r.json()
            served[answer["model_version"]] += 1
            np.testing.assert_allclose(
                answer["predictions"], expected[answer["model_version"]], rtol=1e-6
            )
        # the same key always lands on the same version
        again = {
            api.post(
                "/predict",
                json={"instances": rows.tolist()},
                headers={contract.REQUEST_ID_HEADER: "client-7"},
            ).json()["model_version"]
            for _ in range(5)
        }
    stable, canary = boosters
    assert set(served) == {stable, canary}
    assert 0.22 <= served[canary] / REQUESTS <= 0.28, served
    assert len(again) == 1


def test_a_pinned_version_always_answers(
    split: tuple[Emulator, dict[str, xgb.Booster]], example: Example
) -> None:
    emu, boosters = split
    rows = example.rows(2)
    with Api(emu.url, emu.api_key) as api:
        for version, booster in boosters.items():
            for i in range(40):
                r = api.post(
                    "/predict",
                    json={"instances": rows.tolist()},
                    headers={
                        contract.MODEL_VERSION_HEADER: version,
                        contract.REQUEST_ID_HEADER: f"pinned-{i}",
                    },
                )
                assert r.json()["model_version"] == version
                np.testing.assert_allclose(r.json()["predictions"], reference(booster, rows), 1e-6)
        r = api.post(
            "/predict",
            json={"instances": rows.tolist()},
            headers={contract.MODEL_VERSION_HEADER: "v-unknown"},
        )
        assert_error(r, 400, "unknown_model_version", "v-unknown", *boosters)


def test_health_lists_both_versions(split: tuple[Emulator, dict[str, xgb.Booster]]) -> None:
    emu, boosters = split
    with Api(emu.url, emu.api_key) as api:
        health = api.get("/health").json()
    stable, canary = boosters
    assert health["model"]["version"] == stable
    assert health["canary"]["version"] == canary
    assert health["canary"]["feature_names"] == health["model"]["feature_names"]
    assert health["rollout"] == {
        "versions": [stable, canary],
        "mode": "split",
        "canary_percent": 25,
        "capture_sample_percent": 10,
    }


def test_sampled_requests_are_captured_per_served_version(
    split: tuple[Emulator, dict[str, xgb.Booster]], example: Example
) -> None:
    emu, boosters = split
    records = _captured(emu)
    # 10 % of the requests so far (2000 + 5 + 80 pinned), give or take the hash
    assert 150 <= len(records) <= 270, len(records)
    rows = example.rows(3)
    model = emu.model.name
    for record in records:
        assert set(record) - {"_key"} == set(capture.FIELDS) - {"errors"}
        version = record["served_version"]
        day = record["time"][:10]
        assert record["_key"].startswith(f"capture/{model}/{version}/dt={day}/")
        assert record["time"].endswith("Z")
        assert record["model"] == model
        assert list(record["versions"]) == [version]
        assert record["feature_names"] == example.names
        features = np.asarray(record["features"], dtype=np.float32)
        assert record["rows"] == len(features)
        np.testing.assert_allclose(
            record["versions"][version], reference(boosters[version], features), rtol=1e-6
        )
        assert record["latency_ms"] > 0
    # the features as the client sent them (float32 written in its shortest form)
    sent = {tuple(r) for r in rows.tolist()}
    assert any({tuple(f) for f in record["features"]} == sent for record in records)
    assert {r["served_version"] for r in records} == set(boosters)


def test_rollout_status_shows_the_captured_versions_side_by_side(
    split: tuple[Emulator, dict[str, xgb.Booster]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu, boosters = split
    records = _captured(emu)
    args = ["rollout", "status", "--bucket", emu.bucket, "--endpoint-url", emu.endpoint_url]
    args += ["--url", emu.url, "--api-key", str(emu.api_key), "--json"]
    capsys.readouterr()
    assert main(args) == 0
    figures = json.loads(capsys.readouterr().out)
    stable, canary = boosters
    assert figures["model"] == emu.model.name
    assert figures["records"] == len(records)
    shown = {v["version"]: v for v in figures["versions"]}
    assert [v["version"] for v in figures["versions"]] == [stable, canary]
    assert (shown[stable]["role"], shown[canary]["role"]) == ("stable", "canary")
    for version in (stable, canary):
        answered = [r for r in records if r["served_version"] == version]
        assert shown[version]["answered"] == len(answered)
        assert shown[version]["errors"] == 0 and shown[version]["shadowed"] == 0
        latencies = sorted(r["latency_ms"] for r in answered)
        assert latencies[0] <= shown[version]["latency_p50_ms"] <= latencies[-1]
    assert figures["agreement"]["rows"] == 0  # split mode: no row scored by both
    assert main([*args[:-1]]) == 0  # the table
    table = capsys.readouterr().out
    assert "requests answered" in table and stable in table and canary in table


def test_rollout_status_without_a_bucket_says_what_to_pass(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLSERVE_BUCKET", raising=False)
    assert main(["rollout", "status"]) == 1
    assert "no bucket: pass --bucket" in capsys.readouterr().err


@pytest.fixture
def shadow(
    emulators: Emulators, trained: TrainResult, canary_model: TrainResult
) -> tuple[Emulator, dict[str, xgb.Booster]]:
    emu = emulators.get(
        "lambda",
        config={
            "canaryModelPath": str(canary_model.model_path),
            "canaryMode": "shadow",
            "canaryPercent": "50",
        },
    )
    return emu, _boosters(emu, trained, canary_model)


def test_shadow_mode_answers_with_the_stable_model_and_captures_both(
    shadow: tuple[Emulator, dict[str, xgb.Booster]], example: Example
) -> None:
    emu, boosters = shadow
    stable, canary = boosters
    rows = example.rows(4)
    ids = []
    with Api(emu.url, emu.api_key) as api:
        for _ in range(200):
            r = api.post("/predict", json={"instances": rows.tolist()})
            assert r.status_code == 200, r.text
            assert r.json()["model_version"] == stable
            np.testing.assert_allclose(
                r.json()["predictions"], reference(boosters[stable], rows), rtol=1e-6
            )
            ids.append(r.headers["x-amzn-RequestId"])
    records = _captured(emu)
    # every shadowed request is captured (captureSamplePercent is 0): about half of them
    assert 70 <= len(records) <= 130, len(records)
    assert {r["request_id"] for r in records} <= set(ids)
    for record in records:
        assert record["served_version"] == stable
        assert record["_key"].startswith(f"capture/{emu.model.name}/{stable}/")
        assert set(record["versions"]) == {stable, canary}
        for version, predictions in record["versions"].items():
            np.testing.assert_allclose(predictions, reference(boosters[version], rows), 1e-6)


def test_the_onnx_engine_serves_both_versions(
    emulators: Emulators, trained: TrainResult, canary_model: TrainResult, example: Example
) -> None:
    rows = example.rows(5)
    emulators.stop()
    with Emulator().start(
        architecture="lambda",
        model=trained.model_path,
        engine=contract.ENGINE_ONNX,
        config={"canaryModelPath": str(canary_model.model_path), "canaryPercent": "50"},
    ) as emu:
        boosters = _boosters(emu, trained, canary_model)
        with Api(emu.url, emu.api_key) as api:
            assert api.get("/health").json()["canary"]["engine"] == contract.ENGINE_ONNX
            served: Counter[str] = Counter()
            for i in range(100):
                r = api.post(
                    "/predict",
                    json={"instances": rows.tolist()},
                    headers={contract.REQUEST_ID_HEADER: f"onnx-{i}"},
                )
                version = r.json()["model_version"]
                served[version] += 1
                np.testing.assert_allclose(
                    r.json()["predictions"], reference(boosters[version], rows), atol=1e-5
                )
    assert set(served) == set(boosters)


def test_a_canary_with_other_features_is_refused(
    emulators: Emulators, trained: TrainResult, tmp_path: Path
) -> None:
    emulators.stop()
    rng = np.random.default_rng(0)
    other = xgb.train(
        {"objective": "binary:logistic"},
        xgb.DMatrix(rng.random((50, 3)), label=rng.integers(0, 2, 50)),
        num_boost_round=2,
    )
    path = tmp_path / "model.json"
    other.save_model(str(path))
    with pytest.raises(Exception, match="canary's feature names"):
        Emulator().start(
            architecture="lambda",
            model=trained.model_path,
            config={"canaryModelPath": str(path), "canaryPercent": "10"},
        )


def test_the_demo_shows_a_canary_rollout(
    emulators: Emulators, trained: TrainResult, canary_model: TrainResult, tmp_path: Path
) -> None:
    from .test_cli import mlserve

    emulators.stop()
    result = mlserve(
        "demo",
        "--model-dir",
        str(trained.model_path.parent),
        "--canary",
        "30",
        "--canary-mode",
        "shadow",
        "--canary-model",
        str(canary_model.model_path),
        cwd=tmp_path,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    assert "mode shadow, canary 30 %" in out
    assert "requests answered" in out and "scored in shadow" in out
    agreement = re.search(r"prediction agreement: ([0-9.]+) % of (\d+) rows", out)
    assert agreement is not None, out
    assert int(agreement.group(2)) > 0


# --- the job architectures: lambda-ecs (ECS tasks) and stepfunctions-batch (Batch jobs) -------


def _job_stack(
    emulators: Emulators, architecture: str, trained: TrainResult, canary_model: TrainResult
) -> tuple[Emulator, dict[str, xgb.Booster]]:
    emu = emulators.get(
        architecture,
        config={"canaryModelPath": str(canary_model.model_path), "canaryPercent": "50"},
    )
    return emu, _boosters(emu, trained, canary_model)


# One architecture per stack: the emulator imports a handler module once per process, so two
# job API functions of one stack (lambda-ecs beside stepfunctions-batch) would share one
# configuration (the last one deployed).
@pytest.fixture
def ecs_jobs(
    emulators: Emulators, trained: TrainResult, canary_model: TrainResult
) -> tuple[Emulator, dict[str, xgb.Booster]]:
    """lambda-ecs with a canary scoring half of the jobs (POST /jobs runs an ECS task)."""
    return _job_stack(emulators, contract.ARCH_LAMBDA_ECS, trained, canary_model)


@pytest.fixture
def batch_jobs(
    emulators: Emulators, trained: TrainResult, canary_model: TrainResult
) -> tuple[Emulator, dict[str, xgb.Booster]]:
    """stepfunctions-batch with a canary: job configs uploaded to S3 run as Batch jobs."""
    return _job_stack(emulators, contract.ARCH_STEPFUNCTIONS_BATCH, trained, canary_model)


def _job_when_done(api: Api, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        job: dict[str, Any] = api.get(f"/jobs/{job_id}").json()
        if job["status"] not in ("PENDING", "RUNNING"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.2)


def test_job_api_jobs_are_split_and_scored_by_the_version_they_record(
    ecs_jobs: tuple[Emulator, dict[str, xgb.Booster]], example: Example
) -> None:
    emu, boosters = ecs_jobs
    stable, canary = boosters
    rows = example.rows(4)
    expected = {version: reference(b, rows) for version, b in boosters.items()}
    with Api(emu.url, emu.api_key) as api:
        health = api.get("/health").json()
        assert health["rollout"]["versions"] == [stable, canary]
        submitted = []
        for i in range(10):
            r = api.post(
                "/jobs",
                json={"instances": rows.tolist()},
                headers={contract.REQUEST_ID_HEADER: f"job-client-{i}"},
            )
            assert r.status_code == 202, r.text
            submitted.append(r.json()["job_id"])
        pinned = api.post(
            "/jobs",
            json={"instances": rows.tolist()},
            headers={contract.MODEL_VERSION_HEADER: canary},
        ).json()["job_id"]
        scored: Counter[str] = Counter()
        for job_id in [*submitted, pinned]:
            job = _job_when_done(api, job_id)
            assert job["status"] == "SUCCEEDED", job
            version = job["model_version"]
            scored[version] += 1
            np.testing.assert_allclose(job["predictions"], expected[version], rtol=1e-6)
        assert _job_when_done(api, pinned)["model_version"] == canary
        assert set(scored) == {stable, canary}, scored  # 50 %: both among 10, surely
        listed = {j["job_id"] for j in api.get("/jobs", params={"limit": 100}).json()["jobs"]}
        r = api.post(
            "/jobs",
            json={"instances": rows.tolist()},
            headers={contract.MODEL_VERSION_HEADER: "v-unknown"},
        )
        assert_error(r, 400, "unknown_model_version", "v-unknown", stable, canary)
        after = {j["job_id"] for j in api.get("/jobs", params={"limit": 100}).json()["jobs"]}
        assert after == listed  # nothing created


def test_batch_configs_are_scored_by_the_version_they_record(
    batch_jobs: tuple[Emulator, dict[str, xgb.Booster]], example: Example
) -> None:
    from .test_stepfunctions_batch import record, upload_config, wait_terminal

    emu, boosters = batch_jobs
    rows = example.rows(30)
    body = ",".join(example.names) + "\n"
    body += "\n".join(",".join(f"{v:.6g}" for v in row) for row in rows.tolist())
    emu.client("s3").put_object(Bucket=emu.bucket, Key="inputs/canary.csv", Body=body.encode())
    sent = np.asarray([[float(f"{v:.6g}") for v in row] for row in rows.tolist()], np.float32)
    for version in boosters:
        job_id = upload_config(
            emu,
            f"canary-{version}",
            {
                "input_uri": f"s3://{emu.bucket}/inputs/canary.csv",
                "output_uri": f"s3://{emu.bucket}/results/canary-{version}/",
                "format": "csv",
                "model_version": version,
            },
        )
        assert record(emu, job_id)["model_version"] == version
        job = wait_terminal(emu, job_id)
        assert job["status"] == "SUCCEEDED", job
        s3 = emu.client("s3")
        prefix = f"results/canary-{version}/"
        manifest = json.loads(
            s3.get_object(Bucket=emu.bucket, Key=prefix + contract.MANIFEST_NAME)["Body"].read()
        )
        assert manifest["model_version"] == version
        part = s3.get_object(Bucket=emu.bucket, Key=prefix + contract.part_name(0, "csv"))
        table = pacsv.read_csv(pa.BufferReader(part["Body"].read()))
        predictions = table.column("prediction").to_numpy()
        np.testing.assert_allclose(predictions, reference(boosters[version], sent), rtol=1e-5)
    rejected = upload_config(
        emu,
        "canary-unknown",
        {
            "input_uri": f"s3://{emu.bucket}/inputs/canary.csv",
            "output_uri": f"s3://{emu.bucket}/results/canary-unknown/",
            "format": "csv",
            "model_version": "v-unknown",
        },
    )
    failed = record(emu, rejected)
    assert failed["status"] == "FAILED"
    assert "model_version: 'v-unknown' is not a version" in failed["error"]["message"]


def test_rollout_status_counts_each_versions_jobs_from_the_job_records(
    batch_jobs: tuple[Emulator, dict[str, xgb.Booster]], capsys: pytest.CaptureFixture[str]
) -> None:
    from boto3.dynamodb.types import TypeDeserializer

    emu, boosters = batch_jobs
    stable, canary = boosters
    read = TypeDeserializer().deserialize
    items = emu.client("dynamodb").scan(TableName=emu.table)["Items"]
    records = [{k: read(v) for k, v in item.items()} for item in items]
    assert records, "the tests above created jobs"
    args = ["rollout", "status", "--bucket", emu.bucket, "--table", emu.table]
    args += ["--endpoint-url", emu.endpoint_url, "--url", emu.url, "--api-key", str(emu.api_key)]
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    shown = {j["version"]: j for j in json.loads(capsys.readouterr().out)["jobs"]}
    assert list(shown) == [stable, canary]
    assert (shown[stable]["role"], shown[canary]["role"]) == ("stable", "canary")
    for version in (stable, canary):
        mine = [r for r in records if r["model_version"] == version]
        assert shown[version]["jobs"] == len(mine)
        for status in ("succeeded", "failed"):
            assert shown[version][status] == sum(r["status"] == status.upper() for r in mine)
    assert main(args) == 0  # the table, without a captured request (no lambda here)
    table = capsys.readouterr().out
    assert "jobs by model version" in table and stable in table and canary in table
