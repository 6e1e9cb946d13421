"""The scoring entrypoint in job mode: ``runtime.scoring.main`` in-process against moto, and one
``python -m runtime.scoring`` subprocess against a moto server to prove the exit codes."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from mlserve.train import TrainResult, load_example_data
from runtime import contract, jobs
from runtime.jobs import Job, JobStore
from runtime.scoring import job as scoring_job
from runtime.scoring import main
from tests.runtime.jobenv import (
    BUCKET,
    REGION,
    TABLE,
    create_job_table,
    deploy_model,
    reference,
    scoring_env,
)

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Deployed:
    env: dict[str, str]
    store: JobStore
    s3: Any
    model: TrainResult

    def submit(self, **attributes: Any) -> Job:
        job = self.store.new_job(
            jobs.new_job_id(), architecture="lambda-ecs", model_version="abc123", **attributes
        )
        return self.store.create(job)

    def submit_rows(self, rows: np.ndarray) -> Job:
        request = jobs.inline_request(rows.astype(np.float32))
        return self.submit(rows=request.rows, instances=request.instances)

    def run(self, job: Job) -> int:
        return main([], env={**self.env, contract.ENV_JOB_ID: job.job_id})

    def record(self, job: Job) -> Job:
        return self.store.require(job.job_id)


@pytest.fixture
def deployed(s3: Any, example_model: TrainResult, tmp_path: Path) -> Deployed:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_job_table(dynamodb)
    env = scoring_env(deploy_model(s3, example_model), tmp_path / "cache")
    return Deployed(env, JobStore(dynamodb, TABLE), s3, example_model)


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    previous = scoring_job.logger.registered_handler.setStream(stream)
    yield stream
    scoring_job.logger.registered_handler.setStream(previous)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


# --- success ------------------------------------------------------------------------------------


def test_inline_rows_equal_booster_predict(deployed: Deployed, log: io.StringIO) -> None:
    rows = load_example_data().x[:25]
    job = deployed.submit_rows(rows)
    assert deployed.run(job) == 0
    done = deployed.record(job)
    assert done.status == "SUCCEEDED"
    assert done.rows == 25
    assert done.output_uri is None
    assert done.predictions is not None
    np.testing.assert_allclose(
        json.loads(done.predictions), reference(deployed.model, rows), atol=1e-6
    )
    records = lines(log)
    assert records, "the entrypoint logs JSON lines"
    assert all(r["job_id"] == job.job_id for r in records)
    assert any(r["message"] == "job succeeded" for r in records)


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "parquet"])
def test_input_uri_formats(deployed: Deployed, fmt: str) -> None:
    data = load_example_data()
    rows = data.x[100:140]
    body: str | bytes
    if fmt == "parquet":  # columns by feature name, in reverse order, two row groups
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        names = list(reversed(data.feature_names))
        columns = {n: rows[:, data.feature_names.index(n)] for n in names}
        out = io.BytesIO()
        pq.write_table(pa.table(columns), out, row_group_size=25)
        body = out.getvalue()
    elif fmt == "csv":
        body = ",".join(data.feature_names) + "\n"
        body += "\n".join(",".join(map(repr, r)) for r in rows.tolist())
    elif fmt == "json":
        body = json.dumps({"instances": rows.tolist()})
    else:  # objects by feature name, one per line, any key order
        body = "\n".join(
            json.dumps(dict(zip(reversed(data.feature_names), reversed(r), strict=True)))
            for r in rows.tolist()
        )
    key = f"inputs/rows.{fmt}"
    deployed.s3.put_object(
        Bucket=BUCKET, Key=key, Body=body.encode() if isinstance(body, str) else body
    )
    job = deployed.submit(input_uri=f"s3://{BUCKET}/{key}", format=fmt)
    assert deployed.run(job) == 0
    done = deployed.record(job)
    assert (done.status, done.rows) == ("SUCCEEDED", 40)
    assert done.predictions is not None
    np.testing.assert_allclose(
        json.loads(done.predictions), reference(deployed.model, rows), atol=1e-6
    )


def test_predictions_too_large_for_the_item_go_to_s3(deployed: Deployed) -> None:
    rng = np.random.default_rng(3)
    base = load_example_data().x
    rows = base[rng.integers(0, len(base), 40_000)] * rng.uniform(0.9, 1.1, (40_000, 30))
    deployed.s3.put_object(
        Bucket=BUCKET, Key="inputs/big.json", Body=json.dumps({"instances": rows.tolist()}).encode()
    )
    job = deployed.submit(input_uri=f"s3://{BUCKET}/inputs/big.json", format="json")
    assert deployed.run(job) == 0
    done = deployed.record(job)
    assert done.status == "SUCCEEDED"
    assert done.predictions is None
    assert done.output_uri == f"s3://{BUCKET}/results/{job.job_id}/predictions.json"
    obj = deployed.s3.get_object(Bucket=BUCKET, Key=f"results/{job.job_id}/predictions.json")
    predictions = jobs.decode_predictions(obj["Body"].read())
    assert len(predictions) == 40_000
    assert len(json.dumps(predictions)) > contract.MAX_INLINE_ITEM_BYTES, "really too large"
    np.testing.assert_allclose(
        predictions, reference(deployed.model, rows.astype(np.float32)), atol=1e-6
    )


def test_a_given_output_uri_is_used(deployed: Deployed) -> None:
    rows = load_example_data().x[:3]
    deployed.s3.put_object(
        Bucket=BUCKET, Key="inputs/x.json", Body=json.dumps({"instances": rows.tolist()}).encode()
    )
    job = deployed.submit(
        input_uri=f"s3://{BUCKET}/inputs/x.json",
        format="json",
        output_uri=f"s3://{BUCKET}/results/mine/",
    )
    assert deployed.run(job) == 0
    done = deployed.record(job)
    assert done.output_uri == f"s3://{BUCKET}/results/mine/predictions.json"
    body = deployed.s3.get_object(Bucket=BUCKET, Key="results/mine/predictions.json")["Body"]
    assert len(jobs.decode_predictions(body.read())) == 3


# --- failures -----------------------------------------------------------------------------------


def test_scoring_raises_is_failed_and_exit_1(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch, log: io.StringIO
) -> None:
    def boom(self: Any, rows: np.ndarray) -> np.ndarray:
        raise RuntimeError("secret internals")

    monkeypatch.setattr("runtime.model.LoadedModel.predict", boom)
    job = deployed.submit_rows(load_example_data().x[:2])
    assert deployed.run(job) == 1
    failed = deployed.record(job)
    assert failed.status == "FAILED"
    assert failed.error is not None
    assert failed.error.code == "internal"
    assert "RuntimeError" in failed.error.message
    assert "secret" not in failed.error.message, "the record is shown to callers"
    error_line = next(r for r in lines(log) if r["level"] == "ERROR")
    assert error_line["job_id"] == job.job_id
    assert "secret internals" in error_line["exception"], "the log carries the cause"


def test_a_corrupt_model_is_failed_model_unavailable(deployed: Deployed) -> None:
    deployed.s3.put_object(Bucket=BUCKET, Key=contract.model_key("example", "abc123"), Body=b"{")
    job = deployed.submit_rows(load_example_data().x[:2])
    assert deployed.run(job) == 1
    failed = deployed.record(job)
    assert failed.error is not None
    assert failed.error.code == "model_unavailable"
    assert "sha256 mismatch" in failed.error.message


def test_bad_or_missing_input_is_failed_with_the_reason(deployed: Deployed) -> None:
    deployed.s3.put_object(Bucket=BUCKET, Key="inputs/bad.csv", Body=b"1,2,3\n")
    bad = deployed.submit(input_uri=f"s3://{BUCKET}/inputs/bad.csv", format="csv")
    assert deployed.run(bad) == 1
    error = deployed.record(bad).error
    assert error is not None
    assert error.code == "invalid_input"
    assert "expected 30" in error.message

    missing = deployed.submit(input_uri=f"s3://{BUCKET}/inputs/nope.csv", format="csv")
    assert deployed.run(missing) == 1
    error = deployed.record(missing).error
    assert error is not None
    assert error.code == "input_unavailable"
    assert "inputs/nope.csv" in error.message

    deployed.s3.put_object(Bucket=BUCKET, Key="inputs/bad.jsonl", Body=b"[1]\n{oops\n")
    lines_job = deployed.submit(input_uri=f"s3://{BUCKET}/inputs/bad.jsonl", format="jsonl")
    assert deployed.run(lines_job) == 1
    error = deployed.record(lines_job).error
    assert error is not None
    assert "line 2" in error.message

    deployed.s3.put_object(Bucket=BUCKET, Key="inputs/bad.parquet", Body=b"not parquet")
    parquet_job = deployed.submit(input_uri=f"s3://{BUCKET}/inputs/bad.parquet", format="parquet")
    assert deployed.run(parquet_job) == 1
    error = deployed.record(parquet_job).error
    assert error is not None
    assert (error.code, "not a Parquet file" in error.message) == ("invalid_input", True)


def test_sigterm_while_scoring_records_why_and_exits_1(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    def stopped_by_ecs(self: Any, rows: np.ndarray) -> np.ndarray:
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt scoring")

    monkeypatch.setattr("runtime.model.LoadedModel.predict", stopped_by_ecs)
    before = signal.getsignal(signal.SIGTERM)
    job = deployed.submit_rows(load_example_data().x[:2])
    assert deployed.run(job) == 1
    error = deployed.record(job).error
    assert error == jobs.JobError(
        "task_stopped", "the scoring task was stopped (SIGTERM) while scoring"
    )
    assert signal.getsignal(signal.SIGTERM) is before, "the previous handler is restored"


# --- races: cancelled, duplicates ---------------------------------------------------------------


def test_a_cancelled_job_is_not_scored(deployed: Deployed) -> None:
    job = deployed.submit_rows(load_example_data().x[:2])
    cancelled = deployed.store.transition(
        job.job_id, "CANCELLED", error=jobs.JobError("cancelled", "by the caller")
    )
    assert deployed.run(job) == 1
    assert deployed.record(job) == cancelled


def test_cancelled_while_scoring_the_late_success_is_rejected(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = deployed.submit_rows(load_example_data().x[:2])
    original = scoring_job.LoadedModel.predict

    def cancel_then_predict(self: Any, rows: np.ndarray) -> np.ndarray:
        deployed.store.transition(
            job.job_id, "CANCELLED", error=jobs.JobError("cancelled", "by the caller")
        )
        return original(self, rows)

    monkeypatch.setattr("runtime.model.LoadedModel.predict", cancel_then_predict)
    assert deployed.run(job) == 1
    record = deployed.record(job)
    assert record.status == "CANCELLED"
    assert record.predictions is None
    assert record.error == jobs.JobError("cancelled", "by the caller")


def test_a_duplicate_completion_does_not_overwrite(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = deployed.submit_rows(load_example_data().x[:2])
    original = scoring_job.LoadedModel.predict

    def other_task_finishes_first(self: Any, rows: np.ndarray) -> np.ndarray:
        deployed.store.transition(job.job_id, "SUCCEEDED", values={"predictions": "[1,1]"})
        return original(self, rows)

    monkeypatch.setattr("runtime.model.LoadedModel.predict", other_task_finishes_first)
    assert deployed.run(job) == 0, "the record is SUCCEEDED"
    assert deployed.record(job).predictions == "[1,1]", "the second writer did not overwrite"

    monkeypatch.setattr("runtime.model.LoadedModel.predict", original)
    before = deployed.record(job)
    assert deployed.run(job) == 0, "a finished job is not scored again"
    assert deployed.record(job) == before


def test_a_running_record_is_scored_by_a_retried_task(deployed: Deployed) -> None:
    job = deployed.submit_rows(load_example_data().x[:2])
    deployed.store.transition(job.job_id, "RUNNING")
    assert deployed.run(job) == 0
    assert deployed.record(job).status == "SUCCEEDED"


# --- usage --------------------------------------------------------------------------------------


def test_usage(deployed: Deployed, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], env=deployed.env) == 2
    assert "JOB_ID" in capsys.readouterr().out
    assert main(["--mode", "batch"], env=deployed.env) == 2, "no unimplemented mode is offered"
    assert main(["--job-id", "f" * 32], env=deployed.env) == 1, "unknown job"
    assert main([], env={contract.ENV_JOB_ID: "f" * 32}) == 1, "no JOB_TABLE"


# --- the real process ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_python_m_runtime_scoring_exit_codes(
    example_model: TrainResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        aws_env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        for name, value in aws_env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_job_table(dynamodb)
        store = JobStore(dynamodb, TABLE)
        env = scoring_env(deploy_model(s3, example_model), tmp_path / "cache")
        rows = load_example_data().x[:4]
        request = jobs.inline_request(rows.astype(np.float32))

        def run(job_id: str) -> subprocess.CompletedProcess[str]:
            process_env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
                **aws_env,
                **env,
                contract.ENV_JOB_ID: job_id,
            }
            return subprocess.run(
                [sys.executable, "-m", contract.SCORING_MODULE],
                env=process_env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        good = store.create(
            store.new_job(
                jobs.new_job_id(),
                architecture="lambda-ecs",
                model_version="abc123",
                rows=request.rows,
                instances=request.instances,
            )
        )
        ok = run(good.job_id)
        assert ok.returncode == 0, ok.stderr + ok.stdout
        done = store.require(good.job_id)
        assert done.status == "SUCCEEDED"
        assert done.predictions is not None
        np.testing.assert_allclose(
            json.loads(done.predictions), reference(example_model, rows), atol=1e-6
        )
        assert all(json.loads(line)["job_id"] == good.job_id for line in ok.stdout.splitlines())

        bad = store.create(
            store.new_job(
                jobs.new_job_id(),
                architecture="lambda-ecs",
                model_version="abc123",
                input_uri=f"s3://{BUCKET}/inputs/absent.csv",
                format="csv",
            )
        )
        failed = run(bad.job_id)
        assert failed.returncode == 1, failed.stderr + failed.stdout
        record = store.require(bad.job_id)
        assert record.status == "FAILED"
        assert record.error is not None
        assert record.error.code == "input_unavailable"
    finally:
        server.stop()
