"""The Lambda layer and function archive builder (components/packaging.py).

Fast tests drive the builder with a stand-in for pip (the ``runner`` it accepts) to pin the strip
rules, the byte code (compiled by an interpreter of the Lambda runtime's version, which must be
installed: :func:`components.packaging.lambda_python`), the zip format, the cache and its crash
safety. The ``slow`` tests build the real layer
for arm64 and x86_64 with pip, once per session each, into the repository's layer cache
(``.cache/layers``, so later infra tests reuse them), check what Lambda would get, and record the
measured sizes in ``build/package-sizes.json``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.packaging import (
    ARCHITECTURES,
    BUILDER_VERSION,
    ENV_LAMBDA_PYTHON,
    LAMBDA_DIRECT_UPLOAD_LIMIT_BYTES,
    LAYER_REQUIREMENTS,
    ZIP_DATE_TIME,
    FunctionArchive,
    LambdaPackage,
    LambdaPackageArgs,
    LayerBuild,
    PackagingError,
    build_function_archive,
    build_layer,
    check_size,
    find_python,
    human_mb,
    lambda_python,
    layer_cache_key,
    layer_name,
    pip_install_command,
)
from components.settings import default_lambda_runtime
from runtime.contract import ENGINE_ONNX, LAMBDA_UNZIPPED_LIMIT_BYTES

REPO = Path(__file__).resolve().parents[2]
# What the program deploys with an empty mlserve:lambdaRuntime (and the builders' default)
LAMBDA_RUNTIME = default_lambda_runtime()
LAMBDA_PYTHON_VERSION = LAMBDA_RUNTIME.removeprefix("python")
REQUIREMENTS = REPO / "runtime" / "requirements.txt"
CONSTRAINTS = REPO / "constraints.txt"
SIZES_JSON = REPO / "build" / "package-sizes.json"

LAMBDA_RUNTIME_SDK = frozenset({"boto3", "botocore", "s3transfer"})  # the runtime provides them
ELF_MACHINE = {"arm64": 0xB7, "x86_64": 0x3E}  # e_machine: EM_AARCH64, EM_X86_64
MIB = 1024 * 1024


# --- helpers -------------------------------------------------------------------------------------
def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements/constraints file, names normalised."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.fullmatch(
            r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;]+)(\s*;.*)?", line
        )
        assert match, f"{path.name}: not an exact pin: {raw!r}"
        pins[normalise(match.group(1))] = match.group(3)
    return pins


def zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def elf_machine(header: bytes) -> int:
    assert header[:4] == b"\x7fELF", "not an ELF file"
    assert header[5] == 1, "expected a little-endian ELF"
    return int.from_bytes(header[18:20], "little")


def fake_pip(tree: dict[str, bytes]) -> tuple[list[list[str]], Any]:
    """A runner standing in for pip: writes ``tree`` into the ``--target`` dir, records argv."""
    calls: list[list[str]] = []

    def run(command: Sequence[str]) -> None:
        calls.append(list(command))
        target = Path(command[command.index("--target") + 1])
        for name, content in tree.items():
            path = target / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)

    return calls, run


def refuse_pip(command: Sequence[str]) -> None:
    raise AssertionError(f"pip must not run for a cached layer: {command}")


FAKE_TREE: dict[str, bytes] = {
    "pkg/__init__.py": b"VALUE = 1\n",
    "pkg/core.py": b"def f():\n    return 2\n",
    "pkg/_ext.cpython-312-x86_64-linux-gnu.so": b"\x7fELF" + bytes(60),
    "pkg/core.pyi": b"def f() -> int: ...\n",
    "pkg/__pycache__/core.cpython-312.pyc": b"\x00" * 16,
    "pkg/stale.pyc": b"\x00" * 8,
    "pkg/tests/__init__.py": b"",
    "pkg/tests/test_core.py": b"def test(): pass\n",
    "pkg/sub/test/data.txt": b"x",
    "pkg/sub/mod.py": b"",
    "pkg/testing/__init__.py": b"# public helper module: kept\n",
    "xgboost/__init__.py": b"",
    "xgboost/testing/__init__.py": b"import pytest\n",
    "xgboost/sklearn.py": b"from scipy.special import softmax\n",
    "xgboost/plotting.py": b"from .sklearn import XGBModel\n",
    "xgboost/dask/__init__.py": b"import dask\n",
    "xgboost/spark/__init__.py": b"import pyspark\n",
    "xgboost/core.py": b"import scipy.sparse\n",
    "pkg-1.0.dist-info/METADATA": b"Name: pkg\n",
    "pkg-1.0.dist-info/licenses/LICENSE": b"MIT\n",
    "bin/pkg-cli": b"#!/usr/bin/python\n",
    "single_module.py": b"",
}
FAKE_KEPT_SOURCES = (
    "pkg/__init__.py",
    "pkg/core.py",
    "pkg/sub/mod.py",
    "pkg/testing/__init__.py",
    "xgboost/__init__.py",
    "xgboost/core.py",
    "single_module.py",
)
FAKE_KEPT_DATA = (
    "pkg/_ext.cpython-312-x86_64-linux-gnu.so",
    "pkg-1.0.dist-info/METADATA",
    "pkg-1.0.dist-info/licenses/LICENSE",
)
PYC_TAG = "cpython-" + LAMBDA_PYTHON_VERSION.replace(".", "")


def pyc_name(source: str) -> str:
    """Where Python looks for the byte code of ``source`` (PEP 3147)."""
    folder, _, name = source.rpartition("/")
    return f"{folder}/__pycache__/{name[:-3]}.{PYC_TAG}.pyc".lstrip("/")


FAKE_KEPT = sorted(
    "python/" + name
    for name in (*FAKE_KEPT_SOURCES, *FAKE_KEPT_DATA, *map(pyc_name, FAKE_KEPT_SOURCES))
)


@pytest.fixture
def requirements(tmp_path: Path) -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text("pkg==1.0\n")
    return path


# --- pins ----------------------------------------------------------------------------------------
def test_layer_pins_equal_constraints() -> None:
    layer, constraints = read_pins(REQUIREMENTS), read_pins(CONSTRAINTS)
    assert layer, "runtime/requirements.txt pins nothing"
    missing = sorted(set(layer) - set(constraints))
    assert not missing, f"layer pins missing from constraints.txt: {missing}"
    differing = {n: (v, constraints[n]) for n, v in layer.items() if constraints[n] != v}
    assert not differing, f"layer pin != constraints.txt pin (layer, constraints): {differing}"


def test_layer_leaves_boto3_to_the_lambda_runtime() -> None:
    assert not LAMBDA_RUNTIME_SDK & set(read_pins(REQUIREMENTS))


# --- pip command and cache key -------------------------------------------------------------------
@pytest.mark.parametrize(("architecture", "machine"), [("arm64", "aarch64"), ("x86_64", "x86_64")])
def test_pip_command_targets_the_lambda_platform(
    architecture: str, machine: str, tmp_path: Path
) -> None:
    command = pip_install_command(REQUIREMENTS, tmp_path / "python", architecture, "3.12")
    assert command[:4] == [sys.executable, "-m", "pip", "install"]
    platforms = [command[i + 1] for i, arg in enumerate(command) if arg == "--platform"]
    assert platforms == [
        f"manylinux2014_{machine}",
        f"manylinux_2_17_{machine}",
        f"manylinux_2_28_{machine}",
    ]
    for flag in ("--only-binary=:all:", "--no-compile", "--quiet"):
        assert flag in command
    assert command[command.index("--implementation") + 1] == "cp"
    assert command[command.index("--python-version") + 1] == "3.12"
    assert command[command.index("--target") + 1] == str(tmp_path / "python")
    assert command[command.index("-r") + 1] == str(REQUIREMENTS)


def test_cache_key_covers_requirements_architecture_and_python() -> None:
    base = layer_cache_key(b"a==1\n", "arm64", "3.12")
    assert base == layer_cache_key(b"a==1\n", "arm64", "3.12")
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    others = {
        layer_cache_key(b"a==2\n", "arm64", "3.12"),
        layer_cache_key(b"a==1\n", "x86_64", "3.12"),
        layer_cache_key(b"a==1\n", "arm64", "3.13"),
    }
    assert base not in others and len(others) == 3
    assert BUILDER_VERSION  # part of the key: bumping it invalidates every cached layer


# --- build with a stand-in for pip ---------------------------------------------------------------
def test_layer_is_stripped_and_zipped_under_python_prefix(
    requirements: Path, tmp_path: Path
) -> None:
    calls, runner = fake_pip(FAKE_TREE)
    build = build_layer(requirements, "x86_64", cache_dir=tmp_path / "cache", runner=runner)

    assert len(calls) == 1
    assert "--platform" in calls[0] and "manylinux_2_28_x86_64" in calls[0]
    # sorted, files only, python/ prefix; pip's byte code replaced by the runtime's own
    assert zip_names(build.zip_path) == FAKE_KEPT
    with zipfile.ZipFile(build.zip_path) as archive:
        assert build.unzipped_bytes == sum(info.file_size for info in archive.infolist())
    assert build.zipped_bytes == build.zip_path.stat().st_size
    assert (build.architecture, build.python_version) == ("x86_64", LAMBDA_PYTHON_VERSION)
    assert build.cache_key == layer_cache_key(requirements.read_bytes(), "x86_64", "3.12")
    assert build.zip_path.parent == (tmp_path / "cache" / build.cache_key).resolve()

    with zipfile.ZipFile(build.zip_path) as archive:
        for info in archive.infolist():
            assert info.date_time == ZIP_DATE_TIME
            assert info.compress_type == zipfile.ZIP_DEFLATED
            assert info.create_system == 3
            mode = (info.external_attr >> 16) & 0o7777
            assert mode == (0o755 if info.filename.endswith(".so") else 0o644), info.filename
        assert archive.read("python/pkg/core.py") == FAKE_TREE["pkg/core.py"]
        assert archive.testzip() is None


BYTECODE_CHECK = """
import json, sys
import pkg.core, single_module
print(json.dumps({
    "value": pkg.core.f(),
    "filename": pkg.core.f.__code__.co_filename,
    "cached": pkg.core.__spec__.cached,
}))
"""


def test_layer_byte_code_is_used_read_only_without_the_sources(
    requirements: Path, tmp_path: Path
) -> None:
    _, runner = fake_pip(FAKE_TREE)
    build = build_layer(requirements, "x86_64", cache_dir=tmp_path / "cache", runner=runner)
    opt = tmp_path / "opt"  # Lambda's /opt
    with zipfile.ZipFile(build.zip_path) as archive:
        archive.extractall(opt)
        pyc = archive.read("python/" + pyc_name("pkg/core.py"))
    assert int.from_bytes(pyc[4:8], "little") == 0b01  # PEP 552: hash-based, not checked
    # unchecked-hash: the interpreter takes the byte code and never compiles the source, so a
    # changed source does not matter (and the zip's fixed timestamps cannot invalidate it)
    (opt / "python" / "pkg" / "core.py").write_text("raise SystemExit('compiled from source')\n")
    for path in (opt, *opt.rglob("*")):
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = sorted(opt.rglob("*"))
    try:
        result = subprocess.run(
            [lambda_python(), "-S", "-c", BYTECODE_CHECK],
            env={"PYTHONPATH": str(opt / "python"), "PYTHONDONTWRITEBYTECODE": "1"},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        for path in (opt, *opt.rglob("*")):
            path.chmod(0o755)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["value"] == 2
    # tracebacks name the file where it is (the source is shipped to show the line)
    assert outcome["filename"] == str(opt / "python" / "pkg" / "core.py")
    assert outcome["cached"].endswith("pkg/__pycache__/core." + PYC_TAG + ".pyc")
    assert sorted(opt.rglob("*")) == before


def test_layer_byte_code_of_another_interpreter_is_refused(
    requirements: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = "3.11" if LAMBDA_PYTHON_VERSION != "3.11" else "3.13"
    impostor = tmp_path / "python"
    impostor.write_text(f"#!/bin/sh\necho {other}\n")
    impostor.chmod(0o755)
    monkeypatch.setenv(ENV_LAMBDA_PYTHON, str(impostor))
    _, runner = fake_pip(FAKE_TREE)
    with pytest.raises(PackagingError) as caught:
        build_layer(requirements, "arm64", cache_dir=tmp_path / "cache", runner=runner)
    assert str(caught.value) == (
        f"{ENV_LAMBDA_PYTHON}={impostor} is Python {other}; it must be a Python "
        f"{LAMBDA_PYTHON_VERSION} interpreter (the Lambda runtime is python"
        f"{LAMBDA_PYTHON_VERSION}), or unset to look for one"
    )
    assert [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")] == []


def test_byte_code_is_compiled_by_the_interpreter_a_version_shim_selects(
    requirements: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shim (pyenv's, asdf's) picks the interpreter from the environment; the compiler runs
    in the same environment the interpreter was found in, minus Python's own variables."""
    shim = tmp_path / "shim" / f"python{LAMBDA_PYTHON_VERSION}"
    shim.parent.mkdir()
    shim.write_text('#!/bin/sh\n[ -n "$SHIM_TARGET" ] || exit 127\nexec "$SHIM_TARGET" "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("SHIM_TARGET", lambda_python())
    monkeypatch.setenv(ENV_LAMBDA_PYTHON, str(shim))
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(tmp_path / "elsewhere"))  # must not apply
    _, runner = fake_pip(FAKE_TREE)
    build = build_layer(requirements, "x86_64", cache_dir=tmp_path / "cache", runner=runner)
    assert zip_names(build.zip_path) == FAKE_KEPT
    assert not (tmp_path / "elsewhere").exists()


