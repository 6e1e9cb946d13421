"""Job records in DynamoDB, and the requests that create them.

A job is one item of the job table (hash key ``job_id``). Its status only moves forward, and
only by conditional updates (DESIGN.md §5)::

    PENDING -> RUNNING | SUCCEEDED | FAILED | CANCELLED
    RUNNING -> SUCCEEDED | FAILED | CANCELLED

Nothing leaves a terminal status: a late or duplicate writer gets ``ConditionalCheckFailed`` from
DynamoDB, which :class:`JobStore` raises as :class:`TransitionRejected` carrying the status the
record has now, so no retry or duplicate moves data backwards.

The DynamoDB client is injected (a low-level ``boto3.client("dynamodb")``); everything else here
(ids, timestamps, item sizes, request normalisation, the API view of a job) is pure.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import numpy as np
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from runtime import contract, metrics
from runtime.model import parse_s3_uri
from runtime.payload import FeatureSchema, Limits, PayloadError, media_type, parse_body

# Namespace of the job ids derived from an Idempotency-Key (uuid5). Never change it: a retried
# POST must keep finding the job its first attempt created.
NAMESPACE: Final = uuid.UUID("5b0e1f7c-1a4e-5d0b-9c57-6d6c73657276")

ALLOWED_TRANSITIONS: Final[Mapping[str, frozenset[str]]] = {
    contract.STATUS_PENDING: frozenset(
        {
            contract.STATUS_RUNNING,
            contract.STATUS_SUCCEEDED,
            contract.STATUS_FAILED,
            contract.STATUS_CANCELLED,
        }
    ),
    contract.STATUS_RUNNING: frozenset(
        {contract.STATUS_SUCCEEDED, contract.STATUS_FAILED, contract.STATUS_CANCELLED}
    ),
}
ACTIVE_STATUSES: Final = frozenset(ALLOWED_TRANSITIONS)  # PENDING, RUNNING

# Formats of an input_uri object scored in job mode (parquet comes with batch mode).
INPUT_FORMATS: Final = ("csv", "json", "jsonl", "parquet")
_SUFFIX_FORMATS: Final = {
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}
_DAY_SECONDS: Final = 86_400


# --- errors -------------------------------------------------------------------------------------


class JobExists(Exception):
    """``create`` found an item with this id already (an idempotent retry or a duplicate)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} already exists")
        self.job_id = job_id


class JobNotFound(Exception):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id}")
        self.job_id = job_id


class TransitionRejected(Exception):
    """A conditional update found the record in another status; nothing was written.

    ``current`` is the status the record has now (None when there is no such record).
    """

    def __init__(self, job_id: str, target: str, current: str | None) -> None:
        now = current if current is not None else "absent"
        super().__init__(f"job {job_id}: cannot move to {target}, the record is {now}")
        self.job_id = job_id
        self.target = target
        self.current = current


# --- ids, time ----------------------------------------------------------------------------------


def new_job_id() -> str:
    """32 lowercase hex characters."""
    return uuid.uuid4().hex


def idempotent_job_id(principal: str | None, key: str) -> str:
    """The job id of an ``Idempotency-Key``: stable per (caller, key), 32 lowercase hex."""
    return uuid.uuid5(NAMESPACE, f"{principal or 'anonymous'}:{key}").hex


def iso_timestamp(epoch: float) -> str:
    """``2026-11-25T01:02:03.123Z`` (UTC, milliseconds)."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> float:
    """Epoch seconds of an :func:`iso_timestamp` string."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def expiry(epoch: float, ttl_days: int) -> int:
    """The ``expires_at`` TTL attribute: epoch seconds ``ttl_days`` from ``epoch``."""
    return int(epoch) + ttl_days * _DAY_SECONDS


