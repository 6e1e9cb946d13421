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
ENV_JOB_TABLE: Final = "JOB_TABLE"
ENV_ARCHITECTURE: Final = "ARCHITECTURE"

# Powertools reads these itself; we set them on every function.
ENV_POWERTOOLS_SERVICE_NAME: Final = "POWERTOOLS_SERVICE_NAME"
ENV_POWERTOOLS_METRICS_NAMESPACE: Final = "POWERTOOLS_METRICS_NAMESPACE"
SERVICE_NAME: Final = "mlserve"
METRICS_NAMESPACE: Final = "mlserve"

# --- Lambda handlers (module:function as Lambda's "handler" setting) --------------------------
HANDLER_PREDICT: Final = "runtime.handlers.predict.handler"

# --- limits ------------------------------------------------------------------------------------
MAX_BODY_BYTES: Final = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit
DEFAULT_MAX_ROWS: Final = 10_000
LAMBDA_UNZIPPED_LIMIT_BYTES: Final = 250 * 1024 * 1024  # function + all layers, unzipped
LAMBDA_PYTHON_VERSION: Final = "3.12"
LAMBDA_RUNTIME: Final = "python3.12"

# --- S3 layout (model bucket) -----------------------------------------------------------------
MODEL_PREFIX: Final = "models/"
MODEL_OBJECT_NAME: Final = "model.ubj"
MODEL_METADATA_NAME: Final = "metadata.json"
JOBS_PREFIX: Final = "jobs/"
INPUTS_PREFIX: Final = "inputs/"
RESULTS_PREFIX: Final = "results/"


def model_key(name: str, version: str) -> str:
    """S3 key of a model object: ``models/{name}/{version}/model.ubj``."""
    return f"{MODEL_PREFIX}{name}/{version}/{MODEL_OBJECT_NAME}"


def model_metadata_key(name: str, version: str) -> str:
    return f"{MODEL_PREFIX}{name}/{version}/{MODEL_METADATA_NAME}"


def parse_model_key(key: str) -> tuple[str, str]:
    """Return (name, version) of a key written by :func:`model_key`."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] + "/" != MODEL_PREFIX or parts[3] != MODEL_OBJECT_NAME:
        raise ValueError(f"not a model key (expected models/<name>/<version>/model.ubj): {key!r}")
    return parts[1], parts[2]


# --- job table (DynamoDB) ---------------------------------------------------------------------
JOB_TABLE_HASH_KEY: Final = "job_id"
JOB_TABLE_TTL_ATTRIBUTE: Final = "expires_at"

STATUS_PENDING: Final = "PENDING"
STATUS_RUNNING: Final = "RUNNING"
STATUS_SUCCEEDED: Final = "SUCCEEDED"
STATUS_FAILED: Final = "FAILED"
STATUS_CANCELLED: Final = "CANCELLED"
TERMINAL_STATUSES: Final = frozenset({STATUS_SUCCEEDED, STATUS_FAILED, STATUS_CANCELLED})

# --- HTTP ----------------------------------------------------------------------------------------
API_KEY_HEADER: Final = "x-api-key"
STAGE_NAME: Final = "v1"
