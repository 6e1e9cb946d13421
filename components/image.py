"""ScoringImage: the container image the ECS task (and later AWS Batch) runs.

Two modes:

* ``mlserve:image`` set: that URI is used as is. No repository, no build. When it is an ECR
  URI, :func:`ecr_repository_arn` names its repository so the task execution role may pull
  from exactly that repository; any other registry gets no ECR grant.
* unset (the default): an ECR repository (mutable tags, see below; scan on push, AES256, lifecycle
  policy keeping the last :data:`KEEP_IMAGES` images) and ``images/scoring/Dockerfile`` built and
  pushed with pulumi-docker-build for the CPU architecture of the task
  (``mlserve:lambdaArchitecture``).

The tag is a content hash of the build inputs (:func:`build_inputs_hash`: the Dockerfile, the
``.dockerignore`` and every file it lets into the context, plus the platform), so an unchanged
tree keeps its tag and a changed one gets a new tag. The ``image_uri`` output is the digest
form ``repository@sha256:...`` (:func:`digest_reference`), the form both ECS task definitions
and Batch job definitions document: a task or job always runs exactly the image that was pushed,
whatever a tag points at later.

Why the tags are MUTABLE: the docker-build provider decides to rebuild from its own context
hash, and rebuilds an unchanged tree on a runner without its build cache
(pulumi/pulumi-docker-build#222). The rebuild pushes the same content-hash tag; an IMMUTABLE
repository rejects that push ("tag already exists") and stops ``pulumi up``. With the digest
pinned in every definition a moved tag changes nothing that runs: an identical rebuild is a
no-op (same digest), a non-reproducible one is a new image the definitions move to, and the
lifecycle policy keeps the previous images (tagged or not) for tasks still running them.

The repository is ``retain_on_delete`` while ``protectData`` is true (it is left in AWS, images
included, when the container architectures are switched off or the stack destroyed) and
``force_delete`` otherwise.
"""

from __future__ import annotations

import hashlib
import os
import platform as host_platform
import re
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

from components.settings import IMAGE_URI_PATTERN, LAMBDA_ARCHITECTURES

PROJECT_DIR: Final = Path(__file__).resolve().parent.parent
DOCKERFILE: Final = "images/scoring/Dockerfile"
DOCKERIGNORE: Final = ".dockerignore"
# What the root .dockerignore lets into the build context (the Dockerfile copies exactly these);
# tests/infra/test_image.py checks the .dockerignore allows exactly these paths.
CONTEXT_PATHS: Final = ("runtime", "images/scoring/requirements.txt")
# ...and what it keeps out of them again.
EXCLUDED_DIR_NAMES: Final = frozenset({"__pycache__"})
EXCLUDED_SUFFIXES: Final = frozenset({".pyc", ".pyo"})

# Lambda architecture name -> Docker platform of the image (same CPU as the task definition).
PLATFORMS: Final = {
    "arm64": docker_build.Platform.LINUX_ARM64,
    "x86_64": docker_build.Platform.LINUX_AMD64,
}
KEEP_IMAGES: Final = 10
TAG_HEX_CHARS: Final = 20
# Bump when the way the tag is computed changes.
HASH_VERSION: Final = "1"

_ECR_URI: Final = re.compile(
    r"(?P<account>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com"
    r"(?P<cn>\.cn)?/(?P<repository>[a-z0-9][a-z0-9._/-]*?)(?::[\w.-]+)?(?:@sha256:[0-9a-f]{64})?"
)


def ecr_repository_arn(image_uri: str) -> str | None:
    """The ARN of the ECR repository an image URI points into, or None if not an ECR URI.

    ``123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/scoring:1.2`` ->
    ``arn:aws:ecr:eu-west-1:123456789012:repository/team/scoring``.
    """
    match = _ECR_URI.fullmatch(image_uri)
    if match is None:
        return None
    partition = "aws-cn" if match["cn"] else "aws"
    return (
        f"arn:{partition}:ecr:{match['region']}:{match['account']}:repository/{match['repository']}"
    )


