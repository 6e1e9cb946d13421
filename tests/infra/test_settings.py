"""components/settings.py: defaults from Pulumi.yaml, validation and messages (pure)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.settings import (
    ARCHITECTURES,
    FALLBACK_LAMBDA_RUNTIME,
    LAMBDA_PYTHON_RUNTIMES,
    LOG_RETENTION_DAYS,
    PROJECT_FILE,
    UNSUPPORTED_LAMBDA_RUNTIMES,
    Settings,
    SettingsError,
    default_lambda_runtime,
    load_project_schema,
)
from runtime import contract

# DESIGN.md §3 plus maxRows / allowMissing.
DESIGN_KEYS = {
    "architecture", "modelPath", "modelName", "modelVersion", "lambdaArchitecture",
    "lambdaMemory", "lambdaTimeout", "lambdaPackaging", "provisionedConcurrency", "snapStart",
    "taskCpu", "taskMemory", "image", "polling", "pollIntervalSeconds", "syncWaitSeconds",
    "batchComputeType", "batchMaxVcpus", "jobAttempts", "apiAuth", "throttleRate",
    "throttleBurst", "subnetIds", "securityGroupIds", "logRetentionDays", "protectData",
    "maxRows", "allowMissing", "engine", "presignedUrlSeconds",
    "unknownCategory", "lambdaRuntime",
    # issue 17: alarms and the dashboard
    "alarms", "alarmEmail", "latencyP99ThresholdMs", "api5xxRatePercent",
    # issue 17: canary and shadow rollouts, data capture
    "canaryModelPath", "canaryModelName", "canaryModelVersion", "canaryPercent", "canaryMode",
    "captureSamplePercent",
}  # fmt: skip


def snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def lookup(values: dict[str, Any]):
    return lambda key: None if values.get(key) is None else str(values[key])


def settings(model: Path, **values: Any) -> Settings:
    return Settings.from_lookup(lookup({"modelPath": str(model), **values}))


def problems(model: Path, **values: Any) -> tuple[str, ...]:
    with pytest.raises(SettingsError) as err:
        settings(model, **values)
    return err.value.problems


# --- the schema in Pulumi.yaml --------------------------------------------------------------------
def test_project_file_declares_every_design_key_with_type_default_and_description() -> None:
    document = yaml.safe_load(PROJECT_FILE.read_text())
    assert document["name"] == "mlserve"
    assert document["runtime"] == {
        "name": "python",
        "options": {"toolchain": "pip", "virtualenv": ".venv"},
    }
    config = document["config"]
    assert set(config) == DESIGN_KEYS
    for key, spec in config.items():
        assert spec["type"] in {"string", "integer", "boolean", "array"}, key
        assert "default" in spec, f"{key}: a key without default is required by the Pulumi CLI"
        assert spec["description"].strip(), key
        if spec["type"] == "array":
            assert spec["items"] == {"type": "string"}, key


@pytest.mark.parametrize(
    ("key", "default"),
    [
        ("architecture", "lambda"),
        ("modelPath", "models/example/model.ubj"),
        ("modelName", "example"),
        ("lambdaArchitecture", "arm64"),
        ("lambdaMemory", 1024),
        ("lambdaPackaging", "layer"),
        ("provisionedConcurrency", 0),
        ("snapStart", False),
        ("maxRows", contract.DEFAULT_MAX_ROWS),
        ("presignedUrlSeconds", contract.DEFAULT_PRESIGNED_URL_SECONDS),
        ("allowMissing", False),
        ("apiAuth", "api-key"),
        ("throttleRate", 50),
        ("throttleBurst", 100),
        ("logRetentionDays", 14),
        ("protectData", True),
        ("polling", "lambda"),
        ("batchComputeType", "FARGATE"),
        ("engine", "xgboost"),
        ("lambdaRuntime", ""),
    ],
)
def test_design_defaults(key: str, default: Any) -> None:
    assert load_project_schema()[key]["default"] == default


def test_every_key_has_a_settings_field() -> None:
    fields = {f.name for f in dataclasses.fields(Settings)}
    renamed = {"architecture": "architectures", "modelPath": "model_path"}
    for key in load_project_schema():
        assert renamed.get(key, snake(key)) in fields, key


def test_defaults_apply_and_match_the_project_file(tiny_model: Path) -> None:
    s = settings(tiny_model)
    schema = load_project_schema()
    assert s.architectures == ("lambda",)
    for key in ("lambdaMemory", "lambdaTimeout", "maxRows", "throttleRate", "throttleBurst",
                "logRetentionDays", "taskCpu", "taskMemory", "jobAttempts", "batchMaxVcpus",
                "pollIntervalSeconds", "syncWaitSeconds", "provisionedConcurrency"):  # fmt: skip
        assert getattr(s, snake(key)) == schema[key]["default"], key
    assert s.snap_start is False and s.allow_missing is False and s.protect_data is True
    assert s.api_auth == "api-key" and s.lambda_packaging == "layer"
    assert s.image is None and s.subnet_ids == () and s.security_group_ids == ()


def test_defaults_are_read_from_the_project_file_not_the_code(
    tmp_path: Path, tiny_model: Path
) -> None:
    document = yaml.safe_load(PROJECT_FILE.read_text())
    document["config"]["lambdaMemory"]["default"] = 2048
    document["config"]["apiAuth"]["default"] = "iam"
    project = tmp_path / "Pulumi.yaml"
    project.write_text(yaml.safe_dump(document))
    s = Settings.from_lookup(lookup({"modelPath": str(tiny_model)}), project)
    assert (s.lambda_memory, s.api_auth) == (2048, "iam")


def test_relative_model_path_is_resolved_against_the_project_dir(
    tmp_path: Path, tiny_model: Path
) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.ubj").write_bytes(tiny_model.read_bytes())
    (tmp_path / "Pulumi.yaml").write_text(PROJECT_FILE.read_text())
    s = Settings.from_lookup(lookup({"modelPath": "models/m.ubj"}), tmp_path / "Pulumi.yaml")
    assert s.model_path == tmp_path / "models" / "m.ubj"


# --- model ----------------------------------------------------------------------------------------
def test_model_version_defaults_to_the_content_hash(tiny_model: Path) -> None:
    digest = hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    s = settings(tiny_model)
    assert s.model_sha256 == digest
    assert s.model_version == digest[:12]
    assert s.model_key == f"models/example/{digest[:12]}/model.ubj"
    assert s.model_metadata_key == f"models/example/{digest[:12]}/metadata.json"


def test_explicit_model_name_and_version(tiny_model: Path) -> None:
    s = settings(tiny_model, modelName="churn-v2.1", modelVersion="2024-06-01")
    assert s.model_key == "models/churn-v2.1/2024-06-01/model.ubj"


def test_missing_model_tells_how_to_create_it(tmp_path: Path) -> None:
    (message,) = problems(tmp_path / "nope.ubj")
    assert message.startswith("mlserve:modelPath: model file ")
    assert str(tmp_path / "nope.ubj") in message
    assert "make model" in message and "python -m mlserve train-example" in message


def test_pickled_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"not": "a booster"}))
    (message,) = problems(path)
    assert message.startswith("mlserve:modelPath:")
    assert "not an XGBoost JSON/UBJSON model" in message


@pytest.mark.parametrize("name", ["Example", "-x", "a/b", "", "sp ace"])
def test_bad_model_name(tiny_model: Path, name: str) -> None:
    (message,) = problems(tiny_model, modelName=name)
    assert message == (
        f"mlserve:modelName: invalid model name {name!r}; allowed: [a-z0-9][a-z0-9-_.]*"
    )


def test_bad_model_version(tiny_model: Path) -> None:
    (message,) = problems(tiny_model, modelVersion="v1/../x")
    assert message.startswith("mlserve:modelVersion: invalid model version 'v1/../x'; allowed:")


# --- architecture ---------------------------------------------------------------------------------
def test_only_implemented_architectures_are_registered() -> None:
    assert ARCHITECTURES == (
        contract.ARCH_LAMBDA,
        contract.ARCH_LAMBDA_ECS,
        contract.ARCH_STEPFUNCTIONS_ECS,
        contract.ARCH_STEPFUNCTIONS_BATCH,
    )


ALLOWED = "allowed: lambda, lambda-ecs, stepfunctions-ecs, stepfunctions-batch"


def test_unknown_architecture_names_key_value_and_allowed(tiny_model: Path) -> None:
    assert problems(tiny_model, architecture="foo") == (
        f"mlserve:architecture: unknown architecture 'foo'; {ALLOWED}",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("stepfunctions-ecs", ("stepfunctions-ecs",)),
        ("lambda,stepfunctions-ecs", ("lambda", "stepfunctions-ecs")),
        ("lambda-ecs,stepfunctions-ecs", ("lambda-ecs", "stepfunctions-ecs")),
    ],
)
def test_stepfunctions_ecs_is_implemented(
    tiny_model: Path, value: str, expected: tuple[str, ...]
) -> None:
    assert settings(tiny_model, architecture=value).architectures == expected


@pytest.mark.parametrize("polling", ["lambda", "native"])
@pytest.mark.parametrize("interval", ["1", "10", "3600"])
def test_stepfunctions_ecs_polling_modes(tiny_model: Path, polling: str, interval: str) -> None:
    s = settings(
        tiny_model,
        architecture="stepfunctions-ecs",
        polling=polling,
        pollIntervalSeconds=interval,
    )
    assert (s.polling, s.poll_interval_seconds) == (polling, int(interval))


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("polling", "Lambda", "mlserve:polling: unknown value 'Lambda'; allowed: lambda, native"),
        ("pollIntervalSeconds", "3601", "mlserve:pollIntervalSeconds: 3601 is out of range"),
    ],
)
def test_stepfunctions_ecs_polling_is_validated(
    tiny_model: Path, key: str, value: str, expected: str
) -> None:
    (message,) = problems(tiny_model, architecture="stepfunctions-ecs", **{key: value})
    assert message.startswith(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("lambda-ecs", ("lambda-ecs",)),
        ("lambda,lambda-ecs", ("lambda", "lambda-ecs")),
        ("lambda-ecs, lambda, lambda-ecs", ("lambda-ecs", "lambda")),
    ],
)
def test_lambda_ecs_is_implemented(tiny_model: Path, value: str, expected: tuple[str, ...]) -> None:
    assert settings(tiny_model, architecture=value).architectures == expected


def test_architecture_list_is_deduplicated_in_order(tiny_model: Path) -> None:
    assert settings(tiny_model, architecture=" lambda , lambda,").architectures == ("lambda",)


def test_empty_architecture_list(tiny_model: Path) -> None:
    (message,) = problems(tiny_model, architecture=" , ")
    assert message.startswith("mlserve:architecture: no architecture given in ','")
    assert "allowed: lambda" in message


# --- other keys -----------------------------------------------------------------------------------
BAD_VALUES = [
    ("lambdaArchitecture", "arm", "unknown value 'arm'; allowed: arm64, x86_64"),
    ("lambdaMemory", "127", "127 is out of range; allowed: 128-10240 (MB)"),
    ("lambdaMemory", "10241", "10241 is out of range; allowed: 128-10240 (MB)"),
    ("lambdaMemory", "1k", "'1k' is not an integer; allowed: 128-10240 (MB)"),
    ("lambdaTimeout", "0", "0 is out of range; allowed: 1-29"),
    ("lambdaPackaging", "image", "unknown packaging 'image'; allowed: layer"),
    ("provisionedConcurrency", "-1", "-1 is out of range; allowed: an integer >= 0"),
    ("snapStart", "yes", "'yes' is not a boolean; allowed: true, false"),
    ("allowMissing", "1", "'1' is not a boolean; allowed: true, false"),
    ("protectData", "maybe", "'maybe' is not a boolean; allowed: true, false"),
    ("maxRows", "0", "0 is out of range; allowed: 1-100000"),
    ("maxRows", "100001", "100001 is out of range; allowed: 1-100000"),
    ("apiAuth", "cognito", "unknown API auth 'cognito'; allowed: api-key, iam, none"),
    ("throttleRate", "0", "0 is out of range; allowed: an integer > 0"),
    ("throttleRate", "2.5", "'2.5' is not an integer"),
    ("throttleBurst", "0", "0 is out of range; allowed: an integer >= 1"),
    ("logRetentionDays", "10", "10 is not a CloudWatch Logs retention value; allowed: 0, 1, 3, 5"),
    ("taskCpu", "300", "300 is not a Fargate CPU size; allowed: 256, 512, 1024"),
    ("taskMemory", "1024", "1024 does not fit taskCpu 1024; allowed: 2048-8192 in steps of 1024"),
    ("polling", "sync", "unknown value 'sync'; allowed: lambda, native"),
    ("pollIntervalSeconds", "0", "0 is out of range; allowed: 1-3600 (seconds)"),
    ("syncWaitSeconds", "26", "26 is out of range; allowed: 0-25"),
    ("presignedUrlSeconds", "59", "59 is out of range; allowed: 60-43200"),
    ("presignedUrlSeconds", "43201", "43201 is out of range; allowed: 60-43200"),
    ("batchComputeType", "EC2", "unknown compute type 'EC2'; allowed: FARGATE, FARGATE_SPOT"),
    ("batchMaxVcpus", "0", "0 is out of range; allowed: 1-10000"),
    ("jobAttempts", "11", "11 is out of range; allowed: 1-10"),
    ("image", "not an image", "'not an image' is not an image URI"),
    ("subnetIds", '["subnet-1234567g"]', "invalid id(s) 'subnet-1234567g'; allowed: subnet-<hex>"),
    ("subnetIds", "[1, 2]", "'[1, 2]' is not a list of strings"),
    ("subnetIds", "[oops", "'[oops' is not a JSON list of strings"),
    ("securityGroupIds", "sg-12345678,vpc-1", "invalid id(s) 'vpc-1'; allowed: sg-<hex>"),
]


@pytest.mark.parametrize(("key", "value", "expected"), BAD_VALUES)
def test_bad_values_name_key_value_and_allowed(
    tiny_model: Path, key: str, value: str, expected: str
) -> None:
    (message,) = problems(tiny_model, **{key: value})
    assert message.startswith(f"mlserve:{key}: {expected}"), message


# --- Fargate task size ----------------------------------------------------------------------------
FARGATE_VALID = [
    (256, 512), (256, 1024), (256, 2048),
    (512, 1024), (512, 4096),
    (1024, 2048), (1024, 5120), (1024, 8192),
    (2048, 4096), (2048, 16384),
    (4096, 8192), (4096, 30720),
    (8192, 16384), (8192, 20480), (8192, 61440),
    (16384, 32768), (16384, 40960), (16384, 122880),
]  # fmt: skip


@pytest.mark.parametrize(("cpu", "memory"), FARGATE_VALID)
def test_valid_fargate_sizes(tiny_model: Path, cpu: int, memory: int) -> None:
    s = settings(tiny_model, taskCpu=str(cpu), taskMemory=str(memory))
    assert (s.task_cpu, s.task_memory) == (cpu, memory)


@pytest.mark.parametrize(
    ("cpu", "memory", "allowed"),
    [
        (256, 1536, "512, 1024, 2048"),  # 0.25 vCPU: 0.5, 1 or 2 GB only
        (256, 4096, "512, 1024, 2048"),
        (512, 512, "1024-4096 in steps of 1024"),
        (1024, 1024, "2048-8192 in steps of 1024"),
        (1024, 2560, "2048-8192 in steps of 1024"),
        (2048, 17408, "4096-16384 in steps of 1024"),
        (4096, 31744, "8192-30720 in steps of 1024"),
        (8192, 17408, "16384-61440 in steps of 4096"),
        (16384, 36864, "32768-122880 in steps of 8192"),
    ],
)
def test_invalid_fargate_combinations_name_key_value_and_allowed_memory(
    tiny_model: Path, cpu: int, memory: int, allowed: str
) -> None:
    (message,) = problems(tiny_model, taskCpu=str(cpu), taskMemory=str(memory))
    assert message == (
        f"mlserve:taskMemory: {memory} does not fit taskCpu {cpu}; allowed: {allowed} (MB)"
    )


def test_unknown_fargate_cpu_lists_the_sizes(tiny_model: Path) -> None:
    (message,) = problems(tiny_model, taskCpu="3072")
    assert message == (
        "mlserve:taskCpu: 3072 is not a Fargate CPU size; "
        "allowed: 256, 512, 1024, 2048, 4096, 8192, 16384"
    )


@pytest.mark.parametrize("value", ["0", "25"])
def test_sync_wait_bounds_are_accepted(tiny_model: Path, value: str) -> None:
    assert settings(tiny_model, syncWaitSeconds=value).sync_wait_seconds == int(value)


def test_sync_wait_message_explains_the_api_gateway_limit(tiny_model: Path) -> None:
    (message,) = problems(tiny_model, syncWaitSeconds="-1")
    assert message.startswith("mlserve:syncWaitSeconds: -1 is out of range; allowed: 0-25")
    assert "29 s integration timeout" in message


def test_lambda_timeout_message_explains_the_api_gateway_limit(tiny_model: Path) -> None:
    (message,) = problems(tiny_model, lambdaTimeout="30")
    assert message.startswith("mlserve:lambdaTimeout: 30 is out of range; allowed: 1-29")
    assert "API Gateway's REST integration timeout is 29 s" in message


# --- the Lambda runtime ---------------------------------------------------------------------------
def test_the_runtimes_are_lambdas_python_runtimes_from_the_projects_floor_up() -> None:
    from pulumi_aws.lambda_ import Runtime

    offered = {r.value for r in Runtime if r.value.startswith("python3.")}
    floor = tuple(
        int(p)
        for p in re.search(r">=\s*(3\.\d+)", (PROJECT_FILE.parent / "pyproject.toml").read_text())
        .group(1)  # type: ignore[union-attr]
        .split(".")
    )
    eligible = {r for r in offered if tuple(map(int, r[len("python") :].split("."))) >= floor}
    assert set(LAMBDA_PYTHON_RUNTIMES) | set(UNSUPPORTED_LAMBDA_RUNTIMES) == eligible
    assert not set(LAMBDA_PYTHON_RUNTIMES) & set(UNSUPPORTED_LAMBDA_RUNTIMES)
    assert FALLBACK_LAMBDA_RUNTIME in LAMBDA_PYTHON_RUNTIMES


def test_an_empty_runtime_follows_the_deploying_python_when_lambda_offers_it(
    tiny_model: Path,
) -> None:
    assert default_lambda_runtime((3, 13, 1)) == "python3.13"
    assert default_lambda_runtime((3, 14, 0)) == "python3.14"
    # not a runtime mlserve deploys to: the fallback (its byte code needs a Python of it)
    assert default_lambda_runtime((3, 11, 7)) == FALLBACK_LAMBDA_RUNTIME == "python3.12"
    assert default_lambda_runtime((3, 15, 0)) == FALLBACK_LAMBDA_RUNTIME
    assert settings(tiny_model).lambda_runtime == default_lambda_runtime()
    explicit = settings(tiny_model, lambdaRuntime="python3.14")
    assert (explicit.lambda_runtime, explicit.lambda_python_version) == ("python3.14", "3.14")


def test_a_runtime_that_cannot_run_the_layer_is_refused_with_the_reason(tiny_model: Path) -> None:
    (message,) = problems(tiny_model, lambdaRuntime="python3.11")
    assert message.startswith("mlserve:lambdaRuntime: python3.11 cannot run the layer: ")
    assert "Amazon Linux 2" in message and "glibc 2.26" in message
    (message,) = problems(tiny_model, lambdaRuntime="3.12")
    assert message.startswith("mlserve:lambdaRuntime: unknown runtime '3.12'; allowed: ")
    assert "python3.12, python3.13, python3.14 or empty" in message


def test_snap_start_and_provisioned_concurrency_exclude_each_other(tiny_model: Path) -> None:
    (message,) = problems(tiny_model, snapStart="true", provisionedConcurrency="2")
    assert message.startswith("mlserve:snapStart: true cannot be combined with")
    assert "provisionedConcurrency 2" in message


def test_all_problems_are_reported_together(tiny_model: Path) -> None:
    with pytest.raises(SettingsError) as err:
        settings(tiny_model, architecture="foo", lambdaMemory="64", apiAuth="x", maxRows="0")
    keys = [p.split(":")[1] for p in err.value.problems]
    assert keys == ["architecture", "lambdaMemory", "maxRows", "apiAuth"]
    text = str(err.value)
    assert text.startswith("invalid mlserve configuration (4 problems):")
    assert all(p in text for p in err.value.problems)
    assert isinstance(err.value, ValueError)


def test_unknown_keys_in_the_stack_are_reported(tiny_model: Path) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_lookup(
            lookup({"modelPath": str(tiny_model)}),
            present_keys=["modelPath", "lambdaMemroy"],
        )
    (message,) = err.value.problems
    assert message.startswith("mlserve:lambdaMemroy: unknown configuration key; allowed: ")
    assert "lambdaMemory" in message


def test_valid_values_are_typed(tiny_model: Path) -> None:
    s = settings(
        tiny_model,
        lambdaArchitecture="x86_64",
        lambdaMemory="2048",
        lambdaTimeout="29",
        provisionedConcurrency="3",
        snapStart="False",
        allowMissing="TRUE",
        maxRows="100000",
        apiAuth="none",
        throttleRate="7",
        throttleBurst="1",
        logRetentionDays="0",
        protectData="false",
        taskCpu="4096",
        taskMemory="30720",
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/scoring:1.2",
        subnetIds=json.dumps(["subnet-0123456789abcdef0", "subnet-01234567"]),
        securityGroupIds="sg-0123456789abcdef0",
    )
    assert s.lambda_architecture == "x86_64"
    assert (s.lambda_memory, s.lambda_timeout, s.provisioned_concurrency) == (2048, 29, 3)
    assert (s.snap_start, s.allow_missing, s.protect_data) == (False, True, False)
    assert (s.max_rows, s.api_auth, s.throttle_rate, s.throttle_burst) == (100000, "none", 7, 1)
    assert s.log_retention_days == 0 and 0 in LOG_RETENTION_DAYS
    assert (s.task_cpu, s.task_memory) == (4096, 30720)
    assert s.image == "123456789012.dkr.ecr.us-east-1.amazonaws.com/scoring:1.2"
    assert s.subnet_ids == ("subnet-0123456789abcdef0", "subnet-01234567")
    assert s.security_group_ids == ("sg-0123456789abcdef0",)


def test_settings_are_frozen(tiny_model: Path) -> None:
    s = settings(tiny_model)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.lambda_memory = 1  # type: ignore[misc]


# --- engine (issue 8) -----------------------------------------------------------------------------
def test_engine_defaults_to_xgboost_and_accepts_onnx(tiny_model: Path) -> None:
    assert settings(tiny_model).engine == "xgboost"
    onnx = settings(tiny_model, engine="onnx")
    assert onnx.engine == "onnx"
    assert onnx.onnx_key == f"models/example/{onnx.model_version}/model.onnx"


def test_unknown_engine_names_the_allowed_ones(tiny_model: Path) -> None:
    assert problems(tiny_model, engine="tensorrt") == (
        "mlserve:engine: unknown engine 'tensorrt'; allowed: xgboost, onnx",
    )


# --- canary rollouts and data capture (issue 17) --------------------------------------------------
def test_no_canary_and_no_capture_by_default(tiny_model: Path) -> None:
    s = settings(tiny_model)
    assert not s.has_canary and s.canary_model_path is None
    assert (s.canary_percent, s.canary_mode, s.capture_sample_percent) == (0, "split", 0)


def test_a_canary_gets_its_own_version_from_its_content(tiny_model: Path, tmp_path: Path) -> None:
    canary = tmp_path / "canary.json"
    canary.write_bytes(tiny_model.read_bytes() + b" ")  # another file, another sha256
    s = settings(tiny_model, canaryModelPath=str(canary), canaryPercent=25, canaryMode="shadow")
    assert s.has_canary and s.canary_model_path == canary
    assert s.canary_model_name == s.model_name
    assert s.canary_model_version == hashlib.sha256(canary.read_bytes()).hexdigest()[:12]
    assert s.canary_model_version != s.model_version
    assert (s.canary_percent, s.canary_mode) == (25, "shadow")


def test_canary_values_are_checked(tiny_model: Path) -> None:
    found = problems(
        tiny_model,
        canaryModelPath=str(tiny_model),
        canaryPercent=101,
        canaryMode="blue-green",
        captureSamplePercent=-1,
    )
    assert any("canaryPercent: 101 is out of range; allowed: 0-100" in p for p in found)
    assert any(
        "canaryMode: unknown canary mode 'blue-green'; allowed: split, shadow" in p for p in found
    )
    assert any("captureSamplePercent: -1 is out of range" in p for p in found)
    # the same file is the same version: a canary must be another one
    assert any("canaryModelVersion:" in p and "stable model's version" in p for p in found)


@pytest.mark.parametrize(
    "architecture", ["lambda-ecs", "stepfunctions-ecs", "stepfunctions-batch", "lambda,lambda-ecs"]
)
def test_a_split_canary_is_served_by_every_architecture(
    tiny_model: Path, tmp_path: Path, architecture: str
) -> None:
    canary = tmp_path / "canary.json"
    canary.write_bytes(tiny_model.read_bytes() + b" ")
    s = settings(
        tiny_model, canaryModelPath=str(canary), canaryPercent=30, architecture=architecture
    )
    assert s.has_canary and s.jobs_serve_canary and s.canary_percent == 30


def test_a_shadow_canary_needs_the_lambda_architecture(tiny_model: Path, tmp_path: Path) -> None:
    canary = tmp_path / "canary.json"
    canary.write_bytes(tiny_model.read_bytes() + b" ")
    found = problems(
        tiny_model, canaryModelPath=str(canary), canaryMode="shadow", architecture="lambda-ecs"
    )
    (problem,) = [p for p in found if p.startswith("mlserve:canaryMode:")]
    assert "shadow is served by the lambda architecture's POST /predict only" in problem
    assert "allowed: split" in problem and "now lambda-ecs" in problem
    # beside lambda it is the predictor's alone: the job architectures get no canary
    s = settings(
        tiny_model,
        canaryModelPath=str(canary),
        canaryMode="shadow",
        architecture="lambda,stepfunctions-batch",
    )
    assert s.has_canary and not s.jobs_serve_canary


def test_canary_percent_without_a_canary_is_refused(tiny_model: Path) -> None:
    found = problems(tiny_model, canaryPercent=10, canaryModelVersion="v2")
    assert any("canaryPercent: 10 without mlserve:canaryModelPath" in p for p in found)
    assert any("canaryModelVersion: is set without mlserve:canaryModelPath" in p for p in found)


def test_a_missing_canary_file_names_the_key(tiny_model: Path) -> None:
    found = problems(tiny_model, canaryModelPath="nowhere/model.ubj")
    assert any(
        p.startswith("mlserve:canaryModelPath: model file 'nowhere/model.ubj'") for p in found
    )
