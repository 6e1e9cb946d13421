"""The stack configuration (`mlserve:*`), read once, typed and validated.

Pulumi.yaml's ``config:`` section is the single source of every key, its type and its default:
this module reads the defaults from there and adds only the validation rules (allowed values,
ranges). Every problem found is collected and reported together in one :class:`SettingsError`
whose lines name the key, the value and what is allowed, e.g.::

    mlserve:architecture: unknown architecture 'foo'; allowed: lambda

:meth:`Settings.from_lookup` is pure (no Pulumi): give it a ``get(key) -> str | None`` for the
bare key names. :func:`load_settings` is the Pulumi entry point (``pulumi.Config("mlserve")``).
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from components.monitoring import default_latency_p99_ms
from runtime import contract
from runtime.categories import UNKNOWN_CATEGORY_MODES
from runtime.modelfile import sha256_file

NAMESPACE: Final = "mlserve"
PROJECT_DIR: Final = Path(__file__).resolve().parent.parent
PROJECT_FILE: Final = PROJECT_DIR / "Pulumi.yaml"

# The registry of implemented architectures. An architecture is added here (and its builder in
# __main__.py's BUILDERS) in the issue that implements it; until then its name fails
# validation instead of deploying half a stack.
ARCHITECTURES: Final[tuple[str, ...]] = (
    contract.ARCH_LAMBDA,
    contract.ARCH_LAMBDA_ECS,
    contract.ARCH_STEPFUNCTIONS_ECS,
    contract.ARCH_STEPFUNCTIONS_BATCH,
)

LambdaArchitecture = Literal["arm64", "x86_64"]
LAMBDA_ARCHITECTURES: Final[tuple[LambdaArchitecture, ...]] = ("arm64", "x86_64")
# The Lambda Python runtimes mlserve deploys to, oldest first: those of pulumi_aws's Runtime enum
# (tests/infra/test_settings.py checks) that can run the layer. All run on Amazon Linux 2023
# (glibc 2.34), which the layer's manylinux wheels need (components/packaging.py).
LAMBDA_PYTHON_RUNTIMES: Final[tuple[str, ...]] = ("python3.12", "python3.13", "python3.14")
# Python runtimes Lambda offers (pulumi_aws's enum) at or above the project's own floor
# (requires-python 3.11) that cannot run the layer, and why: refused with the reason.
UNSUPPORTED_LAMBDA_RUNTIMES: Final[Mapping[str, str]] = {
    "python3.11": (
        "Lambda runs python3.11 on Amazon Linux 2, whose glibc 2.26 is older than the layer's "
        "wheels need (numpy 2.4 and scipy 1.17: manylinux_2_27; xgboost 3.2: manylinux_2_28)"
    ),
}
# mlserve:lambdaRuntime empty and the running Python not one of LAMBDA_PYTHON_RUNTIMES
FALLBACK_LAMBDA_RUNTIME: Final = "python3.12"
LAMBDA_PACKAGING: Final = ("layer",)
ENGINES: Final[tuple[str, ...]] = contract.ENGINES
API_AUTH: Final = ("api-key", "iam", "none")
POLLING: Final = ("lambda", "native")
BATCH_COMPUTE_TYPES: Final = ("FARGATE", "FARGATE_SPOT")
# CloudWatch Logs' allowed retention values (0 = never expire).
LOG_RETENTION_DAYS: Final = (
    0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
# Fargate task sizes: CPU units -> every memory size (MB) Fargate accepts with it.
FARGATE_MEMORY: Final[Mapping[int, tuple[int, ...]]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}
API_GATEWAY_TIMEOUT_SECONDS: Final = 29
MODEL_NAME_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9\-_.]*")
MODEL_VERSION_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_.]*")
IMAGE_URI_PATTERN: Final = re.compile(
    r"[a-z0-9][a-z0-9.\-]*(:[0-9]+)?(/[a-z0-9._\-]+)+(:[\w.\-]+)?(@sha256:[0-9a-f]{64})?"
)
SUBNET_ID_PATTERN: Final = re.compile(r"subnet-[0-9a-f]{8,17}")
SECURITY_GROUP_ID_PATTERN: Final = re.compile(r"sg-[0-9a-f]{8,17}")
MODEL_VERSION_HASH_CHARS: Final = 12
EMAIL_PATTERN: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

_MISSING_MODEL_HINT: Final = (
    "create the example model with `make model` (python -m mlserve train-example), "
    "or set mlserve:modelPath to an XGBoost JSON/UBJSON model"
)


class SettingsError(ValueError):
    """The configuration is invalid. ``problems`` holds one line per problem."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        count = len(self.problems)
        header = f"invalid {NAMESPACE} configuration ({count} problem{'s' if count != 1 else ''}):"
        super().__init__("\n  ".join([header, *self.problems]))


