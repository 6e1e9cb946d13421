"""Names shared by the infrastructure (components/), the runtime, the emulator and the docs.

Everything that must be spelled the same on both sides of a deployment lives here exactly once:
environment variable names, the job table's key schema, job statuses and S3 key layout.
"""

from __future__ import annotations

from typing import Final

# --- architectures ---------------------------------------------------------------------------
ARCH_LAMBDA: Final = "lambda"
ARCH_LAMBDA_ECS: Final = "lambda-ecs"
ARCH_STEPFUNCTIONS_ECS: Final = "stepfunctions-ecs"
ARCH_STEPFUNCTIONS_BATCH: Final = "stepfunctions-batch"

# --- environment variables read by the runtime ----------------------------------------------
ENV_MODEL_URI: Final = "MODEL_URI"  # s3://bucket/models/{name}/{version}/model.ubj
ENV_MODEL_SHA256: Final = "MODEL_SHA256"  # hex digest the loader verifies
ENV_MODEL_CACHE_DIR: Final = "MODEL_CACHE_DIR"  # where the model is cached (default /tmp/mlserve)
ENV_MAX_ROWS: Final = "MAX_ROWS"  # most rows accepted inline by /predict
ENV_ALLOW_MISSING: Final = "ALLOW_MISSING"  # "true": null/NaN/Infinity are passed as missing
# "error" (a 400) or "missing": a value outside a categorical feature's categories
ENV_UNKNOWN_CATEGORY: Final = "UNKNOWN_CATEGORY"
# JSON {feature: [categories]}: set only when the model stores no categories and metadata.json
# records them (from the training data); empty otherwise
ENV_MODEL_CATEGORIES: Final = "MODEL_CATEGORIES"
ENV_JOB_TABLE: Final = "JOB_TABLE"
ENV_ARCHITECTURE: Final = "ARCHITECTURE"  # which architecture a job API function serves
ENV_MODEL_METADATA_URI: Final = "MODEL_METADATA_URI"  # s3://.../metadata.json (feature schema)
ENV_DATA_BUCKET: Final = "DATA_BUCKET"  # the model bucket: inputs/ and results/ live there too
ENV_JOB_ID: Final = "JOB_ID"  # the scoring container's job (container override)
ENV_SYNC_WAIT_SECONDS: Final = "SYNC_WAIT_SECONDS"  # lambda-ecs: how long POST waits for the task
ENV_JOB_TTL_DAYS: Final = "JOB_TTL_DAYS"  # job records expire (DynamoDB TTL) after this many days
# How long the presigned links of the job API (result_url downloads, upload URLs) stay valid.
ENV_PRESIGNED_URL_SECONDS: Final = "PRESIGNED_URL_SECONDS"
# ECS (lambda-ecs, stepfunctions-ecs): where and how the scoring task runs
ENV_ECS_CLUSTER: Final = "ECS_CLUSTER"  # cluster ARN
ENV_ECS_TASK_DEFINITION: Final = "ECS_TASK_DEFINITION"  # task definition ARN (with revision)
ENV_ECS_SUBNETS: Final = "ECS_SUBNETS"  # comma-separated subnet ids
ENV_ECS_SECURITY_GROUPS: Final = "ECS_SECURITY_GROUPS"  # comma-separated security group ids
ENV_ECS_ASSIGN_PUBLIC_IP: Final = "ECS_ASSIGN_PUBLIC_IP"  # ENABLED | DISABLED
# Step Functions architectures: the job API starts executions of this state machine
ENV_STATE_MACHINE_ARN: Final = "STATE_MACHINE_ARN"
# The inference engine of the model at MODEL_URI (issue 8): xgboost (the model.ubj object) or
# onnx (the model.onnx converted and verified at deploy time, next to it).
ENV_MODEL_ENGINE: Final = "MODEL_ENGINE"
# Canary and shadow rollouts (issue 17): a second model version behind the same endpoint.
ENV_CANARY_MODEL_URI: Final = "CANARY_MODEL_URI"  # the canary's object, as MODEL_URI; unset: none
ENV_CANARY_MODEL_SHA256: Final = "CANARY_MODEL_SHA256"
ENV_CANARY_MODEL_CATEGORIES: Final = "CANARY_MODEL_CATEGORIES"  # as MODEL_CATEGORIES
ENV_CANARY_PERCENT: Final = "CANARY_PERCENT"  # 0-100: requests answered (split) or shadowed
ENV_CANARY_MODE: Final = "CANARY_MODE"  # split | shadow
# Data capture (issue 17): the share of /predict requests whose record is captured.
ENV_CAPTURE_SAMPLE_PERCENT: Final = "CAPTURE_SAMPLE_PERCENT"  # 0-100; 0: no capture

