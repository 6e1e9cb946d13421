"""Run Python the way Lambda runs the function: from the built archives, read-only.

Lambda unpacks the layer under ``/opt`` and the function code under ``/var/task``, both
read-only, and starts the runtime's interpreter with them on ``sys.path``. Nothing Python
compiles there can be written back, so a module without shipped byte code is compiled from source
at every cold start. :func:`unpacked` reproduces that for one run: the real layer and function
zips (components/packaging.py) unzipped into a fresh directory, made read-only, and
:func:`lambda_env` gives the child Lambda's environment (``LAMBDA_TASK_ROOT``,
``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``, ``PYTHONPATH`` in Lambda's order, ...) with
``PYTHONDONTWRITEBYTECODE=1``: the directory is this run's alone and the check after the run
proves nothing was written into it.

boto3 is not in the layer: the Lambda runtime provides it (``/var/runtime``). :func:`runtime_sdk`
stands in for it with the boto3 pinned in constraints.txt, compiled as a pip-installed package is.

:class:`CpuShare` runs children under the CPU share Lambda gives a function of a configured
memory (one vCPU at 1,769 MB, proportionally less below) with a cgroup CPU quota: cgroup v2
``cpu.max`` where the cpu controller is available, else cgroup v1 ``cpu.cfs_quota_us``; where
neither can be written, it says why and the rows are skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from components.packaging import (
    DEFAULT_PYTHON_VERSION,
    LAYER_MOUNT,
    compile_bytecode,
    default_cache_root,
    lambda_python,
)

ROOT = Path(__file__).resolve().parents[1]
# The Lambda runtime's own packages: boto3 and what it needs (jmespath is in the layer too).
RUNTIME_SDK_PACKAGES = (
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "python-dateutil",
    "six",
    "urllib3",
)
RUNTIME_SDK_MOUNT = "/var/runtime"
FULL_VCPU_MEMORY_MB = 1769  # Lambda: one vCPU's worth of CPU at 1,769 MB of memory
CGROUP_PERIOD_US = 100_000


@dataclass(frozen=True)
class Unpacked:
    """One run's fresh copy of what Lambda mounts."""

    root: Path
    opt: Path  # the layer (Lambda's /opt)
    task: Path  # the function code (Lambda's /var/task)
    tmp: Path  # Lambda's writable /tmp
    pyc_files: int  # byte-code files unpacked: the same number must be there after the run

    def pythonpath(self, sdk: Path, python_version: str = DEFAULT_PYTHON_VERSION) -> str:
        """sys.path as Lambda's python runtime orders it: code, layer, then the runtime's SDK."""
        layer = self.opt / LAYER_MOUNT.removeprefix("/opt/")
        site = self.opt / "python" / "lib" / f"python{python_version}" / "site-packages"
        return os.pathsep.join(map(str, (self.task, site, layer, sdk)))


def _count_pyc(*trees: Path) -> int:
    return sum(1 for tree in trees for path in tree.rglob("*.pyc"))


def _set_writable(tree: Path, writable: bool) -> None:
    for dirpath, _, filenames in os.walk(tree):
        Path(dirpath).chmod(0o755 if writable else 0o555)
        if not writable:
            for name in filenames:
                path = Path(dirpath) / name
                path.chmod(path.stat().st_mode & 0o555)


@contextmanager
def unpacked(
    layer_zip: Path, function_zip: Path, parent: Path, *, bytecode: bool = True
) -> Iterator[Unpacked]:
    """Unzip layer and function into a fresh directory under ``parent``, read-only.

    ``bytecode=False`` leaves out every ``.pyc``: the archives as built before issue 14 (the
    builder stripped byte code). On exit, checks that the run wrote no byte code (a leak would
    make the next run of the same tree faster than Lambda's) and removes the directory.
    """
    root = Path(tempfile.mkdtemp(prefix="lambda-", dir=parent))
    opt, task, tmp = root / "opt", root / "task", root / "tmp"
    tmp.mkdir()
    for archive_path, target in ((layer_zip, opt), (function_zip, task)):
        with zipfile.ZipFile(archive_path) as archive:
            members = [n for n in archive.namelist() if bytecode or not n.endswith(".pyc")]
            archive.extractall(target, members)
        _set_writable(target, False)
    run = Unpacked(root, opt, task, tmp, _count_pyc(opt, task))
    try:
        yield run
        if (after := _count_pyc(opt, task)) != run.pyc_files:
            raise RuntimeError(
                f"the run wrote byte code into the read-only tree ({run.pyc_files} -> {after} "
                ".pyc files): PYTHONDONTWRITEBYTECODE was not honoured"
            )
    finally:
        _set_writable(root, True)
        shutil.rmtree(root)


