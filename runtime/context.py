"""The one lazily-built object through which handlers read their environment and get clients.

This module imports neither numpy nor an engine (the model's and the payload's modules are
imported when first needed), so the predictor can start its model's download through it before
its other imports (:meth:`RuntimeContext.prefetch_model`).

Handlers create no boto3 client and read no environment variable at import time; they ask a
:class:`RuntimeContext`, built on first use from ``os.environ`` (or from the mapping a test or the
local emulator passes), and clients can be injected.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from runtime import contract
from runtime.categories import UNKNOWN_CATEGORY_MODES, UNKNOWN_ERROR, UNKNOWN_MISSING
from runtime.modelfile import DEFAULT_CACHE_DIR, ModelUnavailable, Prefetch, parse_s3_uri

if TYPE_CHECKING:
    from runtime.jobs import JobStore
    from runtime.model import ModelCache, ModelInfo
    from runtime.payload import FeatureSchema, Limits
    from runtime.rollout import Rollout

_TRUE = frozenset({"1", "true", "yes", "on"})
DEFAULT_SYNC_WAIT_SECONDS = 25.0  # the mlserve:syncWaitSeconds default (DESIGN.md §3)


# Set by Lambda in every function's environment (and by the local emulator's stand-ins).
ENV_LAMBDA_FUNCTION_NAME = "AWS_LAMBDA_FUNCTION_NAME"


def in_lambda() -> bool:
    """True inside a Lambda execution environment (the runtime sets this variable)."""
    return ENV_LAMBDA_FUNCTION_NAME in os.environ


class ConfigurationError(Exception):
    """The function was deployed with a missing or invalid environment variable."""


class VersionNotServed(ModelUnavailable):
    """A job names a model version this task or job definition does not hold (a job created
    before a promotion or a rollback, or a record edited by hand): it fails with this reason,
    never scored by another version."""

    code = "model_version_unavailable"

    def __init__(self, asked: str, served: Mapping[str, str]) -> None:
        held = ", ".join(f"{v} ({role})" for v, role in served.items()) or "none"
        super().__init__(
            f"the job names model version {asked!r}, which this scoring task does not hold "
            f"(it holds {held}); the stack was redeployed with other versions after the job "
            "was created: submit the job again"
        )


def version_of_uri(uri: str) -> str:
    """The version in a model object's URI (s3://bucket/models/{name}/{version}/model.ubj)."""
    try:
        return contract.parse_model_key(parse_s3_uri(uri)[1])[1]
    except ValueError as exc:
        raise ConfigurationError(f"not a model location: {exc}") from exc


@dataclass(frozen=True)
class ClientBudget:
    """How long one AWS call of a function may take, retries included (botocore's standard
    mode: attempt n waits up to 2**(n-1) s after a throttle or a 5xx). ``total_attempts``
    counts the first one (botocore's ``max_attempts`` would count only the retries)."""

    total_attempts: int
    connect_timeout: int
    read_timeout: int


# A function that answers API Gateway (the job API: 10 s timeout at least, components/ecs.
# job_api_timeout) gives up on a failing call within a few seconds, so the caller gets its 503
# with the reason, not API Gateway's 502 for a function that timed out: 3 attempts, the AWS
# SDKs' default (at most 1 + 2 s of backoff), 5 s per read.
INTERACTIVE: Final = ClientBudget(total_attempts=3, connect_timeout=2, read_timeout=5)
# Background functions and tasks (Step Functions steps, the S3 trigger, the scoring task) have
# minutes: they retry longer before failing a job.
BACKGROUND: Final = ClientBudget(total_attempts=5, connect_timeout=3, read_timeout=20)


