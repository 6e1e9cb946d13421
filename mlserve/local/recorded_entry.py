"""``python -m mlserve.local.recorded_entry FILE IDENTITY MODULE ARGS...``: the scoring process
of the emulator, with its AWS calls recorded (mlserve.local.recorder; only while
``MLSERVE_RECORD_CALLS`` is set). A module of its own: ``python -m`` must not name a module the
package imports itself."""

from __future__ import annotations

import sys

from mlserve.local.recorder import run_recorded

if __name__ == "__main__":
    run_recorded(sys.argv[1:])