# Powertools reads these itself; we set them on every function.
ENV_POWERTOOLS_SERVICE_NAME: Final = "POWERTOOLS_SERVICE_NAME"
ENV_POWERTOOLS_METRICS_NAMESPACE: Final = "POWERTOOLS_METRICS_NAMESPACE"
SERVICE_NAME: Final = "mlserve"
METRICS_NAMESPACE: Final = "mlserve"

# --- metrics the runtime emits (CloudWatch EMF, namespace METRICS_NAMESPACE) ----------------------
# Every record carries Powertools' ``service`` dimension (SERVICE_NAME). The dashboard and the
# alarms (components/monitoring.py) read these names from here, never from a copy.
METRIC_DIMENSION_SERVICE: Final = "service"
# the predictor's metrics per model version (a canary's beside the stable one's)
METRIC_DIMENSION_MODEL_VERSION: Final = "model_version"
METRIC_PREDICT_LATENCY: Final = "PredictLatency"  # ms, one per successful POST /predict (lambda)
METRIC_PREDICT_ROWS: Final = "PredictRows"  # rows of that prediction
METRIC_REJECTED_REQUESTS: Final = "RejectedRequests"  # a 4xx for a malformed request body
METRIC_PREDICT_ERRORS: Final = "PredictErrors"  # a model version failed to score (lambda)
METRIC_SERVER_ERRORS: Final = "ServerErrors"  # a 5xx answered by a handler (ours, not the caller's)
METRIC_JOBS_SUBMITTED: Final = "JobsSubmitted"  # a job accepted (job API, S3 trigger)
METRIC_JOBS_SUCCEEDED: Final = "JobsSucceeded"  # a job recorded SUCCEEDED (runtime/jobs.py)
METRIC_JOBS_FAILED: Final = "JobsFailed"  # a job recorded FAILED by runtime code (runtime/jobs.py)
METRIC_JOBS_CANCELLED: Final = "JobsCancelled"  # a job cancelled through DELETE /jobs/{id}
METRIC_BATCH_JOBS_FAILED: Final = "BatchJobsFailed"  # CheckBatchStatus found the Batch job FAILED

# --- Lambda handlers (module:function as Lambda's "handler" setting) --------------------------
HANDLER_PREDICT: Final = "runtime.handlers.predict.handler"
HANDLER_JOBS: Final = "runtime.handlers.jobs.handler"  # the job API of the async architectures
HANDLER_RUN_ECS: Final = "runtime.handlers.steps.run_ecs"  # stepfunctions-ecs: RunECS state
HANDLER_CHECK_JOB_STATUS: Final = "runtime.handlers.steps.check_job_status"  # CheckJobStatus state
# Data capture: the predictor's capture log lines, delivered by a subscription filter.
HANDLER_CAPTURE: Final = "runtime.handlers.capture.handler"

# --- the scoring container ---------------------------------------------------------------------
SCORING_CONTAINER_NAME: Final = "scoring"  # container name in the task definition (overrides)
SCORING_MODULE: Final = "runtime.scoring"  # ENTRYPOINT ["python", "-m", "runtime.scoring"]

# --- limits ------------------------------------------------------------------------------------
MAX_BODY_BYTES: Final = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit
DEFAULT_MAX_ROWS: Final = 10_000
LAMBDA_UNZIPPED_LIMIT_BYTES: Final = 250 * 1024 * 1024  # function + all layers, unzipped

# --- S3 layout (model bucket) -----------------------------------------------------------------
MODEL_PREFIX: Final = "models/"
MODEL_OBJECT_NAME: Final = "model.ubj"
MODEL_METADATA_NAME: Final = "metadata.json"
# What a local model directory (mlserve local --model-dir) may hold: XGBoost's UBJSON or JSON.
MODEL_FILE_NAMES: Final = (MODEL_OBJECT_NAME, "model.json")
JOBS_PREFIX: Final = "jobs/"
INPUTS_PREFIX: Final = "inputs/"
RESULTS_PREFIX: Final = "results/"
# Captured request/response records: capture/{model}/{version}/dt=YYYY-MM-DD/<object>.jsonl
CAPTURE_PREFIX: Final = "capture/"


