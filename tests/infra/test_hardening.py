"""What a first deployment to a real account would hit (issue 15), under Pulumi mocks.

Each test states the AWS behaviour it guards against:

- the ECR repository is ``retain_on_delete`` while ``protectData`` is true (else deleting it
  with images in it fails with RepositoryNotEmptyException), and force-deleted otherwise;
- the Step Functions log groups are under ``/aws/vendedlogs/`` (the CloudWatch Logs resource
  policy Step Functions extends for each other log group is limited to 5,120 characters);
- the content-hash tag can be pushed again (a provider rebuild of unchanged inputs on a runner
  without the build cache must not stop ``pulumi up`` with "tag already exists");
- the model bucket's sub-resources are created one after the other (S3 answers 409
  OperationAborted to concurrent configuration changes of one bucket);
- the task and job definitions name the image in the digest form ``repository@sha256:...``
  (the form both ECS and Batch document), also when the given image carries a tag;
- the REST API is imported with ``failOnWarnings``: a warning stops the deployment;
- an arm64 image built on an x86 host needs QEMU (binfmt_misc) for its ``RUN pip install``:
  :func:`components.image.build_host_problems` says so before the build.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.image import build_host_problems, digest_reference
from tests.infra.conftest import ECR_REGISTRY, Registered, StackRun, run_stack

REPOSITORY = "aws:ecr/repository:Repository"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
STATE_MACHINE = "aws:sfn/stateMachine:StateMachine"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
JOB_DEFINITION = "aws:batch/jobDefinition:JobDefinition"
REST_API = "aws:apigateway/restApi:RestApi"
DIGEST = re.compile(r"[^@:]+(?::\d+)?/[^@:]+@sha256:[0-9a-f]{64}")


@pytest.fixture(scope="module")
def everything(base_config: dict[str, str]) -> StackRun:
    return run_stack(
        {**base_config, "architecture": "lambda,lambda-ecs,stepfunctions-ecs,stepfunctions-batch"}
    )


# --- 2. ECR repository vs protectData -------------------------------------------------------------
def test_the_repository_is_retained_while_data_is_protected(everything: StackRun) -> None:
    repository = everything.one(REPOSITORY)
    assert repository.retain_on_delete is True
    assert repository.inputs["forceDelete"] is False


def test_the_repository_is_deleted_with_its_images_when_data_is_not_protected(
    base_config: dict[str, str],
) -> None:
    run = run_stack({**base_config, "architecture": "lambda-ecs", "protectData": False})
    repository = run.one(REPOSITORY)
    assert repository.inputs["forceDelete"] is True
    assert not repository.retain_on_delete


# --- 3. Step Functions log groups ----------------------------------------------------------------
def test_state_machine_log_groups_are_vended_log_groups(everything: StackRun) -> None:
    machines = everything.of_type(STATE_MACHINE)
    assert len(machines) == 2
    groups = {g.outputs["arn"]: g for g in everything.of_type(LOG_GROUP)}
    for machine in machines:
        destination = machine.inputs["loggingConfiguration"]["logDestination"]
        group = groups[destination.removesuffix(":*")]
        assert group.inputs["namePrefix"].startswith("/aws/vendedlogs/states/"), group.inputs
        assert group.outputs["name"].startswith("/aws/vendedlogs/states/")
        assert "name" not in group.inputs  # auto-named after the prefix, never hard-coded


# --- 4. immutable content-hash tags vs a provider rebuild -----------------------------------------
def test_a_rebuild_of_unchanged_inputs_can_push_its_tag_again(everything: StackRun) -> None:
    """pulumi-docker-build may rebuild an unchanged tree (pulumi/pulumi-docker-build#222); the
    new build pushes the same content-hash tag. An IMMUTABLE repository refuses that push and
    stops ``pulumi up``; the tag may move, while what runs is pinned by digest (below)."""
    repository = everything.one(REPOSITORY)
    assert repository.inputs["imageTagMutability"] == "MUTABLE"


# --- 6. model bucket sub-resources in order -----------------------------------------------------
BUCKET_SETUP = (
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketPolicy:BucketPolicy",
)
BUCKET_OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"
BUCKET_NOTIFICATION = "aws:s3/bucketNotification:BucketNotification"


def _depends_on(run: StackRun, resource: Registered) -> set[str]:
    """Every URN ``resource`` waits for (dependencies, transitively)."""
    found: set[str] = set()
    todo = list(resource.dependencies)
    while todo:
        urn = todo.pop()
        if urn in found:
            continue
        found.add(urn)
        todo.extend(run.by_urn(urn).dependencies)
    return found


def test_bucket_configuration_calls_never_run_concurrently(everything: StackRun) -> None:
    """Every two of the bucket's configuration resources are ordered (one waits for the
    other), and whatever else writes to the bucket (objects: model, metadata, Lambda package;
    the job-config notification) waits for all of them."""
    setup = [everything.one(t) for t in BUCKET_SETUP]
    for index, resource in enumerate(setup):
        waits_for = _depends_on(everything, resource)
        for earlier in setup[:index]:
            assert earlier.urn in waits_for, f"{resource.name} may run with {earlier.name}"
    bucket = everything.one("aws:s3/bucket:Bucket").outputs["bucket"]
    writers = [
        r
        for r in everything.resources
        if r.custom and r.inputs.get("bucket") == bucket and r.type not in BUCKET_SETUP
    ]
    assert {w.type for w in writers} == {BUCKET_OBJECT, BUCKET_NOTIFICATION}
    for writer in writers:
        assert {r.urn for r in setup} <= _depends_on(everything, writer), writer.name


# --- 9. the image in the digest form ------------------------------------------------------------
def _images(run: StackRun) -> list[str]:
    images = [
        c["image"]
        for d in run.of_type(TASK_DEFINITION)
        for c in json.loads(d.inputs["containerDefinitions"])
    ]
    images += [
        json.loads(d.inputs["containerProperties"])["image"] for d in run.of_type(JOB_DEFINITION)
    ]
    return images


def test_task_and_job_definitions_name_the_image_by_digest(everything: StackRun) -> None:
    images = _images(everything)
    assert len(images) == 2
    for image in images:
        assert DIGEST.fullmatch(image), image
        assert image.startswith(f"{ECR_REGISTRY}/")
    assert everything.exports["imageUri"] == images[0] == images[1]


def test_a_given_image_with_tag_and_digest_is_named_by_digest(
    base_config: dict[str, str],
) -> None:
    digest = "sha256:" + "b" * 64
    given = f"{ECR_REGISTRY}/team/scoring:v1@{digest}"
    run = run_stack(
        {**base_config, "architecture": "lambda-ecs,stepfunctions-batch", "image": given}
    )
    assert _images(run) == [f"{ECR_REGISTRY}/team/scoring@{digest}"] * 2


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("r.example/a/b:v1@sha256:" + "c" * 64, "r.example/a/b@sha256:" + "c" * 64),
        ("r.example:5000/b:v1@sha256:" + "c" * 64, "r.example:5000/b@sha256:" + "c" * 64),
        ("r.example:5000/b@sha256:" + "c" * 64, "r.example:5000/b@sha256:" + "c" * 64),
        ("r.example:5000/b:v1", "r.example:5000/b:v1"),  # no digest: the tag is all there is
        ("busybox", "busybox"),
    ],
)
def test_digest_reference(given: str, expected: str) -> None:
    assert digest_reference(given) == expected


# --- 8. the OpenAPI import stops on a warning ---------------------------------------------------
def test_the_rest_api_fails_on_import_warnings(everything: StackRun) -> None:
    api: Any = everything.one(REST_API)
    assert api.inputs["failOnWarnings"] is True


# --- 5. an arm64 image on an x86 host needs QEMU --------------------------------------------------
class _Docker:
    """A host's `docker` as build_host_problems sees it: which commands answer, and what."""

    def __init__(self, *, buildx: bool = True, daemon: bool = True, platforms: str = "") -> None:
        self.buildx, self.daemon, self.platforms = buildx, daemon, platforms
        self.commands: list[list[str]] = []

    def run(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        self.commands.append(command)
        if command[:3] == ["docker", "buildx", "version"]:
            ok = self.buildx
            return subprocess.CompletedProcess(command, 0 if ok else 1, "", "unknown command")
        out = f"Name: default\nDriver: docker\nPlatforms: {self.platforms}\n"
        if not self.daemon:
            return subprocess.CompletedProcess(command, 1, "", "Cannot connect to the daemon")
        return subprocess.CompletedProcess(command, 0, out, "")


def _problems(docker: _Docker | None, machine: str, tmp_path: Path, **kwargs: Any) -> list[str]:
    return build_host_problems(
        "linux/arm64",
        which=lambda name: None if docker is None else f"/usr/bin/{name}",
        run=(docker or _Docker()).run,
        machine=machine,
        binfmt_dir=tmp_path,
        **kwargs,
    )


def test_an_arm64_image_on_an_x86_host_without_qemu_is_named_before_building(
    tmp_path: Path,
) -> None:
    (problem,) = _problems(_Docker(platforms="linux/amd64, linux/386"), "x86_64", tmp_path)
    assert "needs QEMU emulation" in problem and "tonistiigi/binfmt --install arm64" in problem
    assert "lambdaArchitecture" in problem  # and the other ways out


def test_an_arm64_image_builds_where_buildx_can_run_arm64(tmp_path: Path) -> None:
    with_qemu = _Docker(platforms="linux/amd64, linux/arm64*, linux/riscv64")
    assert _problems(with_qemu, "x86_64", tmp_path) == []
    assert _problems(_Docker(platforms="linux/arm64"), "aarch64", tmp_path) == []  # native
    # no platform list (an older Buildx): the kernel's binfmt_misc handler decides
    (tmp_path / "qemu-aarch64").write_text("enabled\n")
    assert _problems(_Docker(platforms=""), "x86_64", tmp_path) == []


@pytest.mark.parametrize(
    ("docker", "found"),
    [
        (None, "Docker is not installed"),
        (_Docker(buildx=False), "Docker Buildx is missing"),
        (_Docker(daemon=False), "Cannot connect to the daemon"),
    ],
)
def test_a_host_that_cannot_build_at_all_says_why(
    docker: _Docker | None, found: str, tmp_path: Path
) -> None:
    (problem,) = _problems(docker, "aarch64", tmp_path)
    assert found in problem and "mlserve:image" in problem


def test_the_program_warns_at_preview_when_this_host_cannot_build_the_image(
    base_config: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pulumi

    from components import image

    warned: list[str] = []
    monkeypatch.setattr(image, "build_host_problems", lambda target: [f"no QEMU for {target}"])
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *a, **k: warned.append(message))
    run_stack({**base_config, "architecture": "stepfunctions-batch", "lambdaArchitecture": "arm64"})
    assert warned == ["scoring image: no QEMU for linux/arm64"]
    warned.clear()
    run_stack({**base_config, "architecture": "lambda"})  # no image: nothing to say
    assert warned == []