def test_missing_runtime_interpreter_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(ENV_LAMBDA_PYTHON, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    assert find_python("3.99") is None
    with pytest.raises(PackagingError) as caught:
        lambda_python("3.99")
    message = str(caught.value)
    assert "the Lambda runtime is python3.99" in message
    assert "Install Python 3.99" in message and ENV_LAMBDA_PYTHON in message
    assert "mlserve:lambdaRuntime" in message  # or deploy to another runtime


def test_the_deploying_interpreter_compiles_when_it_is_the_runtime_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV_LAMBDA_PYTHON, raising=False)
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert lambda_python(running) == sys.executable
    monkeypatch.setenv(ENV_LAMBDA_PYTHON, sys.executable)
    assert lambda_python(running) == sys.executable


def test_layer_zip_is_byte_identical_across_builds(requirements: Path, tmp_path: Path) -> None:
    _, runner = fake_pip(FAKE_TREE)

    def other_machine(command: Sequence[str]) -> None:
        """Same files, written in reverse order, with other mtimes and another umask."""
        _, write = fake_pip(dict(reversed(FAKE_TREE.items())))
        write(command)
        target = Path(command[command.index("--target") + 1])
        for path in target.rglob("*"):
            if path.is_file():
                path.chmod(0o600)
                os.utime(path, (1_700_000_000, 1_700_000_000))

    first = build_layer(requirements, "arm64", cache_dir=tmp_path / "one", runner=runner)
    second = build_layer(requirements, "arm64", cache_dir=tmp_path / "two", runner=other_machine)
    assert first.zip_path != second.zip_path
    assert first.zip_path.read_bytes() == second.zip_path.read_bytes()
    assert first.sha256 == second.sha256