class RuntimeContext:
    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        clients: Mapping[str, Any] | None = None,
        budget: ClientBudget = BACKGROUND,
    ) -> None:
        self.budget = budget
        self.env: Mapping[str, str] = dict(os.environ if env is None else env)
        self._clients: dict[str, Any] = dict(clients or {})
        self._lock = threading.RLock()  # re-entered: a lazy property may create a client
        self._model_cache: ModelCache | None = None
        self._canary_cache: ModelCache | None = None
        self._model_info: ModelInfo | None = None
        self._prefetch: Prefetch | None = None
        self._job_store: JobStore | None = None

    # --- settings -----------------------------------------------------------------------------
    def get(self, name: str, default: str | None = None) -> str | None:
        return self.env.get(name, default)

    def require(self, name: str) -> str:
        value = self.env.get(name)
        if not value:
            raise ConfigurationError(f"environment variable {name} is not set")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.env.get(name)
        return default if value is None else value.strip().lower() in _TRUE

    def integer(self, name: str, default: int) -> int:
        value = self.env.get(name)
        if value is None or not value.strip():
            return default
        try:
            return int(value)
        except ValueError as exc:
            raise ConfigurationError(
                f"environment variable {name}={value!r} is not an integer"
            ) from exc

    @property
    def max_rows(self) -> int:
        return self.integer(contract.ENV_MAX_ROWS, contract.DEFAULT_MAX_ROWS)

    @property
    def allow_missing(self) -> bool:
        return self.flag(contract.ENV_ALLOW_MISSING)

    @property
    def unknown_category(self) -> str:
        """mlserve:unknownCategory: ``error`` (a 400) or ``missing``."""
        value = (self.get(contract.ENV_UNKNOWN_CATEGORY) or UNKNOWN_ERROR).strip().lower()
        if value not in UNKNOWN_CATEGORY_MODES:
            raise ConfigurationError(
                f"environment variable {contract.ENV_UNKNOWN_CATEGORY}={value!r} is not one of "
                f"{', '.join(UNKNOWN_CATEGORY_MODES)}"
            )
        return value

    @property
    def limits(self) -> Limits:
        """What a request may hold: max_rows, allow_missing, unknown_category."""
        from runtime.payload import Limits

        return Limits(
            max_rows=self.max_rows,
            allow_missing=self.allow_missing,
            unknown_category_missing=self.unknown_category == UNKNOWN_MISSING,
        )

    def number(self, name: str, default: float) -> float:
        value = self.env.get(name)
        if value is None or not value.strip():
            return default
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < 0:
            raise ConfigurationError(
                f"environment variable {name}={value!r} is not a non-negative number"
            )
        return number

    @property
    def architecture(self) -> str:
        return self.require(contract.ENV_ARCHITECTURE)

    @property
    def data_bucket(self) -> str:
        return self.require(contract.ENV_DATA_BUCKET)

    @property
    def sync_wait_seconds(self) -> float:
        return self.number(contract.ENV_SYNC_WAIT_SECONDS, DEFAULT_SYNC_WAIT_SECONDS)

    @property
    def state_machine_arn(self) -> str:
        """The Step Functions architectures' state machine (the job API starts its executions)."""
        return self.require(contract.ENV_STATE_MACHINE_ARN)

    @property
    def presigned_url_seconds(self) -> int:
        """How long result_url links and upload URLs stay valid (PRESIGNED_URL_SECONDS)."""
        seconds = self.integer(
            contract.ENV_PRESIGNED_URL_SECONDS, contract.DEFAULT_PRESIGNED_URL_SECONDS
        )
        if not 1 <= seconds <= contract.MAX_PRESIGNED_URL_SECONDS:
            raise ConfigurationError(
                f"{contract.ENV_PRESIGNED_URL_SECONDS}={seconds} is not 1 to "
                f"{contract.MAX_PRESIGNED_URL_SECONDS} seconds"
            )
        return seconds

    @property
    def job_ttl_days(self) -> int:
        return self.integer(contract.ENV_JOB_TTL_DAYS, contract.DEFAULT_JOB_TTL_DAYS)

    # --- clients ------------------------------------------------------------------------------
    def client(self, service: str) -> Any:
        """A boto3 client (created once; standard retry mode honours throttling), within the
        context's :class:`ClientBudget`."""
        existing = self._clients.get(service)
        if existing is not None:
            return existing
        with self._lock:
            if service not in self._clients:
                import boto3
                from botocore.config import Config

                config = Config(
                    retries={"mode": "standard", "total_max_attempts": self.budget.total_attempts},
                    connect_timeout=self.budget.connect_timeout,
                    read_timeout=self.budget.read_timeout,
                    # presigned links (result_url, upload URLs) need SigV4 in every region
                    signature_version="s3v4" if service == "s3" else None,
                )
                self._clients[service] = boto3.client(service, config=config)
            return self._clients[service]

    def object_reader(self) -> Any:
        """What reads the model object (``get_object(Bucket=, Key=)``): an injected ``s3``
        client; in a Lambda function (``AWS_LAMBDA_FUNCTION_NAME``, which Lambda sets) whose
        environment carries the credentials, as Lambda's does, an :class:`ObjectReader` (the
        same GetObject without boto3's ~0.4 s of imports and client: runtime/s3object.py);
        else the boto3 client."""
        existing = self._clients.get("s3")
        if existing is not None or not self.get(ENV_LAMBDA_FUNCTION_NAME):
            return self.client("s3")
        from runtime.s3object import MissingCredentials, ObjectReader

        try:
            return ObjectReader(budget=self.budget)
        except MissingCredentials:  # credentials from elsewhere (a profile): boto3 finds them
            return self.client("s3")

    # --- model --------------------------------------------------------------------------------
    def _model_cache_dir(self) -> Path:
        cache_dir = self.get(contract.ENV_MODEL_CACHE_DIR)
        return Path(cache_dir) if cache_dir else DEFAULT_CACHE_DIR

    def prefetch_model(self) -> None:
        """Start downloading the model (MODEL_URI, checked against MODEL_SHA256) into the cache
        directory in a thread, for :attr:`models` to load: the predictor's cold start calls it
        before its own imports, which then overlap the download. Without a model to fetch, or
        once the models are loaded, nothing happens; any error is the first load's to report."""
        uri, sha256 = self.get(contract.ENV_MODEL_URI), self.get(contract.ENV_MODEL_SHA256)
        if not uri or not sha256 or self._model_cache is not None or self._prefetch is not None:
            return
        try:
            self._prefetch = Prefetch(
                self.object_reader(), uri, sha256.strip().lower(), self._model_cache_dir()
            )
        except Exception:  # the first load creates the reader again and reports the error
            self._prefetch = None

    @property
    def models(self) -> ModelCache:
        if self._model_cache is None:
            with self._lock:
                if self._model_cache is None:
                    from runtime.model import ModelCache

                    self._model_cache = ModelCache(
                        self.get(contract.ENV_MODEL_URI),
                        self.get(contract.ENV_MODEL_SHA256),
                        self.object_reader,
                        self._model_cache_dir(),
                        engine=self.get(contract.ENV_MODEL_ENGINE),
                        categories=self.get(contract.ENV_MODEL_CATEGORIES),
                        prefetch=self._prefetch,
                    )
        return self._model_cache

    @property
    def canary_models(self) -> ModelCache | None:
        """The canary's model (CANARY_MODEL_URI), None when no canary is deployed."""
        if not self.get(contract.ENV_CANARY_MODEL_URI):
            return None
        if self._canary_cache is None:
            with self._lock:
                if self._canary_cache is None:
                    from runtime.model import ModelCache

                    self._canary_cache = ModelCache(
                        self.get(contract.ENV_CANARY_MODEL_URI),
                        self.get(contract.ENV_CANARY_MODEL_SHA256),
                        self.object_reader,
                        self._model_cache_dir(),
                        engine=self.get(contract.ENV_MODEL_ENGINE),
                        categories=self.get(contract.ENV_CANARY_MODEL_CATEGORIES),
                    )
        return self._canary_cache

    @property
    def stable_version(self) -> str:
        """The stable model's version, from MODEL_URI (no S3 read)."""
        return version_of_uri(self.require(contract.ENV_MODEL_URI))

    @property
    def canary_version(self) -> str | None:
        """The canary's version, from CANARY_MODEL_URI; None without a canary."""
        uri = self.get(contract.ENV_CANARY_MODEL_URI)
        return version_of_uri(uri) if uri else None

    def models_for(self, version: str) -> ModelCache:
        """The model of ``version`` (the stable one or the canary), as a job record names it;
        :class:`VersionNotServed` for any other version."""
        served = {self.stable_version: "stable"}
        canary = self.canary_version
        if canary is not None:
            served[canary] = "canary"
        if served.get(version) == "stable":
            return self.models
        if served.get(version) == "canary":
            cache = self.canary_models
            assert cache is not None
            return cache
        raise VersionNotServed(version, served)

    @property
    def job_rollout(self) -> Rollout:
        """Who scores a new job (the job API, the S3 trigger): the stable model and, when one is
        deployed (CANARY_MODEL_URI), the canary for CANARY_PERCENT % of the jobs; always a split
        (the job architectures get no canary under canaryMode shadow: components/settings.py)."""
        from runtime.rollout import Rollout

        canary = self.canary_version
        if canary is None:
            return Rollout((self.stable_version,))
        return Rollout(
            (self.stable_version, canary),
            canary_percent=self.percent(contract.ENV_CANARY_PERCENT),
            mode=contract.CANARY_SPLIT,
        )

    def percent(self, name: str) -> int:
        """A 0-100 share (CANARY_PERCENT, CAPTURE_SAMPLE_PERCENT); unset: 0."""
        value = self.integer(name, 0)
        if not 0 <= value <= 100:
            raise ConfigurationError(f"environment variable {name}={value} is not 0-100")
        return value

    @property
    def canary_mode(self) -> str:
        value = (self.get(contract.ENV_CANARY_MODE) or contract.CANARY_SPLIT).strip().lower()
        if value not in contract.CANARY_MODES:
            raise ConfigurationError(
                f"environment variable {contract.ENV_CANARY_MODE}={value!r} is not one of "
                f"{', '.join(contract.CANARY_MODES)}"
            )
        return value

    # --- model metadata (the job API: feature schema without loading the model) ----------------
    @property
    def model_info(self) -> ModelInfo:
        """What MODEL_METADATA_URI says about the model; read once, retried after a failure."""
        if self._model_info is None:
            s3 = self.client("s3")
            with self._lock:
                if self._model_info is None:
                    self._model_info = read_model_info(
                        s3,
                        self.get(contract.ENV_MODEL_METADATA_URI),
                        self.get(contract.ENV_MODEL_URI),
                        self.get(contract.ENV_MODEL_SHA256),
                    )
        return self._model_info

    @property
    def feature_schema(self) -> FeatureSchema:
        from runtime.payload import FeatureSchema

        return FeatureSchema.of_model(self.model_info)

    # --- the job table -------------------------------------------------------------------------
    @property
    def jobs(self) -> JobStore:
        if self._job_store is None:
            from runtime.jobs import JobStore

            table = self.require(contract.ENV_JOB_TABLE)
            ttl_days = self.job_ttl_days
            if ttl_days < 1:
                raise ConfigurationError(f"{contract.ENV_JOB_TTL_DAYS} must be at least 1")
            self._job_store = JobStore(self.client("dynamodb"), table, ttl_days=ttl_days)
        return self._job_store