# --- the record ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobError:
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class Job:
    """One job item. ``extra`` keeps attributes this version does not know (later issues)."""

    job_id: str
    status: str
    architecture: str
    created_at: str
    updated_at: str
    model_version: str
    request_sha256: str = ""
    rows: int | None = None
    attempts: int = 0
    instances: str | None = None  # compact JSON list of rows, NaN as null
    input_uri: str | None = None
    output_uri: str | None = None
    format: str | None = None
    predictions: str | None = None  # compact JSON list
    error: JobError | None = None
    task_arn: str | None = None
    expires_at: int | None = None
    # stepfunctions-batch (``shards`` lives in ``extra``: see the property below)
    priority: str | None = None
    id_column: str | None = None
    source: str | None = None  # s3://bucket/jobs/<name>.json of a job config upload
    batch_job_id: str | None = None
    progress: Mapping[str, int] | None = None  # {succeeded, failed, running, pending}
    # who submitted it through the API (contract.JOB_TABLE_CALLER_ATTRIBUTE); None: a job config
    # upload to S3 (or a record from before callers were recorded)
    caller: str | None = None
    # an upload job (POST /jobs {"upload": ...}) waiting for its input: until when (epoch
    # seconds) its upload URL is valid; removed when the job starts
    upload_expires_at: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.status in contract.TERMINAL_STATUSES

    @property
    def awaiting_upload(self) -> bool:
        return self.upload_expires_at is not None and self.status == contract.STATUS_PENDING

    @property
    def shards(self) -> int | None:
        """stepfunctions-batch: how many array children score the job (None: not a batch job).
        Kept in ``extra`` so that records written before it was known read the same."""
        value = self.extra.get("shards")
        return int(value) if value is not None else None

    def with_values(self, **values: Any) -> Job:
        """A copy with ``values`` set: known fields replaced, any other attribute in ``extra``."""
        known = {f.name for f in fields(self)} - {"extra"}
        plain = {k: v for k, v in values.items() if k in known}
        other = {k: v for k, v in values.items() if k not in known}
        return replace(self, **plain, extra={**self.extra, **other} if other else self.extra)

    def to_item(self) -> dict[str, Any]:
        """The DynamoDB item (attribute-value format); None attributes are left out."""
        plain: dict[str, Any] = dict(self.extra)
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, JobError):
                value = value.as_dict()
            elif isinstance(value, Mapping):
                value = dict(value)
            plain[f.name] = value
        return {name: to_attribute(value) for name, value in plain.items()}

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Job:
        plain = {name: from_attribute(value) for name, value in item.items()}
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {k: v for k, v in plain.items() if k in known}
        error = kwargs.get("error")
        if isinstance(error, Mapping):
            kwargs["error"] = JobError(str(error.get("code", "")), str(error.get("message", "")))
        extra = {k: v for k, v in plain.items() if k not in known}
        return cls(**kwargs, extra=extra)


def to_api(job: Job, status_url: str | None = None) -> dict[str, Any]:
    """The JSON of a job as GET /jobs/{id} answers it (runtime/openapi.yaml ``Job``)."""
    body: dict[str, Any] = {
        "job_id": job.job_id,
        "status": job.status,
        "architecture": job.architecture,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "model_version": job.model_version,
        "attempts": job.attempts,
    }
    if job.rows is not None:
        body["rows"] = job.rows
    if job.predictions is not None:
        body["predictions"] = json.loads(job.predictions)
    if job.output_uri is not None:  # a batch job's parts, even when its predictions are inline
        body["output_uri"] = job.output_uri
    if job.input_uri is not None:
        body["input_uri"] = job.input_uri
    if job.error is not None and job.status in (contract.STATUS_FAILED, contract.STATUS_CANCELLED):
        body["error"] = job.error.as_dict()
    if job.progress is not None and not job.terminal:
        body["progress"] = dict(job.progress)
    if job.awaiting_upload and job.upload_expires_at is not None:
        body["upload_expires_at"] = iso_timestamp(job.upload_expires_at)
    if status_url is not None:
        body["status_url"] = status_url
    return body


# --- DynamoDB attribute values and item size ----------------------------------------------------


_SERIALIZER: Final = TypeSerializer()
_DESERIALIZER: Final = TypeDeserializer()


def to_attribute(value: Any) -> dict[str, Any]:
    """A Python value as a DynamoDB attribute value (str, int, bool, None, list, dict ...)."""
    return _SERIALIZER.serialize(value)


def from_attribute(value: Mapping[str, Any]) -> Any:
    """A DynamoDB attribute value as Python; integral numbers as int, others as float."""
    return _plain(_DESERIALIZER.deserialize(dict(value)))


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _number_size(raw: str) -> int:
    digits = raw.lstrip("-").lower().split("e")[0].replace(".", "").strip("0")
    return (len(digits) + 1) // 2 + 1


_SCALAR_SIZES: Final[Mapping[str, Callable[[Any], int]]] = {
    "S": lambda raw: len(raw.encode("utf-8")),
    "N": _number_size,
    "B": len,
    "BOOL": lambda _raw: 1,
    "NULL": lambda _raw: 1,
}


