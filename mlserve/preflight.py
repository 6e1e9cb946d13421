"""`python -m mlserve preflight`: what a deployment would trip over, checked without deploying.

Reads the stack's configuration like ``pulumi up`` would (Pulumi.yaml's defaults, then
``Pulumi.<stack>.yaml``, then ``--config key=value``) and checks:

- **configuration**: every ``mlserve:*`` key, with components/settings.py's own validation;
- **OpenAPI**: runtime/openapi.yaml, as deployed for the chosen ``apiAuth``, imports into API
  Gateway REST with ``failOnWarnings`` (components/api.py ``import_problems``);
- **Lambda limits** for the runtime, architecture, memory and timeout: the runtime supports the
  architecture, SnapStart's runtime, the model fits the functions' 512 MB ``/tmp``, and (with
  credentials) provisioned concurrency leaves the account's 100 unreserved executions;
- **image build**: when a container architecture needs images/scoring built, Docker, Buildx and,
  for another CPU than the host's, QEMU emulation (components/image.py
  ``build_host_problems``: the program warns about the same at preview);
- **AWS**: a region (``aws:region`` or the SDK's), credentials that STS accepts.

Each finding is ``ok``, ``warning`` or ``blocker`` with what to do; the exit status is 1 when
any blocker is found. ``--offline`` skips the checks that call AWS.

The command's arguments live in mlserve/commands/preflight.py; :func:`run` runs it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from runtime import contract

OK: Final = "ok"
WARNING: Final = "warning"
BLOCKER: Final = "blocker"
# The architectures each Lambda runtime is offered on (Lambda runtimes table).
RUNTIME_ARCHITECTURES: Final = {
    "python3.11": ("arm64", "x86_64"),
    "python3.12": ("arm64", "x86_64"),
    "python3.13": ("arm64", "x86_64"),
    "python3.14": ("arm64", "x86_64"),
}
# SnapStart's managed runtimes for Python start at 3.12.
SNAPSTART_MIN_PYTHON: Final = (3, 12)
# Lambda's default ephemeral storage (/tmp), where the model is downloaded; the functions do not
# raise it (and SnapStart allows no more).
TMP_BYTES: Final = 512 * 1024 * 1024
# Lambda keeps this many concurrent executions of an account unreserved: provisioned
# concurrency can take only what is above it.
UNRESERVED_MINIMUM: Final = 100
CONTAINER_ARCHITECTURES: Final = (
    contract.ARCH_LAMBDA_ECS,
    contract.ARCH_STEPFUNCTIONS_ECS,
    contract.ARCH_STEPFUNCTIONS_BATCH,
)


@dataclass(frozen=True)
class Finding:
    level: str  # OK, WARNING or BLOCKER
    check: str
    message: str


@dataclass(frozen=True)
class StackConfig:
    """The raw configuration of a stack: ``mlserve:*`` (bare keys) and ``aws:region``."""

    values: Mapping[str, Any]
    region: str | None

    def get(self, key: str) -> str | None:
        value = self.values.get(key)
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)


def read_stack_config(
    stack: str | None, overrides: Sequence[str] = (), project_dir: Path | None = None
) -> StackConfig:
    """``Pulumi.<stack>.yaml``'s config (when ``stack``), then ``key=value`` overrides
    (``mlserve:`` optional; ``aws:region=...`` sets the region)."""
    import yaml

    from components import settings

    directory = project_dir or settings.PROJECT_FILE.parent
    values: dict[str, Any] = {}
    region: str | None = None
    raw: dict[str, Any] = {}
    if stack is not None:
        path = directory / f"Pulumi.{stack}.yaml"
        try:
            raw = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        except OSError as exc:
            raise ValueError(f"cannot read the stack file {path}: {exc.strerror}") from None
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--config {item!r}: expected key=value")
        name = key if ":" in key else f"{settings.NAMESPACE}:{key}"
        raw[name] = value
    for name, value in raw.items():
        namespace, _, key = str(name).partition(":")
        if namespace == settings.NAMESPACE:
            values[key] = value
        elif str(name) == "aws:region":
            region = str(value)
    return StackConfig(values, region)


# --- the checks ---------------------------------------------------------------------------------
def check_settings(
    config: StackConfig, project_file: Path | None = None
) -> tuple[Any, list[Finding]]:
    """(Settings or None, findings): components/settings.py's validation of the stack."""
    from components import settings

    try:
        found = settings.Settings.from_lookup(
            config.get, project_file or settings.PROJECT_FILE, present_keys=sorted(config.values)
        )
    except settings.SettingsError as exc:
        lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        return None, [Finding(BLOCKER, "configuration", line) for line in lines]
    archs = ", ".join(found.architectures)
    return found, [Finding(OK, "configuration", f"valid; architectures: {archs}")]


