"""Properties of the batch job-config parser (runtime/jobs.py parse_job_config, used by the
stepfunctions-batch trigger for ``jobs/*.json`` uploads and by POST /jobs) and of the trigger.

- A valid config parses to the job it describes (defaults filled in), whatever the key order or
  serialisation; parsing the normalised job again gives the same job (idempotent, same digest).
- A config with any one field made invalid is refused with ``invalid_job_config`` and a message
  naming that field; any other document or bytes is a job or that clear refusal, never another
  exception.
- The trigger turns any uploaded object into exactly one record: PENDING and started, or FAILED
  with the reason (the object moved to jobs/rejected/); a duplicate event changes nothing.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from runtime import contract
from runtime.handlers import trigger
from runtime.jobs import (
    CONFIG_KEYS,
    DEFAULT_PRIORITY,
    INVALID_JOB_CONFIG,
    PRIORITIES,
    JobConfig,
    JobStore,
    parse_job_config,
    parse_job_config_bytes,
    parse_job_request,
)
from runtime.payload import FeatureSchema, Limits, PayloadError
from tests.runtime.jobenv import (
    BUCKET,
    REGION,
    TABLE,
    FakeStepContext,
    create_job_table,
    create_state_machine,
)

SCHEMA = FeatureSchema.of(("a", "b"))
LIMITS = Limits(max_rows=10)
PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

segment = st.text(string.ascii_letters + string.digits + "-_.= ", min_size=1, max_size=8).filter(
    lambda s: s != ".."
)
path = st.lists(segment, min_size=1, max_size=3).map("/".join)
input_uris = st.one_of(
    path.map(lambda p: f"s3://{BUCKET}/{contract.INPUTS_PREFIX}{p}"),
    path.map(lambda p: f"s3://{BUCKET}/{contract.INPUTS_PREFIX}{p}/"),
)
output_uris = st.one_of(
    st.just(f"s3://{BUCKET}/{contract.RESULTS_PREFIX}"),
    path.map(lambda p: f"s3://{BUCKET}/{contract.RESULTS_PREFIX}{p}/"),
)
id_columns = st.text(min_size=1, max_size=12).filter(lambda s: s.strip())


@st.composite
def valid_configs(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "input_uri": draw(input_uris),
        "output_uri": draw(output_uris),
        "format": draw(st.sampled_from(contract.BATCH_FORMATS)),
    }
    if draw(st.booleans()):
        doc["shards"] = draw(st.integers(1, contract.MAX_SHARDS))
    if draw(st.booleans()):
        doc["priority"] = draw(st.sampled_from(PRIORITIES))
    if draw(st.booleans()):
        doc["id_column"] = draw(id_columns)
    return doc


def described_job(doc: dict[str, Any]) -> JobConfig:
    """The job a valid document describes, read field by field (defaults: one shard, low
    priority, no id column)."""
    return JobConfig(
        input_uri=doc["input_uri"],
        output_uri=doc["output_uri"],
        format=doc["format"],
        shards=doc.get("shards", 1),
        priority=doc.get("priority", DEFAULT_PRIORITY),
        id_column=doc.get("id_column"),
    )


def config_or_refusal(doc: Any) -> JobConfig | None:
    """Parse ``doc`` (a document, or bytes): the config, or None after checking the refusal."""
    try:
        if isinstance(doc, bytes | str):
            return parse_job_config_bytes(doc, BUCKET)
        return parse_job_config(doc, BUCKET)
    except PayloadError as exc:
        assert exc.code == INVALID_JOB_CONFIG
        assert 400 <= exc.status < 500
        assert exc.message
        return None


# --- valid configs ---


@PROPERTY
@given(doc=valid_configs(), indent=st.sampled_from([None, 2]), data=st.data())
def test_a_valid_config_parses_to_the_job_it_describes(
    doc: dict[str, Any], indent: int | None, data: st.DataObject
) -> None:
    config = parse_job_config(doc, BUCKET)
    assert config == described_job(doc)
    assert config.input_is_prefix == doc["input_uri"].endswith("/")
    # the same document serialised in any key order and layout is the same job
    reordered = dict(data.draw(st.permutations(list(doc.items())), label="key order"))
    body = json.dumps(reordered, indent=indent).encode()
    again = parse_job_config_bytes(body, BUCKET)
    assert again == config
    assert again.sha256 == config.sha256


@PROPERTY
@given(doc=valid_configs())
def test_parsing_the_normalised_job_again_gives_the_same_job(doc: dict[str, Any]) -> None:
    config = parse_job_config(doc, BUCKET)
    values = config.record_values()
    assert all(values[name] is not None for name in values)
    again = parse_job_config(values, BUCKET)
    assert again == config
    assert again.record_values() == values
    assert again.sha256 == config.sha256


# --- invalid configs ---

not_a_string = st.one_of(st.none(), st.integers(), st.booleans(), st.lists(st.text(), max_size=2))
BAD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "input_uri": st.one_of(
        not_a_string,
        st.just(""),
        path.map(lambda p: f"s3://another-bucket/{contract.INPUTS_PREFIX}{p}"),
        path.map(lambda p: f"https://{BUCKET}/{contract.INPUTS_PREFIX}{p}"),
        path.map(lambda p: f"s3://{BUCKET}/{p}"),  # not under inputs/
        path.map(lambda p: f"s3://{BUCKET}/{contract.MODEL_PREFIX}{p}"),
        path.map(lambda p: f"s3://{BUCKET}/{contract.JOBS_PREFIX}{p}"),
        path.map(lambda p: f"s3://{BUCKET}/{contract.INPUTS_PREFIX}../{contract.MODEL_PREFIX}{p}"),
        path.map(lambda p: f"s3://{BUCKET}/{contract.INPUTS_PREFIX}{p}//x"),
    ),
    "output_uri": st.one_of(
        not_a_string,
        path.map(lambda p: f"s3://{BUCKET}/{contract.RESULTS_PREFIX}{p}"),  # not a prefix
        path.map(lambda p: f"s3://another-bucket/{contract.RESULTS_PREFIX}{p}/"),
        path.map(lambda p: f"s3://{BUCKET}/{contract.INPUTS_PREFIX}{p}/"),
        path.map(lambda p: f"s3://{BUCKET}/{contract.JOBS_PREFIX}{p}/"),
        path.map(lambda p: f"s3://{BUCKET}/{contract.RESULTS_PREFIX}../{p}/"),
    ),
    "format": st.one_of(
        not_a_string, st.text(max_size=8).filter(lambda s: s not in contract.BATCH_FORMATS)
    ),
    "shards": st.one_of(
        st.integers(max_value=0),
        st.integers(min_value=contract.MAX_SHARDS + 1),
        st.booleans(),
        st.floats(),
        st.text(max_size=3),
        st.none(),
    ),
    "priority": st.one_of(
        not_a_string.filter(lambda v: v is not None),
        st.text(max_size=8).filter(lambda s: s not in PRIORITIES),
        st.none(),
    ),
    "id_column": st.one_of(
        st.integers(), st.booleans(), st.text(" \t\n", max_size=3), st.lists(st.text(), max_size=1)
    ),
}


@PROPERTY
@given(doc=valid_configs(), field=st.sampled_from(sorted(BAD_VALUES)), data=st.data())
def test_a_config_with_one_invalid_field_is_refused_naming_it(
    doc: dict[str, Any], field: str, data: st.DataObject
) -> None:
    doc[field] = data.draw(BAD_VALUES[field], label=field)
    with pytest.raises(PayloadError) as caught:
        parse_job_config(doc, BUCKET)
    assert caught.value.code == INVALID_JOB_CONFIG
    assert caught.value.status == 400
    assert field in caught.value.message


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=10),
        input_uris,
        output_uris,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(sorted(BAD_VALUES)), st.text(max_size=5)), inner, max_size=7
        ),
    ),
    max_leaves=25,
)


@PROPERTY
@given(doc=valid_configs(), data=st.data())
def test_unknown_and_missing_fields_are_refused_naming_them(
    doc: dict[str, Any], data: st.DataObject
) -> None:
    if data.draw(st.booleans(), label="add an unknown field"):
        name = data.draw(
            st.text(string.ascii_lowercase + "_", min_size=1, max_size=10).filter(
                lambda n: n not in CONFIG_KEYS
            ),
            label="unknown",
        )
        doc[name] = data.draw(json_values, label="value")
        expected = name
    else:
        name = data.draw(st.sampled_from(["input_uri", "output_uri", "format"]), label="missing")
        del doc[name]
        expected = f"{name} is required"
    with pytest.raises(PayloadError) as caught:
        parse_job_config(doc, BUCKET)
    assert caught.value.code == INVALID_JOB_CONFIG
    assert expected in caught.value.message


@PROPERTY
@given(doc=json_values)
def test_any_document_is_a_job_or_a_clear_refusal(doc: Any) -> None:
    config = config_or_refusal(doc)
    if config is not None:  # then it is exactly the job the document describes
        assert config == described_job(doc)
    assert config_or_refusal(json.dumps(doc).encode()) == config


@PROPERTY
@given(body=st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_any_bytes_are_a_job_or_a_clear_refusal(body: bytes | str) -> None:
    config_or_refusal(body)


@pytest.mark.parametrize("depth", [2_000, 30_000])
def test_a_deeply_nested_document_is_a_clear_refusal(depth: int) -> None:
    """Was a RecursionError (the trigger Lambda failed and retried the event forever)."""
    for body in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        with pytest.raises(PayloadError) as caught:
            parse_job_config_bytes(body.encode(), BUCKET)
        assert caught.value.code == INVALID_JOB_CONFIG
    # POST /jobs: an input_uri request nested too deeply is a 400 too (was a RecursionError)
    body = '{"input_uri": ' + "[" * depth + "]" * depth + "}"
    for batch in (False, True):
        with pytest.raises(PayloadError) as caught:
            parse_job_request(body, "application/json", SCHEMA, LIMITS, BUCKET, batch=batch)
        assert caught.value.status == 400


# --- POST /jobs with an input_uri (the same parser behind it) ---


@PROPERTY
@given(
    doc=st.one_of(valid_configs(), json_values.filter(lambda d: isinstance(d, dict))),
    batch=st.booleans(),
    data=st.data(),
)
def test_post_jobs_with_an_input_uri_is_a_request_or_a_4xx(
    doc: dict[str, Any], batch: bool, data: st.DataObject
) -> None:
    doc.setdefault("input_uri", data.draw(st.one_of(input_uris, json_values), label="input_uri"))
    body = json.dumps(doc)
    try:
        request = parse_job_request(body, "application/json", SCHEMA, LIMITS, BUCKET, batch=batch)
    except PayloadError as exc:
        assert 400 <= exc.status < 500 and exc.code and exc.message
        return
    assert request.input_uri == doc["input_uri"]
    assert request.instances is None
    if batch:  # the same job the trigger would start for this config
        config = parse_job_config(
            {
                **doc,
                "format": request.format,
                "output_uri": request.output_uri
                or doc.get("output_uri", f"s3://{BUCKET}/{contract.RESULTS_PREFIX}"),
            },
            BUCKET,
        )
        assert (request.shards, request.priority, request.id_column) == (
            config.shards,
            config.priority,
            config.id_column,
        )


@PROPERTY
@given(
    doc=valid_configs(),
    batch=st.booleans(),
    content_type=st.sampled_from(
        [None, "application/json; charset=utf-8", "Application/JSON", "application/vnd.x+json"]
    ),
)
def test_an_input_uri_request_is_read_the_same_with_any_json_content_type(
    doc: dict[str, Any], batch: bool, content_type: str | None
) -> None:
    """A +json type was read as inline rows ("expected ... instances") before."""
    body = json.dumps(doc)

    def parsed(kind: str | None) -> Any:
        try:
            return parse_job_request(body, kind, SCHEMA, LIMITS, BUCKET, batch=batch)
        except PayloadError as exc:
            return (exc.code, exc.message)

    assert parsed(content_type) == parsed("application/json")


# --- the trigger: one record per upload, whatever the object ---


@dataclass
class TriggerEnv:
    s3: Any
    dynamodb: Any
    sfn: Any
    machine: str

    @property
    def store(self) -> JobStore:
        return JobStore(self.dynamodb, TABLE)


@pytest.fixture(scope="module")
def trigger_env() -> Iterator[TriggerEnv]:
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        with mock_aws():
            s3 = boto3.client("s3", region_name=REGION)
            s3.create_bucket(Bucket=BUCKET)
            dynamodb = boto3.client("dynamodb", region_name=REGION)
            create_job_table(dynamodb)
            sfn = boto3.client("stepfunctions", region_name=REGION)
            machine = create_state_machine(
                sfn, {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}, name="batch"
            )
            trigger.configure(
                env={
                    contract.ENV_JOB_TABLE: TABLE,
                    contract.ENV_DATA_BUCKET: BUCKET,
                    contract.ENV_STATE_MACHINE_ARN: machine,
                    contract.ENV_MODEL_URI: f"s3://{BUCKET}/models/example/abc123/model.ubj",
                },
                clients={"dynamodb": dynamodb, "s3": s3, "stepfunctions": sfn},
            )
            yield TriggerEnv(s3, dynamodb, sfn, machine)
            trigger.configure()


_uploads = count()
CONTEXT = FakeStepContext("arn:aws:lambda:us-east-1:123456789012:function:mlserve-trigger")


def s3_event(key: str, sequencer: str) -> dict[str, Any]:
    obj = {"key": key, "size": 1, "sequencer": sequencer}
    record = {"eventSource": "aws:s3", "s3": {"bucket": {"name": BUCKET}, "object": obj}}
    return {"Records": [record]}


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.one_of(
        valid_configs().map(lambda d: json.dumps(d).encode()),
        json_values.map(lambda d: json.dumps(d).encode()),
        st.binary(max_size=100),
    )
)
def test_the_trigger_makes_one_record_per_upload_and_ignores_duplicates(
    trigger_env: TriggerEnv, body: bytes
) -> None:
    n = next(_uploads)
    key = f"{contract.JOBS_PREFIX}upload-{n}.json"
    trigger_env.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    event = s3_event(key, sequencer=f"{n:016X}")
    (result,) = trigger.handler(event, CONTEXT)["results"]
    job = trigger_env.store.require(result["job_id"])
    expected = config_or_refusal(body)
    if expected is None:
        assert result["outcome"] == trigger.REJECTED
        assert job.status == contract.STATUS_FAILED
        assert job.error is not None and job.error.code == INVALID_JOB_CONFIG
        rejected = trigger.rejected_key(key)
        assert trigger_env.s3.get_object(Bucket=BUCKET, Key=rejected)["Body"].read() == body
    else:
        assert result["outcome"] == trigger.STARTED
        assert job.status == contract.STATUS_PENDING
        assert (job.input_uri, job.output_uri, job.format, job.shards, job.priority) == (
            expected.input_uri,
            expected.output_uri,
            expected.format,
            expected.shards,
            expected.priority,
        )
    before = trigger_env.store.require(job.job_id)
    (again,) = trigger.handler(event, CONTEXT)["results"]
    assert again["outcome"] in (trigger.DUPLICATE, trigger.IGNORED)
    assert trigger_env.store.require(job.job_id) == before