def load_project_schema(project_file: Path = PROJECT_FILE) -> dict[str, dict[str, Any]]:
    """The ``config:`` section of Pulumi.yaml: key -> {type, default, description, ...}."""
    document = yaml.safe_load(project_file.read_text())
    config = document.get("config") or {}
    schema: dict[str, dict[str, Any]] = {}
    for key, spec in config.items():
        if ":" in key:  # provider config (aws:region, ...) is not ours
            continue
        if not isinstance(spec, dict) or "type" not in spec or "default" not in spec:
            raise ValueError(f"{project_file}: config key {key!r} needs a type and a default")
        schema[key] = spec
    return schema


def describe_fargate_memory(task_cpu: int) -> str:
    """The memory sizes Fargate accepts with ``task_cpu`` CPU units, for messages.

    ``"2048-8192 in steps of 1024"`` for an evenly spaced range, else the list (``"512, 1024,
    2048"``). Raises KeyError for a CPU size Fargate does not offer.
    """
    sizes = FARGATE_MEMORY[task_cpu]
    steps = {b - a for a, b in itertools.pairwise(sizes)}
    if len(sizes) > 3 and len(steps) == 1:
        return f"{sizes[0]}-{sizes[-1]} in steps of {steps.pop()}"
    return ", ".join(map(str, sizes))


def runtime_of(version: tuple[int, int] | Any) -> str:
    """``(3, 12)`` (or a ``sys.version_info``) -> ``"python3.12"``."""
    return f"python{version[0]}.{version[1]}"


def default_lambda_runtime(version: tuple[int, int] | Any = sys.version_info) -> str:
    """mlserve:lambdaRuntime when it is empty: the runtime of the Python running the program
    (``version``) when mlserve deploys to it, so that Python compiles the archives' byte code and
    no other is needed; else :data:`FALLBACK_LAMBDA_RUNTIME`."""
    running = runtime_of(version)
    return running if running in LAMBDA_PYTHON_RUNTIMES else FALLBACK_LAMBDA_RUNTIME


def python_version_of(runtime: str) -> str:
    """``"python3.12"`` -> ``"3.12"``: the Python version of a Lambda Python runtime."""
    if not re.fullmatch(r"python3\.\d{1,2}", runtime):
        raise ValueError(f"not a Lambda Python runtime (python3.X): {runtime!r}")
    return runtime.removeprefix("python")


