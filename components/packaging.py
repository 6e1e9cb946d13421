"""Lambda layer and function-code archives, with Lambda's size limits checked at build time.

The pure part (no Pulumi) builds two deterministic zip files:

* the **layer** (``build_layer``): the runtime's third-party dependencies from
  ``runtime/requirements.txt``, installed with ``pip install --target --platform manylinux...``
  for the Lambda architecture and Python version, stripped of pip's byte code, test suites, type
  stubs and console scripts, then **compiled** (``compileall --invalidation-mode unchecked-hash``)
  by an interpreter of the Lambda runtime's version (:func:`lambda_python`), and zipped under the
  ``python/`` prefix Lambda layers need. Builds are cached
  under ``<repo>/.cache/layers/<key>`` (``$MLSERVE_CACHE_DIR/layers`` when set), keyed by the
  requirements content, the architecture, the Python version and ``BUILDER_VERSION``;
* the **function code** (``build_function_archive``): the ``runtime/`` package only, compiled
  the same way (cached under ``.cache/functions/<key>``).

Why byte code: Lambda runs the layer from ``/opt`` and the code from ``/var/task``, both
read-only, so Python cannot write ``__pycache__`` there and, without shipped byte code, compiles
every module from source at every cold start (numpy, xgboost, Powertools, ...: about 2.5x the
import time, ``make bench`` cold-start rows "from the built artifacts"). Unchecked-hash ``.pyc``
files are used without looking at the sources, so the zip's fixed timestamps do not matter;
the sources stay in the archives for tracebacks. Byte code is specific to a Python minor version,
hence the compiler must be an interpreter of the runtime's version.

Both zips are byte-for-byte reproducible (sorted entries, fixed timestamps and permissions), so
an unchanged package gives Pulumi nothing to diff. ``check_size`` enforces Lambda's 250 MB
unzipped limit (function + layers) and fails the deployment with the measured sizes.

``LambdaPackage`` at the bottom is the ComponentResource that builds both at program time and
publishes the layer version.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args

import pulumi
from pulumi_aws.lambda_ import LayerVersion
from pulumi_aws.s3 import BucketObjectv2

from components.settings import (
    LAMBDA_PYTHON_RUNTIMES,
    default_lambda_runtime,
    python_version_of,
)
from runtime.contract import ENGINE_ONNX, ENGINE_XGBOOST, LAMBDA_UNZIPPED_LIMIT_BYTES
from runtime.modelfile import sha256_file

# Bump whenever the build recipe (pip flags, strip rules, zip layout) changes: it is part of the
# cache key, so every cached layer is rebuilt with the new recipe.
BUILDER_VERSION: Final = "3"  # 2: byte code compiled for the runtime; 3: no xgboost.sklearn

Architecture = Literal["arm64", "x86_64"]
ARCHITECTURES: Final[tuple[str, ...]] = get_args(Architecture)

# Lambda architecture -> machine name in manylinux platform tags.
_MACHINE: Final = {"arm64": "aarch64", "x86_64": "x86_64"}
# glibc baselines accepted for wheels: every runtime of LAMBDA_PYTHON_RUNTIMES runs on Amazon
# Linux 2023 (glibc 2.34); pip picks the wheels of the runtime's version (--python-version).
MANYLINUX_TAGS: Final = ("manylinux2014", "manylinux_2_17", "manylinux_2_28")

# Lambda's limit for a zip uploaded directly in the API request (PublishLayerVersion ZipFile);
# larger archives must go through S3.
LAMBDA_DIRECT_UPLOAD_LIMIT_BYTES: Final = 50 * 1024 * 1024

# The Python version the archives are built for when no caller names one (tests, the bench): the
# runtime the program deploys with an empty mlserve:lambdaRuntime (components/settings.py).
DEFAULT_PYTHON_VERSION: Final = python_version_of(default_lambda_runtime())

ENV_CACHE_DIR: Final = "MLSERVE_CACHE_DIR"
# An interpreter of the Lambda runtime's Python version, to compile the archives' byte code with.
ENV_LAMBDA_PYTHON: Final = "MLSERVE_LAMBDA_PYTHON"
# Where Lambda mounts what the archives hold: recorded as the byte code's file names.
LAYER_MOUNT: Final = "/opt/python"
FUNCTION_MOUNT: Final = "/var/task"
# Where the layer's dependencies come from. Unset (every `pulumi up`): pip-installed wheels for
# Lambda (build_layer). "venv": only the local target (mlserve/local/deploy) sets it, because
# there every function runs in this very Python environment: the layer is then a marker zip
# naming this venv (build_venv_layer), so deploying locally downloads nothing.
ENV_LAYER_SOURCE: Final = "MLSERVE_LAYER_SOURCE"
LAYER_SOURCE_VENV: Final = "venv"
VENV_LAYER_MARKER: Final = "python/mlserve-venv-layer.json"
# Whether the function archive ships byte code. Unset (every `pulumi up`): compiled for the
# Lambda runtime (needs a Python of its version). "none": only the local target sets it, because
# there no function runs from the archive (the stand-ins import runtime/ in this process), so a
# user with only this Python deploys locally.
ENV_FUNCTION_BYTECODE: Final = "MLSERVE_FUNCTION_BYTECODE"
FUNCTION_BYTECODE_NONE: Final = "none"
REPO_ROOT: Final = Path(__file__).resolve().parents[1]
# mlserve:engine -> the layer's requirements: the onnx engine's layer has no xgboost, no scipy.
LAYER_REQUIREMENTS: Final[dict[str, Path]] = {
    ENGINE_XGBOOST: REPO_ROOT / "runtime" / "requirements.txt",
    ENGINE_ONNX: REPO_ROOT / "runtime" / "requirements-onnx.txt",
}

# Entries of the zips: fixed timestamp (the earliest a zip can hold) and fixed permissions.
ZIP_DATE_TIME: Final = (1980, 1, 1, 0, 0, 0)
_FILE_MODE: Final = 0o644
_SHARED_OBJECT_MODE: Final = 0o755

# --- strip rules -------------------------------------------------------------------------------
# Directories holding a package's own test suite; nothing imports them at import time.
_TEST_DIR_NAMES: Final = frozenset({"tests", "test"})
# `testing` directories are public helper modules in some packages (numpy.testing is used by
# scipy at run time), so only the ones checked to be unused at import time are removed:
# xgboost imports nothing from xgboost.testing (it needs pytest/sklearn, which the layer lacks).
_REMOVABLE_TESTING_DIRS: Final = frozenset({"xgboost/testing"})
# onnxruntime (the onnx engine's layer): the offline tooling subpackages (model optimisation for
# transformers, quantization, conversion tools) are never imported by `import onnxruntime` or an
# InferenceSession, and the wheel's C-API library libonnxruntime.so.<version> (~33 MB) is for
# native consumers: the Python binding onnxruntime_pybind11_state links the runtime statically
# and does not load it (no DT_NEEDED entry; tests/infra/test_packaging.py runs the stripped layer).
# xgboost (the xgboost engine's layer): the runtime uses the Booster only. xgboost/__init__.py
# imports the scikit-learn wrapper and the plotting module inside `try: ... except ImportError`,
# and the wrapper imports scipy.special at import time: ~0.2 s of every cold start (measured
# from the built layer, read-only, python3.12: `import xgboost` 755 -> 544 ms, median of 7).
# Without the two modules that import raises ImportError and xgboost goes on without them; the
# dask and spark integrations are never imported by `import xgboost`.
_REMOVABLE_DIRS: Final = frozenset(
    {
        "onnxruntime/transformers",
        "onnxruntime/quantization",
        "onnxruntime/tools",
        "xgboost/dask",
        "xgboost/spark",
    }
)
_REMOVABLE_FILES: Final = re.compile(
    r"onnxruntime/capi/libonnxruntime\.so(\.[0-9]+)*|xgboost/(sklearn|plotting)\.py"
)
_STRIPPED_SUFFIXES: Final = frozenset({".pyc", ".pyo", ".pyi"})

# Data files shipped with the function code next to the runtime's .py files.
FUNCTION_DATA_FILES: Final = ("openapi.yaml",)
_FUNCTION_EXCLUDED_DIRS: Final = frozenset({"__pycache__", "tests", "test"})

_MIB: Final = 1024 * 1024
# Temp dirs of a build killed before it could clean up are removed after this long.
_STALE_TMP_SECONDS: Final = 6 * 3600

Runner = Callable[[Sequence[str]], None]


class PackagingError(Exception):
    """A layer or function archive cannot be built, or the result breaks a Lambda limit."""


@dataclass(frozen=True)
class LayerBuild:
    """A built (or cached) layer zip. ``unzipped_bytes`` is what Lambda counts against 250 MB."""

    zip_path: Path
    unzipped_bytes: int
    zipped_bytes: int
    architecture: str
    python_version: str
    cache_key: str
    sha256: str


@dataclass(frozen=True)
class FunctionArchive:
    """The function-code zip (the ``runtime`` package)."""

    zip_path: Path
    unzipped_bytes: int
    zipped_bytes: int
    sha256: str


def human_mb(num_bytes: int) -> str:
    """``262144000`` -> ``"250.0 MB"`` (MB = MiB, the unit of Lambda's documented limits)."""
    return f"{num_bytes / _MIB:.1f} MB"


# --- cache -------------------------------------------------------------------------------------
def default_cache_root() -> Path:
    """``$MLSERVE_CACHE_DIR`` when set, else ``<repo>/.cache`` (git-ignored)."""
    env = os.environ.get(ENV_CACHE_DIR)
    return Path(env).expanduser() if env else REPO_ROOT / ".cache"


def default_layer_cache_dir() -> Path:
    return default_cache_root() / "layers"


def layer_cache_key(requirements: bytes, architecture: str, python_version: str) -> str:
    """sha256 over everything that decides the layer's content."""
    material = json.dumps(
        {
            "requirements_sha256": hashlib.sha256(requirements).hexdigest(),
            "architecture": architecture,
            "python_version": python_version,
            "builder_version": BUILDER_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()


# --- pip -----------------------------------------------------------------------------------------
def platform_tags(architecture: str) -> list[str]:
    machine = _MACHINE[_check_architecture(architecture)]
    return [f"{tag}_{machine}" for tag in MANYLINUX_TAGS]


def pip_install_command(
    requirements_file: Path, target: Path, architecture: str, python_version: str
) -> list[str]:
    """The pip command line that installs the layer's wheels for Lambda into ``target``."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["--no-input", "--target", str(target)]
    for tag in platform_tags(architecture):
        command += ["--platform", tag]
    command += ["--implementation", "cp", "--python-version", python_version]
    command += ["--only-binary=:all:", "--no-compile", "-r", str(requirements_file)]
    return command


def _run_pip(command: Sequence[str]) -> None:
    result = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()[-4000:]
        raise PackagingError(
            f"pip could not install the Lambda layer (exit {result.returncode}):\n{output}"
        )


# --- strip ---------------------------------------------------------------------------------------
def strip_layer_tree(site: Path) -> None:
    """Remove what Lambda never needs from a ``pip --target`` tree; keep dist-info (licenses)."""
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts (f2py, jp.py, ...)
    for dirpath, dirnames, filenames in os.walk(site):
        here = Path(dirpath)
        keep: list[str] = []
        for name in dirnames:
            path = here / name
            relative = path.relative_to(site).as_posix()
            in_metadata = any(part.endswith(".dist-info") for part in path.relative_to(site).parts)
            if name == "__pycache__" or (
                not in_metadata
                and (
                    name in _TEST_DIR_NAMES
                    or relative in _REMOVABLE_TESTING_DIRS
                    or relative in _REMOVABLE_DIRS
                )
            ):
                shutil.rmtree(path)
            else:
                keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            path = here / name
            if path.suffix in _STRIPPED_SUFFIXES or _REMOVABLE_FILES.fullmatch(
                path.relative_to(site).as_posix()
            ):
                path.unlink()


# --- byte code -----------------------------------------------------------------------------------
_RUNNING_VERSION: Final = f"{sys.version_info.major}.{sys.version_info.minor}"


def _interpreter_version(python: str) -> str | None:
    """``"3.12"`` for a working interpreter, None for a missing or broken one (a pyenv shim)."""
    try:
        probe = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return probe.stdout.strip() if probe.returncode == 0 else None


def python_candidates(version: str) -> list[str]:
    """Where an interpreter of ``version`` is looked for, in order (see :func:`lambda_python`)."""
    candidates = [sys.executable] if version == _RUNNING_VERSION else []
    candidates += filter(None, [shutil.which(f"python{version}")])
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(
        (str(p) for p in pyenv_root.glob(f"versions/{version}.*/bin/python{version}")),
        reverse=True,  # the newest patch release first
    )
    return candidates


@functools.cache
def find_python(version: str) -> str | None:
    """The first candidate of :func:`python_candidates` that runs and is ``version``, or None."""
    for candidate in python_candidates(version):
        if _interpreter_version(candidate) == version:
            return candidate
    return None


def lambda_python(version: str = DEFAULT_PYTHON_VERSION) -> str:
    """The interpreter that compiles the archives' byte code for Lambda's python``version``.

    ``$MLSERVE_LAMBDA_PYTHON`` when set (it must be that version); else the interpreter running
    the program when it is that version (the default: mlserve:lambdaRuntime empty follows it,
    components/settings.py); else ``python<version>`` on PATH; else the newest
    ``$PYENV_ROOT/versions/<version>.*``. None of them: :class:`PackagingError` naming what to
    install.
    """
    if explicit := os.environ.get(ENV_LAMBDA_PYTHON):
        found = _interpreter_version(explicit)
        if found != version:
            raise PackagingError(
                f"{ENV_LAMBDA_PYTHON}={explicit} is "
                f"{'not a working Python interpreter' if found is None else 'Python ' + found}; "
                f"it must be a Python {version} interpreter (the Lambda runtime is "
                f"python{version}), or unset to look for one"
            )
        return explicit
    found_python = find_python(version)
    if found_python is None:
        running = f"python{_RUNNING_VERSION}"
        instead = (
            f"set mlserve:lambdaRuntime to {running} (this Python's) or empty"
            if running in LAMBDA_PYTHON_RUNTIMES
            else f"run the program with a Python of a Lambda runtime "
            f"({', '.join(LAMBDA_PYTHON_RUNTIMES)}) and leave mlserve:lambdaRuntime empty"
        )
        raise PackagingError(
            f"the Lambda runtime is python{version} and its byte code must be compiled by a "
            f"Python {version} interpreter, but none was found (this one is "
            f"{_RUNNING_VERSION}, no working python{version} on PATH or under "
            f"$PYENV_ROOT/versions). Install Python {version} (your distribution's "
            f"python{version} package, `pyenv install {version}` or `uv python install "
            f"{version}`) or set {ENV_LAMBDA_PYTHON} to one; or {instead}."
        )
    return found_python


def compile_bytecode(tree: Path, mount: str, python: str) -> None:
    """Compile every ``.py`` under ``tree`` into ``__pycache__`` for ``python``'s version.

    ``unchecked-hash``: the import system uses the byte code without comparing it with the
    source (no timestamps involved). File names in the byte code are ``mount``/..., where Lambda
    puts the files, not this build's directory. One process and ``PYTHONHASHSEED=0``, so the
    output is reproducible (the order of constant sets depends on the string hash). The
    environment is this one without its ``PYTHON*`` variables (``PYTHONPYCACHEPREFIX`` would
    put the byte code elsewhere), so a version manager's shim (pyenv's ``PYENV_VERSION``) finds
    the interpreter :func:`lambda_python` found.
    """
    command = [python, "-s", "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash"]
    command += ["-s", str(tree), "-p", mount, str(tree)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-4000:]
        raise PackagingError(
            f"{python} could not compile the byte code of {tree} (exit {result.returncode}):\n"
            f"{output}"
        )


# --- deterministic zip ---------------------------------------------------------------------------
def _is_shared_object(name: str) -> bool:
    return name.endswith(".so") or ".so." in name


def _tree_files(base: Path, excluded_dirs: Iterable[str] = ()) -> list[tuple[str, Path]]:
    excluded = frozenset(excluded_dirs)
    files: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if d not in excluded]
        for name in filenames:
            path = Path(dirpath) / name
            files.append((path.relative_to(base).as_posix(), path))
    return files


def write_deterministic_zip(entries: Iterable[tuple[str, Path]], zip_path: Path) -> int:
    """Write ``(archive name, file)`` pairs to ``zip_path`` reproducibly; return unzipped bytes.

    Entries are sorted by name, stamped 1980-01-01 00:00:00, mode 0644 (0755 for shared
    objects), created-on-Unix, deflated at zlib's default level. Only files are stored;
    directories are implied by the paths. The zip is written next to ``zip_path`` and renamed
    into place, so readers never see a partial archive.
    """
    ordered = sorted(entries)
    names = [name for name, _ in ordered]
    if len(set(names)) != len(names):
        raise PackagingError(f"duplicate entries in {zip_path.name}")
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{zip_path.name}.", dir=zip_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    total = 0
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, path in ordered:
                size = path.stat().st_size
                info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3  # Unix, so external_attr carries the permissions
                mode = _SHARED_OBJECT_MODE if _is_shared_object(name) else _FILE_MODE
                info.external_attr = (0o100000 | mode) << 16  # S_IFREG | mode
                info.file_size = size
                with path.open("rb") as src, archive.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
                total += size
        tmp.chmod(0o644)
        os.replace(tmp, zip_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return total


# --- layer ---------------------------------------------------------------------------------------
_LAYER_ZIP: Final = "layer.zip"
_LAYER_META: Final = "layer.json"
_INCLUDE_OPTION: Final = re.compile(r"^\s*(-r|-c|--requirement|--constraint)\b")


def _check_architecture(architecture: str) -> str:
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"architecture must be one of {', '.join(map(repr, ARCHITECTURES))}; "
            f"got {architecture!r}"
        )
    return architecture


def _check_python_version(python_version: str) -> str:
    if not re.fullmatch(r"3\.\d{1,2}", python_version):
        raise ValueError(f"python_version must look like '3.12'; got {python_version!r}")
    return python_version


def _load_cached(entry: Path) -> LayerBuild | None:
    """The build in ``entry`` if complete and intact, else None (a damaged entry is removed)."""
    meta_path, zip_path = entry / _LAYER_META, entry / _LAYER_ZIP
    if not entry.is_dir():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        build = LayerBuild(
            zip_path=zip_path,
            unzipped_bytes=int(meta["unzipped_bytes"]),
            zipped_bytes=int(meta["zipped_bytes"]),
            architecture=str(meta["architecture"]),
            python_version=str(meta["python_version"]),
            cache_key=str(meta["cache_key"]),
            sha256=str(meta["sha256"]),
        )
        if zip_path.stat().st_size == build.zipped_bytes and build.cache_key == entry.name:
            return build
    except (OSError, ValueError, KeyError, TypeError):
        pass
    shutil.rmtree(entry, ignore_errors=True)
    return None


def _remove_stale_tmp_dirs(cache_dir: Path) -> None:
    cutoff = time.time() - _STALE_TMP_SECONDS
    for stale in cache_dir.glob(".tmp-*"):
        try:
            if stale.is_dir() and stale.stat().st_mtime < cutoff:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            continue


def build_layer(
    requirements_file: Path,
    architecture: Architecture,
    python_version: str = DEFAULT_PYTHON_VERSION,
    cache_dir: Path | None = None,
    *,
    runner: Runner | None = None,
    python: str | None = None,
) -> LayerBuild:
    """Build (or reuse from the cache) the layer zip for ``architecture`` and ``python_version``.

    ``runner`` executes the pip command line (default: a subprocess); ``python`` compiles the
    byte code (default: :func:`lambda_python`); a cached build runs neither.
    The build happens in a temp directory inside the cache dir that is renamed to its key only
    when complete, so an interrupted build never leaves a cache entry behind.
    """
    _check_architecture(architecture)
    _check_python_version(python_version)
    requirements_file = Path(requirements_file)
    try:
        requirements = requirements_file.read_bytes()
    except OSError as exc:
        raise PackagingError(f"cannot read layer requirements {requirements_file}: {exc}") from exc
    for line in requirements.decode().splitlines():
        if _INCLUDE_OPTION.match(line):
            raise PackagingError(
                f"{requirements_file}: {line.strip()!r} - the layer cache is keyed by this file's "
                "content only, so list every pin in it instead of including another file"
            )

    key = layer_cache_key(requirements, architecture, python_version)
    cache_dir = (Path(cache_dir) if cache_dir is not None else default_layer_cache_dir()).resolve()
    entry = cache_dir / key
    cached = _load_cached(entry)
    if cached is not None:
        return cached

    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp_dirs(cache_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key[:16]}-", dir=cache_dir))
    try:
        staging = tmp / "staging"
        site = staging / "python"
        site.mkdir(parents=True)
        # pip reads a private copy, so the installed set is exactly the content that was hashed.
        pinned = tmp / "requirements.txt"
        pinned.write_bytes(requirements)
        try:
            (runner or _run_pip)(pip_install_command(pinned, site, architecture, python_version))
        except PackagingError as exc:
            raise PackagingError(
                f"{requirements_file} ({architecture}, python{python_version}): {exc}"
            ) from exc
        if not any(site.iterdir()):
            raise PackagingError(f"pip installed nothing from {requirements_file}")
        strip_layer_tree(site)
        compile_bytecode(site, LAYER_MOUNT, python or lambda_python(python_version))
        zip_path = tmp / _LAYER_ZIP
        unzipped = write_deterministic_zip(_tree_files(staging), zip_path)
        shutil.rmtree(staging)
        meta = {
            "unzipped_bytes": unzipped,
            "zipped_bytes": zip_path.stat().st_size,
            "architecture": architecture,
            "python_version": python_version,
            "cache_key": key,
            "sha256": sha256_file(zip_path),
            "requirements_file": str(requirements_file),
            "builder_version": BUILDER_VERSION,
        }
        (tmp / _LAYER_META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        try:
            tmp.rename(entry)
        except OSError:
            # Another build of the same key finished first; its result is identical.
            if (winner := _load_cached(entry)) is None:
                raise
            return winner
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # no-op once renamed
    built = _load_cached(entry)
    if built is None:  # pragma: no cover - the entry was just renamed into place
        raise PackagingError(f"layer cache entry {entry} vanished right after it was built")
    return built


def build_venv_layer(
    requirements_file: Path,
    architecture: Architecture,
    python_version: str = DEFAULT_PYTHON_VERSION,
    cache_dir: Path | None = None,
) -> LayerBuild:
    """The local target's layer: a zip holding only :data:`VENV_LAYER_MARKER`, which names the
    requirements, the architecture and this interpreter's environment (``sys.prefix``) that
    provides them. Nothing is downloaded; the zip is deterministic for one venv."""
    _check_architecture(architecture)
    _check_python_version(python_version)
    requirements = Path(requirements_file).read_bytes()
    marker = {
        "dependencies": "this venv",
        "sys_prefix": sys.prefix,
        "requirements_file": str(requirements_file),
        "requirements_sha256": hashlib.sha256(requirements).hexdigest(),
        "architecture": architecture,
        "python_version": python_version,
    }
    text = json.dumps(marker, indent=2, sort_keys=True) + "\n"
    key = hashlib.sha256(text.encode()).hexdigest()
    base = Path(cache_dir) if cache_dir is not None else default_cache_root() / "venv-layers"
    entry = (base / key).resolve()
    entry.mkdir(parents=True, exist_ok=True)
    source = entry / "marker.json"
    source.write_text(text)
    zip_path = entry / _LAYER_ZIP
    unzipped = write_deterministic_zip([(VENV_LAYER_MARKER, source)], zip_path)
    return LayerBuild(
        zip_path=zip_path,
        unzipped_bytes=unzipped,
        zipped_bytes=zip_path.stat().st_size,
        architecture=architecture,
        python_version=python_version,
        cache_key=key,
        sha256=sha256_file(zip_path),
    )


def layer_builder(environ: Mapping[str, str] = os.environ) -> Callable[..., LayerBuild]:
    """:func:`build_layer`, or :func:`build_venv_layer` when ``$MLSERVE_LAYER_SOURCE`` is venv."""
    source = environ.get(ENV_LAYER_SOURCE, "")
    if not source:
        return build_layer
    if source == LAYER_SOURCE_VENV:
        return build_venv_layer
    raise PackagingError(
        f"${ENV_LAYER_SOURCE}={source!r}; allowed: {LAYER_SOURCE_VENV} (the local target) or unset"
    )


# --- function code -------------------------------------------------------------------------------
def function_archive_entries(source_root: Path) -> list[tuple[str, Path]]:
    """``runtime/**/*.py`` and the runtime's data files, without tests or local byte code."""
    package = Path(source_root) / "runtime"
    if not (package / "__init__.py").is_file():
        raise PackagingError(f"{package} is not a Python package (no __init__.py)")
    entries = [
        (f"runtime/{name}", path)
        for name, path in _tree_files(package, _FUNCTION_EXCLUDED_DIRS)
        if path.suffix == ".py"
    ]
    entries += [
        (f"runtime/{name}", package / name)
        for name in FUNCTION_DATA_FILES
        if (package / name).is_file()
    ]
    return entries


def build_function_archive(
    source_root: Path,
    out_dir: Path | None = None,
    python_version: str = DEFAULT_PYTHON_VERSION,
    cache_dir: Path | None = None,
    *,
    python: str | None = None,
) -> FunctionArchive:
    """Zip the ``runtime`` package of ``source_root``, compiled, to ``<out_dir>/function.zip``.

    Default ``out_dir``: ``<source_root>/build/lambda`` (git-ignored). The compiled zip is cached
    under ``<cache_dir>/<key>`` (default ``.cache/functions``), keyed by the entries' names and
    contents, the Python version and ``BUILDER_VERSION``: every run of the program builds the
    archive, and only a changed runtime needs the compiler (``python``, default
    :func:`lambda_python`). ``$MLSERVE_FUNCTION_BYTECODE=none`` (the local target) ships the
    sources only, and needs no compiler.
    """
    _check_python_version(python_version)
    bytecode = os.environ.get(ENV_FUNCTION_BYTECODE, "")
    if bytecode not in ("", FUNCTION_BYTECODE_NONE):
        raise PackagingError(
            f"${ENV_FUNCTION_BYTECODE}={bytecode!r}; allowed: {FUNCTION_BYTECODE_NONE} (the local "
            "target) or unset"
        )
    source_root = Path(source_root).resolve()
    out_dir = Path(out_dir).resolve() if out_dir is not None else source_root / "build" / "lambda"
    entries = sorted(function_archive_entries(source_root))
    digest = hashlib.sha256(f"{python_version}\0{BUILDER_VERSION}\0{bytecode}\0".encode())
    for name, path in entries:
        digest.update(f"{name}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_root() / "functions"
    cached = cache_dir / digest.hexdigest() / "function.zip"
    if not cached.is_file():
        with tempfile.TemporaryDirectory(prefix=".function-") as staging_name:
            staging = Path(staging_name)
            for name, path in entries:
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, staging / name)
            if not bytecode:
                compile_bytecode(staging, FUNCTION_MOUNT, python or lambda_python(python_version))
            write_deterministic_zip(_tree_files(staging), cached)  # atomic: renamed into place
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".function.zip.", dir=out_dir)
    os.close(fd)
    shutil.copyfile(cached, tmp_name)
    zip_path = out_dir / "function.zip"
    os.replace(tmp_name, zip_path)
    with zipfile.ZipFile(zip_path) as archive:
        unzipped = sum(info.file_size for info in archive.infolist())
    return FunctionArchive(
        zip_path=zip_path,
        unzipped_bytes=unzipped,
        zipped_bytes=zip_path.stat().st_size,
        sha256=sha256_file(zip_path),
    )


# --- size guard ----------------------------------------------------------------------------------
def check_size(
    layer: LayerBuild, function: FunctionArchive, limit: int = LAMBDA_UNZIPPED_LIMIT_BYTES
) -> None:
    """Raise ``PackagingError`` when layer + function exceed Lambda's unzipped size limit."""
    total = layer.unzipped_bytes + function.unzipped_bytes
    if total > limit:
        raise PackagingError(
            f"Lambda package too large: layer {human_mb(layer.unzipped_bytes)} + function "
            f"{human_mb(function.unzipped_bytes)} = {human_mb(total)} unzipped, over Lambda's "
            f"{human_mb(limit)} limit ({layer.architecture}, python{layer.python_version}). "
            "Trim the layer's requirements (runtime/requirements*.txt) or use "
            "lambdaPackaging=image."
        )


# --- Pulumi component ----------------------------------------------------------------------------
_LAYER_NAME_MAX: Final = 64


def layer_name(stack: str, name: str) -> str:
    """``mlserve-<stack>-<name>``, limited to [A-Za-z0-9-_] and 64 characters."""
    full = re.sub(r"[^A-Za-z0-9_-]", "-", f"mlserve-{stack}-{name}")
    if len(full) <= _LAYER_NAME_MAX:
        return full
    suffix = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[: _LAYER_NAME_MAX - len(suffix) - 1]}-{suffix}"


