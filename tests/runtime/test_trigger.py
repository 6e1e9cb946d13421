"""The trigger Lambda of stepfunctions-batch (runtime/handlers/trigger.py) and the job config
parser it shares with POST /jobs (runtime/jobs.parse_job_config), against moto's S3, DynamoDB and
Step Functions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from runtime import contract
from runtime.handlers import trigger
from runtime.jobs import JobStore, config_job_id, parse_job_config, parse_job_request
from runtime.payload import FeatureSchema, Limits, PayloadError
from tests.runtime.jobenv import (
    BUCKET,
    REGION,
    TABLE,
    FakeStepContext,
    create_job_table,
    create_state_machine,
    job_count,
)

CONTEXT = FakeStepContext("arn:aws:lambda:us-east-1:123456789012:function:mlserve-trigger")
MODEL_URI = f"s3://{BUCKET}/models/example/abc123/model.ubj"
VALID: dict[str, Any] = {
    "input_uri": f"s3://{BUCKET}/inputs/big.csv",
    "output_uri": f"s3://{BUCKET}/results/big/",
    "format": "csv",
    "shards": 4,
    "priority": "high",
    "id_column": "id",
}
PASS_MACHINE = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}


# --- the parser ---------------------------------------------------------------------------------


def test_a_valid_config_with_defaults() -> None:
    config = parse_job_config(
        {
            "input_uri": f"s3://{BUCKET}/inputs/day/",
            "output_uri": f"s3://{BUCKET}/results/day/",
            "format": "parquet",
        },
        BUCKET,
    )
    assert (config.shards, config.priority, config.id_column) == (1, "low", None)
    assert config.input_is_prefix
    assert parse_job_config(VALID, BUCKET).record_values() == VALID


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"format": "json"}, "format must be one of csv, parquet, jsonl"),
        ({"shards": 0}, "shards must be 1 to 10000"),
        ({"shards": 10001}, "shards must be 1 to 10000"),
        ({"shards": True}, "shards must be an integer"),
        ({"shards": "4"}, "shards must be an integer"),
        ({"priority": "urgent"}, "priority must be one of high, low"),
        ({"id_column": ""}, "id_column must be a non-empty string"),
        ({"input_uri": "s3://someone-else/inputs/x.csv"}, "must be in the stack bucket"),
        ({"input_uri": "https://example.com/x.csv"}, "is not an s3://bucket/key URI"),
        ({"input_uri": f"s3://{BUCKET}/models/example/abc123/model.ubj"}, "must be under"),
        ({"output_uri": f"s3://{BUCKET}/jobs/out/"}, "must be under"),
        ({"output_uri": f"s3://{BUCKET}/elsewhere/"}, "writes results/ only"),
        ({"input_uri": f"s3://{BUCKET}/data/x.csv"}, "reads inputs/"),
        ({"output_uri": f"s3://{BUCKET}/results/x.csv"}, "prefix ending in '/'"),
        ({"output_uri": f"s3://{BUCKET}/results/../models/"}, "'..'"),
        ({"colour": "blue"}, "unknown field(s) colour"),
    ],
)
def test_an_invalid_config_is_refused_with_its_reason(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_job_config({**VALID, **change}, BUCKET)
    assert caught.value.code == "invalid_job_config"
    assert reason in caught.value.message


@pytest.mark.parametrize("missing", ["input_uri", "output_uri", "format"])
def test_required_fields(missing: str) -> None:
    doc = {k: v for k, v in VALID.items() if k != missing}
    with pytest.raises(PayloadError, match=f"{missing} is required"):
        parse_job_config(doc, BUCKET)
    with pytest.raises(PayloadError, match="JSON object"):
        parse_job_config([VALID], BUCKET)


def test_post_jobs_in_batch_mode_accepts_shards_and_infers_the_format() -> None:
    schema, limits = FeatureSchema.of(("a", "b")), Limits(max_rows=10)
    body = json.dumps({"input_uri": f"s3://{BUCKET}/inputs/x.parquet", "shards": 3})
    request = parse_job_request(body, "application/json", schema, limits, BUCKET, batch=True)
    assert (request.format, request.shards, request.priority) == ("parquet", 3, "low")
    assert request.output_uri is None  # the launcher sets results/{job_id}/
    with pytest.raises(PayloadError) as caught:  # the other architectures still refuse shards
        parse_job_request(body, "application/json", schema, limits, BUCKET)
    assert caught.value.code == "unsupported_option"


def test_job_ids_are_derived_from_bucket_key_and_version() -> None:
    one = config_job_id(BUCKET, "jobs/a.json", "v1")
    assert len(one) == 32 and int(one, 16) >= 0
    assert one == config_job_id(BUCKET, "jobs/a.json", "v1")
    assert one != config_job_id(BUCKET, "jobs/a.json", "v2")
    assert one != config_job_id(BUCKET, "jobs/b.json", "v1")


# --- the handler --------------------------------------------------------------------------------


@dataclass
class Trigger:
    s3: Any
    dynamodb: Any
    sfn: Any
    machine: str

    @property
    def store(self) -> JobStore:
        return JobStore(self.dynamodb, TABLE)

    def upload(self, name: str, doc: Any) -> dict[str, Any]:
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        key = f"jobs/{name}"
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        return event(key, sequencer=f"00{abs(hash(body)) % 10**12:012d}")

    def fire(self, evt: dict[str, Any]) -> list[dict[str, str]]:
        return list(trigger.handler(evt, CONTEXT)["results"])

    def executions(self) -> list[dict[str, Any]]:
        return list(self.sfn.list_executions(stateMachineArn=self.machine)["executions"])


def event(
    key: str, *, sequencer: str = "0055AED6DCD90281E5", version: str | None = None
) -> dict[str, Any]:
    obj: dict[str, Any] = {"key": key.replace(" ", "+"), "size": 10, "sequencer": sequencer}
    if version:
        obj["versionId"] = version
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "jobs",
                    "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
                    "object": obj,
                },
            }
        ]
    }


@pytest.fixture
def env(s3: Any) -> Trigger:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_job_table(dynamodb)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = create_state_machine(sfn, PASS_MACHINE, name="mlserve-batch")
    trigger.configure(
        env={
            contract.ENV_JOB_TABLE: TABLE,
            contract.ENV_DATA_BUCKET: BUCKET,
            contract.ENV_STATE_MACHINE_ARN: machine,
            contract.ENV_MODEL_URI: MODEL_URI,
        },
        clients={"dynamodb": dynamodb, "s3": s3, "stepfunctions": sfn},
    )
    return Trigger(s3, dynamodb, sfn, machine)


def test_a_valid_config_records_pending_and_starts_the_execution(env: Trigger) -> None:
    (result,) = env.fire(env.upload("big job.json", VALID))
    assert result["outcome"] == trigger.STARTED
    job = env.store.require(result["job_id"])
    assert job.status == contract.STATUS_PENDING
    assert job.architecture == contract.ARCH_STEPFUNCTIONS_BATCH
    assert job.model_version == "abc123"
    assert (job.input_uri, job.output_uri, job.format) == (
        VALID["input_uri"],
        VALID["output_uri"],
        "csv",
    )
    assert (job.shards, job.priority, job.id_column) == (4, "high", "id")
    assert job.source == f"s3://{BUCKET}/jobs/big job.json"  # the event's key is URL-encoded
    (execution,) = env.executions()
    assert execution["name"] == result["job_id"]
    described = env.sfn.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == {"job_id": result["job_id"]}


def test_an_invalid_config_is_recorded_failed_and_moved_to_rejected(env: Trigger) -> None:
    (result,) = env.fire(env.upload("bad.json", {**VALID, "shards": 0}))
    assert result["outcome"] == trigger.REJECTED
    job = env.store.require(result["job_id"])
    assert job.status == contract.STATUS_FAILED
    assert job.error is not None and job.error.code == "invalid_job_config"
    assert "shards must be 1 to 10000" in job.error.message
    keys = [o["Key"] for o in env.s3.list_objects_v2(Bucket=BUCKET, Prefix="jobs/")["Contents"]]
    assert keys == ["jobs/rejected/bad.json"]
    assert env.executions() == []


def test_a_config_that_is_not_json_is_rejected(env: Trigger) -> None:
    (result,) = env.fire(env.upload("garbled.json", b"{not json"))
    assert result["outcome"] == trigger.REJECTED
    assert "not JSON" in result["reason"]
    assert env.store.require(result["job_id"]).status == contract.STATUS_FAILED


def emf_metric_names(out: str) -> list[str]:
    records = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    return [
        m["Name"] for r in records for d in r["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]
    ]


def test_a_duplicate_event_starts_nothing(env: Trigger, capsys: pytest.CaptureFixture[str]) -> None:
    evt = env.upload("big.json", VALID)
    capsys.readouterr()
    (first,) = env.fire(evt)
    assert emf_metric_names(capsys.readouterr().out) == ["JobsSubmitted"]  # counted once
    (second,) = env.fire(evt)
    assert emf_metric_names(capsys.readouterr().out) == []
    assert first["outcome"] == trigger.STARTED
    assert second == {"key": "jobs/big.json", "job_id": first["job_id"], "outcome": "duplicate"}
    assert len(env.executions()) == 1
    assert job_count(env.dynamodb) == 1


def test_a_duplicate_event_of_a_rejected_config_does_nothing(env: Trigger) -> None:
    evt = env.upload("bad.json", {"format": "csv"})
    (first,) = env.fire(evt)
    (second,) = env.fire(evt)
    assert first["outcome"] == trigger.REJECTED and second["outcome"] == trigger.DUPLICATE
    assert job_count(env.dynamodb) == 1


def test_a_racing_duplicate_gets_conditional_check_failed(
    env: Trigger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two deliveries that both pass the existence check: attribute_not_exists lets one win."""
    evt = env.upload("big.json", VALID)
    (first,) = env.fire(evt)
    assert first["outcome"] == trigger.STARTED
    monkeypatch.setattr(JobStore, "get", lambda _self, _job_id, consistent=True: None)
    (second,) = env.fire(evt)
    assert second["outcome"] == trigger.DUPLICATE
    assert len(env.executions()) == 1