def test_cached_layer_is_reused_without_running_pip(requirements: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    calls, runner = fake_pip(FAKE_TREE)
    first = build_layer(requirements, "arm64", cache_dir=cache, runner=runner)
    content = first.zip_path.read_bytes()
    mtime = first.zip_path.stat().st_mtime_ns

    again = build_layer(requirements, "arm64", cache_dir=cache, runner=refuse_pip)

    assert again == first
    assert again.zip_path.read_bytes() == content
    assert again.zip_path.stat().st_mtime_ns == mtime
    assert len(calls) == 1
    # a different architecture or requirement is a different cache entry
    build_layer(requirements, "x86_64", cache_dir=cache, runner=runner)
    requirements.write_text("pkg==1.1\n")
    build_layer(requirements, "arm64", cache_dir=cache, runner=runner)
    assert len(calls) == 3
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 3


def test_crashed_build_leaves_no_cache_entry(requirements: Path, tmp_path: Path) -> None:
    def crashing_pip(command: Sequence[str]) -> None:
        target = Path(command[command.index("--target") + 1])
        (target / "pkg").mkdir(parents=True)
        (target / "pkg" / "__init__.py").write_text("half")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of pip

    with pytest.raises(KeyboardInterrupt):
        build_layer(requirements, "arm64", cache_dir=tmp_path / "cache", runner=crashing_pip)
    assert list((tmp_path / "cache").iterdir()) == []

    calls, runner = fake_pip(FAKE_TREE)
    build = build_layer(requirements, "arm64", cache_dir=tmp_path / "cache", runner=runner)
    assert len(calls) == 1
    assert zip_names(build.zip_path) == FAKE_KEPT


def test_damaged_cache_entry_is_rebuilt(requirements: Path, tmp_path: Path) -> None:
    calls, runner = fake_pip(FAKE_TREE)
    first = build_layer(requirements, "arm64", cache_dir=tmp_path, runner=runner)
    first.zip_path.write_bytes(b"truncated")
    again = build_layer(requirements, "arm64", cache_dir=tmp_path, runner=runner)
    assert len(calls) == 2
    assert again.zipped_bytes == again.zip_path.stat().st_size == first.zipped_bytes


def test_pip_failure_is_a_packaging_error(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy @@ not-a-url ((\n")  # pip rejects it before any download
    with pytest.raises(PackagingError) as caught:
        build_layer(requirements, "arm64", cache_dir=tmp_path / "cache")
    message = str(caught.value)
    assert message.startswith(f"{requirements} (arm64, python3.12): pip could not install")
    assert "Invalid requirement" in message
    assert [p for p in (tmp_path / "cache").iterdir()] == []


def test_requirements_including_other_files_are_refused(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("-r other.txt\nnumpy==2.4.6\n")
    with pytest.raises(PackagingError, match="keyed by this file's content"):
        build_layer(requirements, "arm64", cache_dir=tmp_path, runner=refuse_pip)


@pytest.mark.parametrize(
    ("architecture", "python_version", "message"),
    [("amd64", "3.12", "architecture must be one of"), ("arm64", "312", "python_version")],
)
def test_bad_build_parameters_are_refused(
    requirements: Path, tmp_path: Path, architecture: Any, python_version: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_layer(requirements, architecture, python_version, tmp_path, runner=refuse_pip)


# --- function archive ----------------------------------------------------------------------------
def test_function_archive_holds_the_runtime_package_compiled(tmp_path: Path) -> None:
    archive = build_function_archive(REPO, tmp_path / "one", cache_dir=tmp_path / "cache")
    names = zip_names(archive.zip_path)

    sources = [
        path.relative_to(REPO).as_posix()
        for path in (REPO / "runtime").rglob("*.py")
        if not {"__pycache__", "tests", "test"} & set(path.relative_to(REPO).parts)
    ]
    assert names == sorted([*sources, *map(pyc_name, sources), "runtime/openapi.yaml"])
    assert "runtime/__init__.py" in names and "runtime/contract.py" in names
    with zipfile.ZipFile(archive.zip_path) as zipped:
        assert archive.unzipped_bytes == sum(info.file_size for info in zipped.infolist())
        for source in sources:
            assert zipped.read(source) == (REPO / source).read_bytes()
    assert archive.zipped_bytes == archive.zip_path.stat().st_size

    # the same runtime is the cached archive: no compiler needed, the same bytes
    again = build_function_archive(
        REPO, tmp_path / "two", cache_dir=tmp_path / "cache", python="/nonexistent/python"
    )
    assert again.zip_path.read_bytes() == archive.zip_path.read_bytes()
    assert again.sha256 == archive.sha256
    # and it is reproducible: compiled again elsewhere, the same bytes
    fresh = build_function_archive(REPO, tmp_path / "three", cache_dir=tmp_path / "other")
    assert fresh.zip_path.read_bytes() == archive.zip_path.read_bytes()


def test_function_archive_skips_local_bytecode_and_tests(tmp_path: Path) -> None:
    root = tmp_path / "src"
    (root / "runtime" / "__pycache__").mkdir(parents=True)
    (root / "runtime" / "tests").mkdir()
    (root / "runtime" / "__init__.py").write_text("")
    (root / "runtime" / "handler.py").write_text("x = 1\n")
    (root / "runtime" / "openapi.yaml").write_text("openapi: 3.0.3\n")
    (root / "runtime" / "notes.md").write_text("not shipped")
    (root / "runtime" / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"\0")
    (root / "runtime" / "tests" / "test_handler.py").write_text("")
    (root / "other.py").write_text("")
    archive = build_function_archive(root, tmp_path / "out", cache_dir=tmp_path / "cache")
    assert zip_names(archive.zip_path) == [
        "runtime/__init__.py",
        pyc_name("runtime/__init__.py"),
        pyc_name("runtime/handler.py"),
        "runtime/handler.py",
        "runtime/openapi.yaml",
    ]
    # a changed runtime is compiled again
    (root / "runtime" / "handler.py").write_text("x = 2\n")
    changed = build_function_archive(root, tmp_path / "out", cache_dir=tmp_path / "cache")
    assert changed.sha256 != archive.sha256


def test_function_archive_needs_the_runtime_package(tmp_path: Path) -> None:
    with pytest.raises(PackagingError, match="not a Python package"):
        build_function_archive(tmp_path, tmp_path / "out")


# --- size guard ----------------------------------------------------------------------------------
def synthetic(layer_bytes: int, function_bytes: int) -> tuple[LayerBuild, FunctionArchive]:
    layer = LayerBuild(Path("layer.zip"), layer_bytes, 1, "arm64", "3.12", "k", "s")
    return layer, FunctionArchive(Path("function.zip"), function_bytes, 1, "s")


def test_human_mb() -> None:
    assert human_mb(LAMBDA_UNZIPPED_LIMIT_BYTES) == "250.0 MB"
    assert human_mb(int(180.25 * MIB)) == "180.2 MB"
    assert human_mb(0) == "0.0 MB"


def test_check_size_accepts_a_package_at_the_limit() -> None:
    check_size(*synthetic(LAMBDA_UNZIPPED_LIMIT_BYTES - 100, 100))


def test_check_size_names_measured_sizes_total_and_limit() -> None:
    layer, function = synthetic(int(240.5 * MIB), int(10.0 * MIB))
    with pytest.raises(PackagingError) as caught:
        check_size(layer, function)
    assert str(caught.value) == (
        "Lambda package too large: layer 240.5 MB + function 10.0 MB = 250.5 MB unzipped, "
        "over Lambda's 250.0 MB limit (arm64, python3.12). "
        "Trim the layer's requirements (runtime/requirements*.txt) or use "
        "lambdaPackaging=image."
    )


# --- component arguments -------------------------------------------------------------------------
def test_layer_name_is_valid_and_bounded() -> None:
    assert layer_name("dev", "predictor-package") == "mlserve-dev-predictor-package"
    long = layer_name("organisation/a-very-long-stack-name-for-testing", "x" * 60)
    assert len(long) == 64
    assert re.fullmatch(r"[A-Za-z0-9_-]+", long)
    assert long != layer_name("organisation/a-very-long-stack-name-for-testing", "x" * 61)


def test_package_args_accept_valid_input() -> None:
    args = LambdaPackageArgs("arm64", str(REQUIREMENTS), str(REPO))  # type: ignore[arg-type]
    assert args.requirements_file == REQUIREMENTS and args.source_root == REPO
    assert (args.runtime, args.python_version) == (LAMBDA_RUNTIME, LAMBDA_PYTHON_VERSION)
    other = LambdaPackageArgs("arm64", REQUIREMENTS, REPO, runtime="python3.14")
    assert other.python_version == "3.14"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"architecture": "amd64"}, "architecture"),
        ({"requirements_file": Path("/nonexistent/requirements.txt")}, "requirements_file"),
        ({"source_root": Path("/")}, "source_root"),
        ({"runtime": "3.12"}, "runtime"),
        ({"runtime": "python3.11"}, "runtime"),  # Amazon Linux 2: the layer cannot run there
    ],
)
def test_package_args_name_the_bad_field(overrides: dict[str, Any], field: str) -> None:
    values: dict[str, Any] = {
        "architecture": "arm64",
        "requirements_file": REQUIREMENTS,
        "source_root": REPO,
    }
    with pytest.raises(ValueError, match=rf"LambdaPackageArgs\.{field}"):
        LambdaPackageArgs(**(values | overrides))


# --- the real layers (pip, both architectures) ---------------------------------------------------
@dataclass(frozen=True)
class RealBuild:
    layer: LayerBuild
    seconds: float


@pytest.fixture(scope="session")
def real_layers() -> dict[str, RealBuild]:
    """Both real layers, built once per session into the shared repository cache."""
    builds: dict[str, RealBuild] = {}
    for architecture in ARCHITECTURES:
        started = time.perf_counter()
        layer = build_layer(REQUIREMENTS, architecture)  # type: ignore[arg-type]
        builds[architecture] = RealBuild(layer, time.perf_counter() - started)
    return builds


@pytest.fixture(scope="session")
def real_function(tmp_path_factory: pytest.TempPathFactory) -> FunctionArchive:
    return build_function_archive(REPO, tmp_path_factory.mktemp("function"))


@pytest.fixture(scope="session")
def cold_builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RealBuild]:
    """Both real layers built again from scratch in an empty cache (determinism, timing)."""
    builds: dict[str, RealBuild] = {}
    for architecture in ARCHITECTURES:
        cache = tmp_path_factory.mktemp(f"layers-{architecture}")
        started = time.perf_counter()
        layer = build_layer(REQUIREMENTS, architecture, cache_dir=cache)  # type: ignore[arg-type]
        builds[architecture] = RealBuild(layer, time.perf_counter() - started)
    return builds


slow = pytest.mark.slow
parametrize_arch = pytest.mark.parametrize("architecture", ARCHITECTURES)


@slow
def test_real_layers_fit_lambda_and_sizes_are_recorded(
    real_layers: dict[str, RealBuild],
    cold_builds: dict[str, RealBuild],
    real_function: FunctionArchive,
    capsys: pytest.CaptureFixture[str],
) -> None:
    report: dict[str, Any] = {
        "python_version": LAMBDA_PYTHON_VERSION,
        "limit_unzipped_bytes": LAMBDA_UNZIPPED_LIMIT_BYTES,
        "direct_upload_limit_zipped_bytes": LAMBDA_DIRECT_UPLOAD_LIMIT_BYTES,
        "function": {
            "unzipped_bytes": real_function.unzipped_bytes,
            "zipped_bytes": real_function.zipped_bytes,
        },
        "architectures": {},
    }
    lines = []
    for architecture, build in real_layers.items():
        layer = build.layer
        total = layer.unzipped_bytes + real_function.unzipped_bytes
        check_size(layer, real_function)  # raises when over the limit
        assert total < LAMBDA_UNZIPPED_LIMIT_BYTES
        report["architectures"][architecture] = {
            "layer_unzipped_bytes": layer.unzipped_bytes,
            "layer_zipped_bytes": layer.zipped_bytes,
            "total_unzipped_bytes": total,
            "total_unzipped_mb": round(total / MIB, 1),
            "headroom_mb": round((LAMBDA_UNZIPPED_LIMIT_BYTES - total) / MIB, 1),
            "cold_build_seconds": round(cold_builds[architecture].seconds, 1),
            "session_build_seconds": round(build.seconds, 4),
            "cache_key": layer.cache_key,
        }
        lines.append(
            f"{architecture:>7}: layer {human_mb(layer.unzipped_bytes)} + function "
            f"{human_mb(real_function.unzipped_bytes)} = {human_mb(total)} unzipped "
            f"(limit {human_mb(LAMBDA_UNZIPPED_LIMIT_BYTES)}); zipped layer "
            f"{human_mb(layer.zipped_bytes)}, function {human_mb(real_function.zipped_bytes)}; "
            f"cold build {cold_builds[architecture].seconds:.1f} s "
            f"[bytes: layer {layer.unzipped_bytes} / {layer.zipped_bytes} zipped, function "
            f"{real_function.unzipped_bytes} / {real_function.zipped_bytes} zipped]"
        )
    SIZES_JSON.parent.mkdir(parents=True, exist_ok=True)
    SIZES_JSON.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    with capsys.disabled():
        print("\nLambda package sizes (" + str(SIZES_JSON.relative_to(REPO)) + "):")
        print("\n".join(lines))


@slow
@parametrize_arch
def test_real_layer_contents(architecture: str, real_layers: dict[str, RealBuild]) -> None:
    names = zip_names(real_layers[architecture].layer.zip_path)
    assert names == sorted(names)
    assert all(name.startswith("python/") for name in names)
    for package in ("xgboost", "numpy", "scipy", "aws_lambda_powertools"):
        assert any(name.startswith(f"python/{package}/") for name in names), package
    assert "python/numpy/testing/__init__.py" in names  # scipy imports numpy.testing
    assert "python/scipy/sparse/__init__.py" in names
    # boto3 is imported once, from the Lambda runtime: the layer carries no copy to shadow it
    assert not [n for n in names if n.split("/")[1] in LAMBDA_RUNTIME_SDK], LAMBDA_RUNTIME_SDK
    for name in names:
        parts = name.split("/")
        assert not {"tests", "test"} & set(parts), name
        assert not name.startswith(
            ("python/bin/", "python/xgboost/testing/", "python/xgboost/dask/")
        ), name
        assert name not in ("python/xgboost/sklearn.py", "python/xgboost/plotting.py"), name
        assert not name.endswith(".pyi"), name
    # byte code of the runtime's version for every module (unchecked-hash, checked where it is
    # imported: test_x86_64_layer_imports_and_predicts_on_python312), and nothing else
    sources = [name for name in names if name.endswith(".py")]
    compiled = [name for name in names if name.endswith(".pyc")]
    assert sorted(compiled) == sorted(pyc_name(name) for name in sources)
    assert any(re.match(r"python/numpy-[^/]+\.dist-info/", name) for name in names)


@slow
@parametrize_arch
def test_real_layer_installs_exactly_the_pins(
    architecture: str, real_layers: dict[str, RealBuild]
) -> None:
    installed = {
        normalise(match.group(1)): match.group(2)
        for name in zip_names(real_layers[architecture].layer.zip_path)
        if (match := re.fullmatch(r"python/([^/]+)-([^/-]+)\.dist-info/METADATA", name))
    }
    assert installed == read_pins(REQUIREMENTS)


@slow
@parametrize_arch
def test_real_layer_binaries_are_for_the_lambda_machine(
    architecture: str, real_layers: dict[str, RealBuild]
) -> None:
    with zipfile.ZipFile(real_layers[architecture].layer.zip_path) as archive:
        with archive.open("python/xgboost/lib/libxgboost.so") as library:
            assert elf_machine(library.read(64)) == ELF_MACHINE[architecture]
        shared = [n for n in archive.namelist() if n.endswith(".so") or ".so." in n]
        assert len(shared) > 50
        wrong = []
        for name in shared:
            with archive.open(name) as handle:
                if elf_machine(handle.read(64)) != ELF_MACHINE[architecture]:
                    wrong.append(name)
    assert not wrong, f"shared objects for another machine: {wrong[:5]}"


@slow
@parametrize_arch
def test_real_layer_is_deterministic_and_cached(
    architecture: str, real_layers: dict[str, RealBuild], cold_builds: dict[str, RealBuild]
) -> None:
    shared, cold = real_layers[architecture].layer, cold_builds[architecture].layer
    # two independent pip runs give the same bytes
    assert cold.zip_path != shared.zip_path
    assert cold.zip_path.read_bytes() == shared.zip_path.read_bytes()
    assert (cold.sha256, cold.unzipped_bytes) == (shared.sha256, shared.unzipped_bytes)
    # and the second build of a key is the cached one: pip does not run
    again = build_layer(
        REQUIREMENTS,
        architecture,  # type: ignore[arg-type]
        cache_dir=cold.zip_path.parent.parent,
        runner=refuse_pip,
    )
    assert again == cold


@slow
@parametrize_arch
def test_real_package_over_a_small_limit_reports_measured_sizes(
    architecture: str, real_layers: dict[str, RealBuild], real_function: FunctionArchive
) -> None:
    layer = real_layers[architecture].layer
    with pytest.raises(PackagingError) as caught:
        check_size(layer, real_function, limit=100 * MIB)
    message = str(caught.value)
    total = layer.unzipped_bytes + real_function.unzipped_bytes
    for part in (
        f"layer {human_mb(layer.unzipped_bytes)}",
        f"function {human_mb(real_function.unzipped_bytes)}",
        f"= {human_mb(total)} unzipped",
        "over Lambda's 100.0 MB limit",
        f"({architecture}, python{LAMBDA_PYTHON_VERSION})",
    ):
        assert part in message


IMPORT_CHECK = """
import json, os, sys
layer = os.environ["LAYER_DIR"]
import numpy as np
import scipy.sparse
import xgboost
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.metrics import MetricUnit
import runtime.contract

rng = np.random.default_rng(0)
X = rng.random((64, 4))
y = (X[:, 0] > 0.5).astype(float)
booster = xgboost.train({"objective": "binary:logistic"}, xgboost.DMatrix(X, label=y), 5)
raw = booster.save_raw("ubj")
loaded = xgboost.Booster()
loaded.load_model(bytearray(raw))
predictions = loaded.inplace_predict(X[:4])
ours = [
    (name, module) for name, module in list(sys.modules.items())
    if name.split(".")[0] in {"numpy", "scipy", "xgboost", "aws_lambda_powertools", "runtime"}
    and getattr(module, "__file__", None)
]
outside = sorted(
    name for name, module in ours
    if name.split(".")[0] != "runtime" and not module.__file__.startswith(layer)
)
# every module imported from Python source has its shipped byte code next to it
uncompiled = sorted(
    name for name, module in ours
    if module.__file__.endswith(".py") and not os.path.exists(module.__spec__.cached)
)
print(json.dumps({
    "unused": sorted({"xgboost.sklearn", "xgboost.plotting", "scipy.special"} & set(sys.modules)),
    "xgboost": xgboost.__version__, "numpy": np.__version__,
    "predictions": predictions.tolist(), "outside": outside, "uncompiled": uncompiled,
    "modules": len(ours), "contract": runtime.contract.__file__,
}))
"""


@slow
def test_x86_64_layer_imports_and_predicts_on_python312(
    real_layers: dict[str, RealBuild], real_function: FunctionArchive, tmp_path: Path
) -> None:
    if os.uname().machine != "x86_64":
        pytest.skip(f"the x86_64 layer cannot run on this {os.uname().machine} machine")
    python = lambda_python()  # the builder needed it too
    opt, task = tmp_path / "opt", tmp_path / "task"  # Lambda's /opt and /var/task
    with zipfile.ZipFile(real_layers["x86_64"].layer.zip_path) as archive:
        archive.extractall(opt)
    with zipfile.ZipFile(real_function.zip_path) as archive:
        archive.extractall(task)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": f"{task}{os.pathsep}{opt / 'python'}",
        "PYTHONDONTWRITEBYTECODE": "1",  # as on Lambda's read-only /opt and /var/task
        "LAYER_DIR": str(opt / "python"),
        "POWERTOOLS_SERVICE_NAME": "mlserve-test",
        "POWERTOOLS_METRICS_NAMESPACE": "mlserve-test",
    }
    files_before = sum(1 for _ in tmp_path.rglob("*"))
    # -S: no site-packages of that interpreter, only the layer and the function code
    result = subprocess.run(
        [python, "-S", "-c", IMPORT_CHECK],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["outside"] == []
    assert outcome["modules"] > 100 and outcome["uncompiled"] == []
    # xgboost without its scikit-learn wrapper (and the scipy.special it imports) still trains,
    # loads and predicts: the runtime uses the Booster only
    assert outcome["unused"] == []
    assert sum(1 for _ in tmp_path.rglob("*")) == files_before  # nothing compiled, nothing written
    assert outcome["xgboost"] == read_pins(REQUIREMENTS)["xgboost-cpu"]
    assert outcome["numpy"] == read_pins(REQUIREMENTS)["numpy"]
    assert outcome["contract"].startswith(str(task))
    assert len(outcome["predictions"]) == 4
    assert all(0.0 <= p <= 1.0 for p in outcome["predictions"])


# --- the Pulumi component (mocks) ----------------------------------------------------------------
class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        self.resources.append(args)
        outputs = dict(args.inputs)
        if args.typ == "aws:lambda/layerVersion:LayerVersion":
            outputs["arn"] = (
                f"arn:aws:lambda:eu-west-1:123456789012:layer:{args.inputs['layerName']}:1"
            )
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list[tuple[str, str]] | None]:
        return {}, None