def attribute_size(value: Mapping[str, Any]) -> int:
    """Bytes DynamoDB counts for one attribute value (its documented item-size rules)."""
    (kind, raw), *_ = value.items()
    if kind in _SCALAR_SIZES:
        return _SCALAR_SIZES[kind](raw)
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) + 1 for k, v in raw.items())
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in raw)
    if kind in ("SS", "NS", "BS"):
        return sum(_SCALAR_SIZES[kind[0]](v) for v in raw)
    raise TypeError(f"unexpected DynamoDB attribute type {kind}")


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """Size in bytes of a DynamoDB item: attribute names plus values."""
    return sum(len(name.encode("utf-8")) + attribute_size(v) for name, v in item.items())


def fits_inline(job: Job, **attributes: Any) -> bool:
    """Whether ``job`` with ``attributes`` set stays under contract.MAX_INLINE_ITEM_BYTES."""
    return item_size(replace(job, **attributes).to_item()) < contract.MAX_INLINE_ITEM_BYTES


# --- the store ----------------------------------------------------------------------------------


def _count_status(status: str, job: Job) -> None:
    """Count a job that reached SUCCEEDED or FAILED where that is written (the dashboard's jobs
    by status, the jobs-FAILED alarm), per the model version its record names (a canary's jobs
    beside the stable version's). CANCELLED is counted by the job API that cancels."""
    if status == contract.STATUS_FAILED:
        metrics.count(contract.METRIC_JOBS_FAILED, job.job_id, job.model_version or None)
    elif status == contract.STATUS_SUCCEEDED:
        metrics.count(contract.METRIC_JOBS_SUCCEEDED, job.job_id, job.model_version or None)