_TAG_AND_DIGEST: Final = re.compile(
    r"(?P<name>(?:[^/@]+/)*[^/:@]+)(?::[\w][\w.-]*)?(?P<digest>@sha256:[0-9a-fA-F]{64})"
)


def digest_reference(image: str) -> str:
    """``registry/repository:tag@sha256:...`` -> ``registry/repository@sha256:...``.

    The two forms ECS task definitions and Batch job definitions document are
    ``repository:tag`` and ``repository@digest``; a reference with both is Docker's shorthand
    (the tag is ignored when a digest is given). A reference without a digest is returned as is.
    """
    match = _TAG_AND_DIGEST.fullmatch(image)
    return f"{match['name']}{match['digest']}" if match else image


# --- can this machine build the image? ----------------------------------------------------------
# The host CPU (platform.machine()) -> its Docker platform.
HOST_PLATFORMS: Final = {
    "x86_64": "linux/amd64",
    "amd64": "linux/amd64",
    "aarch64": "linux/arm64",
    "arm64": "linux/arm64",
}
# Docker platform -> the binfmt_misc handler QEMU registers for it.
# Set by a target that does not build the image on this host (the local target runs the image
# as a local process, mlserve/local/deploy/substitutions.py): the build host is not checked.
ENV_IMAGE_BUILD: Final = "MLSERVE_IMAGE_BUILD"
IMAGE_BUILD_NONE: Final = "none"
QEMU_HANDLERS: Final = {"linux/arm64": "qemu-aarch64", "linux/amd64": "qemu-x86_64"}
BINFMT_DIR: Final = Path("/proc/sys/fs/binfmt_misc")
Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def build_host_problems(
    target: str,
    *,
    which: Callable[[str], str | None] = shutil.which,
    run: Runner = _run,
    machine: str | None = None,
    binfmt_dir: Path = BINFMT_DIR,
) -> list[str]:
    """What keeps this machine from building images/scoring for ``target`` (``linux/arm64``
    or ``linux/amd64``), each with its fix; [] when nothing does.

    The Dockerfile runs ``pip install`` inside the image: on a host of another CPU that needs
    QEMU user emulation registered with binfmt_misc, or Buildx fails at that step with
    "exec format error". Buildx lists the platforms its builder can run (``docker buildx
    inspect``); without that list, the kernel's binfmt_misc handlers decide.
    """
    inspected = _buildx_platforms(which, run)
    if isinstance(inspected, str):
        return [inspected]
    host = HOST_PLATFORMS.get((machine or host_platform.machine()).lower())
    handler = QEMU_HANDLERS.get(target, "")
    if (
        host == target
        or target in inspected
        or (not inspected and handler and (binfmt_dir / handler).is_file())
    ):
        return []
    cpu = target.split("/", 1)[1]
    return [
        f"building the {target} image on this {host or 'unknown'} host needs QEMU emulation "
        f"for the image's `RUN pip install` (Buildx lists {sorted(inspected) or 'no platforms'}"
        f", and binfmt_misc has no {handler} handler): register it with `docker run "
        f"--privileged --rm tonistiigi/binfmt --install {cpu}` (or the qemu-user-static "
        f"package), or build on a {target} machine, or set mlserve:lambdaArchitecture to the "
        "host's CPU, or set mlserve:image to a prebuilt image URI"
    ]