@pytest.fixture
def mocks() -> Iterator[RecordingMocks]:
    recording = RecordingMocks()
    pulumi.runtime.set_mocks(recording, project="mlserve", stack="unit", preview=False)
    yield recording


def by_type(mocks: RecordingMocks, typ: str) -> list[pulumi.runtime.MockResourceArgs]:
    return [r for r in mocks.resources if r.typ == typ]


@slow
@pulumi.runtime.test
def test_component_publishes_the_layer_and_exposes_the_code(mocks: RecordingMocks) -> Any:
    # the onnx engine's layer: under the 50 MB a zip may have when published directly
    requirements = LAYER_REQUIREMENTS[ENGINE_ONNX]
    built = build_layer(requirements, "arm64")  # the shared cache (the bench builds it too)
    assert built.zipped_bytes <= LAMBDA_DIRECT_UPLOAD_LIMIT_BYTES
    package = LambdaPackage("predictor-package", LambdaPackageArgs("arm64", requirements, REPO))
    assert package.layer_build == built  # the shared cache, no rebuild
    assert isinstance(package.code, pulumi.FileArchive)
    assert package.code.path == str(package.function_archive.zip_path)

    def check(values: list[Any]) -> None:
        arn, layer_urn = values
        (layer,) = by_type(mocks, "aws:lambda/layerVersion:LayerVersion")
        assert layer.name == "predictor-package-layer"
        assert "mlserve:index:LambdaPackage$aws:lambda/layerVersion:LayerVersion" in layer_urn
        inputs = layer.inputs
        assert inputs["layerName"] == "mlserve-unit-predictor-package"
        assert inputs["compatibleRuntimes"] == [LAMBDA_RUNTIME]
        assert inputs["compatibleArchitectures"] == ["arm64"]
        assert isinstance(inputs["code"], pulumi.FileArchive)
        assert inputs["code"].path == str(built.zip_path)
        assert len(inputs["description"]) <= 256
        assert arn.endswith(":layer:mlserve-unit-predictor-package:1")
        assert by_type(mocks, "aws:s3/bucketObjectv2:BucketObjectv2") == []

    return pulumi.Output.all(package.layer_arn, package.layer.urn).apply(check)