def test_a_new_upload_of_the_same_key_is_a_new_job(env: Trigger) -> None:
    (first,) = env.fire(env.upload("big.json", VALID))
    (second,) = env.fire(env.upload("big.json", {**VALID, "shards": 2}))
    assert first["job_id"] != second["job_id"]
    assert len(env.executions()) == 2


@pytest.mark.parametrize("key", ["jobs/rejected/bad.json", "jobs/readme.txt", "inputs/x.json"])
def test_rejected_and_other_keys_are_ignored(env: Trigger, key: str) -> None:
    env.s3.put_object(Bucket=BUCKET, Key=key, Body=b"{}")
    (result,) = env.fire(event(key))
    assert result["outcome"] == trigger.IGNORED
    assert job_count(env.dynamodb) == 0


def test_a_start_failure_records_the_job_failed(env: Trigger) -> None:
    trigger.configure(
        env={
            contract.ENV_JOB_TABLE: TABLE,
            contract.ENV_DATA_BUCKET: BUCKET,
            contract.ENV_STATE_MACHINE_ARN: env.machine.replace("mlserve-batch", "nope"),
            contract.ENV_MODEL_URI: MODEL_URI,
        },
        clients={"dynamodb": env.dynamodb, "s3": env.s3, "stepfunctions": env.sfn},
    )
    (result,) = env.fire(env.upload("big.json", VALID))
    assert result["outcome"] == trigger.NOT_STARTED
    job = env.store.require(result["job_id"])
    assert job.status == contract.STATUS_FAILED
    assert job.error is not None and job.error.code == "task_not_started"


