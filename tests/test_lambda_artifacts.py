"""The bench's stand-in for Lambda's file system (benchmarks/lambda_artifacts.py): what a cold start
from the built archives runs must be the archives as Lambda mounts them, read-only and fresh."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from benchmarks.coldstart import _importtime_by_package
from benchmarks.lambda_artifacts import lambda_cpu_share, lambda_env, unpacked

LAYER = {
    "python/pkg/__init__.py": b"X = 1\n",
    "python/pkg/__pycache__/__init__.cpython-312.pyc": b"\x00" * 16,
}
FUNCTION = {
    "runtime/__init__.py": b"",
    "runtime/__pycache__/__init__.cpython-312.pyc": b"\x00" * 16,
}


def make_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return path


@pytest.fixture
def zips(tmp_path: Path) -> tuple[Path, Path]:
    return make_zip(tmp_path / "layer.zip", LAYER), make_zip(tmp_path / "function.zip", FUNCTION)


def files(tree: Path) -> list[str]:
    return sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file())


def test_each_run_gets_a_fresh_read_only_copy_removed_afterwards(
    zips: tuple[Path, Path], tmp_path: Path
) -> None:
    with unpacked(*zips, tmp_path) as first:
        assert files(first.opt) == sorted(LAYER)
        assert files(first.task) == sorted(FUNCTION)
        assert first.pyc_files == 2
        for path in (first.opt, *first.opt.rglob("*"), first.task, *first.task.rglob("*")):
            assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), path
        assert os.access(first.tmp, os.W_OK)  # Lambda's /tmp stays writable
    with unpacked(*zips, tmp_path) as second:
        assert second.root != first.root
    assert not first.root.exists() and not second.root.exists()


def test_the_archives_as_built_before_have_no_byte_code(
    zips: tuple[Path, Path], tmp_path: Path
) -> None:
    with unpacked(*zips, tmp_path, bytecode=False) as run:
        assert files(run.opt) == ["python/pkg/__init__.py"]
        assert files(run.task) == ["runtime/__init__.py"]
        assert run.pyc_files == 0


def test_a_run_that_writes_byte_code_is_refused(zips: tuple[Path, Path], tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match=r"wrote byte code .*0 -> 1 \.pyc"),
        unpacked(*zips, tmp_path, bytecode=False) as run,
    ):
        cache = run.opt / "python" / "pkg" / "__pycache__"
        cache.parent.chmod(0o755)  # what a root process could do despite the modes
        cache.mkdir()
        (cache / "__init__.cpython-312.pyc").write_bytes(b"\x00")
    assert [p for p in tmp_path.iterdir() if p.name.startswith("lambda-")] == []


def test_the_child_sees_lambdas_paths_and_variables(
    zips: tuple[Path, Path], tmp_path: Path
) -> None:
    sdk = tmp_path / "sdk"
    with unpacked(*zips, tmp_path) as run:
        env = lambda_env(run, sdk, memory_mb=1024, function_env={"MODEL_URI": "s3://b/k"})
    assert env["PYTHONPATH"].split(os.pathsep) == [
        str(run.task),
        str(run.opt / "python" / "lib" / "python3.12" / "site-packages"),
        str(run.opt / "python"),
        str(sdk),
    ]
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["LAMBDA_TASK_ROOT"] == str(run.task)
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "1024"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert env["MODEL_URI"] == "s3://b/k"
    assert not {"VIRTUAL_ENV", "PYTHONHOME"} & set(env)  # nothing of this shell's Python


def test_lambdas_cpu_share_follows_memory() -> None:
    assert lambda_cpu_share(1769) == 1.0
    assert lambda_cpu_share(1024) == pytest.approx(0.579, abs=1e-3)


def test_importtime_is_summed_by_package_and_the_rest_is_the_standard_library(
    tmp_path: Path,
) -> None:
    layer, task = tmp_path / "python", tmp_path / "task"
    (layer / "numpy").mkdir(parents=True)
    (task / "runtime").mkdir(parents=True)
    (layer / "typing_extensions.py").write_text("")
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:      1500 |       1500 |   encodings",
            "import time:      2000 |       2000 |     numpy._core",
            "import time:       500 |       2500 |   numpy",
            "import time:       250 |        250 | typing_extensions",
            "import time:      1000 |       4000 | runtime.model",
            "some other line",
        ]
    )
    assert _importtime_by_package(stderr, (layer, task)) == {
        "numpy": 2.5,
        "stdlib": 1.5,
        "runtime": 1.0,
        "typing_extensions": 0.25,
    }