class JobStore:
    """Reads and conditionally writes job items. Every write sets ``updated_at``."""

    def __init__(
        self,
        dynamodb: Any,
        table: str,
        *,
        ttl_days: int = contract.DEFAULT_JOB_TTL_DAYS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.ttl_days = ttl_days
        self.clock = clock

    def new_job(
        self,
        job_id: str,
        *,
        architecture: str,
        model_version: str,
        request_sha256: str = "",
        **attributes: Any,
    ) -> Job:
        """A PENDING job with timestamps and TTL, not stored yet (see :meth:`create`)."""
        now = self.clock()
        stamp = iso_timestamp(now)
        job = Job(
            job_id=job_id,
            status=contract.STATUS_PENDING,
            architecture=architecture,
            created_at=stamp,
            updated_at=stamp,
            model_version=model_version,
            request_sha256=request_sha256,
            expires_at=expiry(now, self.ttl_days),
        )
        return job.with_values(**attributes) if attributes else job

    def create(self, job: Job) -> Job:
        """Put the item only if no item has this id; else raise :class:`JobExists`."""
        try:
            self.dynamodb.put_item(
                TableName=self.table,
                Item=job.to_item(),
                ConditionExpression="attribute_not_exists(#k)",
                ExpressionAttributeNames={"#k": contract.JOB_TABLE_HASH_KEY},
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            raise JobExists(job.job_id) from None
        _count_status(job.status, job)  # created FAILED: an invalid job config
        return job

    def get(self, job_id: str, *, consistent: bool = True) -> Job | None:
        response = self.dynamodb.get_item(
            TableName=self.table,
            Key={contract.JOB_TABLE_HASH_KEY: {"S": job_id}},
            ConsistentRead=consistent,
        )
        item = response.get("Item")
        return Job.from_item(item) if item else None

    def require(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def transition(
        self,
        job_id: str,
        target: str,
        *,
        expected: Iterable[str] | None = None,
        error: JobError | None = None,
        values: Mapping[str, Any] | None = None,
        remove: Iterable[str] = (),
    ) -> Job:
        """Move the job to ``target`` if its status allows it (and is in ``expected``, when
        given), setting ``values``/``error`` in the same write. Returns the updated job; raises
        :class:`TransitionRejected` (nothing written) otherwise."""
        sources = {s for s, targets in ALLOWED_TRANSITIONS.items() if target in targets}
        if expected is not None:
            sources &= set(expected)
        if not sources:
            raise ValueError(f"no status may move to {target} (expected {expected})")
        assignments: dict[str, Any] = {**(values or {}), "status": target}
        if error is not None:
            assignments["error"] = error.as_dict()
        job = self._update(job_id, target, assignments, statuses=sorted(sources), remove=remove)
        _count_status(target, job)
        return job

    def update(
        self,
        job_id: str,
        values: Mapping[str, Any],
        *,
        increment: Mapping[str, int] | None = None,
        statuses: Iterable[str] | None = None,
        remove: Iterable[str] = (),
        present: Iterable[str] = (),
    ) -> Job:
        """Set attributes (and add to counters, remove attributes) without changing the status;
        only while the status is one of ``statuses`` when given and every attribute named in
        ``present`` exists. Raises :class:`TransitionRejected`."""
        if "status" in values:
            raise ValueError("use transition() to change a job's status")
        return self._update(
            job_id,
            "(unchanged)",
            dict(values),
            statuses=None if statuses is None else sorted(set(statuses)),
            increment=increment,
            remove=remove,
            present=present,
        )

    def list_by_caller(
        self, caller: str, *, limit: int, start: Mapping[str, str] | None = None
    ) -> tuple[list[Job], dict[str, str] | None]:
        """The caller's jobs, newest first, from the caller index (eventually consistent: a job
        created a moment ago may be missing), at most ``limit``; and where the next page starts
        (the index key of the last job: job_id, caller, created_at), None after the last page."""
        keys = (
            contract.JOB_TABLE_HASH_KEY,
            contract.JOB_TABLE_CALLER_ATTRIBUTE,
            contract.JOB_TABLE_CREATED_ATTRIBUTE,
        )
        kwargs: dict[str, Any] = {}
        if start is not None:
            kwargs["ExclusiveStartKey"] = {k: {"S": str(start[k])} for k in keys}
        response = self.dynamodb.query(
            TableName=self.table,
            IndexName=contract.JOB_TABLE_CALLER_INDEX,
            KeyConditionExpression="#c = :c",
            ExpressionAttributeNames={"#c": contract.JOB_TABLE_CALLER_ATTRIBUTE},
            ExpressionAttributeValues={":c": {"S": caller}},
            ScanIndexForward=False,
            Limit=limit,
            **kwargs,
        )
        jobs = [Job.from_item(item) for item in response.get("Items") or []]
        last = response.get("LastEvaluatedKey")
        following = {k: str(from_attribute(last[k])) for k in keys} if last else None
        return jobs, following

    def _update(
        self,
        job_id: str,
        target: str,
        assignments: dict[str, Any],
        *,
        statuses: list[str] | None,
        increment: Mapping[str, int] | None = None,
        remove: Iterable[str] = (),
        present: Iterable[str] = (),
    ) -> Job:
        assignments["updated_at"] = iso_timestamp(self.clock())
        names: dict[str, str] = {"#k": contract.JOB_TABLE_HASH_KEY}
        values: dict[str, Any] = {}
        sets: list[str] = []
        for i, (name, value) in enumerate(assignments.items()):
            names[f"#a{i}"] = name
            values[f":a{i}"] = to_attribute(value)
            sets.append(f"#a{i} = :a{i}")
        adds: list[str] = []
        for i, (name, amount) in enumerate((increment or {}).items()):
            names[f"#n{i}"] = name
            values[f":n{i}"] = to_attribute(amount)
            adds.append(f"#n{i} :n{i}")
        removes: list[str] = []
        for i, name in enumerate(remove):
            names[f"#r{i}"] = name
            removes.append(f"#r{i}")
        expression = "SET " + ", ".join(sets)
        if adds:
            expression += " ADD " + ", ".join(adds)
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        condition = "attribute_exists(#k)"
        for i, name in enumerate(present):
            names[f"#p{i}"] = name
            condition += f" AND attribute_exists(#p{i})"
        if statuses is not None:
            names["#status"] = "status"
            placeholders = []
            for i, status in enumerate(statuses):
                values[f":s{i}"] = {"S": status}
                placeholders.append(f":s{i}")
            condition += f" AND #status IN ({', '.join(placeholders)})"
        try:
            response = self.dynamodb.update_item(
                TableName=self.table,
                Key={contract.JOB_TABLE_HASH_KEY: {"S": job_id}},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException as exc:
            old = getattr(exc, "response", {}).get("Item")
            if old is not None:
                current = from_attribute(old.get("status", {"NULL": True}))
            else:
                record = self.get(job_id)
                current = record.status if record is not None else None
            raise TransitionRejected(job_id, target, current) from None
        return Job.from_item(response["Attributes"])


# --- requests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRequest:
    """A validated, normalised request for a job: inline rows or an S3 input."""

    rows: int | None = None
    instances: str | None = None  # compact JSON list of rows in feature order, NaN as null
    input_uri: str | None = None
    output_uri: str | None = None
    format: str | None = None
    # batch mode (stepfunctions-batch): None on the other architectures
    shards: int | None = None
    priority: str | None = None
    id_column: str | None = None
    # an upload job: the client PUTs the input to a presigned URL, then starts the job
    upload: bool = False
    # the model version the client pinned (the x-model-version header); None: the rollout's
    model_version: str | None = None

    @property
    def sha256(self) -> str:
        """Digest of the normalised request: an Idempotency-Key reused with another body
        differs here, the same rows sent as JSON arrays, objects or CSV do not."""
        canonical: dict[str, Any] = {
            "instances": self.instances,
            "input_uri": self.input_uri,
            "output_uri": self.output_uri,
            "format": self.format,
        }
        if self.upload:
            canonical["upload"] = True
        for name in ("shards", "priority", "id_column", "model_version"):
            if getattr(self, name) is not None:
                canonical[name] = getattr(self, name)
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def encode_rows(matrix: np.ndarray) -> str:
    """A (rows, features) float32 matrix as compact JSON, NaN (missing) as null.

    Each value is the shortest decimal that reads back as the same float32, so scoring the
    stored rows scores exactly the rows the API validated.
    """
    text = np.asarray(matrix, dtype=np.float32).astype(str)
    text[np.isnan(matrix)] = "null"
    return "[" + ",".join("[" + ",".join(row) + "]" for row in text.tolist()) + "]"


def encode_predictions(predictions: np.ndarray) -> str:
    """Predictions (one number, or one list of class probabilities, per row) as compact JSON,
    each value the shortest decimal that reads back as the same float32."""
    values = np.asarray(predictions, dtype=np.float32)
    if values.ndim not in (1, 2):
        raise ValueError(f"predictions must be 1- or 2-dimensional, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("the model produced a non-finite prediction (JSON cannot carry it)")
    text = values.astype(str)
    if values.ndim == 1:
        return "[" + ",".join(text.tolist()) + "]"
    return "[" + ",".join("[" + ",".join(row) + "]" for row in text.tolist()) + "]"


def predictions_document(job_id: str, model_version: str, predictions: str) -> bytes:
    """The results/{job_id}/predictions.json object (``predictions`` from encode_predictions)."""
    head = json.dumps({"job_id": job_id, "model_version": model_version})[:-1]
    return f'{head}, "predictions": {predictions}}}'.encode()


def decode_predictions(document: bytes | str) -> list[Any]:
    """The predictions list of a :func:`predictions_document`."""
    doc = json.loads(document)
    predictions = doc.get("predictions") if isinstance(doc, dict) else None
    if not isinstance(predictions, list):
        raise ValueError("not a predictions document: no predictions list")
    return predictions


def inline_request(matrix: np.ndarray) -> JobRequest:
    return JobRequest(rows=int(matrix.shape[0]), instances=encode_rows(matrix))


def parse_job_request(
    body: str | bytes | None,
    content_type: str | None,
    schema: FeatureSchema,
    limits: Limits,
    data_bucket: str,
    *,
    batch: bool = False,
) -> JobRequest:
    """POST /jobs: inline rows (any /predict form) or ``{"input_uri", "output_uri", "format"}``.

    ``batch`` (the stepfunctions-batch architecture): an ``input_uri`` request is a batch job
    config (:func:`parse_job_config`; output_uri optional, format inferred from the suffix).
    Raises :class:`PayloadError` (a 4xx) for anything the job could not run with.
    """
    kind = media_type(content_type)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    json_kind = kind == "application/json" or kind.endswith("+json")  # as parse_body reads it
    if (json_kind or (not kind and text.lstrip().startswith("{"))) and ('"input_uri"' in text):
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            doc = None  # parse_body reports the JSON error with its position
        if isinstance(doc, dict) and "input_uri" in doc:
            return _batch_request(doc, data_bucket) if batch else _uri_request(doc, data_bucket)
    if (json_kind or (not kind and text.lstrip().startswith("{"))) and ('"upload"' in text):
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            doc = None
        if isinstance(doc, dict) and "upload" in doc:
            return parse_upload_request(doc, batch=batch)
    return inline_request(parse_body(body, content_type, schema, limits))


UPLOAD_KEYS: Final = frozenset({"format", "shards", "priority", "id_column"})


def upload_formats(*, batch: bool) -> tuple[str, ...]:
    """The input formats an upload job accepts: batch mode reads csv, parquet and jsonl; job
    mode (one scoring task) csv, parquet, jsonl and json ``{"instances": [...]}``."""
    return contract.BATCH_FORMATS if batch else (*contract.BATCH_FORMATS, "json")


def parse_upload_request(doc: Mapping[str, Any], *, batch: bool) -> JobRequest:
    """POST /jobs ``{"upload": {"format", ["shards", "priority", "id_column"]}}``: a job whose
    input the client PUTs to a presigned URL (inputs/{job_id}/input.{format}) before it starts
    it with POST /jobs/{id}/start. ``shards``/``priority``/``id_column`` need batch mode."""
    others = sorted(set(doc) - {"upload"})
    if others:
        raise PayloadError(
            "invalid_body", f"an upload request has only the upload object, not {', '.join(others)}"
        )
    upload = doc["upload"]
    if not isinstance(upload, Mapping):
        raise PayloadError("invalid_body", 'upload must be an object: {"format": "csv"}')
    unknown = sorted(set(upload) - UPLOAD_KEYS)
    if unknown:
        raise PayloadError(
            "invalid_body",
            f"unknown upload field(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(UPLOAD_KEYS))}",
        )
    formats = upload_formats(batch=batch)
    fmt = upload.get("format")
    if fmt not in formats:
        raise PayloadError(
            "unsupported_format", f"upload.format must be one of {', '.join(formats)}, got {fmt!r}"
        )
    if not batch:
        if upload.get("shards") not in (None, 1) or upload.get("id_column") is not None:
            raise PayloadError(
                "unsupported_option",
                "shards and id_column need batch mode (the stepfunctions-batch architecture); "
                "this job runs as one task",
            )
        if upload.get("priority") is not None:
            raise PayloadError(
                "unsupported_option",
                "priority needs batch mode (the stepfunctions-batch architecture)",
            )
        return JobRequest(format=fmt, upload=True)
    # the batch options are validated as a job config's (the URIs are the job's own)
    config = parse_job_config(
        {
            **{k: v for k, v in upload.items() if k != "format"},
            "input_uri": "s3://b/inputs/upload",
            "output_uri": "s3://b/results/upload/",
            "format": fmt,
        },
        "b",
    )
    return JobRequest(
        format=fmt,
        upload=True,
        shards=config.shards,
        priority=config.priority,
        id_column=config.id_column,
    )


def _uri_request(doc: Mapping[str, Any], data_bucket: str) -> JobRequest:
    if "instances" in doc:
        raise PayloadError("invalid_body", "send either instances or input_uri, not both")
    if doc.get("shards") not in (None, 1) or doc.get("id_column") is not None:
        raise PayloadError(
            "unsupported_option",
            "shards and id_column need batch mode (the stepfunctions-batch architecture); "
            "this job runs as one task",
        )
    input_uri = _s3_uri(doc["input_uri"], "input_uri", data_bucket, contract.INPUTS_PREFIX)
    output_uri = doc.get("output_uri")
    if output_uri is not None:
        output_uri = _s3_uri(output_uri, "output_uri", data_bucket, contract.RESULTS_PREFIX)
    fmt = doc.get("format")
    if fmt is None:
        suffix = "." + input_uri.rsplit(".", 1)[-1].lower() if "." in input_uri else ""
        fmt = _SUFFIX_FORMATS.get(suffix)
        if fmt is None:
            raise PayloadError(
                "invalid_format",
                f"cannot tell the format of {input_uri}: set format to one of "
                f"{', '.join(INPUT_FORMATS)}",
            )
    if fmt not in INPUT_FORMATS:
        raise PayloadError(
            "unsupported_format",
            f"format {fmt!r} is not supported here; accepted today: {', '.join(INPUT_FORMATS)}",
        )
    return JobRequest(input_uri=input_uri, output_uri=output_uri, format=fmt)


def _s3_uri(value: Any, name: str, bucket: str, prefix: str) -> str:
    where = f"s3://{bucket}/{prefix}"
    if not isinstance(value, str):
        raise PayloadError("invalid_uri", f"{name} must be a string {where}...")
    try:
        got_bucket, key = parse_s3_uri(value)
    except ValueError:
        message = f"{name} {value!r} is not an s3://bucket/key URI"
        raise PayloadError("invalid_uri", message) from None
    if got_bucket != bucket or not key.startswith(prefix) or key == prefix or ".." in key:
        raise PayloadError(
            "invalid_uri", f"{name} must be under {where} (the scoring task can use only that)"
        )
    return value


def input_uri_for(data_bucket: str, job_id: str) -> str:
    """Where the job API puts inline rows too large for the item."""
    return f"s3://{data_bucket}/{contract.input_key(job_id)}"


def results_uri_for(data_bucket: str, job_id: str) -> str:
    return f"s3://{data_bucket}/{contract.results_key(job_id)}"


def age_seconds(job: Job, now: float) -> float:
    return now - parse_timestamp(job.created_at)


# --- batch job configs (stepfunctions-batch) ----------------------------------------------------

CONFIG_KEYS: Final = frozenset(
    {"input_uri", "output_uri", "format", "shards", "priority", "id_column", "model_version"}
)
# A job config's field pinning the model version that scores it (as POST's x-model-version).
CONFIG_MODEL_VERSION: Final = "model_version"
PRIORITIES: Final = (contract.PRIORITY_HIGH, contract.PRIORITY_LOW)
DEFAULT_PRIORITY: Final = contract.PRIORITY_LOW
# Prefixes of the stack bucket a batch job never reads from or writes to: the deployed models and
# the job configs (a part or manifest written under jobs/ would trigger new jobs).
_FORBIDDEN_PREFIXES: Final = (contract.MODEL_PREFIX, contract.JOBS_PREFIX)
INVALID_JOB_CONFIG: Final = "invalid_job_config"


@dataclass(frozen=True)
class JobConfig:
    """A validated batch job config (an S3 ``jobs/<name>.json`` object, or POST /jobs)."""

    input_uri: str  # one object, or a prefix ending in "/"
    output_uri: str  # a prefix ending in "/"
    format: str  # csv | parquet | jsonl
    shards: int = 1
    priority: str = DEFAULT_PRIORITY
    id_column: str | None = None
    model_version: str | None = None  # pinned (CONFIG_MODEL_VERSION); None: the rollout's

    @property
    def input_is_prefix(self) -> bool:
        return self.input_uri.endswith("/")

    def record_values(self) -> dict[str, Any]:
        """The job record's attributes for this config (None left out)."""
        values: dict[str, Any] = {
            "input_uri": self.input_uri,
            "output_uri": self.output_uri,
            "format": self.format,
            "shards": self.shards,
            "priority": self.priority,
        }
        if self.id_column is not None:
            values["id_column"] = self.id_column
        return values

    @property
    def sha256(self) -> str:
        values = self.record_values()
        if self.model_version is not None:
            values[CONFIG_MODEL_VERSION] = self.model_version
        text = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def config_job_id(bucket: str, key: str, version: str | None) -> str:
    """The job id of a config upload: sha256("{bucket}/{key}/{versionId or sequencer}")[:32].
    A duplicate S3 event for the same upload gives the same id (and so starts nothing)."""
    return hashlib.sha256(f"{bucket}/{key}/{version or ''}".encode()).hexdigest()[:32]


def _config_error(message: str) -> PayloadError:
    return PayloadError(INVALID_JOB_CONFIG, message)


def _bucket_uri(value: Any, name: str, bucket: str, *, prefix_only: bool, under: str) -> str:
    if not isinstance(value, str) or not value:
        raise _config_error(f"{name} must be an s3://{bucket}/... string")
    try:
        got_bucket, key = parse_s3_uri(value)
    except ValueError:
        raise _config_error(f"{name} {value!r} is not an s3://bucket/key URI") from None
    if got_bucket != bucket:
        raise _config_error(
            f"{name} must be in the stack bucket s3://{bucket}/ (the batch job role can use "
            f"only that bucket), got bucket {got_bucket!r}"
        )
    if ".." in key.split("/") or key.startswith("/") or "//" in key:
        raise _config_error(f"{name} {value!r} has an empty or '..' path segment")
    if any(key.startswith(p) for p in _FORBIDDEN_PREFIXES) or not key.startswith(under):
        raise _config_error(
            f"{name} must be under s3://{bucket}/{under} (the batch job role reads "
            f"{contract.INPUTS_PREFIX} and writes {contract.RESULTS_PREFIX} only), got {value!r}"
        )
    if prefix_only and not key.endswith("/"):
        raise _config_error(f"{name} must be a prefix ending in '/', got {value!r}")
    return value


def parse_job_config(doc: Any, data_bucket: str) -> JobConfig:
    """Validate a batch job config document; :class:`PayloadError` (code invalid_job_config)
    with the reason otherwise."""
    if not isinstance(doc, Mapping):
        raise _config_error("the job config must be a JSON object")
    unknown = sorted(set(doc) - CONFIG_KEYS)
    if unknown:
        raise _config_error(
            f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(CONFIG_KEYS))}"
        )
    for required in ("input_uri", "output_uri", "format"):
        if required not in doc:
            raise _config_error(f"{required} is required")
    input_uri = _bucket_uri(
        doc["input_uri"], "input_uri", data_bucket, prefix_only=False, under=contract.INPUTS_PREFIX
    )
    output_uri = _bucket_uri(
        doc["output_uri"],
        "output_uri",
        data_bucket,
        prefix_only=True,
        under=contract.RESULTS_PREFIX,
    )
    fmt = doc["format"]
    if fmt not in contract.BATCH_FORMATS:
        raise _config_error(
            f"format must be one of {', '.join(contract.BATCH_FORMATS)}, got {fmt!r}"
        )
    shards = doc.get("shards", 1)
    if isinstance(shards, bool) or not isinstance(shards, int):
        raise _config_error(f"shards must be an integer, got {shards!r}")
    if not 1 <= shards <= contract.MAX_SHARDS:
        raise _config_error(f"shards must be 1 to {contract.MAX_SHARDS}, got {shards}")
    priority = doc.get("priority", DEFAULT_PRIORITY)
    if priority not in PRIORITIES:
        raise _config_error(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    id_column = doc.get("id_column")
    if id_column is not None and (not isinstance(id_column, str) or not id_column.strip()):
        raise _config_error("id_column must be a non-empty string")
    version = doc.get(CONFIG_MODEL_VERSION)
    if version is not None and (not isinstance(version, str) or not version.strip()):
        raise _config_error(
            f"{CONFIG_MODEL_VERSION} must be a non-empty string (a version GET /health lists)"
        )
    return JobConfig(input_uri, output_uri, fmt, shards, priority, id_column, version)


def parse_job_config_bytes(body: bytes | str, data_bucket: str) -> JobConfig:
    """:func:`parse_job_config` of a JSON document's bytes."""
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise _config_error(f"the job config is not JSON: {exc}") from None
    except RecursionError:
        raise _config_error("the job config is not JSON: it is nested too deeply") from None
    return parse_job_config(doc, data_bucket)


def default_output_uri(data_bucket: str, job_id: str) -> str:
    return f"s3://{data_bucket}/{contract.RESULTS_PREFIX}{job_id}/"


_BATCH_SUFFIXES: Final = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


def _batch_request(doc: Mapping[str, Any], data_bucket: str) -> JobRequest:
    """POST /jobs ``{"input_uri", ...}`` on stepfunctions-batch: a job config without the need
    for output_uri (default results/{job_id}/, set when the job starts) or format (suffix)."""
    if "instances" in doc:
        raise PayloadError("invalid_body", "send either instances or input_uri, not both")
    if CONFIG_MODEL_VERSION in doc:
        raise PayloadError(
            "invalid_body",
            f"{CONFIG_MODEL_VERSION} belongs to a job config uploaded to S3; on POST /jobs pin "
            f"the version with the {contract.MODEL_VERSION_HEADER} header",
        )
    full = dict(doc)
    if "format" not in full and isinstance(full.get("input_uri"), str):
        suffix = "." + full["input_uri"].rsplit(".", 1)[-1].lower()
        if suffix in _BATCH_SUFFIXES:
            full["format"] = _BATCH_SUFFIXES[suffix]
    output_given = full.get("output_uri") is not None
    if not output_given:
        full["output_uri"] = f"s3://{data_bucket}/{contract.RESULTS_PREFIX}"
    config = parse_job_config(full, data_bucket)
    return JobRequest(
        input_uri=config.input_uri,
        output_uri=config.output_uri if output_given else None,
        format=config.format,
        shards=config.shards,
        priority=config.priority,
        id_column=config.id_column,
    )