def input_environment(
    allow_missing: bool, unknown_category: str, model_categories: str = ""
) -> dict[str, str]:
    """How a function or container that reads feature values reads them: ALLOW_MISSING,
    UNKNOWN_CATEGORY and (for the model loaders, when the model stores no categories but
    metadata.json records them) MODEL_CATEGORIES."""
    env = {
        ENV_ALLOW_MISSING: "true" if allow_missing else "false",
        ENV_UNKNOWN_CATEGORY: unknown_category,
    }
    if model_categories:
        env[ENV_MODEL_CATEGORIES] = model_categories
    return env


def input_key(job_id: str) -> str:
    """Where the job API stores an inline request too large for the job item."""
    return f"{INPUTS_PREFIX}{job_id}.json"


def upload_key(job_id: str, fmt: str) -> str:
    """Where a client PUTs the input of an upload job (POST /jobs {"upload": ...}):
    ``inputs/{job_id}/input.{fmt}``."""
    return f"{INPUTS_PREFIX}{job_id}/input.{fmt}"


def results_key(job_id: str, name: str = "predictions.json") -> str:
    return f"{RESULTS_PREFIX}{job_id}/{name}"


def model_key(name: str, version: str) -> str:
    """S3 key of a model object: ``models/{name}/{version}/model.ubj``."""
    return f"{MODEL_PREFIX}{name}/{version}/{MODEL_OBJECT_NAME}"


def model_metadata_key(name: str, version: str) -> str:
    return f"{MODEL_PREFIX}{name}/{version}/{MODEL_METADATA_NAME}"


def capture_key(name: str, version: str, day: str, object_name: str) -> str:
    """Where captured records land: ``capture/{name}/{version}/dt={day}/{object_name}``
    (``day`` is YYYY-MM-DD, UTC; ``version`` the version that answered the requests)."""
    return f"{CAPTURE_PREFIX}{name}/{version}/dt={day}/{object_name}"


def parse_model_key(key: str) -> tuple[str, str]:
    """Return (name, version) of a key written by :func:`model_key` or :func:`onnx_model_key`."""
    parts = key.split("/")
    if (
        len(parts) != 4
        or parts[0] + "/" != MODEL_PREFIX
        or parts[3] not in (MODEL_OBJECT_NAME, ONNX_OBJECT_NAME)
    ):
        raise ValueError(
            f"not a model key (expected models/<name>/<version>/{MODEL_OBJECT_NAME} or "
            f"{ONNX_OBJECT_NAME}): {key!r}"
        )
    return parts[1], parts[2]


# --- inference engines (issue 8) -----------------------------------------------------------------
ENGINE_XGBOOST: Final = "xgboost"
ENGINE_ONNX: Final = "onnx"
ENGINES: Final = (ENGINE_XGBOOST, ENGINE_ONNX)
ONNX_OBJECT_NAME: Final = "model.onnx"  # next to model.ubj: models/{name}/{version}/model.onnx
# The converted model's metadata_props: everything the onnx engine needs besides the graph.
ONNX_META_FEATURE_NAMES: Final = "mlserve.feature_names"  # JSON list of strings
ONNX_META_OBJECTIVE: Final = "mlserve.objective"
ONNX_META_NUM_CLASS: Final = "mlserve.num_class"
ONNX_META_NAME: Final = "mlserve.name"
ONNX_META_VERSION: Final = "mlserve.version"
ONNX_META_SOURCE_SHA256: Final = "mlserve.source_sha256"  # the XGBoost model it was converted from
ONNX_META_TOLERANCE: Final = "mlserve.tolerance"  # verified |onnx - xgboost| bound (see docs)
ONNX_OUTPUT_NAME: Final = "prediction"  # the graph's single output, shaped like XGBoost's


def onnx_model_key(name: str, version: str) -> str:
    """S3 key of the converted model: ``models/{name}/{version}/model.onnx``."""
    return f"{MODEL_PREFIX}{name}/{version}/{ONNX_OBJECT_NAME}"


def engine_of_key(key: str) -> str:
    """The engine serving the object at ``key``: onnx for model.onnx, else xgboost."""
    return ENGINE_ONNX if key.rsplit("/", 1)[-1] == ONNX_OBJECT_NAME else ENGINE_XGBOOST