@slow
def test_component_without_a_bucket_refuses_a_layer_over_the_direct_upload_limit(
    mocks: RecordingMocks, real_layers: dict[str, RealBuild]
) -> None:
    build = real_layers["arm64"].layer  # the xgboost engine's layer, byte code included
    assert build.zipped_bytes > LAMBDA_DIRECT_UPLOAD_LIMIT_BYTES
    with pytest.raises(PackagingError) as caught:
        LambdaPackage("pkg", LambdaPackageArgs("arm64", REQUIREMENTS, REPO))
    assert str(caught.value).startswith(
        f"Lambda layer zip is {human_mb(build.zipped_bytes)}, over Lambda's 50.0 MB "
        "direct-upload limit (arm64)"
    )


@slow
@pulumi.runtime.test
def test_component_uploads_the_layer_through_s3_when_given_a_bucket(
    mocks: RecordingMocks, real_layers: dict[str, RealBuild]
) -> Any:
    package = LambdaPackage(
        "pkg",
        LambdaPackageArgs("x86_64", REQUIREMENTS, REPO, artifact_bucket="model-bucket"),
    )
    build = real_layers["x86_64"].layer

    def check(_: Any) -> None:
        (obj,) = by_type(mocks, "aws:s3/bucketObjectv2:BucketObjectv2")
        (layer,) = by_type(mocks, "aws:lambda/layerVersion:LayerVersion")
        assert obj.name == "pkg-layer-object"
        assert obj.inputs["bucket"] == "model-bucket"
        assert obj.inputs["key"] == f"artifacts/lambda-layers/x86_64/{build.sha256}.zip"
        assert obj.inputs["source"].path == str(build.zip_path)
        assert layer.inputs["s3Bucket"] == "model-bucket"
        assert layer.inputs["s3Key"] == obj.inputs["key"]
        assert "code" not in layer.inputs
        assert layer.inputs["compatibleArchitectures"] == ["x86_64"]

    return package.layer_arn.apply(check)


@slow
def test_a_layer_for_another_runtime_carries_its_wheels_and_byte_code() -> None:
    """mlserve:lambdaRuntime picks the wheels (pip --python-version: the cp3X ABI) and the
    byte code's version; python3.13 here, whatever this interpreter is."""
    if find_python("3.13") is None and os.environ.get(ENV_LAMBDA_PYTHON) is None:
        pytest.skip("no Python 3.13 here to compile the byte code with")
    build = build_layer(REQUIREMENTS, "x86_64", "3.13")
    names = zip_names(build.zip_path)
    extensions = [n for n in names if n.endswith(".so") and ".cpython-" in n]
    assert extensions and all(".cpython-313-" in n for n in extensions)
    compiled = [n for n in names if n.endswith(".pyc")]
    assert compiled and all(n.endswith(".cpython-313.pyc") for n in compiled)
