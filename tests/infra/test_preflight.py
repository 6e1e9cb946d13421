"""`python -m mlserve preflight` (mlserve/preflight.py): what a deployment would trip over.

AWS answers come from botocore's Stubber on real clients (the shapes are botocore's own
models); the build host from an injected ``build_host_problems`` (tests/infra/test_hardening.py
tests that function against simulated hosts).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from components import packaging
from mlserve import preflight
from mlserve.cli import main
from mlserve.preflight import BLOCKER, Finding, StackConfig, read_stack_config


def config(tiny_model: Path, **values: Any) -> StackConfig:
    return StackConfig({"modelPath": str(tiny_model), **values}, region="eu-west-1")


def blockers(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == BLOCKER]


def no_build_problem(target: str) -> list[str]:
    return []


class FakeSession:
    """What preflight uses of a boto3 Session, with stubbed STS and Lambda clients."""

    def __init__(self, *, credentials: bool = True, region: str | None = "eu-west-1") -> None:
        self.region_name = region
        self._credentials = credentials
        self.stubs: dict[str, Stubber] = {}
        self.clients: dict[str, Any] = {}
        for service in ("sts", "lambda"):
            client = boto3.client(
                service,
                region_name="eu-west-1",
                aws_access_key_id="AKIAEXAMPLE",
                aws_secret_access_key="secret",
            )
            self.clients[service], self.stubs[service] = client, Stubber(client)
            self.stubs[service].activate()

    def get_credentials(self) -> object | None:
        return object() if self._credentials else None

    def client(self, service: str, region_name: str | None = None) -> Any:
        return self.clients[service]


IDENTITY = {
    "UserId": "AIDAEXAMPLE",
    "Account": "123456789012",
    "Arn": "arn:aws:iam::123456789012:user/deployer",
}


def test_a_valid_stack_has_no_blocker(tiny_model: Path) -> None:
    session = FakeSession()
    session.stubs["sts"].add_response("get_caller_identity", IDENTITY)
    findings = preflight.preflight(
        config(tiny_model), session=session, build_host_problems=no_build_problem
    )
    assert blockers(findings) == []
    assert {f.check for f in findings} == {"configuration", "openapi", "lambda", "image", "aws"}
    assert any("user/deployer" in f.message for f in findings)


def test_configuration_problems_are_blockers_naming_the_key(tiny_model: Path) -> None:
    findings = preflight.preflight(config(tiny_model, lambdaMemory=64), offline=True)
    (blocker,) = blockers(findings)
    assert blocker.check == "configuration" and "mlserve:lambdaMemory" in blocker.message


def test_an_openapi_document_api_gateway_would_refuse_is_a_blocker(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from components import api

    document = api.load_openapi()
    document["components"]["schemas"]["PredictRequest"]["properties"]["instances"]["items"] = {
        "anyOf": [{"type": "array"}, {"type": "object"}]
    }
    monkeypatch.setattr(api, "load_openapi", lambda: document)
    findings = preflight.preflight(config(tiny_model), offline=True)
    (blocker,) = blockers(findings)
    assert blocker.check == "openapi" and "'anyOf'" in blocker.message


def test_the_image_build_host_is_checked_only_when_an_image_is_built(tiny_model: Path) -> None:
    asked: list[str] = []

    def no_qemu(target: str) -> list[str]:
        asked.append(target)
        return [f"building the {target} image needs QEMU"]

    findings = preflight.preflight(config(tiny_model), offline=True, build_host_problems=no_qemu)
    assert blockers(findings) == [] and asked == []  # lambda: no image
    batch = config(tiny_model, architecture="stepfunctions-batch")
    (blocker,) = blockers(preflight.preflight(batch, offline=True, build_host_problems=no_qemu))
    assert blocker.check == "image" and asked == ["linux/arm64"]
    x86 = config(tiny_model, architecture="lambda-ecs", lambdaArchitecture="x86_64")
    preflight.preflight(x86, offline=True, build_host_problems=no_qemu)
    assert asked[-1] == "linux/amd64"
    given = config(
        tiny_model,
        architecture="lambda-ecs",
        image="123456789012.dkr.ecr.eu-west-1.amazonaws.com/s:1",
    )
    assert blockers(preflight.preflight(given, offline=True, build_host_problems=no_qemu)) == []
    assert len(asked) == 2


def test_missing_region_or_credentials_are_blockers(tiny_model: Path) -> None:
    no_region = StackConfig({"modelPath": str(tiny_model)}, region=None)
    findings = preflight.preflight(
        no_region, session=FakeSession(region=None), build_host_problems=no_build_problem
    )
    (blocker,) = blockers(findings)
    assert "no region" in blocker.message and "aws:region" in blocker.message
    findings = preflight.preflight(
        config(tiny_model),
        session=FakeSession(credentials=False),
        build_host_problems=no_build_problem,
    )
    (blocker,) = blockers(findings)
    assert "no AWS credentials" in blocker.message


def test_rejected_credentials_are_a_blocker(tiny_model: Path) -> None:
    session = FakeSession()
    session.stubs["sts"].add_client_error(
        "get_caller_identity",
        "ExpiredToken",
        "The security token included in the request is expired",
    )
    findings = preflight.preflight(
        config(tiny_model), session=session, build_host_problems=no_build_problem
    )
    (blocker,) = blockers(findings)
    assert "ExpiredToken" in blocker.message


@pytest.mark.parametrize(("unreserved", "blocked"), [(1000, False), (10, True), (149, True)])
def test_provisioned_concurrency_must_leave_the_accounts_unreserved_minimum(
    tiny_model: Path, unreserved: int, blocked: bool
) -> None:
    """A new account's concurrency quota (often 10) cannot hold any provisioned concurrency:
    Lambda keeps 100 executions unreserved."""
    session = FakeSession()
    session.stubs["sts"].add_response("get_caller_identity", IDENTITY)
    limits = {
        "AccountLimit": {
            "TotalCodeSize": 80530636800,
            "CodeSizeUnzipped": 262144000,
            "CodeSizeZipped": 52428800,
            "ConcurrentExecutions": unreserved,
            "UnreservedConcurrentExecutions": unreserved,
        },
        "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 0},
    }
    session.stubs["lambda"].add_response("get_account_settings", limits)
    findings = preflight.preflight(
        config(tiny_model, provisionedConcurrency=50),
        session=session,
        build_host_problems=no_build_problem,
    )
    found = blockers(findings)
    assert bool(found) is blocked
    if blocked:
        assert "needs 150 unreserved" in found[0].message


def test_a_model_larger_than_tmp_is_a_blocker(tiny_model: Path, tmp_path: Path) -> None:
    big = tmp_path / "model.ubj"
    big.write_bytes(tiny_model.read_bytes())
    with big.open("r+b") as handle:  # sparse: 600 MB without writing them
        handle.truncate(600 * 1024 * 1024)
    findings = preflight.check_lambda_limits(
        type(
            "S",
            (),
            {
                "lambda_architecture": "arm64",
                "snap_start": False,
                "model_path": big,
                "lambda_memory": 1024,
                "lambda_timeout": 29,
                # this Python compiles the byte code: no other blocker
                "lambda_runtime": f"python{sys.version_info[0]}.{sys.version_info[1]}",
            },
        )()
    )
    (blocker,) = blockers(findings)
    assert "does not fit" in blocker.message and "600 MB" in blocker.message
    assert preflight.check_lambda_limits(
        type(
            "S",
            (),
            {
                "lambda_architecture": "arm64",
                "snap_start": True,
                "model_path": tiny_model,
                "lambda_memory": 1024,
                "lambda_timeout": 29,
                "lambda_runtime": "python3.11",
            },
        )(),
    )[0].message.startswith("SnapStart needs python3.12")


def test_a_runtime_without_a_python_to_compile_its_byte_code_is_a_blocker(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(packaging.ENV_LAMBDA_PYTHON, raising=False)
    monkeypatch.setattr(packaging, "find_python", lambda version: None)
    findings = preflight.preflight(config(tiny_model, lambdaRuntime="python3.14"), offline=True)
    (blocker,) = blockers(findings)
    assert blocker.check == "lambda"
    assert "the Lambda runtime is python3.14" in blocker.message
    assert "Install Python 3.14" in blocker.message


def test_the_stack_file_and_overrides_are_read(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.dev.yaml").write_text(
        "config:\n  aws:region: eu-central-1\n  mlserve:architecture: lambda-ecs\n"
        "  mlserve:snapStart: true\n"
    )
    found = read_stack_config("dev", ["lambdaMemory=2048", "mlserve:polling=native"], tmp_path)
    assert found.region == "eu-central-1"
    assert found.get("architecture") == "lambda-ecs"
    assert (found.get("snapStart"), found.get("lambdaMemory"), found.get("polling")) == (
        "true",
        "2048",
        "native",
    )
    with pytest.raises(ValueError, match="cannot read the stack file"):
        read_stack_config("nope", [], tmp_path)
    with pytest.raises(ValueError, match="expected key=value"):
        read_stack_config(None, ["lambdaMemory"], tmp_path)


def test_the_command_exits_non_zero_on_a_blocker(
    tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok = main(["preflight", "--offline", "--config", f"modelPath={tiny_model}"])
    assert ok == 0, capsys.readouterr().out
    assert "nothing blocks a deployment" in capsys.readouterr().out
    bad = main(
        [
            "preflight",
            "--offline",
            "--config",
            f"modelPath={tiny_model}",
            "--config",
            "lambdaTimeout=0",
        ]
    )
    assert bad == 1
    out = capsys.readouterr().out
    assert "lambdaTimeout" in out and "blocker" in out
