"""The scoring image: Dockerfile, requirements, .dockerignore, the tag hash and ScoringImage."""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pulumi
import pytest
from packaging.requirements import Requirement

from components.image import (
    CONTEXT_PATHS,
    DOCKERFILE,
    KEEP_IMAGES,
    ScoringImage,
    ScoringImageArgs,
    build_input_files,
    build_inputs_hash,
    ecr_repository_arn,
    image_tag,
    lifecycle_policy,
)
from runtime import contract
from tests.infra.conftest import ACCOUNT, ECR_REGISTRY, REGION, StackRun, run_program, run_stack
from tests.infra.test_packaging import CONSTRAINTS, normalise, read_pins

REPO = Path(__file__).resolve().parents[2]
IMAGE_DIR = REPO / "images" / "scoring"
REQUIREMENTS = IMAGE_DIR / "requirements.txt"

REPOSITORY = "aws:ecr/repository:Repository"
LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
IMAGE = "docker-build:index:Image"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
AUTH_TOKEN = "aws:ecr/getAuthorizationToken:getAuthorizationToken"
GIVEN = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/team/scoring:1.4.2"


# --- Dockerfile -----------------------------------------------------------------------------------
def instructions(path: Path = IMAGE_DIR / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "dangling line continuation"
    return [(i.split(None, 1)[0].upper(), i.split(None, 1)[1]) for i in logical]


def of(kind: str) -> list[str]:
    return [args for instruction, args in instructions() if instruction == kind]


def test_base_is_slim_python_312_pinned_by_tag() -> None:
    (base,) = of("FROM")
    match = re.fullmatch(r"python:(3\.12\.\d+)-slim(-[a-z]+)?", base)
    assert match, f"base {base!r} is not python:3.12.<patch>-slim[-<debian>]"
    assert instructions()[0][0] == "FROM"


def test_runs_as_a_non_root_user() -> None:
    users = of("USER")
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    # the user exists: created in a RUN before it is used
    created = " ".join(of("RUN"))
    assert re.search(rf"useradd .*--uid {user}\b", created) or f" {user}" in created


def test_entrypoint_is_the_scoring_module() -> None:
    (entrypoint,) = of("ENTRYPOINT")
    assert json.loads(entrypoint) == ["python", "-m", contract.SCORING_MODULE]
    assert contract.SCORING_MODULE == "runtime.scoring"
    assert of("CMD") == []


def test_python_runs_unbuffered_without_byte_code_writes() -> None:
    env = " ".join(of("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env


def test_dependencies_are_installed_from_the_pinned_file_without_cache() -> None:
    installs = [r for r in of("RUN") if "pip install" in r]
    assert len(installs) == 1
    words = shlex.split(installs[0].split("&&")[0])
    assert words[:3] == ["pip", "install", "--no-cache-dir"]
    assert words[3:] == ["-r", "/tmp/requirements.txt"]


def test_every_copy_source_exists_and_is_in_the_build_context() -> None:
    copies = of("COPY")
    assert copies
    sources = []
    for args in copies:
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        sources += words[:-1]
    for source in sources:
        assert (REPO / source).exists(), f"COPY source {source} does not exist"
        top = source.rstrip("/")
        assert top in CONTEXT_PATHS, f"{source} is not let into the context by .dockerignore"
    assert {s.rstrip("/") for s in sources} == set(CONTEXT_PATHS)


# --- requirements ---------------------------------------------------------------------------------
def test_requirements_are_exact_pins_equal_to_constraints() -> None:
    pins = read_pins(REQUIREMENTS)
    constraints = read_pins(CONSTRAINTS)
    for name, version in pins.items():
        assert constraints.get(name) == version, f"{name}=={version} vs constraints.txt"
    assert {"xgboost-cpu", "numpy", "scipy", "boto3", "aws-lambda-powertools"} <= set(pins)


def test_what_local_tasks_hide_is_absent_from_the_image() -> None:
    """mlserve.local.container hides packages from the local stand-ins of the container, because
    the image does not install them: that must stay true."""
    from importlib.metadata import packages_distributions

    from mlserve.local import container

    distributions = packages_distributions()
    pins = read_pins(REQUIREMENTS)
    for module in container.NOT_IN_IMAGE:
        names = {normalise(d) for d in distributions.get(module, [])}
        assert names, f"{module} is not installed here: nothing to hide"
        assert not names & set(pins), f"{module} ({names}) is in the image after all"


def test_requirements_are_closed_under_dependencies() -> None:
    """Every dependency of a pinned package is pinned too (nothing unpinned gets installed)."""
    pins = read_pins(REQUIREMENTS)
    environment = {"python_version": "3.12", "platform_machine": "aarch64", "extra": ""}
    for name in pins:
        for spec in metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            assert normalise(requirement.name) in pins, f"{name} needs {requirement.name}"


def runtime_third_party_imports() -> set[str]:
    modules: set[str] = set()
    for path in (REPO / "runtime").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m != "runtime"}


# Imported only by the onnx engine, which serves the `lambda` architecture from its own layer
# (runtime/requirements-onnx.txt); the scoring image always scores with XGBoost.
ONNX_ENGINE_ONLY = {"onnxruntime"}


def test_requirements_cover_what_the_runtime_imports() -> None:
    pins = read_pins(REQUIREMENTS)
    onnx_pins = read_pins(REPO / "runtime" / "requirements-onnx.txt")
    distributions = metadata.packages_distributions()
    for module in runtime_third_party_imports():
        names = {normalise(d) for d in distributions.get(module, [module])}
        installed_by = onnx_pins if module in ONNX_ENGINE_ONLY else pins
        assert names & set(installed_by), f"runtime imports {module}, nothing installs it"


# --- .dockerignore --------------------------------------------------------------------------------
def test_dockerignore_lets_in_only_what_the_dockerfile_copies() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == set(CONTEXT_PATHS)
    assert "**/__pycache__" in lines


# --- the tag --------------------------------------------------------------------------------------
def copy_tree(destination: Path) -> Path:
    for rel, path in build_input_files(REPO):
        target = destination / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return destination


def test_build_inputs_are_the_dockerfile_the_ignore_file_and_the_context() -> None:
    names = [rel for rel, _ in build_input_files(REPO)]
    assert names == sorted(names)
    assert DOCKERFILE in names and ".dockerignore" in names
    assert "images/scoring/requirements.txt" in names
    assert "runtime/contract.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert all(n.startswith(("runtime/", "images/scoring/", ".dockerignore")) for n in names)


def test_tag_is_a_stable_content_hash(tmp_path: Path) -> None:
    root = copy_tree(tmp_path / "tree")
    tag = image_tag("linux/arm64", root)
    assert re.fullmatch(r"[0-9a-f]{20}", tag)
    assert image_tag("linux/arm64", root) == tag
    assert image_tag("linux/arm64", REPO) == tag  # the copy has the same inputs
    assert image_tag("linux/amd64", root) != tag


def test_tag_ignores_byte_code(tmp_path: Path) -> None:
    root = copy_tree(tmp_path / "tree")
    before = build_inputs_hash("linux/arm64", root)
    (root / "runtime" / "__pycache__").mkdir(exist_ok=True)
    (root / "runtime" / "__pycache__" / "contract.cpython-312.pyc").write_bytes(b"\0")
    (root / "runtime" / "stray.pyc").write_bytes(b"\0")
    assert build_inputs_hash("linux/arm64", root) == before


@pytest.mark.parametrize(
    "change",
    [
        "runtime/contract.py",
        "images/scoring/requirements.txt",
        DOCKERFILE,
        ".dockerignore",
        "runtime/new_module.py",
        "mode",
    ],
)
def test_tag_changes_with_every_build_input(tmp_path: Path, change: str) -> None:
    root = copy_tree(tmp_path / "tree")
    before = image_tag("linux/arm64", root)
    if change == "mode":
        target = root / "runtime" / "contract.py"
        target.chmod(target.stat().st_mode | 0o100)
    else:
        target = root / change
        target.write_text((target.read_text() if target.exists() else "") + "\n# changed\n")
    assert image_tag("linux/arm64", root) != before


def test_missing_build_input_is_reported(tmp_path: Path) -> None:
    root = copy_tree(tmp_path / "tree")
    (root / "images" / "scoring" / "requirements.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"requirements\.txt"):
        build_input_files(root)


# --- pure helpers ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "arn"),
    [
        (GIVEN, f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/team/scoring"),
        (
            f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/scoring@sha256:{'a' * 64}",
            f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/scoring",
        ),
        (
            f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/scoring:v1@sha256:{'b' * 64}",
            f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/scoring",
        ),
        (
            f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn/scoring",
            f"arn:aws-cn:ecr:cn-north-1:{ACCOUNT}:repository/scoring",
        ),
        (
            f"{ACCOUNT}.dkr.ecr-fips.us-gov-west-1.amazonaws.com/s",
            f"arn:aws:ecr:us-gov-west-1:{ACCOUNT}:repository/s",
        ),
        ("ghcr.example/org/scoring:1.0", None),
        ("registry.example:5000/scoring", None),
        ("public.ecr.aws/org/scoring:1", None),
    ],
)
def test_ecr_repository_arn(uri: str, arn: str | None) -> None:
    assert ecr_repository_arn(uri) == arn


def test_lifecycle_policy_keeps_the_last_images() -> None:
    assert lifecycle_policy() == {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"keep the last {KEEP_IMAGES} images",
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": KEEP_IMAGES,
                },
                "action": {"type": "expire"},
            }
        ]
    }
    assert KEEP_IMAGES == 10
    with pytest.raises(ValueError, match="keep must be >= 1"):
        lifecycle_policy(0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"architecture": "arm"}, "architecture 'arm'"),
        ({"image": "not an image"}, "is not an image URI"),
        ({"keep_images": 0}, "keep_images 0 < 1"),
        ({"source_root": Path("/nonexistent")}, "no images/scoring/Dockerfile"),
    ],
)
def test_scoring_image_args_reject(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScoringImageArgs(**kwargs)


def test_a_given_image_needs_no_source_tree() -> None:
    args = ScoringImageArgs(image=GIVEN, source_root=Path("/nonexistent"))
    assert args.image == GIVEN


# --- in the stack: built --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(base_config: dict[str, str]) -> StackRun:
    return run_stack({**base_config, "architecture": "lambda-ecs"})


def container(run: StackRun) -> dict[str, Any]:
    (definition,) = json.loads(run.one(TASK_DEFINITION).inputs["containerDefinitions"])
    return definition


def test_repository_is_scanned_encrypted_and_retained(built: StackRun) -> None:
    """Tags MUTABLE and the repository retained: tests/infra/test_hardening.py says why."""
    repository = built.one(REPOSITORY, "scoring-image-repository")
    assert repository.parent == built.one("mlserve:index:ScoringImage").urn
    assert repository.inputs == {
        "imageTagMutability": "MUTABLE",
        "imageScanningConfiguration": {"scanOnPush": True},
        "encryptionConfigurations": [{"encryptionType": "AES256"}],
        "forceDelete": False,
    }
    assert repository.retain_on_delete is True


def test_repository_may_be_force_deleted_when_data_is_unprotected(
    base_config: dict[str, str],
) -> None:
    run = run_stack({**base_config, "architecture": "lambda-ecs", "protectData": False})
    assert run.one(REPOSITORY).inputs["forceDelete"] is True


def test_lifecycle_policy_is_attached_to_the_repository(built: StackRun) -> None:
    policy = built.one(LIFECYCLE, "scoring-image-lifecycle")
    assert policy.parent == built.one("mlserve:index:ScoringImage").urn
    assert policy.inputs["repository"] == built.one(REPOSITORY).outputs["name"]
    assert json.loads(policy.inputs["policy"]) == lifecycle_policy()


@pytest.mark.parametrize(
    ("architecture", "platform", "cpu"),
    [("arm64", "linux/arm64", "ARM64"), ("x86_64", "linux/amd64", "X86_64")],
)
def test_image_is_built_and_pushed_for_the_task_cpu(
    base_config: dict[str, str], architecture: str, platform: str, cpu: str
) -> None:
    run = run_stack(
        {**base_config, "architecture": "lambda-ecs", "lambdaArchitecture": architecture}
    )
    image = run.one(IMAGE, "scoring-image-image")
    assert image.parent == run.one("mlserve:index:ScoringImage").urn
    repository_url = run.one(REPOSITORY).outputs["repositoryUrl"]
    tag = image_tag(platform, REPO)
    assert image.inputs["platforms"] == [platform]
    assert image.inputs["push"] is True
    assert image.inputs["tags"] == [f"{repository_url}:{tag}"]
    assert image.inputs["context"] == {"location": "."}
    assert image.inputs["dockerfile"] == {"location": DOCKERFILE}
    # the task runs on the same CPU architecture the image is built for
    platform_of_task = run.one(TASK_DEFINITION).inputs["runtimePlatform"]
    assert platform_of_task == {"operatingSystemFamily": "LINUX", "cpuArchitecture": cpu}


def test_registry_credentials_come_from_ecr_and_stay_secret(built: StackRun) -> None:
    image = built.one(IMAGE)
    registries = image.inputs["registries"]
    # a secret input is serialised as {<secret signature>: ..., "value": ...}
    assert "value" in registries and len(registries) == 2
    assert registries["value"] == [
        {
            "address": built.one(REPOSITORY).outputs["repositoryUrl"],
            "username": "AWS",
            "password": "mock-ecr-password",
        }
    ]
    tokens = [args for token, args in built.invocations if token == AUTH_TOKEN]
    assert tokens == [{"registryId": ACCOUNT}]


def test_image_uri_is_the_digest_pinned_reference(built: StackRun) -> None:
    image = built.one(IMAGE)
    ref = f"{built.one(REPOSITORY).outputs['repositoryUrl']}@{image.outputs['digest']}"
    assert re.fullmatch(rf"{re.escape(ECR_REGISTRY)}/[\w-]+@sha256:[0-9a-f]{{64}}", ref)
    assert built.exports["imageUri"] == ref
    assert container(built)["image"] == ref
    outputs = built.component_outputs[built.one("mlserve:index:ScoringImage").urn]
    assert outputs["image_uri"] == ref
    assert outputs["repository_arn"] == built.one(REPOSITORY).outputs["arn"]


def test_execution_role_pulls_from_the_built_repository_only(built: StackRun) -> None:
    policy = json.loads(built.named("scoring-execution-policy").inputs["policy"])
    ecr = [s for s in policy["Statement"] if any(a.startswith("ecr:") for a in s["Action"])]
    assert ecr == [
        {
            "Sid": "EcrAuthentication",
            "Effect": "Allow",
            "Action": ["ecr:GetAuthorizationToken"],
            "Resource": ["*"],
        },
        {
            "Sid": "PullScoringImage",
            "Effect": "Allow",
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Resource": [built.one(REPOSITORY).outputs["arn"]],
        },
    ]


# --- in the stack: given --------------------------------------------------------------------------
def test_a_given_ecr_image_is_used_as_is(base_config: dict[str, str]) -> None:
    run = run_stack({**base_config, "architecture": "lambda-ecs", "image": GIVEN})
    for typ in (REPOSITORY, LIFECYCLE, IMAGE):
        assert run.of_type(typ) == [], typ
    assert AUTH_TOKEN not in run.calls
    component = run.one("mlserve:index:ScoringImage", "scoring-image")
    assert run.children(component) == []
    assert container(run)["image"] == GIVEN
    assert run.exports["imageUri"] == GIVEN
    policy = json.loads(run.named("scoring-execution-policy").inputs["policy"])
    pull = next(s for s in policy["Statement"] if s["Sid"] == "PullScoringImage")
    assert pull["Resource"] == [f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/team/scoring"]


def test_an_image_from_another_registry_gets_no_ecr_grant(base_config: dict[str, str]) -> None:
    given = "ghcr.example/org/scoring@sha256:" + "c" * 64
    run = run_stack({**base_config, "architecture": "lambda-ecs", "image": given})
    assert run.of_type(REPOSITORY) == [] and run.of_type(IMAGE) == []
    assert container(run)["image"] == given
    policy = json.loads(run.named("scoring-execution-policy").inputs["policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["WriteTaskLogs"]
    assert not any(a.startswith("ecr:") for s in policy["Statement"] for a in s["Action"])


def test_scoring_image_component_alone() -> None:
    def program() -> None:
        image = ScoringImage("img", ScoringImageArgs(architecture="x86_64"))
        pulumi.export("uri", image.image_uri)

    run = run_program(program)
    assert {(r.type, r.name) for r in run.resources if r.custom} == {
        (REPOSITORY, "img-repository"),
        (LIFECYCLE, "img-lifecycle"),
        (IMAGE, "img-image"),
    }
    assert run.one(IMAGE).inputs["platforms"] == ["linux/amd64"]
    assert run.exports["uri"].startswith(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/img-")
