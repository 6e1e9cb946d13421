"""runtime/jobs.py: ids, item sizes, requests (pure) and the conditional store (moto DynamoDB)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import boto3
import numpy as np
import pytest

from runtime import contract, jobs
from runtime.jobs import Job, JobError, JobExists, JobStore, TransitionRejected
from runtime.payload import FeatureSchema, Limits, PayloadError
from tests.runtime.jobenv import BUCKET, REGION, TABLE, create_job_table

NOW = 1_795_568_523.123  # 2026-11-25T01:02:03.123Z
SCHEMA = FeatureSchema.of(["a", "b", "c"])
LIMITS = Limits(max_rows=10)


@pytest.fixture
def store(aws: None) -> JobStore:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_job_table(dynamodb)
    return JobStore(dynamodb, TABLE, ttl_days=7, clock=lambda: NOW)


def pending(store: JobStore, job_id: str = "a" * 32, **attributes: Any) -> Job:
    job = store.new_job(
        job_id, architecture="lambda-ecs", model_version="abc123", request_sha256="s", **attributes
    )
    return store.create(job)


# --- ids and time -------------------------------------------------------------------------------


def test_job_ids_are_32_hex_and_idempotent_ids_are_stable_per_caller() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", jobs.new_job_id())
    assert jobs.new_job_id() != jobs.new_job_id()
    one = jobs.idempotent_job_id("key-1", "order-7")
    assert re.fullmatch(r"[0-9a-f]{32}", one)
    assert one == jobs.idempotent_job_id("key-1", "order-7")
    assert one != jobs.idempotent_job_id("key-2", "order-7")
    assert jobs.idempotent_job_id(None, "k") == jobs.idempotent_job_id("anonymous", "k")


def test_timestamps_are_iso_utc_milliseconds_and_ttl_is_days_ahead() -> None:
    assert jobs.iso_timestamp(NOW) == "2026-11-25T01:02:03.123Z"
    assert jobs.parse_timestamp("2026-11-25T01:02:03.123Z") == pytest.approx(NOW)
    assert jobs.expiry(NOW, 30) == int(NOW) + 30 * 86_400


# --- item size ----------------------------------------------------------------------------------


def test_item_size_follows_dynamodb_rules() -> None:
    assert jobs.item_size({"ab": {"S": "héllo"}}) == 2 + 6
    assert jobs.item_size({"n": {"N": "12345"}}) == 1 + 4  # 5 digits: 3 bytes + 1
    assert jobs.item_size({"b": {"BOOL": True}, "z": {"NULL": True}}) == 4
    error = {"M": {"code": {"S": "x"}, "message": {"S": "yz"}}}
    assert jobs.attribute_size(error) == 3 + (4 + 1 + 1) + (7 + 2 + 1)
    assert jobs.attribute_size({"L": [{"S": "a"}, {"N": "1"}]}) == 3 + (1 + 1) + (2 + 1)


def test_fits_inline_measures_the_serialized_item(store: JobStore) -> None:
    job = store.new_job("b" * 32, architecture="lambda-ecs", model_version="v")
    base = jobs.item_size(job.to_item())
    room = contract.MAX_INLINE_ITEM_BYTES - base - len("predictions")
    assert jobs.fits_inline(job, predictions="x" * (room - 1))
    assert not jobs.fits_inline(job, predictions="x" * room)
    assert not jobs.fits_inline(job, predictions="é" * (room // 2 + 1)), "UTF-8 bytes count"


# --- the store ----------------------------------------------------------------------------------


def test_create_get_round_trip_with_ttl(store: JobStore) -> None:
    job = pending(store, rows=2, instances="[[1,2,3],[4,5,6]]")
    got = store.get(job.job_id)
    assert got == job
    assert got is not None
    assert got.status == "PENDING"
    assert got.created_at == got.updated_at == "2026-11-25T01:02:03.123Z"
    assert got.expires_at == int(NOW) + 7 * 86_400
    assert got.rows == 2
    assert got.attempts == 0
    assert store.get("f" * 32) is None


def test_create_never_overwrites(store: JobStore) -> None:
    job = pending(store, rows=1)
    with pytest.raises(JobExists):
        store.create(replace(job, rows=99))
    got = store.get(job.job_id)
    assert got is not None
    assert got.rows == 1


def test_transitions_move_forward_only(store: JobStore) -> None:
    job = pending(store)
    running = store.transition(job.job_id, "RUNNING")
    assert running.status == "RUNNING"
    with pytest.raises(TransitionRejected) as again:
        store.transition(job.job_id, "RUNNING")
    assert again.value.current == "RUNNING"
    done = store.transition(job.job_id, "SUCCEEDED", values={"predictions": "[0.5]", "rows": 1})
    assert (done.status, done.predictions, done.rows) == ("SUCCEEDED", "[0.5]", 1)
    for target in ("RUNNING", "FAILED", "CANCELLED", "SUCCEEDED"):
        with pytest.raises(TransitionRejected) as rejected:
            store.transition(job.job_id, target, error=JobError("late", "late writer"))
        assert rejected.value.current == "SUCCEEDED"
        assert "SUCCEEDED" in str(rejected.value)
    final = store.get(job.job_id)
    assert final is not None
    assert (final.status, final.error, final.predictions) == ("SUCCEEDED", None, "[0.5]")


def test_a_duplicate_completion_does_not_overwrite(store: JobStore) -> None:
    job = pending(store)
    store.transition(job.job_id, "SUCCEEDED", values={"predictions": "[0.1]"})
    with pytest.raises(TransitionRejected) as second:
        store.transition(job.job_id, "SUCCEEDED", values={"predictions": "[0.9]"})
    assert second.value.current == "SUCCEEDED"
    got = store.get(job.job_id)
    assert got is not None
    assert got.predictions == "[0.1]"


def test_expected_narrows_the_sources_and_unknown_jobs_are_rejected(store: JobStore) -> None:
    job = pending(store)
    store.transition(job.job_id, "RUNNING")
    with pytest.raises(TransitionRejected) as narrowed:
        store.transition(job.job_id, "FAILED", expected=["PENDING"])
    assert narrowed.value.current == "RUNNING"
    with pytest.raises(TransitionRejected) as absent:
        store.transition("0" * 32, "CANCELLED")
    assert absent.value.current is None
    with pytest.raises(ValueError, match="no status may move to PENDING"):
        store.transition(job.job_id, "PENDING")


def test_update_sets_and_counts_without_touching_the_status(store: JobStore) -> None:
    job = pending(store)
    store = JobStore(store.dynamodb, TABLE, clock=lambda: NOW + 1.5)
    updated = store.update(job.job_id, {"task_arn": "arn:t"}, increment={"attempts": 1})
    assert (updated.status, updated.task_arn, updated.attempts) == ("PENDING", "arn:t", 1)
    assert updated.updated_at == "2026-11-25T01:02:04.623Z"
    assert updated.created_at == job.created_at
    store.transition(job.job_id, "CANCELLED", error=JobError("cancelled", "by the caller"))
    with pytest.raises(TransitionRejected):
        store.update(job.job_id, {"task_arn": "arn:u"}, statuses=jobs.ACTIVE_STATUSES)
    with pytest.raises(ValueError, match="transition"):
        store.update(job.job_id, {"status": "PENDING"})
    with pytest.raises(TransitionRejected):
        store.update("1" * 32, {"task_arn": "arn:v"})
    assert store.get("1" * 32) is None, "an update never creates a record"


def test_unknown_attributes_survive_a_round_trip(store: JobStore) -> None:
    job = replace(
        store.new_job("c" * 32, architecture="stepfunctions-batch", model_version="v"),
        extra={"shards": 4, "execution_arn": "arn:x"},
    )
    store.create(job)
    got = store.get(job.job_id)
    assert got is not None
    assert got.extra == {"shards": 4, "execution_arn": "arn:x"}


# --- API view -----------------------------------------------------------------------------------


def test_to_api_shows_predictions_or_output_uri_and_errors_when_finished() -> None:
    base = Job(
        job_id="d" * 32,
        status="SUCCEEDED",
        architecture="lambda-ecs",
        created_at="2026-11-25T01:02:03.123Z",
        updated_at="2026-11-25T01:02:04.000Z",
        model_version="v1",
        rows=2,
        attempts=1,
        predictions="[0.25,0.75]",
        task_arn="arn:secret",
        request_sha256="hash",
    )
    body = jobs.to_api(base, status_url="http://h/v1/jobs/" + "d" * 32)
    assert body == {
        "job_id": "d" * 32,
        "status": "SUCCEEDED",
        "architecture": "lambda-ecs",
        "created_at": "2026-11-25T01:02:03.123Z",
        "updated_at": "2026-11-25T01:02:04.000Z",
        "model_version": "v1",
        "attempts": 1,
        "rows": 2,
        "predictions": [0.25, 0.75],
        "status_url": "http://h/v1/jobs/" + "d" * 32,
    }
    in_s3 = jobs.to_api(replace(base, predictions=None, output_uri="s3://b/results/x.json"))
    assert in_s3["output_uri"] == "s3://b/results/x.json"
    assert "predictions" not in in_s3
    failed = replace(base, status="FAILED", predictions=None, error=JobError("x", "why"))
    assert jobs.to_api(failed)["error"] == {"code": "x", "message": "why"}
    running = replace(base, status="RUNNING", predictions=None, error=JobError("x", "y"))
    assert "error" not in jobs.to_api(running)


# --- requests -----------------------------------------------------------------------------------


def test_rows_are_stored_as_compact_json_that_reads_back_exactly() -> None:
    matrix = np.array([[17.99, 0.1, np.nan], [1e-5, -0.0, 123456789.0]], dtype=np.float32)
    text = jobs.encode_rows(matrix)
    assert text == "[[17.99,0.1,null],[1e-05,-0.0,1.2345679e+08]]"
    back = np.array(json.loads(text), dtype=np.float64).astype(np.float32)
    np.testing.assert_array_equal(back, matrix)


def test_predictions_documents_round_trip() -> None:
    text = jobs.encode_predictions(np.array([0.125, 0.9876543], dtype=np.float32))
    assert text == "[0.125,0.9876543]"
    assert jobs.encode_predictions(np.array([[0.5, 0.5]], dtype=np.float32)) == "[[0.5,0.5]]"
    document = jobs.predictions_document("e" * 32, "v1", text)
    assert json.loads(document)["job_id"] == "e" * 32
    assert jobs.decode_predictions(document) == [0.125, 0.9876543]
    with pytest.raises(ValueError, match="non-finite"):
        jobs.encode_predictions(np.array([np.nan]))


def test_the_same_rows_in_any_form_are_the_same_request() -> None:
    forms = [
        ('{"instances": [[1, 2, 3]]}', "application/json"),
        ('{"instances": [{"c": 3, "a": 1, "b": 2}]}', "application/json"),
        ("a,b,c\n1,2,3\n", "text/csv"),
        ("1.0,2.0,3.0", "text/csv"),
    ]
    requests = [jobs.parse_job_request(b, t, SCHEMA, LIMITS, BUCKET) for b, t in forms]
    assert {r.sha256 for r in requests} == {requests[0].sha256}
    assert requests[0].rows == 1
    other = jobs.parse_job_request('{"instances": [[1, 2, 4]]}', None, SCHEMA, LIMITS, BUCKET)
    assert other.sha256 != requests[0].sha256


def test_input_uri_requests() -> None:
    def parse(doc: dict[str, Any]) -> jobs.JobRequest:
        return jobs.parse_job_request(json.dumps(doc), "application/json", SCHEMA, LIMITS, BUCKET)

    request = parse({"input_uri": f"s3://{BUCKET}/inputs/batch.csv"})
    assert (request.input_uri, request.format, request.rows) == (
        f"s3://{BUCKET}/inputs/batch.csv",
        "csv",
        None,
    )
    explicit = parse(
        {
            "input_uri": f"s3://{BUCKET}/inputs/rows",
            "format": "jsonl",
            "output_uri": f"s3://{BUCKET}/results/mine/",
        }
    )
    assert (explicit.format, explicit.output_uri) == ("jsonl", f"s3://{BUCKET}/results/mine/")
    assert explicit.sha256 != request.sha256

    def rejected(doc: dict[str, Any]) -> PayloadError:
        with pytest.raises(PayloadError) as caught:
            parse(doc)
        assert caught.value.status == 400
        return caught.value

    avro = rejected({"input_uri": f"s3://{BUCKET}/inputs/x.avro", "format": "avro"})
    assert avro.code == "unsupported_format"
    assert "csv, json, jsonl, parquet" in avro.message
    assert rejected({"input_uri": "s3://other-bucket/inputs/x.csv"}).code == "invalid_uri"
    assert rejected({"input_uri": f"s3://{BUCKET}/models/x.csv"}).code == "invalid_uri"
    assert rejected({"input_uri": f"s3://{BUCKET}/inputs/"}).code == "invalid_uri"
    outside = {"input_uri": f"s3://{BUCKET}/inputs/x.csv", "output_uri": f"s3://{BUCKET}/jobs/"}
    assert rejected(outside).code == "invalid_uri"
    assert rejected({"input_uri": f"s3://{BUCKET}/inputs/x"}).code == "invalid_format"
    both = {"input_uri": f"s3://{BUCKET}/inputs/x.csv", "instances": [[1, 2, 3]]}
    assert rejected(both).code == "invalid_body"
    shards = {"input_uri": f"s3://{BUCKET}/inputs/x.csv", "shards": 4}
    assert rejected(shards).code == "unsupported_option"
    assert rejected({"input_uri": 7}).code == "invalid_uri"


def test_inline_job_requests_are_validated_like_predict() -> None:
    with pytest.raises(PayloadError) as caught:
        jobs.parse_job_request('{"instances": [[1, 2]]}', None, SCHEMA, LIMITS, BUCKET)
    assert caught.value.code == "wrong_feature_count"
    with pytest.raises(PayloadError) as broken:
        jobs.parse_job_request('{"input_uri": ', "application/json", SCHEMA, LIMITS, BUCKET)
    assert broken.value.code == "malformed_json"


# --- metrics: terminal statuses counted where they are written ------------------------------------


def emf_counts(
    out: str, job_id: str | None = None
) -> list[tuple[str, str, list[list[str]], dict[str, str]]]:
    """(namespace, metric, dimension sets, dimension values) of each EMF record printed; each
    names its job (``job_id``, a property like every log line of a job has)."""
    found = []
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        for directive in record.get("_aws", {}).get("CloudWatchMetrics", []):
            if job_id is not None:
                assert record["job_id"] == job_id
            for metric in directive["Metrics"]:
                assert record[metric["Name"]] == [1.0]
                values = {d: record[d] for dims in directive["Dimensions"] for d in dims}
                found.append(
                    (directive["Namespace"], metric["Name"], directive["Dimensions"], values)
                )
    return found


def test_a_job_recorded_failed_or_succeeded_is_counted_once(
    store: JobStore, capsys: pytest.CaptureFixture[str]
) -> None:
    # per model version (the record's: a canary's jobs beside the stable version's), and
    # service-wide (what the jobs alarms read)
    service = (
        contract.METRICS_NAMESPACE,
        [["service", "model_version"], ["service"]],
        {"service": contract.SERVICE_NAME, "model_version": "abc123"},
    )
    pending(store, "f" * 32)
    store.transition("f" * 32, contract.STATUS_RUNNING)
    assert emf_counts(capsys.readouterr().out) == []  # PENDING, RUNNING: not counted
    store.transition("f" * 32, contract.STATUS_FAILED, error=JobError("boom", "it broke"))
    ((namespace, name, dims, values),) = emf_counts(capsys.readouterr().out, "f" * 32)
    assert (namespace, dims, values) == service and name == "JobsFailed"
    with pytest.raises(TransitionRejected):  # already FAILED: nothing written, nothing counted
        store.transition("f" * 32, contract.STATUS_FAILED, expected=[contract.STATUS_RUNNING])
    assert emf_counts(capsys.readouterr().out) == []

    pending(store, "s" * 32)
    store.transition("s" * 32, contract.STATUS_SUCCEEDED)
    ((namespace, name, dims, values),) = emf_counts(capsys.readouterr().out, "s" * 32)
    assert (namespace, dims, values) == service and name == "JobsSucceeded"

    # a job created FAILED (an invalid job config) is counted too
    store.create(
        replace(store.new_job("x" * 32, architecture="a", model_version="v"), status="FAILED")
    )
    assert [c[1] for c in emf_counts(capsys.readouterr().out)] == ["JobsFailed"]


def test_disabled_metrics_count_nothing(
    store: JobStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    pending(store)
    store.transition("a" * 32, contract.STATUS_FAILED)
    assert emf_counts(capsys.readouterr().out) == []
