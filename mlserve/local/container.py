"""How a local process stands in for the scoring container: its command line.

The scoring image installs images/scoring/requirements.txt and runs ``python -m
runtime.scoring``. This development environment has more: scikit-learn (to train the example
and for the ONNX converters), and ``import xgboost`` imports scikit-learn whenever it can find
it, which costs about 2 s of every process start here and is nothing the image does. A local
task therefore runs the module through :data:`LAUNCHER`, which hides the packages of
:data:`NOT_IN_IMAGE` first (an import of one raises ImportError, as in the image) and then runs
the module as ``python -m`` would. The launcher is a ``-c`` program, not a module of this
package, so the process imports nothing of the emulator.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Final

# Installed in the development environment, absent from the scoring image
# (tests/infra/test_image.py checks that images/scoring/requirements.txt has none of them).
NOT_IN_IMAGE: Final = ("sklearn",)

LAUNCHER: Final = (
    "import runpy, sys\n"
    f"for _name in {NOT_IN_IMAGE!r}:\n"
    "    sys.modules[_name] = None\n"
    "del sys.argv[0]\n"
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
)


def hide_packages_not_in_image() -> None:
    """Make the packages of :data:`NOT_IN_IMAGE` unimportable in this process."""
    for name in NOT_IN_IMAGE:
        sys.modules[name] = None  # type: ignore[assignment]


def command(module: str, args: Sequence[str] = ()) -> list[str]:
    """The argv of a local process running ``module`` as the image's entrypoint does."""
    return [sys.executable, "-c", LAUNCHER, module, *args]