class _WithoutListBucket:
    """moto's S3 as AWS answers a role without ``s3:ListBucket`` (the trigger's): GetObject of
    a missing key is 403 AccessDenied, not 404 NoSuchKey (S3 GetObject API reference)."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def get_object(self, **params: Any) -> Any:
        from botocore.exceptions import ClientError

        try:
            return self._s3.get_object(**params)
        except self._s3.exceptions.NoSuchKey:
            error = {"Code": "AccessDenied", "Message": "Access Denied"}
            raise ClientError(
                {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetObject"
            ) from None


def test_a_config_deleted_before_the_trigger_ran_is_gone_not_retried(env: Trigger) -> None:
    """S3 answers 403 for the deleted config (no s3:ListBucket, by least privilege): the event
    is done, with the reason, and no job is recorded, instead of raising for Lambda to retry
    until it gives up."""
    trigger.configure(
        env={
            contract.ENV_JOB_TABLE: TABLE,
            contract.ENV_DATA_BUCKET: BUCKET,
            contract.ENV_STATE_MACHINE_ARN: env.machine,
            contract.ENV_MODEL_URI: MODEL_URI,
        },
        clients={
            "dynamodb": env.dynamodb,
            "s3": _WithoutListBucket(env.s3),
            "stepfunctions": env.sfn,
        },
    )
    evt = env.upload("short-lived.json", VALID)
    env.s3.delete_object(Bucket=BUCKET, Key="jobs/short-lived.json")
    (result,) = env.fire(evt)
    assert result["outcome"] == trigger.IGNORED
    assert "AccessDenied" in result["reason"] and "s3:ListBucket" in result["reason"]
    assert job_count(env.dynamodb) == 0 and env.executions() == []