@dataclass(frozen=True)
class LambdaPackageArgs:
    """Inputs of :class:`LambdaPackage`.

    ``artifact_bucket``: a bucket name the layer zip is uploaded to before publishing. Required
    when the layer zip exceeds Lambda's 50 MB direct-upload limit (the default dependency set
    does); when given, the layer always goes through S3, so crossing the threshold later does
    not change how it is deployed.
    """

    architecture: Architecture
    requirements_file: Path
    source_root: Path
    # mlserve:lambdaRuntime as the settings resolved it (the functions run on the same runtime)
    runtime: str = field(default_factory=default_lambda_runtime)
    artifact_bucket: pulumi.Input[str] | None = field(default=None, compare=False)

    @property
    def python_version(self) -> str:
        """The runtime's Python version (``"3.12"``): what the byte code is compiled for."""
        return python_version_of(self.runtime)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                "LambdaPackageArgs.architecture must be one of "
                f"{', '.join(map(repr, ARCHITECTURES))}; got {self.architecture!r}"
            )
        if self.runtime not in LAMBDA_PYTHON_RUNTIMES:
            raise ValueError(
                f"LambdaPackageArgs.runtime must be one of {', '.join(LAMBDA_PYTHON_RUNTIMES)}; "
                f"got {self.runtime!r}"
            )
        object.__setattr__(self, "requirements_file", Path(self.requirements_file))
        object.__setattr__(self, "source_root", Path(self.source_root))
        if not self.requirements_file.is_file():
            raise ValueError(
                f"LambdaPackageArgs.requirements_file does not exist: {self.requirements_file}"
            )
        if not (self.source_root / "runtime" / "__init__.py").is_file():
            raise ValueError(
                "LambdaPackageArgs.source_root must contain the runtime package "
                f"(runtime/__init__.py); got {self.source_root}"
            )