def _buildx_platforms(which: Callable[[str], str | None], run: Runner) -> set[str] | str:
    """The platforms Docker Buildx's builder can run, or the problem that keeps it from
    answering."""
    if which("docker") is None:
        return (
            "Docker is not installed: the scoring image is built with Docker Buildx. Install "
            "Docker (with the buildx plugin), or set mlserve:image to a prebuilt image URI"
        )
    if run(["docker", "buildx", "version"]).returncode != 0:
        return (
            "Docker Buildx is missing (`docker buildx version` failed): install the buildx "
            "plugin (e.g. the docker-buildx-plugin package), or set mlserve:image"
        )
    inspect = run(["docker", "buildx", "inspect"])
    if inspect.returncode != 0:
        detail = (inspect.stderr or inspect.stdout).strip().splitlines()
        return (
            "the Docker daemon or the Buildx builder does not answer (`docker buildx inspect`: "
            f"{detail[-1] if detail else 'failed'}): start Docker, or set mlserve:image"
        )
    return {
        item.strip().removesuffix("*")
        for line in inspect.stdout.splitlines()
        if line.strip().startswith("Platforms:")
        for item in line.split(":", 1)[1].split(",")
        if item.strip()
    }


def build_input_files(root: Path = PROJECT_DIR) -> list[tuple[str, Path]]:
    """(posix path relative to ``root``, path) of every file the build reads, sorted.

    The Dockerfile, the .dockerignore, and the files of :data:`CONTEXT_PATHS` minus byte code
    and ``__pycache__`` (what the .dockerignore excludes again).
    """
    root = Path(root)
    files = [(DOCKERFILE, root / DOCKERFILE), (DOCKERIGNORE, root / DOCKERIGNORE)]
    for entry in CONTEXT_PATHS:
        path = root / entry
        if path.is_file():
            files.append((entry, path))
        elif path.is_dir():
            files.extend((f"{entry}/{rel}", p) for rel, p in _walk(path))
        else:
            raise FileNotFoundError(f"scoring image build input missing: {path}")
    for rel, path in files[:2]:
        if not path.is_file():
            raise FileNotFoundError(f"scoring image build input missing: {root / rel}")
    return sorted(files)


def _walk(directory: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED_DIR_NAMES)
        base = Path(dirpath)
        for name in sorted(filenames):
            path = base / name
            if path.suffix in EXCLUDED_SUFFIXES:
                continue
            yield path.relative_to(directory).as_posix(), path