def check_openapi(api_auth: str) -> list[Finding]:
    """The document as deployed (every operation served, ``api_auth``) imports cleanly."""
    from components.api import import_problems, load_openapi, operation_ids, render_openapi

    spec = load_openapi()
    problems = import_problems(spec)
    if not problems:
        arn = "arn:aws:lambda:us-east-1:123456789012:function:preflight"
        rendered = render_openapi(
            spec, dict.fromkeys(operation_ids(spec), arn), api_auth, "us-east-1"
        )
        problems = import_problems(rendered)
    if problems:
        return [Finding(BLOCKER, "openapi", f"runtime/openapi.yaml{p}") for p in problems]
    return [Finding(OK, "openapi", "runtime/openapi.yaml imports with failOnWarnings")]


def check_lambda_limits(found: Any) -> list[Finding]:
    """Lambda's limits for the chosen runtime (mlserve:lambdaRuntime), architecture, memory,
    timeout and model; and the Python that compiles the archives' byte code for that runtime."""
    findings: list[Finding] = []
    runtime = found.lambda_runtime
    arch = found.lambda_architecture
    offered = RUNTIME_ARCHITECTURES.get(runtime)
    if offered is None:
        findings.append(Finding(WARNING, "lambda", f"runtime {runtime}: architectures unknown"))
    elif arch not in offered:
        findings.append(
            Finding(BLOCKER, "lambda", f"{runtime} is not offered on {arch}; allowed: {offered}")
        )
    if found.snap_start:
        version = tuple(int(p) for p in runtime.removeprefix("python").split("."))
        if version < SNAPSTART_MIN_PYTHON:
            findings.append(
                Finding(BLOCKER, "lambda", f"SnapStart needs python3.12 or later, not {runtime}")
            )
    from components.packaging import PackagingError, lambda_python
    from components.settings import python_version_of

    try:
        lambda_python(python_version_of(runtime))
    except PackagingError as exc:
        findings.append(Finding(BLOCKER, "lambda", str(exc)))
    size = Path(found.model_path).stat().st_size
    if size > TMP_BYTES:
        findings.append(
            Finding(
                BLOCKER,
                "lambda",
                f"the model {found.model_path} ({size / 2**20:.0f} MB) does not fit the "
                f"functions' /tmp ({TMP_BYTES // 2**20} MB), where it is downloaded: use a "
                "smaller model",
            )
        )
    if not findings:
        findings.append(
            Finding(
                OK,
                "lambda",
                f"{runtime} on {arch}, {found.lambda_memory} MB, {found.lambda_timeout} s; the "
                f"model fits /tmp",
            )
        )
    return findings


def check_image_build(found: Any, build_host_problems: Callable[[str], list[str]]) -> list[Finding]:
    """Docker, Buildx and QEMU when images/scoring must be built for a container architecture."""
    from components.image import PLATFORMS

    if not any(a in CONTAINER_ARCHITECTURES for a in found.architectures):
        return [Finding(OK, "image", "no container architecture: no image to build")]
    if found.image:
        return [Finding(OK, "image", f"mlserve:image is given: {found.image}")]
    target = PLATFORMS[found.lambda_architecture].value
    problems = build_host_problems(target)
    if problems:
        return [Finding(BLOCKER, "image", problem) for problem in problems]
    return [Finding(OK, "image", f"Docker Buildx can build {target} here")]