def lambda_env(
    run: Unpacked,
    sdk: Path,
    *,
    memory_mb: int,
    function_env: dict[str, str],
    python_version: str = DEFAULT_PYTHON_VERSION,
) -> dict[str, str]:
    """The environment Lambda's python runtime gives the function (and nothing of this shell's)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "HOME": str(run.tmp),  # no ~/.aws of this machine
        "PYTHONPATH": run.pythonpath(sdk, python_version),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "LAMBDA_TASK_ROOT": str(run.task),
        "LAMBDA_RUNTIME_DIR": str(sdk),
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{python_version}",
        "AWS_LAMBDA_FUNCTION_NAME": "mlserve-bench",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/mlserve-bench",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        **function_env,
    }


def _constraint_pins(names: tuple[str, ...]) -> list[str]:
    wanted = {re.sub(r"[-_.]+", "-", n).lower() for n in names}
    pins = []
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.strip())
        if match and re.sub(r"[-_.]+", "-", match.group(1)).lower() in wanted:
            pins.append(f"{match.group(1)}=={match.group(2)}")
    if len(pins) != len(wanted):
        raise RuntimeError(f"constraints.txt must pin each of {sorted(wanted)}; found {pins}")
    return pins


def runtime_sdk(python_version: str = DEFAULT_PYTHON_VERSION) -> Path:
    """boto3 as the Lambda runtime provides it, for ``python_version`` (built once, cached)."""
    target = default_cache_root() / "bench-lambda-runtime" / f"python{python_version}"
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["--no-deps", "--only-binary=:all:", "--no-compile", "--target", str(target)]
    command += _constraint_pins(RUNTIME_SDK_PACKAGES)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pip could not install the runtime's boto3:\n{done.stderr[-3000:]}")
    shutil.rmtree(target / "bin", ignore_errors=True)
    compile_bytecode(target, RUNTIME_SDK_MOUNT, lambda_python(python_version))
    (target / ".complete").touch()
    return target


def lambda_cpu_share(memory_mb: int) -> float:
    """The CPUs Lambda gives a function of ``memory_mb`` (1.0 at 1,769 MB)."""
    return memory_mb / FULL_VCPU_MEMORY_MB


class CpuShare:
    """A cgroup whose children get ``cpus`` CPUs' worth of time; ``reason`` when unavailable."""

    def __init__(self, cpus: float) -> None:
        self.cpus = cpus
        self.quota_us = max(1000, round(cpus * CGROUP_PERIOD_US))
        self.path: Path | None = None
        self.kind = ""
        self.reason = ""

    def __enter__(self) -> CpuShare:
        v2 = Path("/sys/fs/cgroup")
        v1 = Path("/sys/fs/cgroup/cpu")
        name = f"mlserve-bench-{os.getpid()}"
        controllers = v2 / "cgroup.controllers"
        try:
            if controllers.exists() and "cpu" in controllers.read_text().split():
                path = v2 / name
                path.mkdir()
                self.path, self.kind = path, "cgroup v2 cpu.max"
                (path / "cpu.max").write_text(f"{self.quota_us} {CGROUP_PERIOD_US}\n")
            elif (v1 / "cpu.cfs_quota_us").exists():
                path = v1 / name
                path.mkdir()
                self.path, self.kind = path, "cgroup v1 cpu.cfs_quota_us"
                (path / "cpu.cfs_period_us").write_text(f"{CGROUP_PERIOD_US}\n")
                (path / "cpu.cfs_quota_us").write_text(f"{self.quota_us}\n")
            else:
                self.reason = "no cgroup cpu controller (neither v2 cpu.max nor v1 cpu quota)"
        except OSError as exc:
            self._remove()
            self.reason = f"cannot set a cgroup CPU quota here ({exc.strerror}: {exc.filename})"
        return self

    def __exit__(self, *exc: object) -> None:
        self._remove()

    def _remove(self) -> None:
        if self.path is not None:
            with suppress(OSError):  # still holds a child only if one outlived its run
                self.path.rmdir()
            self.path = None

    @property
    def available(self) -> bool:
        return self.path is not None

    def preexec(self) -> Callable[[], None] | None:
        """For ``subprocess.run(preexec_fn=...)``: moves the child into the cgroup before exec."""
        if self.path is None:
            return None
        procs = self.path / "cgroup.procs"

        def enter() -> None:
            procs.write_text(f"{os.getpid()}\n")

        return enter

    def describe(self) -> str:
        return f"{self.cpus:.2f} CPU ({self.kind} {self.quota_us}/{CGROUP_PERIOD_US} us)"
