"""The local stand-in of the scoring container's process (mlserve.local.container)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mlserve.local import container


def test_a_local_task_runs_the_module_with_its_arguments_and_without_scikit_learn(
    tmp_path: Path,
) -> None:
    """What the image runs, ``python -m MODULE ARGS``, minus the development-only packages:
    XGBoost finds no scikit-learn, as in the image (and does not pay ~2 s importing it)."""
    (tmp_path / "probe.py").write_text(
        "import sys\n"
        "import xgboost.compat\n"
        "print(__name__, sys.argv[1:], xgboost.compat.SKLEARN_INSTALLED)\n"
        "try:\n"
        "    import sklearn\n"
        "except ImportError:\n"
        "    print('no sklearn')\n"
    )
    done = subprocess.run(
        container.command("probe", ["--mode", "batch"]),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["__main__ ['--mode', 'batch'] False", "no sklearn"]