def check_aws(found: Any, config: StackConfig, session: Any) -> list[Finding]:
    """A region, credentials STS accepts, and the account's Lambda concurrency."""
    from botocore.exceptions import BotoCoreError, ClientError

    region = config.region or session.region_name
    if not region:
        return [
            Finding(
                BLOCKER,
                "aws",
                "no region: `pulumi config set aws:region <region>` (or AWS_REGION / a profile)",
            )
        ]
    findings = [Finding(OK, "aws", f"region {region}")]
    if session.get_credentials() is None:
        findings.append(
            Finding(
                BLOCKER,
                "aws",
                "no AWS credentials: `aws configure`, AWS_PROFILE, or the AWS_ACCESS_KEY_ID "
                "/ AWS_SECRET_ACCESS_KEY environment variables",
            )
        )
        return findings
    try:
        identity = session.client("sts", region_name=region).get_caller_identity()
    except (BotoCoreError, ClientError) as exc:
        findings.append(Finding(BLOCKER, "aws", f"the credentials are not accepted: {exc}"))
        return findings
    findings.append(Finding(OK, "aws", f"credentials of {identity['Arn']}"))
    wanted = int(found.provisioned_concurrency)
    if wanted:
        try:
            limits = session.client("lambda", region_name=region).get_account_settings()
        except (BotoCoreError, ClientError) as exc:
            findings.append(Finding(WARNING, "aws", f"Lambda account settings unread: {exc}"))
            return findings
        unreserved = int(limits["AccountLimit"]["UnreservedConcurrentExecutions"])
        if wanted > unreserved - UNRESERVED_MINIMUM:
            findings.append(
                Finding(
                    BLOCKER,
                    "lambda",
                    f"mlserve:provisionedConcurrency {wanted} needs {wanted + UNRESERVED_MINIMUM}"
                    f" unreserved concurrent executions; the account has {unreserved} in "
                    f"{region}: lower it, or ask for a Lambda concurrency quota increase",
                )
            )
    return findings


def preflight(
    config: StackConfig,
    *,
    offline: bool = False,
    session: Any = None,
    build_host_problems: Callable[[str], list[str]] | None = None,
) -> list[Finding]:
    """Every finding for ``config``; the AWS checks only when not ``offline``."""
    found, findings = check_settings(config)
    if found is None:
        return findings
    findings += check_openapi(found.api_auth)
    findings += check_lambda_limits(found)
    if build_host_problems is None:
        from components.image import build_host_problems as host_problems

        build_host_problems = host_problems
    findings += check_image_build(found, build_host_problems)
    if offline:
        findings.append(Finding(WARNING, "aws", "not checked (--offline)"))
    else:
        if session is None:
            import boto3

            session = boto3.Session(region_name=config.region or os.environ.get("AWS_REGION"))
        findings += check_aws(found, config, session)
    return findings


# --- the command --------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    """Print the findings; 1 when any is a blocker."""
    from rich.console import Console
    from rich.table import Table

    config = read_stack_config(args.stack, args.config)
    findings = preflight(config, offline=args.offline)
    table = Table(title=f"mlserve preflight: {args.stack or 'Pulumi.yaml defaults'}")
    for column in ("", "check", "finding / what to do"):
        table.add_column(column)
    marks = {OK: "[green]ok[/green]", WARNING: "[yellow]warn[/yellow]", BLOCKER: "[red]FIX[/red]"}
    for finding in findings:
        table.add_row(marks[finding.level], finding.check, finding.message)
    console = Console()
    console.print(table)
    blockers = sum(1 for f in findings if f.level == BLOCKER)
    if blockers:
        console.print(f"[red]{blockers} blocker(s)[/red]: fix them before `pulumi up`")
        return 1
    console.print("[green]nothing blocks a deployment[/green]")
    return 0