class LambdaPackage(pulumi.ComponentResource):
    """The dependency layer (a LayerVersion) and the function code archive for one architecture.

    Building happens when the program runs (preview included), so an oversized package fails
    ``pulumi preview``/``pulumi up`` with :class:`PackagingError` before anything is deployed.
    """

    layer_arn: pulumi.Output[str]
    code: pulumi.FileArchive
    runtime: str  # the functions' Lambda runtime: the one the archives were built for
    layer_build: LayerBuild
    function_archive: FunctionArchive
    layer: LayerVersion

    def __init__(
        self, name: str, args: LambdaPackageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlserve:index:LambdaPackage", name, None, opts)
        self.runtime = args.runtime
        self.layer_build = layer_builder()(
            args.requirements_file, args.architecture, args.python_version
        )
        self.function_archive = build_function_archive(
            args.source_root, python_version=args.python_version
        )
        check_size(self.layer_build, self.function_archive)
        build = self.layer_build
        if args.artifact_bucket is None and build.zipped_bytes > LAMBDA_DIRECT_UPLOAD_LIMIT_BYTES:
            raise PackagingError(
                f"Lambda layer zip is {human_mb(build.zipped_bytes)}, over Lambda's "
                f"{human_mb(LAMBDA_DIRECT_UPLOAD_LIMIT_BYTES)} direct-upload limit "
                f"({build.architecture}); pass LambdaPackageArgs(artifact_bucket=...) so it is "
                "uploaded through S3."
            )

        child = pulumi.ResourceOptions(parent=self)
        layer_args: dict[str, Any] = {
            "layer_name": layer_name(pulumi.get_stack(), name),
            "compatible_runtimes": [args.runtime],
            "compatible_architectures": [build.architecture],
            "description": (
                f"mlserve dependencies for {args.runtime} {build.architecture}: "
                f"{args.requirements_file.name} {build.cache_key[:12]}, "
                f"{human_mb(build.unzipped_bytes)} unzipped"
            ),
            "source_code_hash": base64.b64encode(bytes.fromhex(build.sha256)).decode(),
        }
        if args.artifact_bucket is not None:
            self.layer_object = BucketObjectv2(
                f"{name}-layer-object",
                bucket=args.artifact_bucket,
                key=f"artifacts/lambda-layers/{build.architecture}/{build.sha256}.zip",
                source=pulumi.FileAsset(str(build.zip_path)),
                content_type="application/zip",
                opts=child,
            )
            layer_args |= {"s3_bucket": self.layer_object.bucket, "s3_key": self.layer_object.key}
        else:
            layer_args["code"] = pulumi.FileArchive(str(build.zip_path))
        self.layer = LayerVersion(f"{name}-layer", opts=child, **layer_args)

        self.layer_arn = self.layer.arn
        self.code = pulumi.FileArchive(str(self.function_archive.zip_path))
        self.register_outputs(
            {
                "layer_arn": self.layer_arn,
                "layer_unzipped_bytes": build.unzipped_bytes,
                "function_unzipped_bytes": self.function_archive.unzipped_bytes,
                "function_sha256": self.function_archive.sha256,
            }
        )