def _q(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


class _Reader:
    """Typed access to raw config values with problem collection."""

    def __init__(self, get: Callable[[str], str | None], schema: Mapping[str, Mapping[str, Any]]):
        self._get = get
        self._schema = schema
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{NAMESPACE}:{key}: {message}")

    def _raw(self, key: str) -> object:
        if key not in self._schema:
            raise KeyError(f"config key {key!r} is not declared in Pulumi.yaml")
        raw = self._get(key)
        return self._schema[key]["default"] if raw is None else raw

    def string(self, key: str) -> str:
        value = self._raw(key)
        return value.strip() if isinstance(value, str) else str(value)

    def integer(self, key: str, lo: int, hi: int | None, allowed: str) -> int | None:
        value = self._raw(key)
        if isinstance(value, bool):
            self.problem(key, f"{_q(value)} is not an integer; allowed: {allowed}")
            return None
        if isinstance(value, int):
            number = value
        else:
            text = str(value).strip()
            if not re.fullmatch(r"[+-]?[0-9]+", text):
                self.problem(key, f"{_q(value)} is not an integer; allowed: {allowed}")
                return None
            number = int(text)
        if number < lo or (hi is not None and number > hi):
            self.problem(key, f"{number} is out of range; allowed: {allowed}")
            return None
        return number

    def boolean(self, key: str) -> bool | None:
        value = self._raw(key)
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "false"):
            return text == "true"
        self.problem(key, f"{_q(value)} is not a boolean; allowed: true, false")
        return None

    def choice(self, key: str, allowed: tuple[str, ...], what: str = "value") -> str | None:
        value = self.string(key)
        if value not in allowed:
            self.problem(key, f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")
            return None
        return value

    def string_list(self, key: str) -> tuple[str, ...] | None:
        value = self._raw(key)
        items: object
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    items = json.loads(text)
                except json.JSONDecodeError:
                    self.problem(key, f"{value!r} is not a JSON list of strings")
                    return None
            else:
                items = [part for part in (p.strip() for p in text.split(",")) if part]
        else:
            items = value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            self.problem(key, f"{_q(value)} is not a list of strings")
            return None
        return tuple(i.strip() for i in items)


@dataclass(frozen=True)
class Settings:
    """Every `mlserve:*` key, typed and validated. Build with :meth:`from_lookup`."""

    architectures: tuple[str, ...]
    model_path: Path
    model_sha256: str
    model_name: str
    model_version: str
    canary_model_path: Path | None
    canary_model_sha256: str | None
    canary_model_name: str
    canary_model_version: str
    canary_percent: int
    canary_mode: str
    capture_sample_percent: int
    lambda_architecture: LambdaArchitecture
    lambda_runtime: str
    lambda_memory: int
    lambda_timeout: int
    lambda_packaging: str
    engine: str
    provisioned_concurrency: int
    snap_start: bool
    max_rows: int
    allow_missing: bool
    unknown_category: str
    task_cpu: int
    task_memory: int
    image: str | None
    polling: str
    poll_interval_seconds: int
    sync_wait_seconds: int
    presigned_url_seconds: int
    batch_compute_type: str
    batch_max_vcpus: int
    job_attempts: int
    api_auth: str
    throttle_rate: int
    throttle_burst: int
    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    log_retention_days: int
    protect_data: bool
    alarms: bool
    alarm_email: str | None
    latency_p99_threshold_ms: int
    api5xx_rate_percent: int

    @classmethod
    def from_lookup(
        cls,
        get: Callable[[str], str | None],
        project_file: Path = PROJECT_FILE,
        *,
        present_keys: Iterable[str] = (),
        architectures: tuple[str, ...] = ARCHITECTURES,
    ) -> Settings:
        """Read and validate every key.

        ``get(key)`` returns the raw stack value of the bare key (``"architecture"``) or None
        when unset (then Pulumi.yaml's default applies). ``present_keys`` are the bare keys set
        in the stack: any of them not declared in Pulumi.yaml is reported (a typo would
        otherwise be ignored silently). Raises :class:`SettingsError` listing every problem.
        """
        schema = load_project_schema(project_file)
        r = _Reader(get, schema)
        for key in present_keys:
            if key not in schema:
                r.problem(key, f"unknown configuration key; allowed: {', '.join(schema)}")
        values: dict[str, Any] = {
            "architectures": _architectures(r, architectures),
            **_model_values(r, project_file.parent),
            **_lambda_values(r),
            **_container_values(r),
            **_api_values(r),
            "log_retention_days": _log_retention(r),
            "protect_data": r.boolean("protectData"),
        }
        values.update(_monitoring_values(r, values))
        values |= _rollout_values(r, project_file.parent, values)
        if r.problems:
            raise SettingsError(r.problems)
        # Every reader returned a value or recorded a problem: no None is left here.
        missing = sorted(k for k, v in values.items() if v is None and k not in _OPTIONAL)
        if missing:  # pragma: no cover - a reader that neither returned nor complained
            raise AssertionError(f"settings without a value: {missing}")
        return cls(**values)

    @property
    def lambda_python_version(self) -> str:
        """The Python version of :attr:`lambda_runtime` (``"3.12"``)."""
        return python_version_of(self.lambda_runtime)

    @property
    def model_key(self) -> str:
        return contract.model_key(self.model_name, self.model_version)

    @property
    def has_canary(self) -> bool:
        """A canary model is deployed beside the stable one (mlserve:canaryModelPath)."""
        return self.canary_model_path is not None

    @property
    def jobs_serve_canary(self) -> bool:
        """The job architectures serve the canary too: a canary in ``split`` mode (a shadow
        canary is the lambda predictor's alone; without lambda it is refused at load)."""
        return self.has_canary and self.canary_mode == contract.CANARY_SPLIT

    @property
    def model_metadata_key(self) -> str:
        return contract.model_metadata_key(self.model_name, self.model_version)

    @property
    def onnx_key(self) -> str:
        """Where the onnx engine's converted model goes: next to the XGBoost model."""
        return contract.onnx_model_key(self.model_name, self.model_version)


# Settings that may be None: "not configured".
_OPTIONAL: Final = frozenset({"image", "alarm_email", "canary_model_path", "canary_model_sha256"})


def _rollout_values(r: _Reader, project_dir: Path, values: Mapping[str, Any]) -> dict[str, Any]:
    """The canary (a second model version, issue 17) and data capture keys."""
    percent = r.integer("canaryPercent", 0, 100, "0-100 (percent of requests)")
    mode = r.choice("canaryMode", contract.CANARY_MODES, "canary mode")
    capture = r.integer("captureSamplePercent", 0, 100, "0-100 (percent of requests)")
    name = r.string("canaryModelName") or str(values.get("model_name") or "")
    version = r.string("canaryModelVersion")
    path: Path | None = None
    sha256: str | None = None
    if r.string("canaryModelPath"):
        path, sha256 = _model_file(r, project_dir, "canaryModelPath")
        if name and not MODEL_NAME_PATTERN.fullmatch(name):
            r.problem(
                "canaryModelName", f"invalid model name {name!r}; allowed: [a-z0-9][a-z0-9-_.]*"
            )
        if not version and sha256:
            version = sha256[:MODEL_VERSION_HASH_CHARS]
        elif version and not MODEL_VERSION_PATTERN.fullmatch(version):
            r.problem(
                "canaryModelVersion",
                f"invalid model version {version!r}; allowed: [A-Za-z0-9][A-Za-z0-9-_.]* or "
                "empty (the first 12 hex digits of the canary's sha256)",
            )
        if version and version == values.get("model_version"):
            r.problem(
                "canaryModelVersion",
                f"{version!r} is also the stable model's version (mlserve:modelVersion); "
                "allowed: another version (a canary is a second model version)",
            )
        architectures = values.get("architectures") or ()
        if mode == contract.CANARY_SHADOW and contract.ARCH_LAMBDA not in architectures:
            # A job has one result: its version is chosen once and scores it (split). Scoring
            # every sampled request twice and recording the canary's answer beside the stable
            # one is the lambda predictor's capture path; a job architecture has none.
            r.problem(
                "canaryMode",
                "shadow is served by the lambda architecture's POST /predict only (a job is "
                "scored once, by the version recorded in it); allowed: split (the canary "
                f"scores canaryPercent % of the jobs), or mlserve:architecture including "
                f"lambda (now {', '.join(architectures)})",
            )
    else:
        if percent:
            r.problem(
                "canaryPercent",
                f"{percent} without mlserve:canaryModelPath; allowed: 0, or set "
                "canaryModelPath to the canary model",
            )
        for key in ("canaryModelName", "canaryModelVersion"):
            if r.string(key):
                r.problem(key, "is set without mlserve:canaryModelPath; allowed: empty")
    return {
        "canary_model_path": path,
        "canary_model_sha256": sha256,
        "canary_model_name": name if path else "",
        "canary_model_version": version if path else "",
        "canary_percent": percent,
        "canary_mode": mode,
        "capture_sample_percent": capture,
    }


def _architectures(r: _Reader, implemented: tuple[str, ...]) -> tuple[str, ...]:
    raw = r.string("architecture")
    names: list[str] = []
    for part in raw.split(","):
        name = part.strip()
        if name and name not in names:
            names.append(name)
    if not names:
        r.problem(
            "architecture",
            f"no architecture given in {raw!r}; allowed: {', '.join(implemented)} "
            "(one name or a comma-separated list)",
        )
    for name in names:
        if name not in implemented:
            r.problem(
                "architecture",
                f"unknown architecture {name!r}; allowed: {', '.join(implemented)}",
            )
    return tuple(names)


def _model_values(r: _Reader, project_dir: Path) -> dict[str, Any]:
    model_path, model_sha256 = _model_file(r, project_dir)
    model_name = r.string("modelName")
    if not MODEL_NAME_PATTERN.fullmatch(model_name):
        r.problem("modelName", f"invalid model name {model_name!r}; allowed: [a-z0-9][a-z0-9-_.]*")
    model_version = r.string("modelVersion")
    if not model_version and model_sha256:
        model_version = model_sha256[:MODEL_VERSION_HASH_CHARS]
    elif model_version and not MODEL_VERSION_PATTERN.fullmatch(model_version):
        r.problem(
            "modelVersion",
            f"invalid model version {model_version!r}; allowed: [A-Za-z0-9][A-Za-z0-9-_.]* "
            "or empty (the first 12 hex digits of the model's sha256)",
        )
    return {
        "model_path": model_path,
        "model_sha256": model_sha256,
        "model_name": model_name,
        "model_version": model_version,
    }


def _lambda_values(r: _Reader) -> dict[str, Any]:
    provisioned = r.integer("provisionedConcurrency", 0, None, "an integer >= 0")
    snap_start = r.boolean("snapStart")
    if snap_start and provisioned:
        r.problem(
            "snapStart",
            f"true cannot be combined with mlserve:provisionedConcurrency {provisioned} "
            "(Lambda does not allow SnapStart and provisioned concurrency on one version); "
            "allowed: snapStart false, or provisionedConcurrency 0",
        )
    return {
        "lambda_architecture": r.choice("lambdaArchitecture", LAMBDA_ARCHITECTURES),
        "lambda_runtime": _lambda_runtime(r),
        "lambda_memory": r.integer("lambdaMemory", 128, 10240, "128-10240 (MB)"),
        "lambda_timeout": r.integer(
            "lambdaTimeout",
            1,
            API_GATEWAY_TIMEOUT_SECONDS,
            f"1-{API_GATEWAY_TIMEOUT_SECONDS} (seconds; API Gateway's REST integration timeout "
            f"is {API_GATEWAY_TIMEOUT_SECONDS} s, so a longer function could never answer)",
        ),
        "lambda_packaging": r.choice("lambdaPackaging", LAMBDA_PACKAGING, "packaging"),
        "engine": r.choice("engine", ENGINES, "engine"),
        "provisioned_concurrency": provisioned,
        "snap_start": snap_start,
        "max_rows": r.integer("maxRows", 1, 100_000, "1-100000"),
        "allow_missing": r.boolean("allowMissing"),
        "unknown_category": r.choice("unknownCategory", UNKNOWN_CATEGORY_MODES),
    }


def _lambda_runtime(r: _Reader) -> str | None:
    configured = r.string("lambdaRuntime")
    if not configured:
        return default_lambda_runtime()
    if configured in UNSUPPORTED_LAMBDA_RUNTIMES:
        r.problem(
            "lambdaRuntime",
            f"{configured} cannot run the layer: {UNSUPPORTED_LAMBDA_RUNTIMES[configured]}; "
            f"allowed: {', '.join(LAMBDA_PYTHON_RUNTIMES)} or empty",
        )
        return None
    if configured not in LAMBDA_PYTHON_RUNTIMES:
        r.problem(
            "lambdaRuntime",
            f"unknown runtime {configured!r}; allowed: {', '.join(LAMBDA_PYTHON_RUNTIMES)} or "
            f"empty (this Python's: {default_lambda_runtime()})",
        )
        return None
    return configured


def _container_values(r: _Reader) -> dict[str, Any]:
    """Keys of the ECS/Batch architectures: checked now so stack files stay valid."""
    cpu_sizes = ", ".join(map(str, FARGATE_MEMORY))
    task_cpu = r.integer("taskCpu", 0, None, cpu_sizes)
    if task_cpu is not None and task_cpu not in FARGATE_MEMORY:
        r.problem("taskCpu", f"{task_cpu} is not a Fargate CPU size; allowed: {cpu_sizes}")
        task_cpu = None
    task_memory = r.integer("taskMemory", 512, 122880, "512-122880 (MB, fitting taskCpu)")
    if (
        task_cpu is not None
        and task_memory is not None
        and task_memory not in FARGATE_MEMORY[task_cpu]
    ):
        r.problem(
            "taskMemory",
            f"{task_memory} does not fit taskCpu {task_cpu}; "
            f"allowed: {describe_fargate_memory(task_cpu)} (MB)",
        )
    image = r.string("image") or None
    if image is not None and not IMAGE_URI_PATTERN.fullmatch(image):
        r.problem(
            "image",
            f"{image!r} is not an image URI; allowed: registry/repository[:tag][@sha256:digest] "
            "(with a digest, deployed as registry/repository@sha256:digest) or empty (build "
            "images/scoring)",
        )
    return {
        "task_cpu": task_cpu,
        "task_memory": task_memory,
        "image": image,
        "polling": r.choice("polling", POLLING),
        "poll_interval_seconds": r.integer("pollIntervalSeconds", 1, 3600, "1-3600 (seconds)"),
        "sync_wait_seconds": r.integer(
            "syncWaitSeconds",
            0,
            25,
            "0-25 (seconds; the submit function must answer within API Gateway's "
            f"{API_GATEWAY_TIMEOUT_SECONDS} s integration timeout)",
        ),
        "presigned_url_seconds": r.integer(
            "presignedUrlSeconds",
            60,
            contract.MAX_PRESIGNED_URL_SECONDS,
            f"60-{contract.MAX_PRESIGNED_URL_SECONDS} (seconds; a link signed with the job API "
            "role's session credentials lasts at most 12 hours)",
        ),
        "batch_compute_type": r.choice("batchComputeType", BATCH_COMPUTE_TYPES, "compute type"),
        "batch_max_vcpus": r.integer("batchMaxVcpus", 1, 10_000, "1-10000"),
        "job_attempts": r.integer("jobAttempts", 1, 10, "1-10 (AWS Batch retry attempts)"),
        "subnet_ids": _ids(r, "subnetIds", SUBNET_ID_PATTERN, "subnet-<hex>"),
        "security_group_ids": _ids(r, "securityGroupIds", SECURITY_GROUP_ID_PATTERN, "sg-<hex>"),
    }


def _api_values(r: _Reader) -> dict[str, Any]:
    return {
        "api_auth": r.choice("apiAuth", API_AUTH, "API auth"),
        "throttle_rate": r.integer("throttleRate", 1, None, "an integer > 0 (requests per second)"),
        "throttle_burst": r.integer("throttleBurst", 1, None, "an integer >= 1 (requests)"),
    }


def _monitoring_values(r: _Reader, values: Mapping[str, Any]) -> dict[str, Any]:
    """Alarms and their thresholds (components/monitoring.py). latencyP99ThresholdMs 0 means
    computed from the architecture serving POST /predict (the first listed)."""
    alarms = r.boolean("alarms")
    alarm_email = r.string("alarmEmail") or None
    if alarm_email is not None and not EMAIL_PATTERN.fullmatch(alarm_email):
        r.problem("alarmEmail", f"{alarm_email!r} is not an email address; allowed: name@domain")
    elif alarm_email is not None and alarms is False:
        r.problem(
            "alarmEmail",
            "is set but mlserve:alarms is false (nothing would ever be sent); allowed: "
            "alarms true, or alarmEmail empty",
        )
    latency = r.integer(
        "latencyP99ThresholdMs",
        0,
        API_GATEWAY_TIMEOUT_SECONDS * 1000,
        f"0-{API_GATEWAY_TIMEOUT_SECONDS * 1000} (ms; 0: computed)",
    )
    architectures = values.get("architectures") or ()
    sync_wait = values.get("sync_wait_seconds")
    if latency == 0 and architectures and sync_wait is not None:
        latency = default_latency_p99_ms(architectures[0], sync_wait)
    return {
        "alarms": alarms,
        "alarm_email": alarm_email,
        "latency_p99_threshold_ms": latency,
        "api5xx_rate_percent": r.integer("api5xxRatePercent", 1, 100, "1-100 (percent)"),
    }


def _log_retention(r: _Reader) -> int | None:
    retention = r.integer("logRetentionDays", 0, None, "one of CloudWatch's retention values")
    if retention is not None and retention not in LOG_RETENTION_DAYS:
        r.problem(
            "logRetentionDays",
            f"{retention} is not a CloudWatch Logs retention value; "
            f"allowed: {', '.join(map(str, LOG_RETENTION_DAYS))}",
        )
        return None
    return retention


def _model_file(
    r: _Reader, project_dir: Path, key: str = "modelPath"
) -> tuple[Path | None, str | None]:
    raw = r.string(key)
    if not raw:
        r.problem(key, f"is empty; {_MISSING_MODEL_HINT}")
        return None, None
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = project_dir / path
    if not path.is_file():
        r.problem(key, f"model file {raw!r} not found (looked at {path}); {_MISSING_MODEL_HINT}")
        return None, None
    with path.open("rb") as fh:
        head = fh.read(1)
    if head != b"{":
        r.problem(
            key,
            f"{raw!r} is not an XGBoost JSON/UBJSON model (pickle and the legacy binary format "
            "are refused); allowed: a model saved with Booster.save_model('model.ubj' or '.json')",
        )
        return None, None
    return path, sha256_file(path)


def _ids(r: _Reader, key: str, pattern: re.Pattern[str], shape: str) -> tuple[str, ...] | None:
    values = r.string_list(key)
    if values is None:
        return None
    bad = [v for v in values if not pattern.fullmatch(v)]
    if bad:
        r.problem(key, f"invalid id(s) {', '.join(map(repr, bad))}; allowed: {shape} (or empty)")
        return None
    return values


def load_settings(project_file: Path = PROJECT_FILE) -> Settings:
    """Read the settings of the running Pulumi stack (``pulumi.Config("mlserve")``)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    config = pulumi.Config(NAMESPACE)
    prefix = f"{NAMESPACE}:"
    present = {
        key.removeprefix(prefix)
        for key in {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
        if key.startswith(prefix)
    }
    return Settings.from_lookup(config.get, project_file, present_keys=sorted(present))