def read_model_info(
    s3: Any, metadata_uri: str | None, model_uri: str | None, model_sha256: str | None
) -> ModelInfo:
    """The :class:`ModelInfo` of the deployed model from its metadata.json.

    Name and version come from MODEL_URI when set (that is the object the scoring task loads);
    a metadata.json recording another sha256 than MODEL_SHA256 describes another model.
    Raises :class:`ModelUnavailable` (503).
    """
    from runtime.model import model_info

    if not metadata_uri:
        raise ModelUnavailable(f"{contract.ENV_MODEL_METADATA_URI} must be set")
    try:
        bucket, key = parse_s3_uri(metadata_uri)
        doc = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except Exception as exc:
        raise ModelUnavailable(f"cannot read the model metadata {metadata_uri}: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("feature_names"), list):
        raise ModelUnavailable(f"{metadata_uri} has no feature_names list")
    name, version = str(doc.get("name", "")), str(doc.get("version", ""))
    if model_uri:
        try:
            name, version = contract.parse_model_key(parse_s3_uri(model_uri)[1])
        except ValueError as exc:
            raise ModelUnavailable(f"MODEL_URI is not a model location: {exc}") from exc
    recorded = str(doc.get("sha256") or "").lower()
    expected = (model_sha256 or "").strip().lower()
    if recorded and expected and recorded != expected:
        raise ModelUnavailable(
            f"{metadata_uri} describes a model with sha256 {recorded}, but "
            f"{contract.ENV_MODEL_SHA256} is {expected}: redeploy (pulumi up) so both describe "
            "the same model"
        )
    try:
        return model_info(doc, name, version, expected or recorded, contract.ENGINE_XGBOOST)
    except ValueError as exc:
        raise ModelUnavailable(f"{metadata_uri}: {exc}; redeploy (pulumi up)") from exc