# --- job table (DynamoDB) ---------------------------------------------------------------------
JOB_TABLE_HASH_KEY: Final = "job_id"
JOB_TABLE_TTL_ATTRIBUTE: Final = "expires_at"
DEFAULT_JOB_TTL_DAYS: Final = 30
MAX_INLINE_ITEM_BYTES: Final = 350 * 1024  # inline instances/predictions only below this item size
# Who submitted a job (the API key id, or the IAM caller's ARN under apiAuth iam; ANONYMOUS_CALLER
# under apiAuth none): GET/DELETE answer 404 to anyone else, GET /jobs lists the caller's own
# jobs through this global secondary index (hash: caller, range: created_at, newest first).
JOB_TABLE_CALLER_ATTRIBUTE: Final = "caller"
JOB_TABLE_CREATED_ATTRIBUTE: Final = "created_at"
JOB_TABLE_CALLER_INDEX: Final = "by-caller"
# The attributes the index carries besides its keys and job_id (what GET /jobs answers).
JOB_TABLE_CALLER_INDEX_ATTRIBUTES: Final = (
    "status",
    "updated_at",
    "architecture",
    "model_version",
    "rows",
    "attempts",
    "error",
)
ANONYMOUS_CALLER: Final = "anonymous"
DEFAULT_PRESIGNED_URL_SECONDS: Final = 3600
MAX_PRESIGNED_URL_SECONDS: Final = 12 * 3600  # a Lambda role's session credentials last <= 12 h

STATUS_PENDING: Final = "PENDING"
STATUS_RUNNING: Final = "RUNNING"
STATUS_SUCCEEDED: Final = "SUCCEEDED"
STATUS_FAILED: Final = "FAILED"
STATUS_CANCELLED: Final = "CANCELLED"
TERMINAL_STATUSES: Final = frozenset({STATUS_SUCCEEDED, STATUS_FAILED, STATUS_CANCELLED})

# --- HTTP ----------------------------------------------------------------------------------------
API_KEY_HEADER: Final = "x-api-key"
# POST /predict on the lambda architecture: pin a model version (the stable or the canary one).
MODEL_VERSION_HEADER: Final = "x-model-version"
# POST /predict: the key of the deterministic canary assignment when given (a client's retries
# keep their version); else API Gateway's request id.
REQUEST_ID_HEADER: Final = "x-request-id"
CANARY_MODES: Final = ("split", "shadow")
CANARY_SPLIT: Final = "split"
CANARY_SHADOW: Final = "shadow"

# --- data capture (runtime/capture.py has the record's schema) ---------------------------------
# A capture log line carries this marker; the predictor log group's subscription filter selects
# the lines that do (CAPTURE_FILTER_PATTERN, CloudWatch Logs' JSON filter syntax).
CAPTURE_MARKER_FIELD: Final = "mlserve_capture"
CAPTURE_MARKER_VALUE: Final = 1
CAPTURE_FILTER_PATTERN: Final = f"{{ $.{CAPTURE_MARKER_FIELD} = {CAPTURE_MARKER_VALUE} }}"
# The operations (runtime/openapi.yaml operationIds) every job API function serves.
JOB_API_OPERATIONS: Final = (
    "health",
    "predict",
    "submit_job",
    "list_jobs",
    "get_job",
    "cancel_job",
    "start_job",
)
STAGE_NAME: Final = "v1"

# --- stepfunctions-batch (AWS Batch, S3 job configs) --------------------------------------------
ENV_BATCH_JOB_QUEUE_HIGH: Final = "BATCH_JOB_QUEUE_HIGH"  # job queue ARN of priority "high"
ENV_BATCH_JOB_QUEUE_LOW: Final = "BATCH_JOB_QUEUE_LOW"  # job queue ARN of priority "low"
ENV_BATCH_JOB_DEFINITION: Final = "BATCH_JOB_DEFINITION"  # job definition ARN
# Set by AWS Batch inside the container.
ENV_BATCH_ARRAY_INDEX: Final = "AWS_BATCH_JOB_ARRAY_INDEX"
ENV_BATCH_ATTEMPT: Final = "AWS_BATCH_JOB_ATTEMPT"
ENV_BATCH_JOB_ID: Final = "AWS_BATCH_JOB_ID"
HANDLER_TRIGGER: Final = "runtime.handlers.trigger.handler"  # S3 ObjectCreated on jobs/*.json
HANDLER_SUBMIT_BATCH_JOB: Final = "runtime.handlers.steps.submit_batch_job"
HANDLER_CHECK_BATCH_STATUS: Final = "runtime.handlers.steps.check_batch_status"
JOBS_REJECTED_PREFIX: Final = "jobs/rejected/"
MAX_SHARDS: Final = 10000
BATCH_FORMATS: Final = ("csv", "parquet", "jsonl")
PRIORITY_HIGH: Final = "high"
PRIORITY_LOW: Final = "low"
MANIFEST_NAME: Final = "_manifest.json"


def part_name(shard: int, fmt: str) -> str:
    """The object a batch shard writes under output_uri: ``part-00003.csv``."""
    return f"part-{shard:05d}.{fmt}"