def build_inputs_hash(platform: str, root: Path = PROJECT_DIR) -> str:
    """sha256 over the platform and each build input's path, executable bit and content."""
    digest = hashlib.sha256(f"mlserve-scoring-image:{HASH_VERSION}\0{platform}\0".encode())
    for rel, path in build_input_files(root):
        executable = bool(path.stat().st_mode & stat.S_IXUSR)
        digest.update(f"{rel}\0{int(executable)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def image_tag(platform: str, root: Path = PROJECT_DIR) -> str:
    """The immutable tag of a build: the first :data:`TAG_HEX_CHARS` of the content hash."""
    return build_inputs_hash(platform, root)[:TAG_HEX_CHARS]


def lifecycle_policy(keep: int = KEEP_IMAGES) -> dict[str, object]:
    """ECR lifecycle policy: expire everything but the ``keep`` most recently pushed images."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"keep the last {keep} images",
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": keep,
                },
                "action": {"type": "expire"},
            }
        ]
    }


@dataclass(frozen=True)
class ScoringImageArgs:
    """``image``: a prebuilt image URI used as is; None builds ``images/scoring``."""

    architecture: str = "arm64"  # the Lambda/task CPU architecture name: arm64 | x86_64
    image: str | None = None
    protect_data: bool = True  # False: the repository may be deleted with its images
    keep_images: int = KEEP_IMAGES
    source_root: Path = PROJECT_DIR

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.architecture not in LAMBDA_ARCHITECTURES:
            problems.append(f"architecture {self.architecture!r} not in {LAMBDA_ARCHITECTURES}")
        if self.image is not None and not IMAGE_URI_PATTERN.fullmatch(self.image):
            problems.append(f"image {self.image!r} is not an image URI")
        if self.keep_images < 1:
            problems.append(f"keep_images {self.keep_images} < 1")
        object.__setattr__(self, "source_root", Path(self.source_root))
        if self.image is None and not (self.source_root / DOCKERFILE).is_file():
            problems.append(f"no {DOCKERFILE} under source_root {self.source_root}")
        if problems:
            raise ValueError("ScoringImageArgs: " + "; ".join(problems))

    @property
    def platform(self) -> docker_build.Platform:
        return PLATFORMS[self.architecture]


class ScoringImage(pulumi.ComponentResource):
    """The scoring image URI, and the ECR repository + build when no image is given."""

    image_uri: pulumi.Output[str]
    # The ECR repository holding the image (the execution role pulls from it); None when the
    # given image is not in ECR.
    repository_arn: pulumi.Output[str] | None
    repository_url: pulumi.Output[str] | None
    tag: str | None

    def __init__(
        self, name: str, args: ScoringImageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlserve:index:ScoringImage", name, None, opts)
        if args.image is not None:
            self.image_uri = pulumi.Output.from_input(digest_reference(args.image))
            given_arn = ecr_repository_arn(args.image)
            self.repository_arn = None if given_arn is None else pulumi.Output.from_input(given_arn)
            self.repository_url = None
            self.tag = None
        else:
            self._build(name, args)
        self.register_outputs(
            {
                "image_uri": self.image_uri,
                "repository_arn": self.repository_arn,
                "repository_url": self.repository_url,
                "tag": self.tag,
            }
        )

    def _build(self, name: str, args: ScoringImageArgs) -> None:
        child = pulumi.ResourceOptions(parent=self)
        # Say before the build what would make it fail (`python -m mlserve preflight` too).
        if os.environ.get(ENV_IMAGE_BUILD) != IMAGE_BUILD_NONE:
            for problem in build_host_problems(args.platform.value):
                pulumi.log.warn(f"scoring image: {problem}", resource=self)
        repository = aws.ecr.Repository(
            f"{name}-repository",
            # The content-hash tag names the inputs, the digest pins what runs: a provider
            # rebuild of unchanged inputs pushes the same tag again, and an IMMUTABLE
            # repository would refuse it and stop `pulumi up` (module docstring).
            image_tag_mutability="MUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "AES256"}],
            # protectData on: the repository and its images stay in AWS when it leaves the
            # program (a switch away from the container architectures, `pulumi destroy`);
            # deleting a repository with images fails with RepositoryNotEmptyException.
            # protectData off: the stack owns everything, images included.
            force_delete=not args.protect_data,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.protect_data),
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=repository.name,
            policy=pulumi.Output.json_dumps(lifecycle_policy(args.keep_images)),
            opts=child,
        )
        token = aws.ecr.get_authorization_token_output(
            registry_id=repository.registry_id, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        self.tag = image_tag(args.platform.value, args.source_root)
        tagged = pulumi.Output.concat(repository.repository_url, ":", self.tag)
        image = docker_build.Image(
            f"{name}-image",
            # Paths relative to the working directory (the project directory under Pulumi), so
            # the inputs are the same on every machine and do not trigger rebuilds.
            context={"location": _relative(args.source_root)},
            dockerfile={"location": _relative(args.source_root / DOCKERFILE)},
            platforms=[args.platform],
            push=True,
            tags=[tagged],
            registries=[
                {
                    "address": repository.repository_url,
                    "username": token.user_name,
                    "password": pulumi.Output.secret(token.password),
                }
            ],
            opts=child,
        )
        # The digest form (repository@sha256:...) once pushed; the tag if no digest is known.
        self.image_uri = pulumi.Output.all(repository.repository_url, image.digest, tagged).apply(
            lambda parts: f"{parts[0]}@{parts[1]}" if parts[1] else parts[2]
        )
        self.repository_arn = repository.arn
        self.repository_url = repository.repository_url


def _relative(path: Path) -> str:
    relative = os.path.relpath(path, Path.cwd())
    return Path(relative).as_posix()
